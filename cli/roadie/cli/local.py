"""`roadie local`: the embedded default environment on this machine."""

from __future__ import annotations

import json
import os
import time

import click

from roadie import inventory, paths
from roadie.local import plan as fleetplan
from roadie.cli import options
from roadie.errors import BadInput


def _fleet(ctx, log=None, only=None):
    from roadie.local.fleet import Fleet, preflight

    preflight()
    plan = fleetplan.build(inventory.load(ctx.obj.env), only)
    quiet = ctx.obj.json or log is False
    log = (lambda m: None) if quiet else (lambda m: click.echo(m, err=True))
    return Fleet(plan, paths.state_dir(ctx.obj.env), log=log)


def _hosts_option(value: str | None) -> list[str] | None:
    return [h.strip() for h in value.split(",") if h.strip()] if value else None


def _print(ctx, rows: list[dict], helpers: list[dict] | None = None, elapsed: float | None = None) -> None:
    if ctx.obj.json:
        doc = {"hosts": rows, "helpers": helpers or []}
        if elapsed is not None:
            doc["seconds"] = round(elapsed, 2)
        click.echo(json.dumps(doc))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("host", "address", "pid", "state", box=None)
    colour = {"running": "green", "degraded": "yellow", "dead": "red"}
    for r in rows:
        st = r["state"]
        table.add_row(r["name"], r.get("address", ""), str(r.get("pid") or "-"),
                      f"[{colour.get(st, 'white')}]{st}[/]")
    for h in helpers or []:
        table.add_row(h["name"], "", str(h.get("pid") or "-"), f"[{colour.get(h['state'], 'white')}]{h['state']}[/]")
    console = Console()
    console.print(table)
    if elapsed is not None:
        console.print(f"[dim]{elapsed:.1f} s[/]")


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
    only = _hosts_option(hosts)
    fleet = _fleet(ctx, only=only)
    rows = fleet.up(only)
    _print(ctx, rows, fleet.helpers_status(), time.monotonic() - started)


@local.command()
@options.common
@click.pass_context
def down(ctx):
    """Stop every process the fleet started and remove its namespaces, bridge and overlays."""
    started = time.monotonic()
    fleet = _fleet(ctx)
    fleet.down()
    if ctx.obj.json:
        click.echo(json.dumps({"down": True, "seconds": round(time.monotonic() - started, 2)}))
    else:
        click.echo(f"fleet down in {time.monotonic() - started:.1f} s")


@local.command()
@options.common
@click.pass_context
def status(ctx):
    """Hosts, addresses, PIDs and state (dead = left over from a fleet whose process is gone)."""
    from roadie.local.fleet import Fleet

    fleet = Fleet(fleetplan.build(inventory.load(ctx.obj.env)), paths.state_dir(ctx.obj.env), log=lambda m: None)
    _print(ctx, fleet.status(), fleet.helpers_status())


@local.command()
@click.pass_context
def image(ctx):
    """Build the cached base image if its recipe changed."""
    from roadie.local import image as base_image

    click.echo(base_image.ensure(lambda m: click.echo(m, err=True)))


@local.command(context_settings={"ignore_unknown_options": True})
@click.argument("host")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@options.common
@click.pass_context
def ssh(ctx, host, command):
    """Open a shell (or run COMMAND) on a fleet host, with roadie's key and pinned host keys."""
    from roadie.commands import ssh as ssh_cmd

    fleet = _fleet(ctx, log=False)
    if host not in {h.name for h in fleet.plan.hosts}:
        raise BadInput(f"Unknown host {host}: the local inventory has {', '.join(h.name for h in fleet.plan.hosts)}.")
    tty = ["-t"] if not command else []
    argv = ["ssh", *tty, *ssh_cmd.options(fleet.key, fleet.known_hosts), f"root@{fleet.plan.host(host).address}",
            *command]
    os.execvp("ssh", argv)
