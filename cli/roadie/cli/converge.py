"""`roadie converge`: run the Ansible roles on an environment's hosts and print a per-host recap."""

from __future__ import annotations

import json
import os
import subprocess
import time

import click

from roadie import inventory, paths
from roadie.cli import options
from roadie.commands import ansible as cmd
from roadie.errors import BadInput, OperationFailed


def _mitogen_dir() -> str | None:
    import importlib.util

    spec = importlib.util.find_spec("ansible_mitogen")
    if not spec or not spec.submodule_search_locations:
        return None
    return cmd.mitogen_strategy_dir(list(spec.submodule_search_locations)[0])


def prepare(env: str, *, playbook: str = "site.yml", limit=None, tags=None, check=False, diff=False,
            strategy: str = "auto", stock: bool = False, forks: int | None = None) -> tuple[list[str], dict, str]:
    """argv, environment and strategy for one ansible-playbook run (also used by bench.converge)."""
    from roadie.converge import secrets as converge_secrets

    inv = inventory.inventory_path(env)
    book = paths.PLAYBOOKS / playbook
    if not book.is_file():
        raise BadInput(f"No playbook {playbook} in playbooks/.")
    limit = cmd.check_names("host or group", cmd.split_list(limit))
    tags = cmd.check_names("tag", cmd.split_list(tags))
    if limit:
        inventory.load(env).select(limit)  # an unknown host or group is bad input
    chosen = "linear" if stock else cmd.choose_strategy(strategy, _mitogen_dir())
    state = paths.state_dir(env)
    vault = converge_secrets.for_env(state, converge_secrets.source(inv))
    argv = cmd.playbook_argv(inventory.ansible_bin("ansible-playbook"), inv, book, limit=limit, tags=tags,
                             check=check, diff=diff, vault_password_file=vault.password_file,
                             extra_vars_files=vault.vars_files)
    settings = cmd.Settings(strategy=chosen, mitogen_dir=_mitogen_dir() if chosen == cmd.MITOGEN_STRATEGY else None,
                            fact_cache_dir=str(paths.ROOT / ".roadie" / "facts" / env), stock=stock, forks=forks)
    return argv, cmd.playbook_env(os.environ, settings, config_file=paths.ROOT / "ansible.cfg"), chosen


def run(argv: list[str], env: dict, on_event=None, timeout: float | None = None) -> tuple[cmd.Recap, int, str]:
    """Run ansible-playbook, folding its JSON lines into a recap as they arrive; killed after `timeout` s."""
    import tempfile
    import threading

    recap = cmd.Recap()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=paths.ROOT)
        timer = threading.Timer(timeout, proc.kill) if timeout else None
        if timer:
            timer.start()
        try:
            for line in proc.stdout:
                event = cmd.read_event(line)
                if event:
                    for kind, detail in cmd.apply_event(recap, event):
                        if on_event:
                            on_event(kind, detail)
            rc = proc.wait()
        finally:
            if timer:
                timer.cancel()
        err.seek(0)
        stderr = err.read()
    return recap, rc, stderr


class _Progress:
    def __init__(self, diff: bool):
        self.seen: set[str] = set()
        self.diff = diff

    def __call__(self, kind: str, detail: dict) -> None:
        if kind == "task":
            key = detail.get("id") or detail["task"]
            if key not in self.seen:
                self.seen.add(key)
                click.echo(click.style(f"· {detail['task']}", dim=True), err=True)
        elif kind == "failure":
            word = "UNREACHABLE" if detail["unreachable"] else "FAILED"
            click.echo(click.style(f"  {detail['host']}: {word}: {detail['message']}", fg="red"), err=True)
        elif kind == "changed":
            click.echo(click.style(f"  {detail['host']}: changed", fg="yellow"), err=True)
            for d in detail.get("diff", []) if self.diff else []:
                click.echo(cmd.unified_diff(d), err=True)


def _print_recap(recap: cmd.Recap, seconds: float, strategy: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("host", "ok", "changed", "failed", "unreachable", "skipped", box=None)
    for host, row in recap.hosts.items():
        bad = row["failed"] or row["unreachable"]
        table.add_row(f"[red]{host}[/]" if bad else host, str(row["ok"]),
                      f"[yellow]{row['changed']}[/]" if row["changed"] else "0",
                      f"[red]{row['failed']}[/]" if row["failed"] else "0",
                      f"[red]{row['unreachable']}[/]" if row["unreachable"] else "0", str(row["skipped"]))
    console = Console()
    console.print(table)
    console.print(f"[dim]{seconds:.1f} s, strategy {strategy}[/]")


@click.command()
@click.option("--limit", help="Comma-separated hosts or groups (default: the whole environment).")
@click.option("--tags", help="Comma-separated tags: a role name or ROLE_install|configure|run.")
@click.option("--check", is_flag=True, help="Dry run: report what would change, change nothing.")
@click.option("--diff", is_flag=True, help="Show the changes made (or, with --check, that would be made) to files.")
@click.option("--strategy", type=click.Choice(cmd.STRATEGIES), default="auto", envvar="ROADIE_ANSIBLE_STRATEGY",
              show_default=True, help="auto: mitogen when installed, else Ansible's linear strategy.")
@click.option("--playbook", default="site.yml", show_default=True, help="A playbook in playbooks/ (one per tier).")
@options.common
@click.pass_context
def converge(ctx, limit, tags, check, diff, strategy, playbook):
    """Configure hosts with the Ansible roles (playbooks/site.yml) and print a per-host recap."""
    env = ctx.obj.env
    argv, run_env, chosen = prepare(env, playbook=playbook, limit=limit, tags=tags, check=check, diff=diff,
                                    strategy=strategy)
    progress = None if ctx.obj.json else _Progress(diff)
    started = time.monotonic()
    try:
        recap, rc, stderr = run(argv, run_env, on_event=progress)
    except FileNotFoundError:
        raise OperationFailed(f"{argv[0]} was not found: install the project's venv (make venv).") from None
    seconds = time.monotonic() - started
    if ctx.obj.json:
        click.echo(json.dumps({"env": env, "playbook": playbook, "check": check, "strategy": chosen,
                               "seconds": round(seconds, 2), "returncode": rc, **recap.as_dict()}))
    elif recap.hosts:
        _print_recap(recap, seconds, chosen)
    if not recap.complete:
        last = [ln for ln in stderr.strip().splitlines() if ln.strip()][-3:]
        raise OperationFailed("ansible-playbook stopped before its recap (exit %d): %s"
                              % (rc, " ".join(last) or "no output"))
    if not recap.ok or rc != 0:
        bad = sorted({f["host"] for f in recap.failures}
                     | {h for h, r in recap.hosts.items() if r["failed"] or r["unreachable"]})
        raise OperationFailed(f"Converge of {env} failed on {', '.join(bad) or 'the run'}"
                              f"{' (exit %d)' % rc if not bad else ''}; see the failures above.")
