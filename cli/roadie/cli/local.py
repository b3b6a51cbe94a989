"""`roadie local`: the embedded default environment on this machine."""

from __future__ import annotations

import os
import time

import click

from roadie import inventory, output, paths
from roadie.local import plan as fleetplan
from roadie.cli import options
from roadie.commands import ansible as names
from roadie.errors import BadInput

COLOUR = {"running": "green", "degraded": "yellow", "dead": "red", "running, unsupervised": "yellow"}


def _fleet(ctx, only=None, quiet: bool = False):
    from roadie.local.fleet import Fleet, preflight

    preflight()
    plan = fleetplan.build(inventory.load(ctx.obj.env), only)
    out = output.of(ctx)
    return Fleet(plan, paths.state_dir(ctx.obj.env), log=(lambda m: None) if quiet else out.log)


def _print(ctx, rows: list[dict], helpers: list[dict] | None = None, elapsed: float | None = None) -> None:
    out = output.of(ctx)
    doc = {"hosts": rows, "helpers": helpers or []}
    if elapsed is not None:
        doc["seconds"] = round(elapsed, 2)
    out.result(doc)

    def state(st: str) -> str:
        return f"[{COLOUR.get(st, 'white')}]{st}[/]"

    table = [(r["name"], r.get("address", ""), r.get("pid") or "-", state(r["state"])) for r in rows]
    table += [(h["name"], "", h.get("pid") or "-", state(h["state"])) for h in helpers or []]
    out.table(["host", "address", "pid", "state"], table)
    if elapsed is not None:
        out.styled(f"{elapsed:.1f} s", "dim")


@click.group()
def local():
    """The local fleet: Debian hosts in systemd-nspawn, apt cache and moto (the AWS API)."""


@local.command()
@click.option("--hosts", help="Comma-separated hosts to bring up (default: every inventory host).")
@options.common
@click.pass_context
def up(ctx, hosts):
    """Boot the fleet (idempotent: running hosts are left alone, dead ones rebuilt)."""
    started = time.monotonic()
    only = names.split_list(hosts, "--hosts", "host") or None
    fleet = _fleet(ctx, only=only)
    with output.of(ctx).progress(f"bringing up the {ctx.obj.env} fleet…"):
        rows = fleet.up(only)
    _print(ctx, rows, fleet.helpers_status(), time.monotonic() - started)


@local.command()
@options.common
@click.pass_context
def down(ctx):
    """Stop every process the fleet started and remove its namespaces, bridge and overlays."""
    started = time.monotonic()
    fleet = _fleet(ctx)
    with output.of(ctx).progress(f"taking down the {ctx.obj.env} fleet…"):
        fleet.down()
    seconds = time.monotonic() - started
    output.of(ctx).result({"down": True, "seconds": round(seconds, 2)}, f"fleet down in {seconds:.1f} s")


@local.command()
@options.common
@click.pass_context
def status(ctx):
    """Hosts, addresses, PIDs and state (dead = left over from a fleet whose process is gone)."""
    from roadie.local.fleet import Fleet

    fleet = Fleet(fleetplan.build(inventory.load(ctx.obj.env)), paths.state_dir(ctx.obj.env), log=lambda m: None)
    _print(ctx, fleet.status(), fleet.helpers_status())


@local.command()
@options.output
@click.pass_context
def image(ctx):
    """Build the cached base image if its recipe changed."""
    from roadie.local import image as base_image

    out = output.of(ctx)
    path = base_image.ensure(out.log)
    out.result({"image": str(path)}, str(path))


@local.command()
@click.argument("host")
@options.yes("Do not ask.")
@options.common
@click.pass_context
def kill(ctx, host, yes):
    """Cut a host's power: every process of it killed at once (rehearse failures; `up` brings it back)."""
    fleet = _fleet(ctx, quiet=True)
    if host not in {h.name for h in fleet.plan.hosts}:
        raise BadInput(f"Unknown host {host}: the {ctx.obj.env} inventory has "
                       f"{', '.join(h.name for h in fleet.plan.hosts)}.")
    killed = fleet.kill(host)
    output.of(ctx).result({"host": host, "killed": killed},
                          f"{host}: power cut ({killed} processes killed); `roadie local up` brings it back")


@local.command(context_settings={"ignore_unknown_options": True})
@click.argument("host")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@options.common
@click.pass_context
def ssh(ctx, host, command):
    """Open a shell (or run COMMAND) on a fleet host, with roadie's key and pinned host keys."""
    from roadie.commands import ssh as ssh_cmd

    fleet = _fleet(ctx, quiet=True)
    if host not in {h.name for h in fleet.plan.hosts}:
        raise BadInput(f"Unknown host {host}: the local inventory has {', '.join(h.name for h in fleet.plan.hosts)}.")
    tty = ["-t"] if not command else []
    argv = ["ssh", *tty, *ssh_cmd.options(fleet.key, fleet.known_hosts), f"root@{fleet.plan.host(host).address}",
            *command]
    os.execvp("ssh", argv)
