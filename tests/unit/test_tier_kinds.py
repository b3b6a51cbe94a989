"""A tier is data: a kind added in this one file is read by the model, status, logs, restart and health.

The `worker` kind below (a queue consumer: no port, no health path, its unit
NAME-worker.service, its log also the broker's) is registered for these tests
only. Nothing else in roadie names it: what each command does with it comes from
the kind's answers (unit, log_units, health_check) and from its model entry
having no balancer section.
"""

from __future__ import annotations

from typing import Literal

import pytest

from roadie import health, model, testing
from roadie.deploy import run
from roadie.deploy import status as st
from roadie.environment import Environment
from roadie.errors import BadInput
from roadie.inventory import Host, Inventory
from roadie.ops import hosts as ops_hosts
from roadie.ops import logs, maintenance
from roadie.commands import release_host


class Worker(model.Tier):
    """A queue consumer: it runs as NAME-worker.service and is healthy when that unit is active."""

    kind: Literal["worker"] = "worker"
    queue: str

    @property
    def unit(self) -> str:
        return f"{self.name}-worker.service"

    @property
    def log_units(self) -> list[str]:
        return [self.unit, "rabbitmq.service"]


@pytest.fixture
def worker_kind():
    model.register(Worker)
    yield Worker
    del model.KINDS["worker"]


def stack_doc(**orders) -> dict:
    """The repository's model with an `orders` worker tier added (changed by `orders`)."""
    import yaml

    doc = yaml.safe_load(model.DEFAULT_PATH.read_text())
    doc["roadie_services"]["orders"] = {"kind": "worker", "group": "orders", "queue": "orders", "min_healthy": 1,
                                        **orders}
    return doc


# -- the model --------------------------------------------------------------------------------------------------

def test_an_entry_is_validated_by_the_model_of_its_kind(worker_kind):
    stack = model.parse(stack_doc())
    orders = stack.service("orders")
    assert type(orders) is Worker and orders.queue == "orders" and orders.balancer is None
    assert [s.name for s in stack.balanced] == ["catalog", "streaming"]  # the worker gets no route
    assert type(stack.service("catalog")) is model.Service and stack.service("catalog").backend == "catalog"


@pytest.mark.parametrize(("orders", "message"), [
    ({"kind": "cron"}, "stack.yml: services.orders.kind: 'cron' is not a tier kind (known: job, service, worker)."),
    ({"queue": None}, "stack.yml: services.orders.queue: Input should be a valid string."),
    ({"port": 9000}, "stack.yml: services.orders.port: Extra inputs are not permitted."),
    ({"balancer": {"route_prefix": "/orders", "backend": "orders"}},
     "stack.yml: services.orders: Value error, a worker has no port and health path for the balancer to forward "
     "to and check: leave out its balancer section."),
], ids=["unknown-kind", "field-of-the-kind", "field-of-another-kind", "balancer-without-port"])
def test_a_bad_entry_is_one_line_naming_it(worker_kind, orders, message):
    with pytest.raises(BadInput) as bad:
        model.parse(stack_doc(**orders))
    assert bad.value.message == message


@pytest.mark.parametrize("name", ["order-worker", "Orders", "9orders", "orders.v2"])
def test_a_tier_name_that_cannot_name_a_unit_and_a_variable_is_refused(worker_kind, name):
    doc = stack_doc()
    doc["roadie_services"][name] = doc["roadie_services"].pop("orders")
    with pytest.raises(BadInput) as bad:
        model.parse(doc)
    assert bad.value.message.startswith(f"stack.yml: services.{name}: a tier's name is a lowercase word")


def test_without_the_kind_registered_the_entry_is_refused():
    with pytest.raises(BadInput, match=r"'worker' is not a tier kind \(known: job, service\)"):
        model.parse(stack_doc())


def test_two_routes_on_one_backend_are_refused_but_tiers_without_a_route_are_not(worker_kind):
    doc = stack_doc()
    doc["roadie_services"]["streaming"]["balancer"]["backend"] = "catalog"
    with pytest.raises(BadInput, match="two services share a backend"):
        model.parse(doc)
    doc = stack_doc()
    doc["roadie_services"]["streaming"].pop("balancer")  # an HTTP service behind no balancer
    assert [s.name for s in model.parse(doc).balanced] == ["catalog"]


# -- status, logs and health read the kind -------------------------------------------------------------------

ORDERS = ["orders-1", "orders-2"]


