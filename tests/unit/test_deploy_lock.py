"""The deploy lock and audit log, against DynamoDB (moto over HTTP)."""

from __future__ import annotations

import uuid

import boto3
import pytest

from roadie.deploy import audit, table
from roadie.deploy.lock import Lock
from roadie.errors import BadInput

ALICE = {"who": "alice", "machine": "laptop-a", "pid": 11, "ci_run": None}
BOB = {"who": "bob", "machine": "ci-runner", "pid": 22, "ci_run": "GITHUB_RUN_ID=42"}


class Clock:
    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def ddb(moto_endpoint):
    client = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    name = f"roadie-test-{uuid.uuid4().hex[:8]}-deploys"
    table.ensure(client, name, emulated=True)
    table.ensure(client, name, emulated=True)  # a second ensure is a no-op
    return client, name


def test_a_held_lock_refuses_a_second_deploy_naming_the_holder(ddb):
    client, name = ddb
    clock = Clock()
    first = Lock(client, name, "local", "catalog", lease=60, clock=clock)
    first.acquire(ALICE, "deploy", "ship 2.0.0")
    second = Lock(client, name, "local", "catalog", lease=60, clock=clock)
    with pytest.raises(BadInput, match=r"locked by alice@laptop-a \(pid 11, deploy, 'ship 2.0.0'\)"):
        second.acquire(BOB, "deploy")
    # another service is a different lock
    Lock(client, name, "local", "streaming", clock=clock).acquire(BOB, "deploy")
    first.release()
    second.acquire(BOB, "deploy")
    assert second.holder().who == "bob" and second.holder().ci_run == "GITHUB_RUN_ID=42"


def test_a_lapsed_lease_can_be_taken_and_the_old_holder_cannot_renew_or_release(ddb):
    client, name = ddb
    clock = Clock()
    dead = Lock(client, name, "local", "catalog", lease=60, clock=clock)
    dead.acquire(ALICE, "deploy")
    clock.t += 30
    assert dead.renew()  # renewing moves the lease forward
    clock.t += 61
    with pytest.raises(BadInput):  # still within the renewed lease
        Lock(client, name, "local", "catalog", lease=60, clock=Clock(clock.t - 31)).acquire(BOB, "deploy")
    new = Lock(client, name, "local", "catalog", lease=60, clock=clock)
    new.acquire(BOB, "deploy")  # 91 s after a 60 s lease renewed at 30 s: lapsed
    assert not dead.renew() and dead.lost
    dead.release()  # must not remove bob's lock
    assert new.holder().who == "bob"


def test_force_release_returns_the_holder(ddb):
    client, name = ddb
    Lock(client, name, "local", "catalog").acquire(ALICE, "deploy")
    gone = Lock(client, name, "local", "catalog").force_release()
    assert gone.who == "alice"
    assert Lock(client, name, "local", "catalog").holder() is None


def test_lock_wait_gives_up_after_the_wait(ddb):
    client, name = ddb
    Lock(client, name, "local", "catalog").acquire(ALICE, "deploy")
    waited = []
    with pytest.raises(BadInput, match="locked by alice"):
        Lock(client, name, "local", "catalog").acquire(BOB, "deploy", wait=0.3, on_wait=waited.append, poll=0.1)
    assert [h.who for h in waited] == ["alice"]


def test_audit_records_come_back_in_order_and_filtered(ddb):
    client, name = ddb
    for i, svc in enumerate(["catalog", "streaming", "catalog"]):
        audit.record(client, name, "local", {"operation": "deploy", "service": svc, "version": f"1.{i}.0"})
    audit.record(client, name, "staging", {"operation": "deploy", "service": "catalog", "version": "9.0.0"})
    got = audit.query(client, name, "local")
    assert [r["version"] for r in got] == ["1.0.0", "1.1.0", "1.2.0"]
    assert [r["version"] for r in audit.query(client, name, "local", service="catalog")] == ["1.0.0", "1.2.0"]
    assert audit.query(client, name, "local", since=2_000_000_000) == []


def test_an_absent_table_on_aws_is_an_error_not_created(moto_endpoint):
    from roadie.errors import OperationFailed

    client = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    with pytest.raises(OperationFailed, match="apply the Pulumi stack"):
        table.ensure(client, "roadie-nowhere-deploys", emulated=False)
