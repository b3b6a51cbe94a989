"""run_each: one command on many hosts, per-host results (fabric's Group/GroupResult), over SSH and over SSM.

SSH is tested with fake connections (what Fabric's Connection.run does with an
out_stream, a pty and a timeout); SSM on the moto server where it can show it
(the one SendCommand, its Targets, MaxConcurrency and MaxErrors, the output
bucket, the instances SSM resolved from the tags) and on a fake SSM client where
moto cannot: moto runs nothing, answers every invocation Success with empty
output, never truncates, never writes the output objects and never lets a
command run on (so exit codes, output beyond the inline limit, a command that
does not end and Ctrl-C are shown on invocation documents shaped like SSM's).
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from roadie import transport
from roadie.errors import BadInput
from roadie.inventory import Host, Inventory
from roadie.transport import Result, registry
from roadie.transport import ssh as ssh_mod
from roadie.transport import ssm as ssm_mod
from roadie.transport.ssm import SSM
from tests import awsestate

HOSTS = [Host(f"catalog-{i}", f"198.18.0.{10 + i}", ("catalog",)) for i in range(1, 4)]


# -- SSH ---------------------------------------------------------------------------------------------------------

class Conn:
    """A Fabric connection as run_each uses it: run() writes `chunks` to out_stream, then returns or raises."""

    is_connected = True

    def __init__(self, name, chunks=(), exited=0, stderr="", exc=None, block=False):
        self.name, self.chunks, self.exited, self.stderr, self.exc = name, list(chunks), exited, stderr, exc
        self.block, self.closed, self.calls = block, threading.Event(), []
        self.started = threading.Event()

    def run(self, command, **kw):
        self.calls.append((command, kw))
        out = kw.get("out_stream")
        for chunk in self.chunks:
            if out is not None:
                out.write(chunk)
            time.sleep(0.001)
        self.started.set()
        if self.block:  # a follow: runs until its connection is closed
            if not self.closed.wait(10):
                raise AssertionError("a follow was never stopped")
            raise OSError("Socket is closed")
        if self.exc:
            raise self.exc
        return SimpleNamespace(exited=self.exited, stdout="".join(self.chunks).replace("\r", ""), stderr=self.stderr,
                               ok=self.exited == 0)

    def close(self):
        self.closed.set()


def pool(monkeypatch, conns: dict[str, Conn | Exception]):
    made: list[str] = []

    def connect(host, env):
        made.append(host.name)
        c = conns[host.name]
        if isinstance(c, Exception):
            raise c
        return c

    monkeypatch.setattr(ssh_mod, "connect", connect)
    return transport.SSH("local"), made


def test_ssh_run_each_gives_every_hosts_exit_and_output_in_inventory_order(monkeypatch):
    conns = {"catalog-1": Conn("catalog-1", ["one\n"]), "catalog-2": Conn("catalog-2", ["two\n"], exited=3,
                                                                                stderr="bad\n"),
             "catalog-3": Conn("catalog-3", ["three\n"])}
    ssh, made = pool(monkeypatch, conns)
    got = ssh.run_each(HOSTS, "hostname", "asking the name", timeout=30)
    assert list(got) == ["catalog-1", "catalog-2", "catalog-3"]
    assert got["catalog-1"] == Result("catalog-1", 0, "one\n", "")
    assert got["catalog-2"] == Result("catalog-2", 3, "two\n", "bad\n")
    assert all(c.calls[0][1]["timeout"] == 30 and c.calls[0][1]["pty"] is False for c in conns.values())
    ssh.run_each(HOSTS, "true", "again")
    assert sorted(made) == ["catalog-1", "catalog-2", "catalog-3"]  # the pool's connections, opened once
    assert conns["catalog-1"].calls[1][1]["timeout"] == transport.STEP_SECONDS


def test_ssh_one_host_failing_does_not_stop_the_others_and_its_connection_is_dropped(monkeypatch):
    from invoke.exceptions import CommandTimedOut

    conns = {"catalog-1": Conn("catalog-1", ["a\n"]), "catalog-2": Conn("catalog-2", exc=ConnectionResetError("gone")),
             "catalog-3": ConnectionRefusedError("refused")}
    ssh, _ = pool(monkeypatch, conns)
    got = ssh.run_each(HOSTS, "uptime", "uptime")
    assert got["catalog-1"].exit == 0 and got["catalog-1"].stdout == "a\n"
    assert got["catalog-2"] == Result("catalog-2", None, error="ConnectionResetError: gone")
    assert got["catalog-3"] == Result("catalog-3", None, error="ConnectionRefusedError: refused")
    assert conns["catalog-2"].closed.is_set() and not conns["catalog-1"].closed.is_set()
    late = {"catalog-1": Conn("catalog-1", exc=CommandTimedOut(SimpleNamespace(), timeout=5))}
    ssh, _ = pool(monkeypatch, late)
    got = ssh.run_each(HOSTS[:1], "sleep 60", "sleeping", timeout=5)
    assert got["catalog-1"].exit is None and "sleeping did not finish within 5 s" in got["catalog-1"].error
    assert late["catalog-1"].closed.is_set()


def test_ssh_on_line_gets_complete_lines_in_order_per_host(monkeypatch):
    conns = {h.name: Conn(h.name, ["li", f"ne 1 of {h.name}\nline", " 2\r\n", "", "tail without newline"])
             for h in HOSTS}
    ssh, _ = pool(monkeypatch, conns)
    seen: dict[str, list[str]] = {}
    lock = threading.Lock()

    def on_line(host, line):
        with lock:
            seen.setdefault(host, []).append(line)

    got = ssh.run_each(HOSTS, "journalctl", "reading the journal", on_line=on_line)
    assert seen == {h.name: [f"line 1 of {h.name}", "line 2", "tail without newline"] for h in HOSTS}
    assert got["catalog-2"].stdout.splitlines() == seen["catalog-2"]


def test_ssh_stop_ends_a_follow_on_every_host_at_once(monkeypatch):
    hosts = [Host(f"catalog-{i}", f"198.18.1.{i}", ("catalog",)) for i in range(20)]  # more than the pool's width
    conns = {h.name: Conn(h.name, [f"first of {h.name}\n"], block=True) for h in hosts}
    ssh, _ = pool(monkeypatch, conns)
    lines, done = [], {}
    t = threading.Thread(target=lambda: done.update(ssh.run_each(
        hosts, "journalctl -f", "following the journal", on_line=lambda h, line: lines.append((h, line)),
        follow=True)))
    t.start()
    assert all(c.started.wait(5) for c in conns.values())  # every host follows at once, none waits for a worker
    started = time.monotonic()
    ssh.stop()
    t.join(5)
    assert not t.is_alive() and time.monotonic() - started < 5
    assert sorted(lines) == sorted((h.name, f"first of {h.name}") for h in hosts)
    assert all(r.exit is None and r.error == "stopped" for r in done.values()) and len(done) == 20
    assert all(c.calls[0][1]["pty"] is True and c.calls[0][1]["timeout"] is None for c in conns.values())
    assert all(c.closed.is_set() for c in conns.values())  # the pty hang-up ends the remote command


def test_a_run_each_after_a_stop_runs_again(monkeypatch):
    conns = {"catalog-1": Conn("catalog-1", ["x\n"])}
    ssh, made = pool(monkeypatch, conns)
    ssh.stop()
    assert ssh.run_each(HOSTS[:1], "true", "x")["catalog-1"].exit == 0


# -- the registry --------------------------------------------------------------------------------------------------

def test_the_package_exports_what_callers_use():
    for name in ("SSH", "connect", "run", "open_once", "nodelay", "ssh_files", "jump_of", "Jump", "TimedOut",
                 "SSH_KINDS", "for_env", "KEEPALIVE_SECONDS", "DEAD_PEER_SECONDS", "STEP_SECONDS",
                 "CONNECT_SECONDS", "Transport", "Result"):
        assert hasattr(transport, name), name
    assert registry.KINDS == {"ssh": transport.SSH, "local": transport.SSH, "bastion": transport.SSH, "ssm": SSM}
    assert transport.SSH_KINDS == ("ssh", "local", "bastion")


def test_an_unknown_kind_is_one_line_of_bad_input():
    with pytest.raises(BadInput) as exc:
        registry.for_env("staging", "telnet")
    assert "\n" not in exc.value.message and "'telnet'" in exc.value.message and "ssm" in exc.value.message


def test_ssm_has_no_stream_and_refuses_a_follow_in_one_line():
    t = SSM("x", ssm=object(), s3=object(), bucket="b")
    assert (transport.SSH.streams, SSM.streams) == (True, False)
    with pytest.raises(BadInput) as exc:
        t.run_each(HOSTS, "journalctl -f", "following", follow=True)
    assert "\n" not in exc.value.message and "SSM" in exc.value.message


# -- SSM on moto ---------------------------------------------------------------------------------------------------

@pytest.fixture
def estate(moto_endpoint):
    return awsestate.build(moto_endpoint, {"catalog": 3, "streaming": 2}, register=False)


def tagged(estate) -> Inventory:
    """The estate as the aws_ec2 inventory shows it: each host with its instance's tags."""
    hosts = {}
    for tier, found in estate.hosts.items():
        for h in found:
            tags = {k: v for k, v in awsestate.tier_tags(estate.env, tier).items()}
            hosts[h.name] = Host(h.name, h.address, h.groups, {**h.vars, "tags": tags})
    return Inventory(estate.env, hosts)


