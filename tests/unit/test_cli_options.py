"""--env and --output work after the subcommand too, and the later one wins."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from roadie import paths
from roadie.main import main

MINI = Path(__file__).resolve().parents[1] / "fleet" / "inventories"


@pytest.fixture
def run(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "INVENTORIES", MINI)
    monkeypatch.setenv("ROADIE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("ROADIE_ENV", raising=False)
    monkeypatch.delenv("ROADIE_OUTPUT", raising=False)

    def invoke(*args):
        return CliRunner().invoke(main, list(args))
    return invoke


@pytest.mark.parametrize("args", [
    ["local", "status", "--env", "mini", "--output", "json"],
    ["--env", "mini", "--output", "json", "local", "status"],
    ["--env", "local", "--output", "text", "local", "status", "--env", "mini", "--output", "json"],
])
def test_env_and_output_before_or_after_the_subcommand(run, args):
    res = run(*args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert [h["name"] for h in doc["hosts"]] == ["mini-1", "mini-2", "mini-3"]


@pytest.mark.parametrize("args, message", [
    (["converge", "--env", "nowhere"], "Unknown environment 'nowhere'"),
    (["release", "list", "catalog", "--env", "nowhere"], "Unknown environment 'nowhere'"),
    (["local", "up", "--env", "nowhere"], "Unknown environment 'nowhere'"),
    (["local", "status", "--output", "yaml"], "Invalid value for '--output'"),
])
def test_bad_env_or_output_after_the_subcommand_is_bad_input(run, args, message):
    res = run(*args)
    assert res.exit_code == 2
    assert message in res.output


# Every bad input, whichever command and wherever --output json is written: one JSON
# error line on stdout and exit 2; as text, one `Error:` line on stderr.
BAD_INPUTS = [
    (["local", "up", "--hosts", ""], "--hosts is empty"),
    (["local", "up", "--hosts", ","], "--hosts is empty"),
    (["local", "up", "--hosts", " , "], "--hosts is empty"),
    (["local", "ssh"], "Missing argument 'HOST'"),
    (["local", "status", "--env", "nowhere"], "Unknown environment 'nowhere'"),
    (["converge", "--limit", ""], "--limit is empty"),
    (["converge", "--strategy", "fast"], "Invalid value for '--strategy'"),
    (["converge", "--no-such-option"], "No such option '--no-such-option'"),
    (["release", "build"], "Missing argument 'SERVICE'"),
    (["release", "build", "catalog", "--version", ""], "--version is empty"),
    (["release", "verify", "catalog", "1.2"], "not a semantic version"),
    (["release", "install", "catalog", "1.0.0", "--hosts", ""], "--hosts is empty"),
    # ops: an empty selection is refused before the inventory is read or any host is asked
    # (these run with no fleet and with no `local` inventory: only the check itself can answer them)
    (["ops", "disk", "clean", "--hosts", "", "--yes"], "--hosts is empty"),
    (["ops", "disk", "clean", "--hosts", " , ", "--plan"], "--hosts is empty"),
    (["ops", "disk", "--hosts", ","], "--hosts is empty"),
    (["ops", "logs", ""], "TIER is empty"),
    (["ops", "logs", ",", "--follow"], "TIER is empty"),
    (["ops", "exec", " ", "uptime", "--yes"], "GROUP is empty"),
    (["infra", "preview"], "Missing option '--stack'"),
    (["infra", "preview", "--stack", "qa"], "Unknown stack 'qa'"),
    (["nosuch"], "No such command 'nosuch'"),
]


@pytest.mark.parametrize("args, message", BAD_INPUTS)
@pytest.mark.parametrize("where", ["before", "after", "env"])
def test_bad_input_under_output_json_is_one_json_error_line(run, monkeypatch, args, message, where):
    if where == "env":
        monkeypatch.setenv("ROADIE_OUTPUT", "json")
    full = ["--output", "json", *args] if where == "before" else [*args, "--output", "json"] \
        if where == "after" else args
    res = run(*full)
    assert res.exit_code == 2, res.output
    lines = res.stdout.splitlines()
    assert len(lines) == 1, res.output
    doc = json.loads(lines[0])
    assert doc["event"] == "error" and doc["exit_code"] == 2 and message in doc["error"], doc
    assert res.stderr == "" and "Traceback" not in res.output


@pytest.mark.parametrize("args, message", [a for a in BAD_INPUTS if "Missing" not in a[1]
                                           and "Invalid" not in a[1] and "No such" not in a[1]])
def test_bad_input_as_text_is_one_error_line_on_stderr(run, args, message):
    res = run(*args)
    assert res.exit_code == 2, res.output
    assert res.stdout == ""
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("Error: ") and message in res.stderr


def test_an_operation_failure_under_output_json_is_exit_1(run, monkeypatch):
    from roadie.cli import local as local_cli
    from roadie.errors import OperationFailed

    def boom(*a, **k):
        raise OperationFailed("the bridge would not come up")
    monkeypatch.setattr(local_cli, "_fleet", boom)
    res = run("--output", "json", "local", "up", "--env", "mini")
    assert res.exit_code == 1
    assert json.loads(res.stdout) == {"event": "error", "error": "the bridge would not come up", "exit_code": 1}


@pytest.mark.parametrize("args", [
    ["ops", "disk", "clean", "--hosts", "", "--yes"],
    ["ops", "disk", "clean", "--hosts", "", "--plan"],
    ["ops", "disk", "--hosts", ""],
    ["ops", "logs", ""],
    ["ops", "exec", "", "uptime", "--yes"],
])
def test_an_empty_selection_in_a_real_inventory_is_refused_before_any_host_is_asked(run, monkeypatch, args):
    """With an inventory to fall back on, '' must still not mean every host of it."""
    from roadie.environment import Environment
    from roadie.transport import ssh, ssm

    def asked(*a, **k):
        raise AssertionError("a host, balancer or lock was asked")
    for name in ("transport", "balancer"):
        monkeypatch.setattr(Environment, name, property(asked))
    monkeypatch.setattr(Environment, "lock", asked)
    monkeypatch.setattr(ssh.SSH, "run_each", asked) or monkeypatch.setattr(ssm.SSM, "run_each", asked)
    res = run(*args, "--env", "mini")
    assert res.exit_code == 2, (res.output, res.exception)
    assert res.stderr.startswith("Error: ") and res.stderr.count("\n") == 1 and " is empty: " in res.stderr
