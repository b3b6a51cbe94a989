"""The policy pack: each check on compliant and violating inputs, then over every stack."""

from __future__ import annotations

import importlib
import inspect
import re

import pytest
from pulumi_policy import PolicyResource, PolicyResourceOptions, ResourceValidationArgs, StackValidationArgs

import roadie_policies as rp
from infra_testlib import STACKS

OPTS = PolicyResourceOptions(protect=False, ignore_changes=[], delete_before_replace=None, aliases=[],
                             custom_timeouts=None, additional_secret_outputs=[])
LB_TAGS = {"roadie:env": "dev", "roadie:role": "loadbalancer", "roadie:service": "sg", "owner": "sre"}
DB_TAGS = {**LB_TAGS, "roadie:role": "database"}


def check(fn, resource_type: str, props: dict) -> list[str]:
    found: list[str] = []
    fn(ResourceValidationArgs(resource_type, props, f"urn:test::{resource_type}::r", "r", OPTS, None),
       lambda msg, urn=None: found.append(msg))
    return found


def rule(cidr="10.0.0.0/16", port=5432, to=None, proto="tcp", tags=DB_TAGS):
    return {"cidrIpv4": cidr, "fromPort": port, "toPort": port if to is None else to, "ipProtocol": proto,
            "tags": tags}


