"""`roadie status`: what runs where, read from the hosts, the balancer and the lock."""

from __future__ import annotations

from roadie.deploy import engine
from roadie.environment import Environment
from roadie.errors import OperationFailed

NOT_BALANCED = "-"  # the balancer cell of a tier that is not behind the balancer


def _balancer_view(balancer, backend: str) -> dict[str, str]:
    try:
        return {n: s.status + ("" if s.weight or s.status != "UP" else " (weight 0)")
                for n, s in balancer.servers(backend).items()}
    except OperationFailed as exc:
        return {"*": f"unknown: {exc.message}"}


def _maintenance_view(balancer) -> dict:
    """{backend: retry_after} of the backends in maintenance; {"*": why} when it cannot be read."""
    from roadie.errors import BadInput

    try:
        return balancer.maintenance()
    except (OperationFailed, BadInput) as exc:
        return {"*": f"unknown: {exc.message}"}


def unreachable_facts(exc: OperationFailed) -> dict:
    """What a host that does not answer reports: no releases known, its whole error apart (the table shows
    it under the rows; `active` keeps the "unreachable: ..." that health reads)."""
    return {"current": None, "previous": None, "releases": [], "active": f"unreachable: {exc.message}",
            "error": exc.message}


def collect(environment: Environment) -> dict:
    stack, inv = environment.stack, environment.inventory
    transport, balancer = environment.transport, environment.balancer
    services = []
    in_maintenance = _maintenance_view(balancer) if stack.balanced else {}
    for svc in stack.services.values():
        hosts = inv.group(svc.group)
        deps = engine.Deps(service=svc, hosts={h.name: h for h in hosts}, transport=transport, balancer=balancer)
        facts = engine.host_facts(deps, list(deps.hosts), unreachable=unreachable_facts)
        rows = [{"host": n, **{k: f.get(k) for k in ("current", "previous", "releases", "active")},
                 **({"error": f["error"]} if "error" in f else {})}
                for n, f in facts.items()]
        view = _balancer_view(balancer, svc.backend) if svc.balancer else {"*": NOT_BALANCED}
        for r in rows:
            r["balancer"] = view.get(r["host"], view.get("*", "not in balancer"))
        holder = environment.lock(svc.name).holder()
        services.append({"service": svc.name, "kind": svc.kind, "balanced": svc.balancer is not None,
                         "versions": sorted({r["current"] for r in rows if r["current"]}),
                         "hosts": rows,
                         "maintenance": {"on": svc.backend in in_maintenance,
                                         "retry_after": in_maintenance.get(svc.backend),
                                         "error": in_maintenance.get("*")} if svc.balancer else None,
                         "lock": {**holder.as_dict(), "describe": holder.describe()} if holder else None})
    return {"env": environment.name, "services": services}
