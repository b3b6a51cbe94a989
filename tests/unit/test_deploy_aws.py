"""The whole deploy (run.prepare + run.execute, the same engine as locally) on an AWS estate in moto.

EC2 instances tagged as the Pulumi program tags them, a target group per tier,
the artifacts bucket, SSM and the deploys table are moto's, over HTTP. Only the
hosts' side is faked: moto runs no command, so the answers of the commands SSM
would run (release facts, switch, health) are filled into moto's
GetCommandInvocation responses by a boto3 event hook, from a small model of each
host. Every SSM command and ELBv2 change is recorded in the order boto3 sent it.
"""

from __future__ import annotations

import json
import threading

import pytest

from roadie import aws, inventory
from roadie.commands import release_host as cmd
from roadie.deploy import run
from roadie.state import audit
from roadie.inventory import Host, Inventory
from roadie.environment import Environment
from tests import awsestate

SERVICE = "catalog"
VERSIONS = ("1.0.0", "2.0.0")


class HostSide:
    """What each instance would answer to roadie's commands; every call recorded in order."""

    def __init__(self, estate, bad: str | None = None):
        self.estate = estate
        self.current = {h.vars["ansible_aws_ssm_instance_id"]: "1.0.0" for h in estate.hosts[SERVICE]}
        self.releases = {i: ["1.0.0"] for i in self.current}
        self.bad = bad
        self.log: list[tuple[str, str, str]] = []  # (kind, instance, step)
        self.answers: dict[tuple[str, str], tuple[int, str]] = {}
        self.pending: dict[int, list] = {}
        self.lock = threading.Lock()

    def _answer(self, iid: str, command: str, what: str) -> tuple[int, str]:
        if what == "reading the release state":
            return 0, json.dumps({"current": self.current[iid], "previous": None, "releases": self.releases[iid],
                                  "active": "active", "pid": 1, "disk_free": 10**12})
        if what.startswith("fetching "):  # the host fetches from the bucket with its role: the object must exist
            key = command.split(f"s3://{self.estate.bucket}/")[1].split()[0]
            awsestate.client(self.estate.endpoint, "s3").head_object(Bucket=self.estate.bucket, Key=key)
        if what == "unpacking":
            self.releases[iid].append(next(v for v in VERSIONS if f"/{v}" in command))
        if what == "switching current":
            self.current[iid] = next(v for v in VERSIONS if command == cmd.switch(SERVICE, v))
        if what == "health check" and self.current[iid] == self.bad:
            return 1, "not healthy after 60 s: HTTP 500"
        return 0, ""

    # boto3 hooks ---------------------------------------------------------------------

    def on_send(self, params, context, **_):
        what = params["Comment"].removeprefix("roadie: ")
        with self.lock:
            for iid in params.get("InstanceIds", []):
                self.log.append(("ssm", iid, what))
            context["roadie_sent"] = (params.get("InstanceIds", []), params["Parameters"]["commands"][0], what)

    def after_send(self, parsed, context, **_):
        iids, command, what = context["roadie_sent"]
        with self.lock:
            for iid in iids:
                self.answers[(parsed["Command"]["CommandId"], iid)] = self._answer(iid, command, what)

    def after_invocation(self, parsed, context, **_):
        key = (parsed["CommandId"], parsed["InstanceId"])
        code, text = self.answers[key]
        parsed.update(ResponseCode=code, Status="Success" if code == 0 else "Failed",
                      StandardOutputContent=text if code == 0 else "", StandardErrorContent="" if code == 0 else text)

    def on_elb(self, params, model, **_):
        for t in params.get("Targets", []):
            with self.lock:
                self.log.append(("elb", t["Id"], model.name))

    def attach(self, service: str, client) -> None:
        if service == "ssm":
            client.meta.events.register("before-parameter-build.ssm.SendCommand", self.on_send)
            client.meta.events.register("after-call.ssm.SendCommand", self.after_send)
            client.meta.events.register("after-call.ssm.GetCommandInvocation", self.after_invocation)
        if service == "elbv2":
            for op in ("RegisterTargets", "DeregisterTargets"):
                client.meta.events.register(f"before-parameter-build.elastic-load-balancing-v2.{op}", self.on_elb)