RESOURCE_CASES = [
    # (policy, resource type, props, violations expected)
    (rp.no_public_ingress, rp.INGRESS_RULE, rule("0.0.0.0/0", 443, tags=LB_TAGS), 0),
    (rp.no_public_ingress, rp.INGRESS_RULE, rule("0.0.0.0/0", 80, tags=LB_TAGS), 0),
    (rp.no_public_ingress, rp.INGRESS_RULE, rule("0.0.0.0/0", 8080, tags=LB_TAGS), 1),
    (rp.no_public_ingress, rp.INGRESS_RULE, rule("0.0.0.0/0", 80, 443, tags=LB_TAGS), 1),
    (rp.no_public_ingress, rp.INGRESS_RULE, rule("0.0.0.0/0", 443, tags=DB_TAGS), 1),
    (rp.no_public_ingress, rp.INGRESS_RULE, {**rule(None, 443, tags=DB_TAGS), "cidrIpv6": "::/0"}, 1),
    (rp.no_public_ingress, rp.INGRESS_RULE, rule("0.0.0.0/0", None, proto="-1", tags=LB_TAGS), 1),
    (rp.no_public_ingress, rp.INGRESS_RULE, rule("10.0.0.0/8", 5432), 0),
    (rp.no_public_ingress, rp.SG, {"tags": DB_TAGS, "ingress": [
        {"cidrBlocks": ["0.0.0.0/0"], "fromPort": 5432, "toPort": 5432, "protocol": "tcp"}]}, 1),
    (rp.no_public_ingress, rp.SG_RULE, {"type": "ingress", "cidrBlocks": ["0.0.0.0/0"], "fromPort": 443,
                                        "toPort": 443, "protocol": "tcp"}, 1),
    (rp.no_public_ingress, rp.SG_RULE, {"type": "egress", "cidrBlocks": ["0.0.0.0/0"], "fromPort": 443,
                                        "toPort": 443, "protocol": "tcp"}, 0),
    (rp.no_public_ingress, rp.ASG, {"tags": [{"key": "owner", "value": "x"}]}, 0),
    (rp.no_ssh_ingress, rp.INGRESS_RULE, rule("10.0.0.0/16", 22), 1),
    (rp.no_ssh_ingress, rp.INGRESS_RULE, rule("10.0.0.0/16", 0, 1024), 1),
    (rp.no_ssh_ingress, rp.INGRESS_RULE, rule("10.0.0.0/16", None, proto="-1"), 1),
    (rp.no_ssh_ingress, rp.INGRESS_RULE, {"referencedSecurityGroupId": "sg-1", "fromPort": 22, "toPort": 22,
                                          "ipProtocol": "tcp"}, 1),
    (rp.no_ssh_ingress, rp.INGRESS_RULE, rule("10.0.0.0/16", 5432), 0),
    (rp.no_ssh_ingress, rp.SG, {"ingress": [{"cidrBlocks": ["10.0.0.0/8"], "fromPort": 22, "toPort": 22,
                                             "protocol": "tcp"}]}, 1),
    (rp.encrypted_volumes, rp.VOLUME, {"encrypted": True, "type": "gp3"}, 0),
    (rp.encrypted_volumes, rp.VOLUME, {"type": "gp3"}, 1),
    (rp.encrypted_volumes, rp.INSTANCE, {"rootBlockDevice": {"encrypted": True}}, 0),
    (rp.encrypted_volumes, rp.INSTANCE, {}, 1),
    (rp.encrypted_volumes, rp.INSTANCE, {"rootBlockDevice": {"encrypted": True},
                                         "ebsBlockDevices": [{"deviceName": "/dev/xvdf", "encrypted": False}]}, 1),
    (rp.encrypted_volumes, rp.LAUNCH_TEMPLATE, {"blockDeviceMappings": [{"deviceName": "/dev/xvda",
                                                                         "ebs": {"encrypted": "true"}}]}, 0),
    (rp.encrypted_volumes, rp.LAUNCH_TEMPLATE, {"blockDeviceMappings": [{"deviceName": "/dev/xvda",
                                                                         "ebs": {"volumeSize": 20}}]}, 1),
    (rp.imdsv2_required, rp.INSTANCE, {"metadataOptions": {"httpTokens": "required"}}, 0),
    (rp.imdsv2_required, rp.INSTANCE, {"metadataOptions": {"httpTokens": "optional"}}, 1),
    (rp.imdsv2_required, rp.LAUNCH_TEMPLATE, {}, 1),
    (rp.imdsv2_required, rp.VOLUME, {}, 0),
    (rp.required_tags, "aws:ec2/vpc:Vpc", {"tags": LB_TAGS}, 0),
    (rp.required_tags, "aws:ec2/vpc:Vpc", {}, 1),
    (rp.required_tags, "aws:ec2/vpc:Vpc", {"tags": {**LB_TAGS, "owner": ""}}, 1),
    (rp.required_tags, "aws:ec2/route:Route", {}, 0),
    (rp.required_tags, rp.ASG, {"tags": [{"key": k, "value": v, "propagateAtLaunch": True}
                                         for k, v in LB_TAGS.items()]}, 0),
    (rp.required_tags, rp.ASG, {"tags": [{"key": k, "value": v, "propagateAtLaunch": False}
                                         for k, v in LB_TAGS.items()]}, 1),
    (rp.required_tags, rp.LAUNCH_TEMPLATE, {"tags": LB_TAGS, "tagSpecifications": [
        {"resourceType": "instance", "tags": {"Name": "x"}}]}, 1),
    (rp.tables_encrypted_and_recoverable, rp.TABLE, {
        "serverSideEncryption": {"enabled": True, "kmsKeyArn": "arn:aws:kms:us-east-1:1:key/k"},
        "pointInTimeRecovery": {"enabled": True}}, 0),
    (rp.tables_encrypted_and_recoverable, rp.TABLE, {"pointInTimeRecovery": {"enabled": True}}, 1),
    (rp.tables_encrypted_and_recoverable, rp.TABLE, {"serverSideEncryption": {"enabled": False},
                                                     "pointInTimeRecovery": {"enabled": True}}, 1),
    (rp.tables_encrypted_and_recoverable, rp.TABLE, {"serverSideEncryption": {"enabled": True}}, 1),
    (rp.tables_encrypted_and_recoverable, rp.TABLE, {"serverSideEncryption": {"enabled": True},
                                                     "pointInTimeRecovery": {"enabled": "false"}}, 1),
    (rp.tables_encrypted_and_recoverable, rp.TABLE, {}, 2),
    (rp.tables_encrypted_and_recoverable, rp.VOLUME, {}, 0),
]


@pytest.mark.parametrize("fn, resource_type, props, expected", RESOURCE_CASES,
                         ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(RESOURCE_CASES)])
def test_resource_policy(fn, resource_type, props, expected):
    assert len(check(fn, resource_type, props)) == expected


def _resource(resource_type: str, name: str, props: dict, deps=()) -> PolicyResource:
    return PolicyResource(resource_type, props, f"urn:test::{resource_type}::{name}", name, OPTS, None, None,
                          list(deps), {})


def _bucket_stack(sse="aws:kms", pab=True, by_dependency=False):
    bucket = _resource(rp.BUCKET, "media", {"bucket": "roadie-dev-media"})
    ref = {} if by_dependency else {"bucket": "roadie-dev-media"}
    deps = [bucket] if by_dependency else []
    out = [bucket]
    if sse:
        out.append(_resource(rp.BUCKET_SSE, "media-sse", {**ref, "rules": [
            {"applyServerSideEncryptionByDefault": {"sseAlgorithm": sse}}]}, deps))
    if pab is not None:
        out.append(_resource(rp.BUCKET_PAB, "media-pab", {**ref, "blockPublicAcls": True, "blockPublicPolicy": True,
                                                          "ignorePublicAcls": True, "restrictPublicBuckets": pab},
                             deps))
    return out


