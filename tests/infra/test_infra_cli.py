"""`roadie infra`: the command lines it has Pulumi run, confirmations, exit codes.

There is no pulumi CLI here, so a recording PulumiCommand stands in for it and
answers the few commands whose output the Automation API reads.
"""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner
from pulumi.automation import CommandResult, PulumiCommand
from pulumi.automation.errors import create_command_error
from semver import VersionInfo

from roadie import confirm, pulumi_stack
from roadie.main import main

POLICIES = str(pulumi_stack.INFRA / "policies")
HISTORY = [{"kind": "update", "startTime": "2026-01-01T00:00:00.000Z", "endTime": "2026-01-01T00:01:00.000Z",
            "message": "", "environment": {}, "config": {}, "result": "succeeded", "version": 2,
            "resourceChanges": {"create": 3, "same": 90}}]


class RecordingPulumi(PulumiCommand):
    """Records argv; fakes stdout, and the event log that preview reads its summary from."""

    def __init__(self, fail_on: str | None = None):  # no CLI lookup
        self.command = "pulumi"
        self.version = VersionInfo(3, 200, 0)  # file event log, not the gRPC stream
        self.calls: list[list[str]] = []
        self.fail_on = fail_on

    def run(self, args, cwd, additional_env, on_output=None, on_error=None):
        self.calls.append(list(args))
        self.cwd = cwd
        if self.fail_on and args[0] == self.fail_on:
            raise create_command_error(CommandResult(stdout="", stderr="error: the provider said no\n", code=255))
        if "--event-log" in args:
            path = args[args.index("--event-log") + 1]
            with open(path, "a") as f:
                f.write(json.dumps({"sequence": 1, "timestamp": 0, "summaryEvent": {
                    "maybeCorrupt": False, "durationSeconds": 1, "resourceChanges": {"create": 3, "same": 90},
                    "PolicyPacks": {}}}) + "\n")
                f.write(json.dumps({"sequence": 2, "timestamp": 0, "cancelEvent": {}}) + "\n")  # the CLI's last word
        if args[:2] == ["stack", "output"]:
            return CommandResult(stdout=json.dumps({"vpcId": "vpc-1", "dbPassword": "hunter2"}), stderr="", code=0)
        if args[:2] == ["stack", "history"]:
            return CommandResult(stdout=json.dumps(HISTORY), stderr="", code=0)
        if on_output:
            on_output(f"fake pulumi {args[0]}")
        return CommandResult(stdout=f"fake pulumi {args[0]}\n", stderr="", code=0)

    def op(self) -> list[str]:
        """The one command line that did the work (preview/up/refresh/destroy)."""
        (line,) = [c for c in self.calls if c[0] in ("preview", "up", "refresh", "destroy")]
        return line


@pytest.fixture
def recorder(monkeypatch):
    rec = RecordingPulumi()
    monkeypatch.setattr(pulumi_stack, "pulumi_command", lambda: rec)
    return rec


def invoke(*args, interactive=False, input=None, monkeypatch=None):
    if monkeypatch:
        monkeypatch.setattr(confirm, "interactive", lambda: interactive)
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def _strip(line: list[str]) -> list[str]:
    """Drop the parts that vary per run (the event log's temp path, the exec kind)."""
    out, skip = [], False
    for a in line:
        if skip:
            skip = False
            continue
        if a in ("--event-log", "--exec-kind"):
            skip = True
            continue
        out.append(a)
    return out


@pytest.mark.parametrize("verb, expected", [
    ("preview", ["preview", "--policy-pack", POLICIES, "--stack", "dev"]),
    ("up", ["up", "--yes", "--skip-preview", "--policy-pack", POLICIES, "--stack", "dev"]),
    ("refresh", ["refresh", "--yes", "--skip-preview", "--stack", "dev"]),
    ("destroy", ["destroy", "--skip-preview", "--yes", "--stack", "dev"]),
])
def test_command_lines(recorder, monkeypatch, verb, expected):
    res = invoke("infra", verb, "--stack", "dev", monkeypatch=monkeypatch)
    assert res.exit_code == 0, res.output
    assert sorted(_strip(recorder.op())) == sorted(expected)
    assert recorder.cwd == str(pulumi_stack.INFRA)
    assert ["stack", "select", "--stack", "dev"] in [c[:4] for c in recorder.calls]
    assert f"fake pulumi {verb}" in res.output


@pytest.mark.parametrize("args", [
    ["--output", "json", "infra", "preview", "--stack", "staging"],
    ["infra", "preview", "--stack", "staging", "--output", "json"],
])
def test_preview_json_for_ci(recorder, monkeypatch, args):
    res = invoke(*args, monkeypatch=monkeypatch)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc == {"stack": "staging", "operation": "preview", "ok": True, "changes": {"create": 3, "same": 90},
                   "outputs": {}}


def test_up_reports_outputs_with_secrets_masked(recorder, monkeypatch):
    monkeypatch.setattr(pulumi_stack, "_outputs", _masking(["dbPassword"]))
    res = invoke("--output", "json", "infra", "up", "--stack", "dev", monkeypatch=monkeypatch)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["changes"] == {"create": 3, "same": 90}
    assert doc["outputs"] == {"dbPassword": "[secret]", "vpcId": "vpc-1"}
    assert "hunter2" not in res.output


def _masking(secret_keys):
    real = pulumi_stack._outputs

    def outputs(raw):
        for k in secret_keys:
            raw[k].secret = True
        return real(raw)

    return outputs


def test_outputs_text(recorder, monkeypatch):
    res = invoke("infra", "outputs", "--stack", "prod", monkeypatch=monkeypatch)
    assert res.exit_code == 0, res.output
    assert "vpcId\tvpc-1" in res.output.splitlines()
    assert not [c for c in recorder.calls if c[0] in ("up", "destroy")]


