"""`roadie deploy`, `rollback`, `status`, `lock` and `audit`: thin over roadie.deploy."""

from __future__ import annotations

import gc
import threading
import time

import click

from roadie import output
from roadie.cli import options
from roadie.errors import BadInput, OperationFailed

INTERRUPTED = 130


def _confirm(ctx, what: str, yes: bool) -> None:
    from roadie.confirm import confirm

    confirm(ctx, what, yes)


def _print_plan(out, prepared) -> None:
    p = prepared.plan
    doc = {"env": prepared.env, "operation": prepared.operation, **p.as_dict()}
    out.result(doc)
    if out.json:
        return
    rows = [(b.index, "canary" if b.canary else "", h, p.moves[h].from_version or "(none)", p.moves[h].to_version)
            for b in p.batches for h in b.hosts]
    out.table(["batch", "", "host", "from", "to"], rows,
              title=f"{prepared.operation} {p.service} {p.version} in {prepared.env}")
    for h in p.unchanged:
        out.info(f"{h}: already on {prepared.facts[h]['current']}, left alone")
    out.info(f"{len(p.batches)} batch(es), min healthy {p.min_healthy}, max fail {p.max_fail}, "
             f"drain timeout {p.drain_timeout} s; expected about {p.expected_seconds():.0f} s")


def run_operation(ctx, service, version, opts, operation, plan_only, yes, to_previous=False, resume=False):
    from roadie.deploy import preflight

    inventory_read = preflight.read_inventory_early(ctx.obj.env)
    import boto3  # noqa: F401  (preflight's next needs, loaded while ansible-inventory runs)
    import fabric  # noqa: F401

    from roadie.deploy import engine, resume as policy, run, view

    inventory_read()
    environment = ctx.obj.environment
    out = output.of(ctx)
    stop = threading.Event()
    if not plan_only:  # a CI job without --yes is refused before any host is asked anything
        from roadie.confirm import refuse_unconfirmable

        refuse_unconfirmable(ctx, f"{operation} {service}", yes)
    found = policy.Found(None, version, to_previous)
    if (operation == "rollback" or resume) and not plan_only:  # before preflight: the journal decides
        found = policy.unfinished(environment, service, version, operation, resume, to_previous)
    # A deploy is refused over a dead deploy's drained hosts: the journal is read during preflight's other reads.
    check_journal = operation == "deploy" and not resume and not plan_only
    alongside = (lambda: policy.unfinished(environment, service, version, operation, resume, to_previous)
                 ) if check_journal else None
    prepared = run.prepare(environment, service, found.version, opts, operation, out.emit,
                           to_previous=found.to_previous, alongside=alongside)
    prepared.deps.stop = stop
    if plan_only:
        _print_plan(out, prepared)
        return
    if check_journal:
        found = prepared.alongside
    entry = found.settle
    if entry is not None:
        _confirm(ctx, f"settle the unfinished {entry.operation} of {service}, then {operation} {prepared.version}",
                 yes)
        yes = True
        run.settle(prepared, entry)
        if prepared.deps.balancer:  # the hosts settled are back in service: the preflight view is stale
            prepared.servers = prepared.deps.balancer.servers(prepared.service.backend)
    if not prepared.plan.moves:
        if operation != run.RESTART:
            policy.nothing_left(prepared, found.running)
        out.result({"result": "ok", "service": service, "version": prepared.version, "hosts": []},
                   f"every {service} host is already on {prepared.version}; nothing to do")
        return
    _confirm(ctx, f"{operation} {service} {prepared.version}", yes)
    restore = run.stop_on_signals(stop, out.emit)
    try:
        with out.live(view.RolloutView.of(prepared)):
            outcome = run.execute(prepared)
    finally:
        restore()
        # The process ends next: the collector need not walk every object of boto3, Fabric and pydantic
        # at exit only to free memory the process gives back anyway (0.15-0.25 s on this machine).
        gc.freeze()
    hosts = outcome.hosts.values()
    out.result({"service": service, "version": prepared.version, "env": ctx.obj.env, **outcome.as_dict()},
               lambda: "\n".join(f"{r.host}: {r.from_version or '(none)'} -> {r.to_version}: {r.result}"
                                 + (f" ({r.error})" if r.error else "") for r in hosts))
    if outcome.result == "interrupted" and outcome.error != engine.STOPPED_ON_REQUEST:  # the lock was lost
        raise OperationFailed(f"{operation} of {service} {prepared.version} stopped: {outcome.error}")
    if outcome.result == "interrupted":
        out.error(f"{operation} of {service} stopped on request; no host is drained or half-switched. "
                  f"Run `roadie status` to see each host's version.", INTERRUPTED)
        ctx.exit(INTERRUPTED)
    if outcome.result != "ok":
        raise OperationFailed(f"{operation} of {service} {prepared.version} failed: {outcome.error}; "
                              "hosts it changed were put back where the tier's minimum allowed.")
    failed = [r for r in hosts if r.result != "ok"]
    if failed:  # within --max-fail the rollout went on, but not every host is on the version
        raise OperationFailed(f"{operation} of {service} {prepared.version} reached "
                              f"{len(outcome.hosts) - len(failed)} of {len(outcome.hosts)} hosts; "
                              + "; ".join(f"{r.host}: {r.error}" for r in failed))


