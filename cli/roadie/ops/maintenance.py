"""Maintenance mode per service: the balancer answers 503 with Retry-After and a short page.

HAProxy's frontend answers a service's route with its maintenance page while
the service's backend has an entry in the maintenance map (value: the
Retry-After seconds). roadie changes the map through the runtime API (no
reload: connections in flight are untouched) and writes the same entries to
the map file, so a reload or a converge keeps the state.
"""

from __future__ import annotations

import time

from roadie import inventory, model
from roadie.commands import haproxy as cmd
from roadie.deploy import run
from roadie.errors import BadInput, OperationFailed
from roadie.ops import common

DEFAULT_RETRY_AFTER = 300


class Maintenance:
    """The maintenance map on every load balancer host (the worst view wins: on anywhere is on)."""

    def __init__(self, transport, lbs: list[inventory.Host], socket: str, path: str):
        if not lbs:
            raise OperationFailed("No load balancer hosts in the inventory.")
        self.transport, self.lbs, self.socket, self.path = transport, lbs, socket, path

    def _read(self, lb) -> dict[str, str]:
        answer = self.transport.run(lb, cmd.show_map(self.socket, self.path), "reading the maintenance map")
        try:
            return cmd.parse_map(answer)
        except ValueError as exc:
            raise OperationFailed(f"{lb.name}: HAProxy runtime API: {exc} (is the load balancer converged?)") from None

    def state(self) -> dict[str, int]:
        """{backend: retry_after} of the backends in maintenance."""
        merged: dict[str, int] = {}
        for lb in self.lbs:
            for backend, value in self._read(lb).items():
                merged[backend] = int(value) if value.isdigit() else DEFAULT_RETRY_AFTER
        return merged

    def set(self, backend: str, retry_after: int | None) -> None:
        """On (retry_after seconds) or off (None) on every balancer: file first, then the runtime."""
        for lb in self.lbs:
            entries = self._read(lb)
            present = backend in entries
            if retry_after is None:
                if not present:
                    continue
                del entries[backend]
                runtime = cmd.del_map(self.socket, self.path, backend)
            else:
                entries[backend] = str(retry_after)
                runtime = cmd.put_map(self.socket, self.path, backend, str(retry_after), present)
            self.transport.run(lb, cmd.write_map_file(self.path, entries), "writing the maintenance map file")
            error = cmd.check_set(self.transport.run(lb, runtime, "changing the maintenance map"))
            if error:
                raise OperationFailed(f"{lb.name}: maintenance of {backend}: HAProxy said: {error}")
            if (backend in self._read(lb)) != (retry_after is not None):
                raise OperationFailed(f"{lb.name}: the maintenance map did not take the change of {backend}")


def for_env(inv: inventory.Inventory, transport, stack: model.Stack | None = None) -> Maintenance:
    stack = stack or model.load()
    kind = str(inv.env_vars.get("roadie_balancer", "haproxy"))
    if kind != "haproxy":
        raise BadInput(f"The {inv.env} inventory's balancer is '{kind}'; maintenance mode is built for 'haproxy' "
                       "only so far (an ALB fixed-response rule is planned).")
    lb = stack.loadbalancer
    return Maintenance(transport, inv.group(lb.group), lb.admin_socket, lb.maintenance_map)


def parse_switch(value: str) -> bool:
    v = value.strip().lower()
    if v not in ("on", "off"):
        raise BadInput(f"Maintenance is 'on' or 'off', not '{value}'.")
    return v == "on"


def check(service: str, on: bool, retry_after: int) -> model.Service:
    """The service, or BadInput before anything is read or changed."""
    svc = model.load().service(service)
    if on and not 1 <= retry_after <= 86400:
        raise BadInput("--retry-after must be between 1 and 86400 seconds.")
    return svc


def switch(env: str, service: str, on: bool, retry_after: int = DEFAULT_RETRY_AFTER, message: str = "",
           plan_only: bool = False) -> dict:
    """Turn a service's maintenance mode on or off; audited. `plan_only` reads and changes nothing."""
    stack = model.load()
    svc = check(service, on, retry_after)
    inv = inventory.load(env)
    transport = run.transport_for(inv)
    try:
        m = for_env(inv, transport, stack)
        before = m.state()
        was = svc.backend in before
        doc = {"service": service, "backend": svc.backend, "route": svc.route_prefix, "was_on": was,
               "on": on, "retry_after": retry_after if on else None,
               "balancers": [h.name for h in m.lbs], "changed": was != on or (on and before.get(svc.backend)
                                                                               != retry_after)}
        if plan_only:
            return {**doc, "plan": True}
        started, result = time.time(), "failed"
        try:
            if doc["changed"]:
                m.set(svc.backend, retry_after if on else None)
            result = "ok"
        finally:
            common.audit(env, f"maintenance.{'on' if on else 'off'}", service, started, result,
                         retry_after=doc["retry_after"], message=message, changed=doc["changed"])
        return {**doc, "result": result}
    finally:
        transport.close()
