"""One confirmation for every command that changes production.

In production a command needs `--yes`, or the environment's name typed back on
a terminal. With no terminal and no `--yes` (a CI job that forgot it) it is
refused as bad input before anything is changed.
"""

from __future__ import annotations

import sys

import click

from roadie.errors import BadInput

PRODUCTION = "production"


def interactive() -> bool:
    """Whether a person can answer a prompt (tests replace this)."""
    return sys.stdin.isatty()


def is_production(env: str) -> bool:
    """The env named `production`, or one whose inventory says `roadie_env: production`."""
    if env == PRODUCTION:
        return True
    from roadie import inventory

    inv = inventory.load(env)
    if inv.group_vars.get("roadie_env") == PRODUCTION:
        return True
    return any(h.vars.get("roadie_env") == PRODUCTION for h in inv.hosts.values())


def refuse_unconfirmable(ctx: click.Context, what: str, yes: bool) -> None:
    """Refuse at once a production change that no one could confirm (no --yes, no terminal)."""
    if not yes and not interactive() and is_production(ctx.find_root().obj.env):
        raise BadInput(f"Refusing to {what}: it needs --yes (no terminal to confirm on); nothing was changed.")


def confirm(ctx: click.Context, what: str, yes: bool, *, production: bool | None = None,
            token: str | None = None) -> None:
    """Go on, or raise BadInput (exit 2, nothing changed).

    `what` completes "Refusing to ...", e.g. "converge production".
    `production` overrides the check of the environment (the infra stacks say it
    themselves); `token` is what the user must type (default: the env's name).
    """
    env = ctx.find_root().obj.env
    if production is None:
        production = is_production(env)
    if not production or yes:
        return
    token = token or env
    if not interactive():
        raise BadInput(f"Refusing to {what}: it needs --yes (no terminal to confirm on); nothing was changed.")
    typed = click.prompt(f"This will {what}. Type '{token}' to go on", default="", show_default=False, err=True)
    if typed.strip() != token:
        raise BadInput(f"Confirmation did not match '{token}'; nothing was changed.")
