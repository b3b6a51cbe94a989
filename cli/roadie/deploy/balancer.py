"""The balancer a deploy drains and re-enables hosts in: HAProxy's runtime API locally.

The engine sees only `servers`, `drain`, `ready` and `weight`; an ELBv2 target
group implementation can stand beside HAProxy without the engine changing.
"""

from __future__ import annotations

from roadie.commands import haproxy as cmd
from roadie.commands.haproxy import Server
from roadie.errors import OperationFailed
from roadie.inventory import Host

RUNTIME_SECONDS = 30  # one admin-socket exchange (socat waits 10 s for HAProxy's answer)


class HAProxy:
    """Every load balancer host's HAProxy, through its admin socket over the transport."""

    kind = "haproxy"

    def __init__(self, transport, hosts: list[Host], socket: str):
        if not hosts:
            raise OperationFailed("No load balancer hosts in the inventory to drain hosts in.")
        self.transport = transport
        self.hosts = hosts
        self.socket = socket

    def servers(self, backend: str) -> dict[str, Server]:
        """Each server of `backend` as the balancers see it; with several balancers the worst view wins."""
        merged: dict[str, Server] = {}
        for lb in self.hosts:
            answer = self.transport.run(lb, cmd.show_stat(self.socket), "reading HAProxy stats",
                                        timeout=RUNTIME_SECONDS)
            try:
                stats = cmd.parse_stat(answer)
            except ValueError as exc:
                raise OperationFailed(f"{lb.name}: HAProxy runtime API: {exc}") from None
            for (bk, name), server in stats.items():
                if bk == backend and (name not in merged or not server.up):
                    merged[name] = server
        if not merged:
            raise OperationFailed(f"HAProxy on {', '.join(h.name for h in self.hosts)} has no backend '{backend}'.")
        return merged

    def _set(self, command: str, what: str) -> None:
        for lb in self.hosts:
            error = cmd.check_set(self.transport.run(lb, command, what, timeout=RUNTIME_SECONDS))
            if error:
                raise OperationFailed(f"{lb.name}: {what}: HAProxy said: {error}")

    def drain_seconds(self, backend: str) -> int:
        """HAProxy drains by sessions alone: no delay of its own to wait out."""
        return 0

    def drain(self, backend: str, server: str) -> None:
        self._set(cmd.set_state(self.socket, backend, server, "drain"), f"draining {backend}/{server}")

    def ready(self, backend: str, server: str) -> None:
        self._set(cmd.set_state(self.socket, backend, server, "ready"), f"enabling {backend}/{server}")

    def weight(self, backend: str, server: str, weight: str) -> None:
        self._set(cmd.set_weight(self.socket, backend, server, weight), f"weighting {backend}/{server}")
