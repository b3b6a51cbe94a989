"""roadie.testing itself: where its fakes have logic, they behave as the real thing does.

The deploys table fake is held to DynamoDB's word: the lock, the journal and the
audit log run over it and over moto's DynamoDB with the same results, and its
conditional writes fail as DynamoDB's do.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from roadie import testing
from roadie.commands import release_host as cmd
from roadie.errors import BadInput, HostUnreachable, OperationFailed
from roadie.testing import FakeBalancer, FakeClock, FakeDeploysTable, FakeTransport, Fault

ROOT = Path(__file__).resolve().parents[2]
LOWER = {"roadie.commands", "roadie.errors", "roadie.events", "roadie.inventory", "roadie.model"}


# -- what the kit may import --------------------------------------------------------------------------------------


def test_the_kit_imports_no_test_runner_and_only_roadies_lower_layers():
    tree = ast.parse((ROOT / "cli" / "roadie" / "testing.py").read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    modules = {a.name for n in top if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module for n in top if isinstance(n, ast.ImportFrom) and n.module}
    roadie = {m for m in modules if m.startswith("roadie")}
    assert all(any(m == low or m.startswith(low + ".") for low in LOWER) for m in roadie), roadie
    assert not {m.split(".")[0] for m in modules} & {"pytest", "unittest", "boto3", "botocore", "yaml"}
    # ... and importing it loads none of the layers above, nor a test runner
    probe = ("import sys, roadie.testing; print(sorted(m for m in sys.modules if m.split('.')[0] == 'pytest' "
             "or m.startswith(('roadie.deploy', 'roadie.ops', 'roadie.db', 'roadie.state', 'roadie.transport', "
             "'roadie.balancer', 'roadie.cli'))))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_the_kits_step_names_are_the_engines():
    """Every `what` the engine gives the transport has a short name in STEPS, and every bounded step kind too."""
    from roadie.deploy import engine

    assert set(engine.STEP_SECONDS) <= set(testing.STEPS)
    rig = testing.engine_deps(2, transport=FakeTransport(testing.names(2), bad={"2.0.0"}))
    d = rig.deps
    assert [w for _, _, w, _ in engine._switch_steps(d, "2.0.0")] == [testing.STEPS[s] for s in
                                                                        ("switch", "restart", "health")]
    facts = engine.host_facts(d, list(d.hosts))
    tarball = Path(__file__)  # any file: the fake does not read it
    engine.stage(d, list(d.hosts), "2.0.0", tarball, "0" * 64, facts)
    engine.migrate(d, "catalog-1", "2.0.0")
    engine.prune(d, list(d.hosts))
    results = {n: engine.HostResult(n, "1.0.0", "2.0.0", previous="0.9.0") for n in d.hosts}
    from roadie.deploy import plan as planner

    engine.roll(d, planner.build("catalog", "2.0.0", {n: "1.0.0" for n in d.hosts}, batch="1", drain_timeout=0),
                results)
    failing = FakeTransport(["catalog-1"], faults=[Fault(step="stage")])
    stage_rig = testing.engine_deps(["catalog-1"], transport=failing)
    with pytest.raises(OperationFailed):
        engine.stage(stage_rig.deps, ["catalog-1"], "3.0.0", tarball, "0" * 64, engine.host_facts(stage_rig.deps,
                                                                                              ["catalog-1"]))
    asked = {w for _, w in rig.transport.calls} | {w for _, w in failing.calls}
    assert asked == set(testing.STEPS.values())


def test_the_fakes_offer_what_the_transport_and_balancer_protocols_ask():
    """Every member of the Protocols, each method with the same parameters; run_each's Result with the same fields."""
    import dataclasses
    import inspect

    from roadie.balancer import base as balancer
    from roadie.transport import base as transport

    for proto, fake in ((transport.Transport, FakeTransport(["a"])), (balancer.Balancer, FakeBalancer(["a"]))):
        for name in set(proto.__annotations__):
            assert hasattr(fake, name), f"{type(fake).__name__} has no {name}"
        for name, method in vars(proto).items():
            if callable(method) and not name.startswith("_"):
                want = list(inspect.signature(method).parameters)[1:]
                assert list(inspect.signature(getattr(fake, name)).parameters) == want, name
    fields = [[f.name for f in dataclasses.fields(result)] for result in (transport.Result, testing.Result)]
    assert fields[0] == fields[1]
    assert isinstance(FakeBalancer(["a"]), balancer.Balancer)


