"""Buckets (media, artifacts, backups, flow logs) and the databases' data volumes.

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


def lifecycle_rules(kind: str, s: Settings) -> list[dict]:
    """Per-bucket retention: media cools to IA, old versions of backups expire."""
    abort = {"id": "abort-incomplete-uploads", "status": "Enabled", "filter": {"prefix": ""},
             "abort_incomplete_multipart_upload": {"days_after_initiation": 7}}
    rules = {
        "media": [{"id": "media-to-infrequent-access", "status": "Enabled", "filter": {"prefix": ""},
                   "transitions": [{"days": s.media_infrequent_after_days, "storage_class": "STANDARD_IA"}],
                   "noncurrent_version_expiration": {"noncurrent_days": 30}}],
        "artifacts": [{"id": "expire-old-artifact-versions", "status": "Enabled", "filter": {"prefix": ""},
                       "noncurrent_version_expiration": {"noncurrent_days": 90}}],
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
    database_zones: dict[str, str]  # db role (primary|replica) -> AZ


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
        for role, zone in args.database_zones.items():
            self.volumes[role] = aws.ebs.Volume(
                f"{name}-db-{role}-data", availability_zone=zone, size=s.database.volume_size_gb, type="gp3",
                encrypted=True, kms_key_id=self.key.arn, final_snapshot=s.production,
                tags=tags(s, "database", "postgresql", name=f"roadie-{s.environment}-db-{role}-data",
                          **{"roadie:db-role": role}),
                opts=pulumi.ResourceOptions(parent=self, protect=s.production))

        self.register_outputs({f"{kind}_bucket": b.bucket for kind, b in self.buckets.items()})

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
