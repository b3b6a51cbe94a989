"""The ELBv2 balancer: an ALB target group per service (roadie_balancer: elbv2).

Draining a host deregisters its instance; the target group keeps it `draining`
for its deregistration delay while in-flight requests finish, then `unused`.
Enabling registers it again; it is in service once `healthy`. The engine sees the
same `servers`/`drain`/`ready` as with HAProxy; per-target health is the live
state. ELBv2 reports no per-target session count: a `draining` target counts as
one open session until the delay is over.
"""

from __future__ import annotations

from roadie.commands.haproxy import Server
from roadie.errors import BadInput, OperationFailed
from roadie.inventory import Host
from roadie.transport_ssm import instance_id

# Target health states, as the engine's Server status (UP and DRAIN mean what they mean in HAProxy).
STATUS = {"healthy": "UP", "draining": "DRAIN", "unused": "MAINT", "initial": "INITIAL",
          "unhealthy": "DOWN", "unavailable": "DOWN", "unhealthy.draining": "DRAIN"}


def target_group_name(env: str, backend: str) -> str:
    """The name the Pulumi program gives a service's target group (infra/roadie_infra/balancer.py)."""
    return f"roadie-{env}-{backend}"[:32]


class ELBv2:
    kind = "elbv2"

    def __init__(self, env: str, hosts: list[Host], client=None, names: dict[str, str] | None = None):
        from roadie import aws

        self.env = env
        self.elb = client or aws.env_client(env, "elbv2")
        self.names = dict(names or {})  # backend -> target group name (roadie_target_groups), else Pulumi's
        self.ids = {h.name: instance_id(h) for h in hosts}
        self.hosts_of = {v: k for k, v in self.ids.items()}
        self._arns: dict[str, str] = {}

    def arn(self, backend: str) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        if backend not in self._arns:
            name = self.names.get(backend) or target_group_name(self.env, backend)
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

    def _call(self, fn, backend: str, server: str, what: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            fn(TargetGroupArn=self.arn(backend), Targets=[{"Id": self.ids[server]}])
        except (BotoCoreError, ClientError) as exc:
            raise OperationFailed(f"ELBv2: {what} {backend}/{server}: {exc}") from None

    def drain(self, backend: str, server: str) -> None:
        self._call(self.elb.deregister_targets, backend, server, "deregistering")

    def ready(self, backend: str, server: str) -> None:
        self._call(self.elb.register_targets, backend, server, "registering")

    def weight(self, backend: str, server: str, weight: str) -> None:
        raise OperationFailed("ELBv2 target groups have no per-target weight (use weighted target groups).")
