"""A deploy or rollback from start to end, as named steps: preflight, plan, lock, stage, migrate, roll, audit.

`prepare` changes nothing (inputs, the tier's facts, the balancer's view, the
plan, the artifacts); `execute` holds the lock, the journal and the audit
record around the rollout. The CLI (cli/deploy.py) parses and prints;
`release install` and `roadie ops restart` go through the same steps, so one
code path switches releases. Everything of the environment comes from one
Environment (roadie.environment), built once by the caller.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from roadie import model
from roadie.deploy import canary, engine, preflight
from roadie.deploy import plan as planner
from roadie.environment import Environment
from roadie.errors import BadInput, OperationFailed
from roadie.events import Event, Kind, event
from roadie.inventory import Host
from roadie.release import fetch, versions
from roadie.state import audit, journal, table

RESTART = "restart"


@dataclass
class Options:
    batch: str | None = None
    canary: int | None = None
    max_fail: int = 0
    drain_timeout: int | None = None
    lock_wait: float = 0
    message: str = ""
    hosts: list[str] | None = None  # a subset of the tier (release install --hosts)
    bring_up: bool = False  # every host at once, no balancer: first install only
    health_seconds: int = 60
    bake: int | None = None  # seconds the canary serves before it is judged (deploy/canary.py)
    max_error_rate: float | None = None
    max_latency_ratio: float | None = None


@dataclass
class Prepared:
    environment: Environment
    operation: str  # deploy | rollback | install | restart
    service: model.Tier
    version: str
    plan: planner.Plan
    deps: engine.Deps
    facts: dict[str, dict]
    options: Options
    tarballs: dict[str, tuple[Path, str]] = field(default_factory=dict)  # version -> (path, sha256)
    alongside: object = None  # what prepare's `alongside` read returned
    servers: dict = field(default_factory=dict)  # the balancer's view of the tier at preflight, by host

    @property
    def env(self) -> str:
        return self.environment.name


# -- prepare: everything that changes nothing ------------------------------------------------------

def tier(environment: Environment, svc: model.Tier, only: list[str] | None) -> list[Host]:
    """The service's hosts, or the `only` ones of them (release install --hosts); bad names are BadInput."""
    hosts = environment.tier(svc)
    if only is not None:
        if not only:
            raise BadInput("--hosts names no host; leave it out to mean every host.")
        names = {h.name for h in hosts}
        unknown = [n for n in only if n not in names]
        if unknown:
            raise BadInput(f"{', '.join(unknown)} not in the {svc.group} group ({', '.join(sorted(names))}).")
        hosts = [h for h in hosts if h.name in only]
    return hosts


def _check_version(version: str) -> None:
    if version.strip().lower() in ("latest", "current", "head"):
        raise BadInput(f"'{version}' is not a release: name the version to deploy (roadie release list SERVICE).")
    versions.parse(version)


def _service(environment: Environment, service_name: str, version: str | None, opts: Options) -> model.Tier:
    """The service as this deploy sees it (its drain timeout overridden); bad inputs are BadInput."""
    svc = environment.stack.service(service_name)
    if version is not None:
        _check_version(version)
    if opts.drain_timeout is not None:
        if not 0 <= opts.drain_timeout <= 3600:
            raise BadInput("--drain-timeout must be between 0 and 3600 seconds.")
        svc = svc.model_copy(update={"drain_timeout": opts.drain_timeout})
    return svc


