"""The `roadie` command group.

Subcommand modules are imported only when invoked, so `roadie --help` stays
fast even though deploys pull in Fabric, and infra pulls in Pulumi and boto3.
"""

import importlib
import os
import sys

import click

from roadie import __version__

# name -> (module, attribute, one-line help); the module is imported on use.
SUBCOMMANDS = {
    "local": ("roadie.cli.local", "local", "Run the local fleet: nspawn hosts, apt cache and moto."),
    "converge": ("roadie.cli.converge", "converge", "Configure hosts with the Ansible roles."),
    "release": ("roadie.cli.release", "release", "Build, publish and list release artifacts."),
    "infra": ("roadie.cli.infra", "infra", "Preview and apply the Pulumi stacks."),
    "deploy": ("roadie.cli.deploy", "deploy", "Roll a release out, batch by batch, through the balancer."),
    "rollback": ("roadie.cli.deploy", "rollback", "Roll a service back to its previous release."),
    "status": ("roadie.cli.deploy", "status", "Versions, health and balancer state per host; the locks."),
    "lock": ("roadie.cli.deploy", "lock", "Show or force-release a service's deploy lock."),
    "audit": ("roadie.cli.deploy", "audit", "Deploys and overrides recorded in the environment."),
    "hosts": ("roadie.cli.hosts", "hosts", "The hosts' SSH host keys: pin-keys pins them from the EC2 console output."),
    "db": ("roadie.cli.db", "db", "The database tier: Patroni status, switchover, backup, backups, prune, restore."),
    "ops": ("roadie.cli.ops", "ops",
            "On-call operations: restart, drain/enable, maintenance, health, logs, disk, exec."),
}


def _output_requested(args: list[str]) -> str | None:
    """The last `--output X` on the command line (before a `--`), or ROADIE_OUTPUT.

    Read from argv because a usage error can stop parsing before the option's
    callback runs (a missing argument, a bad choice, an unknown option).
    """
    found = os.environ.get("ROADIE_OUTPUT")
    for i, arg in enumerate(args):
        if arg == "--":
            break
        value = args[i + 1] if arg == "--output" and i + 1 < len(args) else (
            arg.split("=", 1)[1] if arg.startswith("--output=") else None)
        if value in ("text", "json"):  # a bad value (--output yaml) is the error; the last good one says how
            found = value
    return found if found in ("text", "json") else None


class LazyGroup(click.Group):
    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Every failure of every command ends here: one error line, as text or JSON, and its exit code.

        BadInput and click's usage errors exit 2, OperationFailed 1. Under
        `--output json` the error is a JSON line on stdout
        (`{"event": "error", "error": ..., "exit_code": N}`); as text it is
        `Error: ...` on stderr (usage errors keep click's usage hint).
        """
        from roadie.output import Output

        argv = list(sys.argv[1:] if args is None else args)
        try:
            rv = super().main(args=argv, prog_name=prog_name, complete_var=complete_var, standalone_mode=False,
                              **extra)
        except click.exceptions.Exit as exc:  # --help, --version, ctx.exit()
            rv = exc.exit_code
        except click.ClickException as exc:
            as_json = _output_requested(argv) == "json"
            if not as_json and isinstance(exc, click.UsageError):
                exc.show()
            else:
                Output(json_mode=as_json).error(exc.format_message(), exc.exit_code)
            rv = exc.exit_code
        except click.Abort:  # Ctrl-C or EOF at a prompt
            Output(json_mode=_output_requested(argv) == "json").error("Interrupted; stopped.", 130)
            rv = 130
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)

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
        self._environment = None

    @property
    def environment(self):
        """The Environment of --env (given before or after the subcommand), loaded on first use and closed
        when the command ends: one inventory read, one transport, one balancer per command."""
        if self._environment is None or self._environment.name != self.env:
            from roadie.environment import Environment

            self._environment = Environment.load(self.env)
            click.get_current_context().find_root().call_on_close(self._environment.close)
        return self._environment

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
