"""Maintenance mode on AWS: a fixed-response 503 rule ahead of the service's route, against moto's ELBv2 over HTTP.

The ALB, listener, target groups and route rules are made the way the Pulumi
program makes them (infra/roadie_infra/balancer.py: routes at priorities 10, 20).
"""

from __future__ import annotations

import uuid

import boto3
import pytest

from roadie import model
from roadie.errors import OperationFailed
from roadie.balancer.elbv2 import ELBv2


@pytest.fixture
def alb(moto_endpoint):
    kw = {"endpoint_url": moto_endpoint, "region_name": "us-east-1", "aws_access_key_id": "testing",
          "aws_secret_access_key": "testing"}
    ec2, elb = boto3.client("ec2", **kw), boto3.client("elbv2", **kw)
    env = f"t{uuid.uuid4().hex[:6]}"
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24", AvailabilityZone=f"us-east-1{z}")
               ["Subnet"]["SubnetId"] for i, z in enumerate("ab")]
    lb = elb.create_load_balancer(Name=f"roadie-{env}", Subnets=subnets, Type="application")["LoadBalancers"][0]
    listener = elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=443,
                                   DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {
                                       "StatusCode": "404", "ContentType": "text/plain",
                                       "MessageBody": "not found"}}])["Listeners"][0]["ListenerArn"]
    for priority, (backend, prefix) in enumerate([("catalog", "/api"), ("streaming", "/stream")], start=1):
        tg = elb.create_target_group(Name=f"roadie-{env}-{backend}", Protocol="HTTP", Port=80, VpcId=vpc,
                                     TargetType="instance")["TargetGroups"][0]["TargetGroupArn"]
        paths = {"Values": [prefix, f"{prefix}/*"]}
        elb.create_rule(ListenerArn=listener, Priority=priority * 10,
                        Conditions=[{"Field": "path-pattern", "PathPatternConfig": paths}],
                        Actions=[{"Type": "forward", "TargetGroupArn": tg}])
    return ELBv2(env, [], client=elb, stack=model.load()), elb, listener


def rules(elb, listener):
    return {int(r["Priority"]): r for r in elb.describe_rules(ListenerArn=listener)["Rules"] if not r["IsDefault"]}


def test_on_adds_a_503_rule_ahead_of_the_route_and_off_removes_it(alb):
    m, elb, listener = alb
    assert m.maintenance() == {}
    m.set_maintenance("catalog", 120)
    assert m.maintenance() == {"catalog": 120}
    found = rules(elb, listener)
    assert sorted(found) == [9, 10, 20]
    action = found[9]["Actions"][0]
    assert action["Type"] == "fixed-response" and action["FixedResponseConfig"]["StatusCode"] == "503"
    assert "catalog is in maintenance" in action["FixedResponseConfig"]["MessageBody"]
    assert "120 s" in action["FixedResponseConfig"]["MessageBody"]
    assert found[9]["Conditions"][0]["PathPatternConfig"]["Values"] == ["/api", "/api/*"]  # the route paths
    m.set_maintenance("catalog", 60)  # a new Retry-After replaces the rule
    assert m.maintenance() == {"catalog": 60} and sorted(rules(elb, listener)) == [9, 10, 20]
    m.set_maintenance("streaming", 300)
    assert m.maintenance() == {"catalog": 60, "streaming": 300} and sorted(rules(elb, listener)) == [9, 10, 19, 20]
    m.set_maintenance("catalog", None)
    assert m.maintenance() == {"streaming": 300} and sorted(rules(elb, listener)) == [10, 19, 20]
    m.set_maintenance("catalog", None)  # off when off: nothing to do
    assert sorted(rules(elb, listener)) == [10, 19, 20]


def test_no_route_to_the_service_is_an_error_naming_it(alb):
    m, elb, listener = alb
    m.target_groups = {"catalog": "roadie-other-catalog"}
    with pytest.raises(OperationFailed, match="forwards to roadie-other-catalog"):
        m.set_maintenance("catalog", 120)
    assert sorted(rules(elb, listener)) == [10, 20]
