"""`roadie db status|switchover`: thin over roadie.db (Patroni on the database hosts)."""

from __future__ import annotations

import time

import click

from roadie import output
from roadie.cli import options
from roadie.errors import OperationFailed


@click.group()
def db():
    """The database tier: Patroni cluster status and planned switchover."""


def _audit(env: str, doc: dict) -> None:
    from roadie.deploy import run, table

    run.record(env, {"service": "database", **table.actor(), **doc})


@db.command()
@options.common
@click.pass_context
def status(ctx):
    """Members (inventory name), role, state, lag in bytes and timeline, as Patroni sees them."""
    from roadie.db import ops

    out = output.of(ctx)
    doc = ops.status(ctx.obj.env)
    out.result(doc)
    if not out.json:
        out.table(["member", "role", "state", "lag (bytes)", "timeline", "address"],
                  [(m["name"], m["role"], m["state"], "" if m["lag"] is None else m["lag"], m["timeline"], m["host"])
                   for m in doc["members"]],
                  title=f"database cluster of {doc['env']} (asked {doc['asked']})")


@db.command()
@click.option("--to", "to", help="The standby to promote (default: the synchronous standby).")
@click.option("--max-lag", type=click.IntRange(min=0), default=1048576, show_default=True,
              help="Refuse when the target is further behind than this many bytes.")
@click.option("--plan", "plan_only", is_flag=True, help="Show what would happen; change nothing.")
@click.option("--yes", is_flag=True, help="No confirmation prompt (production).")
@options.common
@click.pass_context
def switchover(ctx, to, max_lag, plan_only, yes):
    """Hand the leader role to a streaming standby, then check writes and streaming."""
    from roadie.confirm import confirm
    from roadie.db import ops

    out = output.of(ctx)
    env = ctx.obj.env
    plan = ops.plan_switchover(env, to, max_lag)
    if plan_only:
        out.result({**plan, "plan": True},
                   f"switchover in {env}: {plan['from']} -> {plan['to']} "
                   f"({plan['to_role']}, lag {plan['to_lag']} bytes)")
        return
    confirm(ctx, f"switch the {env} database leader from {plan['from']} to {plan['to']}", yes)
    start = time.time()
    try:
        done = ops.switchover(env, plan, out.info)
    except OperationFailed as exc:
        _audit(env, {"operation": "db.switchover", "result": "failed", "from": plan["from"], "to": plan["to"],
                     "seconds": round(time.time() - start, 2), "message": str(exc)})
        raise
    _audit(env, {"operation": "db.switchover", "result": "ok", **done})
    out.result({"result": "ok", "env": env, **done},
               f"{done['to']} leads (switched in {done['switch_seconds']} s); it takes writes and "
               f"{done['from']} streams from it")
