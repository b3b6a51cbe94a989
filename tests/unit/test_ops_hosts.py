"""`roadie ops drain|enable`: which host serves what, and the minimum-healthy refusal (the planner's capacity rule)."""

from __future__ import annotations

import pytest

from roadie import model
from roadie.commands.haproxy import Server
from roadie.errors import BadInput
from roadie.inventory import Host, Inventory
from roadie.ops import hosts

TIER = ["catalog-1", "catalog-2", "catalog-3"]


def servers(states: dict[str, str]) -> dict[str, Server]:
    return {n: Server("catalog", n, st, 0 if st == "DRAIN" else 1, 0, 0, 0, 0, 0) for n, st in states.items()}


@pytest.mark.parametrize(("states", "host", "min_healthy", "expected"), [
    ({"catalog-1": "UP", "catalog-2": "UP", "catalog-3": "UP"}, "catalog-1", 1, True),
    ({"catalog-1": "UP", "catalog-2": "UP", "catalog-3": "UP"}, "catalog-1", 2, True),
    ({"catalog-1": "DRAIN", "catalog-2": "UP", "catalog-3": "UP"}, "catalog-1", 2, False),  # already out
    ({"catalog-1": "DOWN", "catalog-2": "UP", "catalog-3": "UP"}, "catalog-1", 2, False),
    ({"catalog-1": "UP", "catalog-2": "DRAIN", "catalog-3": "UP"}, "catalog-1", 2, "below its minimum of 2"),
    ({"catalog-1": "UP", "catalog-2": "DOWN", "catalog-3": "DOWN"}, "catalog-1", 1, "left with 0 host"),
    ({"catalog-1": "UP", "catalog-2": "UP", "catalog-3": "UP"}, "catalog-1", 3, "below its minimum of 3"),
    ({"catalog-2": "UP", "catalog-3": "UP"}, "catalog-1", 1, "not in the balancer's catalog backend"),
])
def test_must_drain(states, host, min_healthy, expected):
    s = servers(states)
    if isinstance(expected, str):
        with pytest.raises(BadInput, match=expected):
            hosts.must_drain(s, host, TIER, min_healthy, "catalog")
    else:
        assert hosts.must_drain(s, host, TIER, min_healthy, "catalog") is expected


INV = Inventory(env="test", hosts={n: Host(n, f"198.18.0.{i + 10}", (g,)) for i, (n, g) in enumerate(
    [("lb-1", "loadbalancer"), ("catalog-1", "catalog"), ("streaming-1", "streaming"), ("db-1", "database")])})


@pytest.mark.parametrize(("host", "expected"), [
    ("catalog-1", "catalog"), ("streaming-1", "streaming"),
    ("db-1", "db-1 is behind no balancer"), ("lb-1", "lb-1 is behind no balancer"),
    ("catalog-9", "Unknown host 'catalog-9'"), ("", "Unknown host ''"),
])
def test_service_of(host, expected):
    stack = model.load()
    if " " in expected:
        with pytest.raises(BadInput, match=expected):
            hosts.service_of(INV, stack, host)
    else:
        assert hosts.service_of(INV, stack, host).name == expected


@pytest.mark.parametrize(("operation", "states", "expected"), [
    ("enable", {"catalog-1": "DRAIN", "catalog-2": "UP"}, True),
    ("enable", {"catalog-1": "UP", "catalog-2": "UP"}, False),
    ("enable", {"catalog-2": "UP"}, "not in the balancer's catalog backend"),  # --plan and for real alike
    ("drain", {"catalog-1": "UP", "catalog-2": "UP"}, True),
    ("drain", {"catalog-1": "DRAIN", "catalog-2": "UP"}, False),
])
def test_would_change_decides_for_plan_and_change(operation, states, expected):
    from roadie.deploy import engine

    svc = model.load().service("catalog")
    t = hosts.Target("test", "catalog-1", svc, engine.Deps(service=svc, hosts=dict.fromkeys(TIER[:2]),
                                                           transport=None, balancer=None))
    if isinstance(expected, str):
        with pytest.raises(BadInput, match=expected):
            hosts.would_change(t, servers(states), operation)
    else:
        assert hosts.would_change(t, servers(states), operation) is expected
