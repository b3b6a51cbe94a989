"""Pure pieces for barman-cloud on the database hosts: the shell lines roadie runs
there (through the role's `roadie-barman` wrapper, which adds the bucket, server
name, endpoint and AWS access) and what their answers mean.

Base backups run on the leader: it is the member that archives WAL
(archive_mode on), and pg_backup_stop there waits until the backup's last WAL
segment is archived, so a listed backup is always restorable. Restores run on a
standby (never the leader), into a scratch data directory and a scratch server on
a port nothing serves or admits.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from roadie import model
from roadie.errors import BadInput, OperationFailed

WRAPPER = "/usr/local/bin/roadie-barman"
AS_POSTGRES = "runuser -u postgres --"
SCRATCH_PORT = 5499
SCRATCH_DIR = "/var/lib/postgresql/roadie-scratch"
SCRATCH_SOCKETS = "/var/run/postgresql/roadie-scratch"
BINDIR = "/usr/lib/postgresql/15/bin"
_BACKUP_ID = re.compile(r"^\d{8}T\d{6}$")


def barman(cmd: str, *options: str, args: tuple[str, ...] = ()) -> str:
    """`roadie-barman CMD OPTIONS -- ARGS` as postgres (it reads /etc/roadie/barman.env and puts
    the bucket URL and server name between OPTIONS and ARGS)."""
    tail = ("--", *map(shlex.quote, args)) if args else ()
    return " ".join([AS_POSTGRES, WRAPPER, cmd, *map(shlex.quote, options), *tail])


def backup_cmd(name: str) -> str:
    return barman("backup", "--gzip", "--immediate-checkpoint", "--name", name)


def list_cmd() -> str:
    return barman("backup-list", "--format", "json")


def retention_policy(keep: int | None, days: int | None) -> str:
    """barman's policy: keep the newest N backups, or what a restore to any time in the last D days needs."""
    if (keep is None) == (days is None):
        raise BadInput("Give one retention rule: --keep N (backups) or --days D (recovery window).")
    if keep is not None:
        if keep < 1:
            raise BadInput(f"--keep must be at least 1 (got {keep}): roadie never deletes the last backup.")
        return f"REDUNDANCY {keep}"
    if days < 1:
        raise BadInput(f"--days must be at least 1 (got {days}).")
    return f"RECOVERY WINDOW OF {days} DAYS"


def delete_cmd(policy: str, dry_run: bool) -> str:
    return barman("backup-delete", "--retention-policy", policy, *(["--dry-run"] if dry_run else []))


def parse_time(text: str | None) -> datetime | None:
    """barman's times (ISO or ctime, UTC on the hosts) as aware datetimes."""
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        t = datetime.strptime(text, "%a %b %d %H:%M:%S %Y")
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Backup:
    backup_id: str
    name: str | None
    status: str
    begin_time: str | None
    end_time: str | None
    begin_wal: str | None
    end_wal: str | None
    size: int | None
    timeline: int | None

    @property
    def ended(self) -> datetime | None:
        return parse_time(self.end_time)


def parse_list(text: str) -> list[Backup]:
    """barman-cloud-backup-list --format json, oldest first."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        raise OperationFailed(f"barman-cloud-backup-list gave no JSON: {text.strip()[:200]!r}") from None
    out = []
    for b in doc.get("backups_list", []):
        begin, end = parse_time(b.get("begin_time")), parse_time(b.get("end_time"))
        size = b.get("size")
        out.append(Backup(backup_id=b["backup_id"], name=b.get("backup_name"), status=b.get("status", "UNKNOWN"),
                          begin_time=begin.isoformat() if begin else None, end_time=end.isoformat() if end else None,
                          begin_wal=b.get("begin_wal"), end_wal=b.get("end_wal"),
                          size=size if isinstance(size, int) else None, timeline=b.get("timeline")))
    return sorted(out, key=lambda b: b.backup_id)


def base_prefix(backup_id: str = "", base: str | None = None) -> str:
    """Where a backup's objects are in the bucket (every backup's, with no id). BASE: the service
    model's (roadie_database backup_prefix/patroni_scope/base/, where the role archives)."""
    base = base or model.load().database.backup_base
    return f"{base}{backup_id}/" if backup_id else base


def sizes(objects, base: str | None = None) -> dict[str, int]:
    """Bytes in the bucket per backup id, from (key, size) pairs under base_prefix(base=BASE)."""
    out: dict[str, int] = {}
    prefix = base_prefix(base=base)
    for key, size in objects:
        backup_id = key[len(prefix):].split("/", 1)[0]
        out[backup_id] = out.get(backup_id, 0) + size
    return out


