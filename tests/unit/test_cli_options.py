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
