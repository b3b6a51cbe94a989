"""The rolling engine against a fake transport and balancer: order of steps, failures, reverts, stops.

The fakes keep the state a real host and HAProxy would (current link, drained
flag); the engine's calls are recorded in order.
"""

from __future__ import annotations

import json
import threading

import pytest

from roadie.commands import release_host as cmd
from roadie.commands.haproxy import Server
from roadie.deploy import engine
from roadie.deploy import plan as planner
from roadie.errors import OperationFailed
from roadie.inventory import Host
from roadie.model import Service

SVC = Service(name="catalog", group="catalog", port=8080, health_path="/healthz", version_path="/version",
              version_header="X-Roadie-Version", route_prefix="/api", backend="catalog", min_healthy=1,
              drain_timeout=0, migrations=False)


class FakeHosts:
    """The transport: each host has a current release; the health check fails for bad versions."""

    def __init__(self, names, version="1.0.0", bad=(), dead=(), on_step=None):
        self.current = {n: version for n in names}
        self.previous = {n: "0.9.0" for n in names}
        self.bad, self.dead = set(bad), set(dead)
        self.calls: list[tuple[str, str]] = []
        self.timeouts: list[tuple[str, float | None]] = []
        self.on_step = on_step
        self.lock = threading.Lock()

    def run(self, host: Host, command: str, what: str, timeout: float | None = None) -> str:
        with self.lock:
            self.calls.append((host.name, what))
            self.timeouts.append((what, timeout))
        if self.on_step:
            self.on_step(host.name, what)
        if host.name in self.dead:
            raise OperationFailed(f"{host.name}: {what} failed: connection refused")
        if what == "reading the release state":
            return json.dumps({"current": self.current[host.name], "previous": self.previous[host.name],
                               "releases": ["1.0.0"], "active": "active", "pid": 1, "disk_free": 10**12})
        if what == "switching current":
            version = next(v for v in ("1.0.0", "2.0.0", "3.0.0") if command == cmd.switch(SVC.name, v))
            if self.current[host.name] != version:
                self.previous[host.name] = self.current[host.name]
            self.current[host.name] = version
        if what == "restoring previous":
            self.previous[host.name] = next(v for v in (None, "0.9.0", "1.0.0", "2.0.0")
                                            if command == cmd.set_previous(SVC.name, v))
        if what == "health check" and self.current[host.name] in self.bad:
            raise OperationFailed(f"{host.name}: health check failed: not healthy after 60 s: HTTP 500")
        return ""

    def put(self, host, local, remote):
        self.calls.append((host.name, "put"))

    def close(self):
        pass


class FakeBalancer:
    def __init__(self, names, down=()):
        self.state = {n: "DOWN" if n in down else "UP" for n in names}
        self.weight = {n: 1 for n in names}
        self.calls: list[tuple[str, str]] = []

    def servers(self, backend):
        return {n: Server(backend, n, self.state[n] if self.weight[n] else "DRAIN", self.weight[n], 0, 0, 0, 0, 0)
                for n in self.state}

    def drain(self, backend, server):
        self.calls.append((server, "drain"))
        self.weight[server] = 0

    def ready(self, backend, server):
        self.calls.append((server, "ready"))
        self.weight[server] = 1


def deps(names, **kw):
    hosts = {n: Host(n, f"198.18.0.{i + 10}", ("catalog",)) for i, n in enumerate(names)}
    fake = FakeHosts(names, **{k: v for k, v in kw.items() if k in ("bad", "dead", "on_step")})
    balancer = FakeBalancer(names, down=kw.get("down", ()))
    events = []
    d = engine.Deps(service=SVC, hosts=hosts, transport=fake, balancer=balancer, emit=events.append,
                    sleep=lambda s: None)
    return d, fake, balancer, events


def run(d, version="2.0.0", **kw):
    current = {n: d.transport.current[n] for n in d.hosts}
    p = planner.build("catalog", version, current, min_healthy=SVC.min_healthy, drain_timeout=0, **kw)
    results = {n: engine.HostResult(n, m.from_version, m.to_version, previous=d.transport.previous[n])
               for n, m in p.moves.items()}
    outcome = engine.roll(d, p, results)
    if outcome.result == "failed":
        engine.revert(d, p, results)
    return outcome, results


NAMES = ["catalog-1", "catalog-2", "catalog-3", "catalog-4"]


def test_each_host_drains_switches_restarts_checks_and_comes_back_in_order():
    d, hosts, lb, _ = deps(NAMES)
    outcome, results = run(d, batch="2")
    assert outcome.result == "ok"
    assert set(hosts.current.values()) == {"2.0.0"}
    for n in NAMES:
        assert [w for h, w in hosts.calls if h == n] == ["switching current", "restarting", "health check"]
        assert [w for h, w in lb.calls if h == n] == ["drain", "ready"]
        assert list(results[n].steps) == ["drain", "switch", "restart", "health", "enable"]
    assert all(w == 1 for w in lb.weight.values())  # nobody left drained
    # batch 2 starts only after batch 1 is back in rotation
    order = [h for h, w in lb.calls if w == "drain"]
    assert order[:2] == ["catalog-1", "catalog-2"]
    assert lb.calls.index(("catalog-3", "drain")) > max(lb.calls.index(("catalog-1", "ready")),
                                                         lb.calls.index(("catalog-2", "ready")))