def on_moto(estate, sent: list | None = None, inv: Inventory | None = None, **kw) -> SSM:
    ssm = awsestate.client(estate.endpoint, "ssm")
    if sent is not None:
        ssm.meta.events.register("provide-client-params.ssm.SendCommand", lambda params, **_: sent.append(params))
    return SSM(estate.env, ssm=ssm, s3=awsestate.client(estate.endpoint, "s3"), bucket=estate.bucket, poll=0.01,
               inventory=inv, **kw)


def test_ssm_a_whole_tier_is_one_send_command_by_tags_with_rate_controls_and_the_output_bucket(estate):
    inv = tagged(estate)
    sent: list[dict] = []
    t = on_moto(estate, sent, inv)
    catalog = inv.group("catalog")
    lines = []
    got = t.run_each(catalog, "uptime", "asking uptime", timeout=60, on_line=lambda h, line: lines.append(h),
                     max_concurrency="2", max_errors="1")
    assert len(sent) == 1
    s = sent[0]
    assert s["Targets"] == [{"Key": "tag:roadie:env", "Values": [estate.env]},
                            {"Key": "tag:roadie:role", "Values": ["catalog"]}]
    assert "InstanceIds" not in s
    assert (s["MaxConcurrency"], s["MaxErrors"]) == ("2", "1")
    assert (s["OutputS3BucketName"], s["OutputS3KeyPrefix"]) == (estate.bucket, ssm_mod.OUTPUT_PREFIX)
    assert s["Parameters"] == {"commands": ["uptime"], "executionTimeout": ["60"]}
    assert got == {h.name: Result(h.name, 0, "", "") for h in catalog}  # moto runs nothing: empty output
    assert lines == []
    recorded = [c for c in awsestate.client(estate.endpoint, "ssm").list_commands()["Commands"]
                if c["Targets"] == s["Targets"]]
    assert len(recorded) == 1  # SSM (here moto) resolved the tags to the catalog instances only
    assert sorted(recorded[0]["InstanceIds"]) == sorted(h.vars["ansible_aws_ssm_instance_id"] for h in catalog)


