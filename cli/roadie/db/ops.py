"""`roadie db` operations against an environment: the inventory's database hosts,
asked through roadie's SSH transport. Decisions are in patroni.py (pure)."""

from __future__ import annotations

import json
import time

from roadie import inventory
from roadie.db import patroni
from roadie.environment import Environment
from roadie.errors import BadInput, OperationFailed

CATALOG_WRITE_PROBE = ("runuser -u postgres -- psql -X -At -d catalog -v ON_ERROR_STOP=1 "
                       "-c 'CREATE TEMP TABLE roadie_write_probe (x int)' "
                       "-c 'INSERT INTO roadie_write_probe VALUES (1)' "
                       "-c 'SELECT pg_is_in_recovery()'")


def db_hosts(environment: Environment) -> list[inventory.Host]:
    group = environment.stack.database.group
    hosts = environment.inventory.group(group)
    if not hosts:
        raise BadInput(f"The {environment.name} inventory has no '{group}' group of database hosts.")
    return hosts


def members(environment: Environment, tr=None) -> tuple[list[patroni.Member], inventory.Host]:
    """The cluster as Patroni sees it, from the first member that answers."""
    hosts, tr = db_hosts(environment), tr or environment.transport
    errors = []
    for h in hosts:
        try:
            status, body = patroni.split_answer(tr.run(h, patroni.cluster_cmd(h.address), "asking Patroni"))
        except OperationFailed as exc:
            errors.append(str(exc))
            continue
        if status == 200:
            return patroni.parse_cluster(json.loads(body)), h
        errors.append(f"{h.name}: Patroni answered {status}")
    raise OperationFailed("No database member answered: " + "; ".join(errors))


def status(environment: Environment) -> dict:
    found, via = members(environment)
    lead = patroni.leader(found)
    return {"env": environment.name, "asked": via.name, "leader": lead.name if lead else None,
            "sync_standby": next((m.name for m in found if m.role == "sync_standby"), None),
            "members": patroni.as_dicts(found)}


def plan_switchover(environment: Environment, to: str | None, max_lag: int) -> dict:
    hosts = {h.name for h in db_hosts(environment)}
    if to is not None and to not in hosts:
        raise BadInput(f"{to} is not a database host of {environment.name} ({', '.join(sorted(hosts))}).")
    found, _ = members(environment)
    lead, target = patroni.choose_target(found, to, max_lag)
    return {"env": environment.name, "operation": "db.switchover", "from": lead.name, "to": target.name,
            "to_role": target.role, "to_lag": target.lag, "max_lag": max_lag,
            "members": patroni.as_dicts(found)}


def switchover(environment: Environment, plan: dict, log, timeout: float = 90) -> dict:
    """Patroni's switchover, then proof: the new leader takes writes, the old one streams from it."""
    tr = environment.transport
    hosts = {h.name: h for h in db_hosts(environment)}
    start = time.monotonic()
    old, new = hosts[plan["from"]], hosts[plan["to"]]
    status, body = patroni.split_answer(tr.run(old, patroni.switchover_cmd(old.address, old.name, new.name),
                                               "asking Patroni for the switchover"))
    if status != 200:
        raise OperationFailed(f"Patroni refused the switchover ({status}): {body.strip()[:300]}")
    log(f"Patroni: {body.strip()}")
    deadline = time.monotonic() + timeout
    while True:
        by = {m.name: m for m in members(environment, tr)[0]}
        leads = bool(by.get(new.name) and by[new.name].role == "leader" and by[new.name].state == "running")
        streams = bool(by.get(old.name) and by[old.name].healthy_standby)
        if leads and streams:
            break
        if time.monotonic() >= deadline:
            raise OperationFailed(f"after {timeout:.0f} s: {new.name} leads: {leads}; {old.name} streams: {streams}")
        time.sleep(1)
    switched = time.monotonic() - start
    probe = tr.run(new, CATALOG_WRITE_PROBE, "writing to the catalog database on the new leader").split()
    if probe[-1:] != ["f"]:
        raise OperationFailed(f"{new.name} leads but is still in recovery")
    streaming = tr.run(new, "runuser -u postgres -- psql -X -At -c "
                            "\"SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'\"",
                       "listing the standbys streaming from the new leader").split()
    if old.name not in streaming:
        raise OperationFailed(f"{old.name} is not streaming from {new.name} (streaming: {', '.join(streaming)})")
    return {"from": old.name, "to": new.name, "switch_seconds": round(switched, 2),
            "seconds": round(time.monotonic() - start, 2), "streaming_from_new": sorted(streaming)}