# -- FakeTransport --------------------------------------------------------------------------------------------------


def test_the_transport_keeps_a_hosts_releases_as_the_real_commands_change_them():
    fake = FakeTransport(["catalog-1"])
    fake.run("catalog-1", cmd.unpack("catalog", "2.0.0", "0" * 64), "unpacking", timeout=1)
    fake.run("catalog-1", cmd.switch("catalog", "2.0.0"), "switching current", timeout=1)
    assert (fake.current["catalog-1"], fake.previous["catalog-1"]) == ("2.0.0", "1.0.0")
    fake.run("catalog-1", cmd.switch("catalog", "2.0.0"), "switching current", timeout=1)  # again: no change
    assert fake.previous["catalog-1"] == "1.0.0"
    fake.run("catalog-1", cmd.set_previous("catalog", "0.9.0"), "restoring previous", timeout=1)
    assert fake.previous["catalog-1"] == "0.9.0"
    facts = json.loads(fake.run("catalog-1", cmd.facts("catalog", "catalog.service"), "reading the release state",
                                timeout=1))
    assert facts == {"current": "2.0.0", "previous": "0.9.0", "releases": ["0.9.0", "1.0.0", "2.0.0"],
                     "active": "active", "pid": 1, "disk_free": 10**12}
    fake.run("catalog-1", cmd.set_previous("catalog", None), "restoring previous", timeout=1)
    assert fake.previous["catalog-1"] is None
    assert fake.steps("catalog-1") == ["stage", "switch", "switch", "previous", "facts", "previous"]
    assert fake.commands("catalog-1", "switch") == [cmd.switch("catalog", "2.0.0")] * 2


def test_the_health_check_fails_for_a_bad_version_and_for_a_host_not_on_the_version_it_waits_for():
    fake = FakeTransport(["catalog-1"], bad={"1.0.0"})
    with pytest.raises(OperationFailed, match="catalog-1: health check failed: .*HTTP 500"):
        fake.run("catalog-1", cmd.wait_healthy("catalog", "1.0.0"), "health check", timeout=1)
    fake.bad.clear()
    fake.run("catalog-1", cmd.wait_healthy("catalog", "1.0.0"), "health check", timeout=1)
    with pytest.raises(OperationFailed, match="version 1.0.0, not 2.0.0"):
        fake.run("catalog-1", cmd.wait_healthy("catalog", "2.0.0"), "health check", timeout=1)


def test_faults_fire_on_their_host_step_and_version_and_a_host_that_stops_answering_stays_silent():
    fake = FakeTransport(["catalog-1", "catalog-2"], faults=[
        Fault(host="catalog-1", step="restart", version="2.0.0", message="unit failed"),
        Fault(host="catalog-2", step="switch", unreachable=True)])
    fake.run("catalog-1", "systemctl restart catalog.service", "restarting", timeout=5)  # on 1.0.0: no fault
    fake.current["catalog-1"] = "2.0.0"
    with pytest.raises(OperationFailed, match="catalog-1: restarting failed: unit failed"):
        fake.run("catalog-1", "systemctl restart catalog.service", "restarting", timeout=5)
    fake.run("catalog-1", "true", "restoring previous", timeout=5)  # an answered failure does not last
    with pytest.raises(HostUnreachable, match="catalog-2: switching current did not finish within 30 s"):
        fake.run("catalog-2", cmd.switch("catalog", "2.0.0"), "switching current", timeout=30)
    with pytest.raises(HostUnreachable, match="catalog-2: restarting"):
        fake.run("catalog-2", "systemctl restart catalog.service", "restarting", timeout=120)
    with pytest.raises(HostUnreachable):
        fake.put("catalog-2", Path("x.tar.gz"), "/srv/x")
    assert fake.current["catalog-2"] == "1.0.0"  # the step that did not answer changed nothing here
    dead = FakeTransport(["catalog-1"], dead={"catalog-1"})
    with pytest.raises(OperationFailed, match="connection refused") as caught:
        dead.run("catalog-1", "true", "anything", timeout=1)
    assert not isinstance(caught.value, HostUnreachable)


