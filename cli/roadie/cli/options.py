"""`--env` and `--output` after the subcommand as well as before it.

SREs type `roadie converge --env staging` and `roadie local status --output json`;
both set the same Context the root options fill, the later one winning.
"""

from __future__ import annotations

import click


def _setter(attr: str):
    def callback(ctx: click.Context, _param, value):
        if value is not None:
            setattr(ctx.obj, attr, value)
        return value
    return callback


def output(f):
    """Add --output to a subcommand (it changes ctx.obj, not the command's arguments); alone, for the
    commands that work on no environment (infra, release build/verify, local image: README says so)."""
    return click.option("--output", type=click.Choice(["text", "json"]), default=None, expose_value=False,
                        callback=_setter("output"), help="Same as roadie --output.")(f)


def common(f):
    """Add --env and --output to a subcommand."""
    return click.option("--env", default=None, expose_value=False, callback=_setter("env"),
                        help="Same as roadie --env: the inventory under inventories/.")(output(f))


def yes(help_text: str = "No confirmation prompt (required to change production without a terminal)."):
    """--yes (-y): one definition for every command that asks before it changes something."""
    return click.option("--yes", "-y", is_flag=True, help=help_text)


def plan(help_text: str = "Say what would change; change nothing."):
    """--plan: one definition for every command with a dry run (passed as `plan_only`)."""
    return click.option("--plan", "plan_only", is_flag=True, help=help_text)