def deploy_options(f):
    f = click.option("--batch-size", "batch", help="Hosts per batch: N or N% of the tier.")(f)
    f = click.option("--canary", type=int, help="A first batch of N hosts, health-gated before the rest.")(f)
    f = click.option("--bake", type=int, help="Seconds the canary serves real traffic before it is judged against "
                                              "the old hosts (HAProxy's per-server figures); worse: rolled back.")(f)
    f = click.option("--max-error-rate", type=float, help="With --bake: how much higher the canary's error rate "
                                                          "may be than the old hosts' (default 0.01).")(f)
    f = click.option("--max-latency-ratio", type=float, help="With --bake: how many times the old hosts' mean "
                                                             "response time the canary may take (default 2).")(f)
    f = click.option("--max-fail", type=int, default=0, show_default=True,
                     help="Host failures tolerated across the whole deploy before it stops and reverts.")(f)
    f = click.option("--drain-timeout", type=int, help="Seconds to wait for a drained host's sessions "
                                                       "(default: the service model's).")(f)
    f = click.option("--health-timeout", type=click.IntRange(5, 1800), default=60, show_default=True,
                     help="Seconds a restarted host gets to answer healthy with the new version.")(f)
    f = click.option("--lock-wait", type=float, default=0, show_default=True,
                     help="Seconds to wait for another deploy's lock instead of refusing.")(f)
    f = click.option("--message", "-m", default="", help="Why: kept with the lock and the audit record.")(f)
    f = options.plan("Print batches and versions; change nothing.")(f)
    f = options.yes("No confirmation prompt (production).")(f)
    return options.common(f)


def options_of(kw: dict):
    """Options from the shared flags; `plan` and `yes` are returned apart."""
    from roadie.deploy.run import Options

    plan_only, yes = kw.pop("plan_only"), kw.pop("yes")
    kw["health_seconds"] = kw.pop("health_timeout")
    return Options(**kw), plan_only, yes


@click.command()
@click.argument("service")
@click.argument("version")
@click.option("--resume", is_flag=True, help="Finish a deploy of VERSION whose machine died: hosts it left drained "
                                              "are put back in service first (read from the journal).")
@deploy_options
@click.pass_context
def deploy(ctx, service, version, resume, **flags):
    """Roll VERSION of SERVICE out, batch by batch, through the balancer."""
    opts, plan_only, yes = options_of(flags)
    run_operation(ctx, service, version, opts, "deploy", plan_only, yes, resume=resume)


@click.command()
@click.argument("service")
@click.option("--to", "to_version", help="The version to return to (default: each host's previous release).")
@deploy_options
@click.pass_context
def rollback(ctx, service, to_version, **flags):
    """Roll SERVICE back to each host's previous release (or --to VERSION), like a deploy."""
    opts, plan_only, yes = options_of(flags)
    run_operation(ctx, service, to_version, opts, "rollback", plan_only, yes, to_previous=to_version is None)


