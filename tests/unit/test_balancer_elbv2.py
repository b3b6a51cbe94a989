"""The ELBv2 balancer against target groups on moto (over HTTP): states, drain, register, lookups."""

from __future__ import annotations

import pytest

from roadie.deploy import engine
from roadie.balancer.elbv2 import ELBv2
from roadie.errors import BadInput
from roadie import testing
from tests import awsestate

SVC = testing.service("catalog", drain_timeout=5)


@pytest.fixture
def estate(moto_endpoint):
    return awsestate.build(moto_endpoint, {"catalog": 3}, delay=45)


def balancer(estate):
    return ELBv2(estate.env, estate.hosts["catalog"], client=awsestate.client(estate.endpoint, "elbv2"))


def test_every_registered_healthy_target_is_up_by_host_name(estate):
    servers = balancer(estate).servers("catalog")
    assert sorted(servers) == sorted(h.name for h in estate.hosts["catalog"])
    assert all(s.up and s.sessions == 0 for s in servers.values())


def test_drain_deregisters_and_ready_registers_again(estate):
    b = balancer(estate)
    one = estate.hosts["catalog"][1].name
    b.drain("catalog", one)
    view = b.servers("catalog")
    assert view[one].status == "MAINT" and not view[one].up and view[one].sessions == 0  # moto: unused at once
    assert [n for n, s in view.items() if s.up] == [h.name for h in estate.hosts["catalog"] if h.name != one]
    b.ready("catalog", one)
    assert b.servers("catalog")[one].up


def test_a_draining_target_counts_as_an_open_session(estate):
    """moto shows `draining` for a terminated instance's target; roadie waits on it like on HAProxy sessions."""
    gone = estate.hosts["catalog"][0]
    awsestate.client(estate.endpoint, "ec2").terminate_instances(
        InstanceIds=[gone.vars["ansible_aws_ssm_instance_id"]])
    s = balancer(estate).servers("catalog")[gone.name]
    assert (s.status, s.up, s.sessions) == ("DRAIN", False, 1)


def test_the_engine_drains_and_enables_through_it(estate):
    hosts = estate.hosts["catalog"]
    d = engine.Deps(service=SVC, hosts={h.name: h for h in hosts}, transport=None, balancer=balancer(estate),
                    sleep=lambda s: None)
    assert engine.drain(d, hosts[0].name) == 0
    health = awsestate.client(estate.endpoint, "elbv2").describe_target_health(
        TargetGroupArn=estate.target_groups["catalog"])["TargetHealthDescriptions"]
    assert hosts[0].vars["ansible_aws_ssm_instance_id"] not in {t["Target"]["Id"] for t in health}
    engine.enable(d, hosts[0].name)
    assert d.balancer.servers("catalog")[hosts[0].name].up


def test_the_deregistration_delay_is_read_from_the_target_group(estate):
    assert balancer(estate).drain_seconds("catalog") == 45


def test_a_missing_target_group_is_bad_input_naming_it(estate):
    with pytest.raises(BadInput, match=f"no target group 'roadie-{estate.env}-streaming' for streaming"):
        balancer(estate).servers("streaming")


def test_a_host_without_an_instance_id_is_refused(estate):
    from roadie.inventory import Host

    with pytest.raises(BadInput, match="catalog-x has no instance id"):
        ELBv2(estate.env, [Host("catalog-x", "10.0.0.9", ("catalog",))],
              client=awsestate.client(estate.endpoint, "elbv2"))


def test_an_elbv2_inventory_chooses_it_and_the_target_groups_delay_bounds_the_drain_wait(estate, monkeypatch):
    from roadie import balancer as registry
    from roadie import model
    from roadie.inventory import Host, Inventory

    hosts = {h.name: Host(h.name, h.address, h.groups, {**h.vars, "roadie_balancer": "elbv2"})
             for h in estate.hosts["catalog"]}
    inv = Inventory(env=estate.env, hosts=hosts)
    monkeypatch.setattr("roadie.aws.settings", lambda env: {"endpoint_url": estate.endpoint, "region": "us-east-1",
                                                            "buckets": {}})
    b = registry.for_inventory(inv, None, model.load())
    assert b.kind == "elbv2" and b.ids == {n: h.vars["ansible_aws_ssm_instance_id"] for n, h in hosts.items()}
    assert b.drain_seconds("catalog") == 45