def with_size(b: Backup, size: int) -> Backup:
    return Backup(**{**asdict(b), "size": size})


def as_dicts(backups: list[Backup]) -> list[dict]:
    return [asdict(b) for b in backups]


def parse_target(text: str) -> datetime:
    """--time as an aware datetime (ISO 8601; no zone means UTC)."""
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(f"--time {text!r} is not an ISO 8601 time (e.g. 2026-11-23T14:05:00Z).") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def choose_backup(backups: list[Backup], backup_id: str | None, target: datetime | None,
                  now: datetime) -> Backup:
    """The backup a restore starts from, or BadInput saying why not (nothing changed)."""
    if (backup_id is None) == (target is None):
        raise BadInput("Give one restore point: --backup ID or --time TIMESTAMP.")
    done = [b for b in backups if b.status == "DONE"]
    if backup_id is not None:
        if not _BACKUP_ID.match(backup_id):
            raise BadInput(f"{backup_id!r} is not a backup id (YYYYMMDDTHHMMSS; see `roadie db backups`).")
        found = next((b for b in backups if b.backup_id == backup_id), None)
        if found is None:
            raise BadInput(f"No backup {backup_id} in the bucket (see `roadie db backups`).")
        if found.status != "DONE":
            raise BadInput(f"Backup {backup_id} is {found.status}, not DONE: it cannot be restored.")
        return found
    if target > now:
        raise BadInput(f"--time {target.isoformat()} is in the future (now {now.isoformat(timespec='seconds')}).")
    usable = [b for b in done if b.ended and b.ended <= target]
    if not usable:
        oldest = done[0].end_time if done else None
        raise BadInput(f"--time {target.isoformat()} is before the oldest complete backup"
                       + (f" (it ends {oldest})." if oldest else " (there is none)."))
    return usable[-1]


def recovery_options(target: datetime | None, port: int, sockets: str) -> list[str]:
    """postgres options of a recovering server that no client can reach (its own port, a unix socket
    only, no standbys), replaying WAL from the bucket to TARGET (or to the backup's end), then promoting."""
    target_opts = (f"-c recovery_target_time='{target.isoformat()}' -c recovery_target_inclusive=false"
                   if target else "-c recovery_target=immediate")
    return [
        f"-p {port}", "-c listen_addresses=''", f"-c unix_socket_directories={sockets}",
        "-c synchronous_standby_names=''", "-c primary_conninfo=''", "-c primary_slot_name=''",
        f"-c restore_command='{WRAPPER} wal-restore -- %f %p'",
        target_opts, "-c recovery_target_action=promote",
    ]


def scratch_options(target: datetime | None, port: int = SCRATCH_PORT, sockets: str = SCRATCH_SOCKETS) -> str:
    """The scratch server's options: recovery as above, and no archiving (it is not the cluster), small."""
    return " ".join([*recovery_options(target, port, sockets), "-c archive_mode=off", "-c shared_buffers=64MB",
                     "-c hot_standby=on", "-c cluster_name=roadie-scratch"])


def recover_lines(backup_id: str, datadir: str, opts: str, port: int, sockets: str) -> list[str]:
    """Shell lines: restore BACKUP_ID into DATADIR (absent or empty), start it with OPTS and wait until
    recovery has ended in a promotion (the server takes writes)."""
    return [
        f"install -d -o postgres -g postgres -m 0700 {datadir} {sockets}",
        barman("restore", args=(backup_id, datadir)),
        # A backup taken on a member carries its standby marker and Patroni's recovery settings.
        f"rm -f {datadir}/standby.signal {datadir}/postmaster.pid && touch {datadir}/recovery.signal",
        # A member that was ever a replica has recovery_target* = '' in Patroni's postgresql.conf, and
        # PostgreSQL 15 refuses any file setting of a second target beside ours ("multiple recovery targets").
        f"sed -i '/^recovery_target/d' {datadir}/postgresql.conf {datadir}/postgresql.auto.conf",
        f"chown -R postgres:postgres {datadir}",
        # pg_ctl only says "Examine the log output": the server's own last lines say why.
        f"{AS_POSTGRES} {BINDIR}/pg_ctl -D {datadir} -l {datadir}.log -w -t 900 -s -o {shlex.quote(opts)} start "
        f"|| {{ grep -E 'FATAL|PANIC|ERROR' {datadir}.log | tail -3 >&2; exit 1; }}",
        # Recovery ends with a promotion: wait until the server takes writes.
        # A server that stops (recovery failed) ends the wait at once, with its own reason.
        "promoted=",
        f"for i in $(seq 900); do [ \"$({AS_POSTGRES} psql -X -At -h {sockets} -p {port} -d postgres "
        "-c 'SELECT pg_is_in_recovery()' 2>/dev/null)\" = f ] && { promoted=1; break; }; "
        f"{AS_POSTGRES} {BINDIR}/pg_ctl -D {datadir} status >/dev/null || break; sleep 1; done",
        f"[ -n \"$promoted\" ] || {{ echo 'recovery failed or did not end in 900 s:' >&2; "
        f"grep -E 'FATAL|PANIC' {datadir}.log | tail -3 >&2; exit 1; }}",
    ]