def test_an_unhealthy_release_is_put_back_and_the_rest_never_touched():
    d, hosts, lb, events = deps(NAMES, bad={"2.0.0"})
    outcome, results = run(d, batch="1")
    assert outcome.result == "failed" and "catalog-1: health: " in outcome.error
    assert set(hosts.current.values()) == {"1.0.0"}
    assert results["catalog-1"].result == "reverted"
    assert [results[n].result for n in NAMES[1:]] == ["pending"] * 3
    assert not [c for c in lb.calls if c[0] != "catalog-1"]  # the others never left the balancer
    assert lb.weight["catalog-1"] == 1
    assert "deploy.host.reverted" in [e.kind for e in events]
    assert hosts.previous["catalog-1"] == "0.9.0"  # a rollback after this must not pick the bad release


def test_past_max_fail_every_changed_host_goes_back():
    d, hosts, lb, _ = deps(NAMES, dead=set())
    bad_host = "catalog-3"
    original = hosts.run

    def run_failing(host, command, what, timeout=None):  # catalog-3 cannot restart: the deploy fails in batch 2
        if host.name == bad_host and what == "restarting" and hosts.current[host.name] == "2.0.0":
            raise OperationFailed(f"{host.name}: restarting failed: unit failed")
        return original(host, command, what)

    hosts.run = run_failing
    outcome, results = run(d, batch="2")
    assert outcome.result == "failed" and outcome.error.startswith("catalog-3: restart:")
    assert set(hosts.current.values()) == {"1.0.0"}  # batch 1 went back too: one version on the tier
    assert [results[n].result for n in NAMES] == ["reverted", "reverted", "reverted", "reverted"]
    assert all(w == 1 for w in lb.weight.values())
    assert set(hosts.previous.values()) == {"0.9.0"}  # the tier is as it was, previous links included


def test_within_max_fail_the_rollout_goes_on():
    d, hosts, lb, _ = deps(NAMES)
    original = hosts.run

    def run_failing(host, command, what, timeout=None):
        if host.name == "catalog-2" and what == "health check" and hosts.current[host.name] == "2.0.0":
            raise OperationFailed("catalog-2: health check failed: timeout")
        return original(host, command, what)

    hosts.run = run_failing
    outcome, results = run(d, batch="1", max_fail=1)
    assert outcome.result == "ok"
    assert hosts.current == {"catalog-1": "2.0.0", "catalog-2": "1.0.0", "catalog-3": "2.0.0", "catalog-4": "2.0.0"}
    assert results["catalog-2"].result == "reverted"


def test_a_host_already_down_counts_against_the_minimum():
    """Down indeed (it does not answer): refused at once, no wait."""
    d, hosts, lb, events = deps(["catalog-1", "catalog-2"], down={"catalog-2"}, dead={"catalog-2"})
    outcome, _ = run(d, batch="1")
    assert outcome.result == "failed" and "fewer than 1 healthy catalog host" in outcome.error
    assert "catalog-2 (dead)" in outcome.error
    assert lb.calls == []  # catalog-1 was never drained
    assert set(hosts.current.values()) == {"1.0.0"}
    assert "deploy.capacity.waiting" not in [e.kind for e in events]


class Rising(FakeBalancer):
    """catalog-2's checks rise after another tool restarted it: DOWN, DOWN 1/2, then UP after `reads` reads."""

    def __init__(self, names, reads):
        super().__init__(names)
        self.reads, self.state["catalog-2"] = reads, "DOWN"

    def servers(self, backend):
        self.reads -= 1
        if self.state["catalog-2"] != "UP":
            self.state["catalog-2"] = "UP" if self.reads <= 0 else "DOWN 1/2" if self.reads == 1 else "DOWN"
        return super().servers(backend)


def test_a_deploy_waits_for_a_peer_coming_back_up_then_goes_on():
    d, hosts, _, events = deps(["catalog-1", "catalog-2"])
    d.balancer = lb = Rising(["catalog-1", "catalog-2"], reads=4)
    outcome, _ = run(d, batch="1")
    assert outcome.result == "ok", outcome.error
    assert set(hosts.current.values()) == {"2.0.0"}
    waited = [e for e in events if e.kind == "deploy.capacity.waiting"]
    assert len(waited) == 1 and waited[0].fields["hosts"] == ["catalog-2"]
    assert lb.calls[0] == ("catalog-1", "drain")  # only once catalog-2 was UP again


