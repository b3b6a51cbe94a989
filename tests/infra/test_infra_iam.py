"""Each IAM role of the program allows what its hosts' code calls on AWS, and nothing more.

moto does not enforce IAM, so no fleet or moto test can notice a grant that is missing
(the database role could not s3:DeleteObject, so `roadie db prune` could not work on
AWS) or one nothing uses. iam_needs.yaml is the table of needs (tier -> action ->
resource -> which code calls it); these tests compare it with the policies each stack's
program writes under mocks, derive what they can of the table from the code, and plant
defects to see them reported.
"""

from __future__ import annotations

import ast
import copy
import json
import re

import pytest

from iam_grants import backup_prefix, check, load_needs, missing_evidence, vias
from infra_testlib import ROOT


@pytest.fixture(scope="module")
def table() -> dict:
    return load_needs()


def test_every_role_is_granted_what_its_code_calls_and_no_more(built, table):
    problems = check(built, table)
    assert not problems, f"{built.stack}: IAM grants disagree with tests/infra/iam_needs.yaml:\n" + "\n".join(problems)


def test_the_table_names_code_that_exists(table):
    assert missing_evidence(table) == []


# -- what the table says, derived from the code ---------------------------------------

def barman_commands() -> set[str]:
    """The barman-cloud commands roadie and the database role run (through roadie-barman)."""
    found = set()
    for path in [*(ROOT / "cli/roadie").rglob("*.py"), ROOT / "fabfile.py"]:
        text = path.read_text()
        found |= set(re.findall(r'\bbarman\("([a-z][a-z-]*)"', text))
        found |= set(re.findall(r"\{WRAPPER\} ([a-z][a-z-]*)", text))
    for path in (ROOT / "roles/database").rglob("*"):
        if path.is_file():
            found |= set(re.findall(r"roadie-barman,?[ \t]+([a-z][a-z-]*)", path.read_text()))
    return found


def test_barman_commands_are_the_ones_the_code_runs(table):
    used = barman_commands()
    assert {"wal-archive", "wal-restore", "backup", "backup-list", "backup-delete", "restore"} <= used
    assert vias(table, "database", "barman") == used, (
        "iam_needs.yaml's database lines must name exactly the barman-cloud commands the code runs")


def imports_aws(path) -> bool:
    """Whether a module imports boto3 or botocore (anywhere in it, as the services import lazily)."""
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        if any(n.split(".")[0] in ("boto3", "botocore") for n in names):
            return True
    return False


def s3_calls(path) -> set[str]:
    """The S3 operations (boto3 client method names) a module calls, get_paginator's by its argument."""
    import boto3

    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    operations = set(client.meta.method_to_api_mapping) | {"download_file", "download_fileobj", "upload_file",
                                                          "upload_fileobj"}
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = node.func.attr
            if name == "get_paginator" and node.args and isinstance(node.args[0], ast.Constant):
                name = node.args[0].value
            if name in operations:
                found.add(name)
    return found


def test_streaming_calls_are_the_ones_the_table_names(table):
    """Every module of the streaming service that uses boto3, but seed_media (run by a person with
    their own credentials, see iam_needs.yaml)."""
    package = ROOT / "services/streaming/streaming"
    modules = [p for p in sorted(package.glob("*.py")) if imports_aws(p) and p.name != "seed_media.py"]
    assert [p.name for p in modules] == ["app.py"]
    used = set().union(*(s3_calls(p) for p in modules))
    assert used == {"download_fileobj", "head_bucket"}
    assert vias(table, "streaming", "boto3") == used


def test_the_catalog_service_calls_no_aws(table):
    package = ROOT / "services/catalog"
    users = [str(p.relative_to(ROOT)) for p in sorted(package.rglob("*.py")) if imports_aws(p)]
    requirements = package / "requirements.txt"
    users += [requirements.name] if re.search(r"^(boto3|botocore|aioboto3)\b", requirements.read_text(), re.M) else []
    assert users == []
    assert vias(table, "catalog", "boto3") == set()


def test_files_are_staged_on_the_service_tiers_from_the_artifacts_bucket(table):
    """The deploy engine stages each release on its service's hosts; through SSM the host fetches it."""
    from roadie import model
    from roadie.transport.ssm import SSM, TRANSFER_PREFIX

    line = SSM("x", ssm=object(), s3=object(), bucket="ARTIFACTS").fetch_command(f"{TRANSFER_PREFIX}/sha/f", "/tmp/f")
    assert line.startswith("aws s3 cp ") and f"s3://ARTIFACTS/{TRANSFER_PREFIX}/" in line
    staged = {tier for tier in table["roles"] if "s3 cp" in vias(table, tier, "aws-cli")}
    assert staged == {svc.group for svc in model.load().services.values()} == {"streaming", "catalog"}


