"""Disk: usage per host and mount with the top consumers; `clean` prunes releases and vacuums journals.

Releases go by the deploy's own prune rule (release_host.prunable/prune: never
`current`, never `previous`, newest kept), under the service's deploy lock so
no deploy switches releases meanwhile. Journals are vacuumed to a size bound.
"""

from __future__ import annotations

import shlex
import time

from roadie import inventory, model
from roadie.commands import release_host
from roadie.environment import Environment
from roadie.errors import BadInput
from roadie.ops import common

DEFAULT_THRESHOLD = 85  # percent used that needs a human
JOURNAL_BOUND = "200M"
TOP = 5
# Where disk goes on a roadie host: releases, journals, the database, caches, scratch.
CONSUMERS = ("/srv/*/releases/*", "/var/log/journal", "/var/lib/postgresql", "/var/cache/apt", "/tmp", "/var/tmp",
             "/home")
FS_SKIPPED = ("tmpfs", "devtmpfs", "squashfs", "proc", "sysfs", "cgroup2", "efivarfs")


def usage_cmd(top: int = TOP) -> str:
    """df of real file systems, a separator, then the largest known consumers (bytes, path)."""
    skip = " ".join(f"-x {t}" for t in FS_SKIPPED)
    return (f"df -PB1 {skip} && echo --- && "
            f"(du -xsB1 {' '.join(CONSUMERS)} 2>/dev/null || true) | sort -rn | head -n {top}")


def parse_usage(text: str) -> dict:
    """{"mounts": [{mount, size, used, avail, percent}], "top": [{path, bytes}]} from usage_cmd's output."""
    df, _, du = text.partition("\n---\n")
    mounts, seen = [], set()
    for line in df.strip().splitlines()[1:]:
        parts = line.split()
        if len(parts) < 6 or parts[5] in seen:
            continue
        seen.add(parts[5])
        size, used, avail = int(parts[1]), int(parts[2]), int(parts[3])
        mounts.append({"mount": parts[5], "size": size, "used": used, "avail": avail,
                       "percent": round(100 * used / (used + avail)) if used + avail else 0})
    top = [{"path": p.split(None, 1)[1], "bytes": int(p.split(None, 1)[0])} for p in du.strip().splitlines()
           if p.strip()]
    return {"mounts": mounts, "top": top}


def services_on(stack: model.Stack, host: inventory.Host) -> list[str]:
    return [s.name for s in stack.services.values() if s.group in host.groups]


def plan_cmd(service: str, keep: int) -> str:
    """The releases prune would remove, with their sizes: "bytes<TAB>name" lines."""
    return f"{release_host.prunable(service, keep)} | xargs -r du -sB1 --"


def journal_cmd() -> str:
    return "du -sB1 /var/log/journal 2>/dev/null | cut -f1 || echo 0"


def vacuum_cmd(bound: str) -> str:
    return f"journalctl --vacuum-size={shlex.quote(bound)} >/dev/null 2>&1; {journal_cmd()}"


def parse_sizes(text: str) -> list[dict]:
    return [{"release": line.split("\t", 1)[1], "bytes": int(line.split("\t", 1)[0])}
            for line in text.strip().splitlines() if "\t" in line]


def check_bound(bound: str) -> str:
    import re

    if not re.fullmatch(r"[1-9][0-9]*[KMG]", bound):
        raise BadInput(f"--journal-size '{bound}' is not a size such as 200M or 1G.")
    return bound


def check(environment: Environment, names: list[str] | None, keep: int, journal_size: str
          ) -> list[inventory.Host]:
    """The hosts to clean, or BadInput before anything is read or changed."""
    if keep < 2:
        raise BadInput("--keep must be at least 2: `current` and `previous` always stay.")
    check_bound(journal_size)
    inv = environment.inventory
    return common.select(inv, names) if names is not None else list(inv.hosts.values())  # [] is refused


def usage(environment: Environment, names: list[str] | None = None, top: int = TOP) -> dict[str, dict]:
    """Per host: mounts and top consumers (or {"error": ...} for a host that did not answer)."""
    inv = environment.inventory
    hosts = common.select(inv, names) if names is not None else list(inv.hosts.values())  # [] is refused
    transport = environment.transport
    return common.on_hosts(hosts, lambda h: parse_usage(transport.run(h, usage_cmd(top), "reading disk usage")))


def clean(environment: Environment, names: list[str] | None = None, keep: int = release_host.KEEP_RELEASES,
          journal_size: str = JOURNAL_BOUND, plan_only: bool = False, message: str = "") -> dict[str, dict]:
    """Per host: releases beyond `keep` (removed unless plan_only) and the journal vacuumed to a bound."""
    hosts = check(environment, names, keep, journal_size)
    stack = environment.stack
    services = sorted({s for h in hosts for s in services_on(stack, h)})
    transport = environment.transport
    locks = []
    started, result = time.time(), "failed"
    try:
        if not plan_only:
            from roadie.state import table

            for s in services:  # no deploy switches releases while they are pruned
                lock = environment.lock(s)
                lock.acquire(table.actor(), "ops disk clean", message)
                locks.append(lock)

        def one(h: inventory.Host) -> dict:
            doc = {"releases": {}, "freed": 0}
            for s in services_on(stack, h):
                gone = parse_sizes(transport.run(h, plan_cmd(s, keep), f"listing old {s} releases"))
                if gone and not plan_only:
                    transport.run(h, release_host.prune(s, keep), f"pruning {s} releases")
                doc["releases"][s] = gone
                doc["freed"] += sum(r["bytes"] for r in gone)
            before = int(transport.run(h, journal_cmd(), "reading journal usage").strip() or 0)
            after = before if plan_only else int(transport.run(h, vacuum_cmd(journal_size), "vacuuming journals")
                                                 .strip() or 0)
            doc["journal"] = {"before": before, "after": after, "bound": journal_size}
            doc["freed"] += max(0, before - after)
            return doc

        done = common.on_hosts(hosts, one)
        result = "ok" if not any("error" in d for d in done.values()) else "failed"
        return done
    finally:
        try:
            if not plan_only:
                environment.audit("disk.clean", result, service=",".join(services) or "-", started=started,
                                  hosts=[h.name for h in hosts], keep=keep, journal_size=journal_size,
                                  message=message)
        finally:
            for lock in locks:
                lock.release()


def human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
