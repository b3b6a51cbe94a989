"""The rolling deploy: stage everywhere, migrate once, then rotate batch by batch.

Per host: drain in the balancer and wait for its sessions to end, switch
`current`, restart, wait for health and the new version, enable, and wait for
the balancer to see it UP. A host that fails goes back to its release and is
re-enabled; past --max-fail every host this deploy changed goes back too, so a
failed deploy leaves the tier on one version. A stop request (SIGINT/SIGTERM)
lets hosts in progress finish and starts no new one: no host is left drained
or half-switched.

The engine talks to a transport (run/put on a host) and a balancer
(servers/drain/ready); it never knows whether they are SSH and HAProxy.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from roadie.commands import release_host as cmd
from roadie.commands.haproxy import Server
from roadie.deploy import plan as planner
from roadie.errors import HostUnreachable, OperationFailed
from roadie.events import Event, Kind, event
from roadie.inventory import Host
from roadie.model import Tier

PARALLEL = 8  # hosts worked on at once, within a batch and while staging
UP_TIMEOUT = 30.0  # seconds for the balancer to see an enabled host UP
POLL = 0.25
STOPPED_ON_REQUEST = "stopped on request"  # an interrupted Outcome's error after SIGINT/SIGTERM
# Each remote step's bound in seconds: a host that hangs fails its step, named, instead of holding the
# deploy (and its lock) for as long as TCP takes to give up. The health step's is its own wait + HEALTH_SLACK.
STEP_SECONDS = {"facts": 30, "stage": 600, "migrate": 900, "switch": 30, "restart": 120, "previous": 30,
                "prune": 300}
HEALTH_SLACK = 15
CAPACITY_WAIT = 60.0  # seconds a batch waits for peers coming back UP by themselves before it is refused


class HostFailed(OperationFailed):
    def __init__(self, host: str, step: str, cause: str):
        super().__init__(f"{host}: {step} failed: {cause}")
        self.host, self.step, self.cause = host, step, cause


@dataclass
class Deps:
    """What the engine works through, chosen by the caller from the inventory."""

    service: Tier
    hosts: dict[str, Host]  # the tier, by name, inventory order
    transport: object
    balancer: object | None  # None: bring-up, no traffic to protect
    emit: Callable[[Event], None] = lambda ev: None
    stop: threading.Event = field(default_factory=threading.Event)
    # Why the rollout must stop for good (the deploy lock was lost): like `stop`, but the error it ends
    # with, and not cleared by a revert as a stop request is.
    stop_reason: str | None = None
    health_seconds: int = 60
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic  # the deadlines' and the steps' clock (a FakeClock in tests)
    # Hosts this run found broken: out of service whatever the balancer says yet
    # (HAProxy marks a dead server DOWN only after fall x inter seconds).
    known_down: set[str] = field(default_factory=set)
    # Judges a canary batch against the hosts still on the old version (deploy/canary.py); None: health only.
    judge: Callable[[list[str], list[str]], object] | None = None


@dataclass
class HostResult:
    host: str
    from_version: str | None
    to_version: str
    result: str = "pending"  # ok | failed | reverted | untouched
    steps: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    previous: str | None = None  # the host's `previous` release before this deploy
    reverting: bool = False  # a move back: `previous` is restored, not replaced

    def as_dict(self) -> dict:
        return {"host": self.host, "from": self.from_version, "to": self.to_version, "result": self.result,
                "steps": {k: round(v, 3) for k, v in self.steps.items()}, "error": self.error}


@dataclass
class Outcome:
    result: str  # ok | failed | interrupted
    hosts: dict[str, HostResult]
    error: str | None = None
    batches_done: int = 0
    verdict: dict | None = None  # the canary's, with its figures, when it was judged

    def as_dict(self) -> dict:
        return {"result": self.result, "error": self.error, "batches_done": self.batches_done,
                "hosts": [h.as_dict() for h in self.hosts.values()],
                **({"verdict": self.verdict} if self.verdict else {})}


# -- facts -----------------------------------------------------------------------

def host_facts(d: Deps, names: list[str], unreachable: Callable[[OperationFailed], dict] | None = None
               ) -> dict[str, dict]:
    """current/previous release, releases on disk, unit state, free disk, per host (in parallel).

    A host that does not answer raises, unless `unreachable` gives what to report for it.
    """
    def one(name: str) -> dict:
        try:
            out = d.transport.run(d.hosts[name], cmd.facts(d.service.name, d.service.unit), "reading the release state",
                                  timeout=STEP_SECONDS["facts"])
        except OperationFailed as exc:
            if unreachable is None:
                raise
            return unreachable(exc)
        return json.loads(out.strip().splitlines()[-1])

    return dict(zip(names, _on_each(names, one), strict=True))


def _on_each(names: list[str], one: Callable[[str], object]) -> list:
    """`one` for every host, PARALLEL at a time; results in the order of `names`."""
    with ThreadPoolExecutor(max_workers=min(PARALLEL, max(1, len(names)))) as pool:
        return list(pool.map(one, names))


# -- stage and migrate -------------------------------------------------------------

def stage(d: Deps, names: list[str], version: str, tarball: Path, sha256: str, facts: dict[str, dict]) -> None:
    """Unpack the release beside the running one on every host; nothing is switched."""
    svc = d.service.name
    need = tarball.stat().st_size * 4  # tarball + unpacked tree and its bytecode (~3.5x), with room to spare

    def one(name: str) -> None:
        host = d.hosts[name]
        if version in facts[name]["releases"]:
            d.emit(event(Kind.STAGED, f"  {name}: {version} already unpacked", host=name, version=version,
                         already=True))
            return
        if facts[name]["disk_free"] < need:
            raise HostFailed(name, "stage", f"{facts[name]['disk_free'] // 2**20} MiB free under "
                                            f"{cmd.base(svc)}, {need // 2**20} MiB needed")
        started = d.clock()
        try:
            d.transport.put(host, tarball, cmd.incoming(svc, version))
            d.transport.run(host, cmd.unpack(svc, version, sha256), "unpacking", timeout=STEP_SECONDS["stage"])
        except OperationFailed as exc:
            try:
                d.transport.run(host, f"rm -rf {cmd.incoming(svc, version)} {cmd.release_dir(svc, version)}"
                                ".unpacking", "cleaning up a failed stage", timeout=STEP_SECONDS["switch"])
            except OperationFailed:  # a host that stopped answering keeps its leftovers; the stage's error stands
                pass
            raise HostFailed(name, "stage", exc.message) from None
        secs = round(d.clock() - started, 3)
        d.emit(event(Kind.STAGED, f"  {name}: {version} staged ({secs:.1f} s)", host=name, version=version,
                     seconds=secs))

    _on_each(names, one)


def migrate(d: Deps, name: str, version: str) -> None:
    started = d.clock()
    d.transport.run(d.hosts[name], cmd.migrate(version), "migrating the database", timeout=STEP_SECONDS["migrate"])
    secs = round(d.clock() - started, 3)
    d.emit(event(Kind.MIGRATED, f"  migrations of {version} applied from {name} ({secs:.1f} s)", host=name,
                 version=version, seconds=secs))


# -- one host ---------------------------------------------------------------------

def drain(d: Deps, name: str) -> int:
    """Take the host out of rotation; wait until its sessions end or the drain timeout. Sessions left."""
    d.balancer.drain(d.service.backend, name)
    short = _await(d, [name], lambda s: s.sessions == 0, d.service.drain_timeout)
    return short[name].sessions if short else 0


def enable(d: Deps, name: str) -> None:
    d.balancer.ready(d.service.backend, name)
    if _await(d, [name], lambda s: s.up, UP_TIMEOUT):
        raise OperationFailed(f"{name} UP in the balancer not reached after {UP_TIMEOUT:.0f} s")


def _switch_steps(d: Deps, version: str) -> list[tuple[str, str, str, float]]:
    """(step, command, what, timeout) to put a drained host on `version`: switch, restart, health check."""
    svc = d.service
    return [("switch", cmd.switch(svc.name, version), "switching current", STEP_SECONDS["switch"]),
            ("restart", cmd.restart(svc.unit), "restarting", STEP_SECONDS["restart"]),
            ("health", svc.health_check(version, d.health_seconds), "health check", d.health_seconds + HEALTH_SLACK)]


def _switch_and_check(d: Deps, name: str, version: str) -> None:
    for _step, command, what, timeout in _switch_steps(d, version):
        d.transport.run(d.hosts[name], command, what, timeout=timeout)


def _await(d: Deps, names: list[str], ok: Callable[[Server], bool], timeout: float) -> dict[str, Server]:
    """One balancer read per poll for a whole batch, until `ok` holds for every host or the timeout.

    Returns the hosts still short of it, with their last state: reads grow with
    batches and poll rounds, never with the hosts in a batch.
    """
    deadline = d.clock() + timeout
    waiting = list(names)
    while True:
        view = d.balancer.servers(d.service.backend)
        missing = [n for n in waiting if n not in view]
        if missing:
            raise OperationFailed(f"{', '.join(missing)} not in the balancer's {d.service.backend} backend")
        short = {n: view[n] for n in waiting if not ok(view[n])}
        if not short or d.clock() >= deadline:
            return short
        waiting = list(short)
        d.sleep(POLL)


def _raising(exc: Exception) -> Callable[[HostResult], None]:
    def fail(_r: HostResult) -> None:
        raise exc
    return fail


def rotate(d: Deps, rs: list[HostResult], pool: ThreadPoolExecutor) -> list[HostResult]:
    """Move a batch to each r.to_version; a host whose step fails goes back to r.from_version.

    The batch moves together: every host is drained, then the balancer is read
    once per poll until all are drained; each host switches, restarts and is
    health-checked on its own (in `pool`); the healthy ones are enabled and the
    balancer again read once per poll until all are UP.
    """
    clock = {r.host: d.clock() for r in rs}
    step = {r.host: "drain" for r in rs}
    svc = d.service

    def done(r: HostResult, what: str) -> None:
        now = d.clock()
        r.steps[what] = now - clock[r.host]
        clock[r.host] = now
        d.emit(event(Kind.HOST_STEP, f"    {r.host}: {what} ({r.steps[what]:.1f} s)", host=r.host, step=what,
                     seconds=round(r.steps[what], 3)))

    def failed(r: HostResult, exc: Exception) -> None:
        r.error = f"{step[r.host]}: {getattr(exc, 'message', None) or exc}"
        r.result = "failed"
        d.emit(event(Kind.HOST_FAILED, f"  {r.host}: FAILED at {r.error}", host=r.host, step=step[r.host],
                     error=r.error))
        on_host = step[r.host] not in ("drain", "enable")  # those two are the balancer's steps, not the host's
        _put_back(d, r, switched=step[r.host] != "drain", unreachable=on_host and isinstance(exc, HostUnreachable))
        if r.result == "failed":
            d.known_down.add(r.host)

    def each(fn: Callable[[HostResult], None], batch: list[HostResult]) -> list[HostResult]:
        """fn on every host in parallel; the hosts it failed are put back, the others returned."""
        def one(r: HostResult) -> bool:
            try:
                fn(r)
                return True
            except Exception as exc:
                failed(r, exc)
                return False
        return [r for r, ok in zip(batch, pool.map(one, batch), strict=True) if ok]

    def move(r: HostResult) -> None:
        host = d.hosts[r.host]
        for what, command, doing, timeout in _switch_steps(d, r.to_version):
            step[r.host] = what
            d.transport.run(host, command, doing, timeout=timeout)
            done(r, what)
        if r.reverting:
            d.transport.run(host, cmd.set_previous(svc.name, r.previous), "restoring previous",
                            timeout=STEP_SECONDS["previous"])

    live = list(rs)
    if d.balancer:
        live = each(lambda r: d.balancer.drain(svc.backend, r.host), live)
        try:
            left = _await(d, [r.host for r in live], lambda s: s.sessions == 0, svc.drain_timeout)
        except Exception as exc:
            live, left = each(_raising(exc), live), {}
        for r in live:
            done(r, "drain")
            if r.host in left:
                d.emit(event(Kind.HOST_DRAIN_TIMEOUT, f"    {r.host}: {left[r.host].sessions} session(s) open "
                             "at the drain timeout", host=r.host, sessions=left[r.host].sessions))
    live = each(move, live)
    if d.balancer:
        step.update({r.host: "enable" for r in live})
        live = each(lambda r: d.balancer.ready(svc.backend, r.host), live)
        try:
            late = _await(d, [r.host for r in live], lambda s: s.up, UP_TIMEOUT)
        except Exception as exc:
            live, late = each(_raising(exc), live), {}
        each(_raising(OperationFailed(f"UP in the balancer not reached after {UP_TIMEOUT:.0f} s")),
             [r for r in live if r.host in late])
        live = [r for r in live if r.host not in late]
        for r in live:
            done(r, "enable")
    for r in live:
        r.result = "ok"
        d.emit(event(Kind.HOST_DONE, f"  {r.host}: {r.from_version or '(none)'} -> {r.to_version}, in service",
                     host=r.host, to=r.to_version, **{"from": r.from_version}))
    return rs


def _put_back(d: Deps, r: HostResult, switched: bool, unreachable: bool = False) -> None:
    """After a failed step: the previous release again (if it was switched), then back in rotation.

    A host that stopped answering is asked nothing more (each try would wait out its bound again) and is
    left out of rotation: what its last step did is unknown, so it must not take traffic when it returns.
    """
    name = r.host
    if not unreachable:
        try:
            if switched and r.from_version and r.from_version != r.to_version:
                _switch_and_check(d, name, r.from_version)
                d.transport.run(d.hosts[name], cmd.set_previous(d.service.name, r.previous), "restoring previous",
                                timeout=STEP_SECONDS["previous"])
                r.result = "reverted"
                d.emit(event(Kind.HOST_REVERTED, f"  {name}: back on {r.from_version}", host=name,
                             to=r.from_version))
        except HostUnreachable as exc:  # it stopped answering on the way back: as below
            r.error += f"; putting back {r.from_version} failed too: {exc.message}"
            unreachable = True
        except Exception as exc:  # the old release is unhealthy too: say so, still re-enable below
            r.error += f"; putting back {r.from_version} failed too: {getattr(exc, 'message', exc)}"
    if unreachable:
        d.known_down.add(name)
        r.error += (f"; it does not answer: left out of rotation; once it answers again, see `roadie status` "
                    f"and deploy {d.service.name} again, or `roadie ops enable {name}`")
        return
    if d.balancer:
        try:
            enable(d, name)
        except Exception as exc:
            r.error += f"; re-enabling failed: {getattr(exc, 'message', exc)}"


# -- batches ----------------------------------------------------------------------

def _down_indeed(d: Deps, names: list[str]) -> set[str]:
    """Of hosts the balancer has DOWN, those that will not come back by themselves: no answer, unit not running."""
    facts = host_facts(d, names, unreachable=lambda exc: {"active": "unreachable"})
    return {n for n, f in facts.items() if f.get("active") not in ("active", "activating", "reloading")}


def _capacity(d: Deps, batch: list[str], min_healthy: int) -> tuple[list[str], str | None]:
    """The part of `batch` that may leave service now, or ([], why not).

    Peers coming back UP by themselves (failing checks only, and the host answers with its unit running:
    another tool just restarted it) are waited for, CAPACITY_WAIT at most, shown once; a peer drained or
    in maintenance by hand, or down indeed (no answer, its unit not running), is refused at once.
    """
    deadline = d.clock() + CAPACITY_WAIT
    announced = False
    probed: set[str] = set()
    while True:
        view = d.balancer.servers(d.service.backend)
        up = {n for n, s in view.items() if s.up} - d.known_down
        chosen = planner.capacity(batch, up, list(d.hosts), min_healthy)
        if chosen:
            return chosen, None
        out = [n for n in d.hosts if n not in up]
        unasked = [n for n in out if n not in probed and n in view and view[n].returning]
        if unasked:
            d.known_down |= _down_indeed(d, unasked)
            probed |= set(unasked)
        returning = [n for n in out if n not in d.known_down and n in view and view[n].returning]
        states = ", ".join(f"{n} ({'dead' if n in d.known_down else view[n].status if n in view else 'absent'})"
                           for n in out)
        why = (f"taking {batch[0]} out would leave fewer than {min_healthy} healthy {d.service.name} host(s) "
               f"(out of service now: {states or 'none'})")
        if not returning or d.clock() >= deadline:
            return [], why + (f"; still not UP after {CAPACITY_WAIT:.0f} s" if returning else "")
        if not announced:
            d.emit(event(Kind.CAPACITY_WAITING, f"waiting up to {CAPACITY_WAIT:.0f} s for "
                         f"{', '.join(returning)} to come back UP in the balancer", hosts=returning,
                         seconds=CAPACITY_WAIT))
            announced = True
        d.sleep(POLL)


def roll(d: Deps, p: planner.Plan, results: dict[str, HostResult], stop_on_fail: bool = True) -> Outcome:
    """Rotate the plan's batches; stop past max_fail or on a stop request."""
    failures = 0
    pending = [list(b.hosts) for b in p.batches]
    canary = {h for b in p.batches if b.canary for h in b.hosts}
    done_batches = 0
    verdict = None
    while pending:
        if d.stop.is_set() or d.stop_reason:
            return Outcome("interrupted", results, d.stop_reason or STOPPED_ON_REQUEST, done_batches)
        batch = pending.pop(0)
        if d.balancer:
            chosen, why = _capacity(d, batch, p.min_healthy)
            if not chosen:
                return Outcome("failed", results, why, done_batches)
            if len(chosen) < len(batch):
                pending.insert(0, [h for h in batch if h not in chosen])
            batch = chosen
        label = "canary" if canary & set(batch) else f"batch {done_batches + 1}"
        d.emit(event(Kind.BATCH_STARTED, f"{label}: {', '.join(batch)}", index=done_batches + 1, hosts=batch,
                     canary=bool(canary & set(batch))))
        with ThreadPoolExecutor(max_workers=min(PARALLEL, len(batch))) as pool:
            rotate(d, [results[n] for n in batch], pool)
        done_batches += 1
        failed = [n for n in batch if results[n].result in ("failed", "reverted")]
        failures += len(failed)
        d.emit(event(Kind.BATCH_DONE, f"batch {done_batches} done" + (f", failed: {', '.join(failed)}" if failed
                                                                          else ""),
                     index=done_batches, hosts=batch, failed=failed))
        if failed and failures > p.max_fail and stop_on_fail:
            first = results[failed[0]]
            return Outcome("failed", results, f"{first.host}: {first.error}", done_batches)
        if d.judge and canary & set(batch) and not failed:
            old = [n for n, r in results.items() if r.result == "pending"]
            d.emit(event(Kind.CANARY_BAKING, f"canary {', '.join(batch)}: baking against {', '.join(old)}",
                         hosts=batch, baseline=old))
            judged = d.judge(batch, old)
            verdict = judged.as_dict()
            d.emit(event(Kind.CANARY_VERDICT, judged.summary(), **verdict))
            if not judged.ok:
                return Outcome("failed", results, judged.summary(), done_batches, verdict)
    return Outcome("ok", results, None, done_batches, verdict)


