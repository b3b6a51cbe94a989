"""Backups and point-in-time restore with barman-cloud: a base backup is listed; a
bad mistake (rows deleted) is undone by a restore to a time before it, into a
scratch server; a tampered backup fails to restore and changes nothing; bad
inputs are one line, exit 2."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from tests.conftest import ROOT, run_roadie
from tests.fleet.dbkit import leader, members, psql
from tests.fleet.roles_fixtures import HOSTS, TIERS, ssh

pytestmark = pytest.mark.fleet
RESULTS = ROOT / ".roadie" / "results"
SCRATCH = "/var/lib/postgresql/roadie-scratch"


def _json(*args: str, timeout: float = 900) -> dict:
    proc = run_roadie("--output", "json", "db", *args, check=True, timeout=timeout)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _save(name: str, doc: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "database-backup.json"
    have = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**have, name: doc}, indent=1))


def _assert_three_members_serving() -> None:
    found = members()
    assert len(found) == 3 and [m["Role"] for m in found].count("Leader") == 1, found
    assert all(m["State"] in ("running", "streaming") for m in found), found


CHECKSUM = "SELECT count(*), md5(string_agg(t::text, chr(10) ORDER BY t::text)) FROM {} t"


def _probe_table(lead: str, prefix: str, rows: int) -> tuple[str, str]:
    """A new table of ROWS rows on the leader: (its name, its count|md5)."""
    table = f"{prefix}_{int(time.time())}"
    psql(lead, f"CREATE TABLE {table} (id int PRIMARY KEY, note text)")
    psql(lead, f"INSERT INTO {table} SELECT g, md5(g::text) FROM generate_series(1, {rows}) g")
    return table, psql(lead, CHECKSUM.format(table))


def _mistake(lead: str, table: str) -> str:
    """The leader's time, noted between two pauses, then every row of TABLE deleted: the bad mistake."""
    time.sleep(2)
    noted = datetime.fromtimestamp(float(psql(lead, "SELECT extract(epoch FROM now())")), UTC).isoformat()
    time.sleep(2)
    psql(lead, f"DELETE FROM {table}")
    return noted


@pytest.fixture(scope="module")
def first_backup(roles_fleet):
    """A base backup of the seeded catalogue, taken by `roadie db backup`."""
    assert leader(), members()
    start = time.monotonic()
    done = _json("backup")
    _save("backup", {"backup_id": done["backup_id"], "size_bytes": done["size"], "seconds": done["seconds"],
                     "wall_seconds": round(time.monotonic() - start, 2), "on": done["on"]})
    return done


def test_backup_is_listed_with_its_size_and_wal(first_backup):
    listed = {b["backup_id"]: b for b in _json("backups")["backups"]}
    got = listed[first_backup["backup_id"]]
    assert got["status"] == "DONE" and got["size"] > 0
    assert got["begin_wal"] and got["end_wal"] >= got["begin_wal"]
    assert first_backup["on"] == leader()
    status = _json("status")["backup"]
    assert status["backups"] >= 1 and status["last_backup_age_s"] is not None
    assert status["archive_age_s"] is not None and status["archive_age_s"] <= 120, status


def test_restore_to_a_time_before_a_mistake_brings_the_rows_back(first_backup):
    lead = leader()
    table, before = _probe_table(lead, "pitr_probe", 500)
    noted = _mistake(lead, table)
    assert psql(lead, f"SELECT count(*) FROM {table}") == "0"
    start = time.monotonic()
    done = _json("restore", "--time", noted, "--into", "scratch")
    restored = done["tables"][f"public.{table}"]
    assert f"{restored['rows']}|{restored['md5']}" == before
    assert done["on"] != lead
    # The scratch server is gone; the cluster's own data and port were not touched.
    assert ssh(done["on"], f"test -e {SCRATCH}", check=False).returncode == 1
    assert psql(lead, f"SELECT count(*) FROM {table}") == "0"
    assert leader() == lead
    _save("restore_to_time", {"backup_id": done["backup_id"], "target": noted, "rows": restored["rows"],
                              "restore_seconds": done["restore_seconds"],
                              "wall_seconds": round(time.monotonic() - start, 2)})


