"""Fleet tests: real nspawn hosts on this machine.

The main `local` fleet is brought up once per session (idempotent) and, when
ROADIE_TEST_DOWN=1 (set by `make test`), taken down at the end; developers keep
theirs running between runs. Lifecycle tests use the small `mini` fleet on its
own bridge so they can break and rebuild hosts freely.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_roadie
from tests.fleet.roles_fixtures import hosts, roles_fleet  # noqa: F401  (the role tests' fixtures)

MINI_ENV = {"ROADIE_INVENTORIES": str(Path(__file__).parent / "inventories"), "ROADIE_ENV": "mini"}
STATE = ROOT / ".roadie"


def ssh(state: Path, host: str, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["ssh", "-F", str(state / "ssh_config"), "-o", "BatchMode=yes", host, command],
                          capture_output=True, text=True, timeout=timeout)


def status(env: dict | None = None) -> dict:
    proc = run_roadie("--output", "json", "local", "status", env=env, check=True)
    return json.loads(proc.stdout)


@pytest.fixture(scope="session")
def local_fleet():
    """The main local fleet, up."""
    run_roadie("local", "up", check=True)
    yield STATE / "local"


@pytest.fixture(scope="module")
def mini_fleet():
    """The three-host mini fleet, up; taken down after the module."""
    run_roadie("local", "up", env=MINI_ENV, check=True)
    yield STATE / "mini"
    run_roadie("local", "down", env=MINI_ENV)


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("ROADIE_TEST_DOWN") == "1" and (STATE / "local" / "fleet.json").exists():
        run_roadie("local", "down")
