"""The judged canary: its flags, its figures from HAProxy's counters, its verdict, and the engine acting on it."""

from __future__ import annotations

import pytest

from roadie.commands.haproxy import Server, parse_stat
from roadie.deploy import canary, engine
from roadie.errors import BadInput
from tests.unit.test_deploy_engine import NAMES, deps, run
from tests.unit.test_deploy_haproxy import STAT


@pytest.mark.parametrize("flags, message", [
    ((None, 30, None, None), "--bake needs --canary N"),
    ((1, 0, None, None), "--bake 0: between 1 and 3600"),
    ((1, 3601, None, None), "--bake 3601: between 1 and 3600"),
    ((1, 30, -0.1, None), "--max-error-rate -0.1: a share of requests"),
    ((1, 30, 1.0, None), "--max-error-rate 1.0: a share of requests"),
    ((1, 30, None, 0.5), "--max-latency-ratio 0.5: between 1 and 100"),
    ((1, None, 0.05, None), "judge a bake: add --canary N --bake SECONDS"),
    ((None, None, None, 3.0), "judge a bake"),
])
def test_bad_flags_are_one_line_refusals(flags, message):
    with pytest.raises(BadInput, match=message):
        canary.rules(*flags)


@pytest.mark.parametrize("flags, expected", [
    ((None, None, None, None), None),
    ((1, None, None, None), None),  # a canary without a bake: health-gated only, as before
    ((2, 30, None, None), canary.Rules(30, 0.01, 2.0)),
    ((1, 10, 0.0, 1.5), canary.Rules(10, 0.0, 1.5)),
])
def test_rules(flags, expected):
    assert canary.rules(*flags) == expected


def test_responses_are_every_http_answer_of_a_server():
    stats = parse_stat(STAT)
    assert stats[("catalog", "catalog-1")].responses == 60  # 58 2xx + 1 4xx + 1 5xx
    assert stats[("catalog", "catalog-2")].responses == 40


def srv(name, responses, http_5xx=0, errors=0, ms=10):
    return Server("catalog", name, "UP", 1, 0, 0, errors, http_5xx, ms, responses)


R = canary.Rules(bake=10)


@pytest.mark.parametrize("canary_after, old_after, ok, reason", [
    (srv("c", 100, ms=12), srv("o", 100, ms=10), True, None),
    (srv("c", 100, http_5xx=10), srv("o", 100), False, "error rate 10.0% vs 0.0% (allowed 1.0% more)"),
    (srv("c", 100, http_5xx=10), srv("o", 100, http_5xx=10), True, None),  # as bad as the old: not the release
    (srv("c", 95, errors=5), srv("o", 100), False, "error rate 5.0% vs 0.0%"),  # connection errors count
    (srv("c", 100, ms=300), srv("o", 100, ms=50), False, "response time 300 ms vs 50 ms (allowed 2x)"),
    (srv("c", 100, ms=9), srv("o", 100, ms=3), True, None),  # 3x, but 6 ms: noise
    (srv("c", 0), srv("o", 100), False, "no request reached the canary during the bake"),
])
def test_the_verdict(canary_after, old_after, ok, reason):
    before = {"c": srv("c", 0), "o": srv("o", 0)}
    after = {"c": canary_after, "o": old_after}
    v = canary.verdict(canary.figures(before, after, ["c"]), canary.figures(before, after, ["o"]), R)
    assert v.ok is ok
    assert (reason is None and not v.reasons) or reason in v.reasons[0]
    assert ("canary passed" in v.summary()) is ok and "bake 10 s" in v.summary()


def test_bake_reads_counters_around_the_bake_and_judges_deltas():
    reads = iter([{"c": srv("c", 1000, http_5xx=500), "o": srv("o", 5000)},
                  {"c": srv("c", 1100, http_5xx=502), "o": srv("o", 5100)}])
    slept = []
    v = canary.bake(lambda: next(reads), slept.append, ["c"], ["o"], R)
    assert slept == [10]
    assert (v.canary.requests, v.canary.errors, v.ok) == (100, 2, False)  # 2 % new errors, old hosts 0 %


class Judge:
    def __init__(self, ok):
        self.ok, self.calls = ok, []

    def __call__(self, batch, old):
        self.calls.append((batch, old))
        figures = canary.Figures(tuple(batch), 100, 0 if self.ok else 10, 10.0)
        base = canary.Figures(tuple(old), 300, 0, 10.0)
        return canary.verdict(figures, base, R)


@pytest.mark.parametrize("ok", [True, False])
def test_the_engine_judges_the_canary_batch_once_and_acts_on_the_verdict(ok):
    d, hosts, lb, events = deps(NAMES)
    d.judge = Judge(ok)
    outcome, results = run(d, batch="1", canary=1)
    assert d.judge.calls == [(["catalog-1"], NAMES[1:])]  # judged against the hosts still on the old version
    assert outcome.verdict["ok"] is ok and outcome.as_dict()["verdict"]["canary"]["errors"] == (0 if ok else 10)
    kinds = [e.kind for e in events]
    assert kinds.count("deploy.canary.verdict") == 1
    if ok:
        assert outcome.result == "ok" and set(hosts.current.values()) == {"2.0.0"}
    else:
        assert outcome.result == "failed" and "error rate 10.0% vs 0.0%" in outcome.error
        assert set(hosts.current.values()) == {"1.0.0"}  # the canary went back
        assert results["catalog-1"].result == "reverted"
        assert not [c for c in lb.calls if c[0] != "catalog-1"]  # the others never left the balancer
        assert all(w == 1 for w in lb.weight.values())


def test_without_a_judge_the_canary_is_health_gated_only():
    d, hosts, _, events = deps(NAMES)
    outcome, _ = run(d, batch="1", canary=1)
    assert outcome.result == "ok" and outcome.verdict is None and "verdict" not in outcome.as_dict()
    assert "deploy.canary.verdict" not in [e.kind for e in events]
    assert engine.Outcome("ok", {}).as_dict().keys() == {"result", "error", "batches_done", "hosts"}


@pytest.mark.parametrize("flags, message", [
    (["--bake", "30"], "--bake needs --canary N"),
    (["--canary", "1", "--bake", "0"], "--bake 0: between 1 and 3600 seconds."),
    (["--canary", "1", "--bake", "30", "--max-error-rate", "2"], "--max-error-rate 2.0: a share of requests"),
    (["--canary", "1", "--bake", "30", "--max-latency-ratio", "0"], "--max-latency-ratio 0.0: between 1 and 100"),
    (["--max-error-rate", "0.1"], "judge a bake"),
])
def test_the_cli_refuses_bad_canary_flags_in_one_line_before_any_host_is_asked(roadie, flags, message):
    proc = roadie("deploy", "catalog", "2.0.0", *flags, env={"ROADIE_AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