def test_run_each_gives_each_hosts_result_and_streams_lines_and_stop_asks_no_further_host():
    def listing(host, command):
        if host == "b":
            raise OperationFailed("b: listing failed: ls: cannot access 'x': No such file or directory")
        return f"{host}\n1\n"

    fake = FakeTransport(["a", "b", "c", "d"], dead={"c"}, faults=[Fault(host="d", unreachable=True)],
                         answers={"listing": listing})
    lines = []
    out = fake.run_each(["a", "b", "c", "d"], "ls", "listing", timeout=5,
                        on_line=lambda h, line: lines.append((h, line)))
    assert list(out) == ["a", "b", "c", "d"]
    assert (out["a"].exit, out["a"].stdout) == (0, "a\n1\n") and lines == [("a", "a"), ("a", "1")]
    assert out["b"].exit == 1 and "No such file" in out["b"].stderr  # it answered: an exit status of its own
    assert out["c"].exit is None and "connection refused" in out["c"].error  # no answer: none
    assert out["d"].exit is None and "did not finish within 5 s" in out["d"].error
    assert fake.timeouts == [("listing", 5)] * 4
    stopping = FakeTransport(["a", "b"], answers={"follow": "x\n"})
    out = stopping.run_each(["a", "b"], "journalctl -f", "follow", on_line=lambda h, line: stopping.stop(),
                            follow=True)
    assert (out["a"].exit, out["b"].exit, out["b"].error) == (0, None, "stopped") and stopping.steps("b") == []
    assert stopping.run_each(["b"], "true", "follow")["b"].exit == 0  # a stop ends the run in progress only


def test_the_hook_sees_each_step_first_and_an_unknown_host_is_a_mistake_in_the_test():
    seen = []
    fake = FakeTransport(["catalog-1"], on_step=lambda h, w: seen.append((h, w)), answers={"uptime": "up 3 days"})
    assert fake.run("catalog-1", "uptime", "uptime") == "up 3 days"
    fake.put("catalog-1", Path("a.tar.gz"), "/tmp/a")
    fake.close()
    assert seen == [("catalog-1", "uptime"), ("catalog-1", "put")] and fake.closed
    assert fake.timeouts == [("uptime", None)] and fake.calls == [("catalog-1", "uptime"), ("catalog-1", "put")]
    with pytest.raises(LookupError, match="catalog-9 is not a host of this FakeTransport"):
        fake.run("catalog-9", "true", "anything")


# -- FakeBalancer ---------------------------------------------------------------------------------------------------


def test_the_balancer_drains_and_enables_and_a_returning_peer_rises_on_its_reads():
    lb = FakeBalancer(["a", "b", "c"], returning={"c": 3}, weights={"b": 50}, sessions={"a": 2})
    first = lb.servers("catalog")
    assert (first["a"].up, first["a"].sessions, first["b"].weight) == (True, 2, 50)
    assert first["c"].status == "DOWN" and first["c"].returning
    assert lb.servers("catalog")["c"].status == "DOWN 1/2"
    assert lb.servers("catalog")["c"].up and lb.reads == 3
    lb.drain("catalog", "b")
    assert lb.servers("catalog")["b"].status == "DRAIN" and not lb.servers("catalog")["b"].up
    lb.ready("catalog", "b")
    assert lb.weight["b"] == 50  # the weight it had, not 1
    lb.weight("catalog", "a", "25")  # the Balancer's weight method, on the same name as the weights
    assert lb.weight["a"] == 25 and lb.actions("a") == ["weight 25"]
    assert lb.calls == [("b", "drain"), ("b", "ready"), ("a", "weight 25")]
    with pytest.raises(OperationFailed, match="No such server"):
        lb.drain("catalog", "z")


