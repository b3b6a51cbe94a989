"""The database part of the health report: each member asked for itself (psql on every database host).

Patroni's own view (`roadie db status`) is one member's reading of the
configuration store; asking every PostgreSQL directly is what catches two
primaries at once, and gives replay lag in seconds. `members` is the one
function the report calls.
"""

from __future__ import annotations

import json

from roadie import inventory, model
from roadie.ops import common

MAX_LAG_SECONDS = 30.0

# One psql call per host: its role, and its replication view (primary: senders; replica: receiver and lag).
QUERY = """select json_build_object(
  'recovery', pg_is_in_recovery(),
  'senders', (select coalesce(json_agg(json_build_object('name', application_name, 'state', state,
              'lag', coalesce(extract(epoch from replay_lag), 0))), '[]') from pg_stat_replication),
  'receiver', (select status from pg_stat_wal_receiver limit 1),
  'replay_age', extract(epoch from now() - pg_last_xact_replay_timestamp()))"""


def command() -> str:
    import shlex

    return f"runuser -u postgres -- psql -XAtq -c {shlex.quote(QUERY)}"


def member(name: str, doc: dict) -> dict:
    """A member from the query's answer (pure): role, state, lag in seconds, what is wrong."""
    if "error" in doc:
        return {"host": name, "role": "unknown", "state": "unreachable", "lag": None, "problem": doc["error"]}
    if not doc["recovery"]:
        return {"host": name, "role": "primary", "state": "running", "lag": 0.0, "problem": None,
                "replicas": [s["name"] for s in doc["senders"] if s["state"] == "streaming"],
                "max_sender_lag": max((float(s["lag"]) for s in doc["senders"]), default=0.0)}
    lag = 0.0 if doc["receiver"] == "streaming" else float(doc.get("replay_age") or 0)
    problem = None
    if doc["receiver"] != "streaming":
        problem = f"replica not streaming from the primary (receiver: {doc['receiver'] or 'none'})"
    return {"host": name, "role": "replica", "state": doc["receiver"] or "stopped", "lag": lag, "problem": problem}


def problems(members_: list[dict], max_lag: float = MAX_LAG_SECONDS) -> list[str]:
    """What needs a human in the database tier (pure)."""
    found = [f"{m['host']}: database {m['problem']}" for m in members_ if m["problem"]]
    primaries = [m for m in members_ if m["role"] == "primary"]
    if members_ and not primaries:
        found.append("database: no primary answers")
    if len(primaries) > 1:
        found.append(f"database: {len(primaries)} primaries ({', '.join(m['host'] for m in primaries)}): split brain")
    for p in primaries:
        if p["max_sender_lag"] > max_lag:
            found.append(f"{p['host']}: replication lag {p['max_sender_lag']:.0f} s (over {max_lag:.0f} s)")
    return found


def members(inv: inventory.Inventory, transport, stack: model.Stack) -> list[dict]:
    """Every database host's role, state and lag (the one function a Patroni tier replaces)."""
    hosts = inv.group(stack.database.group)

    def one(h):
        return json.loads(transport.run(h, command(), "reading the database state").strip().splitlines()[-1])

    return [member(n, doc) for n, doc in common.on_hosts(hosts, one).items()]
