"""`roadie hosts pin-keys`: host keys from the EC2 console output, merged into the environment's known_hosts.

The keys below were made with ssh-keygen and their fingerprints are what
`ssh-keygen -l` printed for them, so the fingerprints are checked against
OpenSSH itself, not against roadie's own arithmetic.
"""

from __future__ import annotations

import base64
import json
import stat

import boto3
import paramiko
import pytest
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber
from click.testing import CliRunner

from roadie import confirm, hostkeys, inventory
from roadie.errors import BadInput
from roadie.inventory import Host, Inventory
from roadie.main import main

ED = ("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIKo7NTVpeO0mo3FJVrxlPLXPZ2aerLEzTfgl5Mj/mndu")
ED_FP = "SHA256:4N/xGC0CyfBCMxFYAEwsCYR0uRQeXB8oVW2hKEqsnaI"
ED_MD5 = "MD5:8c:04:c9:82:66:df:33:6f:2a:7a:9a:9f:4f:ff:71:dc"
ECDSA = ("ecdsa-sha2-nistp256", "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBCoWgccger6VMlQSeSZ2cmneTA6Zf5OUI"
                                "Dlg7c8MMqsxkH+oojybCThc30oCoVDqllsvt872kr4Mi8IvBKQ8xtw=")
ECDSA_FP = "SHA256:nWfZGvvsNDTXVMQfrDGQopv3PXdM0GJ5YaXdhi8VLyk"
ED2 = ("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAINAVOTXNmICI/IBO5t3T83P/xh4L7pB61v1lGE/bOwVn")  # another host's
ED2_FP = "SHA256:0s7T2CyFZFjNBoZzreWeErQnijGy0HLYpjzejpLmg6s"
# `ssh-keygen -H` of "10.0.1.5 ssh-ed25519 ED"
HASHED_ED = "|1|/Iugr/fYXIaA77Nm48vexmtZDc4=|3Pj8npfbpn5kCGRmZ9u7gDm2djQ= " + " ".join(ED)

KERNEL = "[    0.000000] Linux version 6.1.0-18-cloud-amd64\n[    1.234567] random: crng init done\n"
FPS_BLOCK = (
    "<14>Mar  3 10:00:01 cloud-init: #############################################################\n"
    "<14>Mar  3 10:00:01 cloud-init: -----BEGIN SSH HOST KEY FINGERPRINTS-----\n"
    f"<14>Mar  3 10:00:01 cloud-init: 256 {ECDSA_FP} root@ip-10-0-1-5 (ECDSA)\n"
    f"<14>Mar  3 10:00:01 cloud-init: 256 {ED_FP} root@ip-10-0-1-5 (ED25519)\n"
    "<14>Mar  3 10:00:01 cloud-init: -----END SSH HOST KEY FINGERPRINTS-----\n"
    "<14>Mar  3 10:00:01 cloud-init: #############################################################\n")
KEYS_BLOCK = ("-----BEGIN SSH HOST KEY KEYS-----\n"
              f"{' '.join(ECDSA)} root@ip-10-0-1-5\n"
              f"{' '.join(ED)} root@ip-10-0-1-5\n"
              "-----END SSH HOST KEY KEYS-----\n")
CONSOLE = KERNEL + FPS_BLOCK + KEYS_BLOCK + "[   30.1] cloud-init[612]: Cloud-init v. 22.4.2 finished\n"


def keys_block(*lines: str) -> str:
    return "-----BEGIN SSH HOST KEY KEYS-----\n" + "".join(f"{line}\n" for line in lines) + \
        "-----END SSH HOST KEY KEYS-----\n"


# -- parsing a console -------------------------------------------------------------------------------

