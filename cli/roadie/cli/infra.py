"""`roadie infra VERB --stack S`: preview and apply the Pulumi stacks in infra/.

Thin on purpose: parse, confirm, print. The work is in roadie.pulumi_stack.
"""

from __future__ import annotations

import json

import click

from roadie import confirm, output, pulumi_stack
from roadie.cli import options


def _run(ctx: click.Context, operation: str, stack: str, yes: bool) -> None:
    out = output.of(ctx)
    settings = pulumi_stack.check_settings(stack)
    command = pulumi_stack.pulumi_command()  # before any prompt: a missing or broken CLI is exit 2 at once
    confirm.confirm(ctx, f"{operation} production stack {stack}", yes,
                    production=pulumi_stack.needs_confirmation(operation, settings.production), token=stack)
    echo = None if out.json else out.line  # pulumi's own progress lines, as they come
    result = pulumi_stack.run(stack, operation, command=command, on_output=echo)
    doc = result.as_json()
    if operation == "outputs":
        text = "\n".join(f"{key}\t{value if isinstance(value, str) else json.dumps(value)}"
                         for key, value in result.outputs.items())
        out.result(doc, text or None)
    else:
        out.result(doc)


def _verb(operation: str, doc: str):
    @click.option("--stack", "-s", required=True, envvar="ROADIE_STACK",
                  help="Stack name: one of infra/Pulumi.<stack>.yaml.")
    @options.yes("Do not ask; required for production up/destroy in CI.")
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
