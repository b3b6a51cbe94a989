"""The ELBv2 balancer: an ALB target group per service (roadie_balancer: elbv2).

Draining a host deregisters its instance; the target group keeps it `draining`
for its deregistration delay while in-flight requests finish, then `unused`.
Enabling registers it again; it is in service once `healthy`. Per-target health
is the live state. ELBv2 reports no per-target session count: a `draining`
target counts as one open session until the delay is over.

Maintenance mode is a fixed-response 503 listener rule just ahead of the
service's route rule on the ALB's listener. An ALB fixed response carries a
status, a content type and a body, no other header: the Retry-After seconds go
in the page and in the rule's tags.
"""

from __future__ import annotations

from roadie import model
from roadie.balancer.base import DEFAULT_RETRY_AFTER
from roadie.commands.haproxy import Server
from roadie.errors import BadInput, OperationFailed
from roadie.inventory import Host
from roadie.transport.ssm import instance_id

# Target health states, as the engine's Server status (UP and DRAIN mean what they mean in HAProxy).
STATUS = {"healthy": "UP", "draining": "DRAIN", "unused": "MAINT", "initial": "INITIAL",
          "unhealthy": "DOWN", "unavailable": "DOWN", "unhealthy.draining": "DRAIN"}

TAG = "roadie:maintenance"  # a maintenance rule's tag: its backend

PAGE = ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{name}: maintenance</title></head>"
        "<body><h1>{name} is in maintenance</h1><p>We are doing some maintenance and will be back shortly "
        "(try again in {seconds} s).</p></body></html>")


def target_group_name(env: str, backend: str) -> str:
    """The name the Pulumi program gives a service's target group (infra/roadie_infra/balancer.py)."""
    return f"roadie-{env}-{backend}"[:32]


class ELBv2:
    """The environment's ALB and its target groups; `hosts` are the hosts it may drain (by instance id)."""

    kind = "elbv2"

    def __init__(self, env: str, hosts: list[Host], client=None, target_groups: dict[str, str] | None = None,
                 stack: model.Stack | None = None, lb_name: str | None = None):
        from roadie import aws

        self.env = env
        self.elb = client or aws.env_client(env, "elbv2")
        self.target_groups = dict(target_groups or {})  # backend -> name (roadie_target_groups), else Pulumi's
        self.stack = stack  # the services' names, for the maintenance page
        self.lb_name = lb_name or f"roadie-{env}"[:32]
        self.names = [self.lb_name]
        self.ids = {h.name: instance_id(h) for h in hosts}
        self.hosts_of = {v: k for k, v in self.ids.items()}
        self._arns: dict[str, str] = {}

    @classmethod
    def from_inventory(cls, inv, transport, stack, client=None) -> ELBv2:
        hosts = [h for svc in stack.balanced for h in inv.group(svc.group)]
        return cls(inv.env, hosts, client=client("elbv2") if client else None,
                   target_groups=inv.env_vars.get("roadie_target_groups"), stack=stack)

    def _tg_name(self, backend: str) -> str:
        return self.target_groups.get(backend) or target_group_name(self.env, backend)

    # -- target groups --------------------------------------------------------------

    def arn(self, backend: str) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        if backend not in self._arns:
            name = self._tg_name(backend)
            try:
                found = self.elb.describe_target_groups(Names=[name])["TargetGroups"]
            except ClientError as exc:
                if exc.response["Error"]["Code"] == "TargetGroupNotFound":
                    raise BadInput(f"The {self.env} environment has no target group '{name}' for {backend}: "
                                   "apply the Pulumi stack, or name it in roadie_target_groups.") from None
                raise OperationFailed(f"ELBv2: reading target group {name}: {exc}") from None
            except BotoCoreError as exc:
                raise OperationFailed(f"ELBv2 did not answer: {exc}") from None
            self._arns[backend] = found[0]["TargetGroupArn"]
        return self._arns[backend]

    def drain_seconds(self, backend: str) -> int:
        """The target group's deregistration delay: how long `draining` lasts at most."""
        attrs = self.elb.describe_target_group_attributes(TargetGroupArn=self.arn(backend))["Attributes"]
        return int(next((a["Value"] for a in attrs if a["Key"] == "deregistration_delay.timeout_seconds"), 300))

    def servers(self, backend: str) -> dict[str, Server]:
        """Every tier host's target health (one call), unregistered ones as MAINT."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self.elb.describe_target_health(TargetGroupArn=self.arn(backend),
                                                     Targets=[{"Id": i} for i in self.ids.values()])
        except (BotoCoreError, ClientError) as exc:
            raise OperationFailed(f"ELBv2: target health of {backend}: {exc}") from None
        out = {}
        for d in answer["TargetHealthDescriptions"]:
            name = self.hosts_of.get(d["Target"]["Id"])
            if name is None:
                continue
            state = d["TargetHealth"]["State"]
            status = STATUS.get(state, state.upper())
            out[name] = Server(backend, name, status, 1 if status in ("UP", "INITIAL", "DOWN") else 0,
                               1 if status == "DRAIN" else 0, 0, 0, 0, 0)
        return out

    def _target(self, fn, backend: str, server: str, what: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            fn(TargetGroupArn=self.arn(backend), Targets=[{"Id": self.ids[server]}])
        except (BotoCoreError, ClientError) as exc:
            raise OperationFailed(f"ELBv2: {what} {backend}/{server}: {exc}") from None

    def drain(self, backend: str, server: str) -> None:
        self._target(self.elb.deregister_targets, backend, server, "deregistering")

    def ready(self, backend: str, server: str) -> None:
        self._target(self.elb.register_targets, backend, server, "registering")

    # -- maintenance rules ----------------------------------------------------------

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

    def maintenance(self) -> dict[str, int]:
        rules = self._rules(self._listener())
        out = {}
        for tags in self._tags(rules).values():
            if TAG in tags:
                out[tags[TAG]] = int(tags.get("roadie:retry-after", DEFAULT_RETRY_AFTER))
        return out

    def set_maintenance(self, backend: str, retry_after: int | None) -> None:
        listener = self._listener()
        rules = self._rules(listener)
        tags = self._tags(rules)
        mine = [r for r in rules if tags.get(r["RuleArn"], {}).get(TAG) == backend]
        if retry_after is None:
            for r in mine:
                self._call(f"removing the maintenance rule of {backend}", self.elb.delete_rule, RuleArn=r["RuleArn"])
            return
        tg = self._tg_name(backend)
        route = next((r for r in rules if not r.get("IsDefault") and any(
            a.get("TargetGroupArn", "").split("/")[-2:-1] == [tg] for a in r["Actions"])), None)
        if route is None:
            raise OperationFailed(f"ELBv2: no listener rule of {self.lb_name} forwards to {tg}")
        svc = next(s for s in (self.stack or model.load()).services.values() if s.backend == backend)
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
                   Tags=[{"Key": TAG, "Value": backend}, {"Key": "roadie:retry-after", "Value": str(retry_after)}])
