"""Shared test helpers: run the roadie CLI as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROADIE = [sys.executable, "-m", "roadie"]


def run_roadie(*args: str, env: dict | None = None, timeout: float = 600, check: bool = False):
    proc = subprocess.run([*ROADIE, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"roadie {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def roadie():
    return run_roadie


def pytest_collection_modifyitems(items):
    """Tests marked fleet_last (they tear a fleet down) run after all others."""
    items.sort(key=lambda item: item.get_closest_marker("fleet_last") is not None)


@pytest.fixture(scope="session")
def moto_endpoint():
    """One moto server on loopback per test process (xdist worker), stopped at the end."""
    from tests import servicekit

    with servicekit.moto_server() as endpoint:
        yield endpoint
