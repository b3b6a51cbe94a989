"""HAProxy on every load balancer host, through its admin socket over the transport (roadie_balancer: haproxy).

Drain and ready set the server's state. Maintenance mode is the maintenance
map (backend -> Retry-After seconds): HAProxy's frontend answers a mapped
backend's route with 503 and its page. roadie changes the map through the
runtime API (no reload: connections in flight are untouched) and writes the
same entries to the map file, so a reload or a converge keeps the state.
"""

from __future__ import annotations

from roadie.balancer.base import DEFAULT_RETRY_AFTER
from roadie.commands import haproxy as cmd
from roadie.commands.haproxy import Server
from roadie.errors import OperationFailed
from roadie.inventory import Host

RUNTIME_SECONDS = 30  # one admin-socket exchange (socat waits 10 s for HAProxy's answer)


class HAProxy:
    """Every balancer host's HAProxy as one balancer: the worst view wins, every change goes to each."""

    kind = "haproxy"

    def __init__(self, transport, hosts: list[Host], socket: str, maintenance_map: str):
        if not hosts:
            raise OperationFailed("No load balancer hosts in the inventory.")
        self.transport = transport
        self.hosts = hosts
        self.socket = socket
        self.map = maintenance_map
        self.names = [h.name for h in hosts]

    @classmethod
    def from_inventory(cls, inv, transport, stack, client=None) -> HAProxy:
        """HAProxy is asked over the transport, on the balancer hosts: no AWS client (`client` unused)."""
        lb = stack.loadbalancer
        return cls(transport, inv.group(lb.group), lb.admin_socket, lb.maintenance_map)

    # -- servers --------------------------------------------------------------------

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

    # -- maintenance map ------------------------------------------------------------

    def _read_map(self, lb: Host) -> dict[str, str]:
        answer = self.transport.run(lb, cmd.show_map(self.socket, self.map), "reading the maintenance map")
        try:
            return cmd.parse_map(answer)
        except ValueError as exc:
            raise OperationFailed(f"{lb.name}: HAProxy runtime API: {exc} (is the load balancer converged?)") from None

    def maintenance(self) -> dict[str, int]:
        """{backend: retry_after} of the backends in maintenance on any balancer host (on anywhere is on)."""
        merged: dict[str, int] = {}
        for lb in self.hosts:
            for backend, value in self._read_map(lb).items():
                merged[backend] = int(value) if value.isdigit() else DEFAULT_RETRY_AFTER
        return merged

    def set_maintenance(self, backend: str, retry_after: int | None) -> None:
        """On (retry_after seconds) or off (None) on every balancer host: file first, then the runtime."""
        for lb in self.hosts:
            entries = self._read_map(lb)
            present = backend in entries
            if retry_after is None:
                if not present:
                    continue
                del entries[backend]
                runtime = cmd.del_map(self.socket, self.map, backend)
            else:
                entries[backend] = str(retry_after)
                runtime = cmd.put_map(self.socket, self.map, backend, str(retry_after), present)
            self.transport.run(lb, cmd.write_map_file(self.map, entries), "writing the maintenance map file")
            error = cmd.check_set(self.transport.run(lb, runtime, "changing the maintenance map"))
            if error:
                raise OperationFailed(f"{lb.name}: maintenance of {backend}: HAProxy said: {error}")
            if (backend in self._read_map(lb)) != (retry_after is not None):
                raise OperationFailed(f"{lb.name}: the maintenance map did not take the change of {backend}")
