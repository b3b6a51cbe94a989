"""What the README, the help texts and the inventories' comments say agrees with the code (derived from it)."""

from __future__ import annotations

import re

import click
import pytest
import yaml
from click.testing import CliRunner

from roadie import paths
from roadie.main import SUBCOMMANDS, main
from tests.conftest import ROOT


def leaves(group: click.Command, ctx: click.Context, prefix: tuple[str, ...] = ()):
    """(path, command) of every runnable command under `group` (itself when it is one)."""
    if not isinstance(group, click.Group):
        yield prefix, group
        return
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            yield from leaves(cmd, ctx, (*prefix, name))
        else:
            yield (*prefix, name), cmd


def takes(cmd: click.Command, option: str) -> bool:
    return any(option in p.opts for p in cmd.params)


def without_env() -> list[str]:
    """The commands that take no --env after the subcommand, a whole group as its name (`infra`)."""
    ctx = click.Context(main)
    found = []
    for name in main.list_commands(ctx):
        top = main.get_command(ctx, name)
        cmds = list(leaves(top, ctx, (name,)))
        missing = [path for path, cmd in cmds if not takes(cmd, "--env")]
        if missing and len(missing) == len(cmds) and isinstance(top, click.Group):
            found.append(name)
        else:
            found += [" ".join(path) for path in missing]
    return found


def test_every_command_takes_output_after_the_subcommand():
    ctx = click.Context(main)
    lacking = [" ".join(path) for name in main.list_commands(ctx)
               for path, cmd in leaves(main.get_command(ctx, name), ctx, (name,)) if not takes(cmd, "--output")]
    assert lacking == []


def test_readme_names_exactly_the_commands_that_take_no_env():
    """The README's rule for --env after the subcommand names each exception; no command is an exception
    the README does not name."""
    readme = (ROOT / "README.md").read_text()
    rule = " ".join(next(p for p in readme.split("\n\n") if "`--env`" in p and "after the subcommand" in p).split())
    assert "work on no environment:" in rule, rule
    sentence = rule.split("work on no environment:", 1)[1].split(". ", 1)[0]
    named = set(re.findall(r"`roadie ([a-z ]+?)`", sentence))
    assert named == set(without_env()), rule


@pytest.mark.parametrize("group", [name for name in SUBCOMMANDS if name in ("db", "ops")])
def test_the_top_help_line_of_a_group_names_each_of_its_commands(group):
    cmd = main.get_command(click.Context(main), group)
    line = SUBCOMMANDS[group][2]
    missing = [name for name in cmd.list_commands(click.Context(cmd)) if not re.search(rf"\b{name}\b", line)]
    assert missing == [], line


def test_db_help_lists_every_db_command():
    cmd = main.get_command(click.Context(main), "db")
    res = CliRunner().invoke(main, ["db", "--help"])
    assert res.exit_code == 0, res.output
    listed = {line.split()[0] for line in res.output.split("Commands:", 1)[1].splitlines() if line.strip()}
    assert listed == set(cmd.commands), res.output


@pytest.mark.parametrize("env", sorted(p.name for p in paths.INVENTORIES.iterdir() if p.is_dir()))
def test_an_inventory_comment_does_not_call_its_balancer_unbuilt(env):
    """The balancer an inventory names has a module (roadie.balancer.elbv2 for elbv2); no comment
    beside it may say otherwise."""
    import importlib

    main_yml = paths.INVENTORIES / env / "group_vars" / "all" / "main.yml"
    text = main_yml.read_text() if main_yml.exists() else ""
    kind = (yaml.safe_load(text) or {}).get("roadie_balancer", "haproxy")
    importlib.import_module(f"roadie.balancer.{kind}")
    assert not re.search(r"not (built|implemented)|(doesn't|does not) exist yet", text, re.I), main_yml
