"""`roadie db status|switchover|backup|backups|prune|restore`: thin over roadie.db
(Patroni and barman-cloud on the database hosts)."""

from __future__ import annotations

import time

import click

from roadie import output
from roadie.cli import options
from roadie.db import barman, patroni
from roadie.errors import BadInput, OperationFailed


@click.group()
def db():
    """The database tier: Patroni cluster status, switchover, barman-cloud backups and restores."""


def _audit(environment, doc: dict) -> None:
    facts = dict(doc)
    environment.audit(facts.pop("operation"), facts.pop("result"), service="database", **facts)


def _audited(environment, operation: str, facts: dict, work):
    """`work()`; a failure is audited with `facts`, its seconds and the error, then raised again."""
    start = time.time()
    try:
        return work()
    except OperationFailed as exc:
        _audit(environment, {"operation": operation, "result": "failed", **facts,
                     "seconds": round(time.time() - start, 2), "message": str(exc)})
        raise


@db.command()
@options.common
@click.pass_context
def status(ctx):
    """Members (inventory name), role, state, lag in bytes and timeline, as Patroni sees them."""
    from roadie.db import backups, ops

    out = output.of(ctx)
    doc = ops.status(ctx.obj.environment)
    try:
        doc["backup"] = backups.backup_status(ctx.obj.environment)
    except OperationFailed as exc:  # the cluster's state is still worth showing
        doc["backup"] = {"error": str(exc)}
    out.result(doc)
    if not out.json:
        out.table(["member", "role", "state", "lag (bytes)", "timeline", "address"],
                  [(m["name"], m["role"], m["state"], "" if m["lag"] is None else m["lag"], m["timeline"], m["host"])
                   for m in doc["members"]],
                  title=f"database cluster of {doc['env']} (asked {doc['asked']})")
        b = doc["backup"]
        out.info(f"backups: {b['error']}" if "error" in b else
                 f"backups: {b['backups']}, last {b['last_backup_age_s']} s ago; WAL archived "
                 f"{b['last_archived_wal']} {b['archive_age_s']} s ago (now writing {b['current_wal']}), "
                 f"{b['failed_count']} archive failures")


@db.command()
@click.option("--to", "to", help="The standby to promote (default: the synchronous standby).")
@click.option("--max-lag", type=click.IntRange(min=0), default=patroni.MAX_LAG_BYTES, show_default=True,
              help="Refuse when the target is further behind than this many bytes.")
@options.plan("Show what would happen; change nothing.")
@options.yes("No confirmation prompt (production).")
@options.common
@click.pass_context
def switchover(ctx, to, max_lag, plan_only, yes):
    """Hand the leader role to a streaming standby, then check writes and streaming."""
    from roadie.confirm import confirm
    from roadie.db import ops

    out = output.of(ctx)
    env = ctx.obj.environment
    plan = ops.plan_switchover(env, to, max_lag)
    if plan_only:
        out.result({**plan, "plan": True},
                   f"switchover in {env.name}: {plan['from']} -> {plan['to']} "
                   f"({plan['to_role']}, lag {plan['to_lag']} bytes)")
        return
    confirm(ctx, f"switch the {env.name} database leader from {plan['from']} to {plan['to']}", yes)
    done = _audited(env, "db.switchover", {"from": plan["from"], "to": plan["to"]},
                    lambda: ops.switchover(env, plan, out.info))
    _audit(env, {"operation": "db.switchover", "result": "ok", **done})
    out.result({"result": "ok", "env": env.name, **done},
               f"{done['to']} leads (switched in {done['switch_seconds']} s); it takes writes and "
               f"{done['from']} streams from it")


@db.command()
@options.plan("Show where the backup would run; change nothing.")
@options.common
@click.pass_context
def backup(ctx, plan_only):
    """A base backup now (barman-cloud-backup on the leader, to the backups bucket)."""
    from roadie.db import backups

    out = output.of(ctx)
    env = ctx.obj.environment
    plan = backups.plan_backup(env)
    if plan_only:
        out.result({**plan, "plan": True}, f"base backup of {env.name} on {plan['on']} ({plan['why']})")
        return
    done = _audited(env, "db.backup", {"on": plan["on"]}, lambda: backups.backup(env, plan))
    _audit(env, {"operation": "db.backup", "result": "ok", "on": done["on"], "backup_id": done["backup_id"],
                 "seconds": done["seconds"], "size": done["size"]})
    out.result({"result": "ok", "env": env.name, **done},
               f"backup {done['backup_id']} on {done['on']}: {done['size']} bytes in {done['seconds']} s "
               f"(WAL {done['begin_wal']}..{done['end_wal']})")


@db.command("backups")
@options.common
@click.pass_context
def list_backups(ctx):
    """The base backups in the bucket: id, end time, size, begin/end WAL, status."""
    from roadie.db import backups

    out = output.of(ctx)
    found = backups.listing(ctx.obj.environment)
    out.result({"env": ctx.obj.env, "backups": barman.as_dicts(found)})
    if not out.json:
        out.table(["backup id", "name", "end time", "size (bytes)", "begin WAL", "end WAL", "status"],
                  [(b.backup_id, b.name or "", b.end_time or "", "" if b.size is None else b.size, b.begin_wal or "",
                    b.end_wal or "", b.status) for b in found], title=f"base backups of {ctx.obj.env}")


