"""Preflight's reads run together: results in order, the first job's error wins, nothing is left running;
the inventory read started early loses no error; a read whose answer goes unused (the published checksum
of a version every host already has) stops nothing."""

from __future__ import annotations

import threading
import time

import pytest

from roadie import inventory
from roadie.deploy import preflight, run
from roadie.errors import BadInput
from roadie.environment import Environment
from tests.unit.test_deploy_aws import SERVICE, aws_env  # noqa: F401 (a fixture)


def job(seconds: float, value=None, error: str | None = None):
    def run_it():
        time.sleep(seconds)
        if error:
            raise BadInput(error)
        return value
    return run_it


@pytest.mark.parametrize(("jobs", "expected"), [
    ([], []),
    ([job(0, 1)], [1]),
    ([job(0.05, "slow"), job(0, "fast")], ["slow", "fast"]),  # in order, not in the order they finish
    ([job(0.05, error="facts"), job(0, error="balancer")], "facts"),  # the first's error, though it came last
    ([job(0, 1), job(0.02, error="journal"), job(0, 3)], "journal"),
    ([job(0, None), job(0, (None, None))], [None, (None, None)]),
])
def test_together_answers_in_order_and_raises_the_first_jobs_error(jobs, expected):
    if isinstance(expected, str):
        with pytest.raises(BadInput, match=f"^{expected}$"):
            preflight.together(*jobs)
    else:
        assert preflight.together(*jobs) == expected


def test_together_runs_every_job_at_once():
    met = threading.Barrier(3, timeout=5)  # broken (BrokenBarrierError) unless all three wait at the same time
    assert preflight.together(*[lambda i=i: met.wait() is not None and i for i in range(3)]) == [0, 1, 2]


def test_together_waits_for_every_job_before_raising():
    finished = threading.Event()

    def slow():
        time.sleep(0.1)
        finished.set()

    with pytest.raises(BadInput):
        preflight.together(job(0, error="at once"), slow)
    assert finished.is_set()  # nothing of preflight still runs when its error is reported


@pytest.mark.parametrize(("value", "error"), [(7, None), (None, BadInput("no"))])
def test_tried_keeps_the_answer_or_the_error_for_later(value, error):
    got = preflight.tried(lambda: value if error is None else (_ for _ in ()).throw(error))()
    assert (got.value, got.error) == (value, error)
    if error is None:
        assert got.get() == value
    else:
        with pytest.raises(BadInput, match="no"):
            got.get()


def test_the_early_inventory_read_runs_beside_and_loses_no_error(monkeypatch):
    calls = []
    real = inventory.load

    def load(env):
        calls.append(threading.current_thread().name)
        time.sleep(0.05)
        return real(env)

    monkeypatch.setattr(inventory, "load", load)
    wait = preflight.read_inventory_early("no-such-env")
    wait()  # the error stays for the read that reports it
    assert calls == ["inventory"]
    with pytest.raises(BadInput, match="Unknown environment 'no-such-env'"):
        inventory.load("no-such-env")


def fail_facts(side):
    answer = side._answer
    side._answer = lambda iid, command, what: (1, "sshd: no answer") if what == "reading the release state" \
        else answer(iid, command, what)


def raise_journal():
    raise BadInput("catalog has an unfinished deploy")


@pytest.mark.parametrize(("facts_fail", "alongside", "error"), [
    (False, lambda: "journal read", None),
    (False, raise_journal, "unfinished deploy"),
    (True, lambda: "journal read", "Preflight: .*sshd: no answer; nothing was changed"),
    (True, raise_journal, "Preflight: .*sshd: no answer"),  # the facts' error first, whichever came first
])
def test_prepare_reads_alongside_and_reports_the_facts_first(aws_env, facts_fail, alongside, error):  # noqa: F811
    estate, side, source = aws_env
    if facts_fail:
        fail_facts(side)
    prepare = lambda: run.prepare(Environment.load(estate.env), SERVICE, "2.0.0", run.Options(batch="2"), "deploy",  # noqa: E731
                                  lambda ev: None, artifact_source=source, alongside=alongside)
    if error:
        with pytest.raises(BadInput, match=error):
            prepare()
    else:
        assert prepare().alongside == "journal read"


@pytest.mark.parametrize(("unpacked", "error"), [
    (False, "catalog 2.0.0 was never published"),  # a host needs it: the read's answer counts
    (True, None),  # every host has it unpacked: nothing to fetch, so the unpublished version stops nothing
])
def test_the_published_checksum_read_early_counts_only_when_a_host_needs_the_artifact(aws_env, unpacked,  # noqa: F811
                                                                                     error):
    estate, side, _ = aws_env  # nothing published in the estate's bucket
    if unpacked:
        for releases in side.releases.values():
            releases.append("2.0.0")
    deploy = lambda: run.prepare(Environment.load(estate.env), SERVICE, "2.0.0", run.Options(batch="2"), "deploy",  # noqa: E731
                                 lambda ev: None)
    if error:
        with pytest.raises(BadInput, match=error):
            deploy()
    else:
        prepared = deploy()
        assert prepared.tarballs == {} and sorted(prepared.plan.moves) == sorted(h.name for h in
                                                                                  estate.hosts[SERVICE])
