"""Pure pieces of a restore over the live cluster: the shell lines roadie runs on
the database hosts and the order it runs them in.

The engines do the work: barman-cloud restores and PostgreSQL recovers to the
point; Patroni, started on a data directory while etcd holds no cluster, takes
that data as the new cluster (it writes the initialize key with the data's
system id, wins the leader race and promotes), and the other members, started
on empty data directories, clone from it. roadie's part is the runbook around
them: a fresh backup first, every member stopped before etcd forgets the
cluster, each old data directory moved aside (not deleted) until the restored
cluster is proven, and the way back if a step fails.
"""

from __future__ import annotations

import shlex
from datetime import datetime

from roadie import model
from roadie.db import barman

DATADIR = "/var/lib/postgresql/15/main"
PATRONI_CONFIG = "/etc/patroni/config.yml"
# The restored server recovers on the scratch port behind its own socket: no client reaches it
# before Patroni takes it over.
RECOVERY_SOCKETS = "/var/run/postgresql/roadie-restore"
SERVING_SOCKETS = "/var/run/postgresql"
ASIDE_SUFFIX = ".pre-restore-"
PG_CTL = f"{barman.AS_POSTGRES} {barman.BINDIR}/pg_ctl"


def stop_order(leader, standbys: list) -> list:
    """Standbys first, the leader last: with the leader stopped first, a standby would take over."""
    return [*standbys, leader]


def aside_dir(stamp: str) -> str:
    """Where a member's data directory goes while the restore runs (and stays on the restored host)."""
    return f"{DATADIR}{ASIDE_SUFFIX}{stamp}"


def stop_member_cmd() -> str:
    """Stop Patroni (it stops PostgreSQL and gives up the leader key); fail if PostgreSQL still runs."""
    return (f"systemctl stop patroni && if {PG_CTL} -D {DATADIR} status >/dev/null 2>&1; then "
            "echo 'PostgreSQL still runs after Patroni stopped' >&2; exit 1; fi")


def start_member_cmd() -> str:
    return "systemctl start patroni"


def scope() -> str:
    """Patroni's cluster name (its etcd prefix), from the service model: roadie_database.patroni_scope."""
    return model.load().database.patroni_scope


def remove_cluster_cmd(cluster: str | None = None) -> str:
    """patronictl's own removal of the cluster from etcd, its three prompts answered: the cluster's
    name, the acknowledgement, and (only if a leader still holds the key) nothing, so it aborts.
    CLUSTER: the model's scope()."""
    cluster = cluster or scope()
    answers = shlex.quote(f"{cluster}\nYes I am aware\n")
    return f"printf %s {answers} | patronictl -c {PATRONI_CONFIG} remove {shlex.quote(cluster)}"


def move_aside_cmd(aside: str) -> str:
    """The member's data directory moved aside, an empty one (owned by postgres) in its place."""
    return (f"set -eu; [ ! -e {aside} ] || {{ echo '{aside} exists already' >&2; exit 1; }}; "
            f"mv {DATADIR} {aside} && install -d -o postgres -g postgres -m 0700 {DATADIR}")


def put_back_cmd(aside: str) -> str:
    """Undo move_aside_cmd (PostgreSQL stopped first if a restore had started it); a no-op without an aside."""
    return (f"set -eu; if [ -d {aside} ]; then "
            f"if {PG_CTL} -D {DATADIR} status >/dev/null 2>&1; then {PG_CTL} -D {DATADIR} -s -m fast -w stop; fi; "
            f"rm -rf {DATADIR} && mv {aside} {DATADIR}; fi")


def drop_aside_cmd(aside: str) -> str:
    return f"rm -rf {aside}"


def recover_script(backup_id: str, target: datetime | None) -> str:
    """Restore BACKUP_ID into the (empty) live data directory, recover to TARGET or the backup's end,
    promote, and stop cleanly, ready for Patroni. Archiving stays as Patroni configured it, so the new
    timeline's history file reaches the bucket."""
    opts = " ".join(barman.recovery_options(target, barman.SCRATCH_PORT, RECOVERY_SOCKETS))
    return "\n".join([
        "set -eu",
        f"[ -z \"$(ls -A {DATADIR})\" ] || {{ echo '{DATADIR} is not empty: not restoring over it' >&2; exit 1; }}",
        *barman.recover_lines(backup_id, DATADIR, opts, barman.SCRATCH_PORT, RECOVERY_SOCKETS),
        f"{PG_CTL} -D {DATADIR} -s -m fast -w stop",
        f"rm -rf {RECOVERY_SOCKETS}",
    ])


def steps(leader: str, others: list[str], backup_id: str, target: str | None, clients: list[str],
          cluster: str | None = None) -> list[str]:
    """What the restore does, in order (the --plan output and the docs). CLUSTER: the model's scope()."""
    to = target or f"the end of {backup_id}"
    *first, last = stop_order(leader, others)
    return [
        f"take a fresh base backup on {leader} (the state being replaced stays restorable)",
        *(f"maintenance on for {c}: the balancer answers 503 with Retry-After" for c in clients),
        "save Patroni's dynamic configuration",
        f"stop Patroni on {', '.join(first)}, then on {last}" if first else f"stop Patroni on {last}",
        f"remove the cluster from etcd (patronictl remove {cluster or scope()})",
        f"move every member's data directory aside ({DATADIR}{ASIDE_SUFFIX}STAMP)",
        f"restore {backup_id} on {leader}, recover to {to}, promote",
        f"start Patroni on {leader} (it takes the restored data as the cluster); put the configuration back",
        f"start Patroni on {', '.join(others) or 'no standby'} (each clones from {leader})",
        "verify every table, write to the catalog; drop the standbys' old data directories, keep the leader's",
        *(f"maintenance off for {c} once its servers are UP" for c in clients),
    ]
