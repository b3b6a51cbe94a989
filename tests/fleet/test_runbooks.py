"""The runbooks' commands, run as written against the local fleet, so the pages cannot rot.

Every line of a ```sh block in docs/runbooks/*.md is run with bash (roadie from
this environment first on PATH), in page order, and must exit 0. Pages undo
what they do (maintenance off, enable after drain), so the fleet is left as found.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

RUNBOOKS = ROOT / "docs" / "runbooks"
PAGES = ["restart.md", "maintenance.md", "drain.md", "disk.md", "health.md", "database.md"]


def commands(page: Path) -> list[str]:
    blocks = re.findall(r"^```sh\n(.*?)^```", page.read_text(), flags=re.S | re.M)
    return [line for block in blocks for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_every_operation_has_a_page_with_commands():
    assert sorted(p.name for p in RUNBOOKS.glob("*.md") if p.name != "README.md") == sorted(PAGES)
    for name in PAGES:
        lines = commands(RUNBOOKS / name)
        assert lines and all(line.startswith("roadie ") for line in lines), (name, lines)


@pytest.mark.fleet
@pytest.mark.parametrize("name", PAGES)
def test_runbook_commands_run_on_the_fleet(name):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for line in commands(RUNBOOKS / name):
        proc = subprocess.run(["bash", "-c", line], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{name}: `{line}` exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
