"""The health report: one screen for the whole environment, and an exit code a cron job can page on.

It sits above the operations it reads (deploy status, ops disk and database
members, db backups), so none of them looks up to it.

It reads what `roadie status` reads (versions, units, balancer, locks,
maintenance), every host's disks (which also says whether it answers) and the
database members, at once; `problems` (pure) says what needs a human.
Intentional states (a host drained by hand, maintenance on, a deploy holding
the lock) are notes, not problems.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from roadie.deploy import status as st
from roadie.environment import Environment
from roadie.ops import database, disk

# A day's backup and some slack: a nightly job that missed one night needs a human.
MAX_BACKUP_AGE = 26 * 3600


def collect(environment: Environment, threshold: int = disk.DEFAULT_THRESHOLD) -> dict:
    started = time.monotonic()
    inv = environment.inventory  # the threads share the environment's transport, balancer and table (made once)
    with ThreadPoolExecutor(max_workers=4) as pool:
        status = pool.submit(st.collect, environment)
        disks = pool.submit(disk.usage, environment, None, 3)
        db = pool.submit(database.members, inv, environment.transport, environment.stack)
        saved = pool.submit(_backups, environment)
        report = {"env": environment.name, "services": status.result()["services"], "hosts": disks.result(),
                  "database": db.result(), "backups": saved.result(), "threshold": threshold,
                  "groups": {h.name: list(h.groups) for h in inv.hosts.values()}}
    report["problems"], report["notes"] = problems(report, threshold)
    report["seconds"] = round(time.monotonic() - started, 2)
    return report


def problems(report: dict, threshold: int, now: float | None = None) -> tuple[list[str], list[str]]:
    """(problems, notes) of a report (pure): problems need a human, notes are intentional states."""
    now = time.time() if now is None else now
    found, notes = [], []
    for name, h in report["hosts"].items():
        if "error" in h:
            found.append(f"{name}: does not answer ({h['error']})")
            continue
        for m in h["mounts"]:
            if m["percent"] >= threshold:
                found.append(f"{name}: {m['mount']} is {m['percent']}% full (threshold {threshold}%)")
    for svc in report["services"]:
        name, lock = svc["service"], svc["lock"]
        up = 0
        for h in svc["hosts"]:
            if h["active"] != "active" and not str(h["active"]).startswith("unreachable"):
                found.append(f"{h['host']}: {name} unit is {h['active'] or 'missing'}")
            if not svc.get("balanced", True):  # behind no balancer: a host serves when its unit runs
                up += h["active"] == "active"
                continue
            bal = h["balancer"]
            if bal == "UP":
                up += 1
            elif bal == "DRAIN":
                notes.append(f"{h['host']}: drained from {name} (roadie ops enable {h['host']} puts it back)")
            elif not (lock and bal.startswith(("DOWN", "MAINT"))):  # a host in a deploy is out briefly
                found.append(f"{h['host']}: {bal} in the balancer's {name} backend")
        if not up:
            found.append(f"{name}: no host in service")
        if len(svc["versions"]) > 1 and not lock:
            found.append(f"{name}: version drift ({', '.join(svc['versions'])}) with no deploy running")
        if lock:
            if datetime.fromisoformat(lock["expires_at"]).timestamp() < now:
                found.append(f"{name}: lock held past its lease by {lock['describe']} "
                             f"(`roadie lock release {name} --force` if that run is dead)")
            else:
                notes.append(f"{name}: locked by {lock['describe']}")
        mt = svc.get("maintenance") or {}
        if mt.get("error"):
            found.append(f"{name}: maintenance state {mt['error']}")
        elif mt.get("on"):
            notes.append(f"{name}: in maintenance (503, Retry-After {mt['retry_after']} s)")
    found += database.problems(report["database"])
    found += backup_problems(report.get("backups"))
    if report.get("backups") is None:
        notes.append("backups: none configured in this environment (no backup age to check)")
    return found, notes


def _backups(environment: Environment) -> dict | None:
    """The last base backup's age and WAL archiving (roadie db status's figures); None with no backups bucket."""
    if not (environment.vars.get("roadie_buckets") or {}).get("backups"):
        return None
    from roadie.db import backups

    try:
        return backups.backup_status(environment)
    except Exception as exc:  # the report goes on: a backup store that cannot be read is itself a problem
        return {"error": getattr(exc, "message", None) or str(exc)}


def backup_line(b: dict | None) -> str:
    """The backups in one line for a person (pure)."""
    if b is None:
        return "none configured"
    if "error" in b:
        return f"unreadable: {b['error']}"
    age = b.get("last_backup_age_s")
    wal = b.get("archive_age_s")
    return (f"{b.get('backups', 0)} base backup(s), the last {age / 3600:.1f} h ago" if age is not None
            else "no base backup") + (f"; last WAL archived {wal} s ago" if wal is not None else "")


def backup_problems(b: dict | None, max_age: float = MAX_BACKUP_AGE) -> list[str]:
    """No base backup, an old one, or WAL archiving failing: a restore would lose data (pure)."""
    if b is None:
        return []
    if "error" in b:
        return [f"backups: cannot be read ({b['error']})"]
    found = []
    if not b.get("backups"):
        found.append("backups: no base backup in the backups bucket (`roadie db backup`)")
    elif (b.get("last_backup_age_s") or 0) > max_age:
        found.append(f"backups: the last base backup is {b['last_backup_age_s'] / 3600:.0f} h old "
                     f"(over {max_age / 3600:.0f} h)")
    if b.get("last_failed_wal") and (b.get("last_archived_wal") or "") <= b["last_failed_wal"]:
        found.append(f"backups: WAL archiving is failing (last failed segment {b['last_failed_wal']}, "
                     f"{b.get('failed_count')} failure(s))")
    return found


def rows(report: dict) -> list[tuple]:
    """One row per host: what it runs, version, unit, balancer, fullest mount."""
    groups = report.get("groups", {})
    by_host: dict[str, dict] = {n: {"role": ",".join(groups.get(n, [])), "version": "", "unit": "", "balancer": ""}
                                for n in report["hosts"]}
    for svc in report["services"]:
        for h in svc["hosts"]:
            by_host.setdefault(h["host"], {}).update(role=svc["service"], version=h["current"] or "",
                                                     unit=h["active"], balancer=h["balancer"])
    for m in report["database"]:
        by_host.setdefault(m["host"], {}).update(role=f"db {m['role']}", unit=m["state"],
                                                 balancer=f"lag {m['lag']:.1f} s" if m["lag"] is not None else "")
    out = []
    for name, h in by_host.items():
        d = report["hosts"].get(name, {})
        fullest = max(d.get("mounts", []), key=lambda m: m["percent"], default=None)
        out.append((name, "no" if "error" in d else "yes", h.get("role", ""), h.get("version", ""),
                    h.get("unit", ""), h.get("balancer", ""), f"{fullest['percent']}% {fullest['mount']}"
                    if fullest else ""))
    return out
