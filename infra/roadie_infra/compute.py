"""Hosts: auto-scaled streaming and catalog tiers, three fixed database members.

Pulumi only creates the machines; Ansible configures them (roadie converge).
Every host gets IMDSv2, an encrypted root volume and an instance profile that
may do with the buckets only what its tier's code does (BUCKET_ACCESS).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from roadie_infra.settings import Settings, Tier
from roadie_infra.storage import SSM_OUTPUT_PREFIX
from roadie_infra.tags import asg_tags, tags

SSM_CORE = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
ROOT_DEVICE = "/dev/xvda"  # Debian's AMIs
DATA_DEVICE = "/dev/xvdf"
METADATA = {"http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": 1,
            "instance_metadata_tags": "enabled"}

# What each tier's hosts do with the buckets; tests/infra/iam_needs.yaml names the code behind
# every grant, and tests/infra/test_infra_iam.py fails on a grant missing or unused.
#   read    s3:GetObject on the bucket's objects
#   list    s3:ListBucket: HeadBucket, and a 404 (not 403) for a missing key
#   write   s3:PutObject on its objects; s3:AbortMultipartUpload under the tier's prefix
#   delete  s3:DeleteObject under the tier's prefix (barman's retention, `roadie db prune`)
#   output  s3:PutObject under SSM_OUTPUT_PREFIX only: the SSM agent writes the whole stdout and
#           stderr of the transport's run_each commands there, with the host's role
# Reading SSE-KMS objects needs kms:Decrypt; writing them (write, output) kms:GenerateDataKey too.
BUCKET_ACCESS = {
    # The service fetches tracks (read) and its /healthz asks for the bucket (list); releases
    # arrive through the artifacts bucket when the transport is SSM. Every tier is reached over
    # SSM, so every tier's agent writes command output (output).
    "streaming": {"artifacts": ("read", "output"), "media": ("read", "list")},
    "catalog": {"artifacts": ("read", "output")},
    # barman-cloud: WAL archive, base backups, restores and the retention policy.
    "database": {"artifacts": ("output",), "backups": ("read", "list", "write", "delete")},
}


def tier_policy(tier: str, bucket_arns: dict[str, str], key_arn: str, prefixes: dict[str, str]) -> dict:
    """The least-privilege policy document of one tier's instance role.

    PREFIXES: bucket kind -> the key prefix the tier's deletes (and aborted uploads) are
    confined to; the backups bucket's is the service model's backup_prefix, where barman
    keeps the cluster's base backups and WAL.
    """
    statements = []
    for kind, modes in BUCKET_ACCESS[tier].items():
        arn, label = bucket_arns[kind], kind.capitalize()
        objects = [a for mode, a in (("read", "s3:GetObject"), ("write", "s3:PutObject")) if mode in modes]
        if objects:
            statements.append({"Sid": f"{label}Objects", "Effect": "Allow", "Action": objects,
                               "Resource": f"{arn}/*"})
        if "output" in modes:
            statements.append({"Sid": f"{label}Output", "Effect": "Allow", "Action": ["s3:PutObject"],
                               "Resource": f"{arn}/{SSM_OUTPUT_PREFIX}/*"})
        if "list" in modes:
            statements.append({"Sid": f"{label}List", "Effect": "Allow", "Action": "s3:ListBucket",
                               "Resource": arn})
        undo = [a for mode, a in (("write", "s3:AbortMultipartUpload"), ("delete", "s3:DeleteObject"))
                if mode in modes]
        if undo:
            prefix = prefixes[kind].strip("/")
            statements.append({"Sid": f"{label}Delete", "Effect": "Allow", "Action": undo,
                               "Resource": f"{arn}/{prefix}/*"})
    writes = any({"write", "output"} & set(modes) for modes in BUCKET_ACCESS[tier].values())
    statements.append({"Sid": "StorageKey", "Effect": "Allow",
                       "Action": ["kms:Decrypt"] + (["kms:GenerateDataKey"] if writes else []), "Resource": key_arn})
    return {"Version": "2012-10-17", "Statement": statements}


def health_settings(tier: Tier, balanced: bool = True) -> dict:
    """How the ASG judges its instances: the target group's verdict, after a grace period.

    ELB health checks, because an instance whose service stopped answering its
    health path (the model's, checked by the target group) should be replaced,
    not only one whose EC2 status checks fail; EC2 checks alone would keep a
    dead app host in the group forever.

    The catch is bootstrap. Pulumi launches bare Debian hosts; a host answers its
    health path only after `roadie converge` and its first deploy. With ELB
    checks the ASG replaces any host still unhealthy when the grace period ends,
    so a short one (it was 120 s) kills every new host before it is configured
    and the group churns forever. The grace period is therefore a stack setting
    (`roadie:<tier>.healthCheckGracePeriod`, default 900 s, at least 60) sized to
    cover boot + converge + first deploy; after it a healthy host passes the
    target group check (path and port from the model, 200) within
    healthy_threshold x interval seconds and lives. Instance refresh waits as long
    (instance_warmup) before judging a replacement.

    A tier behind no balancer (no balancer section in the model) has no target
    group to judge it: EC2 status checks, with the same grace period.
    """
    return {"health_check_type": "ELB" if balanced else "EC2",
            "health_check_grace_period": tier.health_check_grace_period}


@dataclass
class ComputeArgs:
    settings: Settings
    image_id: str
    region: str
    account_id: str
    zones: list[str]
    private_subnet_ids: list[pulumi.Input[str]]
    database_subnet_ids: list[pulumi.Input[str]]
    security_group_ids: dict[str, pulumi.Input[str]]
    target_group_arns: dict[str, pulumi.Input[str]]
    bucket_arns: dict[str, pulumi.Input[str]]
    key_arn: pulumi.Input[str]
    data_volume_ids: dict[str, pulumi.Input[str]]
    # Key prefix of the database's backups in the backups bucket (the service model's backup_prefix).
    backup_prefix: str


class Compute(pulumi.ComponentResource):
    def __init__(self, name: str, args: ComputeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("roadie:infra:Compute", name, None, opts)
        self._name, self._args = name, args
        s = args.settings
        self.profiles = {tier: self._profile(tier) for tier in BUCKET_ACCESS}
        self.groups = {tier: self._tier(tier) for tier in s.tiers}
        self.databases = {member: self._database(member, role, az) for member, role, az in s.database.members}
        self.register_outputs({f"database_{m.replace('-', '_')}_address": i.private_ip
                               for m, i in self.databases.items()}
                              | {f"{tier}_group": g.name for tier, g in self.groups.items()}
                              | {"environment": s.environment})

    def _profile(self, tier: str) -> aws.iam.InstanceProfile:
        a, s, n = self._args, self._args.settings, self._name
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(f"{n}-{tier}-role", assume_role_policy=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                           "Action": "sts:AssumeRole"}]}),
            tags=tags(s, tier, "iam"), opts=child)
        aws.iam.RolePolicyAttachment(f"{n}-{tier}-ssm", role=role.name, policy_arn=SSM_CORE, opts=child)
        kinds = sorted(a.bucket_arns)
        policy = pulumi.Output.all(a.key_arn, *[a.bucket_arns[k] for k in kinds]).apply(
            lambda v: json.dumps(tier_policy(tier, dict(zip(kinds, v[1:], strict=True)), v[0],
                                             {"backups": a.backup_prefix})))
        aws.iam.RolePolicy(f"{n}-{tier}-access", role=role.id, policy=policy, opts=child)
        return aws.iam.InstanceProfile(f"{n}-{tier}-profile", role=role.name, tags=tags(s, tier, "iam"),
                                       opts=child)

    def _root_volume(self) -> dict:
        return {"volume_size": 20, "volume_type": "gp3", "encrypted": True, "kms_key_id": self._args.key_arn,
                "delete_on_termination": True}

    def _tier(self, tier: str) -> aws.autoscaling.Group:
        a, s, n = self._args, self._args.settings, self._name
        cfg = getattr(s, tier)
        child = pulumi.ResourceOptions(parent=self)
        host_tags = tags(s, tier, tier, name=f"{tier}")
        root = self._root_volume()
        template = aws.ec2.LaunchTemplate(
            f"{n}-{tier}", name_prefix=f"roadie-{s.environment}-{tier}-", image_id=a.image_id,
            instance_type=cfg.instance_type, iam_instance_profile={"arn": self.profiles[tier].arn},
            vpc_security_group_ids=[a.security_group_ids[tier]], metadata_options=METADATA,
            block_device_mappings=[{"device_name": ROOT_DEVICE,
                                    "ebs": {**root, "encrypted": "true", "delete_on_termination": "true"}}],
            tag_specifications=[{"resource_type": "instance", "tags": host_tags},
                                {"resource_type": "volume", "tags": host_tags}],
            update_default_version=True, tags=tags(s, tier, tier), opts=child)
        return aws.autoscaling.Group(
            f"{n}-{tier}", name_prefix=f"roadie-{s.environment}-{tier}-", vpc_zone_identifiers=a.private_subnet_ids,
            min_size=cfg.min_size, max_size=cfg.max_size, desired_capacity=cfg.desired_capacity,
            # A pinned version (not $Latest) makes a template change start an instance refresh.
            launch_template={"id": template.id, "version": template.latest_version.apply(str)},
            target_group_arns=[a.target_group_arns[tier]] if tier in a.target_group_arns else [],
            **health_settings(cfg, balanced=tier in a.target_group_arns),
            instance_refresh={"strategy": "Rolling",
                              "preferences": {"min_healthy_percentage": 90,
                                              "instance_warmup": cfg.health_check_grace_period}},
            tags=asg_tags(tags(s, tier, tier, name=f"{tier}")), opts=child)

    def _database(self, member: str, role: str, index: int) -> aws.ec2.Instance:
        """One Patroni member (settings.Database.members) with its data volume attached."""
        a, s, n = self._args, self._args.settings, self._name
        # Member `replica` keeps the name it had on two-member stacks (see settings.Database.members).
        host = aws.ec2.Instance(
            f"{n}-db-{member}", ami=a.image_id, instance_type=s.database.instance_type,
            subnet_id=a.database_subnet_ids[index], availability_zone=a.zones[index],
            vpc_security_group_ids=[a.security_group_ids["database"]],
            iam_instance_profile=self.profiles["database"].name, metadata_options=METADATA,
            root_block_device=self._root_volume(), disable_api_termination=s.production,
            tags=tags(s, "database", "postgresql", name=f"db-{member}", **{"roadie:db-role": role}),
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["ami"]))
        aws.ec2.VolumeAttachment(f"{n}-db-{member}-data", device_name=DATA_DEVICE,
                                 volume_id=a.data_volume_ids[member],
                                 instance_id=host.id, opts=pulumi.ResourceOptions(parent=self))
        return host
