"""The deploy planner: batches, canary, capacity and every refused input, as tables."""

from __future__ import annotations

import pytest

from roadie.deploy import plan as planner
from roadie.errors import BadInput

FOUR = {"a-1": "1.0.0", "a-2": "1.0.0", "a-3": "1.0.0", "a-4": "1.0.0"}


def batches(p: planner.Plan) -> list[list[str]]:
    return [list(b.hosts) for b in p.batches]


@pytest.mark.parametrize(("targets", "kwargs", "expected"), [
    # default: 25 % of the tier, at least 1
    (FOUR, {}, [["a-1"], ["a-2"], ["a-3"], ["a-4"]]),
    (FOUR, {"batch": "2"}, [["a-1", "a-2"], ["a-3", "a-4"]]),
    (FOUR, {"batch": "50%"}, [["a-1", "a-2"], ["a-3", "a-4"]]),
    (FOUR, {"batch": "30%"}, [["a-1", "a-2"], ["a-3", "a-4"]]),  # rounded up
    (FOUR, {"batch": "3"}, [["a-1", "a-2", "a-3"], ["a-4"]]),
    (FOUR, {"canary": 1, "batch": "2"}, [["a-1"], ["a-2", "a-3"], ["a-4"]]),
    # hosts already on the version are left alone
    ({**FOUR, "a-2": "2.0.0"}, {"batch": "2"}, [["a-1", "a-3"], ["a-4"]]),
    # bring-up: one batch, no capacity rule
    ({"a-1": None, "a-2": None}, {"bring_up": True}, [["a-1", "a-2"]]),
    ({"a-1": "1.0.0", "a-2": "1.0.0"}, {}, [["a-1"], ["a-2"]]),
])
def test_batches(targets, kwargs, expected):
    p = planner.build("svc", "2.0.0", targets, **kwargs)
    assert batches(p) == expected
    assert all(p.moves[h].to_version == "2.0.0" for h in p.hosts)
    assert [b.canary for b in p.batches][:1] == ([True] if kwargs.get("canary") else [False])


@pytest.mark.parametrize(("targets", "kwargs", "message"), [
    (FOUR, {"batch": "0"}, "at least 1"),
    (FOUR, {"batch": "0%"}, "between 1% and 100%"),
    (FOUR, {"batch": "5"}, "larger than the tier (4 hosts)"),
    (FOUR, {"batch": "4"}, "would take 4 of 4"),
    (FOUR, {"batch": "two"}, "not a number of hosts or a percentage"),
    (FOUR, {"batch": "-1"}, "not a number of hosts or a percentage"),
    (FOUR, {"canary": 5}, "larger than the tier"),
    (FOUR, {"canary": 0}, "at least 1"),
    (FOUR, {"canary": 4}, "would take 4 of 4"),
    (FOUR, {"max_fail": -1}, "0 or more"),
    ({"a-1": "1.0.0"}, {}, "no host can be taken out of service"),
    ({}, {}, "No hosts"),
])
def test_refused(targets, kwargs, message):
    with pytest.raises(BadInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        planner.build("svc", "2.0.0", targets, **kwargs)


def test_rollback_moves_each_host_to_its_own_release():
    p = planner.build("svc", "previous", {"a-1": "2.0.0", "a-2": "2.0.0"}, to={"a-1": "1.0.0", "a-2": "1.1.0"})
    assert {h: (m.from_version, m.to_version) for h, m in p.moves.items()} == {
        "a-1": ("2.0.0", "1.0.0"), "a-2": ("2.0.0", "1.1.0")}


@pytest.mark.parametrize(("batch", "up", "min_healthy", "chosen"), [
    (["a-1"], {"a-1", "a-2", "a-3", "a-4"}, 1, ["a-1"]),
    (["a-1", "a-2"], {"a-1", "a-2", "a-3"}, 2, ["a-1"]),  # a-4 down already: only one may go
    (["a-1"], {"a-1", "a-2"}, 2, []),  # would fall below the minimum
    (["a-4"], {"a-1"}, 1, ["a-4"]),  # a down host costs nothing to take out
    (["a-1", "a-4"], {"a-1", "a-2"}, 1, ["a-1", "a-4"]),
])
def test_capacity_counts_hosts_already_down(batch, up, min_healthy, chosen):
    assert planner.capacity(batch, up, list(FOUR), min_healthy) == chosen


def test_plan_document_lists_from_and_to():
    doc = planner.build("svc", "2.0.0", {"a-1": "1.0.0", "a-2": None}, bring_up=True).as_dict()
    assert doc["batches"][0]["hosts"] == [{"host": "a-1", "from": "1.0.0", "to": "2.0.0"},
                                          {"host": "a-2", "from": None, "to": "2.0.0"}]
    assert doc["expected_seconds"] > 0
