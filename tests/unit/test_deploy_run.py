"""The deploy runner's refusals before anything is touched: versions, host selections, the inventory's balancer."""

from __future__ import annotations

import pytest

from roadie import model
from roadie.deploy import run
from roadie.deploy.balancer import HAProxy
from roadie.errors import BadInput
from roadie.inventory import Host, Inventory


def inv(balancer: str | None = None) -> Inventory:
    extra = {"roadie_balancer": balancer} if balancer else {}
    hosts = {n: Host(n, f"198.18.0.{10 + i}", (g,), vars=extra)
             for i, (n, g) in enumerate([("lb-1", "loadbalancer"), ("catalog-1", "catalog"), ("catalog-2", "catalog")])}
    return Inventory(env="test", hosts=hosts)


@pytest.mark.parametrize(("version", "message"), [
    ("latest", "'latest' is not a release"), ("LATEST", "is not a release"), ("current", "is not a release"),
    ("v1.0.0", "not a semantic version"), ("1.0", "not a semantic version"), ("", "not a semantic version"),
    ("1.0.0+build.1", "build metadata"),
])
def test_versions_refused(version, message):
    with pytest.raises(BadInput, match=message):
        run._check_version(version)


@pytest.mark.parametrize(("only", "expected", "message"), [
    (None, ["catalog-1", "catalog-2"], None),
    (["catalog-2"], ["catalog-2"], None),
    ([], None, "--hosts names no host"),
    (["catalog-9"], None, "catalog-9 not in the catalog group"),
    (["lb-1"], None, "lb-1 not in the catalog group"),
])
def test_host_selection(only, expected, message):
    svc = model.load().service("catalog")
    if message:
        with pytest.raises(BadInput, match=message):
            run.tier(inv(), svc, only)
    else:
        assert [h.name for h in run.tier(inv(), svc, only)] == expected


@pytest.mark.parametrize(("kind", "ok"), [(None, True), ("haproxy", True), ("f5", False)])
def test_the_inventory_chooses_the_balancer(kind, ok):
    stack = model.load()
    if ok:
        b = run.balancer_for(inv(kind), object(), stack)
        assert isinstance(b, HAProxy) and [h.name for h in b.hosts] == ["lb-1"]
        assert b.socket == stack.loadbalancer.admin_socket
    else:
        with pytest.raises(BadInput, match=f"balancer is '{kind}'"):
            run.balancer_for(inv(kind), object(), stack)
