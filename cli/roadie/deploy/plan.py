"""A deploy's plan: which hosts move, from which version to which, in which batches.

Pure: facts in (hosts, their current releases, the service model's limits, the
options), a Plan out. Everything a user can get wrong is refused here, before
anything touches a host.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from roadie.errors import BadInput

# Seconds a host takes in the rotation when nothing goes wrong (drain of an idle
# host, restart, health, balancer UP), for the --plan estimate.
HOST_SECONDS = 8.0


@dataclass(frozen=True)
class Move:
    host: str
    from_version: str | None
    to_version: str


@dataclass(frozen=True)
class Batch:
    index: int
    hosts: tuple[str, ...]
    canary: bool = False


@dataclass(frozen=True)
class Plan:
    service: str
    version: str  # the target; for a rollback to previous releases, "previous"
    batches: tuple[Batch, ...]
    moves: dict[str, Move] = field(default_factory=dict)
    unchanged: tuple[str, ...] = ()  # target hosts already on their target version
    max_fail: int = 0
    drain_timeout: int = 30
    min_healthy: int = 1

    @property
    def hosts(self) -> list[str]:
        return [h for b in self.batches for h in b.hosts]

    def expected_seconds(self) -> float:
        waits = sum(min(self.drain_timeout, 2) + HOST_SECONDS for _ in self.batches)
        return round(waits + 5.0, 1)  # preflight and stage

    def as_dict(self) -> dict:
        return {"service": self.service, "version": self.version, "max_fail": self.max_fail,
                "min_healthy": self.min_healthy, "drain_timeout": self.drain_timeout,
                "expected_seconds": self.expected_seconds(), "unchanged": list(self.unchanged),
                "batches": [{"index": b.index, "canary": b.canary,
                             "hosts": [{"host": h, "from": self.moves[h].from_version,
                                        "to": self.moves[h].to_version} for h in b.hosts]}
                            for b in self.batches]}


def batch_size(spec: str | None, total: int, min_healthy: int) -> int:
    """Hosts per batch from `N` or `N%` (default: as many as keep min_healthy in service, at most 25 %)."""
    room = total - min_healthy
    if spec is None:
        return max(1, min(math.ceil(total * 0.25), room)) if room > 0 else 1
    m = re.fullmatch(r"\s*(\d+)\s*(%?)\s*", spec)
    if not m:
        raise BadInput(f"--batch-size '{spec}' is not a number of hosts or a percentage (e.g. 2 or 25%).")
    value = int(m.group(1))
    if m.group(2):
        if not 0 < value <= 100:
            raise BadInput(f"--batch-size {spec} must be between 1% and 100%.")
        size = max(1, math.ceil(total * value / 100))
    else:
        size = value
    if size < 1:
        raise BadInput("--batch-size must be at least 1 host.")
    if size > total:
        raise BadInput(f"--batch-size {spec} is larger than the tier ({total} hosts).")
    return size


def build(service: str, version: str, targets: dict[str, str | None], *, to: dict[str, str] | None = None,
          batch: str | None = None, canary: int | None = None, max_fail: int = 0, min_healthy: int = 1,
          drain_timeout: int = 30, bring_up: bool = False) -> Plan:
    """Batches over `targets` (host -> current release, in inventory order).

    `to` gives each host its own target (rollback to previous releases);
    otherwise every host goes to `version`. `bring_up` (a first install, no
    traffic yet) puts every host in one batch and ignores min_healthy.
    """
    if not targets:
        raise BadInput(f"No hosts to deploy {service} to.")
    if max_fail < 0:
        raise BadInput("--max-fail must be 0 or more.")
    total = len(targets)
    to = to or {h: version for h in targets}
    moving = [h for h in targets if targets[h] != to[h]]
    unchanged = tuple(h for h in targets if h not in moving)
    if bring_up:
        size, min_healthy = total, 0
    else:
        if min_healthy >= total and total > 0:
            raise BadInput(f"{service} has {total} host(s) and a minimum of {min_healthy} healthy: "
                           "no host can be taken out of service. Add hosts or lower min_healthy in the model.")
        size = batch_size(batch, total, min_healthy)
        if size > total - min_healthy:
            raise BadInput(f"--batch-size {batch} would take {size} of {total} {service} hosts out of service "
                           f"at once; the model keeps at least {min_healthy} in service.")
    if canary is not None:
        if canary < 1:
            raise BadInput("--canary must be at least 1 host.")
        if canary > total:
            raise BadInput(f"--canary {canary} is larger than the tier ({total} hosts).")
        if not bring_up and canary > total - min_healthy:
            raise BadInput(f"--canary {canary} would take {canary} of {total} {service} hosts out of service "
                           f"at once; the model keeps at least {min_healthy} in service.")
    batches: list[Batch] = []
    rest = list(moving)
    if canary and rest:
        batches.append(Batch(index=1, hosts=tuple(rest[:canary]), canary=True))
        rest = rest[canary:]
    while rest:
        batches.append(Batch(index=len(batches) + 1, hosts=tuple(rest[:size])))
        rest = rest[size:]
    moves = {h: Move(h, targets[h], to[h]) for h in moving}
    return Plan(service=service, version=version, batches=tuple(batches), moves=moves, unchanged=unchanged,
                max_fail=max_fail, drain_timeout=drain_timeout, min_healthy=min_healthy)


def capacity(batch: list[str], up: set[str], tier: list[str], min_healthy: int) -> list[str]:
    """The part of `batch` that can leave service now without the tier falling below min_healthy.

    `up` are the hosts taking traffic in the balancer's live view; a batch host
    that is already out of service costs nothing to take out.
    """
    allowed = len([h for h in tier if h in up]) - min_healthy
    chosen = []
    for host in batch:
        if host not in up:
            chosen.append(host)
        elif allowed > 0:
            chosen.append(host)
            allowed -= 1
    return chosen
