"""A new balancer kind is one module and one registry line: the deploy engine and maintenance mode take it as is.

The fake kind below stands for that module: a class with the Balancer
Protocol's members and a `from_inventory` factory, registered by one line
(`KINDS["fake"] = Fake.from_inventory`, here through monkeypatch).
"""

from __future__ import annotations

import pytest

from roadie import balancer, model
from roadie.balancer import registry
from roadie.balancer.base import Balancer
from roadie.balancer.elbv2 import ELBv2
from roadie.balancer.haproxy import HAProxy
from roadie.commands.haproxy import Server
from roadie.deploy import engine, status
from roadie.deploy import plan as planner
from roadie.environment import Environment
from roadie.errors import BadInput
from roadie.inventory import Host, Inventory
from roadie.ops import maintenance as mt

NAMES = ["catalog-1", "catalog-2"]


class Fake:
    """An in-memory balancer: every host in service, a maintenance table, each call recorded."""

    kind = "fake"

    def __init__(self, hosts: list[str]):
        self.names = ["fake-lb"]
        self.up = {n: True for n in hosts}
        self.down: dict[str, int] = {}
        self.calls: list[tuple] = []

    @classmethod
    def from_inventory(cls, inv, transport, stack, client=None):
        return cls([h.name for svc in stack.services.values() for h in inv.group(svc.group)])

    def servers(self, backend):
        return {n: Server(backend, n, "UP" if up else "MAINT", 1 if up else 0, 0, 0, 0, 0, 0)
                for n, up in self.up.items()}

    def drain(self, backend, server):
        self.calls.append(("drain", server))
        self.up[server] = False

    def ready(self, backend, server):
        self.calls.append(("ready", server))
        self.up[server] = True

    def drain_seconds(self, backend):
        return 0

    def maintenance(self):
        return dict(self.down)

    def set_maintenance(self, backend, retry_after):
        self.calls.append(("maintenance", backend, retry_after))
        if retry_after is None:
            self.down.pop(backend, None)
        else:
            self.down[backend] = retry_after


class Hosts:
    """The transport: every step succeeds."""

    def run(self, host, command, what, timeout=None):
        return ""

    def close(self):
        pass


class Env(Environment):
    """An environment over the fake transport whose audit records stay in a list."""

    def __init__(self, *args):
        super().__init__(*args)
        self.fake_transport, self.audited = Hosts(), []

    @property
    def transport(self):
        return self.fake_transport

    def audit(self, operation, result, service="", started=None, **facts):
        self.audited.append((operation, service, result))


def inv(kind: str) -> Inventory:
    extra = {"roadie_balancer": kind}
    hosts = {n: Host(n, f"198.18.0.{10 + i}", (g,), vars=extra)
             for i, (n, g) in enumerate([("lb-1", "loadbalancer"), *((n, "catalog") for n in NAMES)])}
    return Inventory(env="test", hosts=hosts)


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(registry.KINDS, "fake", Fake.from_inventory)  # the one registry line


@pytest.fixture
def fake(registered):
    return balancer.for_inventory(inv("fake"), Hosts(), model.load())


@pytest.mark.parametrize("cls", [HAProxy, ELBv2, Fake])
def test_every_kind_has_the_protocols_members(cls):
    members = {m for m in dir(Balancer) if not m.startswith("_")} | set(Balancer.__annotations__)
    assert members == {"kind", "names", "servers", "drain", "ready", "drain_seconds", "maintenance",
                       "set_maintenance"}
    assert all(hasattr(cls, m) for m in members - {"names"}), cls


def test_the_registry_hands_out_the_inventorys_kind(fake):
    assert isinstance(fake, Fake) and isinstance(fake, Balancer)
    assert fake.up == {n: True for n in NAMES}
    assert isinstance(Env("test", inv("fake"), model.load()).balancer, Fake)  # what every command is handed


def test_the_deploy_engine_rolls_through_a_new_kind(fake):
    svc = model.load().service("catalog").model_copy(update={"drain_timeout": 0})
    d = engine.Deps(service=svc, hosts={h.name: h for h in inv("fake").group("catalog")}, transport=Hosts(),
                    balancer=fake, sleep=lambda s: None)
    p = planner.build("catalog", "2.0.0", {n: "1.0.0" for n in NAMES}, batch="1", min_healthy=1, drain_timeout=0)
    results = {n: engine.HostResult(n, m.from_version, m.to_version, previous="0.9.0") for n, m in p.moves.items()}
    assert engine.roll(d, p, results).result == "ok"
    assert fake.calls == [("drain", "catalog-1"), ("ready", "catalog-1"), ("drain", "catalog-2"),
                          ("ready", "catalog-2")]
    assert all(fake.up.values())


def test_maintenance_switches_and_status_read_a_new_kind(registered):
    environment = Env("test", inv("fake"), model.load())
    fake = environment.balancer
    on = mt.switch(environment, "catalog", True, retry_after=120)
    assert (on["result"], on["changed"], on["balancers"]) == ("ok", True, ["fake-lb"])
    assert status._maintenance_view(fake) == {"catalog": 120}
    assert mt.switch(environment, "catalog", True, retry_after=120)["changed"] is False  # already on: nothing sent
    assert mt.switch(environment, "catalog", False)["result"] == "ok"
    assert fake.calls == [("maintenance", "catalog", 120), ("maintenance", "catalog", None)]
    assert environment.audited == [("maintenance.on", "catalog", "ok"), ("maintenance.on", "catalog", "ok"),
                                   ("maintenance.off", "catalog", "ok")]


def test_an_unknown_kind_is_refused_in_one_line_naming_the_known_ones():
    with pytest.raises(BadInput) as refused:
        balancer.for_inventory(inv("f5"), Hosts(), model.load())
    message = refused.value.message
    assert "\n" not in message and "balancer is 'f5'" in message
    assert all(f"'{k}'" in message for k in registry.KINDS), message