def _deps(environment: Environment, svc: model.Tier, hosts: list[Host], opts: Options,
          emit: Callable[[Event], None]) -> engine.Deps:
    """What the engine works through: the environment's transport and balancer (none for a bring-up), and the
    canary's judge when the canary bakes."""
    bake_rules = canary.rules(opts.canary, opts.bake, opts.max_error_rate, opts.max_latency_ratio)
    balancer = None
    if bake_rules and svc.balancer is None:
        raise BadInput(f"--bake judges the canary on the balancer's per-server figures; {svc.name} is not behind "
                       "the balancer (its model entry has no balancer section).")
    if not opts.bring_up and svc.balancer is not None:  # a tier behind no balancer: no drain, no backend to read
        balancer = environment.balancer
        if bake_rules and balancer.kind != "haproxy":
            raise BadInput(f"--bake judges the canary on HAProxy's per-server figures; the {environment.name} "
                           f"balancer is {balancer.kind} (CloudWatch target metrics are not read yet).")
        # ELBv2 drains for its target group's delay: the drain wait lasts at least that long
        svc = svc.model_copy(update={"drain_timeout": max(svc.drain_timeout, balancer.drain_seconds(svc.backend))})
    deps = engine.Deps(service=svc, hosts={h.name: h for h in hosts}, transport=environment.transport,
                       balancer=balancer, emit=emit, health_seconds=opts.health_seconds)
    if bake_rules:
        deps.judge = lambda batch, old: canary.bake(lambda: balancer.servers(svc.backend), deps.sleep, batch, old,
                                                    bake_rules)
    return deps


def _preflight(environment: Environment, deps: engine.Deps, version: str | None, operation: str,
               artifact_source, alongside) -> tuple[dict, dict, object, preflight.Tried | None]:
    """The reads, at once (deploy/preflight.py): each host's facts, the balancer's view of the tier, and on one
    thread every AWS read (the caller's `alongside`, the artifact's published checksum). An error of the facts
    comes first, then the balancer's, then the table's or the artifact's."""
    svc, names = deps.service, list(deps.hosts)

    def read_facts() -> dict[str, dict]:
        try:
            return engine.host_facts(deps, names)
        except OperationFailed as exc:
            raise BadInput(f"Preflight: {exc.message}; nothing was changed.") from None

    def read_balancer() -> dict:
        if not deps.balancer:
            return {}
        try:
            servers = deps.balancer.servers(svc.backend)
        except OperationFailed as exc:
            raise BadInput(f"Preflight: the balancer did not answer: {exc.message}; nothing was changed.") from None
        missing = [n for n in names if n not in servers]
        if missing:
            raise BadInput(f"Preflight: {', '.join(missing)} not in the balancer's {svc.backend} backend; "
                           "converge the load balancer first.")
        return servers

    def read_aws() -> tuple[object, preflight.Tried | None]:
        """One thread for every AWS client this process makes: boto3's default session makes them one at a time."""
        side = alongside() if alongside else None
        sha = None  # the artifact's published checksum, read before the facts say whether any host needs it
        if version is not None and artifact_source is None and operation != RESTART:
            sha = preflight.tried(lambda: fetch.published_sha(environment, svc.name, version))()
        return side, sha

    facts, servers, (side, early_sha) = preflight.together(read_facts, read_balancer, read_aws)
    return facts, servers, side, early_sha


def _targets(svc: model.Tier, facts: dict[str, dict], to_previous: bool) -> dict[str, str] | None:
    """With to_previous (a rollback): each host's previous release, or BadInput for a host that has none."""
    if not to_previous:
        return None
    to = {}
    for n, f in facts.items():
        if not f["previous"]:
            raise BadInput(f"{n} has no previous {svc.name} release to roll back to; use --to VERSION.")
        to[n] = f["previous"]
    return to


def _artifacts(prepared: Prepared, early_sha: preflight.Tried | None, artifact_source) -> None:
    """The artifact of each version some host lacks on disk: a local build (release install) or the published
    one, downloaded once and verified."""
    p, svc = prepared.plan, prepared.service
    wanted = {m.to_version for m in p.moves.values() if m.to_version not in prepared.facts[m.host]["releases"]}
    for ver in sorted(wanted):
        if artifact_source:
            prepared.tarballs[ver] = artifact_source(prepared.environment, svc.name, ver)
        else:
            sha = early_sha.get() if early_sha and ver == prepared.version else None
            prepared.tarballs[ver] = fetch.fetch_published(prepared.environment, svc.name, ver, published=sha)


