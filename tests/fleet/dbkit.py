"""Helpers for the database tests: Patroni's view of the cluster, psql on a member."""

from __future__ import annotations

import json

from tests.fleet.roles_fixtures import TIERS, ssh

PATRONICTL = "patronictl -c /etc/patroni/config.yml"


def psql(host: str, sql: str, db: str = "catalog", check: bool = True):
    proc = ssh(host, f"runuser -u postgres -- psql -X -At -d {db} -c \"{sql}\"", check=check)
    return proc.stdout.strip() if check else proc


def members(via: str | None = None) -> list[dict]:
    """`patronictl list` as JSON, asked of the first member that answers."""
    for host in ([via] if via else TIERS["database"]):
        proc = ssh(host, f"{PATRONICTL} list -f json", check=False, timeout=30)
        if proc.returncode == 0:
            return json.loads(proc.stdout)
    raise AssertionError("no database member answered patronictl list")


def leader(via: str | None = None) -> str | None:
    found = [m["Member"] for m in members(via) if m["Role"] == "Leader" and m["State"] == "running"]
    return found[0] if found else None


def replicas(via: str | None = None) -> list[str]:
    return [m["Member"] for m in members(via) if m["Role"] != "Leader"]
