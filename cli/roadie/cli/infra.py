"""`roadie infra VERB --stack S`: preview and apply the Pulumi stacks in infra/.

Thin on purpose: parse, confirm, print. The work is in roadie.pulumi_stack.
"""

from __future__ import annotations

import json
import sys

import click

from roadie import pulumi_stack
from roadie.cli import options
from roadie.errors import BadInput


def _interactive() -> bool:
    return sys.stdin.isatty()


def _confirm(stack: str, operation: str, yes: bool) -> None:
    if yes:
        return
    if not _interactive():
        raise BadInput(f"Refusing to {operation} production stack {stack} without --yes "
                       "(no terminal to confirm on); nothing was changed.")
    typed = click.prompt(f"This will {operation} the production stack. Type '{stack}' to go on",
                         default="", show_default=False)
    if typed.strip() != stack:
        raise BadInput(f"Confirmation did not match '{stack}'; nothing was changed.")


def _run(ctx: click.Context, operation: str, stack: str, yes: bool) -> None:
    as_json = bool(getattr(ctx.obj, "json", False))
    settings = pulumi_stack.check_settings(stack)
    command = pulumi_stack.pulumi_command()  # before any prompt: a missing CLI is exit 2 at once
    if pulumi_stack.needs_confirmation(operation, settings.production):
        _confirm(stack, operation, yes)
    echo = None if as_json else (lambda line: click.echo(line))
    result = pulumi_stack.run(stack, operation, command=command, on_output=echo)
    if as_json:
        click.echo(json.dumps(result.as_json(), sort_keys=True, default=str))
    elif operation == "outputs":
        for key, value in result.outputs.items():
            click.echo(f"{key}\t{json.dumps(value) if not isinstance(value, str) else value}")


def _verb(operation: str, doc: str):
    @click.option("--stack", "-s", required=True, envvar="ROADIE_STACK",
                  help="Stack name: one of infra/Pulumi.<stack>.yaml.")
    @click.option("--yes", "-y", is_flag=True, help="Do not ask; required for production up/destroy in CI.")
    @options.output
    @click.pass_context
    def command(ctx, stack, yes):
        _run(ctx, operation, stack, yes)

    command.__doc__ = doc
    return infra.command(operation)(command)


@click.group()
def infra():
    """Preview and apply the Pulumi stacks (dev, staging, prod) in infra/."""


_verb("preview", "Show what `up` would change.")
_verb("up", "Create or update the stack's resources.")
_verb("refresh", "Bring the stack's state in line with what exists in AWS.")
_verb("destroy", "Delete every resource of the stack.")
_verb("outputs", "Print the stack outputs (secrets masked).")
