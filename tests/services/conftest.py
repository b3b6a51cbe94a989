"""Fixtures for the catalog and streaming services: a real PostgreSQL and a moto S3, per xdist worker."""

import sys
from pathlib import Path

import pytest

from tests import servicekit

for service in ("catalog", "streaming"):
    path = str(servicekit.SERVICES / service)
    if path not in sys.path:
        sys.path.insert(0, path)


@pytest.fixture(scope="session")
def pg():
    with servicekit.postgres() as cluster:
        yield cluster


@pytest.fixture
def logs(tmp_path) -> Path:
    return tmp_path