PARSE = [
    ("cloud-init's keys and fingerprints", CONSOLE, [ECDSA, ED]),
    ("fingerprints only", KERNEL + FPS_BLOCK, []),
    ("no block (moto's canned console)", KERNEL + "Kernel command line: root=/dev/sda1 ro 4\n", []),
    ("empty", "", []),
    ("CRLF line ends", CONSOLE.replace("\n", "\r\n"), [ECDSA, ED]),
    ("bare CR line ends, and CR CR LF", CONSOLE.replace("\n", "\r").replace(KERNEL[:10], "\r\r\n" + KERNEL[:10]),
     [ECDSA, ED]),
    ("Amazon Linux's ec2: prefix", "".join(f"ec2: {line}\n" for line in CONSOLE.splitlines()), [ECDSA, ED]),
    ("garbage lines in the block", keys_block(
        "[   12.5] random: crng init done",  # a kernel message interleaved
        f"ssh-ed25519 {ED[1][:30]} root@cut",  # a line cut short
        f"ssh-rsa {ED[1]} root@liar",  # ed25519 bytes called an RSA key
        "ssh-ed25519 AAAA!!notbase64!! root@x",
        f"{' '.join(ED)} root@ip-10-0-1-5",
        f"{' '.join(ED)} root@ip-10-0-1-5"), [ED]),  # and once only
    ("unterminated block (a console cut short)", "-----BEGIN SSH HOST KEY KEYS-----\n" + " ".join(ED) + "\n", []),
    ("two boots: the last block wins", keys_block(" ".join(ED2)) + KERNEL + keys_block(" ".join(ED)), [ED]),
    ("keys outside the block are not keys", " ".join(ED) + "\n" + KERNEL, []),
]


@pytest.mark.parametrize("text, expected", [c[1:] for c in PARSE], ids=[c[0] for c in PARSE])
def test_parse_console(text, expected):
    assert hostkeys.parse_console(text) == expected


@pytest.mark.parametrize("text, expected", [
    (CONSOLE, [("ECDSA", ECDSA_FP), ("ED25519", ED_FP)]),
    (KERNEL, []),
    ("-----BEGIN SSH HOST KEY FINGERPRINTS-----\r\n"  # old OpenSSH: MD5 hex pairs, no prefix
     "ec2: 256 8c:04:c9:82:66:df:33:6f:2a:7a:9a:9f:4f:ff:71:dc no comment (ED25519)\r\n"
     "-----END SSH HOST KEY FINGERPRINTS-----\r\n", [("ED25519", ED_MD5)]),
])
def test_parse_fingerprints(text, expected):
    assert hostkeys.parse_fingerprints(text) == expected


@pytest.mark.parametrize("key, expected", [(ED, ED_FP), (ECDSA, ECDSA_FP), (ED2, ED2_FP)])
def test_fingerprint_is_what_ssh_keygen_prints(key, expected):
    assert hostkeys.fingerprint(key[1]) == expected


@pytest.mark.parametrize("keys, fps, expected", [
    ([ED, ECDSA], [("ED25519", ED_FP), ("ECDSA", ECDSA_FP)], []),
    ([ED], [("ED25519", ED_MD5)], []),
    ([ED], [("ED25519", ED2_FP)], [ED]),  # the printed fingerprint is another key's
    ([ED, ECDSA], [("ECDSA", ECDSA_FP)], []),  # no fingerprint printed for ED25519: nothing to check it by
    ([ED], [], []),
])
def test_contradicted(keys, fps, expected):
    assert hostkeys.contradicted(keys, fps) == expected


# -- merging into known_hosts ------------------------------------------------------------------------

A = "10.0.1.5"
LINE_ED, LINE_ECDSA, LINE_ED2 = (f"{A} {t} {k}" for t, k in (ED, ECDSA, ED2))
OTHER = f"10.0.1.6 {' '.join(ED2)}"

