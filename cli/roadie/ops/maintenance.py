"""Maintenance mode per service: the balancer answers 503 with Retry-After and a short page.

How each balancer does it (HAProxy's maintenance map, the ALB's fixed-response
rules) is the balancer's own (Balancer.maintenance/set_maintenance, made by
roadie.balancer's registry); this is the on-call operation: checked before any
prompt, planned, switched on every balancer host or none, audited.
"""

from __future__ import annotations

import time

from roadie import model
from roadie.balancer import base
from roadie.environment import Environment
from roadie.errors import BadInput
from roadie.ops import common

DEFAULT_RETRY_AFTER = base.DEFAULT_RETRY_AFTER


def parse_switch(value: str) -> bool:
    v = value.strip().lower()
    if v not in ("on", "off"):
        raise BadInput(f"Maintenance is 'on' or 'off', not '{value}'.")
    return v == "on"


def check(stack: model.Stack, service: str, on: bool, retry_after: int) -> model.Tier:
    """The service, or BadInput before anything is read or changed."""
    svc = stack.service(service)
    if svc.balancer is None:
        raise BadInput(f"{service} is not behind the balancer (its model entry has no balancer section): it has "
                       "no route to answer 503 on.")
    if on and not 1 <= retry_after <= 86400:
        raise BadInput("--retry-after must be between 1 and 86400 seconds.")
    return svc


def switch(environment: Environment, service: str, on: bool, retry_after: int = DEFAULT_RETRY_AFTER,
           message: str = "", plan_only: bool = False) -> dict:
    """Turn a service's maintenance mode on or off on the environment's balancer; audited.

    `plan_only` reads and changes nothing.
    """
    svc = check(environment.stack, service, on, retry_after)
    balancer = environment.balancer
    before = balancer.maintenance()
    was = svc.backend in before
    doc = {"service": service, "backend": svc.backend, "route": svc.balancer.route_prefix, "was_on": was,
           "on": on, "retry_after": retry_after if on else None, "balancers": balancer.names,
           "changed": was != on or (on and before.get(svc.backend) != retry_after)}
    if plan_only:
        return {**doc, "plan": True}
    started, result = time.time(), "failed"
    with common.uninterrupted():  # every balancer switched, and audited, or none touched
        try:
            if doc["changed"]:
                balancer.set_maintenance(svc.backend, retry_after if on else None)
            result = "ok"
        finally:
            environment.audit(f"maintenance.{'on' if on else 'off'}", result, service=service, started=started,
                              retry_after=doc["retry_after"], message=message, changed=doc["changed"])
    return {**doc, "result": result}
