"""What the deploy engine, status and maintenance mode ask of a balancer, whatever its kind.

Several balancer hosts are one Balancer: it merges their views (the worst one
wins) and changes every one of them. `Server` (roadie.commands.haproxy) is the
view every kind reports, in HAProxy's terms.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from roadie.commands.haproxy import Server

DEFAULT_RETRY_AFTER = 300  # seconds, when a maintenance entry does not say


@runtime_checkable
class Balancer(Protocol):
    kind: str  # the inventory's roadie_balancer
    names: list[str]  # the balancer hosts, or the ALB, for reports

    def servers(self, backend: str) -> dict[str, Server]:
        """Each server of `backend` by host name."""

    def drain(self, backend: str, server: str) -> None:
        """Out of rotation; sessions in flight finish."""

    def ready(self, backend: str, server: str) -> None:
        """Back in rotation."""

    def drain_seconds(self, backend: str) -> int:
        """The balancer's own drain delay: the engine's drain wait lasts at least that long."""

    def maintenance(self) -> dict[str, int]:
        """{backend: Retry-After seconds} of the backends in maintenance."""

    def set_maintenance(self, backend: str, retry_after: int | None) -> None:
        """Maintenance on (Retry-After seconds) or off (None) for `backend`."""
