"""boto3 clients for an environment, pointed where its inventory says.

The local environment's AWS is a moto server on the fleet bridge; its endpoint
and bucket names live in inventories/local/group_vars, like every other fact
about an environment. boto3 is imported on first use to keep start-up quick.
"""

from __future__ import annotations

import os

from roadie import inventory
from roadie.errors import BadInput


def settings(env: str) -> dict:
    """Endpoint, region and bucket names from the environment's inventory vars (a command with an Environment
    asks it instead: its inventory is read once)."""
    return settings_of(inventory.load(env).env_vars)


def settings_of(any_vars: dict) -> dict:
    """Endpoint, region and bucket names from an inventory's shared vars."""
    return {
        # ROADIE_AWS_ENDPOINT_URL points any environment at another API (a test's moto).
        "endpoint_url": os.environ.get("ROADIE_AWS_ENDPOINT_URL") or any_vars.get("roadie_aws_endpoint_url"),
        "region": any_vars.get("roadie_aws_region", "us-east-1"),
        "buckets": dict(any_vars.get("roadie_buckets", {})),
    }


def client(service: str, *, endpoint_url: str | None = None, region: str = "us-east-1", config=None):
    """A boto3 client; `config`: a botocore Config (the SSM transport's adaptive retries)."""
    import boto3

    kwargs = {"region_name": region, **({"config": config} if config is not None else {})}
    if endpoint_url:
        # moto accepts any credentials; never let a real key leave for a local endpoint.
        kwargs.update(endpoint_url=endpoint_url,
                      aws_access_key_id=os.environ.get("ROADIE_LOCAL_AWS_KEY", "testing"),
                      aws_secret_access_key=os.environ.get("ROADIE_LOCAL_AWS_SECRET", "testing"))
    return boto3.client(service, **kwargs)


def env_client(env: str, service: str, config=None):
    s = settings(env)
    return client(service, endpoint_url=s["endpoint_url"], region=s["region"], config=config)


def bucket(env: str, kind: str) -> str:
    buckets = settings(env)["buckets"]
    if kind not in buckets:
        raise BadInput(f"The {env} inventory names no '{kind}' bucket (roadie_buckets.{kind}).")
    return buckets[kind]
