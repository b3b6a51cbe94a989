"""`roadie ops restart`: the deploy runner's restart operation, against the engine's fakes and moto's DynamoDB.

Every host is drained, restarted, health-checked on the release it runs and
enabled again; nothing is fetched, staged, migrated, switched to another
release, reverted or pruned; the lock is taken and freed; the audit says restart.
"""

from __future__ import annotations

import pytest

from roadie.deploy import engine, run
from roadie.state import audit
from roadie.errors import BadInput
from roadie.environment import Environment
from tests.unit.test_deploy_engine import NAMES, SVC, deps


@pytest.fixture
def state(test_environment):
    client, name, _ = test_environment
    return client, name


def prepared(d, fake, **opts):
    svc = SVC.model_copy(update={"migrations": True})  # a restart never migrates, even a service that has them
    d.service = svc
    facts = {n: {"current": fake.current[n], "previous": fake.previous[n], "releases": ["0.9.0", "1.0.0"]}
             for n in d.hosts}
    return run._prepare_restart(Environment.load("test"), svc, run.Options(**opts), d, facts,
                                {n: fake.current[n] for n in d.hosts})


@pytest.mark.parametrize(("batch", "batches"), [(None, 4), ("2", 2), ("3", 2)])
def test_every_host_is_restarted_on_its_own_release_in_batches(state, batch, batches):
    d, fake, lb, events = deps(NAMES)
    fake.current["catalog-4"] = "2.0.0"  # drift is kept: each host restarts what it runs
    p = prepared(d, fake, batch=batch)
    assert not p.tarballs and len(p.plan.batches) == batches
    assert {m.host: (m.from_version, m.to_version) for m in p.plan.moves.values()} == {
        n: (fake.current[n], fake.current[n]) for n in NAMES}
    outcome = run.execute(p)
    assert outcome.result == "ok", outcome.error
    for n in NAMES:
        assert [w for h, w in fake.calls if h == n] == ["switching current", "restarting", "health check"]
        assert [w for h, w in lb.calls if h == n] == ["drain", "ready"]
    assert not any(w in ("put", "migrating the database", "pruning old releases", "restoring previous")
                   for _, w in fake.calls)
    assert fake.current["catalog-4"] == "2.0.0" and fake.previous == {n: "0.9.0" for n in NAMES}
    assert Environment.load("test").lock("catalog").holder() is None
    rec = audit.query(*state, "test")[-1]
    assert rec["operation"] == "restart" and rec["result"] == "ok" and rec["version"] == "1.0.0+2.0.0"
    assert [e.kind for e in events][0] == "restart.started" and events[-1].kind == "restart.finished"


def test_a_host_that_fails_its_health_check_stops_the_restart_and_nothing_is_reverted(state):
    d, fake, lb, _ = deps(NAMES, bad={"1.0.0"})
    outcome = run.execute(prepared(d, fake, batch="1"))
    assert outcome.result == "failed" and "catalog-1: health" in outcome.error
    assert [h for h, w in lb.calls if w == "drain"] == ["catalog-1"]  # the rest never touched
    assert all(w == 1 for w in lb.weight.values())  # the failed host was put back in rotation
    assert set(fake.current.values()) == {"1.0.0"}
    assert audit.query(*state, "test")[-1]["result"] == "failed"


def test_a_host_with_no_release_is_refused(state):
    d, fake, _, _ = deps(NAMES)
    fake.current["catalog-2"] = None
    with pytest.raises(BadInput, match="catalog-2 has no catalog release installed"):
        prepared(d, fake)


def test_the_engine_is_the_one_that_restarts(monkeypatch, state):
    """No second implementation: the restart goes through engine.roll (breaking roll breaks the restart)."""
    d, fake, _, _ = deps(NAMES)
    seen = []
    real = engine.roll
    monkeypatch.setattr(engine, "roll", lambda *a, **k: seen.append(1) or real(*a, **k))
    assert run.execute(prepared(d, fake)).result == "ok" and seen == [1]
