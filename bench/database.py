"""The database figures: failover and switchover under a writer, backup and restore time,
restore-to-time accuracy, on the local fleet (Patroni, etcd, barman-cloud, moto S3).

- failover: a writer creates playlists through HAProxy at 20 writes/s; the leader's host
  loses power (`roadie local kill`); counted: seconds without a successful write, failed
  writes, acknowledged writes, acknowledged writes lost (every acknowledged id read back
  through the catalog API), and the time until the old leader, powered on again
  (`roadie local up`), streams from the new one as a standby.
- switchover: `roadie db switchover --yes` under the same writer: the same counts and the
  command's own seconds.
- backup: `roadie db backup` seconds and size; baseline: `pg_dump -Fc catalog` on the
  leader in the same run.
- restore: `roadie db restore --backup ID` (to the backup's end) seconds; restore to a time
  T picked between two acknowledged writes while the writer runs (`--time T --keep`):
  seconds, acknowledged-before-T rows missing (goal 0), rows committed after T present
  (goal 0), and how far before T the last restored commit lies. Baseline for restore
  seconds: `pg_restore` of a `pg_dump -Fc` of the same restored catalogue into a new
  database of the same scratch server.

Every scenario leaves three healthy members, no scratch server and no writer running.

    python -m bench.database --runs 1 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime

from loadkit.writer import Attempt, Writer, longest_gap

ENV = "local"
ROADIE = [sys.executable, "-m", "roadie"]
LB = "http://198.18.0.10"
RATE = 20.0
MEMBERS = 3
SCRATCH_PSQL = "runuser -u postgres -- psql -X -At -h /var/run/postgresql/roadie-scratch -p 5499"


# -- pure arithmetic (tests/unit/test_bench_database.py) -------------------------------------

def pick_target(attempts: list[Attempt]) -> float:
    """A time T inside the idle gap between one acknowledged write's answer and the next
    write's sending, the widest such gap in the middle third of the attempts: no write is in
    flight at T, so each one committed either before it or after it."""
    ordered = sorted(attempts, key=lambda a: a.sent)
    third = len(ordered) // 3
    pairs = [(a, b) for a, b in zip(ordered, ordered[1:], strict=False)][third:len(ordered) - third]
    gaps = [(b.sent - a.done, a, b) for a, b in pairs if a.id is not None and b.sent > a.done]
    if not gaps:
        raise ValueError("no idle gap after an acknowledged write to restore to")
    _, a, b = max(gaps, key=lambda g: g[0])
    return (a.done + b.sent) / 2


def accuracy(attempts: list[Attempt], restored: dict[int, float], t: float) -> dict:
    """The restore to T against the writer's record. `restored`: the writer's rows in the
    restored database, id -> created_at (epoch; the transaction's start, so before its commit).

    missing: acknowledged before T, absent (goal 0); after_t: sent after T, present (goal 0);
    in_flight: writes sent before T and answered after it (either answer is right);
    gap: T less the newest restored write's answer (a commit precedes its answer) and T less
    its created_at (which precedes the commit): the last restored commit lies between them."""
    ack = {a.id: a for a in attempts if a.id is not None}
    missing = sorted(i for i, a in ack.items() if a.done < t and i not in restored)
    after = sorted(i for i in restored if i in ack and ack[i].sent > t)
    unacked = sorted(i for i in restored if i not in ack)
    in_flight = sum(1 for a in attempts if a.sent <= t <= a.done)
    before = [i for i in restored if i in ack and ack[i].done < t]
    newest = max(before, key=lambda i: ack[i].done, default=None)
    return {
        "acked_before_t": sum(1 for a in ack.values() if a.done < t),
        "acked_after_t": sum(1 for a in ack.values() if a.sent > t),
        "restored_rows": len(restored),
        "missing_acked_before_t": len(missing),
        "present_committed_after_t": len(after),
        "present_unacknowledged": len(unacked),
        "in_flight_at_t": in_flight,
        "last_commit_gap_s": None if newest is None else {
            "at_least": round(t - ack[newest].done, 4), "at_most": round(t - restored[newest], 4)},
        "missing_ids": missing[:20], "after_t_ids": after[:20],
    }


def spread(values: list[float]) -> dict:
    """Median, least and most of one figure over runs."""
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2),
            "max": round(max(values), 2), "runs": len(values)}


# -- the fleet ---------------------------------------------------------------------------------

def sh(*cmd: str, timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[2:8])} exited {proc.returncode}: {proc.stderr.strip()[-600:]}")
    return proc


def roadie_json(*args: str, timeout: float = 900) -> tuple[dict, float]:
    """The last JSON line of `roadie --output json ARGS`, and the command's wall seconds."""
    start = time.monotonic()
    proc = sh(*ROADIE, "--output", "json", *args, timeout=timeout)
    return json.loads(proc.stdout.strip().splitlines()[-1]), round(time.monotonic() - start, 2)


def log(message: str) -> None:
    print(f"bench.database: {message}", file=sys.stderr, flush=True)


def get(path: str, timeout: float = 10) -> int:
    try:
        with urllib.request.urlopen(f"{LB}{path}", timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


class Fleet:
    """The database hosts through roadie's SSH transport (a fresh one after a power cut)."""

    def __init__(self):
        from roadie.db import ops
        from roadie.environment import Environment

        self.ops, self.environment = ops, Environment.load(ENV)
        self.hosts = {h.name: h for h in ops.db_hosts(self.environment)}
        self.tr = self.environment.transport

    def run(self, host: str, command: str, what: str) -> str:
        return self.tr.run(self.hosts[host], command, what)

    def members(self):
        try:
            return self.ops.members(self.environment, self.tr)[0]
        except Exception:  # noqa: BLE001 - a member down mid-poll: ask again with new connections
            from roadie import transport

            self.tr = transport.for_env(ENV, "ssh")
            return []

    def leader(self) -> str | None:
        return next((m.name for m in self.members() if m.role == "leader" and m.state == "running"), None)

    def healthy(self) -> bool:
        found = self.members()
        lead = [m for m in found if m.role == "leader" and m.state == "running"]
        return (len(found) == MEMBERS and len(lead) == 1 and all(m.healthy_standby for m in found if m not in lead)
                and any(m.role == "sync_standby" for m in found) and len({m.timeline for m in found}) == 1)

    def wait(self, predicate, timeout: float, what: str, interval: float = 1.0) -> float:
        """Seconds until predicate() holds; SystemExit after `timeout`."""
        start = time.monotonic()
        while not predicate():
            if time.monotonic() - start > timeout:
                raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(interval)
        return round(time.monotonic() - start, 2)

    def scratch_rows(self, host: str, tag: str) -> dict[int, float]:
        out = self.run(host, f"{SCRATCH_PSQL} -d catalog -F '|' -c \"SELECT id, extract(epoch FROM created_at) "
                             f"FROM playlists WHERE name LIKE '{tag}-%'\"", "reading the restored playlists")
        return {int(i): float(t) for i, t in (line.split("|") for line in out.split())}

    def remove_scratch(self) -> None:
        from roadie.db import barman

        for host in self.hosts:
            try:
                self.run(host, barman.stop_script(), "removing the scratch server")
            except Exception:  # noqa: BLE001 - a host down: it has no scratch server running either
                pass


def lost_through_api(ids) -> list[int]:
    """Acknowledged ids the catalog API does not return (each asked until it answers 200 or 404)."""
    lost = []
    for i in sorted(ids):
        for _ in range(5):
            status = get(f"/api/playlists/{i}")
            if status in (200, 404):
                break
            time.sleep(1)
        if status != 200:
            lost.append(i)
    return lost


def under_writer(fleet: Fleet, tag: str, act, after: int = 60, timeout: float = 120) -> tuple[Writer, float, object]:
    """Run act() while the writer writes (40 acknowledged before, `after` acknowledged after)."""
    writer = Writer(LB, rate=RATE, max_seconds=240, tag=tag).start()
    try:
        fleet.wait(lambda: len(writer.acked) >= 40, 30, "writes before the act", interval=0.2)
        start = time.monotonic()
        result = act()
        fleet.wait(lambda: writer.acked_since(start) >= after, timeout, "writes after the act", interval=0.5)
    finally:
        writer.stop()
    return writer, start, result


def write_counts(writer: Writer, start: float) -> dict:
    lost = lost_through_api(writer.acked)
    kinds = Counter(error for _, error in writer.failures)
    return {"no_write_s": round(longest_gap(writer.acked.values(), start), 2), "failed_writes": len(writer.failures),
            "failed_by": ", ".join(f"{k} x{n}" for k, n in kinds.most_common()),
            "acked": len(writer.acked), "lost": len(lost), "lost_ids": lost[:20]}


def failover(fleet: Fleet, run: int) -> dict:
    fleet.wait(fleet.healthy, 300, "three healthy members")
    old = fleet.leader()
    writer, start, _ = under_writer(fleet, f"bench-failover-{int(time.time())}-{run}",
                                    lambda: sh(*ROADIE, "local", "kill", old, "--yes"))
    new = fleet.leader()
    counts = write_counts(writer, start)
    log(f"failover {old} -> {new}: {counts}")
    up_at = time.monotonic()
    sh(*ROADIE, "local", "up", timeout=600)
    booted = round(time.monotonic() - up_at, 2)

    def rejoined():
        by = {m.name: m for m in fleet.members()}
        lead = by.get(new)
        return old in by and by[old].healthy_standby and lead is not None and by[old].timeline == lead.timeline
    rejoin = fleet.wait(rejoined, 300, f"{old} to stream from {new}")
    fleet.wait(fleet.healthy, 300, "three healthy members")
    return {"profile": "failover", "from": old, "to": new, **counts, "power_on_s": booted,
            "rejoin_s": round(booted + rejoin, 2)}


def switchover(fleet: Fleet, run: int) -> dict:
    fleet.wait(fleet.healthy, 300, "three healthy members")

    def switch():
        return roadie_json("db", "switchover", "--yes", timeout=300)

    writer, start, (done, wall) = under_writer(fleet, f"bench-switchover-{int(time.time())}-{run}", switch)
    counts = write_counts(writer, start)
    log(f"switchover {done['from']} -> {done['to']}: {counts}")
    return {"profile": "switchover", "from": done["from"], "to": done["to"], **counts,
            "switch_s": done["switch_seconds"], "command_s": done["seconds"], "wall_s": wall}


def backup(fleet: Fleet, run: int) -> dict:
    fleet.wait(fleet.healthy, 300, "three healthy members")
    lead = fleet.leader()
    size_db = int(fleet.run(lead, "runuser -u postgres -- psql -X -At -c \"SELECT pg_database_size('catalog')\"",
                            "sizing the catalog database").strip())
    start = time.monotonic()
    dumped = fleet.run(lead, "set -e; f=$(mktemp /tmp/bench-dump.XXXXXX); chown postgres $f; "
                             "runuser -u postgres -- pg_dump -Fc -d catalog -f $f; stat -c %s $f; rm -f $f",
                       "pg_dump -Fc catalog (baseline)")
    dump_s = round(time.monotonic() - start, 2)
    done, wall = roadie_json("db", "backup")
    log(f"backup {done['backup_id']}: {done['seconds']} s, {done['size']} bytes; pg_dump {dump_s} s")
    return {"profile": "backup", "on": lead, "backup_id": done["backup_id"], "barman_s": done["seconds"],
            "command_s": wall, "size_bytes": done["size"], "database_bytes": size_db,
            "baseline_pg_dump_s": dump_s, "baseline_pg_dump_bytes": int(dumped.split()[-1]),
            "ratio_over_pg_dump": round(done["seconds"] / dump_s, 2) if dump_s else None}


def restore_backup(fleet: Fleet, backup_id: str) -> dict:
    done, wall = roadie_json("db", "restore", "--backup", backup_id)
    return {"profile": "restore to backup end", "backup_id": backup_id, "on": done["on"],
            "restore_s": done["restore_seconds"], "command_s": wall,
            "tables": len(done["tables"]), "rows": sum(t["rows"] for t in done["tables"].values())}


def restore_time(fleet: Fleet, run: int) -> dict:
    """A restore to a time picked between two acknowledged writes, compared with the writer's record."""
    fleet.wait(fleet.healthy, 300, "three healthy members")
    tag = f"bench-pitr-{int(time.time())}-{run}"
    writer = Writer(LB, rate=RATE, max_seconds=30, tag=tag).start()
    try:
        fleet.wait(lambda: len(writer.acked) >= 120, 30, "writes for the restore to a time", interval=0.2)
    finally:
        writer.stop()
    t = pick_target(writer.attempts)
    target = datetime.fromtimestamp(t, UTC).isoformat()
    try:
        done, wall = roadie_json("db", "restore", "--time", target, "--into", "scratch", "--keep")
        rows = fleet.scratch_rows(done["on"], tag)
        base = baseline_restore(fleet, done["on"])
    finally:
        fleet.remove_scratch()
    acc = accuracy(writer.attempts, rows, t)
    log(f"restore to {target} on {done['on']}: {done['restore_seconds']} s; {acc}")
    return {"profile": "restore to a time", "target": target, "backup_id": done["backup_id"], "on": done["on"],
            "restore_s": done["restore_seconds"], "command_s": wall, "failed_writes": len(writer.failures),
            **acc, **base}


def baseline_restore(fleet: Fleet, host: str) -> dict:
    """pg_restore of a pg_dump -Fc of the restored catalogue into a new database of the scratch server."""
    out = fleet.run(host, "set -e; f=$(mktemp /tmp/bench-dump.XXXXXX); chown postgres $f; "
                          f"{SCRATCH_PSQL.replace('psql -X -At', 'pg_dump -Fc')} -d catalog -f $f; "
                          f"{SCRATCH_PSQL} -d postgres -c 'CREATE DATABASE bench_copy' >/dev/null; "
                          "s=$(date +%s.%N); "
                          f"{SCRATCH_PSQL.replace('psql -X -At', 'pg_restore')} -d bench_copy $f; "
                          "e=$(date +%s.%N); rm -f $f; echo \"$s $e\"", "pg_restore of the catalogue (baseline)")
    s, e = map(float, out.split()[-2:])
    return {"baseline_pg_restore_s": round(e - s, 2)}


def prepare(fleet_up: bool) -> None:
    if fleet_up:
        log("local up, converge")
        sh(*ROADIE, "local", "up", timeout=900)
        sh(*ROADIE, "converge", timeout=1800)
    if get("/api/tracks/1") != 200:
        raise SystemExit(f"the catalog does not answer through {LB}: install a catalog release and seed it "
                         "(as tests/fleet or bench.deploy do)")


def summarize(runs: list[dict]) -> dict:
    def of(profile: str, key: str) -> list[float]:
        return [r[key] for r in runs if r["profile"] == profile and r.get(key) is not None]

    out = {}
    for profile, keys in (("failover", ("no_write_s", "failed_writes", "lost", "rejoin_s")),
                          ("switchover", ("no_write_s", "failed_writes", "lost", "switch_s", "command_s")),
                          ("backup", ("barman_s", "command_s", "size_bytes", "baseline_pg_dump_s",
                                      "ratio_over_pg_dump")),
                          ("restore to backup end", ("restore_s", "command_s")),
                          ("restore to a time", ("restore_s", "command_s", "baseline_pg_restore_s",
                                                 "missing_acked_before_t", "present_committed_after_t"))):
        for key in keys:
            if values := of(profile, key):
                out[f"{profile.replace(' ', '_')}.{key}"] = spread(values)
    out["acked_lost_total"] = sum(r.get("lost", 0) for r in runs)
    out["restore_rows_wrong_total"] = sum(r.get("missing_acked_before_t", 0) + r.get("present_committed_after_t", 0)
                                          for r in runs)
    return out


SCENARIOS = ("failover", "switchover", "backup", "restore")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="bench.database")
    ap.add_argument("--runs", type=int, default=1, help="repeat each scenario (a failover costs about 1 min)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-prepare", action="store_true", help="skip `local up` and `converge`")
    ap.add_argument("--only", choices=SCENARIOS, action="append", help="run only these scenarios")
    args = ap.parse_args(argv)
    if not 1 <= args.runs <= 5:
        ap.error("--runs must be 1 to 5 (each run powers a database host off and on)")
    chosen = args.only or list(SCENARIOS)
    prepare(not args.no_prepare)
    fleet = Fleet()
    load = [os.getloadavg()]
    runs: list[dict] = []
    try:
        for i in range(args.runs):
            if "failover" in chosen:
                runs.append(failover(fleet, i))
            if "switchover" in chosen:
                runs.append(switchover(fleet, i))
            if "backup" in chosen or "restore" in chosen:
                made = backup(fleet, i)
                runs.append(made)
                if "restore" in chosen:
                    runs.append(restore_backup(fleet, made["backup_id"]))
                    runs.append(restore_time(fleet, i))
            load.append(os.getloadavg())
    finally:
        fleet.remove_scratch()
    result = {"env": ENV, "writer_rate": RATE, "members": MEMBERS, "runs": runs, **summarize(runs),
              "load_average_1m": spread([x[0] for x in load])}
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