def test_the_balancers_maintenance_mode_backend_and_drain_delay():
    lb = FakeBalancer(["a"], backend="catalog", drain_seconds=300, maintenance={"streaming": 60})
    assert lb.kind == "fake" and lb.names == ["lb-1"] and lb.drain_seconds("catalog") == 300
    assert lb.maintenance() == {"streaming": 60}
    lb.set_maintenance("catalog", 120)
    lb.set_maintenance("streaming", None)
    assert lb.maintenance() == {"catalog": 120}
    assert lb.calls == [("catalog", "maintenance 120"), ("streaming", "maintenance off")]
    with pytest.raises(OperationFailed, match="no backend 'streaming'"):
        lb.servers("streaming")


# -- FakeClock ------------------------------------------------------------------------------------------------------


def test_the_clock_moves_only_when_slept_on():
    clock = FakeClock(100.0)
    assert clock() == clock.time() == clock.monotonic() == clock.module.monotonic() == 100.0
    clock.sleep(0.25)
    clock.module.sleep(0.75)
    clock.advance(9)
    assert clock() == 110.0 and clock.waited == 1.0 and clock.slept == [0.25, 0.75]


# -- FakeDeploysTable: its own conditions -------------------------------------------------------------------------


def code(exc_info) -> str:
    return exc_info.value.response["Error"]["Code"]


def item(pk: str, sk: str = "lock", **attrs) -> dict:
    return {"pk": {"S": pk}, "sk": {"S": sk}, **{k: {"N": str(v)} if isinstance(v, (int, float)) else {"S": v}
                                                  for k, v in attrs.items()}}


def test_a_conditional_put_fails_as_dynamodb_does():
    t = FakeDeploysTable()
    lease = "attribute_not_exists(pk) OR expires_at < :now"
    t.put_item(TableName=t.name, Item=item("lock#a", expires_at=160), ConditionExpression=lease,
               ExpressionAttributeValues={":now": {"N": "100"}})
    with pytest.raises(ClientError) as refused:  # held: its lease ends at 160
        t.put_item(TableName=t.name, Item=item("lock#a", expires_at=170), ConditionExpression=lease,
                   ExpressionAttributeValues={":now": {"N": "110"}})
    assert code(refused) == "ConditionalCheckFailedException"
    t.put_item(TableName=t.name, Item=item("lock#a", expires_at=261), ConditionExpression=lease,
               ExpressionAttributeValues={":now": {"N": "161.5"}})  # lapsed: taken
    assert t.get_item(TableName=t.name, Key=item("lock#a"))["Item"]["expires_at"] == {"N": "261"}
    with pytest.raises(ClientError) as again:
        t.put_item(TableName=t.name, Item=item("lock#a"), ConditionExpression="attribute_not_exists(pk)")
    assert code(again) == "ConditionalCheckFailedException"
    t.put_item(TableName=t.name, Item=item("lock#a", note="x"))  # no condition: overwritten
    assert t.get_item(TableName=t.name, Key=item("lock#a"))["Item"] == item("lock#a", note="x")
    assert t.get_item(TableName=t.name, Key=item("lock#b")) == {}


def test_updates_and_deletes_check_the_holders_token():
    t = FakeDeploysTable()
    t.put_item(TableName=t.name, Item=item("lock#a", holder_token="mine", expires_at=1))
    mine, theirs = {":token": {"S": "mine"}}, {":token": {"S": "theirs"}}
    renew = {"UpdateExpression": "SET expires_at = :exp", "ConditionExpression": "holder_token = :token"}
    t.update_item(TableName=t.name, Key=item("lock#a"), **renew,
                  ExpressionAttributeValues={**mine, ":exp": {"N": "99"}})
    assert t.items[("lock#a", "lock")]["expires_at"] == {"N": "99"}
    for key, values in ((item("lock#a"), theirs), (item("lock#gone"), mine)):  # another's token; no item at all
        with pytest.raises(ClientError) as refused:
            t.update_item(TableName=t.name, Key=key, **renew, ExpressionAttributeValues={**values, ":exp": {"N": "5"}})
        assert code(refused) == "ConditionalCheckFailedException"
        with pytest.raises(ClientError) as refused:
            t.delete_item(TableName=t.name, Key=key, ConditionExpression="holder_token = :token",
                          ExpressionAttributeValues=values)
        assert code(refused) == "ConditionalCheckFailedException"
    assert ("lock#gone", "lock") not in t.items  # a refused update creates nothing
    t.delete_item(TableName=t.name, Key=item("lock#a"), ConditionExpression="holder_token = :token",
                  ExpressionAttributeValues=mine)
    t.delete_item(TableName=t.name, Key=item("lock#a"))  # no item, no condition: fine, as in DynamoDB
    assert t.items == {}