@pytest.fixture
def aws_env(moto_endpoint, monkeypatch, tmp_path):
    estate = awsestate.build(moto_endpoint, {SERVICE: 4}, delay=0)
    env_vars = {"roadie_connection": "ssm", "roadie_balancer": "elbv2", "roadie_aws_endpoint_url": moto_endpoint,
                "roadie_aws_region": "us-east-1", "roadie_buckets": {"artifacts": estate.bucket},
                "roadie_deploy_table": f"roadie-{estate.env}-deploys"}
    hosts = {h.name: Host(h.name, h.address, h.groups, {**h.vars, **env_vars}) for h in estate.hosts[SERVICE]}
    inv = Inventory(env=estate.env, hosts=hosts)
    real_load = inventory.load
    monkeypatch.setattr(inventory, "load", lambda env: inv if env == estate.env else real_load(env))
    side = HostSide(estate)
    real_client = aws.client

    def client(service, **kw):
        made = real_client(service, **kw)
        side.attach(service, made)
        return made

    monkeypatch.setattr(aws, "client", client)
    tarball = tmp_path / "catalog-2.0.0.tar.gz"
    tarball.write_bytes(b"a release")
    source = lambda env, service, version: (tarball, "0" * 64)  # noqa: E731
    return estate, side, source


def deploy(estate, source, batch="2"):
    events = []
    prepared = run.prepare(Environment.load(estate.env), SERVICE, "2.0.0", run.Options(batch=batch), "deploy",
                           events.append,
                           artifact_source=source)
    return prepared, run.execute(prepared), events


def steps(side, iid):
    return [s for k, i, s in side.log if i == iid]


def test_a_deploy_on_aws_runs_the_same_engine_through_ssm_and_the_target_group(aws_env):
    estate, side, source = aws_env
    prepared, outcome, _ = deploy(estate, source)
    assert prepared.deps.transport.kind == "ssm" and prepared.deps.balancer.kind == "elbv2"
    assert outcome.result == "ok", outcome.error
    assert set(side.current.values()) == {"2.0.0"}
    hosts = estate.hosts[SERVICE]
    for n, h in enumerate(hosts):
        iid = h.vars["ansible_aws_ssm_instance_id"]
        migrate = ["migrating the database"] if n == 0 else []  # once, from the first host, after staging
        assert steps(side, iid) == ["reading the release state", f"fetching catalog-2.0.0.tar.gz from {estate.bucket}",
                                    "unpacking", *migrate, "DeregisterTargets", "switching current", "restarting",
                                    "health check", "RegisterTargets", "pruning old releases"]
    # batch 2 leaves the target group only after batch 1 is registered again
    order = [(i, s) for k, i, s in side.log if k == "elb"]
    first, second = [h.vars["ansible_aws_ssm_instance_id"] for h in hosts[:2]], \
        [h.vars["ansible_aws_ssm_instance_id"] for h in hosts[2:]]
    assert max(order.index((i, "RegisterTargets")) for i in first) < \
        min(order.index((i, "DeregisterTargets")) for i in second)
    elb = awsestate.client(estate.endpoint, "elbv2")
    health = elb.describe_target_health(TargetGroupArn=estate.target_groups[SERVICE])["TargetHealthDescriptions"]
    assert sorted(t["TargetHealth"]["State"] for t in health) == ["healthy"] * 4
    ddb, table = Environment.load(estate.env).table()
    records = audit.query(ddb, table, estate.env, service=SERVICE)
    assert [(r["operation"], r["result"]) for r in records] == [("deploy", "ok")]
    assert Environment.load(estate.env).lock(SERVICE).holder() is None


def test_an_unhealthy_release_on_aws_is_put_back_and_re_registered(aws_env):
    estate, side, source = aws_env
    side.bad = "2.0.0"
    _, outcome, _ = deploy(estate, source)
    assert outcome.result == "failed" and "health" in outcome.error
    assert set(side.current.values()) == {"1.0.0"}
    first = estate.hosts[SERVICE][0].vars["ansible_aws_ssm_instance_id"]
    assert steps(side, first)[4:] == ["DeregisterTargets", "switching current", "restarting", "health check",
                                      "switching current", "restarting", "health check", "restoring previous",
                                      "RegisterTargets"]
    untouched = estate.hosts[SERVICE][2].vars["ansible_aws_ssm_instance_id"]
    assert "DeregisterTargets" not in steps(side, untouched)  # batch 2 never left the target group
    health = awsestate.client(estate.endpoint, "elbv2").describe_target_health(
        TargetGroupArn=estate.target_groups[SERVICE])["TargetHealthDescriptions"]
    assert sorted(t["TargetHealth"]["State"] for t in health) == ["healthy"] * 4
