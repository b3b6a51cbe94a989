"""A deploying process killed with SIGKILL in batch 2, then resumed (or rolled back), under load.

The catalog tier has two hosts, one per batch. The deploy is killed right after
catalog-2 (batch 2) is drained: nothing of roadie runs after that, so catalog-2
stays drained and the lock stays held until its lease lapses. `roadie status`
then shows the unfinished deploy; `roadie deploy --resume` (or `roadie rollback`)
puts catalog-2 back in service and brings both hosts to one version, while the
load generator counts every failed request through HAProxy.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.fleet.test_deploy import V2, act_at, balancer_servers, fleet_v1, roadie_json, under_load, versions_on  # noqa: F401

pytestmark = pytest.mark.fleet
LEASE_WAIT = "100"  # seconds --resume may wait for the dead deploy's 60 s lease


@pytest.fixture(autouse=True)
def nothing_left_unfinished(fleet_v1):  # noqa: F811
    """Whatever a test left (a failed assertion after the kill), the fleet gets every host back in service."""
    yield
    time.sleep(1)
    code, docs, err = roadie_json("status")
    left = next(s for s in docs[-1]["services"] if s["service"] == "catalog").get("unfinished") if code == 0 else None
    if left or any(not up for _, up in catalog_states().values()):
        version = left["version"] if left else V2
        roadie_json("deploy", "catalog", version, "--resume", "--lock-wait", LEASE_WAIT)


def kill_in_batch_2(version: str) -> None:
    """`roadie deploy catalog VERSION`, SIGKILLed once catalog-2 is drained."""
    code, _, _ = act_at(["deploy", "catalog", version], ('"deploy.host.step"', '"catalog-2"', '"drain"'),
                        lambda proc: proc.send_signal(signal.SIGKILL), timeout=30)
    assert code == -signal.SIGKILL


def catalog_states() -> dict[str, tuple[str, bool]]:
    return {name.split("/")[1]: (s.status, s.up) for name, s in balancer_servers().items()
            if name.startswith("catalog/")}


def unfinished() -> dict | None:
    code, docs, err = roadie_json("status")
    assert code == 0, err
    return next(s for s in docs[-1]["services"] if s["service"] == "catalog")["unfinished"]


def finish(*args: str) -> None:
    code, docs, err = roadie_json(*args, "--lock-wait", LEASE_WAIT)
    assert code == 0, f"{err}\n{docs[-3:]}"
    time.sleep(2)


def no_failed_request(summary: dict, what: str) -> None:
    """The load ran through HAProxy from before the killed deploy to after the resume or rollback."""
    print(f"\n{what}: {summary['failed']} of {summary['requests']} requests failed, by version {summary['by_version']}")
    assert summary["failed"] == 0, summary["failures"]


def test_a_killed_deploy_is_resumed_to_the_new_version_with_no_failed_request(fleet_v1):  # noqa: F811
    assert set(versions_on("catalog").values()) == {fleet_v1["catalog"]}
    load = under_load()
    try:
        time.sleep(2)
        kill_in_batch_2(V2)
        assert catalog_states()["catalog-2"][1] is False  # left drained by the dead deploy
        code, docs, _ = roadie_json("deploy", "catalog", "9.9.9", "--resume")
        assert code == 2 and f"was to {V2}, not 9.9.9" in docs[-1]["error"]  # a journal of another version: refused
        finish("deploy", "catalog", V2, "--resume")
    finally:
        summary = load.stop()
    no_failed_request(summary, "deploy killed in batch 2, then --resume")
    assert set(versions_on("catalog").values()) == {V2}
    assert all(up for _, up in catalog_states().values()), catalog_states()
    assert unfinished() is None
    code, docs, _ = roadie_json("deploy", "catalog", V2, "--resume")
    assert code == 2 and "Nothing to resume" in docs[-1]["error"]


def test_a_killed_deploy_is_rolled_back_to_where_it_started(fleet_v1):  # noqa: F811
    start = set(versions_on("catalog").values())
    assert len(start) == 1
    (old,) = start
    target = fleet_v1["catalog"] if old == V2 else V2
    load = under_load()
    try:
        time.sleep(2)
        kill_in_batch_2(target)
        time.sleep(61)  # the lease lapses: status now tells the dead deploy from a running one
        left = unfinished()
        assert left and left["version"] == target and "catalog-2" in left["unsettled"], left
        code, docs, _ = roadie_json("deploy", "catalog", target)
        assert code == 2 and "--resume" in docs[-1]["error"]  # no plain deploy over a dead one's drained host
        finish("rollback", "catalog")
    finally:
        summary = load.stop()
    no_failed_request(summary, "deploy killed in batch 2, then rollback")
    assert set(versions_on("catalog").values()) == {old}
    assert all(up for _, up in catalog_states().values()), catalog_states()
    assert unfinished() is None


def test_a_plain_rerun_over_a_deploy_killed_after_its_last_switch_is_not_nothing_to_do(fleet_v1):  # noqa: F811
    """Seen: killed right after catalog-2's switch, the re-run said "nothing to do", exit 0, catalog-2 drained."""
    start = set(versions_on("catalog").values())
    assert len(start) == 1
    (old,) = start
    target = fleet_v1["catalog"] if old == V2 else V2
    code, _, _ = act_at(["deploy", "catalog", target], ('"deploy.host.step"', '"catalog-2"', '"switch"'),
                        lambda proc: proc.send_signal(signal.SIGKILL), timeout=30)
    assert code == -signal.SIGKILL
    assert set(versions_on("catalog").values()) == {target}  # every host on the version...
    assert catalog_states()["catalog-2"][1] is False  # ...and catalog-2 drained
    code, docs, _ = roadie_json("deploy", "catalog", target)
    assert code == 2, docs[-1]
    assert "unfinished" in docs[-1]["error"] and "--resume" in docs[-1]["error"], docs[-1]
    finish("deploy", "catalog", target, "--resume")
    assert all(up for _, up in catalog_states().values()), catalog_states()
    code, docs, _ = roadie_json("deploy", "catalog", target)
    assert code == 0 and docs[-1]["result"] == "ok" and docs[-1]["hosts"] == [], docs[-1]  # now: nothing to do
