"""`roadie db backup|backups|prune|restore` against an environment: barman-cloud on
the database hosts, through roadie's SSH transport. Decisions are in barman.py (pure)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from roadie.db import barman, ops, patroni
from roadie.environment import Environment
from roadie.errors import BadInput, OperationFailed


def _hosts(environment: Environment):
    tr = environment.transport
    found, _ = ops.members(environment, tr)
    hosts = {h.name: h for h in ops.db_hosts(environment)}
    lead = patroni.leader(found)
    if lead is None:
        raise OperationFailed("No running leader: backups and archiving run on the leader (see `roadie db status`).")
    return tr, found, hosts, hosts[lead.name]


def scratch_host(found: list[patroni.Member], hosts: dict):
    """A healthy standby that is not the synchronous one (its commits stay untouched), else any healthy standby."""
    standbys = sorted((m for m in found if m.healthy_standby), key=lambda m: (m.role == "sync_standby", m.name))
    if not standbys:
        raise OperationFailed("No healthy standby to restore on: roadie never restores on the leader.")
    return hosts[standbys[0].name]


def listing(environment: Environment, tr=None, via=None) -> list[barman.Backup]:
    """barman's list, with each backup's size in the bucket (barman-cloud leaves it empty): one listing."""
    if tr is None:
        tr, _, _, via = _hosts(environment)
    found = barman.parse_list(tr.run(via, barman.list_cmd(), "listing the backups"))
    s3, bucket = environment.client("s3"), environment.bucket("backups")
    base = barman.base_prefix()
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base)
    size = barman.sizes(((o["Key"], o["Size"]) for page in pages for o in page.get("Contents", [])), base)
    return [barman.with_size(b, size.get(b.backup_id, 0)) for b in found]


def archiver(tr, lead) -> dict:
    return barman.parse_archiver(tr.run(lead, barman.archiver_cmd(), "asking the leader about WAL archiving"))


def archive_now(tr, lead, log, timeout: float = 120) -> None:
    """Everything up to now in the bucket (and a commit after any earlier time), so recovery can reach it."""
    seg = tr.run(lead, barman.switch_wal_cmd(), "closing the current WAL segment").strip().splitlines()[-1]
    deadline = time.monotonic() + timeout
    while (archiver(tr, lead)["last_archived_wal"] or "") < seg:
        if time.monotonic() > deadline:
            raise OperationFailed(f"WAL segment {seg} was not archived within {timeout:.0f} s (see `roadie db status`)")
        time.sleep(1)
    log(f"WAL up to {seg} is archived")


def backup_status(environment: Environment) -> dict:
    """Last backup age and WAL archive age (for `roadie db status`)."""
    tr, _, _, lead = _hosts(environment)
    found = listing(environment, tr, lead)
    now = datetime.now(UTC)
    return {"backups": len(found), "last_backup_age_s": barman.backup_age(found, now), **archiver(tr, lead)}


def plan_backup(environment: Environment) -> dict:
    _, _, _, lead = _hosts(environment)
    return {"env": environment.name, "operation": "db.backup", "on": lead.name,
            "why": "the leader archives WAL; its backup's end WAL is archived before the backup counts"}


def backup(environment: Environment, plan: dict) -> dict:
    tr, _, hosts, lead = _hosts(environment)
    name = f"roadie-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    start = time.monotonic()
    tr.run(lead, barman.backup_cmd(name), "taking a base backup")
    seconds = round(time.monotonic() - start, 2)
    made = [b for b in listing(environment, tr, lead) if b.name == name]
    if not made or made[-1].status != "DONE":
        raise OperationFailed(f"barman-cloud-backup returned but no DONE backup named {name} is listed")
    return {"on": lead.name, "seconds": seconds, **barman.as_dicts(made[-1:])[0]}


def prune(environment: Environment, policy: str, dry_run: bool) -> dict:
    tr, _, _, lead = _hosts(environment)
    before = listing(environment, tr, lead)
    out = tr.run(lead, barman.delete_cmd(policy, dry_run), "applying the retention policy")
    after = before if dry_run else listing(environment, tr, lead)
    gone = sorted({b.backup_id for b in before} - {b.backup_id for b in after})
    return {"policy": policy, "dry_run": dry_run, "before": len(before), "after": len(after),
            "deleted": gone, "barman": out.strip().splitlines()[-20:]}


def plan_restore(environment: Environment, backup_id: str | None, target: str | None, into: str,
                 force: bool = False) -> dict:
    """Which backup, to which point, on which host; BadInput (nothing read or changed) for bad input."""
    if into == "live" and not force:
        raise BadInput("Restoring over the live cluster needs --force (and a typed confirmation): it stops the "
                       "database and replaces every member's data. Check the point with --into scratch first.")
    if backup_id is not None and target is not None:
        raise BadInput("Give one restore point: --backup ID or --time TIMESTAMP, not both.")
    when = barman.parse_target(target) if target is not None else None
    tr, found, hosts, lead = _hosts(environment)
    now = datetime.now(UTC)
    chosen = barman.choose_backup(listing(environment, tr, lead), backup_id, when, now)
    point = {"env": environment.name, "operation": "db.restore", "into": into, "backup_id": chosen.backup_id,
             "backup_end": chosen.end_time, "target_time": when.isoformat() if when else None, "leader": lead.name}
    if into == "live":
        from roadie.db import live

        missing = sorted(set(hosts) - {m.name for m in found})
        if missing:
            raise OperationFailed(f"{', '.join(missing)} not in the cluster: a restore over the live cluster "
                                  "replaces every member's data (see `roadie db status`).")
        standbys, clients = sorted(set(hosts) - {lead.name}), live_clients(environment)
        answering = [s.name for s in clients if s.balancer]  # 503 meanwhile; the clients behind none are only locked
        return {**point, "on": lead.name, "standbys": standbys, "cluster": live.scope(),
                "stamp": f"{now:%Y%m%dT%H%M%S}", "clients": [s.name for s in clients], "maintenance": answering,
                "steps": live.steps(lead.name, standbys, chosen.backup_id, point["target_time"], answering)}
    on = scratch_host(found, hosts)
    return {**point, "on": on.name, "port": barman.SCRATCH_PORT, "datadir": barman.SCRATCH_DIR}


def live_clients(environment: Environment):
    """The services that use the database (those with migrations): in maintenance and locked meanwhile."""
    return [s for s in environment.stack.services.values() if s.migrations]


def restore(environment: Environment, plan: dict, keep: bool, log) -> dict:
    tr, _, hosts, lead = _hosts(environment)
    on = hosts[plan["on"]]
    when = barman.parse_target(plan["target_time"]) if plan["target_time"] else None
    start = time.monotonic()
    if when is not None:
        archive_now(tr, lead, log)
    try:
        tr.run(on, barman.restore_script(plan["backup_id"], when), "restoring into the scratch server")
        restored = round(time.monotonic() - start, 2)
        log(f"restored and recovered on {on.name} in {restored} s")
        tables = barman.parse_verify(tr.run(on, barman.verify_cmd("catalog", barman.SCRATCH_PORT,
                                                                  barman.SCRATCH_SOCKETS), "verifying the restore"))
    except OperationFailed as exc:
        tr.run(on, barman.stop_script(), "removing the scratch server")
        raise OperationFailed(f"restore of {plan['backup_id']} failed on {on.name}, scratch removed; "
                              f"the cluster was not touched: {str(exc)[-400:]}") from None
    if not keep:
        tr.run(on, barman.stop_script(), "removing the scratch server")
    return {"backup_id": plan["backup_id"], "on": on.name, "target_time": plan["target_time"],
            "restore_seconds": restored, "tables": tables, "kept": keep,
            "scratch": {"port": barman.SCRATCH_PORT, "socket": barman.SCRATCH_SOCKETS} if keep else None}
