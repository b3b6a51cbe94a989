"""The environment's deploys table (DynamoDB): the lock, the journal and the audit log.

It lives in the environment, not on an operator's machine, so two SREs and CI
see one lock and one history. The Pulumi program creates it on AWS; against an
emulator (moto locally) roadie creates it on first use.
"""

from __future__ import annotations

import getpass
import os
import socket

from roadie.errors import OperationFailed

CI_RUN_VARS = ("GITHUB_RUN_ID", "CI_PIPELINE_ID", "CI_JOB_ID", "BUILD_ID", "BUILDKITE_BUILD_ID")


def name_for(inv) -> str:
    return str(inv.env_vars.get("roadie_deploy_table") or f"roadie-{inv.env}-deploys")


def ensure(ddb, table: str, emulated: bool) -> None:
    """Create the table on an emulator; on AWS it must exist (Pulumi owns it)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        ddb.describe_table(TableName=table)
        return
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise OperationFailed(f"The deploys table {table} could not be read: {exc}") from None
    except BotoCoreError as exc:
        raise OperationFailed(f"The environment's AWS API did not answer: {exc}") from None
    if not emulated:
        raise OperationFailed(f"The deploys table {table} does not exist: apply the Pulumi stack (roadie infra up).")
    try:
        ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                               {"AttributeName": "sk", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                    {"AttributeName": "sk", "KeyType": "RANGE"}])
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceInUseException":  # created by a racing command
            raise OperationFailed(f"Cannot create the deploys table {table}: {exc}") from None


def actor() -> dict:
    """Who is acting, from where, and the CI run when there is one."""
    ci = next((f"{v}={os.environ[v]}" for v in CI_RUN_VARS if os.environ.get(v)), None)
    return {"who": os.environ.get("ROADIE_ACTOR") or getpass.getuser(), "machine": socket.gethostname(),
            "pid": os.getpid(), "ci_run": ci}
