"""The SSM transport against moto over HTTP: the commands sent, files through the bucket, tier fan-out.

moto records commands and answers every invocation `Success` with no output: it
runs nothing. What it cannot show (exit codes, stderr, a command that never
ends) is tested on invocation documents shaped like SSM's, through `_stdout` and
a client that answers InProgress forever.
"""

from __future__ import annotations

import pytest

from roadie.errors import OperationFailed
from roadie.inventory import Host
from roadie.transport.ssm import DOCUMENT, SSM
from tests import awsestate


@pytest.fixture
def estate(moto_endpoint):
    return awsestate.build(moto_endpoint, {"catalog": 3, "streaming": 2}, register=False)


def transport(estate, sent: list | None = None, **kw) -> SSM:
    """The transport on moto; `sent` collects each SendCommand request as boto3 sends it."""
    ssm = awsestate.client(estate.endpoint, "ssm")
    if sent is not None:
        ssm.meta.events.register("provide-client-params.ssm.SendCommand", lambda params, **_: sent.append(params))
    return SSM(estate.env, ssm=ssm, s3=awsestate.client(estate.endpoint, "s3"), bucket=estate.bucket, poll=0.01, **kw)


def commands(estate) -> list[dict]:
    return awsestate.client(estate.endpoint, "ssm").list_commands()["Commands"]


def test_a_command_is_one_run_shell_script_to_the_hosts_instance(estate):
    sent: list[dict] = []
    t = transport(estate, sent)
    host = estate.hosts["catalog"][0]
    before = len(commands(estate))
    assert t.run(host, "readlink /srv/catalog/current", "reading current") == ""
    assert sent == [{"DocumentName": DOCUMENT, "Comment": "roadie: reading current", "TimeoutSeconds": 60,
                     "Parameters": {"commands": ["readlink /srv/catalog/current"], "executionTimeout": ["900"]},
                     "InstanceIds": [host.vars["ansible_aws_ssm_instance_id"]]}]
    recorded = commands(estate)[before:]  # moto kept it (and, without Targets, lists every instance it has)
    assert len(recorded) == 1 and recorded[0]["Parameters"]["commands"] == ["readlink /srv/catalog/current"]


def test_a_file_goes_through_the_bucket_and_the_command_only_names_it(estate, tmp_path):
    t = transport(estate)
    local = tmp_path / "catalog-2.0.0.tar.gz"
    local.write_bytes(b"release bytes " * 1000)
    host = estate.hosts["catalog"][0]
    before = len(commands(estate))
    t.put(host, local, "/srv/catalog/incoming/2.0.0.tar.gz")
    t.put(estate.hosts["catalog"][1], local, "/srv/catalog/incoming/2.0.0.tar.gz")
    s3 = awsestate.client(estate.endpoint, "s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=estate.bucket)["Contents"]]
    assert len(keys) == 1 and keys[0].endswith("/catalog-2.0.0.tar.gz")  # uploaded once for both hosts
    assert s3.get_object(Bucket=estate.bucket, Key=keys[0])["Body"].read() == local.read_bytes()
    sent = [c["Parameters"]["commands"][0] for c in commands(estate)[before:]]
    assert sent == [f"aws s3 cp --only-show-errors s3://{estate.bucket}/{keys[0]} "
                    "/srv/catalog/incoming/2.0.0.tar.gz"] * 2
    assert all("release bytes" not in c for c in sent)


def test_a_tier_is_one_command_fanned_out_by_ssm_to_the_instances_tagged_with_it(estate):
    t = transport(estate)
    before = len(commands(estate))
    out = t.run_tier(estate.hosts["catalog"], "true", "pruning", {"roadie:env": estate.env, "roadie:role": "catalog"},
                     max_concurrency="2", max_errors="1")
    sent = commands(estate)[before:]
    assert len(sent) == 1
    c = sent[0]
    assert c["Targets"] == [{"Key": "tag:roadie:env", "Values": [estate.env]},
                            {"Key": "tag:roadie:role", "Values": ["catalog"]}]
    assert (c["MaxConcurrency"], c["MaxErrors"]) == ("2", "1")
    # SSM (here moto) resolved the tags to the catalog instances only
    assert sorted(c["InstanceIds"]) == sorted(h.vars["ansible_aws_ssm_instance_id"] for h in estate.hosts["catalog"])
    assert out == {h.name: "" for h in estate.hosts["catalog"]}


@pytest.mark.parametrize("inv, error", [
    ({"Status": "Success", "ResponseCode": 0, "StandardOutputContent": "ok\n"}, None),
    ({"Status": "Failed", "ResponseCode": 3, "StandardErrorContent": "line 1\nunit failed\n"},
     "catalog-1: restarting failed: unit failed"),
    ({"Status": "Failed", "ResponseCode": 1, "StandardErrorContent": "", "StandardOutputContent": ""},
     "catalog-1: restarting failed: Failed, exit 1"),
    ({"Status": "TimedOut", "ResponseCode": -1}, "catalog-1: restarting failed: TimedOut, exit -1"),
    ({"Status": "Success", "ResponseCode": 2, "StandardErrorContent": "grep: nothing"},
     "catalog-1: restarting failed: grep: nothing"),
])
def test_exit_status_and_stderr_become_the_hosts_error(inv, error):
    host = Host("catalog-1", "10.0.0.1", ("catalog",), {"ansible_aws_ssm_instance_id": "i-1"})
    if error is None:
        assert SSM._stdout(host, "restarting", inv) == "ok\n"
    else:
        with pytest.raises(OperationFailed) as exc:
            SSM._stdout(host, "restarting", inv)
        assert exc.value.message == error


class NeverEnds:
    """An SSM that accepts commands and never finishes them (moto always finishes at once)."""

    def __init__(self):
        self.cancelled = []

    def send_command(self, **kw):
        return {"Command": {"CommandId": "c-1"}}

    def get_command_invocation(self, CommandId, InstanceId):  # noqa: N803 (boto3's names)
        return {"Status": "InProgress"}

    def cancel_command(self, CommandId, InstanceIds):  # noqa: N803
        self.cancelled.append((CommandId, InstanceIds))


def test_a_command_that_never_ends_is_cancelled_and_fails_at_its_limit():
    now = [0.0]
    ssm = NeverEnds()
    t = SSM("x", ssm=ssm, s3=object(), bucket="b", poll=5, command_seconds=30, clock=lambda: now[0],
            sleep=lambda s: now.__setitem__(0, now[0] + s))
    host = Host("catalog-1", "10.0.0.1", ("catalog",), {"ansible_aws_ssm_instance_id": "i-1"})
    with pytest.raises(OperationFailed, match="catalog-1: health check failed: no answer through SSM after 90 s"):
        t.run(host, "sleep 999", "health check")
    assert ssm.cancelled == [("c-1", ["i-1"])]
    assert now[0] == 90
