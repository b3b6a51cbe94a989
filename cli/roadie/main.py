"""The `roadie` command group.

Subcommand modules are imported only when invoked, so `roadie --help` stays
fast even though deploys pull in Fabric, and infra pulls in Pulumi and boto3.
"""

import importlib

import click

from roadie import __version__

# name -> (module, attribute, one-line help); the module is imported on use.
SUBCOMMANDS = {
    "local": ("roadie.cli.local", "local", "Run the local fleet: nspawn hosts, apt cache and moto."),
    "converge": ("roadie.cli.converge", "converge", "Configure hosts with the Ansible roles."),
    "release": ("roadie.cli.release", "release", "Build, publish and list release artifacts."),
    "infra": ("roadie.cli.infra", "infra", "Preview and apply the Pulumi stacks."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx, name):
        if name not in SUBCOMMANDS:
            return None
        module, attr, _ = SUBCOMMANDS[name]
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                return None
            raise

    def format_commands(self, ctx, formatter):
        rows = [(name, SUBCOMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


class Context:
    """What every subcommand needs: the environment and how to print."""

    def __init__(self, env: str, output: str):
        self.env = env
        self.output = output
        self.out = None  # the Output, made on first use (roadie.output.of)

    @property
    def json(self) -> bool:
        return self.output == "json"


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--env", "env", default="local", envvar="ROADIE_ENV", show_default=True,
              help="Environment (an inventory under inventories/).")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", envvar="ROADIE_OUTPUT",
              show_default=True, help="json for CI: a JSON document or JSON lines of events.")
@click.version_option(__version__, prog_name="roadie")
@click.pass_context
def main(ctx, env, output):
    """Set up, deploy and operate the music-streaming service stack."""
    ctx.obj = Context(env=env, output=output)
