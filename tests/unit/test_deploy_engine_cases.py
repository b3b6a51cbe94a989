"""The rolling engine's scenarios as data: one small file per case in engine_cases/, played by one test.

A case gives the tier (hosts, releases, the balancer's view), the faults (versions
whose health check fails, dead hosts, a step failing or a host that stops
answering at a step, peers down, drained, in maintenance or coming back), the
plan's options (batch, max_fail, canary) and what must hold afterwards: the
outcome, each host's release and weight, the calls each host and the balancer
saw, the step bounds, the events. The engine runs over roadie.testing's fakes
and a fake clock (its waits take no real time), as `roadie deploy` drives it:
roll, and revert when the rollout failed.

Schema (every key is checked: a misspelt one fails its case):

    about: what the case shows (required)
    tier:   hosts (count or names, default 4), version (1.0.0), previous (0.9.0), current {host: version},
            min_healthy (1), health_seconds (60), disk_free (bytes, or {host: bytes}), balancer (true)
    faults: bad [versions], dead [hosts], units {host: ActiveState},
            fail / unreachable [{host, step, version, lasting, message}],
            servers {host: {state, weight, sessions}}, returning {host: reads before UP}
    deploy: version (2.0.0), batch, max_fail, canary, stop_at {host, step},
            facts (read every host's release state first), stage {bytes} (stage a tarball first), prune
    expect: result, raises (staging's error: substrings), error / error_lacks (substrings), error_starts,
            batches_done, known_down [hosts],
            versions / previous / results / weights / host_errors {host|all: value},
            steps {host|all: [HostResult.steps]}, calls {host|all: [transport steps]},
            balancer_calls {host|all: [drain, ready]}, balancer_order [[ "host action", ...], ...],
            timeouts {step: seconds}, events [kind | {kind, count, field: value}], no_events [kinds],
            slept (seconds the engine waited on the clock)
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest
import yaml

from roadie import testing
from roadie.deploy import engine
from roadie.deploy import plan as planner
from roadie.errors import OperationFailed

CASES = sorted((Path(__file__).parent / "engine_cases").glob("*.yaml"))

KEYS = {
    "": {"about", "tier", "faults", "deploy", "expect"},
    "tier": {"hosts", "version", "previous", "current", "min_healthy", "health_seconds", "disk_free", "balancer"},
    "faults": {"bad", "dead", "units", "fail", "unreachable", "servers", "returning"},
    "deploy": {"version", "batch", "max_fail", "canary", "stop_at", "facts", "stage", "prune"},
    "expect": {"result", "raises", "error", "error_lacks", "error_starts", "batches_done", "known_down", "versions",
               "previous", "results", "weights", "host_errors", "steps", "calls", "balancer_calls", "balancer_order",
               "timeouts", "events", "no_events", "slept"},
}
FAULT_KEYS = {"host", "step", "version", "lasting", "message"}


def load(path: Path) -> dict:
    case = yaml.safe_load(path.read_text())
    assert isinstance(case, dict) and case.get("about"), f"{path.name}: a case is a mapping with `about`"
    for section, allowed in KEYS.items():
        got = case if not section else (case.get(section) or {})
        unknown = set(got) - allowed
        assert not unknown, f"{path.name}: unknown key(s) {sorted(unknown)} in {section or 'the case'}"
    for kind in ("fail", "unreachable"):
        for fault in case.get("faults", {}).get(kind, []):
            assert set(fault) <= FAULT_KEYS, f"{path.name}: {kind} fault keys are {sorted(FAULT_KEYS)}"
    return case


def build(case: dict, clock: testing.FakeClock, stop: threading.Event) -> testing.Rig:
    tier, faults, deploy = case.get("tier", {}), case.get("faults", {}), case.get("deploy", {})
    hosts = tier.get("hosts", 4)
    names = testing.names(hosts) if isinstance(hosts, int) else list(hosts)
    stop_at = deploy.get("stop_at")

    def on_step(host: str, what: str) -> None:  # a stop request (SIGINT) arrives while this step runs
        if stop_at and host == stop_at["host"] and what == testing.what_of(stop_at["step"]):
            stop.set()

    transport = testing.FakeTransport(
        names, tier.get("version", "1.0.0"), tier.get("previous", "0.9.0"), current=tier.get("current"),
        bad=faults.get("bad", ()), dead=faults.get("dead", ()), active=faults.get("units"),
        disk_free=tier.get("disk_free", 10**12), on_step=on_step,
        faults=[testing.Fault(**f) for f in faults.get("fail", [])]
        + [testing.Fault(unreachable=True, **f) for f in faults.get("unreachable", [])])
    servers = faults.get("servers", {})
    balancer = tier.get("balancer", True) and testing.FakeBalancer(
        names, states={n: s["state"] for n, s in servers.items() if "state" in s},
        weights={n: s["weight"] for n, s in servers.items() if "weight" in s},
        sessions={n: s["sessions"] for n, s in servers.items() if "sessions" in s},
        returning=faults.get("returning"))
    svc = testing.service(min_healthy=tier.get("min_healthy", 1))
    rig = testing.engine_deps(names, svc=svc, transport=transport, balancer=balancer or False, clock=clock,
                              health_seconds=tier.get("health_seconds", 60))
    rig.deps.stop = stop
    return rig


def play(rig: testing.Rig, case: dict, tmp_path: Path) -> tuple[engine.Outcome | None, dict, str | None]:
    """As `roadie deploy` drives the engine: [facts], [stage], roll, revert when failed, [prune]."""
    d, fake, deploy = rig.deps, rig.transport, case.get("deploy", {})
    version = str(deploy.get("version", "2.0.0"))
    names = list(d.hosts)
    try:
        facts = engine.host_facts(d, names) if deploy.get("facts") or deploy.get("stage") else None
        if deploy.get("stage"):
            tarball = tmp_path / f"catalog-{version}.tar.gz"
            tarball.write_bytes(b"x" * deploy["stage"].get("bytes", 1000))
            engine.stage(d, names, version, tarball, "0" * 64, facts)
    except OperationFailed as exc:
        return None, {}, exc.message
    current = {n: fake.current[n] for n in names}
    batch = None if deploy.get("batch") is None else str(deploy["batch"])
    p = planner.build(d.service.name, version, current, batch=batch, canary=deploy.get("canary"),
                      max_fail=deploy.get("max_fail", 0), min_healthy=d.service.min_healthy, drain_timeout=0)
    results = {n: engine.HostResult(n, m.from_version, m.to_version, previous=fake.previous[n])
               for n, m in p.moves.items()}
    outcome = engine.roll(d, p, results)
    if outcome.result == "failed":
        engine.revert(d, p, results)
    if deploy.get("prune"):
        engine.prune(d, names)
    return outcome, results, None


def per_host(spec: dict, names: list[str]) -> dict:
    """{all: v, host: w} as {host: value} for every host `spec` names (`all`: every host, then the named ones)."""
    out = {n: spec["all"] for n in names} if "all" in spec else {}
    out.update({k: v for k, v in spec.items() if k != "all"})
    unknown = set(out) - set(names)
    assert not unknown, f"the case names hosts the tier does not have: {sorted(unknown)}"
    return out


def texts(spec: str | list[str]) -> list[str]:
    return [spec] if isinstance(spec, str) else list(spec)


def check(expect: dict, rig: testing.Rig, clock: testing.FakeClock, outcome, results: dict,
          raised: str | None) -> None:
    fake, lb, names = rig.transport, rig.balancer, list(rig.deps.hosts)
    # Always: every remote step was given a bound (a host that hangs fails its step, it does not hold the deploy).
    assert [w for w, t in fake.timeouts if t is None] == [], "a remote step without a timeout"
    if "raises" in expect:  # staging refused: nothing rolled
        assert raised is not None and all(t in raised for t in texts(expect["raises"])), raised
        assert outcome is None
    else:
        assert raised is None, f"the case raised: {raised}"
    if "result" in expect:
        assert outcome.result == expect["result"], outcome.error
    for text in texts(expect.get("error", [])):
        assert outcome.error and text in outcome.error, outcome.error
    for text in texts(expect.get("error_lacks", [])):
        assert text not in (outcome.error or ""), outcome.error
    if "error_starts" in expect:
        assert outcome.error and outcome.error.startswith(expect["error_starts"]), outcome.error
    if "batches_done" in expect:
        assert outcome.batches_done == expect["batches_done"]
    if "known_down" in expect:
        assert rig.deps.known_down == set(expect["known_down"])
    for key, actual in (("versions", fake.current), ("previous", fake.previous),
                        ("results", {n: r.result for n, r in results.items()}),
                        ("weights", dict(lb.weight) if lb else {})):
        if key in expect:
            want = per_host(expect[key], names)
            assert {n: actual.get(n) for n in want} == want, key
    for host, text in per_host(expect.get("host_errors", {}), names).items():
        assert results[host].error and text in results[host].error, (host, results[host].error)
    for host, steps in per_host(expect.get("steps", {}), names).items():
        assert list(results[host].steps) == steps, host
    for host, calls in per_host(expect.get("calls", {}), names).items():
        assert fake.steps(host) == calls, host
    for host, calls in per_host(expect.get("balancer_calls", {}), names).items():
        assert lb.actions(host) == calls, host
    if "balancer_order" in expect:
        check_order(lb.calls, expect["balancer_order"])
    for step, seconds in expect.get("timeouts", {}).items():
        given = {t for w, t in fake.timeouts if w == testing.what_of(step)}
        assert given == {seconds}, f"{step} was bounded by {given}, not {seconds}"
    kinds = rig.kinds()
    for spec in expect.get("events", []):
        spec = {"kind": spec} if isinstance(spec, str) else dict(spec)
        kind, count = spec.pop("kind"), spec.pop("count", None)
        seen = [e for e in rig.events if e.kind == kind and all(e.fields.get(k) == v for k, v in spec.items())]
        assert seen if count is None else len(seen) == count, f"{kind} {spec}: seen {len(seen)} in {kinds}"
    for kind in expect.get("no_events", []):
        assert kind not in kinds, f"{kind} in {kinds}"
    if "slept" in expect:
        assert clock.waited == pytest.approx(expect["slept"]), clock.waited


def check_order(calls: list[tuple[str, str]], phases: list[list[str]]) -> None:
    """The balancer's whole log is the phases in order; within a phase, in any order (its hosts run in parallel)."""
    at = 0
    for phase in phases:
        want = Counter(tuple(c.split(" ", 1)) for c in phase)
        got = Counter(calls[at:at + len(phase)])
        assert got == want, f"balancer calls {at}..: {calls[at:at + len(phase)]}, expected {phase} (all: {calls})"
        at += len(phase)
    assert at == len(calls), f"balancer calls past the expected ones: {calls[at:]}"


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_engine_case(path, monkeypatch, tmp_path):
    case = load(path)
    clock = testing.FakeClock()
    rig = build(case, clock, threading.Event())
    outcome, results, raised = play(rig, case, tmp_path)
    check(case.get("expect", {}), rig, clock, outcome, results, raised)