@db.command()
@click.option("--keep", type=int, help="Keep the newest N backups (and the WAL they need).")
@click.option("--days", type=int, help="Keep what a restore to any time in the last D days needs.")
@options.plan("List what would be deleted; delete nothing.")
@options.yes("No confirmation prompt (production).")
@options.common
@click.pass_context
def prune(ctx, keep, days, plan_only, yes):
    """Retention: delete backups (and WAL) outside a count or an age window."""
    from roadie.confirm import confirm
    from roadie.db import backups

    out = output.of(ctx)
    env = ctx.obj.environment
    policy = barman.retention_policy(keep, days)
    if not plan_only:
        confirm(ctx, f"delete {env.name} database backups outside '{policy}'", yes)
    done = backups.prune(env, policy, plan_only)
    if not plan_only:
        _audit(env, {"operation": "db.prune", "result": "ok", "policy": policy, "deleted": done["deleted"]})
    out.result({"env": env.name, **done}, f"{policy}: {done['before']} backups before, {done['after']} after"
               + (" (plan: " + "; ".join(done["barman"]) + ")" if plan_only else
                  f"; deleted {', '.join(done['deleted']) or 'none'}"))


@db.command()
@click.option("--backup", "backup_id", help="Restore this backup (see `roadie db backups`), to its end.")
@click.option("--time", "target", help="Restore to this time (ISO 8601; no zone means UTC).")
@click.option("--into", type=click.Choice(["scratch", "live"]), default="scratch", show_default=True,
              help=f"scratch: a scratch server on a standby, port {barman.SCRATCH_PORT}. "
                   "live: over the running cluster (--force and a typed confirmation).")
@click.option("--keep", is_flag=True, help="Leave the scratch server running for inspection.")
@click.option("--force", is_flag=True, help="Allow --into live: every member's data is replaced.")
@click.option("--confirm", "typed", metavar="CLUSTER",
              help="The cluster's name, typed ahead (for --into live without a terminal).")
@options.plan("Show which backup, host and steps; change nothing.")
@options.common
@click.pass_context
def restore(ctx, backup_id, target, into, keep, force, typed, plan_only):
    """Restore a backup (to its end or to a time) into a scratch server and verify it, or over the live cluster."""
    from roadie.db import backups

    out = output.of(ctx)
    env = ctx.obj.environment
    if into == "live" and keep:
        raise BadInput("--keep is for --into scratch: a live restore keeps the leader's old data directory anyway.")
    plan = backups.plan_restore(env, backup_id, target, into, force or plan_only)
    if into == "live":
        summary = (f"restore {plan['backup_id']} to {plan['target_time'] or 'its end'} OVER the live cluster "
                   f"{plan['cluster']} (leader {plan['on']}, standbys {', '.join(plan['standbys'])})")
        if plan_only:
            out.result({**plan, "plan": True}, summary + ":\n  " + "\n  ".join(plan["steps"]))
            return
        _confirm_live(ctx, plan, typed)
        return _restore_live(out, env, plan, summary)
    summary = (f"restore {plan['backup_id']} to {plan['target_time'] or 'its end'} on {plan['on']} "
               f"(scratch port {plan['port']}, {plan['datadir']})")
    if plan_only:
        out.result({**plan, "plan": True}, summary)
        return
    out.info(summary)
    done = _audited(env, "db.restore", {k: plan[k] for k in ("backup_id", "target_time", "on")},
                    lambda: backups.restore(env, plan, keep, out.info))
    _restored(out, env, done, {"seconds": done["restore_seconds"]},
              f"restored {done['backup_id']} on {done['on']} in {done['restore_seconds']} s; "
              + (f"scratch server kept on port {barman.SCRATCH_PORT}" if keep else "scratch server removed"))


def _restored(out, env, done: dict, audit: dict, message: str) -> None:
    """A finished restore, into scratch or live: audited with each table's rows, reported, its tables shown."""
    _audit(env, {"operation": "db.restore", "result": "ok", "backup_id": done["backup_id"],
                 "target_time": done["target_time"], "on": done["on"], **audit,
                 "tables": {k: v["rows"] for k, v in done["tables"].items()}})
    out.result({"result": "ok", "env": env.name, **done}, message)
    if not out.json:
        out.table(["table", "rows", "md5"], [(k, v["rows"], v["md5"]) for k, v in done["tables"].items()],
                  title="restored tables")


def _confirm_live(ctx, plan: dict, typed: str | None) -> None:
    """Always typed, in every environment: the cluster's name, on a terminal or with --confirm."""
    from roadie.confirm import confirm, interactive

    what = f"replace every member's data in {plan['cluster']} with {plan['backup_id']}"
    if typed is None:
        if not interactive():
            raise BadInput(f"Refusing to {what}: type the cluster's name with --confirm {plan['cluster']} "
                           "(no terminal to confirm on); nothing was changed.")
        confirm(ctx, what, False, production=True, token=plan["cluster"])
    elif typed != plan["cluster"]:
        raise BadInput(f"--confirm {typed!r} does not name the cluster '{plan['cluster']}'; nothing was changed.")


def _restore_live(out, env, plan: dict, summary: str) -> None:
    from roadie.db import restore_live

    out.info(summary)
    done = _audited(env, "db.restore", {k: plan[k] for k in ("backup_id", "target_time", "on", "into")},
                    lambda: restore_live.run(env, plan, out.info))
    _restored(out, env, done, {"into": "live", "fresh_backup": done["fresh_backup"], "seconds": done["seconds"],
                               "downtime_seconds": done["downtime_seconds"]},
              f"restored {done['backup_id']} over the live cluster in {done['seconds']} s "
              f"({done['downtime_seconds']} s without the database); fresh backup {done['fresh_backup']} "
              f"holds what was replaced; {done['kept']['host']} keeps its old data in {done['kept']['datadir']}")
