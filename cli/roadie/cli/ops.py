"""`roadie ops`: on-call operations, thin over roadie.ops (fabfile.py runs the same commands)."""

from __future__ import annotations

import click

from roadie import output
from roadie.cli import options
from roadie.cli.deploy import deploy_options, options_of, run_operation
from roadie.confirm import confirm


@click.group()
def ops():
    """On-call operations: restart, drain/enable, maintenance, health, logs, disk, exec."""


@ops.command()
@click.argument("service")
@deploy_options
@click.pass_context
def restart(ctx, service, **flags):
    """Rolling restart of SERVICE with the deploy engine (batches, drain, health gate, lock); no version change."""
    from roadie.deploy.run import RESTART

    opts, plan_only, yes = options_of(flags)
    run_operation(ctx, service, None, opts, RESTART, plan_only, yes)


def _change_options(f):
    f = click.option("--message", "-m", default="", help="Why: kept in the audit record.")(f)
    f = options.plan("Say what would change; change nothing.")(f)
    f = options.yes("No confirmation prompt (production).")(f)
    return options.common(f)


def _host_change(ctx, operation: str, host: str, message: str, plan_only: bool, yes: bool) -> None:
    from roadie.ops import hosts

    out = output.of(ctx)
    t = hosts.target(ctx.obj.environment, host, out.emit)
    if plan_only:
        servers = t.deps.balancer.servers(t.service.backend)
        change = hosts.would_change(t, servers, operation)
        state = servers[host].status
        out.result({"plan": True, "operation": operation, "host": host, "service": t.service.name, "state": state,
                    "change": change},
                   f"{operation} {host} ({t.service.name}, now {state}): " + ("would change it" if change
                                                                            else "nothing to change"))
        return
    confirm(ctx, f"{operation} {host}", yes)
    doc = hosts.change(t, operation, message)
    left = f", {doc['sessions_left']} session(s) still open at the drain timeout" if doc.get("sessions_left") else ""
    out.result(doc, f"{host}: {doc['state']} in the {t.service.backend} backend"
                    + ("" if doc["changed"] else " (it already was)") + left)


def _host_command(operation: str, doc: str):
    @ops.command(operation, help=doc)
    @click.argument("host")
    @_change_options
    @click.pass_context
    def command(ctx, host, message, plan_only, yes):
        _host_change(ctx, operation, host, message, plan_only, yes)

    return command


drain = _host_command("drain", "Take HOST out of rotation (refused if its tier would fall below its minimum "
                               "healthy hosts).")
enable = _host_command("enable", "Put HOST back in rotation and wait until the balancer sees it UP.")


@ops.command()
@click.argument("service")
@click.argument("state", metavar="on|off")
@click.option("--retry-after", type=int, default=300, show_default=True,
              help="Seconds clients are told to wait (the Retry-After header).")
@_change_options
@click.pass_context
def maintenance(ctx, service, state, retry_after, message, plan_only, yes):
    """Turn SERVICE's maintenance mode on (the balancer answers 503 + Retry-After) or off."""
    from roadie.ops import maintenance as mt

    on = mt.parse_switch(state)
    out = output.of(ctx)
    mt.check(ctx.obj.environment.stack, service, on, retry_after)  # bad input refused before the prompt
    if not plan_only:
        confirm(ctx, f"turn maintenance {state} for {service}", yes)
    doc = mt.switch(ctx.obj.environment, service, on, retry_after, message, plan_only)
    verb = "would be" if plan_only else "is"
    text = (f"{service} {verb} in maintenance: {doc['route']} answers 503, Retry-After {retry_after} s"
            if on else f"{service} {verb} serving traffic again")
    out.result(doc, text + ("" if doc["changed"] else " (no change: it already was)"))


@ops.command()
@click.option("--disk-threshold", type=click.IntRange(1, 100), default=85, show_default=True,
              help="Percent of a mount used that needs a human.")
@options.common
@click.pass_context
def health(ctx, disk_threshold):
    """One screen for the environment; exit 1 when something needs a human (for cron and CI)."""
    from roadie.errors import OperationFailed
    from roadie import health as hl

    out = output.of(ctx)
    report = hl.collect(ctx.obj.environment, disk_threshold)
    out.result(report)
    if not out.json:
        out.table(["host", "answers", "runs", "version", "unit", "balancer", "fullest disk"], hl.rows(report),
                  title=f"health of {ctx.obj.env} ({report['seconds']:.1f} s)")
        out.line(f"  backups: {hl.backup_line(report['backups'])}")
        for note in report["notes"]:
            out.line(f"  note: {note}")
        for problem in report["problems"]:
            out.line(f"  PROBLEM: {problem}")
    if report["problems"]:
        raise OperationFailed(f"{len(report['problems'])} problem(s) in {ctx.obj.env}: "
                              + "; ".join(report["problems"]))
    out.info(f"{ctx.obj.env}: healthy")


