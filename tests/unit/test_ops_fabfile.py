"""fabfile.py through Fabric's own entry point: every task listed with its one line, bad selections refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

FAB = str(Path(sys.executable).parent / "fab")
TASKS = ["db-backup", "db-backups", "db-restore", "db-status", "db-switchover", "disk", "drain", "enable", "exec",
         "health", "logs", "maintenance", "restart"]


def fab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([FAB, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_fab_list_shows_every_task_with_its_line():
    proc = fab("--list")
    assert proc.returncode == 0, proc.stderr
    listed = {line.split()[0]: line for line in proc.stdout.splitlines() if line.startswith("  ") and line.strip()
              and not line.startswith("    ")}
    assert sorted(listed) == TASKS
    assert "Rolling restart" in listed["restart"] and "Health report" in listed["health"]


@pytest.mark.parametrize(("args", "message"), [
    (("exec", "nosuch", "uptime"), "'nosuch' is neither a host nor a group"),
    (("exec", "catalog", ""), "Name the command"),
    (("drain", "db-1"), "db-1 is behind no balancer"),
    (("maintenance", "nosuch", "on"), "Unknown service 'nosuch'"),
    (("restart", "catalog", "--env", "nowhere"), "Unknown environment 'nowhere'"),
    (("logs", "catalog", "--lines", "0"), "--lines must be between"),
    (("db-restore", "--backup", "20261123T120000", "--into", "live"), "needs --force"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    proc = fab(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
