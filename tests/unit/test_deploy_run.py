"""The deploy runner's refusals before anything is touched: versions, host selections, the inventory's balancer."""

from __future__ import annotations

import pytest

from roadie import model
from roadie.deploy import run
from roadie import balancer
from roadie.environment import Environment
from roadie.balancer.haproxy import HAProxy
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
            run.tier(Environment("test", inv(), model.load()), svc, only)
    else:
        assert [h.name for h in run.tier(Environment("test", inv(), model.load()), svc, only)] == expected


@pytest.mark.parametrize(("kind", "ok"), [(None, True), ("haproxy", True), ("f5", False)])
def test_the_inventory_chooses_the_balancer(kind, ok):
    stack = model.load()
    if ok:
        b = balancer.for_inventory(inv(kind), object(), stack)
        assert isinstance(b, HAProxy) and [h.name for h in b.hosts] == ["lb-1"]
        assert b.socket == stack.loadbalancer.admin_socket
    else:
        with pytest.raises(BadInput, match=f"balancer is '{kind}'"):
            balancer.for_inventory(inv(kind), object(), stack)


# -- execute() under a lock whose renewals fail, lapse, or are taken over ------------------------------------------
# The engine over roadie.testing's fake hosts and balancer, the deploys table on moto, and a lock with a lease of
# seconds instead of a minute (Environment.lock is swapped for one that makes such a lock and keeps it for the test).

NAMES = ["catalog-1", "catalog-2", "catalog-3", "catalog-4"]


@pytest.fixture
def deploys(test_environment):
    client, name, _ = test_environment
    return client, name


def short_locks(monkeypatch, client, name, lease: float, under=None) -> list:
    from roadie.state.lock import Lock

    made = []

    def lock_for(environment, service, **kw):
        made.append(Lock(under or client, name, environment.name, service, lease=lease, **kw))
        return made[-1]

    monkeypatch.setattr(Environment, "lock", lock_for)
    return made


def prepared(d, batch: str = "1") -> run.Prepared:
    from roadie.deploy import plan as planner
    SVC = d.service  # roadie.testing.service(): the catalog of the tests

    current = {n: d.transport.current[n] for n in d.hosts}
    p = planner.build("catalog", "2.0.0", current, batch=batch, min_healthy=SVC.min_healthy, drain_timeout=0)
    facts = {n: {"current": current[n], "previous": d.transport.previous[n], "releases": ["1.0.0", "2.0.0"]}
             for n in d.hosts}
    return run.Prepared(environment=Environment.load("test"), operation="deploy", service=SVC, version="2.0.0", plan=p,
                        deps=d, facts=facts,
                        options=run.Options())


def take_over(client, name) -> None:
    """bob's deploy takes the catalog lock: from where it stands the first deploy's lease has lapsed."""
    import time

    from roadie.state.lock import Lock
    from tests.unit.test_deploy_lock import BOB

    Lock(client, name, "test", "catalog", clock=lambda: time.time() + 120).acquire(BOB, "deploy", "taking over")


def drained(lb) -> list[str]:
    return [h for h, what in lb.calls if what == "drain"]


def test_renewal_errors_that_recover_within_the_lease_leave_the_deploy_ok_and_nothing_reverted(deploys, monkeypatch):
    import time

    from roadie.state import audit
    from roadie.testing import engine_deps as deps
    from tests.unit.test_deploy_lock import Flaky, throttled

    client, name = deploys
    flaky = Flaky(client, fail=2, error=throttled())  # renewals at 0.67 s and 0.87 s fail, 1.27 s succeeds
    made = short_locks(monkeypatch, client, name, lease=2, under=flaky)
    d, hosts, lb, events = deps(NAMES, on_step=lambda h, what: time.sleep(0.5) if what == "restarting" else None)
    outcome = run.execute(prepared(d))
    assert flaky.calls >= 3  # the errors, and the renewal after them, happened while hosts were moving
    assert outcome.result == "ok", outcome.error
    assert made[0].lost is None
    assert set(hosts.current.values()) == {"2.0.0"}
    assert [r.result for r in outcome.hosts.values()] == ["ok"] * 4
    assert drained(lb) == NAMES and "deploy.revert.started" not in [e.kind for e in events]
    assert [(r["operation"], r["result"]) for r in audit.query(client, name, "test")] == [("deploy", "ok")]
    assert Environment.load("test").journal("catalog").read() is None  # ended: the deploy finished by itself
    assert made[0].holder() is None  # released


