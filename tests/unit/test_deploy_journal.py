"""The deploy journal and resume, against the deploys table on moto (over HTTP).

The deploying process "dies" in batch 2 (an exception no handler in roadie
catches, raised as the host side switches the first host of batch 2): its
journal stays, with that host drained. Then `settle` + a resumed deploy, or a
rollback, bring the tier to one version with every host in service.
"""

from __future__ import annotations

import pytest

from roadie.deploy import run
from roadie.state import journal
from roadie.errors import BadInput
from roadie.events import event
from roadie.environment import Environment
from tests import awsestate
from tests.unit.test_deploy_aws import SERVICE, aws_env, deploy  # noqa: F401 (aws_env is a fixture)


class Died(BaseException):
    """What SIGKILL does to the deploying process, as far as the tier can tell: nothing after it runs."""


@pytest.fixture
def died(aws_env):  # noqa: F811
    estate, side, source = aws_env
    victim = estate.hosts[SERVICE][2].vars["ansible_aws_ssm_instance_id"]  # first host of batch 2
    answer = side._answer

    def dying(iid, command, what):
        if iid == victim and what == "switching current":
            raise Died()
        return answer(iid, command, what)

    side._answer = dying
    with pytest.raises(Died):
        deploy(estate, source)
    side._answer = answer
    return estate, side, source


def targets(estate) -> dict[str, str]:
    elb = awsestate.client(estate.endpoint, "elbv2")
    ids = [{"Id": h.vars["ansible_aws_ssm_instance_id"]} for h in estate.hosts[SERVICE]]
    return {t["Target"]["Id"]: t["TargetHealth"]["State"]
            for t in elb.describe_target_health(TargetGroupArn=estate.target_groups[SERVICE],
                                                Targets=ids)["TargetHealthDescriptions"]}


def test_each_hosts_progress_is_in_the_journal_after_the_deploy_dies(died):
    estate, side, _ = died
    entry = Environment.load(estate.env).journal(SERVICE).read()
    names = [h.name for h in estate.hosts[SERVICE]]
    assert (entry.operation, entry.version) == ("deploy", "2.0.0")
    # batch 2: the first died while switching; the second got as far as healthy, never re-enabled
    assert [entry.moves[n]["step"] for n in names] == ["done", "done", "drained", "healthy"]
    assert sorted(entry.unsettled()) == sorted(names[2:]) and entry.from_versions() == {"1.0.0"}
    left = targets(estate)
    assert sorted(left.values()) == ["healthy", "healthy", "unused", "unused"]  # batch 2 left out of service


def test_resume_settles_the_drained_hosts_and_finishes_to_the_version(died):
    estate, side, source = died
    entry = Environment.load(estate.env).journal(SERVICE).read()
    events = []
    prepared = run.prepare(Environment.load(estate.env), SERVICE, "2.0.0", run.Options(batch="2"), "deploy",
                           events.append,
                           artifact_source=source)
    assert sorted(run.settle(prepared, entry)) == sorted(entry.unsettled())
    assert set(targets(estate).values()) == {"healthy"}  # nobody left drained, before anything moves again
    assert Environment.load(estate.env).journal(SERVICE).read() is None
    from roadie.state import audit

    ddb, table = Environment.load(estate.env).table()
    settled = [r for r in audit.query(ddb, table, estate.env, service=SERVICE) if r["operation"] == "settle"]
    assert [sorted(r["settled"]) for r in settled] == [sorted(entry.unsettled())]  # audited, with the journal
    assert settled[0]["journal"]["version"] == "2.0.0"
    outcome = run.execute(prepared)
    assert outcome.result == "ok" and set(side.current.values()) == {"2.0.0"}
    assert set(targets(estate).values()) == {"healthy"}
    assert Environment.load(estate.env).journal(SERVICE).read() is None


def test_rollback_from_the_journal_returns_every_host_to_where_it_was(died):
    estate, side, source = died
    entry = Environment.load(estate.env).journal(SERVICE).read()
    prepared = run.prepare(Environment.load(estate.env), SERVICE, entry.from_versions().pop(), run.Options(batch="2"),
                           "rollback",
                           lambda ev: None, artifact_source=source)
    run.settle(prepared, entry)
    assert run.execute(prepared).result == "ok"
    assert set(side.current.values()) == {"1.0.0"} and set(targets(estate).values()) == {"healthy"}


@pytest.mark.parametrize("entry, version, message", [
    (None, "2.0.0", "Nothing to resume: no unfinished deploy of catalog in local"),
    (journal.Entry("deploy", "2.0.0", {}, 0.0, "ci"), "3.0.0", "was to 2.0.0, not 3.0.0"),
])
def test_resume_refuses_nothing_to_resume_and_another_version(entry, version, message):
    with pytest.raises(BadInput, match=message):
        journal.check_resume(entry, "catalog", "local", version, "deploy")