@ops.command()
@click.argument("tier")
@click.option("--since", help="From this time, as journalctl reads it ('1h ago', 'today', '2026-11-23 10:00').")
@click.option("--lines", "-n", type=int, default=200, show_default=True, help="Last N lines per host.")
@click.option("--grep", "-g", help="Only lines matching this regular expression.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@options.common
@click.pass_context
def logs(ctx, tier, since, lines, grep, follow):
    """The journal of every host of TIER (a group or host) at once, each line prefixed with its host
    (--follow needs SSH: SSM returns a command's output only when it ends)."""
    from roadie.events import event
    from roadie.ops import common
    from roadie.ops import logs as lg

    names = common.selection(tier, "TIER")  # '' is refused before anything is read
    lg.check(lines, grep, since)
    out = output.of(ctx)
    environment = ctx.obj.environment
    inv = environment.inventory
    lg.check_follow(environment.name, str(inv.env_vars.get("roadie_connection", "ssh")), follow)
    hosts = common.select(inv, names)
    width = max(len(h.name) for h in hosts)

    def show(host, line):
        if out.json:
            out.emit(event("log", host=host, line=line))
        else:
            out.line(f"{host.ljust(width)} | {line}")

    if follow:
        stopped, failed = lg.follow(environment.transport, environment.stack, hosts, show, lines, since, grep)
        for f in failed:
            out.info(f"not following {f}")
        if stopped:
            out.info("stopped following")
        return
    rows, failed = lg.read(environment.transport, environment.stack, hosts, lines, since, grep)
    for host, line in rows:
        show(host, line)
    if failed:
        from roadie.errors import OperationFailed

        raise OperationFailed("no logs from " + "; ".join(failed))


@ops.command("disk")
@click.argument("action", required=False, type=click.Choice(["clean"]))
@click.option("--hosts", "selection",
              help="Groups or hosts, comma-separated (default: every host; given empty: refused).")
@click.option("--keep", type=int, default=5, show_default=True, help="clean: releases kept per service.")
@click.option("--journal-size", default="200M", show_default=True, help="clean: journals vacuumed to this size.")
@_change_options
@click.pass_context
def disk_(ctx, action, selection, keep, journal_size, message, plan_only, yes):
    """Usage per host and mount with the top consumers; `clean` prunes old releases and vacuums journals."""
    from roadie.ops import common
    from roadie.ops import disk as dk

    out = output.of(ctx)
    names = common.selection(selection, "--hosts")  # None: every host; given empty: refused, nothing read
    environment = ctx.obj.environment
    if names is not None:
        common.select(environment.inventory, names)  # unknown names refused first
    if action is None:
        usage = dk.usage(environment, names)
        out.result({"env": ctx.obj.env, "hosts": usage})
        out.table(["host", "mount", "used", "size", "%", "top consumers"],
                  [(h, m["mount"], dk.human(m["used"]), dk.human(m["size"]), m["percent"],
                    ", ".join(f"{t['path']} {dk.human(t['bytes'])}" for t in u["top"][:3]) if i == 0 else "")
                   for h, u in usage.items() if "error" not in u for i, m in enumerate(u["mounts"])])
        for h, u in usage.items():
            if "error" in u:
                out.info(f"{h}: {u['error']}")
        return
    dk.check(environment, names, keep, journal_size)  # bad input refused before the prompt
    if not plan_only:
        confirm(ctx, "clean disks (old releases, journals)", yes)
    done = dk.clean(environment, names, keep, journal_size, plan_only, message)
    out.result({"env": ctx.obj.env, "plan": plan_only, "keep": keep, "hosts": done})
    verb = "would free" if plan_only else "freed"
    for h, d in done.items():
        if "error" in d:
            out.line(f"{h}: {d['error']}")
            continue
        gone = [f"{s} {r['release']}" for s, rs in d["releases"].items() for r in rs]
        out.line(f"{h}: {verb} {dk.human(d['freed'])}: releases {', '.join(gone) or 'none'}; journal "
                 f"{dk.human(d['journal']['before'])} -> {dk.human(d['journal']['after'])} (bound {journal_size})")
    if any("error" in d for d in done.values()):
        from roadie.errors import OperationFailed

        raise OperationFailed("disk clean failed on " + ", ".join(h for h, d in done.items() if "error" in d))


@ops.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("group")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--timeout", type=click.IntRange(1, 3600), default=300, show_default=True,
              help="Seconds the command may run on each host.")
@_change_options
@click.pass_context
def exec_(ctx, group, command, timeout, message, plan_only, yes):
    """Run a command on every host of GROUP (groups or hosts, comma-separated): roadie ops exec GROUP -- CMD."""
    from roadie.errors import OperationFailed
    from roadie.ops import common, execute

    out = output.of(ctx)
    names = common.selection(group, "GROUP")  # '' is refused before anything is read
    line = execute.command_line(command)
    environment = ctx.obj.environment
    hosts = common.select(environment.inventory, names)
    if plan_only:
        out.result({"plan": True, "group": group, "hosts": [h.name for h in hosts], "command": line},
                   f"would run on {', '.join(h.name for h in hosts)}: {line}")
        return
    confirm(ctx, f"run `{line}` on {len(hosts)} host(s) of {group}", yes)
    results = execute.run(environment, hosts, line, group, message, timeout)
    out.result({"group": group, "command": line,
                "hosts": {n: {"exit": r.exit, "stdout": r.stdout, "stderr": r.stderr, "error": r.error}
                          for n, r in results.items()}})
    for n, r in results.items():
        out.line(f"== {n} ({'exit ' + str(r.exit) if r.exit is not None else r.error}) ==")
        for text in (r.stdout, r.stderr):
            if text.strip():
                out.line(text.rstrip("\n"))
    bad = [n for n, r in results.items() if r.exit != 0]
    if bad:
        raise OperationFailed(f"`{line}` failed on {', '.join(bad)} ({len(bad)} of {len(results)} hosts).")