@pytest.mark.parametrize("verb", ["up", "destroy"])
def test_prod_without_yes_and_no_terminal_is_refused(recorder, monkeypatch, verb):
    res = invoke("infra", verb, "--stack", "prod", monkeypatch=monkeypatch)
    assert res.exit_code == 2
    assert re.fullmatch(rf"Error: Refusing to {verb} production stack prod: it needs --yes .*\n", res.output)
    assert recorder.calls == []


@pytest.mark.parametrize("verb", ["up", "destroy"])
def test_prod_with_yes_runs(recorder, monkeypatch, verb):
    res = invoke("infra", verb, "--stack", "prod", "--yes", monkeypatch=monkeypatch)
    assert res.exit_code == 0, res.output
    assert recorder.op()[0] == verb


@pytest.mark.parametrize("typed, exit_code", [("prod\n", 0), ("yes\n", 2), ("\n", 2)])
def test_prod_typed_confirmation(recorder, monkeypatch, typed, exit_code):
    res = invoke("infra", "up", "--stack", "prod", interactive=True, input=typed, monkeypatch=monkeypatch)
    assert res.exit_code == exit_code, res.output
    assert bool([c for c in recorder.calls if c[0] == "up"]) == (exit_code == 0)


@pytest.mark.parametrize("verb, stack", [("preview", "prod"), ("refresh", "prod"), ("up", "staging"),
                                         ("destroy", "dev")])
def test_no_confirmation_outside_production_changes(recorder, monkeypatch, verb, stack):
    res = invoke("infra", verb, "--stack", stack, monkeypatch=monkeypatch)
    assert res.exit_code == 0, res.output


def test_failed_pulumi_command_is_exit_1_with_its_last_line(monkeypatch):
    rec = RecordingPulumi(fail_on="up")
    monkeypatch.setattr(pulumi_stack, "pulumi_command", lambda: rec)
    res = invoke("infra", "up", "--stack", "dev", monkeypatch=monkeypatch)
    assert res.exit_code == 1
    assert res.output == "Error: pulumi up on dev failed: error: the provider said no\n"


def test_unknown_stack_is_bad_input(recorder, monkeypatch):
    res = invoke("infra", "preview", "--stack", "qa", monkeypatch=monkeypatch)
    assert res.exit_code == 2
    assert res.output == "Error: Unknown stack 'qa': expected one of dev, prod, staging.\n"


def test_bad_stack_file_is_one_line_naming_the_key(recorder, monkeypatch, tmp_path):
    bad = (pulumi_stack.INFRA / "Pulumi.dev.yaml").read_text().replace("azCount: 2", "azCount: 0")
    (tmp_path / "Pulumi.dev.yaml").write_text(bad)
    monkeypatch.setattr(pulumi_stack, "INFRA", tmp_path)
    res = invoke("infra", "preview", "--stack", "dev", monkeypatch=monkeypatch)
    assert res.exit_code == 2
    assert res.output == ("Error: infra/Pulumi.dev.yaml: Bad stack config roadie:azCount: "
                          "Input should be greater than or equal to 2 (got 0).\n")
    assert recorder.calls == []


def test_missing_pulumi_cli_is_one_line_and_exit_2(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no pulumi anywhere on it
    res = invoke("infra", "preview", "--stack", "dev", monkeypatch=monkeypatch)
    assert res.exit_code == 2
    assert res.output.count("\n") == 1
    assert res.output.startswith("Error: The pulumi CLI is not installed") and "install" in res.output


BROKEN_PULUMI = {
    "fails": ("#!/bin/sh\necho 'loading plugins' >&2\necho 'error: cannot read ~/.pulumi/credentials.json' >&2\n"
              "exit 3\n", 0o755, "`pulumi version` exited 3: error: cannot read ~/.pulumi/credentials.json"),
    "too-old": ("#!/bin/sh\necho v3.0.0\n", 0o755, "says its version is 'v3.0.0'; roadie infra needs"),
    "garbage-version": ("#!/bin/sh\necho 'hello'\n", 0o755, "says its version is 'hello'"),
    "not-executable": ("#!/bin/sh\necho v3.200.0\n", 0o644, "is not executable"),
    "not-a-program": ("\x7fELF garbage", 0o755, "cannot be run: Exec format error"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN_PULUMI))
@pytest.mark.parametrize("json_mode", [False, True])
def test_broken_pulumi_cli_is_one_line_and_exit_2(monkeypatch, tmp_path, kind, json_mode):
    script, mode, message = BROKEN_PULUMI[kind]
    fake = tmp_path / "pulumi"
    fake.write_text(script)
    fake.chmod(mode)
    monkeypatch.setenv("PATH", str(tmp_path))  # the broken pulumi, and nothing else
    args = ["infra", "preview", "--stack", "dev"] + (["--output", "json"] if json_mode else [])
    res = invoke(*args, monkeypatch=monkeypatch)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    if json_mode:
        doc = json.loads(res.stdout)
        assert doc["event"] == "error" and doc["exit_code"] == 2 and message in doc["error"], res.output
        assert res.stderr == ""
    else:
        assert res.stdout == ""
        assert res.stderr.count("\n") == 1 and res.stderr.startswith("Error: The pulumi CLI"), res.stderr
        assert message in res.stderr, res.stderr


def test_help_imports_neither_pulumi_nor_boto3():
    """`roadie --help` and `roadie infra --help` must stay fast: the heavy SDKs load on use."""
    import subprocess
    import sys

    code = ("import sys; from click.testing import CliRunner; from roadie.main import main; "
            "r = CliRunner().invoke(main, ['infra', '--help']); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pulumi', 'pulumi_aws', 'boto3')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