@click.command()
@options.common
@click.pass_context
def status(ctx):
    """Per service and host: version, releases on disk, health, balancer state; and the locks."""
    from roadie.deploy import resume
    from roadie.deploy import status as st

    out = output.of(ctx)
    environment = ctx.obj.environment
    doc = st.collect(environment)
    for svc in doc["services"]:  # a deploy whose machine died: its journal outlives its lock
        entry = environment.journal(svc["service"]).read()
        svc["unfinished"] = entry.as_dict() if entry and not resume.alive(environment, svc["service"]) else None
    out.result(doc)
    if out.json:
        return
    from roadie.deploy import view

    for svc in doc["services"]:
        drift = " (version drift!)" if len(svc["versions"]) > 1 else ""
        rows, notes = view.status_table(svc["hosts"])
        out.table(view.STATUS_COLUMNS, rows,
                  title=f"{svc['service']}: {', '.join(svc['versions']) or 'not deployed'}{drift}")
        for note in notes:  # an unreachable host's whole error, under the table
            out.line(f"  {note}")
        lock = svc["lock"]
        out.info(f"  lock: {lock['describe'] if lock else 'free'}")
        if svc["unfinished"]:
            u = svc["unfinished"]
            out.info(f"  UNFINISHED {u['operation']} to {u['version']} by {u['who']}: hosts left "
                     f"{', '.join(u['unsettled']) or 'none'} unsettled; `roadie deploy {svc['service']} "
                     f"{u['version']} --resume` or `roadie rollback {svc['service']}`")
        mt = svc.get("maintenance") or {}
        out.info("  maintenance: " + (f"ON (503, Retry-After {mt['retry_after']} s)" if mt.get("on")
                                      else mt.get("error") or "off"))


@click.group()
def lock():
    """The deploy lock of a service (held in the environment, with a lease)."""


@lock.command("status")
@click.argument("service")
@options.common
@click.pass_context
def lock_status(ctx, service):
    """Who holds SERVICE's deploy lock, since when, why."""
    from roadie import model

    model.load().service(service)
    holder = ctx.obj.environment.lock(service).holder()
    output.of(ctx).result({"service": service, "env": ctx.obj.env, "holder": holder.as_dict() if holder else None},
                          f"{service}: " + (f"locked by {holder.describe()}" if holder else "free"))


@lock.command("release")
@click.argument("service")
@click.option("--force", is_flag=True, required=True, help="Required: take the lock away from its holder.")
@options.yes("No confirmation prompt (production).")
@options.common
@click.pass_context
def lock_release(ctx, service, force, yes):
    """Remove SERVICE's lock from a dead deploy (audited)."""
    from roadie import model

    model.load().service(service)
    _confirm(ctx, f"force-release the {service} lock", yes)
    environment = ctx.obj.environment
    holder = environment.lock(service).force_release()
    environment.audit("lock.release", "ok", service=service, holder=holder.as_dict() if holder else None)
    output.of(ctx).result({"service": service, "released": holder.as_dict() if holder else None},
                          f"{service}: " + (f"released the lock of {holder.describe()}" if holder
                                            else "the lock was free"))


def _since(text: str | None) -> float | None:
    """`2026-11-23T10:00`, `90m`, `2h` or `7d`."""
    if not text:
        return None
    import re
    from datetime import datetime, timezone

    m = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if m:
        return time.time() - int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(f"--since '{text}' is neither a time (2026-11-23T10:00) nor an age (90m, 2h, 7d).") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


@click.command()
@click.option("--service", help="Only this service's records.")
@click.option("--since", help="Only records after this time (ISO 8601) or age (90m, 2h, 7d).")
@click.option("--limit", "limit_text", metavar="N", default="50", show_default=True,
              help="The newest N records (a positive whole number).")
@options.common
@click.pass_context
def audit(ctx, service, since, limit_text):
    """Deploys, rollbacks and overrides recorded in the environment, newest first."""
    from roadie import model
    from roadie.state import audit as log

    limit = log.parse_limit(limit_text)
    if service:
        model.load().service(service)
    after = _since(since)
    ddb, name = ctx.obj.environment.table()
    records, more = log.latest(ddb, name, ctx.obj.env, limit, service=service, since=after)
    out = output.of(ctx)
    out.result({"env": ctx.obj.env, "limit": limit, "more": more, "records": records})
    if not out.json:
        out.table(["when", "who", "operation", "service", "version", "result", "seconds", "message"],
                  [(r["recorded_at"], r.get("who"), r.get("operation"), r.get("service"), r.get("version"),
                    r.get("result"), r.get("seconds"), r.get("message")) for r in records])
        if more:
            out.info(f"The newest {limit}; older records with a larger --limit or an earlier --since.")
