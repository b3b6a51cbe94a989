"""Typed events: what roadie says while it works.

One schema for the terminal, `--output json` (JSON lines) and the audit log, so
a CI job, an SRE and a later analysis all read the same facts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """`kind` names what happened (`deploy.host.switched`); `fields` carry its facts."""

    kind: str
    fields: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)
    text: str = ""  # a human sentence for the terminal; empty to derive one from the facts

    def as_dict(self) -> dict[str, Any]:
        return {"event": self.kind, "ts": round(self.ts, 3), **self.fields}

    def sentence(self) -> str:
        if self.text:
            return self.text
        facts = " ".join(f"{k}={v}" for k, v in self.fields.items() if v not in (None, "", [], {}))
        return f"{self.kind} {facts}".strip()


def event(kind: str, text: str = "", **fields: Any) -> Event:
    return Event(kind=kind, fields=fields, text=text)
