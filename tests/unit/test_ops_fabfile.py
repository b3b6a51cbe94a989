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
    (("disk", "--clean", "--hosts", "", "--yes"), "--hosts is empty"),
    (("logs", ","), "TIER is empty"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    proc = fab(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.fixture
def passed(monkeypatch):
    """The roadie command line a fab task runs (nothing is run)."""
    import fabfile

    calls = []
    monkeypatch.setattr(fabfile, "_roadie", lambda *args, env="local", output="text": calls.append(list(args)))

    def call(task, *args, **kw):
        getattr(fabfile, task).body(None, *args, **kw)
        return calls[-1]
    return call


@pytest.mark.parametrize(("task", "args", "kw", "flag"), [
    ("disk", (), {"clean": True, "hosts": "", "yes": True}, ["--hosts", ""]),
    ("disk", (), {"hosts": ""}, ["--hosts", ""]),
    ("logs", ("catalog",), {"since": ""}, ["--since", ""]),
    ("logs", ("catalog",), {"grep": ""}, ["--grep", ""]),
    ("restart", ("catalog",), {"batch_size": ""}, ["--batch-size", ""]),
    ("db_switchover", (), {"to": ""}, ["--to", ""]),
    ("db_restore", (), {"backup": "", "time": ""}, ["--backup", "", "--time", ""]),
])
def test_an_explicitly_empty_value_is_passed_on_for_roadie_to_refuse(passed, task, args, kw, flag):
    """'' (given empty, as an unset $VAR gives) is not None (not given): dropping it would widen the selection."""
    line = passed(task, *args, **kw)
    assert any(line[i:i + len(flag)] == flag for i in range(len(line))), line


@pytest.mark.parametrize(("task", "args", "kw", "line"), [
    ("disk", (), {}, ["ops", "disk"]),
    ("disk", (), {"clean": True, "hosts": "catalog", "yes": True}, ["ops", "disk", "clean", "--hosts", "catalog",
                                                                     "--yes"]),
    ("logs", ("catalog",), {}, ["ops", "logs", "catalog"]),
    ("drain", ("catalog-1",), {"plan": True}, ["ops", "drain", "catalog-1", "--plan"]),
    ("db_switchover", (), {}, ["db", "switchover"]),
])
def test_options_not_given_are_left_out(passed, task, args, kw, line):
    assert passed(task, *args, **kw) == line
