"""`roadie ops`: on-call operations, thin over roadie.ops (fabfile.py runs the same commands)."""

from __future__ import annotations

import click

from roadie import output
from roadie.cli import options
from roadie.cli.deploy import _confirm, _deploy_options, _options, _run


@click.group()
def ops():
    """On-call operations: restart, drain/enable, maintenance, health, logs, disk, exec."""


@ops.command()
@click.argument("service")
@_deploy_options
@click.pass_context
def restart(ctx, service, **flags):
    """Rolling restart of SERVICE with the deploy engine (batches, drain, health gate, lock); no version change."""
    from roadie.deploy.run import RESTART

    opts, plan_only, yes = _options(flags)
    _run(ctx, service, None, opts, RESTART, plan_only, yes)


def _change_options(f):
    f = click.option("--message", "-m", default="", help="Why: kept in the audit record.")(f)
    f = click.option("--plan", "plan_only", is_flag=True, help="Say what would change; change nothing.")(f)
    f = click.option("--yes", is_flag=True, help="No confirmation prompt (production).")(f)
    return options.common(f)


def _host_change(ctx, operation: str, host: str, message: str, plan_only: bool, yes: bool) -> None:
    from roadie.ops import hosts

    out = output.of(ctx)
    t = hosts.target(ctx.obj.env, host, out.emit)
    if plan_only:
        try:
            servers = t.deps.balancer.servers(t.service.backend)
            if operation == "drain":
                change = hosts.must_drain(servers, host, t.tier, t.service.min_healthy, t.service.name)
            else:
                change = host in servers and not servers[host].up
        finally:
            t.deps.transport.close()
        state = servers[host].status if host in servers else "not in the balancer"
        out.result({"plan": True, "operation": operation, "host": host, "service": t.service.name, "state": state,
                    "change": change},
                   f"{operation} {host} ({t.service.name}, now {state}): " + ("would change it" if change
                                                                            else "nothing to change"))
        return
    _confirm(ctx, f"{operation} {host}", yes)
    doc = (hosts.drain if operation == "drain" else hosts.enable)(t, message)
    left = f", {doc['sessions_left']} session(s) still open at the drain timeout" if doc.get("sessions_left") else ""
    out.result(doc, f"{host}: {doc['state']} in the {t.service.backend} backend"
                    + ("" if doc["changed"] else " (it already was)") + left)


@ops.command()
@click.argument("host")
@_change_options
@click.pass_context
def drain(ctx, host, message, plan_only, yes):
    """Take HOST out of rotation (refused if its tier would fall below its minimum healthy hosts)."""
    _host_change(ctx, "drain", host, message, plan_only, yes)


@ops.command()
@click.argument("host")
@_change_options
@click.pass_context
def enable(ctx, host, message, plan_only, yes):
    """Put HOST back in rotation and wait until the balancer sees it UP."""
    _host_change(ctx, "enable", host, message, plan_only, yes)


@ops.command()
@click.argument("service")
@click.argument("state", metavar="on|off")
@click.option("--retry-after", type=int, default=300, show_default=True,
              help="Seconds clients are told to wait (the Retry-After header).")
@_change_options
@click.pass_context
def maintenance(ctx, service, state, retry_after, message, plan_only, yes):
    """Turn SERVICE's maintenance mode on (the balancer answers 503 + Retry-After) or off."""
    from roadie.ops import maintenance as mt

    on = mt.parse_switch(state)
    out = output.of(ctx)
    if not plan_only:
        mt.switch(ctx.obj.env, service, on, retry_after, plan_only=True)  # bad input refused before the prompt
        _confirm(ctx, f"turn maintenance {state} for {service}", yes)
    doc = mt.switch(ctx.obj.env, service, on, retry_after, message, plan_only)
    verb = "would be" if plan_only else "is"
    text = (f"{service} {verb} in maintenance: {doc['route']} answers 503, Retry-After {retry_after} s"
            if on else f"{service} {verb} serving traffic again")
    out.result(doc, text + ("" if doc["changed"] else " (no change: it already was)"))