def prepare(environment: Environment, service_name: str, version: str | None, opts: Options, operation: str,
            emit: Callable[[Event], None], to_previous: bool = False, artifact_source=None,
            alongside: Callable[[], object] | None = None) -> Prepared:
    """Everything that changes nothing: inputs, facts, plan, artifact. Errors here are BadInput."""
    svc = _service(environment, service_name, version, opts)
    deps = _deps(environment, svc, tier(environment, svc, opts.hosts), opts, emit)
    svc = deps.service
    facts, servers, side, early_sha = _preflight(environment, deps, version, operation, artifact_source, alongside)
    current = {n: f["current"] for n, f in facts.items()}
    if operation == RESTART:
        return dataclasses.replace(_prepare_restart(environment, svc, opts, deps, facts, current), alongside=side,
                                   servers=servers)
    to = _targets(svc, facts, to_previous)
    if to is not None:
        version = "previous"
    p = planner.build(svc.name, version, current, to=to, batch=opts.batch, canary=opts.canary,
                      max_fail=opts.max_fail, min_healthy=svc.min_healthy, drain_timeout=svc.drain_timeout,
                      bring_up=opts.bring_up)
    prepared = Prepared(environment=environment, operation=operation, service=svc, version=version, plan=p,
                        deps=deps, facts=facts, options=opts, alongside=side, servers=servers)
    _artifacts(prepared, early_sha, artifact_source)
    return prepared


def _prepare_restart(environment: Environment, svc: model.Tier, opts: Options, deps: engine.Deps,
                     facts: dict[str, dict], current: dict[str, str | None]) -> Prepared:
    """A rolling restart: every host "moves" to the release it runs, so the engine drains, restarts,
    health-checks and re-enables it with no version change (nothing to fetch, stage or migrate)."""
    bare = [n for n, v in current.items() if not v]
    if bare:
        raise BadInput(f"{', '.join(bare)} has no {svc.name} release installed; nothing to restart "
                       f"(`roadie release install {svc.name} VERSION` first).")
    p = planner.build(svc.name, RESTART, {n: None for n in current}, to=current, batch=opts.batch,
                      canary=opts.canary, max_fail=opts.max_fail, min_healthy=svc.min_healthy,
                      drain_timeout=svc.drain_timeout)
    p = dataclasses.replace(p, moves={n: planner.Move(n, current[n], current[n]) for n in p.moves})
    return Prepared(environment=environment, operation=RESTART, service=svc,
                    version="+".join(sorted(set(current.values()))), plan=p, deps=deps, facts=facts, options=opts)


# -- settle: a dead deploy's hosts back in service ---------------------------------------------------

def settle(p: Prepared, entry: journal.Entry) -> list[str]:
    """After a deploy died: each host it left unsettled is restarted on the release it has, checked and enabled.

    Under the service's lock; the tier is then consistent for the resumed deploy
    or rollback to plan from. Returns the hosts put back in service.
    """
    d, svc, environment = p.deps, p.service, p.environment
    lock = environment.lock(svc.name)
    lock.acquire(table.actor(), "resume", p.options.message, wait=p.options.lock_wait)
    try:
        view = d.balancer.servers(svc.backend) if d.balancer else {}
        unsettled = set(entry.unsettled())
        out = [n for n in d.hosts if n in unsettled or (n in entry.moves and n in view and not view[n].up)]
        for name in out:
            engine._switch_and_check(d, name, p.facts[name]["current"])
            if d.balancer:
                engine.enable(d, name)
            d.emit(event(Kind.RESUME_SETTLED, f"  {name}: {p.facts[name]['current']} healthy and in service",
                         host=name, version=p.facts[name]["current"]))
        environment.audit("settle", "ok", service=svc.name, version=entry.version, message=p.options.message,
                          settled=out, journal=entry.as_dict())
        environment.journal(svc.name).end()  # consistent again; the deploy or rollback that follows has its own
        return out
    finally:
        lock.release()