def test_what_the_fake_does_not_understand_is_said_not_passed():
    t = FakeDeploysTable()
    with pytest.raises(NotImplementedError, match="does not understand"):
        t.put_item(TableName=t.name, Item=item("x"), ConditionExpression="size(pk) > :n",
                   ExpressionAttributeValues={":n": {"N": "1"}})
    with pytest.raises(NotImplementedError, match="SET"):
        t.update_item(TableName=t.name, Key=item("x"), UpdateExpression="REMOVE note")
    with pytest.raises(ClientError) as undefined:
        t.put_item(TableName=t.name, Item=item("x"), ConditionExpression="expires_at < :now")
    assert code(undefined) == "ValidationException"
    with pytest.raises(ClientError) as elsewhere:
        t.get_item(TableName="another-table", Key=item("x"))
    assert code(elsewhere) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as too_many:
        t.batch_write_item(RequestItems={t.name: [{"PutRequest": {"Item": item("x", str(i))}} for i in range(26)]})
    assert code(too_many) == "ValidationException"
    with pytest.raises(NotImplementedError):
        t.get_paginator("scan")


def test_injected_errors_come_once_each_then_calls_go_through():
    t = FakeDeploysTable()
    t.fail("PutItem", times=2)
    for _ in range(2):
        with pytest.raises(ClientError) as throttled:
            t.put_item(TableName=t.name, Item=item("x"))
        assert code(throttled) == "ProvisionedThroughputExceededException"
    t.put_item(TableName=t.name, Item=item("x"))
    assert t.calls == ["PutItem"] * 3 and ("x", "lock") in t.items


def test_a_query_reads_one_partition_in_sort_key_order_filtered_and_paged():
    t = FakeDeploysTable()
    for i, svc in enumerate(["catalog", "streaming", "catalog", "catalog"]):
        t.put_item(TableName=t.name, Item=item("audit#local", f"2026-01-0{i + 1}", service=svc))
    t.put_item(TableName=t.name, Item=item("audit#staging", "2026-01-09", service="catalog"))

    def sks(**kw) -> list[list[str]]:
        values = {":pk": {"S": "audit#local"}, **kw.pop("values", {})}
        pages = t.get_paginator("query").paginate(TableName=t.name, ExpressionAttributeValues=values,
                                                  KeyConditionExpression=kw.pop("condition", "pk = :pk"), **kw)
        return [[i["sk"]["S"][-2:] for i in page["Items"]] for page in pages]

    assert sks() == [["01", "02", "03", "04"]]
    assert sks(ScanIndexForward=False, PaginationConfig={"MaxItems": 3, "PageSize": 3}) == [["04", "03", "02"]]
    assert sks(condition="pk = :pk AND sk >= :since", values={":since": {"S": "2026-01-03"}}) == [["03", "04"]]
    svc = {":svc": {"S": "catalog"}}
    assert sks(FilterExpression="service = :svc", values=svc) == [["01", "03", "04"]]
    # MaxItems counts what the filter kept; PageSize what each page read
    assert sks(FilterExpression="service = :svc", values=svc, PaginationConfig={"MaxItems": 2, "PageSize": 2}) == [
        ["01"], ["03"]]


# -- the lock, the journal and the audit log over the fake and over moto: the same results --------------------------


ALICE = {"who": "alice", "machine": "laptop-a", "pid": 11, "ci_run": None}
BOB = {"who": "bob", "machine": "ci-runner", "pid": 22, "ci_run": "GITHUB_RUN_ID=42"}


