"""A deploy or rollback from start to end: preflight, plan, lock, stage, migrate, roll, audit.

The CLI (cli/deploy.py) parses and prints; `release install` uses the same
functions, so there is one code path that switches releases.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from roadie import inventory, model, paths
from roadie.deploy import audit, canary, engine, journal, preflight, table
from roadie.deploy import plan as planner
from roadie.deploy.lock import Lock
from roadie.errors import BadInput, OperationFailed
from roadie.events import Event, event
from roadie.release import artifact, versions


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
    env: str
    operation: str  # deploy | rollback | install
    service: model.Service
    version: str
    plan: planner.Plan
    deps: engine.Deps
    facts: dict[str, dict]
    options: Options
    tarballs: dict[str, tuple[Path, str]] = field(default_factory=dict)  # version -> (path, sha256)
    alongside: object = None  # what prepare's `alongside` read returned
    servers: dict = field(default_factory=dict)  # the balancer's view of the tier at preflight, by host


def tier(inv: inventory.Inventory, svc: model.Service, only: list[str] | None) -> list[inventory.Host]:
    hosts = inv.group(svc.group)
    if not hosts:
        raise BadInput(f"The {inv.env} inventory has no '{svc.group}' group of {svc.name} hosts.")
    if only is not None:
        if not only:
            raise BadInput("--hosts names no host; leave it out to mean every host.")
        names = {h.name for h in hosts}
        unknown = [n for n in only if n not in names]
        if unknown:
            raise BadInput(f"{', '.join(unknown)} not in the {svc.group} group ({', '.join(sorted(names))}).")
        hosts = [h for h in hosts if h.name in only]
    return hosts


@functools.lru_cache(maxsize=4)
def _s3(env: str):
    """One S3 client per environment: made once (boto3 clients cost ~0.1 s to make), used from any thread."""
    from roadie import aws

    return aws.env_client(env, "s3")


def published_sha(env: str, service: str, version: str) -> str:
    """The sha256 the environment published for the artifact; BadInput if it was never published."""
    from botocore.exceptions import BotoCoreError, ClientError

    from roadie import aws
    from roadie.release import publish

    try:
        head = _s3(env).head_object(Bucket=aws.bucket(env, "artifacts"), Key=publish.keys(service, version)["tarball"])
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            raise BadInput(f"{service} {version} was never published in {env}: "
                           f"`roadie release publish {service} {version}` first.") from None
        raise OperationFailed(f"The {env} artifacts bucket could not be read: {exc}") from None
    except BotoCoreError as exc:
        raise OperationFailed(f"The {env} AWS API did not answer: {exc}") from None
    return head.get("Metadata", {}).get("sha256", "")


def fetch_published(env: str, service: str, version: str, published: str | None = None) -> tuple[Path, str]:
    """The published artifact, downloaded once into dist/ and checked against its published sha256.

    `published`: that sha256 when preflight has already read it.
    """
    from roadie import aws
    from roadie.release import publish

    if published is None:
        published = published_sha(env, service, version)
    path = artifact.artifact_path(service, version, paths.DIST)
    sha = artifact.sha256_file(path) if path.is_file() else None
    if sha != published:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".download")
        _s3(env).download_file(aws.bucket(env, "artifacts"), publish.keys(service, version)["tarball"], str(tmp))
        tmp.replace(path)
        sha = artifact.sha256_file(path)
    if sha != published:
        raise BadInput(f"{path.name} has sha256 {sha[:12]}… but {env} published {published[:12]}…; "
                       "the artifact in the bucket or its metadata was changed.")
    artifact.verify(path, service, version)
    return path, sha


def transport_for(inv: inventory.Inventory):
    """The transport the inventory names (roadie_connection, default ssh)."""
    from roadie import transport

    return transport.for_env(inv.env, str(inv.env_vars.get("roadie_connection", "ssh")))


def balancer_for(inv: inventory.Inventory, transport, stack: model.Stack):
    """The balancer the inventory names (roadie_balancer, default haproxy)."""
    from roadie.deploy.balancer import HAProxy

    kind = str(inv.env_vars.get("roadie_balancer", "haproxy"))
    if kind == "haproxy":
        return HAProxy(transport, inv.group(stack.loadbalancer.group), stack.loadbalancer.admin_socket)
    if kind == "elbv2":
        from roadie.deploy.balancer_elbv2 import ELBv2

        hosts = [h for svc in stack.services.values() for h in inv.group(svc.group)]
        return ELBv2(inv.env, hosts, names=inv.env_vars.get("roadie_target_groups"))
    raise BadInput(f"The {inv.env} inventory's balancer is '{kind}'; roadie drains hosts in 'haproxy' or 'elbv2'.")


def _check_version(version: str) -> None:
    if version.strip().lower() in ("latest", "current", "head"):
        raise BadInput(f"'{version}' is not a release: name the version to deploy (roadie release list SERVICE).")
    versions.parse(version)


def prepare(env: str, service_name: str, version: str | None, opts: Options, operation: str,
            emit: Callable[[Event], None], to_previous: bool = False, artifact_source=None,
            alongside: Callable[[], object] | None = None) -> Prepared:
    """Everything that changes nothing: inputs, facts, plan, artifact. Errors here are BadInput.

    The reads (host facts, the balancer, the artifact's checksum, and
    `alongside`: the caller's own reads of the deploys table) run at once
    (deploy/preflight.py); an error of the facts comes first, then the
    balancer's, then the table's or the artifact's.
    """
    stack = model.load()
    svc = stack.service(service_name)
    if version is not None:
        _check_version(version)
    bake_rules = canary.rules(opts.canary, opts.bake, opts.max_error_rate, opts.max_latency_ratio)
    inv = inventory.load(env)
    hosts = tier(inv, svc, opts.hosts)
    if opts.drain_timeout is not None:
        if not 0 <= opts.drain_timeout <= 3600:
            raise BadInput("--drain-timeout must be between 0 and 3600 seconds.")
        svc = svc.model_copy(update={"drain_timeout": opts.drain_timeout})
    transport = transport_for(inv)
    balancer = None
    if not opts.bring_up:
        balancer = balancer_for(inv, transport, stack)
        if bake_rules and balancer.kind != "haproxy":
            raise BadInput(f"--bake judges the canary on HAProxy's per-server figures; the {env} balancer is "
                           f"{balancer.kind} (CloudWatch target metrics are not read yet).")
        # ELBv2 drains for its target group's delay: the drain wait lasts at least that long
        svc = svc.model_copy(update={"drain_timeout": max(svc.drain_timeout, balancer.drain_seconds(svc.backend))})
    deps = engine.Deps(service=svc, hosts={h.name: h for h in hosts}, transport=transport, balancer=balancer,
                       emit=emit, health_seconds=opts.health_seconds)
    if bake_rules:
        deps.judge = lambda batch, old: canary.bake(lambda: balancer.servers(svc.backend), deps.sleep, batch, old,
                                                    bake_rules)
    names = [h.name for h in hosts]

    def read_facts() -> dict[str, dict]:
        try:
            return engine.host_facts(deps, names)
        except OperationFailed as exc:
            raise BadInput(f"Preflight: {exc.message}; nothing was changed.") from None

    def read_balancer() -> dict:
        if not balancer:
            return {}
        try:
            servers = balancer.servers(svc.backend)
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
        # The artifact's published checksum, read before the facts say whether any host needs it.
        sha = None
        if version is not None and artifact_source is None and operation != RESTART:
            sha = preflight.tried(lambda: published_sha(env, svc.name, version))()
        return side, sha

    facts, servers, (side, early_sha) = preflight.together(read_facts, read_balancer, read_aws)
    current = {n: facts[n]["current"] for n in names}
    if operation == RESTART:
        return dataclasses.replace(_prepare_restart(env, svc, opts, deps, facts, current), alongside=side)
    to = None
    if to_previous:
        to = {}
        for n in names:
            prev = facts[n]["previous"]
            if not prev:
                raise BadInput(f"{n} has no previous {svc.name} release to roll back to; use --to VERSION.")
            to[n] = prev
        version = "previous"
    p = planner.build(svc.name, version, current, to=to, batch=opts.batch, canary=opts.canary,
                      max_fail=opts.max_fail, min_healthy=svc.min_healthy, drain_timeout=svc.drain_timeout,
                      bring_up=opts.bring_up)
    prepared = Prepared(env=env, operation=operation, service=svc, version=version, plan=p, deps=deps,
                        facts=facts, options=opts, alongside=side, servers=servers)
    wanted = {m.to_version for m in p.moves.values()
              if m.to_version not in facts[m.host]["releases"]}
    for ver in sorted(wanted):
        if artifact_source:
            prepared.tarballs[ver] = artifact_source(env, svc.name, ver)
        else:
            sha = early_sha.get() if early_sha and ver == version else None
            prepared.tarballs[ver] = fetch_published(env, svc.name, ver, published=sha)
    return prepared


RESTART = "restart"


def _prepare_restart(env: str, svc: model.Service, opts: Options, deps: engine.Deps, facts: dict[str, dict],
                     current: dict[str, str | None]) -> Prepared:
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
    return Prepared(env=env, operation=RESTART, service=svc, version="+".join(sorted(set(current.values()))),
                    plan=p, deps=deps, facts=facts, options=opts)


@functools.lru_cache(maxsize=4)
def _state(env: str):
    """The deploys table's client and name; made (on an emulator) or checked once per process."""
    inv = inventory.load(env)
    ddb = table.client(env)
    name = table.name_for(inv)
    table.ensure(ddb, name, emulated=bool(inv.env_vars.get("roadie_aws_endpoint_url")))
    return ddb, name


def journal_for(env: str, service: str) -> journal.Journal:
    ddb, name = _state(env)
    return journal.Journal(ddb, name, env, service)


def settle(p: Prepared, entry: journal.Entry) -> list[str]:
    """After a deploy died: each host it left unsettled is restarted on the release it has, checked and enabled.

    Under the service's lock; the tier is then consistent for the resumed deploy
    or rollback to plan from. Returns the hosts put back in service.
    """
    d, svc = p.deps, p.service
    lock = lock_for(p.env, svc.name)
    lock.acquire(table.actor(), "resume", p.options.message, wait=p.options.lock_wait)
    try:
        view = d.balancer.servers(svc.backend) if d.balancer else {}
        unsettled = set(entry.unsettled())
        out = [n for n in d.hosts if n in unsettled or (n in entry.moves and n in view and not view[n].up)]
        for name in out:
            engine._switch_and_check(d, name, p.facts[name]["current"])
            if d.balancer:
                engine.enable(d, name)
            d.emit(event("deploy.resume.settled", f"  {name}: {p.facts[name]['current']} healthy and in service",
                         host=name, version=p.facts[name]["current"]))
        record(p.env, {"operation": "settle", "service": svc.name, "version": entry.version, **table.actor(),
                       "message": p.options.message, "result": "ok", "settled": out, "journal": entry.as_dict()})
        journal_for(p.env, svc.name).end()  # consistent again; the deploy or rollback that follows has its own
        return out
    finally:
        lock.release()


def lock_for(env: str, service: str, on_lost: Callable[[str], None] | None = None) -> Lock:
    """The service's lock; `on_lost` is told (once, from the lock's thread) if it is lost while renewed."""
    ddb, name = _state(env)
    return Lock(ddb, name, env, service, on_lost=on_lost)


def record(env: str, doc: dict) -> dict:
    ddb, name = _state(env)
    return audit.record(ddb, name, env, doc)


def execute(p: Prepared) -> engine.Outcome:
    """Lock, stage, migrate, roll; revert on failure; audit; release the lock.

    A lock lost on the way (its lease lapsed with no renewal succeeding, or
    another deploy holds it now) stops the rollout where a stop request would:
    hosts in progress finish their steps, no new host leaves service. From then
    on this deploy changes nothing more: nothing is reverted or pruned (the new
    holder drives the tier), the journal is left as it stood, neither written
    nor ended (as after a killed deploy: the new holder settles from it), and
    the audit record says what was done and that the lock was lost.
    """
    d, svc, plan = p.deps, p.service, p.plan
    actor = table.actor()

    def lost(why: str) -> None:  # from the lock's thread; emit and log are set before renewal starts
        d.stop_reason = f"the {svc.name} lock was lost: {why}"
        d.stop.set()
        d.emit = emit  # no host's step is journalled after this: the journal is the new holder's
        log.abandon()
        emit(event("lock.lost", f"the {svc.name} lock was lost: {why}; no new host starts and none is put back",
                   service=svc.name, reason=why))

    lock = lock_for(p.env, svc.name, on_lost=lost)
    lock.acquire(actor, p.operation, p.options.message, wait=p.options.lock_wait,
                 on_wait=lambda h: d.emit(event("lock.waiting", holder=h.as_dict(),
                                                text=f"waiting for the {svc.name} lock: {h.describe()}")))
    started = time.time()
    log = journal_for(p.env, svc.name)  # each host's progress, for a resume if this process dies
    try:
        log.begin(p.operation, p.version, {n: (m.from_version, m.to_version) for n, m in plan.moves.items()},
                  actor["who"])
    except BaseException:  # a dead deploy's hosts are not settled yet: nothing starts
        lock.release()
        raise
    emit, d.emit = d.emit, log.recording(d.emit)
    lock.start_renewing()
    settled = False  # the engine ended by itself (not killed, no unexpected error): the journal is done
    results = {n: engine.HostResult(n, m.from_version, m.to_version, previous=p.facts[n]["previous"])
               for n, m in plan.moves.items()}
    outcome = engine.Outcome("failed", results, "did not start")
    d.emit(event(f"{p.operation}.started", f"{p.operation} {svc.name} {p.version} in {p.env}: "
                 f"{len(plan.moves)} host(s) in {len(plan.batches)} batch(es)", service=svc.name, version=p.version,
                 env=p.env, batches=[list(b.hosts) for b in plan.batches], unchanged=list(plan.unchanged)))
    try:
        for ver, (path, sha) in p.tarballs.items():
            if lock.lost:
                break
            stage_on = [h for h, m in plan.moves.items() if m.to_version == ver]
            engine.stage(d, stage_on, ver, path, sha, p.facts)
        if svc.migrations and plan.moves and p.operation not in ("rollback", RESTART) and not lock.lost:
            engine.migrate(d, plan.hosts[0], p.version)
        outcome = engine.roll(d, plan, results)  # a lost lock stops it at the next batch (d.stop_reason)
        if outcome.result == "failed" and p.operation != RESTART and not lock.lost:  # a restart: none to undo
            engine.revert(d, plan, results)
        settled = True
    except OperationFailed as exc:
        outcome = engine.Outcome("failed", results, exc.message, outcome.batches_done)
        if p.operation != RESTART and not lock.lost:
            engine.revert(d, plan, results)
        settled = True
    finally:
        d.emit = emit
        for r in results.values():
            if r.result == "pending":
                r.result = "untouched"
        why = lock.loss() if lock.lost else None  # who holds it now, read again if the loss did not say
        if why:  # not ours any more: this deploy stops here, whatever the engine's result was
            failed_first = f"; before that it had failed: {outcome.error}" if outcome.result == "failed" else ""
            outcome = engine.Outcome("interrupted", results, f"the {svc.name} lock was lost: {why}{failed_first}",
                                     outcome.batches_done, outcome.verdict)
        doc = {"operation": p.operation, "service": svc.name, "version": p.version, **actor,
               "message": p.options.message, "started_at": audit.iso(started),
               "seconds": round(time.time() - started, 3), **outcome.as_dict(),
               **({"lock_lost": why} if why else {}),
               "plan": {"batches": [list(b.hosts) for b in plan.batches], "max_fail": plan.max_fail,
                        "canary": p.options.canary, "bake": p.options.bake, "unchanged": list(plan.unchanged)}}

        def bookkeeping() -> None:
            record(p.env, doc)
            if why:  # the journal is left as it stood at the loss (its flusher already stopped)
                return
            log.close()
            if settled:
                log.end()

        # Old releases are pruned while the audit record and the journal are written (both under the lock);
        # the lock is released last, after both.
        prune = settled and not why and outcome.result == "ok" and p.operation != RESTART
        try:
            preflight.together(bookkeeping, lambda: engine.prune(d, plan.hosts) if prune else None)
        finally:
            lock.release()
            d.transport.close()
        if why:
            said = {"ok": "moved", "reverted": "put back", "failed": "failed", "untouched": "untouched"}
            where = "; ".join(f"{', '.join(names)} {said[k]}" for k in said
                              if (names := [n for n, r in results.items() if r.result == k]))
            d.emit(event("deploy.lock_lost", f"{p.operation} of {svc.name} {p.version} stopped, {outcome.error}. "
                         f"{where}; it reverts nothing and leaves its journal as it stood: whoever holds the lock "
                         "drives the tier now; audited.", service=svc.name, version=p.version, reason=why))
        d.emit(event(f"{p.operation}.finished", f"{p.operation} {svc.name} {p.version}: {outcome.result} in "
                     f"{doc['seconds']:.1f} s", service=svc.name, version=p.version, result=outcome.result,
                     error=outcome.error, seconds=doc["seconds"]))
    return outcome


def stop_on_signals(stop: threading.Event, emit: Callable[[Event], None]):
    """SIGINT/SIGTERM set `stop` (hosts in progress finish); returns a function restoring the old handlers."""
    import signal

    def handler(signum, _frame):
        if not stop.is_set():
            emit(event("interrupt", signal=signal.Signals(signum).name,
                       text="stopping: hosts in progress finish, no new host starts"))
        stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    return lambda: [signal.signal(s, h) for s, h in old.items()]