def restore_script(backup_id: str, target: datetime | None, port: int = SCRATCH_PORT,
                   datadir: str = SCRATCH_DIR, sockets: str = SCRATCH_SOCKETS) -> str:
    """Restore BACKUP_ID into DATADIR and recover it in a scratch server on PORT (unix socket only),
    to TARGET or to the backup's end. Never touches the cluster's data directory or port."""
    return "\n".join(["set -eu", stop_script(datadir, sockets),
                      *recover_lines(backup_id, datadir, scratch_options(target, port, sockets), port, sockets)])


def stop_script(datadir: str = SCRATCH_DIR, sockets: str = SCRATCH_SOCKETS) -> str:
    """Stop a scratch server if one runs and remove its files (idempotent)."""
    return (f"if [ -f {datadir}/postmaster.pid ]; then {AS_POSTGRES} {BINDIR}/pg_ctl -D {datadir} -s -m fast "
            f"-w stop || true; fi; rm -rf {datadir} {datadir}.log {sockets}")


# Exact row count and an md5 of every row (in a stable order) of every user table.
VERIFY_SQL = ("SELECT format('SELECT %L, count(*), md5(coalesce(string_agg(t::text, chr(10) ORDER BY t::text), %L)) "
              "FROM %I.%I t', n.nspname || '.' || c.relname, '', n.nspname, c.relname) "
              "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
              "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
              "AND n.nspname NOT LIKE 'pg_%' ORDER BY 1 \\gexec")


def verify_cmd(db: str, port: int = SCRATCH_PORT, sockets: str = SCRATCH_SOCKETS) -> str:
    """Row count and md5 of every user table of `db` in the scratch server."""
    return (f"echo {shlex.quote(VERIFY_SQL)} | {AS_POSTGRES} psql -X -At -F '|' -v ON_ERROR_STOP=1 "
            f"-h {sockets} -p {port} -d {db}")


def parse_verify(text: str) -> dict[str, dict]:
    out = {}
    for line in text.strip().splitlines():
        name, count, digest = line.split("|")
        out[name] = {"rows": int(count), "md5": digest}
    return out


ARCHIVER_SQL = ("SELECT coalesce(last_archived_wal, ''), "
                "coalesce(extract(epoch FROM now() - last_archived_time)::int::text, ''), failed_count, "
                "coalesce(last_failed_wal, ''), pg_walfile_name(pg_current_wal_lsn()) FROM pg_stat_archiver")


def archiver_cmd() -> str:
    return f"{AS_POSTGRES} psql -X -At -F '|' -c {shlex.quote(ARCHIVER_SQL)}"


def parse_archiver(text: str) -> dict:
    last, age, failed, last_failed, current = text.strip().split("|")
    return {"last_archived_wal": last or None, "archive_age_s": int(age) if age else None,
            "failed_count": int(failed), "last_failed_wal": last_failed or None, "current_wal": current}


def switch_wal_cmd() -> str:
    """Close the current WAL segment so everything written until now is archived; its name is the last line.

    First a transaction that commits: recovery to a time stops at the first commit after it, and
    PostgreSQL refuses to end a recovery that never saw one ("recovery ended before configured
    recovery target was reached"), as on a quiet database restored to a moment ago."""
    return (f"{AS_POSTGRES} psql -X -At -v ON_ERROR_STOP=1 -c 'SELECT txid_current()' "
            "-c 'SELECT pg_walfile_name(pg_switch_wal())'")


def backup_age(backups: list[Backup], now: datetime) -> float | None:
    ends = [b.ended for b in backups if b.status == "DONE" and b.ended]
    return round((now - max(ends)).total_seconds(), 1) if ends else None
