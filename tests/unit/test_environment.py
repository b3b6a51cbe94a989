"""The Environment reads its inventory once and makes each AWS client once; what it makes uses those.

The transport and the balancer of an AWS environment (SSM, ELBv2) get the
environment's clients and buckets; `roadie hosts pin-keys` and `roadie release
list` read no second inventory. Clients are made, never called: no request
leaves (the endpoint is a closed loopback port).
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from roadie import inventory, model
from roadie.environment import Environment
from roadie.inventory import Host, Inventory

AWS_VARS = {"roadie_connection": "ssm", "roadie_balancer": "elbv2", "roadie_aws_endpoint_url": "http://127.0.0.1:9",
            "roadie_aws_region": "eu-west-1", "roadie_buckets": {"artifacts": "roadie-aws-artifacts"}}


@pytest.fixture
def aws_environment(monkeypatch):
    monkeypatch.delenv("ROADIE_AWS_ENDPOINT_URL", raising=False)
    hosts = {n: Host(n, f"10.0.1.{i}", (g,), {**AWS_VARS, "ansible_aws_ssm_instance_id": f"i-{i}"})
             for i, (n, g) in enumerate([("lb-i-1", "loadbalancer"), ("catalog-i-2", "catalog"),
                                         ("streaming-i-3", "streaming")], 1)}
    environment = Environment("aws", Inventory(env="aws", hosts=hosts), model.load())

    def no_second_read(env):
        raise AssertionError(f"the {env} inventory was read a second time")

    monkeypatch.setattr(inventory, "load", no_second_read)
    return environment


def test_the_ssm_transport_gets_the_environment_s_clients_and_bucket(aws_environment):
    t = aws_environment.transport
    assert t.kind == "ssm" and t.bucket == "roadie-aws-artifacts"
    assert t.s3 is aws_environment.client("s3")  # one client per service for the command
    assert t.ssm.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 11}  # polling is throttled
    assert (t.ssm.meta.endpoint_url, t.ssm.meta.region_name) == ("http://127.0.0.1:9", "eu-west-1")
    assert t._inventory is aws_environment.inventory


def test_the_elbv2_balancer_gets_the_environment_s_client(aws_environment):
    b = aws_environment.balancer
    assert b.kind == "elbv2" and b.elb is aws_environment.client("elbv2")
    assert set(b.ids) == {"catalog-i-2", "streaming-i-3"}  # the hosts of the tiers behind it


def test_clients_are_made_once_per_service(aws_environment):
    assert aws_environment.client("s3") is aws_environment.client("s3")
    assert aws_environment.client("s3") is not aws_environment.client("ec2")


def test_release_list_reads_the_inventory_once(aws_environment, monkeypatch):
    """The command's environment is loaded once (Environment.load); the bucket and client come from it."""
    from roadie.main import main
    from roadie.release import publish

    loads = []
    monkeypatch.setattr(Environment, "load", classmethod(lambda cls, env: loads.append(env) or aws_environment))
    asked = []
    monkeypatch.setattr(publish, "list_versions", lambda s3, bucket, service: asked.append((s3, bucket)) or [])
    res = CliRunner().invoke(main, ["--env", "aws", "release", "list", "catalog"])
    assert res.exit_code == 0, res.output
    assert loads == ["aws"] and asked == [(aws_environment.client("s3"), "roadie-aws-artifacts")]
