"""The converge engine: build one ansible-playbook run, run it, fold its JSON lines into a recap.

Used by `roadie converge` (cli/converge.py) and by bench.converge; neither the
CLI nor the benchmark holds any of this.
"""

from __future__ import annotations

import os
import subprocess
from typing import Callable

from roadie import inventory, model, paths
from roadie.commands import ansible as cmd
from roadie.errors import BadInput

OnEvent = Callable[[str, dict], None]


def mitogen_dir() -> str | None:
    import importlib.util

    spec = importlib.util.find_spec("ansible_mitogen")
    if not spec or not spec.submodule_search_locations:
        return None
    return cmd.mitogen_strategy_dir(list(spec.submodule_search_locations)[0])


def prepare(env: str, *, playbook: str = "site.yml", limit: str | None = None, tags: str | None = None,
            check: bool = False, diff: bool = False, strategy: str = "auto", stock: bool = False,
            forks: int | None = None) -> tuple[list[str], dict, str]:
    """argv, environment and strategy for one ansible-playbook run.

    `limit` and `tags` are comma-separated as typed; None means "not given". A
    given value that names nothing ('' from an empty $VAR) is bad input, never
    "the whole environment".
    """
    from roadie.converge import secrets as converge_secrets

    limit = cmd.check_names("host or group", cmd.split_list(limit, "--limit", "host or group"))
    tags = cmd.check_names("tag", cmd.split_list(tags, "--tags", "tag"))
    inv = inventory.inventory_path(env)
    book = paths.PLAYBOOKS / playbook
    if not book.is_file():
        raise BadInput(f"No playbook {playbook} in playbooks/.")
    if limit:
        inventory.load(env).select(limit)  # an unknown host or group is bad input
    for job in model.load().jobs:  # a schedule systemd would refuse stops here, before any host is touched
        model.check_schedule(job)
    found = mitogen_dir()
    chosen = "linear" if stock else cmd.choose_strategy(strategy, found)
    state = paths.state_dir(env)
    vault = converge_secrets.for_env(state, converge_secrets.source(inv))
    argv = cmd.playbook_argv(inventory.ansible_bin("ansible-playbook"), inv, book, limit=limit, tags=tags,
                             check=check, diff=diff, vault_password_file=vault.password_file,
                             extra_vars_files=vault.vars_files)
    settings = cmd.Settings(strategy=chosen, mitogen_dir=found if chosen == cmd.MITOGEN_STRATEGY else None,
                            fact_cache_dir=str(paths.ROOT / ".roadie" / "facts" / env), stock=stock, forks=forks)
    return argv, cmd.playbook_env(os.environ, settings, config_file=paths.ROOT / "ansible.cfg"), chosen


def run(argv: list[str], env: dict, on_event: OnEvent | None = None,
        timeout: float | None = None) -> tuple[cmd.Recap, int, str]:
    """Run ansible-playbook, folding its JSON lines into a recap as they arrive; killed after `timeout` s.

    `on_event(kind, detail)` hears each task, change and failure as it happens.
    Returns the recap, the exit code and the process's stderr.
    """
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


def failed_hosts(recap: cmd.Recap) -> list[str]:
    return sorted({f["host"] for f in recap.failures}
                  | {h for h, r in recap.hosts.items() if r["failed"] or r["unreachable"]})
