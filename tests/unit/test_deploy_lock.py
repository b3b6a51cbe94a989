"""The deploy lock and audit log, against DynamoDB (moto over HTTP)."""

from __future__ import annotations

import threading
import time

import boto3
import pytest
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from roadie.state import audit, table
from roadie.state.lock import Lock
from roadie.errors import BadInput
from roadie.testing import FakeClock
from tests.unit.conftest import fresh_deploys_table

ALICE = {"who": "alice", "machine": "laptop-a", "pid": 11, "ci_run": None}
BOB = {"who": "bob", "machine": "ci-runner", "pid": 22, "ci_run": "GITHUB_RUN_ID=42"}


@pytest.fixture
def ddb(moto_endpoint):
    client, name = fresh_deploys_table(moto_endpoint)
    table.ensure(client, name, emulated=True)  # a second ensure is a no-op
    return client, name


def test_a_held_lock_refuses_a_second_deploy_naming_the_holder(ddb):
    client, name = ddb
    clock = FakeClock()
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
    clock = FakeClock()
    dead = Lock(client, name, "local", "catalog", lease=60, clock=clock)
    dead.acquire(ALICE, "deploy")
    clock.advance(30)
    assert dead.renew()  # renewing moves the lease forward
    clock.advance(61)
    with pytest.raises(BadInput):  # still within the renewed lease
        Lock(client, name, "local", "catalog", lease=60, clock=FakeClock(clock() - 31)).acquire(BOB, "deploy")
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


# -- renewal: errors within the lease, a lease that lapses, a takeover -------------------------------------------


class Flaky:
    """The DynamoDB client with its renewals (update_item) failing for the first `fail` calls, or hanging until
    `release` is set; every other call goes through."""

    def __init__(self, client, fail: int = 0, error: Exception | None = None, hang: bool = False):
        self.client, self.fail, self.error, self.hang = client, fail, error, hang
        self.release = threading.Event()
        self.calls = 0

    def update_item(self, **kw):
        self.calls += 1
        if self.hang:
            self.release.wait(10)
        elif self.calls <= self.fail:
            raise self.error
        return self.client.update_item(**kw)

    def __getattr__(self, name):
        return getattr(self.client, name)


def throttled() -> Exception:
    return ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
                       "UpdateItem")


def unreachable() -> Exception:
    return EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com/")


def wait_for(check, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return bool(check())


@pytest.mark.parametrize("error", [throttled, unreachable, lambda: BotoCoreError()])
def test_renewal_errors_within_the_lease_are_retried_and_the_lock_stays_held(ddb, error):
    """A 2 s lease renewed every 0.67 s: its first two renewals fail, the retry 0.6 s later succeeds."""
    client, name = ddb
    flaky = Flaky(client, fail=2, error=error())
    lock = Lock(flaky, name, "local", "catalog", lease=2)
    lock.acquire(ALICE, "deploy")
    lock.start_renewing()
    try:
        time.sleep(2.6)  # past the first lease: held now only if a renewal after the errors succeeded
        assert lock.lost is None
        assert flaky.calls >= 3 and lock.trouble is None  # the errors happened, and the success cleared them
        held = lock.holder()
        assert held.token == lock.token and held.expires_at > time.time()
    finally:
        lock.release()
    assert lock.holder() is None


def test_a_lease_that_lapses_while_renewals_fail_is_lost_at_its_end_not_before(ddb):
    client, name = ddb
    lock = Lock(Flaky(client, fail=10**6, error=unreachable()), name, "local", "catalog", lease=2)
    lock.acquire(ALICE, "deploy")
    acquired = time.time()
    lock.start_renewing()
    try:
        time.sleep(1.4)  # two renewals have failed; the lease has 0.6 s left
        assert lock.lost is None and "Could not connect" in lock.trouble
        assert wait_for(lambda: lock.lost, 1.5)
        assert time.time() - acquired >= 1.95
        assert "lapsed" in lock.lost and "Could not connect" in lock.lost
    finally:
        lock.release()


def test_a_renewal_that_hangs_past_the_lease_loses_the_lock_at_the_lease_end(ddb):
    client, name = ddb
    flaky = Flaky(client, hang=True)
    lock = Lock(flaky, name, "local", "catalog", lease=1.5)
    lock.acquire(ALICE, "deploy")
    lock.start_renewing()
    try:
        assert wait_for(lambda: lock.lost, 2.5), "a renewal stuck in the network must not keep the lock 'held'"
        assert "lapsed" in lock.lost
    finally:
        flaky.release.set()
        lock.release()


def test_a_takeover_is_seen_at_the_next_renewal_and_names_the_new_holder(ddb):
    client, name = ddb
    lost = []
    first = Lock(client, name, "local", "catalog", lease=1.5, on_lost=lost.append)
    first.acquire(ALICE, "deploy")
    first.start_renewing()
    # bob's machine sees the lease lapsed (its clock is ahead, or alice's renewals were not reaching DynamoDB)
    Lock(client, name, "local", "catalog", clock=lambda: time.time() + 120).acquire(BOB, "deploy")
    assert wait_for(lambda: first.lost, 1.5)
    assert "bob@ci-runner" in first.lost and lost == [first.lost]
    time.sleep(0.6)
    assert len(lost) == 1  # once, however many threads noticed
    first.release()
    assert first.holder().who == "bob"  # the first deploy's release left bob's lock alone
