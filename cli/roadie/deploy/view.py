"""The live picture of a rollout on a terminal: each host's step, the batches, the clock.

Built only from the engine's events, so what the SRE watches is what
`--output json` and the audit log say; a CI log gets the event lines alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from roadie.events import Kind

STEPS = ("drain", "switch", "restart", "health", "enable")


@dataclass
class HostRow:
    name: str
    moves: str
    state: str = "waiting"
    since: float = 0.0
    style: str = "dim"


@dataclass
class RolloutView:
    title: str
    hosts: dict[str, HostRow]
    batches: int
    batches_done: int = 0
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def of(cls, prepared) -> "RolloutView":
        p = prepared.plan
        rows = {h: HostRow(h, f"{m.from_version or '(none)'} -> {m.to_version}") for h, m in p.moves.items()}
        return cls(f"{prepared.operation} {p.service} {p.version} in {prepared.env}", rows, len(p.batches))

    def _set(self, host: str | None, state: str, style: str) -> None:
        row = self.hosts.get(host or "")
        if row:
            row.state, row.style, row.since = state, style, time.monotonic()

    def apply(self, ev) -> None:
        """Move the picture on by one engine event (unknown kinds change nothing)."""
        f = ev.fields
        if ev.kind == Kind.BATCH_STARTED:
            for h in f.get("hosts", []):
                self._set(h, "drain", "yellow")
        elif ev.kind == Kind.HOST_STEP:
            following = STEPS[STEPS.index(f["step"]) + 1:] if f.get("step") in STEPS else ()
            if following:
                self._set(f["host"], following[0], "yellow")
        elif ev.kind == Kind.HOST_DONE:
            self._set(f.get("host"), "in service", "green")
        elif ev.kind == Kind.HOST_FAILED:
            self._set(f.get("host"), f"failed at {f.get('step')}", "red")
        elif ev.kind == Kind.HOST_REVERTED:
            self._set(f.get("host"), f"back on {f.get('to')}", "magenta")
        elif ev.kind == Kind.BATCH_DONE:
            self.batches_done = f.get("index", self.batches_done + 1)

    def rows(self, now: float | None = None) -> list[tuple[str, str, str, str]]:
        now = time.monotonic() if now is None else now
        return [(r.name, r.moves, r.state, f"{now - r.since:.1f} s" if r.state in STEPS else "")
                for r in self.hosts.values()]

    def summary(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        done = sum(1 for r in self.hosts.values() if r.state == "in service")
        return (f"batch {self.batches_done}/{self.batches} done · {done}/{len(self.hosts)} hosts in service · "
                f"{now - self.started:.0f} s")

    def __rich__(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        t = Table("host", "release", "step", "for", title=self.title, title_justify="left", box=None)
        for (name, moves, state, spent), row in zip(self.rows(), self.hosts.values(), strict=True):
            t.add_row(name, moves, state, spent, style=row.style)
        return Group(t, Text(self.summary(), style="bold"))


# -- `roadie status` as a table: one line per host ---------------------------------------------------------------

RELEASES_SHOWN = 3  # the newest releases named in a host's cell; `--output json` has them all


def newest_first(releases: list[str]) -> list[str]:
    """Releases by SemVer precedence, newest first (the host lists them by name: 1.10.0 before 1.9.0);
    a name that is no version goes last, as listed."""
    import semver

    def key(name: str):
        try:
            return (1, semver.Version.parse(name))
        except (ValueError, TypeError):
            return (0, semver.Version(0))

    return sorted(releases, key=key, reverse=True)


def releases_cell(releases: list[str], shown: int = RELEASES_SHOWN) -> str:
    """"7: 1.2.0, 1.1.0, 1.0.1 …": how many releases are on disk and the newest few."""
    if not releases:
        return "none"
    newest = newest_first(releases)
    return f"{len(newest)}: {', '.join(newest[:shown])}" + (" …" if len(newest) > shown else "")


STATUS_COLUMNS = ("host", "version", "previous", "releases", "unit", "balancer")


def status_table(hosts: list[dict]) -> tuple[list[tuple], list[str]]:
    """(rows, notes) of one service's hosts in `roadie status`: a short cell each, so a host is one line;
    an unreachable host is marked in its row and its error is a note ("catalog-2: <error>") under the table."""
    rows, notes = [], []
    for h in hosts:
        error = h.get("error")
        if error:
            notes.append(f"{h['host']}: {error}")
        rows.append((h["host"], h["current"], h["previous"], "" if error else releases_cell(h["releases"]),
                     "unreachable" if error else h["active"], h["balancer"]))
    return rows, notes