# -- execute: lock, journal and audit around the rollout ---------------------------------------------

@dataclass
class _Run:
    """One execution's state, shared by the rollout and the bookkeeping around it."""

    started: float
    results: dict[str, engine.HostResult]
    outcome: engine.Outcome
    lock: object = None
    log: journal.Journal | None = None
    settled: bool = False  # the engine ended by itself (not killed, no unexpected error): the journal is done


@contextlib.contextmanager
def _held(p: Prepared) -> Iterator[_Run]:
    """The lock taken and renewed and the journal begun for the rollout inside; on the way out, whatever
    happened: the audit record and the journal (ended only when the engine ended by itself), old releases
    pruned after a good deploy, the lock released last, the transport closed.

    A lock lost on the way (its lease lapsed with no renewal succeeding, or
    another deploy holds it now) stops the rollout where a stop request would:
    hosts in progress finish their steps, no new host leaves service. From then
    on this deploy changes nothing more: nothing is reverted or pruned (the new
    holder drives the tier), the journal is left as it stood, neither written
    nor ended (as after a killed deploy: the new holder settles from it), and
    the audit record says what was done and that the lock was lost.
    """
    d, svc, plan, environment = p.deps, p.service, p.plan, p.environment
    actor = table.actor()
    results = {n: engine.HostResult(n, m.from_version, m.to_version, previous=p.facts[n]["previous"])
               for n, m in plan.moves.items()}
    run = _Run(time.time(), results, engine.Outcome("failed", results, "did not start"))

    def lost(why: str) -> None:  # from the lock's thread; emit and log are set before renewal starts
        d.stop_reason = f"the {svc.name} lock was lost: {why}"
        d.stop.set()
        d.emit = emit  # no host's step is journalled after this: the journal is the new holder's
        run.log.abandon()
        emit(event(Kind.LOCK_LOST, f"the {svc.name} lock was lost: {why}; no new host starts and none is put back",
                   service=svc.name, reason=why))

    run.lock = lock = environment.lock(svc.name, on_lost=lost)
    lock.acquire(actor, p.operation, p.options.message, wait=p.options.lock_wait,
                 on_wait=lambda h: d.emit(event(Kind.LOCK_WAITING, holder=h.as_dict(),
                                                text=f"waiting for the {svc.name} lock: {h.describe()}")))
    run.started = time.time()
    run.log = environment.journal(svc.name)  # each host's progress, for a resume if this process dies
    try:
        run.log.begin(p.operation, p.version, {n: (m.from_version, m.to_version) for n, m in plan.moves.items()},
                      actor["who"])
    except BaseException:  # a dead deploy's hosts are not settled yet: nothing starts
        lock.release()
        raise
    emit, d.emit = d.emit, run.log.recording(d.emit)
    lock.start_renewing()
    d.emit(event(f"{p.operation}.started", f"{p.operation} {svc.name} {p.version} in {p.env}: "
                 f"{len(plan.moves)} host(s) in {len(plan.batches)} batch(es)", service=svc.name, version=p.version,
                 env=p.env, batches=[list(b.hosts) for b in plan.batches], unchanged=list(plan.unchanged)))
    try:
        yield run
    finally:
        d.emit = emit
        _finish(p, run, actor)


