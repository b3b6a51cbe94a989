"""The database survives a dead primary: Patroni promotes the synchronous standby,
the catalog follows by itself (libpq read-write target), no acknowledged write is
lost, and the old primary rejoins as a standby (pg_rewind) once it is back."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import ROOT, run_roadie
from tests.fleet.dbkit import PATRONICTL, leader, members, psql
from tests.fleet.roles_fixtures import HOSTS, TIERS, ssh, wait_for
from loadkit.writer import Writer

pytestmark = pytest.mark.fleet
RESULTS = ROOT / ".roadie" / "results"


def _missing(ids) -> list[int]:
    """Acknowledged ids absent from the database (asked of the leader)."""
    lead = leader()
    found = set()
    ids = sorted(ids)
    for i in range(0, len(ids), 500):
        chunk = ",".join(map(str, ids[i:i + 500]))
        found |= {int(x) for x in psql(lead, f"SELECT id FROM playlists WHERE id IN ({chunk})").split()}
    return [i for i in ids if i not in found]


def test_power_cut_of_the_primary_loses_no_acknowledged_write_and_it_rejoins(roles_fleet):
    def all_streaming():
        found = members()
        return (len(found) == len(TIERS["database"]) and {m["State"] for m in found} <= {"running", "streaming"}
                and len({m.get("TL") for m in found}) == 1 and any(m["Role"] == "Sync Standby" for m in found))
    wait_for(all_streaming, timeout=180, interval=3, what="every member running on one timeline")
    old = leader()
    assert old, members()
    timeline = {m["Member"]: m.get("TL") for m in members()}[old]
    writer = Writer(f"http://{HOSTS[TIERS['loadbalancer'][0]]}", rate=20, max_seconds=150).start()
    try:
        wait_for(lambda: len(writer.acked) >= 40, timeout=30, what="writes before the power cut")
        cut = time.monotonic()
        killed = run_roadie("local", "kill", old, "--yes", check=True)
        assert old in killed.stdout
        # Patroni promotes the sync standby; the catalog's next connection finds it.
        wait_for(lambda: writer.acked_since(cut) >= 60, timeout=110, interval=1, what="writes after failover")
    finally:
        writer.stop()
    outage = writer.longest_gap(cut)
    new = leader()
    assert new and new != old
    assert {m["Member"]: m.get("TL") for m in members()}[new] > timeline
    lost = _missing(writer.acked)
    failed = len(writer.failures)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "failover.json").write_text(json.dumps(
        {"old_leader": old, "new_leader": new, "acked": len(writer.acked), "lost": len(lost),
         "failed_writes": failed, "outage_s": round(outage, 2)}, indent=1))
    print(f"\nfailover {old} -> {new}: outage {outage:.1f} s, {failed} failed writes, "
          f"{len(writer.acked)} acknowledged, {len(lost)} lost")
    assert lost == [], f"{len(lost)} acknowledged writes lost: {lost[:20]}"
    assert outage < 60

    # Power back: the host boots, Patroni starts, rewinds and follows the new leader.
    run_roadie("local", "up", check=True, timeout=300)

    def rejoined():
        m = {x["Member"]: x for x in members(new)}.get(old)
        lead_tl = {x["Member"]: x.get("TL") for x in members(new)}[new]
        return m and m["Role"] != "Leader" and m["State"] in ("running", "streaming") and m.get("TL") == lead_tl
    wait_for(rejoined, timeout=180, interval=3, what=f"{old} to rejoin as a standby")
    wait_for(lambda: old in psql(new, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'"),
             timeout=60, what=f"{old} streaming from {new}")
    assert psql(old, "SELECT pg_is_in_recovery()") == "t"
    log = ssh(old, "journalctl -u patroni -o cat --no-pager | grep -ci rewind", check=False).stdout.strip()
    print(f"{old} rejoined; patroni log lines about rewind: {log}")
    # The writes made while it was down reached it too.
    probe = max(writer.acked)
    wait_for(lambda: psql(old, f"SELECT count(*) FROM playlists WHERE id = {probe}") == "1", timeout=30,
             what="the latest write on the rejoined member")
    assert ssh(old, f"{PATRONICTL} list -f json").returncode == 0


def test_switchover_under_a_writer_loses_no_acknowledged_write(roles_fleet):
    """`roadie db switchover`: the sync standby leads, the old leader streams from it, nothing acknowledged lost."""
    wait_for(lambda: any(m["Role"] == "Sync Standby" and m["State"] in ("running", "streaming") for m in members()),
             timeout=180, interval=3, what="a streaming synchronous standby")
    old = leader()
    writer = Writer(f"http://{HOSTS[TIERS['loadbalancer'][0]]}", rate=20, max_seconds=150).start()
    try:
        wait_for(lambda: len(writer.acked) >= 40, timeout=30, what="writes before the switchover")
        start = time.monotonic()
        proc = run_roadie("--output", "json", "db", "switchover", "--yes", timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        wait_for(lambda: writer.acked_since(start) >= 60, timeout=60, interval=1, what="writes after switchover")
    finally:
        writer.stop()
    done = json.loads(proc.stdout.strip().splitlines()[-1])
    new = leader()
    assert new == done["to"] and new != old and old in done["streaming_from_new"], done
    lost, gap = _missing(writer.acked), writer.longest_gap(start)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "switchover.json").write_text(json.dumps(
        {"from": old, "to": new, "acked": len(writer.acked), "lost": len(lost), "failed_writes": len(writer.failures),
         "outage_s": round(gap, 2), "seconds": done["seconds"]}, indent=1))
    print(f"\nswitchover {old} -> {new}: {done['seconds']} s, longest gap in writes {gap:.1f} s, "
          f"{len(writer.failures)} failed writes, {len(writer.acked)} acknowledged, {len(lost)} lost")
    assert lost == [], f"{len(lost)} acknowledged writes lost: {lost[:20]}"
    assert gap < 30
