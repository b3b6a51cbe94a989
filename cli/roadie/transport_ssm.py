"""The SSM Run Command transport: AWS hosts without SSH (roadie_connection: ssm).

A command is `send_command` with the AWS-RunShellScript document, then
`get_command_invocation` polled until it ends; its output and exit status come
back as the SSH transport's would. Files never travel inside a command: they go
to the artifacts bucket and the host fetches them with its instance role. For a
whole tier, `run_tier` hands the fan-out to SSM itself (Targets by tag,
MaxConcurrency, MaxErrors) instead of one call per host.
"""

from __future__ import annotations

import shlex
import threading
import time
from pathlib import Path

from roadie import procs
from roadie.release import artifact
from roadie.errors import BadInput, OperationFailed
from roadie.inventory import Host

DOCUMENT = "AWS-RunShellScript"
RUNNING = ("Pending", "InProgress", "Delayed")  # get_command_invocation states that are not an end
COMMAND_SECONDS = 900  # a command's own limit (executionTimeout); health checks and unpacks fit
DELIVERY_SECONDS = 60  # SSM gives up delivering to an unreachable host after this (TimeoutSeconds)
TRANSFER_PREFIX = "roadie-transfer"


def instance_id(host: Host) -> str:
    """The EC2 instance behind an inventory host (the aws_ec2 inventory composes it)."""
    iid = host.vars.get("ansible_aws_ssm_instance_id") or host.vars.get("instance_id")
    if not iid:
        raise BadInput(f"{host.name} has no instance id (ansible_aws_ssm_instance_id) in the inventory; "
                       "SSM and ELBv2 address hosts by instance id.")
    return str(iid)


class SSM:
    """One SSM command per step and host, or per tier through SSM's own fan-out."""

    kind = "ssm"

    def __init__(self, env: str, ssm=None, s3=None, bucket: str | None = None, poll: float = 1.0,
                 command_seconds: int = COMMAND_SECONDS, sleep=time.sleep, clock=time.monotonic):
        from roadie import aws

        self.env = env
        self.ssm = ssm or aws.env_client(env, "ssm")
        self.s3 = s3 or aws.env_client(env, "s3")
        self.bucket = bucket or aws.bucket(env, "artifacts")
        self.poll, self.command_seconds, self.sleep, self.clock = poll, command_seconds, sleep, clock
        self._uploaded: dict[tuple[str, float], str] = {}
        self._lock = threading.Lock()

    # -- one command ---------------------------------------------------------------

    def _send(self, command: str, what: str, seconds: int | None = None, **target) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self.ssm.send_command(
                DocumentName=DOCUMENT, Comment=f"roadie: {what}"[:100], TimeoutSeconds=DELIVERY_SECONDS,
                Parameters={"commands": [command], "executionTimeout": [str(seconds or self.command_seconds)]},
                **target)
        except (BotoCoreError, ClientError) as exc:
            raise OperationFailed(f"{what}: SSM refused the command: {exc}") from None
        return answer["Command"]["CommandId"]

    def _invocation(self, host: Host, command_id: str, what: str, seconds: int | None = None) -> dict:
        """Poll one host's invocation until it ends; past the command's limit it is cancelled."""
        from botocore.exceptions import BotoCoreError, ClientError

        iid = instance_id(host)
        limit = seconds or self.command_seconds
        deadline = self.clock() + limit + DELIVERY_SECONDS
        while True:
            try:
                inv = self.ssm.get_command_invocation(CommandId=command_id, InstanceId=iid)
                if inv["Status"] not in RUNNING:
                    return inv
            except ClientError as exc:  # right after send_command the invocation may not exist yet
                if exc.response["Error"]["Code"] != "InvocationDoesNotExist":
                    raise OperationFailed(f"{host.name}: {what} failed: SSM: {exc}") from None
            if self.clock() >= deadline:
                try:
                    self.ssm.cancel_command(CommandId=command_id, InstanceIds=[iid])
                except (ClientError, BotoCoreError):  # it may have ended meanwhile; the timeout stands
                    pass
                raise OperationFailed(f"{host.name}: {what} failed: no answer through SSM after "
                                      f"{limit + DELIVERY_SECONDS} s (command {command_id} cancelled)")
            self.sleep(self.poll)

    @staticmethod
    def _stdout(host: Host, what: str, inv: dict) -> str:
        if inv["Status"] == "Success" and inv.get("ResponseCode", 0) == 0:
            return inv.get("StandardOutputContent", "")
        status = f"{inv['Status']}, exit {inv.get('ResponseCode', -1)}"
        cause = procs.last_line((inv.get("StandardErrorContent") or inv.get("StandardOutputContent") or "").strip(),
                                status)
        raise OperationFailed(f"{host.name}: {what} failed: {cause}")

    def run(self, host: Host, command: str, what: str, timeout: float | None = None) -> str:
        """stdout of `command` on `host`, bounded by `timeout` s (executionTimeout) or the transport's limit;
        OperationFailed naming host, step and remote error otherwise."""
        seconds = int(timeout) if timeout else None
        command_id = self._send(command, what, seconds, InstanceIds=[instance_id(host)])
        return self._stdout(host, what, self._invocation(host, command_id, what, seconds))

    # -- files -----------------------------------------------------------------------

    def _upload(self, local: Path) -> str:
        """The file's key in the artifacts bucket, uploaded once per content."""
        stamp = (str(local), local.stat().st_mtime)
        with self._lock:
            if stamp in self._uploaded:
                return self._uploaded[stamp]
        digest = artifact.sha256_file(local)
        key = f"{TRANSFER_PREFIX}/{digest}/{local.name}"
        self.s3.upload_file(str(local), self.bucket, key)
        with self._lock:
            self._uploaded[stamp] = key
        return key

    def fetch_command(self, key: str, remote: str) -> str:
        """What the host runs to fetch a file with its instance role (AWS CLI on the image)."""
        return (f"aws s3 cp --only-show-errors {shlex.quote(f's3://{self.bucket}/{key}')} {shlex.quote(remote)}")

    def put(self, host: Host, local: Path, remote: str) -> None:
        try:
            key = self._upload(local)
        except Exception as exc:
            raise OperationFailed(f"{host.name}: upload of {local.name} to {self.bucket} failed: {exc}") from None
        self.run(host, self.fetch_command(key, remote), f"fetching {local.name} from {self.bucket}")

    # -- a whole tier ------------------------------------------------------------------

    def run_tier(self, hosts: list[Host], command: str, what: str, tags: dict[str, str],
                 max_concurrency: str = "25%", max_errors: str = "0") -> dict[str, str | OperationFailed]:
        """One command to every instance carrying `tags`, fanned out by SSM; each host's stdout or error.

        SSM runs it on at most `max_concurrency` instances at once and stops
        starting new ones past `max_errors` failures; `hosts` (the inventory's
        view of the tier) are the invocations read back.
        """
        if not tags:
            raise BadInput("run_tier needs tags to target (roadie:env, roadie:role).")
        targets = [{"Key": f"tag:{k}", "Values": [v]} for k, v in sorted(tags.items())]
        command_id = self._send(command, what, Targets=targets, MaxConcurrency=max_concurrency, MaxErrors=max_errors)
        out: dict[str, str | OperationFailed] = {}
        for host in hosts:
            try:
                out[host.name] = self._stdout(host, what, self._invocation(host, command_id, what))
            except OperationFailed as exc:
                out[host.name] = exc
        return out

    def close(self) -> None:
        pass