def test_ssm_rate_controls_default_to_running_everywhere_as_ssh_does(estate):
    inv = tagged(estate)
    sent: list[dict] = []
    on_moto(estate, sent, inv).run_each(inv.group("streaming"), "true", "x")
    assert (sent[0]["MaxConcurrency"], sent[0]["MaxErrors"]) == (ssm_mod.MAX_CONCURRENCY, ssm_mod.MAX_ERRORS)


@pytest.mark.parametrize("pick", ["part of a tier", "two tiers", "no inventory"])
def test_ssm_hosts_that_are_not_one_whole_tier_go_by_instance_ids(estate, pick):
    inv = tagged(estate)
    hosts = {"part of a tier": inv.group("catalog")[:2], "two tiers": inv.group("catalog") + inv.group("streaming"),
             "no inventory": inv.group("catalog")}[pick]
    sent: list[dict] = []
    # "no inventory": the environment's (a moto estate's name) cannot be read, so no tier is guessed
    t = on_moto(estate, sent, None if pick == "no inventory" else inv)
    got = t.run_each(hosts, "true", "x")
    assert len(sent) == 1 and "Targets" not in sent[0]
    assert sent[0]["InstanceIds"] == [h.vars["ansible_aws_ssm_instance_id"] for h in hosts]
    assert all(r.exit == 0 for r in got.values()) and list(got) == [h.name for h in hosts]