@pytest.fixture
def environment(worker_kind, test_environment):
    """An environment of two catalog hosts and two orders hosts, on the kit's fakes and moto's deploys table."""
    client, name, _ = test_environment
    hosts = {**{n: Host(n, f"198.18.0.{20 + i}", ("catalog",)) for i, n in enumerate(["catalog-1", "catalog-2"])},
             **{n: Host(n, f"198.18.0.{30 + i}", ("orders",)) for i, n in enumerate(ORDERS)}}
    fake = testing.FakeTransport(hosts.values(), active={"orders-2": "failed"})
    lb = testing.FakeBalancer(["catalog-1", "catalog-2"], backend="catalog")
    env = Environment("test", Inventory(env="test", hosts=hosts), model.parse(stack_doc()))
    env._made.update(transport=fake, balancer=lb, table=(client, name))
    return env, fake, lb


def test_status_reads_the_worker_s_unit_and_no_backend(environment):
    env, fake, lb = environment
    doc = {s["service"]: s for s in st.collect(env)["services"]}
    orders = doc["orders"]
    assert (orders["kind"], orders["balanced"], orders["maintenance"]) == ("worker", False, None)
    assert [(h["host"], h["active"], h["balancer"]) for h in orders["hosts"]] == [
        ("orders-1", "active", st.NOT_BALANCED), ("orders-2", "failed", st.NOT_BALANCED)]
    assert fake.commands("orders-1", "facts") == [release_host.facts("orders", "orders-worker.service")]
    assert doc["catalog"]["balanced"] and [h["balancer"] for h in doc["catalog"]["hosts"]] == ["UP", "UP"]


def test_health_counts_a_worker_in_service_by_its_unit(environment):
    env, _, _ = environment
    report = {"hosts": {}, "services": st.collect(env)["services"], "database": [], "backups": None}
    found, _ = health.problems(report, 90)
    assert "orders-2: orders unit is failed" in found
    assert not any("balancer" in p and "orders" in p for p in found)  # no backend to be missing from
    assert "orders: no host in service" not in found
    for svc in report["services"]:
        for h in svc["hosts"]:
            h["active"] = "failed"
    found, _ = health.problems(report, 90)
    assert "orders: no host in service" in found and "catalog: no host in service" not in found  # UP in HAProxy


def test_logs_read_the_units_the_kind_names(environment):
    env, _, _ = environment
    assert logs.units(env.stack, env.inventory.hosts["orders-1"]) == ["orders-worker.service", "rabbitmq.service"]
    assert logs.units(env.stack, env.inventory.hosts["catalog-1"]) == ["catalog.service"]


# -- restart and deploy: no balancer to drain through ------------------------------------------------------------

def test_a_rolling_restart_of_a_worker_restarts_its_unit_and_never_asks_the_balancer(environment):
    env, fake, lb = environment
    fake.active["orders-2"] = "active"
    prepared = run.prepare(env, "orders", None, run.Options(batch="1"), run.RESTART, lambda ev: None)
    assert prepared.deps.balancer is None and len(prepared.plan.batches) == 2
    outcome = run.execute(prepared)
    assert outcome.result == "ok", outcome.error
    for n in ORDERS:
        assert fake.steps(n) == ["facts", "switch", "restart", "health"]
        assert fake.commands(n, "restart") == ["systemctl restart orders-worker.service"]
        assert fake.commands(n, "health") == [release_host.wait_active("orders-worker.service", 60)]
    assert lb.calls == []


def test_a_worker_that_does_not_come_back_stops_the_restart(environment):
    env, fake, _ = environment
    fake.active["orders-2"] = "active"
    fake.faults.append(testing.Fault("orders-1", "health"))
    outcome = run.execute(run.prepare(env, "orders", None, run.Options(batch="1"), run.RESTART, lambda ev: None))
    assert outcome.result == "failed" and "orders-1: health" in outcome.error
    assert "orders-2" not in {h for h, _ in fake.calls if _ == "restarting"}


@pytest.mark.parametrize(("act", "message"), [
    (lambda env: ops_hosts.target(env, "orders-1"),
     "orders-1 is behind no balancer (it serves none of catalog, streaming; it runs orders, which the balancer "
     "does not front); only hosts behind the balancer can be drained or enabled."),
    (lambda env: run.prepare(env, "orders", None, run.Options(canary=1, bake=30), run.RESTART, lambda ev: None),
     "--bake judges the canary on the balancer's per-server figures; orders is not behind the balancer (its "
     "model entry has no balancer section)."),
], ids=["drain", "canary-bake"])
def test_what_needs_the_balancer_is_refused_for_a_worker(environment, act, message):
    env, fake, lb = environment
    with pytest.raises(BadInput) as bad:
        act(env)
    assert bad.value.message == message
    assert lb.calls == [] and not [w for _, w in fake.calls if w != "reading the release state"]


def test_maintenance_of_a_worker_is_refused(environment):
    env, _, lb = environment
    with pytest.raises(BadInput, match="orders is not behind the balancer"):
        maintenance.switch(env, "orders", True)
    assert lb.calls == []
