"""`roadie converge`: run the Ansible roles on an environment's hosts and print a per-host recap.

Thin: parse, confirm, print. The engine is roadie.converge.run.
"""

from __future__ import annotations

import time

import click

from roadie import confirm, output, procs
from roadie.cli import options
from roadie.commands import ansible as cmd
from roadie.converge import run as engine
from roadie.errors import OperationFailed
from roadie.events import event
from roadie.output import Output


class _Progress:
    """Ansible's tasks, changes and failures as typed events, each task once."""

    def __init__(self, out: Output, diff: bool):
        self.out = out
        self.seen: set[str] = set()
        self.diff = diff

    def __call__(self, kind: str, detail: dict) -> None:
        if kind == "task":
            key = detail.get("id") or detail["task"]
            if key not in self.seen:
                self.seen.add(key)
                self.out.styled(event("converge.task", f"· {detail['task']}", task=detail["task"]).sentence(),
                                "dim")
        elif kind == "failure":
            word = "UNREACHABLE" if detail["unreachable"] else "FAILED"
            ev = event("converge.host.failed", f"  {detail['host']}: {word}: {detail['message']}",
                       host=detail["host"], unreachable=detail["unreachable"], message=detail["message"])
            self.out.styled(ev.sentence(), "red")
        elif kind == "changed":
            self.out.styled(f"  {detail['host']}: changed", "yellow")
            for d in detail.get("diff", []) if self.diff else []:
                self.out.info(cmd.unified_diff(d))


def _recap_rows(recap: cmd.Recap) -> list[tuple]:
    rows = []
    for host, row in recap.hosts.items():
        bad = row["failed"] or row["unreachable"]
        rows.append((f"[red]{host}[/]" if bad else host, row["ok"],
                     f"[yellow]{row['changed']}[/]" if row["changed"] else 0,
                     f"[red]{row['failed']}[/]" if row["failed"] else 0,
                     f"[red]{row['unreachable']}[/]" if row["unreachable"] else 0, row["skipped"]))
    return rows


@click.command()
@click.option("--limit", help="Comma-separated hosts or groups (default: the whole environment).")
@click.option("--tags", help="Comma-separated tags: a role name or ROLE_install|configure|run.")
@click.option("--check", is_flag=True, help="Dry run: report what would change, change nothing.")
@click.option("--diff", is_flag=True, help="Show the changes made (or, with --check, that would be made) to files.")
@click.option("--strategy", type=click.Choice(cmd.STRATEGIES), default="auto", envvar="ROADIE_ANSIBLE_STRATEGY",
              show_default=True, help="auto: mitogen when installed, else Ansible's linear strategy.")
@click.option("--playbook", default="site.yml", show_default=True, help="A playbook in playbooks/ (one per tier).")
@options.yes("Do not ask; required to converge production without a terminal.")
@options.common
@click.pass_context
def converge(ctx, limit, tags, check, diff, strategy, playbook, yes):
    """Configure hosts with the Ansible roles (playbooks/site.yml) and print a per-host recap."""
    out = output.of(ctx)
    env = ctx.obj.env
    argv, run_env, chosen = engine.prepare(env, playbook=playbook, limit=limit, tags=tags, check=check, diff=diff,
                                           strategy=strategy)
    if not check:
        confirm.confirm(ctx, f"converge {env}", yes)
    started = time.monotonic()
    try:
        recap, rc, stderr = engine.run(argv, run_env, on_event=_Progress(out, diff))
    except FileNotFoundError:
        raise OperationFailed(f"{argv[0]} was not found: install the project's venv (make venv).") from None
    seconds = time.monotonic() - started
    out.result({"env": env, "playbook": playbook, "check": check, "strategy": chosen,
                "seconds": round(seconds, 2), "returncode": rc, **recap.as_dict()})
    if recap.hosts:
        out.table(["host", "ok", "changed", "failed", "unreachable", "skipped"], _recap_rows(recap))
        out.styled(f"{seconds:.1f} s, strategy {chosen}", "dim")
    if not recap.complete:
        raise OperationFailed(f"ansible-playbook stopped before its recap (exit {rc}): {procs.last_line(stderr)}")
    if not recap.ok or rc != 0:
        bad = engine.failed_hosts(recap)
        raise OperationFailed(f"Converge of {env} failed on {', '.join(bad) or 'the run'}"
                              f"{' (exit %d)' % rc if not bad else ''}; see the failures above.")