def test_there_are_cases():
    assert len(CASES) >= 15


def mutated(key: str, value, rig: testing.Rig):
    """`value` of expectation `key` changed so that it no longer holds (None: no such change for it here)."""
    if key in ("result", "error_starts"):
        return f"{value}#not-so"
    if key in ("raises", "error"):
        return [*texts(value), "#not-so"]
    if key == "error_lacks":
        return ""  # in every error
    if key in ("batches_done", "slept"):
        return value + 1
    if key == "known_down":
        return [*value, "catalog-9"]
    if key in ("versions", "previous", "results", "weights", "host_errors", "steps", "calls", "balancer_calls"):
        host, want = next(iter(value.items()))
        return {**value, host: [*want, "bogus"] if isinstance(want, list) else f"{want}#not-so"}
    if key == "balancer_order":
        return [*value, ["catalog-1 drain"]]
    if key == "timeouts":
        step, seconds = next(iter(value.items()))
        return {**value, step: seconds + 1}
    if key == "events":
        return [*value, "deploy.no_such_event"]
    if key == "no_events":
        return [*value, rig.kinds()[0]] if rig.kinds() else None
    raise AssertionError(f"no mutation for {key}")


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_every_expectation_of_a_case_is_checked(path, monkeypatch, tmp_path):
    """Each expectation, changed, fails its case: the runner reads every key it accepts."""
    case = load(path)
    clock = testing.FakeClock()
    rig = build(case, clock, threading.Event())
    outcome, results, raised = play(rig, case, tmp_path)
    expect = case.get("expect", {})
    for key, value in expect.items():
        wrong = mutated(key, value, rig)
        if wrong is None:
            continue
        with pytest.raises(AssertionError):
            check({**expect, key: wrong}, rig, clock, outcome, results, raised)
