"""Running a probe play on this machine: role templates rendered locally, no role task run.

The role tests (cross-layer, security, app_service) render templates through
Ansible with a local connection; a task of a role tagged `always` would then run
on this machine, so the play's task list is checked first.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE_TASKS = ("Render ", "Output directory")


def run(cmd: list[str], env: dict, list_env: dict | None = None, also: tuple[str, ...] = ()
        ) -> subprocess.CompletedProcess:
    """`cmd` (ansible-playbook ... probe.yml), refused before it runs when it would run anything but the probe's
    own tasks (named PROBE_TASKS, or ending in one of `also`) and argument-spec checks."""
    listed = subprocess.run([*cmd, "--list-tasks"], capture_output=True, text=True, timeout=120, cwd=ROOT,
                            env=list_env or env)
    assert listed.returncode == 0, listed.stdout[-3000:] + listed.stderr[-2000:]
    tasks = [t.strip() for t in re.findall(r"^\s{6}(\S.*?)\s+TAGS:", listed.stdout, re.M)]
    foreign = [t for t in tasks if not (t.startswith(PROBE_TASKS) or (also and t.endswith(also))
                                        or "Validating arguments against arg spec" in t)]
    assert tasks and not foreign, f"the probe would run role tasks on this machine: {foreign}"
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
