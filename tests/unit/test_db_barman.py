"""roadie db backups: barman-cloud's answers, choosing a restore point, and the shell
lines run on the database hosts (pure)."""

import json
import shlex
from datetime import UTC, datetime

import pytest

from roadie.db import barman
from roadie.errors import BadInput, OperationFailed

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


def listed(*backups):
    return barman.parse_list(json.dumps({"backups_list": [
        {"backup_id": bid, "backup_name": f"roadie-{bid}", "status": status, "begin_time": begin, "end_time": end,
         "begin_wal": "000000010000000000000003", "end_wal": "000000010000000000000004", "size": None,
         "timeline": 1} for bid, status, begin, end in backups]}))


BACKUPS = listed(("20261123T140000", "DONE", "Mon Nov 23 14:00:00 2026", "Mon Nov 23 14:00:09 2026"),
                 ("20261123T120000", "DONE", "Mon Nov 23 12:00:00 2026", "Mon Nov 23 12:00:08 2026"),
                 ("20261123T143000", "FAILED", "Mon Nov 23 14:30:00 2026", "Mon Nov 23 14:30:05 2026"))


def test_parse_list_sorts_by_id_and_reads_barmans_ctime_as_utc():
    assert [b.backup_id for b in BACKUPS] == ["20261123T120000", "20261123T140000", "20261123T143000"]
    assert BACKUPS[0].end_time == "2026-11-23T12:00:08+00:00" and BACKUPS[2].status == "FAILED"


def test_parse_list_without_json_fails():
    with pytest.raises(OperationFailed, match="no JSON"):
        barman.parse_list("ERROR: bucket not found")


@pytest.mark.parametrize(("backup_id", "target", "expected"), [
    ("20261123T120000", None, "20261123T120000"),
    (None, "2026-11-23T14:59:00Z", "20261123T140000"),        # the newest ended before the time
    (None, "2026-11-23T13:00:00+00:00", "20261123T120000"),
    (None, "2026-11-23T14:00:09", "20261123T140000"),         # no zone: UTC; a backup ending at the time
    (None, "2026-11-23T15:45:00+01:00", "20261123T140000"),   # 14:45 UTC; the FAILED one is skipped
])
def test_choose_backup(backup_id, target, expected):
    when = barman.parse_target(target) if target else None
    assert barman.choose_backup(BACKUPS, backup_id, when, NOW).backup_id == expected


@pytest.mark.parametrize(("backup_id", "target", "message"), [
    ("20000101T000000", None, "No backup 20000101T000000"),
    ("newest", None, "is not a backup id"),
    ("20261123T143000", None, "is FAILED, not DONE"),
    (None, "2026-11-23T11:00:00Z", "before the oldest complete backup"),
    (None, "2026-11-23T16:00:00Z", "in the future"),
    (None, None, "Give one restore point"),
    ("20261123T120000", "2026-11-23T14:00:00Z", "Give one restore point"),
])
def test_choose_backup_refusals(backup_id, target, message):
    when = barman.parse_target(target) if target else None
    with pytest.raises(BadInput, match=message):
        barman.choose_backup(BACKUPS, backup_id, when, NOW)


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01T00:00:00Z", "14:00", ""])
def test_parse_target_refuses_what_is_not_iso(text):
    with pytest.raises(BadInput, match="not an ISO 8601 time"):
        barman.parse_target(text)


@pytest.mark.parametrize(("keep", "days", "expected"), [
    (3, None, "REDUNDANCY 3"), (None, 7, "RECOVERY WINDOW OF 7 DAYS")])
def test_retention_policy(keep, days, expected):
    assert barman.retention_policy(keep, days) == expected


@pytest.mark.parametrize(("keep", "days", "message"), [
    (None, None, "Give one retention rule"), (2, 3, "Give one retention rule"),
    (0, None, "at least 1"), (None, 0, "at least 1")])
def test_retention_policy_refusals(keep, days, message):
    with pytest.raises(BadInput, match=message):
        barman.retention_policy(keep, days)


