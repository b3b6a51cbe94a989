"""Logs: a tier's journal on every host at once, each line prefixed with its host.

The units of each host come from what it runs: a tier's host the units its
kind names (model.Tier.log_units), the load balancer HAProxy, a database host
Patroni, etcd and PostgreSQL. `--grep` filters on the
host (less to carry), `--lines` keeps the last N matching lines per host.

Hosts with the same units are asked together, through the transport's
run_each: SSH or SSM alike for a read; a follow needs a transport that streams
(SSH), and is refused up front on one that does not (SSM).
"""

from __future__ import annotations

import re
import shlex
import threading
from typing import Callable

from roadie import inventory, model, procs
from roadie.errors import BadInput

MAX_LINES = 10_000
READ_SECONDS = 300  # one host's read of its journal (a --since far back, a --grep through it) ends within this


def units(stack: model.Stack, host: inventory.Host) -> list[str]:
    """The systemd units whose journal is the host's log, from its groups."""
    found = [u for s in stack.services.values() if s.group in host.groups for u in s.log_units]
    if stack.loadbalancer.group in host.groups:
        found.append("haproxy.service")
    if stack.database.group in host.groups:
        found += ["patroni.service", "etcd.service", "postgresql*"]  # Patroni runs PostgreSQL: its log is Patroni's
    return found


def by_units(stack: model.Stack, hosts: list[inventory.Host]) -> dict[tuple[str, ...], list[inventory.Host]]:
    """Hosts grouped by the units of their log, in inventory order: one run_each per group."""
    groups: dict[tuple[str, ...], list[inventory.Host]] = {}
    for h in hosts:
        groups.setdefault(tuple(units(stack, h)), []).append(h)
    return groups


def check_follow(env: str, connection: str, follow: bool) -> None:
    """An unknown roadie_connection, or --follow over a transport with no stream (SSM), is refused in one line
    before any host is asked."""
    from roadie.transport import registry

    kind = registry.kind_of(env, connection)
    if follow and not kind.streams:
        raise BadInput(f"`roadie ops logs --follow` needs each line as the hosts write it, and the {env} inventory "
                       f"reaches them by {connection}: SSM Run Command returns a command's output only when it "
                       "ends. Leave out --follow (the last lines of every host), or use `aws ssm start-session "
                       "--target INSTANCE-ID`.")


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


def read(transport, stack: model.Stack, hosts: list[inventory.Host], lines: int = 200, since: str | None = None,
         grep: str | None = None) -> tuple[list[tuple[str, str]], list[str]]:
    """(host, line) of every host in time order, and one line per host that gave none (its error)."""
    collected: dict[str, list[str]] = {}
    failed: list[str] = []
    for unit_names, group in by_units(stack, hosts).items():
        results = transport.run_each(group, command(list(unit_names), lines, since, grep), "reading the journal",
                                     timeout=READ_SECONDS)
        for name, r in results.items():
            if r.exit != 0:
                failed.append(f"{name}: {r.error or procs.last_line(r.stderr, f'exit {r.exit}')}")
            collected[name] = r.stdout.splitlines()
    return merge(collected), failed


def follow(transport, stack: model.Stack, hosts: list[inventory.Host], show: Callable[[str, str], None],
           lines: int = 200, since: str | None = None, grep: str | None = None) -> tuple[bool, list[str]]:
    """Every host's new lines to `show(host, line)` as they come, until Ctrl-C (then the transport is stopped:
    its connections closed, the remote journalctl hung up). Whether Ctrl-C ended it, and the hosts that could
    not be followed (their error)."""
    ended: list[dict] = []

    def each(group, cmd):
        ended.append(transport.run_each(group, cmd, "following the journal", on_line=show, follow=True))

    threads = [threading.Thread(target=each, args=(group, command(list(u), lines, since, grep, True)), daemon=True)
               for u, group in by_units(stack, hosts).items()]
    for t in threads:
        t.start()
    stopped = False
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(0.2)
    except KeyboardInterrupt:
        stopped = True
        transport.stop()
        for t in threads:
            t.join(10)
    failed = [f"{name}: {r.error or procs.last_line(r.stderr, f'exit {r.exit}')}"
              for results in ended for name, r in results.items() if r.exit not in (0, None) or
              (r.exit is None and r.error != "stopped")]
    return stopped, failed
