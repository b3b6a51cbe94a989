"""Logs: a tier's journal on every host at once, each line prefixed with its host.

The unit of each host comes from what it runs: a service host its service, the
load balancer HAProxy, a database host PostgreSQL. `--grep` filters on the
host (less to carry), `--lines` keeps the last N matching lines per host.
"""

from __future__ import annotations

import re
import shlex

from roadie import inventory, model
from roadie.errors import BadInput

MAX_LINES = 10_000


def units(stack: model.Stack, host: inventory.Host) -> list[str]:
    """The systemd units whose journal is the host's log, from its groups."""
    found = [f"{s.name}.service" for s in stack.services.values() if s.group in host.groups]
    if stack.loadbalancer.group in host.groups:
        found.append("haproxy.service")
    if stack.database.group in host.groups:
        found += ["patroni.service", "etcd.service", "postgresql*"]  # Patroni runs PostgreSQL: its log is Patroni's
    return found


def check(lines: int, grep: str | None, since: str | None) -> None:
    if not 1 <= lines <= MAX_LINES:
        raise BadInput(f"--lines must be between 1 and {MAX_LINES}.")
    if grep is not None:
        if not grep:
            raise BadInput("--grep needs a pattern.")
        try:
            re.compile(grep)
        except re.error as exc:
            raise BadInput(f"--grep '{grep}' is not a regular expression: {exc}.") from None
    if since is not None and (not since.strip() or "\n" in since):
        raise BadInput("--since needs a time journalctl understands (e.g. '1h ago', 'today', '2026-11-23 10:00').")


def command(unit_names: list[str], lines: int = 200, since: str | None = None, grep: str | None = None,
            follow: bool = False) -> str:
    """The journalctl line for one host (short-iso timestamps, so hosts' lines merge in time order)."""
    base = ["journalctl", "--no-pager", "-o", "short-iso"]
    for u in unit_names:
        base += ["-u", u]
    if since:
        base += ["--since", since]
    j = " ".join(shlex.quote(a) for a in base)
    if follow:
        j += f" -f -n {lines}" if not grep else " -f -n 1000"
        return j + (f" | grep --line-buffered -E -e {shlex.quote(grep)}" if grep else "")
    if grep:  # filter first, then the last N of what matched
        return f"{j} | grep -E -e {shlex.quote(grep)} | tail -n {lines}"
    return f"{j} -n {lines}"


def merge(per_host: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(host, line) in time order across hosts (short-iso stamps sort as text); journal notes dropped."""
    rows = [(line, host) for host, lines in per_host.items() for line in lines
            if line.strip() and not line.startswith("-- ")]
    rows.sort(key=lambda r: r[0][:24])
    return [(host, line) for line, host in rows]