@pytest.fixture(scope="module")
def tampered_backup(first_backup):
    """A fresh backup with 64 bytes of its data archive zeroed in the bucket; deleted afterwards."""
    from roadie import aws
    from roadie.db import barman

    bid = _json("backup")["backup_id"]
    s3, bucket = aws.env_client("local", "s3"), aws.bucket("local", "backups")
    objects = s3.list_objects_v2(Bucket=bucket, Prefix=barman.base_prefix(bid))["Contents"]
    data = next(o["Key"] for o in objects if o["Key"].endswith("data.tar.gz"))
    body = bytearray(s3.get_object(Bucket=bucket, Key=data)["Body"].read())
    body[len(body) // 2: len(body) // 2 + 64] = b"\0" * 64
    s3.put_object(Bucket=bucket, Key=data, Body=bytes(body))
    yield bid
    ssh(leader(), f"runuser -u postgres -- {barman.WRAPPER} backup-delete -b {bid}")


def test_a_tampered_backup_fails_to_restore_and_changes_nothing(tampered_backup):
    bid, lead = tampered_backup, leader()
    proc = run_roadie("db", "restore", "--backup", bid, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    message = proc.stderr.strip().splitlines()[-1]
    assert f"restore of {bid} failed" in message and "the cluster was not touched" in message, message
    for host in {m["Member"] for m in members()}:
        assert ssh(host, f"test -e {SCRATCH}", check=False).returncode == 1, host
    assert leader() == lead


def test_a_failed_live_restore_rolls_every_member_back_on_its_data(tampered_backup):
    """The tampered backup fails after every member was stopped and its data moved aside: the way
    back must leave the same leader, three streaming members and every row as it was."""
    lead = leader()
    table, before = _probe_table(lead, "rollback_probe", 200)
    check = CHECKSUM.format(table)
    try:
        proc = run_roadie("db", "restore", "--into", "live", "--force", "--confirm", "roadie-catalog",
                          "--backup", tampered_backup, timeout=900)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        message = proc.stderr.strip().splitlines()[-1]
        assert "failed and was rolled back, every member on its data from before" in message, message
        assert leader() == lead
        _assert_three_members_serving()
        assert psql(lead, check) == before
        for host in {m["Member"] for m in members()}:
            assert ssh(host, "ls -d /var/lib/postgresql/15/main.pre-restore-* 2>/dev/null", check=False).stdout == ""
        status = json.loads(run_roadie("--output", "json", "status", check=True).stdout.strip().splitlines()[-1])
        assert not any(s["lock"] or s["maintenance"]["on"] for s in status["services"]), status
    finally:
        psql(lead, f"DROP TABLE IF EXISTS {table}")


@pytest.mark.parametrize(("args", "message"), [
    (["--backup", "20000101T000000"], "No backup 20000101T000000"),
    (["--backup", "latest-ish"], "is not a backup id"),
    (["--time", "2000-01-01T00:00:00Z"], "before the oldest complete backup"),
    (["--time", "2999-01-01T00:00:00Z"], "in the future"),
    (["--time", "yesterday at noon"], "not an ISO 8601 time"),
    (["--time", "2026-01-01T00:00:00Z", "--backup", "20000101T000000"], "not both"),
    ([], "Give one restore point"),
    (["--backup", "20000101T000000", "--into", "live"], "needs --force"),
    (["--backup", "20000101T000000", "--into", "live", "--force", "--confirm", "roadie-catalog"],
     "No backup 20000101T000000"),
])
def test_bad_restore_input_is_one_line_and_exit_2(first_backup, args, message):
    proc = run_roadie("db", "restore", *args, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_live_restore_with_a_wrong_confirmation_changes_nothing(first_backup):
    lead, before = leader(), _json("backups")["backups"]
    proc = run_roadie("db", "restore", "--into", "live", "--force", "--backup", first_backup["backup_id"],
                      "--confirm", "roadie-catalgo", timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not name the cluster 'roadie-catalog'" in lines[0], proc.stderr
    assert leader() == lead and _json("backups")["backups"] == before  # not even the fresh backup


def test_restore_over_the_live_cluster_undoes_a_mistake_under_load(first_backup):
    """The rows come back on the live leader; clients get the maintenance 503, never an error; the
    cluster ends with its three members streaming, a fresh backup of what was replaced, no lock."""
    from loadkit.loadgen import Load, Target

    lead = leader()
    table, before = _probe_table(lead, "live_probe", 300)
    noted = _mistake(lead, table)
    backups_before = {b["backup_id"] for b in _json("backups")["backups"]}
    plan = _json("restore", "--into", "live", "--time", noted, "--plan")
    assert plan["plan"] and plan["on"] == lead and len(plan["steps"]) >= 10
    assert psql(lead, f"SELECT count(*) FROM {table}") == "0"  # the plan changed nothing
    load = Load(f"http://{HOSTS[TIERS['loadbalancer'][0]]}", [Target("catalog", "/api/tracks/{n}", spread=50,
                                                                      ok=(200, 503))],
                rate=20, seconds=600).start()
    try:
        start = time.monotonic()
        done = _json("restore", "--into", "live", "--time", noted, "--force", "--confirm", "roadie-catalog",
                     timeout=900)
        wall = round(time.monotonic() - start, 2)
        time.sleep(3)
    finally:
        tally = load.stop()
    statuses = {}
    for s in load.samples:  # a 503 without Retry-After is the balancer's own: no server (an error)
        key = "503 maintenance" if s.status == 503 and s.retry_after else str(s.status)
        statuses[key] = statuses.get(key, 0) + 1
    print(f"live restore: {wall} s, {done['downtime_seconds']} s without the database; load {tally['requests']} "
          f"requests, {tally['failed']} failed, by status {statuses}")
    try:
        assert f"{done['tables'][f'public.{table}']['rows']}|{done['tables'][f'public.{table}']['md5']}" == before
        assert psql(lead, CHECKSUM.format(table)) == before
        assert tally["failed"] == 0, tally["failures"][:5]
        assert set(statuses) == {"200", "503 maintenance"}, statuses  # served, maintenance, served again
        assert leader() == lead and done["on"] == lead
        _assert_three_members_serving()
        assert done["fresh_backup"] not in backups_before
        assert done["fresh_backup"] in {b["backup_id"] for b in _json("backups")["backups"]}
        assert ssh(lead, f"test -d {done['kept']['datadir']}", check=False).returncode == 0
        for host in done["standbys"]:
            assert ssh(host, f"test -e {done['kept']['datadir']}", check=False).returncode == 1, host
        status = json.loads(run_roadie("--output", "json", "status", check=True).stdout.strip().splitlines()[-1])
        assert not any(s["lock"] or s["maintenance"]["on"] for s in status["services"]), status
        _save("restore_live", {"target": noted, "wall_seconds": wall, "seconds": done["seconds"],
                               "downtime_seconds": done["downtime_seconds"], "requests": tally["requests"],
                               "failed": tally["failed"], "by_status": statuses})
    finally:
        ssh(lead, f"rm -rf {done['kept']['datadir']}")
        psql(lead, f"DROP TABLE IF EXISTS {table}")


@pytest.mark.parametrize(("args", "message"), [
    (["--keep", "0"], "at least 1"),
    (["--keep", "2", "--days", "3"], "Give one retention rule"),
    ([], "Give one retention rule"),
])
def test_bad_prune_input_is_one_line_and_exit_2(first_backup, args, message):
    proc = run_roadie("db", "prune", "--plan", *args, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_prune_plan_deletes_nothing(first_backup):
    before = [b["backup_id"] for b in _json("backups")["backups"]]
    plan = _json("prune", "--keep", "1", "--plan")
    assert plan["dry_run"] and plan["deleted"] == []
    assert [b["backup_id"] for b in _json("backups")["backups"]] == before