class _RecordingSSM:
    """Just enough of an SSM client for run_each: records SendCommand, every invocation ends Success."""

    def __init__(self):
        self.sent: list[dict] = []

    def send_command(self, **params):
        self.sent.append(params)
        return {"Command": {"CommandId": f"c{len(self.sent)}"}}

    def get_command_invocation(self, CommandId, InstanceId):  # noqa: N803 (boto3's names)
        return {"Status": "Success", "ResponseCode": 0, "StandardOutputContent": "ok\n", "StandardErrorContent": ""}


def _grants_of(table: dict, tier: str) -> dict[tuple[str, str], set[str]]:
    """(action, resource) -> the `via`s of the tier's lines that need it."""
    out: dict[tuple[str, str], set[str]] = {}
    for line in table["roles"][tier].get("grants") or []:
        out.setdefault((line["action"], line["resource"]), set()).update(
            line["via"] if isinstance(line["via"], list) else [line["via"]])
    return out


def test_every_tier_reached_over_ssm_may_write_its_command_output(table):
    """run_each has the agent write each command's whole output to the artifacts bucket under OUTPUT_PREFIX;
    the agent writes it with the host's role, so every tier the SSM agent runs on needs PutObject there
    (and a data key: the bucket is SSE-KMS)."""
    from roadie.inventory import Host, Inventory
    from roadie.transport.ssm import OUTPUT_PREFIX, SSM, output_key

    ssm = _RecordingSSM()
    host = Host("h1", "10.0.0.1", ("catalog",), {"ansible_aws_ssm_instance_id": "i-1"})
    t = SSM("x", ssm=ssm, s3=object(), bucket="ARTIFACTS", inventory=Inventory("x", {}), sleep=lambda _s: None)
    assert t.run_each([host], "true", "checking")["h1"].exit == 0
    (sent,) = ssm.sent
    assert (sent["OutputS3BucketName"], sent["OutputS3KeyPrefix"]) == ("ARTIFACTS", OUTPUT_PREFIX)
    assert output_key("c1", "i-1", "stdout").startswith(f"{OUTPUT_PREFIX}/")

    agent = {tier for tier, role in table["roles"].items()
             if any(m["via"] == "ssm-agent" for m in role.get("managed_policies") or [])}
    assert agent == {"streaming", "catalog", "database"}
    for tier in sorted(agent):
        grants = _grants_of(table, tier)
        for need in (("s3:PutObject", f"bucket:artifacts/{OUTPUT_PREFIX}/*"), ("kms:GenerateDataKey", "key:storage")):
            assert "ssm-agent run-command output" in grants.get(need, set()), (
                f"iam_needs.yaml: {tier} has no `ssm-agent run-command output` line for {need[0]} on {need[1]}")


def test_the_program_confines_command_output_to_the_transports_prefix():
    """The program's copy of the prefix (infra does not import the transport) is the transport's."""
    from roadie.transport.ssm import OUTPUT_PREFIX
    from roadie_infra import storage

    assert getattr(storage, "SSM_OUTPUT_PREFIX", None) == OUTPUT_PREFIX


def test_no_grant_is_unused(table):
    unused = [f"{tier}: {line['action']} on {line['resource']}" for tier, role in table["roles"].items()
              for line in role.get("grants") or [] if "unused" in line]
    assert unused == []


# -- defects planted in a stack or in the table, and what the check says -------------

def _policy(b, tier: str) -> tuple[dict, dict]:
    rp = b.one("RolePolicy", f"compute-{tier}-access")
    return rp, json.loads(rp["inputs"]["policy"])


def _edit_policy(tier: str, edit):
    def plant(b, _table):
        rp, doc = _policy(b, tier)
        edit(doc["Statement"])
        rp["inputs"]["policy"] = json.dumps(doc)
    return plant


def _drop_action(action: str):
    def edit(statements):
        for st in statements:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            st["Action"] = [a for a in actions if a != action]
    return edit


def _widen(action: str):
    """ACTION moved from its prefix to the whole bucket."""
    def edit(statements):
        st = next(s for s in statements if action in s["Action"])
        statements.append({**st, "Sid": "Wider", "Action": [action], "Resource": st["Resource"].split("/")[0] + "/*"})
        _drop_action(action)([st])
    return edit


