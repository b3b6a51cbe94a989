"""`roadie ops exec GROUP -- CMD`: one command on every host of a group, the output grouped by host.

Through the environment's transport (run_each): SSH, or SSM Run Command on AWS.
"""

from __future__ import annotations

import shlex
import time

from roadie import inventory
from roadie.errors import BadInput
from roadie.transport import Result


def command_line(argv: tuple[str, ...] | list[str]) -> str:
    """The remote command: one argument is taken as shell (`-- 'df -h | tail -1'`), several are quoted."""
    argv = [a for a in argv]
    if not argv or not any(a.strip() for a in argv):
        raise BadInput("Name the command to run after `--`, e.g. roadie ops exec catalog -- uptime.")
    return argv[0] if len(argv) == 1 else " ".join(shlex.quote(a) for a in argv)


def run(environment, hosts: list[inventory.Host], cmd: str, group: str, message: str = "",
        timeout: float = 300) -> dict[str, Result]:
    """Every host's Result, and one audit record: each host's exit (None: no answer), or the hosts asked when
    it was interrupted."""
    started = time.time()
    results: dict[str, Result] = {}
    try:
        results = environment.transport.run_each(hosts, cmd, "ops exec", timeout=timeout)
        return results
    finally:
        ok = results and all(r.exit == 0 for r in results.values())
        environment.audit("exec", "ok" if ok else ("failed" if results else "interrupted"), service=group,
                          started=started, command=cmd,
                          hosts={n: r.exit for n, r in results.items()} or [h.name for h in hosts], message=message)