@pytest.mark.parametrize(("state", "weight", "wait"), [
    ("DOWN", 1, True),  # answers, unit active, checks never pass: refused after the wait
    ("MAINT", 1, False),  # in maintenance by hand: does not come back by itself
    ("UP", 0, False),  # drained by hand
])
def test_a_peer_that_does_not_come_back_is_refused(monkeypatch, state, weight, wait):
    monkeypatch.setattr(engine, "CAPACITY_WAIT", 0.3)
    d, hosts, lb, events = deps(["catalog-1", "catalog-2"])
    lb.state["catalog-2"], lb.weight["catalog-2"] = state, weight
    outcome, _ = run(d, batch="1")
    assert outcome.result == "failed" and "fewer than 1 healthy catalog host" in outcome.error
    assert ("still not UP after" in outcome.error) is wait
    assert ("deploy.capacity.waiting" in [e.kind for e in events]) is wait
    assert lb.calls == [] and set(hosts.current.values()) == {"1.0.0"}


def test_a_stop_request_finishes_the_batch_in_progress_and_starts_no_other():
    stop = threading.Event()

    def on_step(host, what):
        if host == "catalog-1" and what == "restarting":
            stop.set()  # SIGINT arrives while catalog-1 restarts

    d, hosts, lb, _ = deps(NAMES, on_step=on_step)
    d.stop = stop
    outcome, results = run(d, batch="1")
    assert outcome.result == "interrupted"
    assert hosts.current["catalog-1"] == "2.0.0" and results["catalog-1"].result == "ok"  # finished, not half-done
    assert [hosts.current[n] for n in NAMES[1:]] == ["1.0.0"] * 3
    assert all(w == 1 for w in lb.weight.values())


def test_stage_refuses_a_host_without_room(tmp_path):
    d, hosts, _, _ = deps(["catalog-1"])
    tarball = tmp_path / "catalog-2.0.0.tar.gz"
    tarball.write_bytes(b"x" * 1000)
    facts = {"catalog-1": {"releases": [], "disk_free": 100}}
    with pytest.raises(OperationFailed, match="catalog-1: stage failed: .* MiB free"):
        engine.stage(d, ["catalog-1"], "2.0.0", tarball, "0" * 64, facts)
    assert ("catalog-1", "put") not in hosts.calls


def test_a_host_dead_mid_deploy_counts_as_down_before_the_balancer_notices():
    """catalog-2 loses power in batch 2; HAProxy still says UP (fall x inter not yet over):
    reverting catalog-1 would drain the only live host, so it stays on the new release, in service."""
    d, hosts, lb, _ = deps(["catalog-1", "catalog-2"])
    original = hosts.run

    def run_dying(host, command, what, timeout=None):
        if host.name == "catalog-2" and what != "reading the release state":
            raise OperationFailed(f"catalog-2: {what} failed: NoValidConnectionsError")
        return original(host, command, what)

    hosts.run = run_dying
    outcome, results = run(d, batch="1")
    assert outcome.result == "failed" and outcome.error.startswith("catalog-2: switch:")
    assert d.known_down == {"catalog-2"}
    assert hosts.current["catalog-1"] == "2.0.0"
    assert results["catalog-1"].result == "ok" and "left on 2.0.0 and in service" in results["catalog-1"].error
    assert lb.calls.count(("catalog-1", "drain")) == 1  # never drained again for a revert
    assert lb.weight["catalog-1"] == 1


def test_every_remote_step_of_a_deploy_and_its_revert_is_bounded():
    """A host that stops answering fails its step at a bound, not when TCP gives up (16 minutes)."""
    d, hosts, _, _ = deps(NAMES, bad={"2.0.0"})
    d.health_seconds = 40
    engine.host_facts(d, NAMES)
    run(d, batch="1")
    engine.prune(d, NAMES)
    bounds = dict(hosts.timeouts)
    assert {w for w, t in hosts.timeouts if t is None} == set()
    assert bounds["health check"] == 40 + engine.HEALTH_SLACK
    assert bounds["switching current"] == engine.STEP_SECONDS["switch"]
    assert set(bounds) >= {"reading the release state", "switching current", "restarting", "health check",
                           "restoring previous", "pruning old releases"}


def test_a_host_that_stops_answering_mid_step_is_left_out_of_rotation_and_asked_nothing_more():
    """Its link cut while it switches: one bounded failure, no put-back tries that would each wait again."""
    from roadie.errors import HostUnreachable

    d, hosts, lb, _ = deps(["catalog-1", "catalog-2"])
    original = hosts.run

    def cut(host, command, what, timeout=None):
        if host.name == "catalog-2" and what == "switching current":
            hosts.calls.append((host.name, what))
            raise HostUnreachable(f"catalog-2: {what} did not finish within {timeout:.0f} s")
        if host.name == "catalog-2" and what != "reading the release state":
            raise AssertionError(f"catalog-2 asked to {what} after it stopped answering")
        return original(host, command, what, timeout)

    hosts.run = cut
    outcome, results = run(d, batch="1")
    assert outcome.result == "failed" and "catalog-2: switch: " in outcome.error
    assert "does not answer: left out of rotation" in results["catalog-2"].error
    assert lb.weight["catalog-2"] == 0  # not put back in rotation: its last step's effect is unknown
    assert ("catalog-2", "ready") not in lb.calls
    assert "catalog-2" in d.known_down
    # catalog-1 stays on the new release and in service: reverting it would leave nobody to answer
    assert hosts.current["catalog-1"] == "2.0.0" and lb.weight["catalog-1"] == 1
