"""Typed events: what roadie says while it works.

One schema for the terminal, `--output json` (JSON lines) and the audit log, so
a CI job, an SRE and a later analysis all read the same facts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    """The deploy engine's event kinds: the journal, the rollout view and resume match on these, never on
    string literals (a renamed kind is then one edit, not a silent miss)."""

    STAGED = "deploy.staged"
    MIGRATED = "deploy.migrated"
    BATCH_STARTED = "deploy.batch.started"
    BATCH_DONE = "deploy.batch.done"
    HOST_STEP = "deploy.host.step"
    HOST_DONE = "deploy.host.done"
    HOST_FAILED = "deploy.host.failed"
    HOST_REVERTED = "deploy.host.reverted"
    HOST_DRAIN_TIMEOUT = "deploy.host.drain_timeout"
    CAPACITY_WAITING = "deploy.capacity.waiting"
    CANARY_BAKING = "deploy.canary.baking"
    CANARY_VERDICT = "deploy.canary.verdict"
    REVERT_STARTED = "deploy.revert.started"
    RESUME_SETTLED = "deploy.resume.settled"
    PRUNE_FAILED = "deploy.prune_failed"
    LOCK_WAITING = "lock.waiting"
    LOCK_LOST = "lock.lost"
    DEPLOY_LOCK_LOST = "deploy.lock_lost"
    INTERRUPT = "interrupt"


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