def test_a_lock_taken_over_mid_deploy_stops_at_the_next_batch_and_the_first_deploy_reverts_nothing(
        deploys, monkeypatch):
    from roadie.state import audit
    from roadie.testing import engine_deps as deps
    from tests.unit.test_deploy_lock import wait_for

    client, name = deploys
    made = short_locks(monkeypatch, client, name, lease=1.5)

    def on_step(host, what):
        if host == "catalog-2" and what == "restarting":  # batch 2 of 4 is out of service
            take_over(client, name)
            wait_for(lambda: made[0].lost, 2)  # the next renewal (every 0.5 s) finds bob's token

    d, hosts, lb, events = deps(NAMES, on_step=on_step)
    outcome = run.execute(prepared(d))
    assert made[0].lost and "bob@ci-runner" in made[0].lost
    assert outcome.result == "interrupted"
    assert "lock" in outcome.error and "bob@ci-runner" in outcome.error
    # batch 2 finished its steps (no host left drained or half-switched); no further host left service
    assert hosts.current == {"catalog-1": "2.0.0", "catalog-2": "2.0.0", "catalog-3": "1.0.0", "catalog-4": "1.0.0"}
    assert drained(lb) == ["catalog-1", "catalog-2"] and all(w == 1 for w in lb.weight.values())
    # ... and nothing was put back, pruned or settled by a deploy that no longer holds the lock
    assert [outcome.hosts[n].result for n in NAMES] == ["ok", "ok", "untouched", "untouched"]
    assert "deploy.revert.started" not in [e.kind for e in events]
    assert not [c for c in hosts.calls if c[1] == "pruning old releases"]
    assert made[0].holder().who == "bob"  # its release left bob's lock alone
    entry = Environment.load("test").journal("catalog").read()  # not ended: bob settles from it (--resume or rollback)
    assert entry is not None and entry.moves["catalog-3"]["step"] == "planned"
    assert entry.moves["catalog-2"]["step"] in ("draining", "drained", "switched")  # nothing written after the loss
    [record] = audit.query(client, name, "test")
    assert record["result"] == "interrupted" and "bob@ci-runner" in record["lock_lost"]
    assert [r["result"] for r in record["hosts"]] == ["ok", "ok", "untouched", "untouched"]
    said = [e.sentence() for e in events if e.kind == "deploy.lock_lost"]
    assert len(said) == 1 and "bob@ci-runner" in said[0] and "reverts nothing" in said[0]


def test_a_lease_lapsed_under_renewal_errors_stops_the_rollout_and_reverts_nothing(deploys, monkeypatch):
    import time

    from roadie.testing import engine_deps as deps
    from tests.unit.test_deploy_lock import Flaky, unreachable

    client, name = deploys
    made = short_locks(monkeypatch, client, name, lease=1.5, under=Flaky(client, fail=10**6, error=unreachable()))
    # each batch takes 0.6 s: the lease lapses at 1.5 s, while batch 3 restarts
    d, hosts, lb, events = deps(NAMES, on_step=lambda h, what: time.sleep(0.6) if what == "restarting" else None)
    outcome = run.execute(prepared(d))
    assert made[0].lost and "lapsed" in made[0].lost
    assert outcome.result == "interrupted" and "lapsed" in outcome.error
    assert hosts.current["catalog-4"] == "1.0.0" and "catalog-4" not in drained(lb)
    assert [outcome.hosts[n].result for n in NAMES] == ["ok", "ok", "ok", "untouched"]
    assert "deploy.revert.started" not in [e.kind for e in events]
    assert Environment.load("test").journal("catalog").read() is not None
    assert made[0].holder() is None  # nobody had taken it: the stale item is deleted on release


def test_a_lock_lost_while_a_failed_deploy_reverts_stops_the_revert_at_the_next_batch(deploys, monkeypatch):
    from roadie.errors import OperationFailed
    from roadie.testing import engine_deps as deps
    from tests.unit.test_deploy_lock import wait_for

    client, name = deploys
    made = short_locks(monkeypatch, client, name, lease=1.5)
    holder = {}

    def on_step(host, what):
        if host == "catalog-3" and what == "health check" and holder["hosts"].current[host] == "2.0.0":
            raise OperationFailed("catalog-3: health check failed: HTTP 500")
        if host == "catalog-1" and what == "switching current" and holder["hosts"].current[host] == "2.0.0":
            take_over(client, name)  # catalog-1 is the first host going back
            wait_for(lambda: made[0].lost, 2)

    d, hosts, lb, events = deps(NAMES, on_step=on_step)
    holder["hosts"] = hosts
    outcome = run.execute(prepared(d))
    assert outcome.result == "interrupted" and "bob@ci-runner" in outcome.error and "catalog-3" in outcome.error
    assert hosts.current == {"catalog-1": "1.0.0", "catalog-2": "2.0.0", "catalog-3": "1.0.0", "catalog-4": "1.0.0"}
    assert drained(lb) == ["catalog-1", "catalog-2", "catalog-3", "catalog-1"]  # catalog-2 never drained to go back
    assert "lock" in outcome.hosts["catalog-2"].error and all(w == 1 for w in lb.weight.values())
