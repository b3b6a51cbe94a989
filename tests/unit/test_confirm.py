"""confirm(): production needs --yes or the environment's name typed back; elsewhere it is silent."""

from __future__ import annotations

import click
import pytest

from roadie import confirm, inventory, paths
from roadie.errors import BadInput
from roadie.main import Context


def inventory_dir(root, env: str, roadie_env: str | None):
    d = root / env
    (d / "group_vars" / "all").mkdir(parents=True)
    (d / "hosts.yml").write_text("all:\n  children:\n    catalog:\n      hosts:\n        catalog-1:\n"
                                 "          ansible_host: 198.18.0.20\n")
    if roadie_env:
        (d / "group_vars" / "all" / "main.yml").write_text(f"roadie_env: {roadie_env}\n")


@pytest.fixture
def envs(tmp_path, monkeypatch):
    inventory_dir(tmp_path, "prod-eu", "production")  # production by its inventory, not its name
    inventory_dir(tmp_path, "qa", "staging")
    inventory_dir(tmp_path, "bare", None)
    monkeypatch.setattr(paths, "INVENTORIES", tmp_path)
    inventory._load.cache_clear()
    yield
    inventory._load.cache_clear()


def ctx_for(env: str) -> click.Context:
    ctx = click.Context(click.Command("x"))
    ctx.obj = Context(env=env, output="text")
    return ctx


@pytest.mark.parametrize("env, production", [("production", True), ("prod-eu", True), ("qa", False),
                                             ("bare", False)])
def test_production_by_name_or_by_inventory(envs, env, production):
    assert confirm.is_production(env) is production


@pytest.mark.parametrize("env, yes, terminal, typed, refused", [
    ("prod-eu", False, False, None, "it needs --yes"),
    ("production", False, False, None, "it needs --yes"),
    ("prod-eu", True, False, None, None),
    ("prod-eu", False, True, "prod-eu", None),
    ("prod-eu", False, True, "yes", "did not match 'prod-eu'"),
    ("prod-eu", False, True, "", "did not match"),
    ("qa", False, False, None, None),
    ("bare", False, False, None, None),
])
def test_confirm(envs, monkeypatch, env, yes, terminal, typed, refused):
    monkeypatch.setattr(confirm, "interactive", lambda: terminal)
    asked = []

    def prompt(text, **kw):
        asked.append(text)
        return typed
    monkeypatch.setattr(click, "prompt", prompt)
    if refused:
        with pytest.raises(BadInput, match=refused):
            confirm.confirm(ctx_for(env), "converge it", yes)
    else:
        confirm.confirm(ctx_for(env), "converge it", yes)
    assert bool(asked) == (typed is not None)


@pytest.mark.parametrize("args, refused", [
    (["deploy", "catalog", "1.0.0"], True),
    (["rollback", "catalog"], True),
    (["deploy", "catalog", "1.0.0", "--yes"], False),
    (["deploy", "catalog", "1.0.0", "--plan"], False),
])
def test_deploy_in_production_without_yes_is_refused_before_preflight(envs, monkeypatch, args, refused):
    from click.testing import CliRunner

    from roadie.deploy import run
    from roadie.main import main

    monkeypatch.setattr(confirm, "interactive", lambda: False)
    asked = []

    def prepare(*a, **kw):  # preflight: reads hosts and the artifacts bucket
        asked.append(a)
        raise BadInput("preflight reached")

    monkeypatch.setattr(run, "prepare", prepare)
    result = CliRunner().invoke(main, ["--env", "prod-eu", *args])
    assert result.exit_code == 2
    assert ("it needs --yes" in result.output) is refused
    assert bool(asked) is not refused
