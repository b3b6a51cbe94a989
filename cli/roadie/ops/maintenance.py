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
        self.names = [h.name for h in lbs]

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


PAGE = ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{name}: maintenance</title></head>"
        "<body><h1>{name} is in maintenance</h1><p>We are doing some maintenance and will be back shortly "
        "(try again in {seconds} s).</p></body></html>")


class ALBMaintenance:
    """On AWS: a fixed-response 503 listener rule just ahead of the service's route rule on the ALB's listener.

    An ALB fixed response carries a status, a content type and a body, no other
    header: the Retry-After seconds go in the page and in the rule's tags.
    """

    TAG = "roadie:maintenance"

    def __init__(self, env: str, stack: model.Stack, client=None, lb_name: str | None = None,
                 target_groups: dict[str, str] | None = None):
        from roadie import aws

        self.env, self.stack = env, stack
        self.elb = client or aws.env_client(env, "elbv2")
        self.lb_name = lb_name or f"roadie-{env}"[:32]
        self.target_groups = dict(target_groups or {})
        self.names = [self.lb_name]

    def _call(self, what: str, fn, **kw):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kw)
        except (BotoCoreError, ClientError) as exc:
            raise OperationFailed(f"ELBv2: {what}: {exc}") from None

    def _listener(self) -> str:
        lbs = self._call(f"finding the load balancer {self.lb_name}", self.elb.describe_load_balancers,
                         Names=[self.lb_name])["LoadBalancers"]
        listeners = self._call("reading listeners", self.elb.describe_listeners,
                               LoadBalancerArn=lbs[0]["LoadBalancerArn"])["Listeners"]
        listeners.sort(key=lambda li: (li["Port"] != 443, li["Port"]))  # HTTPS first: HTTP only redirects
        return listeners[0]["ListenerArn"]

    def _rules(self, listener: str) -> list[dict]:
        return self._call("reading listener rules", self.elb.describe_rules, ListenerArn=listener)["Rules"]

    def _tags(self, rules: list[dict]) -> dict[str, dict[str, str]]:
        arns = [r["RuleArn"] for r in rules if not r.get("IsDefault")]
        if not arns:
            return {}
        found = self._call("reading rule tags", self.elb.describe_tags, ResourceArns=arns)["TagDescriptions"]
        return {d["ResourceArn"]: {t["Key"]: t["Value"] for t in d.get("Tags", [])} for d in found}

    def state(self) -> dict[str, int]:
        rules = self._rules(self._listener())
        out = {}
        for tags in self._tags(rules).values():
            if self.TAG in tags:
                out[tags[self.TAG]] = int(tags.get("roadie:retry-after", DEFAULT_RETRY_AFTER))
        return out

    def set(self, backend: str, retry_after: int | None) -> None:
        from roadie.deploy.balancer_elbv2 import target_group_name

        listener = self._listener()
        rules = self._rules(listener)
        tags = self._tags(rules)
        mine = [r for r in rules if tags.get(r["RuleArn"], {}).get(self.TAG) == backend]
        if retry_after is None:
            for r in mine:
                self._call(f"removing the maintenance rule of {backend}", self.elb.delete_rule, RuleArn=r["RuleArn"])
            return
        tg = self.target_groups.get(backend) or target_group_name(self.env, backend)
        route = next((r for r in rules if not r.get("IsDefault") and any(
            a.get("TargetGroupArn", "").split("/")[-2:-1] == [tg] for a in r["Actions"])), None)
        if route is None:
            raise OperationFailed(f"ELBv2: no listener rule of {self.lb_name} forwards to {tg}")
        svc = next(s for s in self.stack.services.values() if s.backend == backend)
        for r in mine:  # a new Retry-After: the rule is made again
            self._call(f"replacing the maintenance rule of {backend}", self.elb.delete_rule, RuleArn=r["RuleArn"])
        conditions = [{"Field": c["Field"], **({"PathPatternConfig": c["PathPatternConfig"]}
                                               if "PathPatternConfig" in c else {"Values": c["Values"]})}
                      for c in route["Conditions"]]
        self._call(f"adding the maintenance rule of {backend}", self.elb.create_rule, ListenerArn=listener,
                   Priority=int(route["Priority"]) - 1, Conditions=conditions,
                   Actions=[{"Type": "fixed-response", "FixedResponseConfig": {
                       "StatusCode": "503", "ContentType": "text/html",
                       "MessageBody": PAGE.format(name=svc.name, seconds=retry_after)}}],
                   Tags=[{"Key": self.TAG, "Value": backend}, {"Key": "roadie:retry-after", "Value": str(retry_after)}])


def for_env(inv: inventory.Inventory, transport, stack: model.Stack | None = None):
    """HAProxy's maintenance map, or the ALB's fixed-response rules, as the inventory's balancer says."""
    stack = stack or model.load()
    kind = str(inv.env_vars.get("roadie_balancer", "haproxy"))
    if kind == "elbv2":
        return ALBMaintenance(inv.env, stack, target_groups=inv.env_vars.get("roadie_target_groups"))
    if kind != "haproxy":
        raise BadInput(f"The {inv.env} inventory's balancer is '{kind}'; maintenance mode knows 'haproxy' and "
                       "'elbv2'.")
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
               "balancers": m.names, "changed": was != on or (on and before.get(svc.backend)
                                                                               != retry_after)}
        if plan_only:
            return {**doc, "plan": True}
        started, result = time.time(), "failed"
        with common.uninterrupted():  # every balancer switched, and audited, or none touched
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