MERGE = [
    ("new, empty file", "", A, [ED], f"{LINE_ED}\n", [("new", ED_FP, ())]),
    ("new, beside other hosts", f"{OTHER}\n", A, [ED, ECDSA], f"{OTHER}\n{LINE_ED}\n{LINE_ECDSA}\n",
     [("new", ED_FP, ()), ("new", ECDSA_FP, ())]),
    ("same: the file is left as it is", f"# pinned\n{LINE_ED}\n{OTHER}", A, [ED], f"# pinned\n{LINE_ED}\n{OTHER}",
     [("same", ED_FP, ())]),
    ("same, in the local fleet's name,address form", f"db-1,{A} {' '.join(ED)}\n", A, [ED],
     f"db-1,{A} {' '.join(ED)}\n", [("same", ED_FP, ())]),
    ("same, hashed by ssh-keygen -H", f"{HASHED_ED}\n", A, [ED], f"{HASHED_ED}\n", [("same", ED_FP, ())]),
    ("changed: the old line is replaced in place", f"{OTHER}\n{LINE_ED2}\n# end\n", A, [ED],
     f"{OTHER}\n{LINE_ED}\n# end\n", [("changed", ED_FP, (ED2_FP,))]),
    ("changed in a line shared with a name: the name keeps its key", f"db-1,{A} {' '.join(ED2)}\n", A, [ED],
     f"{LINE_ED}\ndb-1 {' '.join(ED2)}\n", [("changed", ED_FP, (ED2_FP,))]),
    ("changed, hashed entry", f"{HASHED_ED}\n", A, [ED2], f"{LINE_ED2}\n", [("changed", ED2_FP, (ED_FP,))]),
    ("a type no longer listed is dropped", f"{LINE_ED}\n{LINE_ECDSA}\n", A, [ED], f"{LINE_ED}\n",
     [("same", ED_FP, ()), ("removed", None, (ECDSA_FP,))]),
    ("another port is another host", f"{LINE_ED2}\n", f"[{A}]:2222", [ED],
     f"{LINE_ED2}\n[{A}]:2222 {' '.join(ED)}\n", [("new", ED_FP, ())]),
    ("@revoked and @cert-authority lines stay", f"@revoked {LINE_ED2}\n@cert-authority * {' '.join(ED2)}\n", A,
     [ED], f"@revoked {LINE_ED2}\n@cert-authority * {' '.join(ED2)}\n{LINE_ED}\n", [("new", ED_FP, ())]),
    ("no keys: nothing is unpinned", f"{LINE_ED}\n", A, [], f"{LINE_ED}\n", []),
]


@pytest.mark.parametrize("existing, address, keys, text, changes", [c[1:] for c in MERGE], ids=[c[0] for c in MERGE])
def test_merge(existing, address, keys, text, changes):
    new_text, got = hostkeys.merge(existing, address, keys)
    assert new_text == text
    assert [(c.kind, c.fingerprint, c.previous) for c in got] == changes


def test_paramiko_reads_what_merge_writes(tmp_path):
    """The transport's own reader (paramiko's HostKeys, as RejectPolicy consults it) finds each pinned key."""
    text, _ = hostkeys.merge(f"# pinned by roadie\n{OTHER}\n", A, [ED, ECDSA])
    text, _ = hostkeys.merge(text, hostkeys.host_field("bastion.example.com", 2222), [ED2])
    (tmp_path / "known_hosts").write_text(text)
    keys = paramiko.HostKeys(str(tmp_path / "known_hosts"))
    assert keys.lookup(A)["ssh-ed25519"].get_base64() == ED[1]
    assert keys.lookup(A)["ecdsa-sha2-nistp256"].get_base64() == ECDSA[1]
    assert keys.lookup("[bastion.example.com]:2222")["ssh-ed25519"].get_base64() == ED2[1]
    assert keys.lookup("bastion.example.com") is None


def test_save_is_0600_in_a_0700_directory_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "state" / "staging" / "known_hosts"
    hostkeys.save(path, "one\n")
    hostkeys.save(path, "two\n")
    assert path.read_text() == "two\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["known_hosts"]


# -- what is read ------------------------------------------------------------------------------------

def host(name, iid="i-1", address="10.0.1.5", **more):
    v = {"ansible_aws_ssm_instance_id": iid} if iid else {}
    return Host(name, address, ("catalog",), {**v, **more})


JUMP = {"ansible_ssh_common_args": "-o ProxyJump=admin@bastion.example.com:2222"}


@pytest.mark.parametrize("selected, every, expected", [
    ([host("c-1")], None, [hostkeys.Target("c-1", A, "i-1")]),
    ([host("c-1", **JUMP, roadie_bastion_instance_id="i-b"), host("c-2", "i-2", "10.0.1.6", **JUMP,
                                                                    roadie_bastion_instance_id="i-b")], None,
     [hostkeys.Target("c-1", A, "i-1"), hostkeys.Target("c-2", "10.0.1.6", "i-2"),
      hostkeys.Target("bastion.example.com", "[bastion.example.com]:2222", "i-b", ("c-1", "c-2"))]),
    ([host("c-1", **JUMP)], None,  # a bastion roadie cannot find: a target with no instance, to report
     [hostkeys.Target("c-1", A, "i-1"), hostkeys.Target("bastion.example.com", "[bastion.example.com]:2222", None,
                                                        ("c-1",))]),
    ([host("c-1", ansible_ssh_common_args="-J admin@bastion-1")],  # the bastion is an inventory host
     [host("c-1"), host("bastion-1", "i-b", "10.0.0.9")],
     [hostkeys.Target("c-1", A, "i-1"), hostkeys.Target("bastion-1", "bastion-1", "i-b", ("c-1",))]),
])
def test_targets(selected, every, expected):
    assert hostkeys.targets(selected, every or selected) == expected