def _finish(p: Prepared, run: _Run, actor: dict) -> None:
    """The audit record, the journal and the prune together, then the lock released, then the last events."""
    d, svc, plan, results, lock = p.deps, p.service, p.plan, run.results, run.lock
    for r in results.values():
        if r.result == "pending":
            r.result = "untouched"
    why = lock.loss() if lock.lost else None  # who holds it now, read again if the loss did not say
    if why:  # not ours any more: this deploy stops here, whatever the engine's result was
        failed_first = f"; before that it had failed: {run.outcome.error}" if run.outcome.result == "failed" else ""
        run.outcome = engine.Outcome("interrupted", results, f"the {svc.name} lock was lost: {why}{failed_first}",
                                     run.outcome.batches_done, run.outcome.verdict)
    outcome = run.outcome
    doc = {"operation": p.operation, "service": svc.name, "version": p.version, **actor,
           "message": p.options.message, "started_at": audit.iso(run.started),
           "seconds": round(time.time() - run.started, 3), **outcome.as_dict(),
           **({"lock_lost": why} if why else {}),
           "plan": {"batches": [list(b.hosts) for b in plan.batches], "max_fail": plan.max_fail,
                    "canary": p.options.canary, "bake": p.options.bake, "unchanged": list(plan.unchanged)}}

    def bookkeeping() -> None:
        p.environment.record(doc)
        if why:  # the journal is left as it stood at the loss (its flusher already stopped)
            return
        run.log.close()
        if run.settled:
            run.log.end()

    # Old releases are pruned while the audit record and the journal are written (both under the lock);
    # the lock is released last, after both.
    prune = run.settled and not why and outcome.result == "ok" and p.operation != RESTART
    try:
        preflight.together(bookkeeping, lambda: engine.prune(d, plan.hosts) if prune else None)
    finally:
        lock.release()
        d.transport.close()
    if why:
        said = {"ok": "moved", "reverted": "put back", "failed": "failed", "untouched": "untouched"}
        where = "; ".join(f"{', '.join(names)} {said[k]}" for k in said
                          if (names := [n for n, r in results.items() if r.result == k]))
        d.emit(event(Kind.DEPLOY_LOCK_LOST, f"{p.operation} of {svc.name} {p.version} stopped, {outcome.error}. "
                     f"{where}; it reverts nothing and leaves its journal as it stood: whoever holds the lock "
                     "drives the tier now; audited.", service=svc.name, version=p.version, reason=why))
    d.emit(event(f"{p.operation}.finished", f"{p.operation} {svc.name} {p.version}: {outcome.result} in "
                 f"{doc['seconds']:.1f} s", service=svc.name, version=p.version, result=outcome.result,
                 error=outcome.error, seconds=doc["seconds"]))


def _rollout(p: Prepared, run: _Run) -> engine.Outcome:
    """Stage, migrate once, roll batch by batch; a failure puts back what this deploy changed (a restart changed
    no release: nothing to undo; a lost lock: nothing more is ours to change)."""
    d, svc, plan, results, lock = p.deps, p.service, p.plan, run.results, run.lock
    undo = p.operation != RESTART
    try:
        for ver, (path, sha) in p.tarballs.items():
            if lock.lost:
                break
            engine.stage(d, [h for h, m in plan.moves.items() if m.to_version == ver], ver, path, sha, p.facts)
        if svc.migrations and plan.moves and p.operation not in ("rollback", RESTART) and not lock.lost:
            engine.migrate(d, plan.hosts[0], p.version)
        outcome = engine.roll(d, plan, results)  # a lost lock stops it at the next batch (d.stop_reason)
        if outcome.result == "failed" and undo and not lock.lost:
            engine.revert(d, plan, results)
    except OperationFailed as exc:
        outcome = engine.Outcome("failed", results, exc.message, run.outcome.batches_done)
        if undo and not lock.lost:
            engine.revert(d, plan, results)
    run.settled = True
    return outcome


def execute(p: Prepared) -> engine.Outcome:
    """Lock, stage, migrate, roll; revert on failure; audit; release the lock."""
    with _held(p) as run:
        run.outcome = _rollout(p, run)
    return run.outcome


def stop_on_signals(stop: threading.Event, emit: Callable[[Event], None]):
    """SIGINT/SIGTERM set `stop` (hosts in progress finish); returns a function restoring the old handlers."""
    import signal

    def handler(signum, _frame):
        if not stop.is_set():
            emit(event(Kind.INTERRUPT, signal=signal.Signals(signum).name,
                       text="stopping: hosts in progress finish, no new host starts"))
        stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    return lambda: [signal.signal(s, h) for s, h in old.items()]
