"""Fleet planning: inventory in, addresses and names out, bad input refused."""

from __future__ import annotations

import pytest

from roadie import inventory
from roadie.local import plan as fleetplan
from roadie.errors import BadInput

FLEET_VARS = {
    "roadie_fleet_bridge": "roadie0", "roadie_fleet_network": "198.18.0.0/24",
    "roadie_fleet_gateway": "198.18.0.1", "roadie_apt_proxy": "http://198.18.0.1:3142",
    "roadie_aws_endpoint_url": "http://198.18.0.1:4566",
    "roadie_buckets": {"artifacts": "a-bucket", "media": "m-bucket"},
}


def inv(hosts: dict, **overrides) -> inventory.Inventory:
    """An inventory whose hosts carry the fleet vars (as ansible-inventory --list gives them)."""
    made = {}
    for name, address in hosts.items():
        hv = {**FLEET_VARS, **overrides}
        if address is not None:
            hv["ansible_host"] = address
        made[name] = inventory.Host(name=name, address=address or name, groups=("catalog",), vars=hv)
    return inventory.Inventory(env="local", hosts=made)


def test_plan_names_and_addresses():
    plan = fleetplan.build(inv({"lb-1": "198.18.0.10", "db-1": "198.18.0.15"}))
    assert plan.bridge == "roadie0"
    assert plan.gateway_cidr == "198.18.0.1/24"
    assert plan.buckets == ("a-bucket", "m-bucket")
    assert [(h.name, h.cidr, h.netns, h.veth) for h in plan.hosts] == [
        ("lb-1", "198.18.0.10/24", "roadie0-lb-1", "roadie0-10"),
        ("db-1", "198.18.0.15/24", "roadie0-db-1", "roadie0-15"),
    ]


def test_local_inventory_plans_seven_hosts_inside_the_range():
    plan = fleetplan.build(inventory.load("local"))
    names = {h.name for h in plan.hosts}
    assert {"lb-1", "catalog-1", "catalog-2", "streaming-1", "streaming-2", "db-1", "db-2"} <= names
    assert all(h.address.startswith("198.18.0.") for h in plan.hosts)
    assert len({h.address for h in plan.hosts}) == len(plan.hosts)
    assert all(len(h.veth) + 1 <= 15 for h in plan.hosts)


@pytest.mark.parametrize(("hosts", "overrides", "only", "message"), [
    ({"a-1": "198.18.0.10"}, {}, ["nope"], "Unknown host nope"),
    ({"a-1": None}, {}, None, "Host a-1 has no address (ansible_host)"),
    ({"a-1": "10.0.0.5"}, {}, None, "outside the fleet's range 198.18.0.0/24"),
    ({"a-1": "198.18.1.5"}, {}, None, "outside the fleet's range"),
    ({"a-1": "198.18.0.0"}, {}, None, "outside the fleet's range"),
    ({"a-1": "198.18.0.255"}, {}, None, "outside the fleet's range"),
    ({"a-1": "198.18.0.1"}, {}, None, "already used by the bridge"),
    ({"a-1": "198.18.0.10", "a-2": "198.18.0.10"}, {}, None, "already used by a-1"),
    ({"a-1": "not-an-ip"}, {}, None, "is not an IP address"),
    ({"A_1": "198.18.0.10"}, {}, None, "is not a valid hostname"),
    ({"a-1": "198.18.0.10"}, {"roadie_fleet_gateway": "198.18.5.1"}, None, "outside the fleet network"),
    ({"a-1": "198.18.0.10"}, {"roadie_fleet_network": "198.18.0.0/33"}, None, "Bad fleet network setting"),
    ({"a-1": "198.18.0.10"}, {"roadie_fleet_bridge": "averyverylongbridge"}, None, "at most 10"),
    ({"a-1": "198.18.0.10"}, {"roadie_fleet_bridge": ""}, None, "does not set roadie_fleet_bridge"),
    ({"a-1": "198.18.0.10"}, {"roadie_apt_proxy": None}, None, "does not set roadie_apt_proxy"),
])
def test_bad_input_is_refused_with_one_line(hosts, overrides, only, message):
    with pytest.raises(BadInput) as err:
        fleetplan.build(inv(hosts, **overrides), only)
    assert message in err.value.message
    assert "\n" not in err.value.message


def test_empty_inventory_is_refused():
    with pytest.raises(BadInput, match="has no hosts"):
        fleetplan.build(inventory.Inventory(env="local", hosts={}))