@pytest.mark.parametrize(("cmd", "expected"), [
    (barman.list_cmd(), "runuser -u postgres -- /usr/local/bin/roadie-barman backup-list --format json"),
    (barman.delete_cmd("REDUNDANCY 2", True),
     "runuser -u postgres -- /usr/local/bin/roadie-barman backup-delete --retention-policy 'REDUNDANCY 2' --dry-run"),
    (barman.barman("restore", args=("20261123T120000", "/x y")),
     "runuser -u postgres -- /usr/local/bin/roadie-barman restore -- 20261123T120000 '/x y'"),
    # A commit first: recovery to a time needs one after it, or it refuses to end.
    (barman.switch_wal_cmd(), "runuser -u postgres -- psql -X -At -v ON_ERROR_STOP=1 -c 'SELECT txid_current()' "
                              "-c 'SELECT pg_walfile_name(pg_switch_wal())'"),
    (barman.backup_cmd("n1"),
     "runuser -u postgres -- /usr/local/bin/roadie-barman backup --gzip --immediate-checkpoint --name n1"),
])
def test_commands(cmd, expected):
    assert cmd == expected


@pytest.mark.parametrize(("target", "present", "absent"), [
    (None, "recovery_target=immediate", "recovery_target_time"),
    (datetime(2026, 11, 23, 14, 5, tzinfo=UTC), "recovery_target_time='2026-11-23T14:05:00+00:00'",
     "recovery_target=immediate"),
])
def test_restore_script_uses_a_scratch_dir_and_port_never_the_clusters(target, present, absent):
    opts = barman.scratch_options(target)
    assert present in opts and absent not in opts
    assert "-p 5499" in opts and "listen_addresses=''" in opts and "archive_mode=off" in opts
    assert "synchronous_standby_names=''" in opts and "recovery_target_action=promote" in opts
    script = barman.restore_script("20261123T120000", target)
    assert shlex.quote(opts) in script
    assert "/var/lib/postgresql/15/main" not in script and "5432" not in script
    assert "restore -- 20261123T120000 /var/lib/postgresql/roadie-scratch" in script
    # A leftover scratch server is stopped and its directory removed first.
    assert script.index("rm -rf /var/lib/postgresql/roadie-scratch ") < script.index("restore --")
    # A backup of a former replica carries recovery_target* = '' lines that PostgreSQL 15 takes for a
    # second target: they go before the server starts.
    # A server that dies in recovery ends the wait at once (not after 900 s), with its FATAL line.
    assert "pg_ctl -D /var/lib/postgresql/roadie-scratch status >/dev/null || break" in script
    assert "grep -E 'FATAL|PANIC' /var/lib/postgresql/roadie-scratch.log" in script
    assert script.index("-c recovery_target_action") > script.index(
        "sed -i '/^recovery_target/d' /var/lib/postgresql/roadie-scratch/postgresql.conf") > script.index("restore --")


def test_parse_verify_and_archiver():
    assert barman.parse_verify("public.a|3|abc\npublic.b|0|d41d\n") == {
        "public.a": {"rows": 3, "md5": "abc"}, "public.b": {"rows": 0, "md5": "d41d"}}
    assert barman.parse_archiver("00000001000000000000000C|24|0||00000001000000000000000D\n") == {
        "last_archived_wal": "00000001000000000000000C", "archive_age_s": 24, "failed_count": 0,
        "last_failed_wal": None, "current_wal": "00000001000000000000000D"}
    assert barman.parse_archiver("||0||000000010000000000000001")["archive_age_s"] is None


def test_backup_age_counts_only_complete_backups():
    assert barman.backup_age(BACKUPS, NOW) == 3591.0
    assert barman.backup_age([], NOW) is None


@pytest.mark.parametrize(("objects", "expected"), [
    ([], {}),
    ([("database/roadie-catalog/base/20261123T120000/backup.info", 10),
      ("database/roadie-catalog/base/20261123T120000/data.tar.gz", 4000),
      ("database/roadie-catalog/base/20261123T130000/data.tar.gz", 7)],
     {"20261123T120000": 4010, "20261123T130000": 7}),
])
def test_sizes_sum_each_backups_objects(objects, expected):
    assert barman.sizes(objects) == expected
    assert barman.sizes([(k.replace("database/", "pg/", 1), n) for k, n in objects], "pg/roadie-catalog/base/") \
        == expected


@pytest.mark.parametrize(("backup_id", "base", "expected"), [
    # No base: the model's roadie_database backup_prefix / patroni_scope (the role's archive).
    ("", None, "database/roadie-catalog/base/"),
    ("20261123T120000", None, "database/roadie-catalog/base/20261123T120000/"),
    ("20261123T120000", "pg/other/base/", "pg/other/base/20261123T120000/"),
])
def test_base_prefix(backup_id, base, expected):
    assert barman.base_prefix(backup_id, base) == expected
