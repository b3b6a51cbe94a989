"""The Pulumi stacks of infra/, driven through the Automation API.

Pulumi is imported inside the functions that need it so `roadie --help` stays
fast. Tests pass their own `PulumiCommand` to record the command lines.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable

from roadie import paths
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
    """The real CLI; raises BadInput with the install hint where there is none."""
    from pulumi.automation import PulumiCommand

    try:
        return PulumiCommand()
    except FileNotFoundError:
        raise BadInput(INSTALL_HINT) from None


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
    stderr = text.split("stderr:", 1)[1] if "stderr:" in text else text
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return lines[-1] if lines else "no error output"