def _drop_statement(tier: str, sid: str):
    def edit(statements):
        statements[:] = [s for s in statements if s["Sid"] != sid]
    return _edit_policy(tier, edit)


def _drop_line(tier: str, action: str, resource: str):
    def plant(_b, t):
        role = t["roles"][tier]
        role["grants"] = [g for g in role["grants"] if (g["action"], g["resource"]) != (action, resource)]
    return plant


def _drop_managed(tier: str):
    def plant(_b, t):
        t["roles"][tier]["managed_policies"] = []
    return plant


def _add_resource(typ: str, name: str, **inputs):
    def plant(b, _t):
        b.resources.append({"type": typ, "name": name, "id": f"{name}-id", "custom": True, "inputs": inputs,
                            "state": {**inputs, "arn": f"arn:aws:iam::123456789012:role/{name}", "name": name}})
    return plant


PREFIX = backup_prefix()  # the service model's roadie_database.backup_prefix ("database")
PLANTED = {
    "database may not delete backups": (
        _edit_policy("database", _drop_action("s3:DeleteObject")),
        [f"database: missing s3:DeleteObject on bucket:backups/{{backup_prefix}}/* "
         f"(arn:aws:s3:::roadie-dev-backups/{PREFIX}/*), needed by barman backup-delete"]),
    "the database's agent may not write command output": (
        _drop_statement("database", "ArtifactsOutput"),
        ["database: missing s3:PutObject on bucket:artifacts/roadie-output/* "
         "(arn:aws:s3:::roadie-dev-artifacts/roadie-output/*), needed by ssm-agent run-command output"]),
    "command output written to the whole artifacts bucket": (
        _edit_policy("catalog", _widen("s3:PutObject")),
        ["catalog: missing s3:PutObject on bucket:artifacts/roadie-output/*",
         "catalog: extra grant s3:PutObject on bucket:artifacts/* (arn:aws:s3:::roadie-dev-artifacts/*)"]),
    "streaming may write media": (
        _edit_policy("streaming", lambda sts: next(s for s in sts if s["Sid"] == "MediaObjects")["Action"].append(
            "s3:PutObject")),
        ["streaming: extra grant s3:PutObject on bucket:media/* (arn:aws:s3:::roadie-dev-media/*): "
         "no line of iam_needs.yaml needs it"]),
    "deletes granted on the whole backups bucket": (
        _edit_policy("database", _widen("s3:DeleteObject")),
        ["database: missing s3:DeleteObject on bucket:backups/{backup_prefix}/*",
         "database: extra grant s3:DeleteObject on bucket:backups/* (arn:aws:s3:::roadie-dev-backups/*)"]),
    "a wildcard": (
        _edit_policy("catalog", lambda sts: sts.append({"Sid": "All", "Effect": "Allow", "Action": "s3:*",
                                                        "Resource": "*"})),
        ["catalog: extra grant s3:* on *: no line"]),
    "a statement the check cannot model": (
        _edit_policy("catalog", lambda sts: sts.append({"Sid": "Tls", "Effect": "Deny", "Action": "s3:*",
                                                        "Resource": "*", "Condition": {}})),
        ["catalog: role policy compute-catalog-access statement Tls has Deny Condition: the IAM check does not "
         "model it"]),
    "the table forgets a need": (
        _drop_line("catalog", "kms:Decrypt", "key:storage"),
        ["catalog: extra grant kms:Decrypt on key:storage (arn:aws:kms:us-east-1:123456789012:storage-key): "
         "no line of iam_needs.yaml needs it"]),
    "the table forgets the SSM agent": (
        _drop_managed("database"),
        ["database: extra managed policy arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"]),
    "a role the table does not know": (
        _add_resource("aws:iam/role:Role", "ci-deployer", tags={"roadie:role": "ci"}),
        ["ci: the program makes a role (iam_needs.yaml has no entry for it)"]),
    "a second role for a tier": (
        _add_resource("aws:iam/role:Role", "streaming-extra", tags={"roadie:role": "streaming"}),
        ["streaming: more than one role for these hosts"]),
    "an IAM resource the check does not read": (
        _add_resource("aws:iam/user:User", "ci-user"),
        ["the program creates aws:iam/user:User, which the IAM check does not read"]),
}


@pytest.mark.parametrize("case", PLANTED)
def test_a_planted_defect_is_reported(build, table, case):
    plant, expected = PLANTED[case]
    b, t = copy.deepcopy(build("dev")), copy.deepcopy(table)
    plant(b, t)
    problems = "\n".join(check(b, t))
    for line in expected:
        assert line in problems, f"{case}: expected\n  {line}\nin\n{problems}"