def test_steps_come_from_the_engines_events_and_unknown_hosts_are_ignored(moto_endpoint):
    from roadie.state import table

    ddb = awsestate.client(moto_endpoint, "dynamodb")
    table.ensure(ddb, "roadie-j-deploys", emulated=True)
    j = journal.Journal(ddb, "roadie-j-deploys", "j", "catalog")
    j.begin("deploy", "2.0.0", {"a": ("1.0.0", "2.0.0"), "b": (None, "2.0.0")}, "alice")
    seen = []
    emit = j.recording(seen.append)
    emit(event("deploy.batch.started", hosts=["a", "b"]))
    # written at once, before any host of the batch is drained (later steps go with the next flush)
    assert {h: m["step"] for h, m in j.read().moves.items()} == {"a": "draining", "b": "draining"}
    for ev in [event("deploy.staged", host="a"), event("deploy.host.step", host="a", step="drain"),
               event("deploy.host.step", host="a", step="switch"), event("deploy.host.step", host="zz", step="drain"),
               event("deploy.host.failed", host="b"), event("deploy.batch.done")]:
        emit(ev)
    assert len(seen) == 7  # every event still reaches the terminal
    j.close()  # the last steps are written
    entry = j.read()
    assert entry.moves == {"a": {"from": "1.0.0", "to": "2.0.0", "step": "switched"},
                           "b": {"from": None, "to": "2.0.0", "step": "failed"}}
    assert entry.unsettled() == ["a", "b"]
    j.end()
    assert j.read() is None


def test_the_cli_refuses_a_resume_with_nothing_to_resume_in_one_line(moto_endpoint, roadie):
    proc = roadie("deploy", "catalog", "2.0.0", "--resume", "--yes", env={"ROADIE_AWS_ENDPOINT_URL": moto_endpoint})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "Error: Nothing to resume: no unfinished deploy of catalog in local."], proc.stderr


def test_nothing_else_starts_over_an_unsettled_journal(died):
    """A restart or a deploy that skipped the CLI's check must not overwrite the dead deploy's journal."""
    estate, side, source = died
    prepared = run.prepare(Environment.load(estate.env), SERVICE, "2.0.0", run.Options(batch="2"), "deploy",
                           lambda ev: None,
                           artifact_source=source)
    with pytest.raises(BadInput, match="has an unfinished deploy to 2.0.0 by .*--resume"):
        run.execute(prepared)
    assert Environment.load(estate.env).lock(SERVICE).holder() is None  # the lock it took is given back
    assert Environment.load(estate.env).journal(SERVICE).read().unsettled()  # the journal is still there to resume from


class Stingy:
    """The deploys table's client, but each batch write takes at most 10 requests and leaves the rest unprocessed."""

    def __init__(self, ddb):
        self._ddb, self.partial = ddb, 0

    def __getattr__(self, name):
        return getattr(self._ddb, name)

    def batch_write_item(self, RequestItems):  # noqa: N803 (boto3's name)
        (name, requests), = RequestItems.items()
        self._ddb.batch_write_item(RequestItems={name: requests[:10]})
        self.partial += len(requests) > 10
        return {"UnprocessedItems": {name: requests[10:]} if requests[10:] else {}}


def test_a_big_journal_is_whole_through_paged_reads_and_unprocessed_writes(moto_endpoint):
    from roadie.state import table

    ddb = awsestate.client(moto_endpoint, "dynamodb")
    table.ensure(ddb, "roadie-big-deploys", emulated=True)
    ddb.meta.events.register("before-parameter-build.dynamodb.Query",
                             lambda params, **_: params.setdefault("Limit", 7))  # pages of 7 items
    stingy = Stingy(ddb)
    hosts = [f"host-{i:02d}" for i in range(60)]  # more than two batch writes' worth (25 a call)
    j = journal.Journal(stingy, "roadie-big-deploys", "big", "catalog")
    j.begin("deploy", "2.0.0", {h: ("1.0.0", "2.0.0") for h in hosts}, "alice")
    for i, h in enumerate(hosts):
        j.note(h, "done" if i % 2 else "drained")
    j.close()
    assert {h: m["step"] for h, m in j.read().moves.items()} == {
        h: "done" if i % 2 else "drained" for i, h in enumerate(hosts)}
    assert stingy.partial  # some writes were left unprocessed by DynamoDB, and retried
    j.end()
    assert j.read() is None
    assert ddb.query(TableName="roadie-big-deploys", KeyConditionExpression="pk = :pk", Select="COUNT",
                     ExpressionAttributeValues={":pk": {"S": "journal#big#catalog"}})["Count"] == 0
