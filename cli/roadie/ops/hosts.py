"""Take one host out of rotation by hand, or put it back, with the deploy engine's drain and enable.

The tier's minimum is checked with the planner's own capacity rule, against
the balancer's live view, so a hand drain cannot do what a deploy would refuse.
The service's deploy lock is held while the state changes, so a drain never
races a deploy of that service.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from roadie import inventory, model
from roadie.commands.haproxy import Server
from roadie.deploy import engine, run
from roadie.deploy import plan as planner
from roadie.environment import Environment
from roadie.errors import BadInput
from roadie.state import table


@dataclass
class Target:
    environment: Environment
    host: str
    service: model.Tier
    deps: engine.Deps

    @property
    def tier(self) -> list[str]:
        return list(self.deps.hosts)


def service_of(inv: inventory.Inventory, stack: model.Stack, host: str) -> model.Tier:
    """The tier a host serves behind the balancer; unknown hosts and hosts behind no balancer are bad input."""
    if host not in inv.hosts:
        raise BadInput(f"Unknown host '{host}': the {inv.env} inventory has {', '.join(inv.hosts)}.")
    for svc in stack.balanced:
        if svc.group in inv.hosts[host].groups:
            return svc
    runs = [s.name for s in stack.services.values() if s.group in inv.hosts[host].groups]
    raise BadInput(f"{host} is behind no balancer (it serves none of {', '.join(s.name for s in stack.balanced)}"
                   + (f"; it runs {', '.join(runs)}, which the balancer does not front" if runs else "")
                   + "); only hosts behind the balancer can be drained or enabled.")


def target(environment: Environment, host: str, emit=lambda ev: None) -> Target:
    svc = service_of(environment.inventory, environment.stack, host)
    deps = engine.Deps(service=svc, hosts={h.name: h for h in run.tier(environment, svc, None)},
                       transport=environment.transport, balancer=environment.balancer, emit=emit)
    return Target(environment, host, svc, deps)


def must_drain(servers: dict[str, Server], host: str, tier: list[str], min_healthy: int, service: str) -> bool:
    """True when `host` takes traffic and may leave it; False when it is out of rotation already.

    Refused (BadInput) when taking it out would leave the tier below its minimum healthy hosts.
    """
    if host not in servers:
        raise BadInput(f"{host} is not in the balancer's {service} backend; converge the load balancer first.")
    up = {n for n, s in servers.items() if s.up and n in tier}
    if host not in up:
        return False
    if not planner.capacity([host], up, tier, min_healthy):
        rest = sorted(up - {host})
        raise BadInput(f"Refusing to drain {host}: {service} would be left with {len(rest)} host(s) in service "
                       f"({', '.join(rest) or 'none'}), below its minimum of {min_healthy}; nothing was changed.")
    return True


def would_change(t: Target, servers: dict[str, Server], operation: str) -> bool:
    """Whether draining or enabling the host changes its state; the same decision for --plan and for real."""
    if operation == "drain":
        return must_drain(servers, t.host, t.tier, t.service.min_healthy, t.service.name)
    if t.host not in servers:
        raise BadInput(f"{t.host} is not in the balancer's {t.service.name} backend; converge the load balancer "
                       "first.")
    return not servers[t.host].up


def change(t: Target, operation: str, message: str = "") -> dict:
    """Drain the host (refused below the tier's minimum) and wait for its sessions, or put it back in rotation
    and wait until the balancer sees it UP; under the service lock, audited."""
    d, svc = t.deps, t.service
    actor = table.actor()
    lock = t.environment.lock(svc.name)
    lock.acquire(actor, f"ops {operation} {t.host}", message)
    started, result, doc = time.time(), "failed", {"host": t.host, "service": svc.name, "operation": operation}
    try:
        doc["changed"] = would_change(t, d.balancer.servers(svc.backend), operation)
        if operation == "enable":
            engine.enable(d, t.host)
        elif doc["changed"]:
            doc["sessions_left"] = engine.drain(d, t.host)
        doc["state"] = d.balancer.servers(svc.backend)[t.host].status
        result = "ok"
        return {**doc, "result": result}
    except BadInput:  # refused: nothing changed, nothing to record
        result = None
        raise
    finally:
        try:
            if result:
                t.environment.audit(operation, result, service=svc.name, started=started, host=t.host,
                                    message=message, changed=doc.get("changed"))
        finally:
            lock.release()
            d.transport.close()