@pytest.fixture(params=["fake", "moto"])
def deploys(request):
    """(client, table name): FakeDeploysTable, or a fresh table on moto's DynamoDB."""
    if request.param == "fake":
        t = FakeDeploysTable()
        return t, t.name
    from tests.unit.conftest import fresh_deploys_table

    return fresh_deploys_table(request.getfixturevalue("moto_endpoint"))


def test_the_lock_is_held_lapses_is_taken_and_a_lapsed_holder_cannot_renew_or_release(deploys):
    from roadie.state.lock import Lock

    client, name = deploys
    clock = FakeClock()
    first = Lock(client, name, "local", "catalog", lease=60, clock=clock)
    first.acquire(ALICE, "deploy", "ship 2.0.0")
    with pytest.raises(BadInput, match=r"locked by alice@laptop-a \(pid 11, deploy, 'ship 2.0.0'\)"):
        Lock(client, name, "local", "catalog", lease=60, clock=clock).acquire(BOB, "deploy")
    Lock(client, name, "local", "streaming", clock=clock).acquire(BOB, "deploy")  # another service, another lock
    clock.advance(30)
    assert first.renew()
    clock.advance(61)  # 91 s in: lapsed, since the renewal at 30 s
    second = Lock(client, name, "local", "catalog", lease=60, clock=clock)
    second.acquire(BOB, "deploy")
    assert not first.renew() and "taken over by bob@ci-runner" in first.lost
    first.release()  # must not remove bob's lock
    assert second.holder().who == "bob" and second.holder().ci_run == "GITHUB_RUN_ID=42"
    second.release()
    assert second.holder() is None
    assert Lock(client, name, "local", "streaming").force_release().who == "bob"


def test_the_journal_begins_once_reads_back_and_ends(deploys):
    from roadie.state.journal import Journal

    client, name = deploys
    log = Journal(client, name, "local", "catalog")
    log.begin("deploy", "2.0.0", {f"catalog-{i}": ("1.0.0", "2.0.0") for i in range(1, 31)}, "alice")
    log.note("catalog-2", "switched")
    log.close()
    with pytest.raises(BadInput, match="catalog has an unfinished deploy to 2.0.0 by alice"):
        Journal(client, name, "local", "catalog").begin("deploy", "3.0.0", {}, "bob")
    entry = Journal(client, name, "local", "catalog").read()
    assert entry.version == "2.0.0" and len(entry.moves) == 30  # two batch writes: 25 and 5
    assert entry.unsettled() == ["catalog-2"] and entry.moves["catalog-1"] == {"from": "1.0.0", "to": "2.0.0",
                                                                                "step": "planned"}
    log.end()
    assert Journal(client, name, "local", "catalog").read() is None


def test_the_audit_log_comes_back_in_order_filtered_and_limited(deploys, monkeypatch):
    from roadie.state import audit

    client, name = deploys
    clock = FakeClock(1_800_000_000.0)
    # Records of the same millisecond sort by their random id: a second apart here, so the order is the test's
    monkeypatch.setattr(audit, "time", clock.module)
    for i, svc in enumerate(["catalog", "streaming", "catalog"]):
        audit.record(client, name, "local", {"operation": "deploy", "service": svc, "version": f"1.{i}.0"})
        clock.advance(1)
    audit.record(client, name, "staging", {"operation": "deploy", "service": "catalog", "version": "9.0.0"})
    assert [r["version"] for r in audit.query(client, name, "local")] == ["1.0.0", "1.1.0", "1.2.0"]
    assert [r["version"] for r in audit.query(client, name, "local", service="catalog")] == ["1.0.0", "1.2.0"]
    assert audit.query(client, name, "local", since=2_000_000_000) == []
    newest, more = audit.latest(client, name, "local", 2)
    assert [r["version"] for r in newest] == ["1.2.0", "1.1.0"] and more
    newest, more = audit.latest(client, name, "local", 5, service="catalog")
    assert [r["version"] for r in newest] == ["1.2.0", "1.0.0"] and not more