def revert(d: Deps, p: planner.Plan, results: dict[str, HostResult]) -> list[str]:
    """Every host this deploy moved goes back to where it was, rolling, in the plan's batch size."""
    moved = [n for n, r in results.items() if r.result == "ok" and r.from_version and n not in d.known_down]
    if not moved:
        return []
    d.emit(event(Kind.REVERT_STARTED, f"putting back {', '.join(moved)}", hosts=moved))
    size = max(len(b.hosts) for b in p.batches)
    back = {n: HostResult(n, results[n].to_version, results[n].from_version, previous=results[n].previous,
                          reverting=True) for n in moved}
    batches = tuple(planner.Batch(i + 1, tuple(moved[i * size:(i + 1) * size]))
                    for i in range((len(moved) + size - 1) // size))
    rp = planner.Plan(service=p.service, version="previous", batches=batches, min_healthy=p.min_healthy,
                      max_fail=len(moved), drain_timeout=p.drain_timeout)
    keep = d.stop.is_set()
    d.stop.clear()  # a stop request does not stop putting hosts back
    try:
        roll(d, rp, back, stop_on_fail=False)
    finally:
        if keep:
            d.stop.set()
    outcome_error = None
    for n in moved:
        if back[n].result == "ok":
            results[n].result = "reverted"
        elif back[n].result == "pending":  # not reverted: it would have taken the tier below its minimum
            outcome_error = outcome_error or d.stop_reason or "reverting it would leave too few healthy hosts"
            results[n].error = f"left on {results[n].to_version} and in service: {outcome_error}"
        else:
            results[n].result = "failed"
            results[n].error = f"reverting: {back[n].error}"
    return moved


def prune(d: Deps, names: list[str]) -> None:
    def one(name: str) -> None:
        try:
            d.transport.run(d.hosts[name], cmd.prune(d.service.name), "pruning old releases",
                            timeout=STEP_SECONDS["prune"])
        except OperationFailed as exc:  # old releases left behind cost disk, not service
            d.emit(event(Kind.PRUNE_FAILED, host=name, error=exc.message))

    _on_each(names, one)