def test_ssm_more_instance_ids_than_one_command_takes_are_sent_in_fifties(estate):
    hosts = [Host(f"h-{i}", f"10.0.0.{i}", ("x",), {"ansible_aws_ssm_instance_id": f"i-{i:017x}"}) for i in range(60)]
    sent: list[dict] = []
    got = on_moto(estate, sent).run_each(hosts, "true", "x")
    assert [len(s["InstanceIds"]) for s in sent] == [50, 10]
    assert len(got) == 60 and all(r.exit == 0 for r in got.values())


def test_ssm_a_host_of_the_tier_that_ssm_did_not_reach_is_reported_not_waited_for(estate):
    inv = tagged(estate)
    tags = awsestate.tier_tags(estate.env, "catalog")
    ghost = Host("catalog-ghost", "10.9.9.9", ("catalog",), {"ansible_aws_ssm_instance_id": "i-0123456789abcdef0",
                                                            "tags": tags})
    inv = Inventory(inv.env, {**inv.hosts, ghost.name: ghost})
    started = time.monotonic()
    got = on_moto(estate, [], inv).run_each(inv.group("catalog"), "true", "x")
    assert time.monotonic() - started < 10
    assert got["catalog-ghost"].exit is None and "SSM did not run it" in got["catalog-ghost"].error
    assert sum(r.exit == 0 for r in got.values()) == 3


def test_ssm_the_polling_client_retries_adaptively(monkeypatch, moto_endpoint):
    from roadie import aws

    monkeypatch.setattr(aws, "settings", lambda env: {"endpoint_url": moto_endpoint, "region": "us-east-1",
                                                      "buckets": {"artifacts": "roadie-x-artifacts"}})
    t = SSM("x")
    assert ssm_mod.RETRIES == {"mode": "adaptive", "max_attempts": 10}
    # botocore keeps it as attempts in all: the first and 10 retries, each waiting for the client's rate limiter
    assert t.ssm.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 11}
    assert t.ssm.meta.endpoint_url == moto_endpoint and t.ssm.meta.region_name == "us-east-1"
    assert t.ssm.list_commands()["ResponseMetadata"]["HTTPStatusCode"] == 200  # and it speaks to the endpoint


# -- SSM where moto cannot show it ---------------------------------------------------------------------------------

class FakeSSM:
    """SSM's answers, one invocation document per instance; a command's output settings kept as SSM keeps them."""

    def __init__(self, invocations: dict[str, dict | list[dict]], ends: bool = True):
        self.invocations, self.ends = invocations, ends
        self.commands, self.cancelled = [], []

    def send_command(self, **kw):
        self.commands.append({**kw, "CommandId": f"c-{len(self.commands) + 1}"})
        return {"Command": self.commands[-1]}

    def get_command_invocation(self, CommandId, InstanceId):  # noqa: N803 (boto3's names)
        if not self.ends:
            return {"Status": "InProgress", "ResponseCode": -1}
        inv = self.invocations[InstanceId]
        return inv.pop(0) if isinstance(inv, list) and len(inv) > 1 else (inv[0] if isinstance(inv, list) else inv)

    def list_commands(self, CommandId):  # noqa: N803
        c = next(c for c in self.commands if c["CommandId"] == CommandId)
        return {"Commands": [{**c, "Status": "Success" if self.ends else "InProgress"}]}

    def cancel_command(self, CommandId, InstanceIds=None):  # noqa: N803
        self.cancelled.append((CommandId, InstanceIds))


def one(iid="i-1", name="catalog-1"):
    return Host(name, "10.0.0.1", ("catalog",), {"ansible_aws_ssm_instance_id": iid})


FULL = "".join(f"line {i:05d} " + "x" * 40 + "\n" for i in range(2000))  # 104,000 characters