@pytest.mark.parametrize("selected, message", [
    ([host("c-1"), host("c-2", None), host("c-3", "")], "c-2, c-3 have no instance id"),
    ([host("c-1", instance_id=None, ansible_aws_ssm_instance_id=None)], "c-1 has no instance id"),
    ([host("c-1", **JUMP, roadie_bastion_instance_id="i-b"), host("c-2", **JUMP, roadie_bastion_instance_id="i-c")],
     "bastion.example.com is two instances"),
])
def test_targets_refuses(selected, message):
    with pytest.raises(BadInput, match=message):
        hostkeys.targets(selected, selected)


T = hostkeys.Target("c-1", A, "i-1")


@pytest.mark.parametrize("text, error, keys, problem", [
    (CONSOLE, None, [ECDSA, ED], None),
    ("", None, [], "console output is empty"),
    (None, None, [], "console output is empty"),  # no Output at all
    (KERNEL + FPS_BLOCK, None, [], "only the host keys' fingerprints"),
    (KERNEL, None, [], "no SSH HOST KEY KEYS block"),
    (FPS_BLOCK.replace(ED_FP, ED2_FP) + KEYS_BLOCK, None, [], f"do not match.*ssh-ed25519 {ED_FP}"),
    (None, "An error occurred (InvalidInstanceID.NotFound)", [], "could not be read: An error"),
])
def test_outcome(text, error, keys, problem):
    o = hostkeys.outcome(T, text, error)
    assert o.keys == keys
    assert (o.problem is None) if problem is None else __import__("re").search(problem, o.problem), o.problem
    assert o.failed is (problem is not None)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def ec2_client():
    return boto3.client("ec2", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")


def test_console_text_asks_for_the_latest_output_and_gets_it_decoded():
    """botocore decodes GetConsoleOutput's base64 itself (handlers.decode_console_output, after-call, which
    runs on stubbed answers too): the API's answer here is base64, what roadie reads is the text."""
    ec2 = ec2_client()
    with Stubber(ec2) as stub:
        stub.add_response("get_console_output", {"InstanceId": "i-1", "Output": b64(CONSOLE)},
                          {"InstanceId": "i-1", "Latest": True})
        assert hostkeys.console_text(ec2, "i-1") == CONSOLE
        stub.assert_no_pending_responses()


def test_console_text_without_latest_where_the_instance_type_has_none():
    ec2 = ec2_client()
    with Stubber(ec2) as stub:
        stub.add_client_error("get_console_output", "UnsupportedOperation", "Latest is for Nitro instances",
                              expected_params={"InstanceId": "i-1", "Latest": True})
        stub.add_response("get_console_output", {"InstanceId": "i-1"}, {"InstanceId": "i-1"})  # no output yet
        assert hostkeys.console_text(ec2, "i-1") == ""
        stub.assert_no_pending_responses()


# -- the command -------------------------------------------------------------------------------------

class Consoles:
    """EC2 for the command: each instance's console text, answered per InstanceId (the command reads them
    in parallel, so a Stubber's ordered queue cannot say which answer is whose); every call recorded."""

    def __init__(self, consoles: dict[str, str | None]):
        self.consoles = consoles
        self.calls: list[dict] = []
        self.client = ec2_client()
        self.client.meta.events.register("before-parameter-build.ec2.GetConsoleOutput", self.params)
        self.client.meta.events.register("before-call.ec2.GetConsoleOutput", self.answer)

    def params(self, params, context, **_):
        self.calls.append(dict(params))
        context["roadie_iid"] = params["InstanceId"]

    def answer(self, context, **_):
        text = self.consoles[context["roadie_iid"]]
        parsed = {"InstanceId": context["roadie_iid"], **({"Output": b64(text)} if text is not None else {})}
        return AWSResponse("https://ec2.example", 200, {}, None), parsed  # botocore decodes Output after this


HOSTS = {"catalog-i-1": ("i-1", "10.0.1.5"), "catalog-i-2": ("i-2", "10.0.1.6")}
BASTION = {"ansible_ssh_common_args": "-o ProxyJump=admin@bastion.example.com", "roadie_bastion_instance_id": "i-b"}


@pytest.fixture
def cli(monkeypatch, tmp_path):
    """`roadie --env staging --output json hosts pin-keys ...` on a fake staging inventory and EC2."""
    monkeypatch.setenv("ROADIE_STATE_DIR", str(tmp_path / "state"))
    for var in ("ROADIE_ENV", "ROADIE_OUTPUT"):
        monkeypatch.delenv(var, raising=False)
    state = {"vars": dict(BASTION), "consoles": {"i-1": CONSOLE, "i-2": CONSOLE.replace(ED[1], ED2[1])
                                                 .replace(ED_FP, ED2_FP), "i-b": keys_block(" ".join(ECDSA))},
             "records": [], "no_id": set()}

    def load(env):
        assert env == "staging", env
        return Inventory("staging", {n: Host(n, a, ("catalog",), {**state["vars"], **(
            {} if n in state["no_id"] else {"ansible_aws_ssm_instance_id": i})}) for n, (i, a) in HOSTS.items()})

    monkeypatch.setattr(inventory, "load", load)
    from roadie.environment import Environment

    monkeypatch.setattr(Environment, "audit", lambda self, operation, result, **facts: state["records"].append(
        (self.name, {"operation": operation, "result": result, **facts})))

    def invoke(*args, input=None, output="json"):
        state["ec2"] = Consoles(state["consoles"])
        monkeypatch.setattr(Environment, "client", lambda self, service, retries=None: state["ec2"].client)
        res = CliRunner().invoke(main, ["--env", "staging", "--output", output, "hosts", "pin-keys", *args],
                                 input=input)
        lines = [json.loads(line) for line in res.stdout.splitlines()] if output == "json" else []
        return res, lines
    invoke.state = state
    invoke.known_hosts = tmp_path / "state" / "staging" / "known_hosts"
    return invoke


def test_pin_keys_pins_every_host_and_the_bastion(cli):
    res, lines = cli()
    assert res.exit_code == 0, res.output
    doc = lines[-1]
    assert doc["written"] is True and doc["plan"] is False
    assert cli.known_hosts.read_text() == (f"10.0.1.5 {' '.join(ECDSA)}\n10.0.1.5 {' '.join(ED)}\n"
                                           f"10.0.1.6 {' '.join(ECDSA)}\n10.0.1.6 {' '.join(ED2)}\n"
                                           f"bastion.example.com {' '.join(ECDSA)}\n")
    assert stat.S_IMODE(cli.known_hosts.stat().st_mode) == 0o600
    assert stat.S_IMODE(cli.known_hosts.parent.stat().st_mode) == 0o700
    assert sorted(c["InstanceId"] for c in cli.state["ec2"].calls) == ["i-1", "i-2", "i-b"]
    assert all(c["Latest"] is True for c in cli.state["ec2"].calls)
    [(env, record)] = cli.state["records"]
    assert env == "staging" and record["operation"] == "hosts.pin-keys" and record["result"] == "ok"
    assert {n: [k["fingerprint"] for k in h["keys"]] for n, h in record["hosts"].items()} == {
        "catalog-i-1": [ECDSA_FP, ED_FP], "catalog-i-2": [ECDSA_FP, ED2_FP], "bastion.example.com": [ECDSA_FP]}
    assert "AAAA" not in json.dumps(record)  # fingerprints in the audit, not keys
    again, lines = cli()  # pinned already: nothing to write, nothing audited
    assert again.exit_code == 0 and lines[-1]["written"] is False and len(cli.state["records"]) == 1


def test_plan_changes_nothing(cli):
    res, lines = cli("--plan", "--hosts", "catalog-i-1")
    assert res.exit_code == 0, res.output
    assert lines[-1]["plan"] is True and lines[-1]["written"] is False
    assert [h["name"] for h in lines[-1]["hosts"]] == ["catalog-i-1", "bastion.example.com"]
    assert [k["change"] for k in lines[-1]["hosts"][0]["keys"]] == ["new", "new"]
    assert not cli.known_hosts.parent.exists() and cli.state["records"] == []


def test_a_changed_key_is_loud_and_needs_yes(cli):
    assert cli()[0].exit_code == 0
    before = cli.known_hosts.read_text()
    cli.state["consoles"]["i-1"] = CONSOLE.replace(ED[1], ED2[1]).replace(ED_FP, ED2_FP)  # a new instance?
    res, lines = cli()
    assert res.exit_code == 2, res.output
    warning = next(ln for ln in lines if ln.get("event") == "hosts.key.changed")
    assert warning["host"] == "catalog-i-1" and warning["previous"] == [ED_FP] and warning["fingerprint"] == ED2_FP
    assert "replace the pinned host keys of catalog-i-1 in staging" in lines[-1]["error"]
    assert "needs --yes" in lines[-1]["error"]
    assert cli.known_hosts.read_text() == before and len(cli.state["records"]) == 1
    res, lines = cli("--plan")  # the plan says so too, and changes nothing
    assert res.exit_code == 0 and cli.known_hosts.read_text() == before
    assert [k["change"] for k in lines[-1]["hosts"][0]["keys"]] == ["same", "changed"]
    res, _ = cli("--yes")
    assert res.exit_code == 0, res.output
    assert f"10.0.1.5 {' '.join(ED2)}" in cli.known_hosts.read_text()
    assert f"10.0.1.5 {' '.join(ED)}" not in cli.known_hosts.read_text()
    assert [k["change"] for k in cli.state["records"][-1][1]["hosts"]["catalog-i-1"]["keys"]] == ["same", "changed"]


def test_a_changed_key_is_pinned_when_the_env_is_typed_back(cli, monkeypatch):
    cli()
    cli.state["consoles"]["i-1"] = keys_block(" ".join(ED2))
    monkeypatch.setattr(confirm, "interactive", lambda: True)
    res, _ = cli(input="production\n")
    assert res.exit_code == 2 and "did not match 'staging'" in res.output
    res, _ = cli(input="staging\n")
    assert res.exit_code == 0, res.output
    assert cli.known_hosts.read_text().splitlines()[0] == f"10.0.1.5 {' '.join(ED2)}"


@pytest.mark.parametrize("console, reason", [
    ("", "console output is empty"),
    (None, "console output is empty"),
    (KERNEL + FPS_BLOCK, "only the host keys' fingerprints"),
    (KERNEL, "no SSH HOST KEY KEYS block"),
])
def test_a_host_without_keys_is_reported_the_others_pinned_and_the_exit_is_1(cli, console, reason):
    cli.state["consoles"]["i-2"] = console
    res, lines = cli()
    assert res.exit_code == 1, res.output
    assert lines[-1]["error"] == "no host key for catalog-i-2 (the reasons are above); the others were pinned"
    assert reason in next(h for h in lines[-2]["hosts"] if h["name"] == "catalog-i-2")["problem"]
    assert "10.0.1.6" not in cli.known_hosts.read_text() and "10.0.1.5" in cli.known_hosts.read_text()
    assert cli.state["records"][0][1]["result"] == "partial"
    assert cli.state["records"][0][1]["missing"] == ["catalog-i-2"]


def test_a_bastion_roadie_cannot_find_is_a_note_on_how_to_add_it(cli):
    del cli.state["vars"]["roadie_bastion_instance_id"]
    res, _ = cli(output="text")  # the note is for a person
    assert res.exit_code == 0, res.output
    assert "bastion bastion.example.com (the ProxyJump of catalog-i-1, catalog-i-2): not pinned" in res.stderr
    assert "roadie_bastion_instance_id: i-... in inventories/staging/group_vars/all/main.yml" in res.stderr
    assert str(cli.known_hosts) in res.stderr
    assert "bastion.example.com" not in cli.known_hosts.read_text()
    assert "i-b" not in [c["InstanceId"] for c in cli.state["ec2"].calls]


@pytest.mark.parametrize("args, message", [
    (["--hosts", ""], "--hosts is empty"),
    (["--hosts", "nosuch"], "'nosuch' is neither a host nor a group"),
    (["--hosts", "catalog-i-2", "--yes"], "catalog-i-2 has no instance id"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_read_or_written(cli, args, message):
    cli.state["consoles"] = {}  # any console read would be a KeyError
    cli.state["no_id"] = {"catalog-i-2"}
    res, lines = cli(*args)
    assert res.exit_code == 2, res.output
    assert len(lines) == 1 and message in lines[0]["error"], res.output
    assert cli.state["ec2"].calls == [] and not cli.known_hosts.parent.exists() and cli.state["records"] == []
