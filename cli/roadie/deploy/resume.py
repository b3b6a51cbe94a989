"""What a deploy finds left behind by the one before it, and what it may do about it: the resume policy.

A deploy whose process died leaves its journal in the deploys table and, for
one lease, its lock. While that lease runs nobody may settle its hosts (the
deploy may be alive); once it lapses, `--resume` finishes it and `rollback`
undoes it, and a plain deploy is refused over its drained hosts. A deploy that
finds every host already on its version says "nothing to do" only when each
is in service and no journal is open.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from roadie.environment import Environment
from roadie.errors import BadInput
from roadie.state import journal


def alive(environment: Environment, service: str) -> bool:
    """Someone holds the service's lock with a lease that has not lapsed."""
    holder = environment.lock(service).holder()
    return holder is not None and holder.expires_at > time.time()


@dataclass(frozen=True)
class Found:
    """What the journal says before a deploy, rollback or resume starts."""

    settle: journal.Entry | None  # a dead deploy's journal: its hosts are settled first
    version: str | None  # the version to go to (a rollback of a dead deploy: where it started)
    to_previous: bool
    running: journal.Entry | None = None  # the journal of a deploy whose lease still runs


def unfinished(environment: Environment, service: str, version: str | None, operation: str, resume: bool,
               to_previous: bool) -> Found:
    """The journal of a dead deploy to settle first, the version to go to, and the journal of a deploy whose
    lease still runs (dead or not, nobody may settle it yet); refusals are BadInput."""
    environment.stack.service(service)
    entry = environment.journal(service).read()
    if resume:
        journal.check_resume(entry, service, environment.name, version, operation)
    if entry is None:
        return Found(None, version, to_previous)
    if not resume and alive(environment, service):
        return Found(None, version, to_previous, running=entry)  # it still runs, or its lease has not lapsed
    if operation == "rollback" and to_previous:
        froms = entry.from_versions()
        if len(froms) != 1:
            raise BadInput(f"The unfinished {entry.operation} of {service} started from {', '.join(sorted(froms))}; "
                           "name the version to return to with --to.")
        return Found(entry, froms.pop(), False)
    if operation == "deploy" and not resume:
        raise BadInput(f"{service} has an {entry.describe()}; finish it with `roadie deploy {service} "
                       f"{entry.version} --resume` or undo it with `roadie rollback {service}`.")
    return Found(entry, version, to_previous)


def nothing_left(prepared, running: journal.Entry | None) -> None:
    """Every host is on the version: "nothing to do" only when each is also in service and no journal is
    open; otherwise BadInput saying what is unfinished and how to finish it."""
    svc, version = prepared.service.name, prepared.version
    if running is not None:
        raise BadInput(f"every {svc} host is on {version}, but the journal holds an {running.describe()} whose "
                       f"lock lease still runs: let it finish, or if its process died, `roadie deploy {svc} "
                       f"{running.version} --resume --lock-wait 90` (`roadie lock status {svc}` shows the holder).")
    out = {n: s.status for n, s in prepared.servers.items() if n in prepared.deps.hosts and not s.up}
    if out:
        states = ", ".join(f"{n} ({st})" for n, st in out.items())
        raise BadInput(f"every {svc} host is on {version}, but out of service in the balancer: {states}; "
                       + "; ".join(f"`roadie ops enable {n}`" for n in out) + " once it is healthy.")
