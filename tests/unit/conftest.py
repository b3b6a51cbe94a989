"""Fixtures the unit tests share."""

from __future__ import annotations

import uuid

import pytest


def fresh_deploys_table(endpoint: str) -> tuple[object, str]:
    """(client, name) of a new deploys table (lock, journal, audit) on the moto server at `endpoint`."""
    import boto3

    from roadie.state import table

    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    name = f"roadie-test-{uuid.uuid4().hex[:8]}-deploys"
    table.ensure(client, name, emulated=True)
    return client, name


@pytest.fixture
def test_environment(moto_endpoint, monkeypatch):
    """The "test" environment: no hosts, the service model, and a fresh deploys table on the moto server
    (lock, journal, audit); `Environment.load("test")` returns it. Yields (client, table name, environment)."""
    from roadie import model
    from roadie.environment import Environment
    from roadie.inventory import Inventory

    client, name = fresh_deploys_table(moto_endpoint)
    environment = Environment("test", Inventory(env="test", hosts={}), model.load())
    environment._made["table"] = (client, name)  # already made and checked
    real = Environment.load
    monkeypatch.setattr(Environment, "load", classmethod(
        lambda cls, env: environment if env == "test" else real.__func__(cls, env)))
    return client, name, environment
