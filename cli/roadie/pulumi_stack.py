"""The Pulumi stacks of infra/, driven through the Automation API.

Pulumi is imported inside the functions that need it so `roadie --help` stays
fast. Tests pass their own `PulumiCommand` to record the command lines.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Callable

from roadie import paths, procs
from roadie.errors import BadInput, OperationFailed

INFRA = paths.ROOT / "infra"
# The guard rails run on every preview and up, not only in the tests.
POLICY_PACK = INFRA / "policies"
OPERATIONS = ("preview", "up", "refresh", "destroy", "outputs")
# Operations that change a production estate need --yes or a typed confirmation.
GUARDED = ("up", "destroy")
INSTALL_HINT = ("The pulumi CLI is not installed, and roadie infra drives it: install it "
                "(curl -fsSL https://get.pulumi.com | sh, see https://www.pulumi.com/docs/install/) "
                "and put it on PATH.")


def _settings_module():
    if str(INFRA) not in sys.path:
        sys.path.insert(0, str(INFRA))
    from roadie_infra import settings

    return settings


def stacks() -> list[str]:
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in INFRA.glob("Pulumi.*.yaml"))


def check_settings(stack: str):
    """Validate the stack file before Pulumi starts: a bad key is one line, exit 2."""
    settings = _settings_module()
    if stack not in stacks():
        raise BadInput(f"Unknown stack '{stack}': expected one of {', '.join(stacks())}.")
    try:
        return settings.from_stack_file(stack, INFRA)
    except settings.ConfigError as exc:
        raise BadInput(f"infra/Pulumi.{stack}.yaml: {exc}") from None


def needs_confirmation(operation: str, production: bool) -> bool:
    return production and operation in GUARDED


def pulumi_command():
    """The real CLI, checked: one BadInput line (exit 2) when it is missing, broken or too old."""
    import shutil
    import subprocess

    from pulumi.automation import PulumiCommand
    from pulumi.automation._cmd import _MINIMUM_VERSION
    from pulumi.automation.errors import InvalidVersionError

    where = shutil.which("pulumi")
    env = {**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"}
    try:
        # Run it ourselves first: the SDK lets its stderr through and raises a bare
        # CalledProcessError; we want its last line in one sentence.
        proc = subprocess.run(["pulumi", "version"], capture_output=True, text=True, env=env, timeout=60)
    except FileNotFoundError:
        raise BadInput(INSTALL_HINT) from None
    except PermissionError:
        raise BadInput(f"The pulumi CLI on PATH ({_on_path('pulumi')}) is not executable: "
                       "reinstall it (see https://www.pulumi.com/docs/install/).") from None
    except subprocess.TimeoutExpired:
        raise BadInput(f"`pulumi version` ({where}) did not answer in 60 s: the pulumi CLI is broken; "
                       "reinstall it.") from None
    except OSError as exc:
        raise BadInput(f"The pulumi CLI ({where or _on_path('pulumi')}) cannot be run: {exc.strerror}; "
                       "reinstall it.") from None
    if proc.returncode != 0:
        raise BadInput(f"The pulumi CLI ({where}) is broken: `pulumi version` exited {proc.returncode}: "
                       f"{procs.last_line(proc.stderr or proc.stdout)}; reinstall it.")
    try:
        return PulumiCommand()
    except InvalidVersionError:
        found = proc.stdout.strip() or "no version"
        raise BadInput(f"The pulumi CLI ({where}) says its version is {found!r}; roadie infra needs "
                       f"{_MINIMUM_VERSION} or newer: upgrade it (see https://www.pulumi.com/docs/install/).") \
            from None
    except (OSError, subprocess.SubprocessError) as exc:
        raise BadInput(f"The pulumi CLI ({where}) is broken: {exc}; reinstall it.") from None


def _on_path(name: str) -> str:
    """The first file called `name` on PATH, executable or not."""
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if d and os.path.isfile(os.path.join(d, name)):
            return os.path.join(d, name)
    return name


def open_stack(stack: str, command=None):
    from pulumi import automation as auto

    command = command or pulumi_command()
    opts = auto.LocalWorkspaceOptions(work_dir=str(INFRA), pulumi_command=command)
    try:
        return auto.create_or_select_stack(stack_name=stack, work_dir=str(INFRA), opts=opts)
    except FileNotFoundError:
        raise BadInput(INSTALL_HINT) from None
    except auto.errors.CommandError as exc:
        raise OperationFailed(f"Cannot select stack {stack}: {_last_line(exc)}") from None


@dataclass
class Result:
    stack: str
    operation: str
    changes: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"stack": self.stack, "operation": self.operation, "ok": True, "changes": self.changes,
                "outputs": self.outputs}


def _outputs(raw) -> dict:
    """Output values, with secrets masked: CI logs are not a place for them."""
    return {k: ("[secret]" if v.secret else v.value) for k, v in sorted(raw.items())}


def run(stack_name: str, operation: str, command=None, on_output: Callable[[str], None] | None = None) -> Result:
    from pulumi import automation as auto

    stack = open_stack(stack_name, command)
    try:
        if operation == "preview":
            res = stack.preview(on_output=on_output, diff=False, policy_packs=[str(POLICY_PACK)])
            return Result(stack_name, operation, changes=dict(res.change_summary or {}))
        if operation == "up":
            res = stack.up(on_output=on_output, policy_packs=[str(POLICY_PACK)])
            return Result(stack_name, operation, changes=dict(res.summary.resource_changes or {}),
                          outputs=_outputs(res.outputs))
        if operation == "refresh":
            res = stack.refresh(on_output=on_output)
            return Result(stack_name, operation, changes=dict(res.summary.resource_changes or {}))
        if operation == "destroy":
            res = stack.destroy(on_output=on_output)
            return Result(stack_name, operation, changes=dict(res.summary.resource_changes or {}))
        if operation == "outputs":
            return Result(stack_name, operation, outputs=_outputs(stack.outputs()))
    except auto.errors.ConcurrentUpdateError:
        raise OperationFailed(f"Stack {stack_name} is being updated by someone else; try again when it is done.") \
            from None
    except auto.errors.CommandError as exc:
        raise OperationFailed(f"pulumi {operation} on {stack_name} failed: {_last_line(exc)}") from None
    raise BadInput(f"Unknown operation '{operation}': expected one of {', '.join(OPERATIONS)}.")


def _last_line(exc: Exception) -> str:
    """The CLI's last word on stderr: where it says what went wrong."""
    text = str(exc)
    return procs.last_line(text.split("stderr:", 1)[1] if "stderr:" in text else text, "no error output")
