"""The live picture of a rollout on a terminal: each host's step, the batches, the clock.

Built only from the engine's events, so what the SRE watches is what
`--output json` and the audit log say; a CI log gets the event lines alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

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
        if ev.kind == "deploy.batch.started":
            for h in f.get("hosts", []):
                self._set(h, "drain", "yellow")
        elif ev.kind == "deploy.host.step":
            following = STEPS[STEPS.index(f["step"]) + 1:] if f.get("step") in STEPS else ()
            if following:
                self._set(f["host"], following[0], "yellow")
        elif ev.kind == "deploy.host.done":
            self._set(f.get("host"), "in service", "green")
        elif ev.kind == "deploy.host.failed":
            self._set(f.get("host"), f"failed at {f.get('step')}", "red")
        elif ev.kind == "deploy.host.reverted":
            self._set(f.get("host"), f"back on {f.get('to')}", "magenta")
        elif ev.kind == "deploy.batch.done":
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
