"""On-call tasks for Fabric users: `fab --list`, then `fab health`, `fab restart catalog`, ...

Each task is a thin wrapper over `roadie ops` (one implementation, two entry
points): the same inventory selection (a group name expands to its hosts, an
unknown or empty one is an error), pinned host keys, locks, audit records,
`--plan`, production confirmation (`--yes`) and exit codes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fabric import task
from invoke.exceptions import Exit

sys.path.insert(0, str(Path(__file__).resolve().parent / "cli"))  # a checkout without `pip install -e .`


def _roadie(*args: str, env: str = "local", output: str = "text") -> None:
    """Run `roadie --env ENV ARGS`; a non-zero exit ends the task with the same code (its error already printed)."""
    from roadie.main import main

    code = main.main(args=["--env", env, "--output", output, *args], prog_name="roadie", standalone_mode=False)
    if code:
        raise Exit(code=code)


def _flags(**flags) -> list[str]:
    """Command-line flags of the options given: None (not given) and False are left out; any other value,
    '' included, is passed on, so roadie refuses an empty selection (`--hosts ''`) instead of it
    silently meaning every host."""
    out: list[str] = []
    for name, value in flags.items():
        opt = "--" + name.replace("_", "-")
        if value is True:
            out.append(opt)
        elif value is not None and value is not False:
            out += [opt, str(value)]
    return out


@task(help={"service": "catalog or streaming", "env": "inventory (default local)", "batch_size": "N or N%",
            "plan": "print the batches, change nothing", "yes": "no prompt (production)", "message": "why"})
def restart(c, service, env="local", batch_size=None, message=None, plan=False, yes=False, output="text"):
    """Rolling restart of a service through the deploy engine (drain, restart, health gate); no version change."""
    _roadie("ops", "restart", service, *_flags(batch_size=batch_size, message=message, plan=plan, yes=yes),
            env=env, output=output)


@task(help={"host": "a service host of the inventory", "env": "inventory (default local)"})
def drain(c, host, env="local", message=None, plan=False, yes=False, output="text"):
    """Take a host out of rotation (refused below the tier's minimum healthy hosts)."""
    _roadie("ops", "drain", host, *_flags(message=message, plan=plan, yes=yes), env=env, output=output)


@task(help={"host": "a service host of the inventory", "env": "inventory (default local)"})
def enable(c, host, env="local", message=None, plan=False, yes=False, output="text"):
    """Put a drained host back in rotation and wait until the balancer sees it UP."""
    _roadie("ops", "enable", host, *_flags(message=message, plan=plan, yes=yes), env=env, output=output)


@task(help={"service": "catalog or streaming", "state": "on or off", "retry_after": "seconds (Retry-After)"})
def maintenance(c, service, state, env="local", retry_after=None, message=None, plan=False, yes=False, output="text"):
    """Maintenance mode of a service: the balancer answers 503 with Retry-After (on), or serves again (off)."""
    _roadie("ops", "maintenance", service, state,
            *_flags(retry_after=retry_after, message=message, plan=plan, yes=yes), env=env, output=output)


@task(help={"disk_threshold": "percent used that needs a human (default 85)"})
def health(c, env="local", disk_threshold=None, output="text"):
    """Health report of the whole environment; exits non-zero when something needs a human."""
    _roadie("ops", "health", *_flags(disk_threshold=disk_threshold), env=env, output=output)


@task(help={"tier": "a group or host (comma-separated)", "since": "journalctl time ('1h ago')",
            "lines": "last N lines per host", "grep": "regular expression", "follow": "until Ctrl-C"})
def logs(c, tier, env="local", since=None, lines=None, grep=None, follow=False, output="text"):
    """A tier's journal from every host at once, each line prefixed with its host."""
    _roadie("ops", "logs", tier, *_flags(since=since, lines=lines, grep=grep, follow=follow), env=env, output=output)


@task(help={"clean": "prune old releases and vacuum journals", "hosts": "groups or hosts, comma-separated",
            "keep": "releases kept per service (default 5)", "journal_size": "journal bound (default 200M)"})
def disk(c, clean=False, hosts=None, env="local", keep=None, journal_size=None, message=None, plan=False, yes=False,
         output="text"):
    """Disk usage per host and mount with the top consumers; --clean frees old releases and journals."""
    args = ["clean"] if clean else []
    extra = _flags(keep=keep, journal_size=journal_size, message=message, plan=plan, yes=yes) if clean else []
    _roadie("ops", "disk", *args, *_flags(hosts=hosts), *extra, env=env, output=output)


@task(name="exec", help={"group": "a group or host (comma-separated)", "cmd": "the shell command to run"})
def exec_(c, group, cmd, env="local", timeout=None, message=None, plan=False, yes=False, output="text"):
    """Run a shell command on every host of a group, output grouped by host."""
    _roadie("ops", "exec", group, *_flags(timeout=timeout, message=message, plan=plan, yes=yes), "--", cmd,
            env=env, output=output)


@task(name="db-status")
def db_status(c, env="local", output="text"):
    """The database tier: members, roles, lag (roadie db status)."""
    _roadie("db", "status", env=env, output=output)


@task(name="db-switchover", help={"to": "the standby to promote (default: the synchronous standby)"})
def db_switchover(c, to=None, env="local", plan=False, yes=False, output="text"):
    """Planned switchover of the database primary to a standby (roadie db switchover)."""
    _roadie("db", "switchover", *_flags(to=to, plan=plan, yes=yes), env=env, output=output)


@task(name="db-backup")
def db_backup(c, env="local", plan=False, output="text"):
    """A base backup of the database now, to the backups bucket (roadie db backup)."""
    _roadie("db", "backup", *_flags(plan=plan), env=env, output=output)


@task(name="db-backups")
def db_backups(c, env="local", output="text"):
    """The base backups in the bucket: id, end time, size, WAL range (roadie db backups)."""
    _roadie("db", "backups", env=env, output=output)


@task(name="db-restore", help={"backup": "a backup id (roadie db backups)", "time": "ISO 8601, UTC if no zone",
                               "into": "scratch (default) or live (needs --force and --confirm roadie-catalog)"})
def db_restore(c, backup=None, time=None, into="scratch", keep=False, force=False, confirm=None, env="local",
               plan=False, output="text"):
    """Point-in-time restore: into a scratch server and verify, or over the live cluster (roadie db restore)."""
    _roadie("db", "restore", *_flags(backup=backup, time=time, into=into, keep=keep, force=force, confirm=confirm,
                                     plan=plan), env=env, output=output)