@pytest.mark.parametrize("resources, encrypted, blocked", [
    (_bucket_stack(), 0, 0),
    (_bucket_stack(by_dependency=True), 0, 0),
    (_bucket_stack(sse="AES256"), 0, 0),
    (_bucket_stack(sse=None), 1, 0),
    (_bucket_stack(sse="none"), 1, 0),
    (_bucket_stack(pab=False), 0, 1),
    (_bucket_stack(pab=None), 0, 1),
    (_bucket_stack()[:1] + _bucket_stack()[1:] + [_resource(rp.BUCKET, "other", {"bucket": "other"})], 1, 1),
])
def test_stack_policies(resources, encrypted, blocked):
    def run(fn):
        found = []
        fn(StackValidationArgs(resources), lambda msg, urn=None: found.append(msg))
        return len(found)

    assert (run(rp.buckets_encrypted), run(rp.buckets_block_public_access)) == (encrypted, blocked)


def _db_stack(*members: tuple[str, str | None], subnet_zones=("a", "b", "c")) -> list[PolicyResource]:
    """Database instances (db-role, AZ) and the stack's database subnets."""
    out = [_resource(rp.SUBNET, f"db-subnet-{z}", {"availabilityZone": z, "tags": {"roadie:subnet": "database"}})
           for z in subnet_zones]
    out += [_resource(rp.INSTANCE, f"db-{i}", {"availabilityZone": zone,
                                               "tags": {**DB_TAGS, "roadie:db-role": role}})
            for i, (role, zone) in enumerate(members)]
    return [*out, _resource(rp.INSTANCE, "streaming-x", {"availabilityZone": "a", "tags": LB_TAGS})]


@pytest.mark.parametrize("resources, messages", [
    (_db_stack(("primary", "a"), ("replica", "b"), ("replica", "c")), []),
    (_db_stack(("primary", "a"), ("replica", "b"), ("replica", "b"), subnet_zones=("a", "b")), []),
    (_db_stack(("primary", "a"), ("replica", None), ("replica", "c")), []),  # zones unknown in a preview
    (_db_stack(("primary", "a"), ("replica", "b")), ["the stack has 2 database instances; Patroni's etcd needs 3"]),
    (_db_stack(("primary", "a"), ("replica", "b"), ("replica", "b")),
     ["the database instances use 2 AZs (a, b); they must use 3."]),
    (_db_stack(("primary", "a"), ("replica", "a"), ("replica", "b"), subnet_zones=("a", "b")),
     ["db-1: in the primary's AZ a; losing it would take two members."]),
    (_db_stack(("replica", "a"), ("replica", "b"), ("replica", "c")),
     ["the stack has 0 database instances tagged roadie:db-role=primary"]),
    (_db_stack(("primary", "a"), ("primary", "b"), ("replica", "c")),
     ["the stack has 2 database instances tagged roadie:db-role=primary"]),
])
def test_database_quorum(resources, messages):
    found = []
    rp.database_quorum(StackValidationArgs(resources), lambda msg, urn=None: found.append(msg))
    assert len(found) == len(messages)
    assert all(f.startswith(m) for f, m in zip(found, messages, strict=True)), found


@pytest.mark.parametrize("stack", STACKS)
def test_the_whole_pack_passes_on_every_resource_of_every_stack(build, stack):
    built = build(stack)
    assert built.violations == []
    assert len(built.custom) > 90  # the pack really ran over the stack's resources


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pulumi_aws.s3 imports its deprecated V2 classes
def test_taggable_list_covers_every_taggable_type_the_program_creates(build):
    """A resource type that takes `tags` but is missing from TAGGABLE would dodge required-tags."""
    types = {r["type"] for stack in STACKS for r in build(stack).custom}
    for t in sorted(types):
        _, module, cls_name = t.split(":")
        package, leaf = module.split("/")
        snake = re.sub(r"([A-Z])", r"_\1", leaf).lower()
        mod = importlib.import_module(f"pulumi_aws.{package}.{snake}")
        cls = getattr(mod, cls_name)
        takes_tags = "tags" in inspect.signature(cls._internal_init).parameters
        assert takes_tags == (t in rp.TAGGABLE), t


def test_pack_names_every_policy_once():
    names = [*rp.RESOURCE_POLICIES, *rp.STACK_POLICIES]
    assert len(names) == len(set(names)) == 9
    source = (rp.__file__.rsplit("/", 1)[0] + "/__main__.py")
    text = open(source).read()
    assert "RESOURCE_POLICIES" in text and "STACK_POLICIES" in text and "EnforcementLevel.MANDATORY" in text
