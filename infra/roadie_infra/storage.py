"""Buckets (media, artifacts, backups, flow logs), the databases' data volumes, and
the deploys table (deploy lock, journal and audit log of `roadie deploy`).

pulumi-aws 7 splits a bucket's versioning, encryption, lifecycle and public
access block into separate resources; each bucket gets all of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from roadie_infra.settings import Settings
from roadie_infra.tags import tags

BUCKET_KINDS = ("media", "artifacts", "backups", "logs")
# Items of the deploys table expire (lock leases, old journal entries) at this epoch-seconds attribute.
DEPLOY_TABLE_TTL_ATTRIBUTE = "expires_at"
# Where the hosts' SSM agents write the whole output of the transport's run_each commands in the
# artifacts bucket (OutputS3KeyPrefix): roadie.transport.ssm.OUTPUT_PREFIX, copied rather than
# imported (the program reads only the service model of roadie's package); test_infra_iam.py checks
# the two agree. The instance roles may write there and nowhere else in the bucket (compute.py).
SSM_OUTPUT_PREFIX = "roadie-output"
# roadie reads an output object once, when its command ends; a few days leave time to look at one by hand.
SSM_OUTPUT_DAYS = 3


def deploy_table_name(environment: str) -> str:
    return f"roadie-{environment}-deploys"


def lifecycle_rules(kind: str, s: Settings) -> list[dict]:
    """Per-bucket retention: media cools to IA, old versions of backups expire, SSM output goes after a few days."""
    abort = {"id": "abort-incomplete-uploads", "status": "Enabled", "filter": {"prefix": ""},
             "abort_incomplete_multipart_upload": {"days_after_initiation": 7}}
    rules = {
        "media": [{"id": "media-to-infrequent-access", "status": "Enabled", "filter": {"prefix": ""},
                   "transitions": [{"days": s.media_infrequent_after_days, "storage_class": "STANDARD_IA"}],
                   "noncurrent_version_expiration": {"noncurrent_days": 30}}],
        "artifacts": [{"id": "expire-old-artifact-versions", "status": "Enabled", "filter": {"prefix": ""},
                       "noncurrent_version_expiration": {"noncurrent_days": 90}},
                      # The bucket is versioned: expiring makes a delete marker, the version goes a day
                      # later, and S3 then drops the lone marker. Overlapping rules: the shorter wins.
                      {"id": "expire-ssm-output", "status": "Enabled", "filter": {"prefix": f"{SSM_OUTPUT_PREFIX}/"},
                       "expiration": {"days": SSM_OUTPUT_DAYS}, "noncurrent_version_expiration": {"noncurrent_days": 1},
                       "abort_incomplete_multipart_upload": {"days_after_initiation": 1}}],
        "backups": [{"id": "expire-old-backup-versions", "status": "Enabled", "filter": {"prefix": ""},
                     "noncurrent_version_expiration": {"noncurrent_days": s.backup_retention_days}}],
        "logs": [{"id": "expire-flow-logs", "status": "Enabled", "filter": {"prefix": ""}, "expiration": {"days": 90},
                  "noncurrent_version_expiration": {"noncurrent_days": 7}}],
    }
    return rules[kind] + [abort]


def bucket_policy(bucket_arn: str, kind: str, account_id: str) -> str:
    """Deny plain HTTP always; the logs bucket also lets VPC flow logs deliver."""
    statements = [{
        "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }]
    if kind == "logs":
        delivery = {"Service": "delivery.logs.amazonaws.com"}
        source = {"StringEquals": {"aws:SourceAccount": account_id}}
        statements += [
            {"Sid": "FlowLogsWrite", "Effect": "Allow", "Principal": delivery, "Action": "s3:PutObject",
             "Resource": f"{bucket_arn}/AWSLogs/{account_id}/*",
             "Condition": {"StringEquals": {"aws:SourceAccount": account_id,
                                            "s3:x-amz-acl": "bucket-owner-full-control"}}},
            {"Sid": "FlowLogsAclCheck", "Effect": "Allow", "Principal": delivery,
             "Action": ["s3:GetBucketAcl", "s3:ListBucket"], "Resource": bucket_arn, "Condition": source},
        ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


@dataclass
class StorageArgs:
    settings: Settings
    account_id: str
    zones: list[str]  # the stack's AZs; settings.database indexes them


class Storage(pulumi.ComponentResource):
    def __init__(self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("roadie:infra:Storage", name, None, opts)
        s = args.settings
        child = pulumi.ResourceOptions(parent=self)

        self.key = aws.kms.Key(f"{name}-key", description=f"roadie {s.environment} buckets and volumes",
                               enable_key_rotation=True, deletion_window_in_days=30,
                               tags=tags(s, "storage", "kms"), opts=child)
        aws.kms.Alias(f"{name}-key-alias", name=f"alias/roadie-{s.environment}-storage", target_key_id=self.key.key_id,
                      opts=child)

        self.buckets: dict[str, aws.s3.Bucket] = {}
        for kind in BUCKET_KINDS:
            self.buckets[kind] = self._bucket(name, kind, s, args.account_id, child)

        self.volumes: dict[str, aws.ebs.Volume] = {}
        for member, role, az in s.database.members:  # one data volume per member, in the member's AZ
            self.volumes[member] = aws.ebs.Volume(
                f"{name}-db-{member}-data", availability_zone=args.zones[az], size=s.database.volume_size_gb,
                type="gp3", encrypted=True, kms_key_id=self.key.arn, final_snapshot=s.production,
                tags=tags(s, "database", "postgresql", name=f"roadie-{s.environment}-db-{member}-data",
                          **{"roadie:db-role": role}),
                opts=pulumi.ResourceOptions(parent=self, protect=s.production))

        self.deploy_table = self._deploy_table(name, s)

        self.register_outputs({f"{kind}_bucket": b.bucket for kind, b in self.buckets.items()}
                              | {"deploy_table": self.deploy_table.name})

    def _deploy_table(self, name: str, s: Settings) -> aws.dynamodb.Table:
        """One table per environment for the deploy lock, journal and audit log.

        Generic keys (pk, sk) so the lock (`lock#SERVICE`), the journal and the
        audit records share it; on demand, since deploys write a few items a
        minute at most. Encrypted with the stack's key, point-in-time recovery
        on (the audit log is the record of who changed production), and TTL on
        `expires_at` for lease and journal items. Production's cannot be deleted.
        """
        table = deploy_table_name(s.environment)
        return aws.dynamodb.Table(
            f"{name}-deploys", name=table, billing_mode="PAY_PER_REQUEST", hash_key="pk", range_key="sk",
            attributes=[{"name": "pk", "type": "S"}, {"name": "sk", "type": "S"}],
            server_side_encryption={"enabled": True, "kms_key_arn": self.key.arn},
            point_in_time_recovery={"enabled": True},
            ttl={"attribute_name": DEPLOY_TABLE_TTL_ATTRIBUTE, "enabled": True},
            deletion_protection_enabled=s.production,
            tags=tags(s, "storage", "deploys", name=table),
            opts=pulumi.ResourceOptions(parent=self, protect=s.production))

    def _bucket(self, name: str, kind: str, s: Settings, account_id: str, child) -> aws.s3.Bucket:
        bucket = aws.s3.Bucket(f"{name}-{kind}", bucket=f"{s.bucket_prefix}-{kind}", force_destroy=not s.production,
                               tags=tags(s, "storage", kind, name=f"{s.bucket_prefix}-{kind}"), opts=child)
        aws.s3.BucketPublicAccessBlock(f"{name}-{kind}-public-access", bucket=bucket.id, block_public_acls=True,
                                       block_public_policy=True, ignore_public_acls=True,
                                       restrict_public_buckets=True, opts=child)
        aws.s3.BucketVersioning(f"{name}-{kind}-versioning", bucket=bucket.id,
                                versioning_configuration={"status": "Enabled"}, opts=child)
        # Flow-log delivery cannot write with a customer key unless the key policy
        # names the delivery service; SSE-S3 keeps the logs bucket simple.
        sse = ({"sse_algorithm": "AES256"} if kind == "logs"
               else {"sse_algorithm": "aws:kms", "kms_master_key_id": self.key.arn})
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-{kind}-encryption", bucket=bucket.id,
            rules=[{"apply_server_side_encryption_by_default": sse, "bucket_key_enabled": kind != "logs"}],
            opts=child)
        aws.s3.BucketLifecycleConfiguration(f"{name}-{kind}-lifecycle", bucket=bucket.id,
                                            rules=lifecycle_rules(kind, s), opts=child)
        aws.s3.BucketPolicy(f"{name}-{kind}-policy", bucket=bucket.id,
                            policy=bucket.arn.apply(lambda arn: bucket_policy(arn, kind, account_id)),
                            opts=child)
        return bucket