@pytest.mark.parametrize("url", ["", "path", "virtual"])
def test_ssm_output_beyond_the_inline_limit_is_read_from_the_bucket(estate, url):
    key = f"{ssm_mod.OUTPUT_PREFIX}/c-1/i-1/awsrunShellScript/0.awsrunShellScript/stdout"
    if url == "path":  # SSM names the object: that key is read, wherever it is
        key = "elsewhere/c-1/i-1/awsrunShellScript/0.awsrunShellScript/stdout"
    s3 = awsestate.client(estate.endpoint, "s3")
    s3.put_object(Bucket=estate.bucket, Key=key, Body=FULL.encode())
    link = {"": "", "path": f"https://s3.us-east-1.amazonaws.com/{estate.bucket}/{key}",
            "virtual": f"https://{estate.bucket}.s3.us-east-1.amazonaws.com/{key}"}[url]
    inline = FULL[:23_977] + "\n---Output truncated---"
    fake = FakeSSM({"i-1": {"Status": "Success", "ResponseCode": 0, "StandardOutputContent": inline,
                            "StandardOutputUrl": link, "StandardErrorContent": ""}})
    t = SSM(estate.env, ssm=fake, s3=s3, bucket=estate.bucket, poll=0, sleep=lambda s: None)
    lines = []
    got = t.run_each([one()], "journalctl -n 2000", "reading the journal", on_line=lambda h, line: lines.append(line))
    assert fake.commands[0]["OutputS3BucketName"] == estate.bucket
    assert got["catalog-1"].stdout == FULL
    assert lines == FULL.splitlines()  # every line, when the host's invocation ended


def test_ssm_truncated_output_that_cannot_be_read_keeps_what_ssm_gave_and_says_so(estate):
    inline = "a\n" * 12_000
    fake = FakeSSM({"i-1": {"Status": "Success", "ResponseCode": 0, "StandardOutputContent": inline,
                            "StandardErrorContent": ""}})
    s3 = awsestate.client(estate.endpoint, "s3")
    got = SSM(estate.env, ssm=fake, s3=s3, bucket=estate.bucket, poll=0, sleep=lambda s: None).run_each(
        [one()], "x", "x")["catalog-1"]
    assert got.exit == 0 and got.stdout == inline
    assert "the rest of stdout could not be read" in got.stderr and f"s3://{estate.bucket}/" in got.stderr


@pytest.mark.parametrize(("doc", "want"), [
    ({"Status": "Success", "ResponseCode": 0, "StandardOutputContent": "ok\n"}, Result("catalog-1", 0, "ok\n")),
    ({"Status": "Failed", "ResponseCode": 3, "StandardOutputContent": "", "StandardErrorContent": "unit failed\n"},
     Result("catalog-1", 3, "", "unit failed\n")),
    ({"Status": "TimedOut", "ResponseCode": -1, "StatusDetails": "ExecutionTimedOut"},
     Result("catalog-1", None, error="SSM: TimedOut (ExecutionTimedOut)")),
    ({"Status": "Cancelled", "ResponseCode": -1}, Result("catalog-1", None, error="SSM: Cancelled")),
])
def test_ssm_an_invocations_end_is_the_hosts_result(doc, want):
    fake = FakeSSM({"i-1": [{"Status": "InProgress", "ResponseCode": -1}, doc]})
    got = SSM("x", ssm=fake, s3=object(), bucket="b", poll=0, sleep=lambda s: None).run_each([one()], "x", "x")
    assert got == {"catalog-1": want}


def test_ssm_a_fan_out_past_its_bound_is_cancelled_and_its_hosts_did_not_answer():
    now = [0.0]
    fake = FakeSSM({}, ends=False)
    t = SSM("x", ssm=fake, s3=object(), bucket="b", poll=5, clock=lambda: now[0],
            sleep=lambda s: now.__setitem__(0, now[0] + s))
    got = t.run_each([one(), one("i-2", "catalog-2")], "sleep 999", "sleeping", timeout=30)
    assert fake.cancelled == [("c-1", None)]
    assert all(r.exit is None and "no answer through SSM after 90 s" in r.error for r in got.values())


def test_ssm_stop_cancels_the_command_and_returns_at_once():
    fake = FakeSSM({}, ends=False)
    t = SSM("x", ssm=fake, s3=object(), bucket="b", poll=0.01)
    done = {}
    th = threading.Thread(target=lambda: done.update(t.run_each([one()], "sleep 999", "sleeping")))
    th.start()
    time.sleep(0.1)
    t.stop()
    th.join(5)
    assert not th.is_alive() and done == {"catalog-1": Result("catalog-1", None, error="stopped")}
    assert fake.cancelled == [("c-1", None)]


def test_ssm_ctrl_c_while_waiting_cancels_the_command_before_it_goes_on():
    fake = FakeSSM({}, ends=False)

    def interrupted(seconds):
        raise KeyboardInterrupt
    t = SSM("x", ssm=fake, s3=object(), bucket="b", poll=1, sleep=interrupted)
    with pytest.raises(KeyboardInterrupt):
        t.run_each([one()], "sleep 999", "sleeping")
    assert fake.cancelled == [("c-1", None)]
