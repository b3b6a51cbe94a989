"""From stack to hosts: the aws_ec2 inventories against a moto EC2 on loopback.

Instances get the tags the Pulumi program puts on hosts; ansible-inventory
must group them by role, and roadie's own loader must read the same hosts.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess

import pytest

from infra_testlib import ROOT
from roadie import inventory

# (Name tag, roadie:role, roadie:db-role) per host, as compute.py tags them.
HOSTS = [("streaming", "streaming", None), ("streaming", "streaming", None), ("catalog", "catalog", None),
         ("catalog", "catalog", None), ("db-primary", "database", "primary"), ("db-replica", "database", "replica"),
         ("db-replica-2", "database", "replica")]


@pytest.fixture(scope="module")
def aws_env(moto_endpoint):
    """Every AWS client in this module and its children talks to moto, with fake keys."""
    with pytest.MonkeyPatch.context() as mp:
        for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            mp.delenv(var, raising=False)
        mp.setenv("AWS_URL", moto_endpoint)  # the aws_ec2 plugin's endpoint_url
        mp.setenv("AWS_ENDPOINT_URL", moto_endpoint)  # botocore's own override, belt and braces
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield moto_endpoint


def _launch(ec2, image: str, env: str, name: str, role: str, db_role: str | None) -> dict:
    tags = {"roadie:env": env, "roadie:role": role, "roadie:service": role, "owner": "sre", "Name": name}
    if db_role:
        tags["roadie:db-role"] = db_role
    (inst,) = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.small", TagSpecifications=[
        {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}])["Instances"]
    return inst


@pytest.fixture(scope="module")
def fleet(aws_env) -> dict[str, dict[str, dict]]:
    """Both environments' hosts, plus a stopped host each that must not show up."""
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=aws_env, region_name="us-east-1")
    image = ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]
    out: dict[str, dict[str, dict]] = {}
    for env in ("production", "staging"):
        out[env] = {}
        for name, role, db_role in HOSTS:
            inst = _launch(ec2, image, env, name, role, db_role)
            groups = {role} | ({f"database_{db_role}"} if db_role else set())
            out[env][f"{name}-{inst['InstanceId']}"] = {"address": inst["PrivateIpAddress"], "groups": groups}
        stopped = _launch(ec2, image, env, "catalog", "catalog", None)
        ec2.stop_instances(InstanceIds=[stopped["InstanceId"]])
    return out


@functools.cache
def _ansible_inventory(env: str) -> dict:
    exe = inventory.ansible_bin("ansible-inventory")
    proc = subprocess.run([exe, "-i", str(ROOT / "inventories" / env), "--list"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.mark.parametrize("env", ["production", "staging"])
def test_ansible_inventory_groups_hosts_by_role(fleet, env):
    expected = fleet[env]
    data = _ansible_inventory(env)
    hostvars = data["_meta"]["hostvars"]
    assert set(hostvars) == set(expected)
    for group in ("streaming", "catalog", "database", "database_primary", "database_replica"):
        members = set(data.get(group, {}).get("hosts", []))
        assert members == {h for h, e in expected.items() if group in e["groups"]}, group
    for host, e in expected.items():
        assert _plain(hostvars[host]["ansible_host"]) == e["address"]
        assert _plain(hostvars[host]["ansible_aws_ssm_instance_id"]) == "i-" + host.rsplit("-i-", 1)[1]


def _plain(value):
    """ansible-core 2.19 writes values from plugins (untrusted) as {"__ansible_unsafe": value}."""
    return value["__ansible_unsafe"] if isinstance(value, dict) and "__ansible_unsafe" in value else value


@pytest.mark.parametrize("env", ["production", "staging"])
def test_roadie_loader_reads_the_same_hosts_and_groups(fleet, env):
    expected = fleet[env]
    via_ansible = inventory.parse(env, _ansible_inventory(env))
    loaded = inventory.load(env)  # what roadie's deploys and on-call tasks use
    assert loaded.hosts == via_ansible.hosts
    assert {h.name: set(h.groups) - {"aws_ec2"} for h in loaded.hosts.values()} == {
        name: e["groups"] for name, e in expected.items()}
    assert [h.name for h in loaded.group("database_primary")] == [n for n in expected if n.startswith("db-primary")]
    any_host = next(iter(loaded.hosts.values()))
    assert any_host.vars["roadie_env"] == env
    assert any_host.vars["roadie_buckets"]["artifacts"] == f"roadie-{env}-artifacts"


def test_roadie_loader_reads_aws_host_addresses(fleet):
    expected = fleet["production"]
    loaded = inventory.load("production")
    assert {h.name: h.address for h in loaded.hosts.values()} == {n: e["address"] for n, e in expected.items()}


# -- production secrets come from SSM Parameter Store ---------------------------

SECRETS_PLAY = """
- name: Read production's converge secrets as the roles would
  hosts: localhost
  gather_facts: false
  vars_files: ["{all_vars}"]
  tasks:
    - name: Write them where the test can compare
      vars:
        ansible_connection: local
        ansible_python_interpreter: "{python}"
      no_log: true
      ansible.builtin.copy:
        dest: "{out}"
        mode: "0600"
        content: "{{{{ vault_catalog_db_password }}}}\\n{{{{ vault_replication_password }}}}\\n"
"""


def _read_production_secrets(tmp_path, *args: str) -> subprocess.CompletedProcess:
    import sys

    book = tmp_path / "secrets.yml"
    all_vars = ROOT / "inventories" / "production" / "group_vars" / "all" / "main.yml"
    book.write_text(SECRETS_PLAY.format(all_vars=all_vars, python=sys.executable, out=tmp_path / "out"))
    return subprocess.run([inventory.ansible_bin("ansible-playbook"), "-i", "localhost,", *args, str(book)],
                          capture_output=True, text=True, timeout=120)


def test_production_secrets_are_read_from_ssm_and_never_printed(aws_env, tmp_path):
    import boto3

    ssm = boto3.client("ssm", endpoint_url=aws_env, region_name="us-east-1")
    values = {"catalog-db-password": "c4t-" + os.urandom(6).hex(), "replication-password": "r3p-" + os.urandom(6).hex()}
    for name, value in values.items():
        ssm.put_parameter(Name=f"/roadie/production/database/{name}", Value=value, Type="SecureString", Overwrite=True)
    proc = _read_production_secrets(tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (tmp_path / "out").read_text().split() == [values["catalog-db-password"], values["replication-password"]]
    for value in values.values():
        assert value not in proc.stdout + proc.stderr


def test_a_missing_production_secret_stops_the_run(aws_env, tmp_path):
    """No parameters under the prefix: the lookup fails the run and nothing is written."""
    proc = _read_production_secrets(tmp_path, "-e", "roadie_ssm_prefix=/roadie/nowhere")
    assert proc.returncode != 0
    assert "/roadie/nowhere/catalog-db-password" in proc.stdout + proc.stderr
    assert not (tmp_path / "out").exists()
