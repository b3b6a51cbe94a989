"""Fixtures for the Pulumi program tests: one mocked run per stack per session.

Each stack's program runs once, in its own process (mockrun.py), and its JSON
is shared by every xdist worker through a file guarded by a lock.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MOCKRUN = Path(__file__).with_name("mockrun.py")
STACKS = ("dev", "staging", "prod")

for p in (INFRA / "policies", INFRA):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


def run_mocked(stack: str, *overrides: str) -> subprocess.CompletedProcess:
    args = [sys.executable, str(MOCKRUN), stack, *(f"--set={o}" for o in overrides)]
    return subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=ROOT)


@dataclass
class Built:
    """What one stack's program registered under mocks."""

    stack: str
    resources: list[dict]
    outputs: dict
    calls: list[dict]
    violations: list[str]

    @property
    def custom(self) -> list[dict]:
        return [r for r in self.resources if r["custom"]]

    def of(self, short_type: str) -> list[dict]:
        """Resources whose type ends in ':Name' (e.g. 'Subnet')."""
        return [r for r in self.custom if r["type"].rsplit(":", 1)[1] == short_type]

    def by_id(self, rid: str) -> dict:
        return next(r for r in self.custom if r["id"] == rid)

    def one(self, short_type: str, name: str) -> dict:
        return next(r for r in self.of(short_type) if r["name"] == name)


@pytest.fixture(scope="session")
def build(tmp_path_factory, worker_id):
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent
    cache = shared / "roadie-infra-mocked"
    cache.mkdir(exist_ok=True)

    def get(stack: str) -> Built:
        path = cache / f"{stack}.json"
        with FileLock(str(path) + ".lock"):
            if not path.exists():
                proc = run_mocked(stack)
                if proc.returncode != 0:
                    pytest.fail(f"mocked {stack} program failed:\n{proc.stderr[-3000:]}", pytrace=False)
                path.write_text(proc.stdout)
        return Built(stack=stack, **json.loads(path.read_text()))

    return get


@pytest.fixture(params=STACKS)
def built(request, build) -> Built:
    return build(request.param)


@pytest.fixture
def settings_of():
    from roadie_infra import settings

    return settings.from_stack_file
