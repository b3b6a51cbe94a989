"""Helpers shared by the infra tests (a uniquely named module: every test
directory has its own conftest, so `import conftest` would be ambiguous)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MOCKRUN = Path(__file__).with_name("mockrun.py")
STACKS = ("dev", "staging", "prod")

for p in (INFRA / "policies", INFRA):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


def run_mocked(stack: str, *overrides: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run one stack's program under mocks; `env` adds variables (ROADIE_STACK_FILE: another model)."""
    args = [sys.executable, str(MOCKRUN), stack, *(f"--set={o}" for o in overrides)]
    return subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, **(env or {})})


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

