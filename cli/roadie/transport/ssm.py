"""The SSM Run Command transport: AWS hosts without SSH (roadie_connection: ssm).

A command is `send_command` with the AWS-RunShellScript document, then
`get_command_invocation` polled until it ends; its output and exit status come
back as the SSH transport's would. Files never travel inside a command: they go
to the artifacts bucket and the host fetches them with its instance role. For a
whole tier, `run_tier` hands the fan-out to SSM itself (Targets by tag,
MaxConcurrency, MaxErrors) instead of one call per host.

`run_each` (one command on many hosts, every host's Result) is one SendCommand:
by the tier's tags when the hosts are the inventory's whole tier (SSM resolves
them, however many there are), else by instance ids (50 to a command, SSM's
limit). SSM has no stream: a host's lines reach `on_line` when its invocation
ends, and a `follow` is refused. GetCommandInvocation returns the first 24,000
characters of stdout (8,000 of stderr); the agent writes the whole of both to
the artifacts bucket under roadie-output/, read back when an answer was cut.
Hosts are polled with botocore's adaptive retries, so a fleet's worth of
GetCommandInvocation calls slows down on throttling instead of failing.
"""

from __future__ import annotations

import math
import shlex
import threading
import time
from pathlib import Path
from typing import Iterable
from urllib.parse import unquote, urlparse

from roadie import procs
from roadie.errors import BadInput, OperationFailed
from roadie.inventory import Host, Inventory
from roadie.release import artifact
from roadie.transport.base import OnLine, Result, each_line

DOCUMENT = "AWS-RunShellScript"
RUNNING = ("Pending", "InProgress", "Delayed")  # get_command_invocation states that are not an end
COMMAND_SECONDS = 900  # a command's own limit (executionTimeout); health checks and unpacks fit
DELIVERY_SECONDS = 60  # SSM gives up delivering to an unreachable host after this (TimeoutSeconds)
TRANSFER_PREFIX = "roadie-transfer"
OUTPUT_PREFIX = "roadie-output"  # run_each's whole stdout and stderr, per command and instance, in the artifacts bucket
INLINE = {"stdout": 24_000, "stderr": 8_000}  # characters GetCommandInvocation gives of each
TRUNCATED = {"stdout": "---Output truncated---", "stderr": "---Error truncated----"}  # the agent's marks
IDS_PER_COMMAND = 50  # InstanceIds one SendCommand takes
MAX_CONCURRENCY = "50"  # run_each's defaults: SSM's own concurrency, and every host runs whatever the others
MAX_ERRORS = "100%"  # do (as over SSH: one host failing does not stop the others)
TIER_TAGS = ("roadie:env", "roadie:role")  # what the Pulumi program tags instances with, and Targets select by
COMMAND_RUNNING = ("Pending", "InProgress", "Cancelling")  # list_commands states that are not an end
RETRIES = {"mode": "adaptive", "max_attempts": 10}
FOLLOW_REFUSED = ("SSM Run Command has no stream (a command's output comes back when it ends), so it cannot "
                  "follow; leave out --follow, or use `aws ssm start-session --target INSTANCE-ID`.")


def instance_id(host: Host) -> str:
    """The EC2 instance behind an inventory host (the aws_ec2 inventory composes it)."""
    iid = host.vars.get("ansible_aws_ssm_instance_id") or host.vars.get("instance_id")
    if not iid:
        raise BadInput(f"{host.name} has no instance id (ansible_aws_ssm_instance_id) in the inventory; "
                       "SSM and ELBv2 address hosts by instance id.")
    return str(iid)


def polling_client(env: str):
    """The environment's SSM client with botocore's adaptive retries: polling many invocations is throttled."""
    from botocore.config import Config

    from roadie import aws

    return aws.env_client(env, "ssm", config=Config(retries=dict(RETRIES)))


def output_key(command_id: str, iid: str, stream: str) -> str:
    """Where the agent writes a stream of an AWS-RunShellScript command (its one step, aws:runShellScript)."""
    return f"{OUTPUT_PREFIX}/{command_id}/{iid}/awsrunShellScript/0.awsrunShellScript/{stream}"


def _tier_of(host: Host) -> tuple[str | None, ...]:
    tags = host.vars.get("tags") or {}
    return tuple(tags.get(k) or None for k in TIER_TAGS) if isinstance(tags, dict) else (None,) * len(TIER_TAGS)


def _waves(hosts: int, concurrency: str) -> int:
    """How many rounds SSM runs `hosts` in at MaxConcurrency `concurrency` ("50" or "25%")."""
    try:
        at_once = (math.ceil(hosts * float(concurrency[:-1]) / 100) if concurrency.endswith("%")
                   else int(concurrency))
    except ValueError:
        raise BadInput(f"MaxConcurrency '{concurrency}' is neither a number of hosts nor a percentage.") from None
    return math.ceil(hosts / max(1, at_once))


class SSM:
    """One SSM command per step and host, or one for many hosts through SSM's own fan-out."""

    kind = "ssm"
    streams = False

    @classmethod
    def from_environment(cls, env: str, *, inventory: Inventory | None = None, client=None, bucket=None) -> SSM:
        """For the registry: with an Environment's `client` and `bucket`, no client or inventory of its own."""
        if client is None:
            return cls(env, inventory=inventory)
        return cls(env, ssm=client("ssm", RETRIES), s3=client("s3"), bucket=bucket("artifacts"), inventory=inventory)

    def __init__(self, env: str, ssm=None, s3=None, bucket: str | None = None, poll: float = 1.0,
                 command_seconds: int = COMMAND_SECONDS, sleep=time.sleep, clock=time.monotonic,
                 inventory: Inventory | None = None, max_concurrency: str = MAX_CONCURRENCY,
                 max_errors: str = MAX_ERRORS):
        from roadie import aws

        self.env = env
        self.ssm = ssm or polling_client(env)
        self.s3 = s3 or aws.env_client(env, "s3")
        self.bucket = bucket or aws.bucket(env, "artifacts")
        self.poll, self.command_seconds, self.sleep, self.clock = poll, command_seconds, sleep, clock
        self.max_concurrency, self.max_errors = max_concurrency, max_errors
        self._inventory = inventory  # None: the environment's, read when a run_each may be a whole tier
        self._uploaded: dict[tuple[str, float], str] = {}
        self._lock = threading.Lock()
        self._runs: set[threading.Event] = set()

    # -- one command ---------------------------------------------------------------

    def _send(self, command: str, what: str, seconds: int | None = None, delivery: int = DELIVERY_SECONDS,
              **target) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self.ssm.send_command(
                DocumentName=DOCUMENT, Comment=f"roadie: {what}"[:100], TimeoutSeconds=delivery,
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

    # -- many hosts at once --------------------------------------------------------------

    def run_each(self, hosts: Iterable[Host], command: str, what: str, timeout: float | None = None,
                 on_line: OnLine | None = None, *, follow: bool = False, max_concurrency: str | None = None,
                 max_errors: str | None = None) -> dict[str, Result]:
        """Every host's Result, in the order of `hosts`: one SendCommand by the tier's tags when the hosts are
        the inventory's whole tier, else by instance ids (IDS_PER_COMMAND to a command).

        SSM runs it on `max_concurrency` instances at a time and stops starting
        new ones past `max_errors` failures (defaults: 50 at once, every host
        whatever the others do). A host's stdout goes to `on_line` line by line
        when its invocation ends; output SSM cut at its inline limit is read
        from the bucket. Bounded by `timeout` s per host (executionTimeout) and
        the rounds SSM needs; past that, or at stop(), the command is cancelled.
        """
        if follow:
            raise BadInput(FOLLOW_REFUSED)
        hosts = list(hosts)
        if not hosts:
            return {}
        ids = {h.name: instance_id(h) for h in hosts}  # a host without one is bad input: nothing is sent
        seconds = int(timeout) if timeout else self.command_seconds
        concurrency = max_concurrency or self.max_concurrency
        rounds = _waves(len(hosts), concurrency)
        rate = {"MaxConcurrency": concurrency, "MaxErrors": max_errors or self.max_errors,
                "OutputS3BucketName": self.bucket, "OutputS3KeyPrefix": OUTPUT_PREFIX}
        tags = self._whole_tier(hosts)
        if tags:
            batches = [(hosts, {"Targets": [{"Key": f"tag:{k}", "Values": [v]} for k, v in tags.items()]})]
        else:
            batches = [(hosts[i:i + IDS_PER_COMMAND], {"InstanceIds": [ids[h.name] for h in
                                                                       hosts[i:i + IDS_PER_COMMAND]]})
                       for i in range(0, len(hosts), IDS_PER_COMMAND)]
        stopped = threading.Event()
        with self._lock:
            self._runs.add(stopped)
        results: dict[str, Result] = {}
        try:
            pending: dict[str, tuple[str, Host]] = {}
            for chunk, target in batches:
                try:  # a host waiting its round must still be delivered to when it comes
                    command_id = self._send(command, what, seconds, DELIVERY_SECONDS + seconds * (rounds - 1),
                                            **target, **rate)
                except OperationFailed as exc:
                    results.update({h.name: Result(h.name, None, error=exc.message) for h in chunk})
                    continue
                pending.update({h.name: (command_id, h) for h in chunk})
            self._collect(pending, ids, results, on_line, stopped, seconds * rounds + DELIVERY_SECONDS)
        except KeyboardInterrupt:  # Ctrl-C: nothing left running on the hosts behind the operator's back
            self._cancel(pending, results, "stopped")
            raise
        finally:
            with self._lock:
                self._runs.discard(stopped)
        return {h.name: results[h.name] for h in hosts}

    def _collect(self, pending: dict[str, tuple[str, Host]], ids: dict[str, str], results: dict[str, Result],
                 on_line: OnLine | None, stopped: threading.Event, bound: int) -> None:
        """Poll the pending hosts' invocations until each ends, the bound passes or stop() is called."""
        from botocore.exceptions import BotoCoreError, ClientError

        deadline = self.clock() + bound
        while pending:
            missing = set()
            for name, (command_id, host) in list(pending.items()):
                if stopped.is_set():
                    break
                try:
                    inv = self.ssm.get_command_invocation(CommandId=command_id, InstanceId=ids[name])
                except ClientError as exc:
                    if exc.response["Error"]["Code"] == "InvocationDoesNotExist":  # not yet, or never
                        missing.add(name)
                        continue
                    results[name] = Result(name, None, error=f"SSM: {exc}")
                    del pending[name]
                    continue
                except BotoCoreError as exc:  # past the adaptive retries
                    results[name] = Result(name, None, error=f"SSM: {exc}")
                    del pending[name]
                    continue
                if inv["Status"] in RUNNING:
                    continue
                results[name] = self._result(host, command_id, ids[name], inv)
                del pending[name]
                each_line(name, results[name].stdout, on_line)
            if stopped.is_set():
                self._cancel(pending, results, "stopped")
                return
            if pending and missing == set(pending):  # every host left has no invocation: did SSM finish?
                for name in self._never_run(pending):
                    results[name] = Result(name, None, error="SSM did not run it there: the command ended "
                                                             "without this instance (is its SSM agent online, "
                                                             "and does it carry the tier's tags?)")
                    del pending[name]
            if not pending:
                return
            if self.clock() >= deadline:
                ids_left = sorted({c for c, _ in pending.values()})
                self._cancel(pending, results, f"no answer through SSM after {bound} s "
                                               f"(command {', '.join(ids_left)} cancelled)")
                return
            self.sleep(self.poll)

    def _never_run(self, pending: dict[str, tuple[str, Host]]) -> list[str]:
        """The pending hosts whose command has ended (SSM will not start them any more)."""
        from botocore.exceptions import BotoCoreError, ClientError

        ended = set()
        for command_id in {c for c, _ in pending.values()}:
            try:
                status = self.ssm.list_commands(CommandId=command_id)["Commands"][0]["Status"]
            except (BotoCoreError, ClientError, IndexError, KeyError):
                continue  # not known yet: ask again next round
            if status not in COMMAND_RUNNING:
                ended.add(command_id)
        return [name for name, (c, _) in pending.items() if c in ended]

    def _cancel(self, pending: dict[str, tuple[str, Host]], results: dict[str, Result], why: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        for command_id in sorted({c for c, _ in pending.values()}):
            try:
                self.ssm.cancel_command(CommandId=command_id)
            except (ClientError, BotoCoreError):  # it may have ended meanwhile; the hosts' end stands
                pass
        results.update({name: Result(name, None, error=why) for name in pending})
        pending.clear()

    def _whole_tier(self, hosts: list[Host]) -> dict[str, str] | None:
        """The tier's tags when `hosts` are every host of one tier in the inventory, else None: Targets would
        reach hosts that were not asked for."""
        tiers = {_tier_of(h) for h in hosts}
        if len(tiers) != 1 or None in next(iter(tiers)):
            return None
        tier = next(iter(tiers))
        inv = self._inventory_of()
        if inv is None or {h.name for h in inv.hosts.values() if _tier_of(h) == tier} != {h.name for h in hosts}:
            return None
        return dict(zip(TIER_TAGS, tier, strict=True))

    def _inventory_of(self) -> Inventory | None:
        if self._inventory is None:
            from roadie import inventory

            try:
                self._inventory = inventory.load(self.env)  # read once per process: the command's own
            except BadInput:
                return None
        return self._inventory

    def _result(self, host: Host, command_id: str, iid: str, inv: dict) -> Result:
        """A host's Result from its invocation's end; output SSM cut read from the bucket."""
        stdout, lost_out = self._whole(command_id, iid, inv, "stdout")
        stderr, lost_err = self._whole(command_id, iid, inv, "stderr")
        notes = [n for n in (lost_out, lost_err) if n]
        if notes:
            stderr = stderr + ("" if not stderr or stderr.endswith("\n") else "\n") + "\n".join(notes) + "\n"
        status, code = inv["Status"], inv.get("ResponseCode", -1)
        if status in ("Success", "Failed") and isinstance(code, int) and code >= 0:
            return Result(host.name, code, stdout, stderr)
        detail = inv.get("StatusDetails")
        why = f"SSM: {status}" + (f" ({detail})" if detail and detail != status else "")
        return Result(host.name, None, stdout, stderr, error=why)

    def _whole(self, command_id: str, iid: str, inv: dict, stream: str) -> tuple[str, str | None]:
        """The stream's whole text, and a note when SSM cut it and the bucket could not give the rest."""
        text = inv.get("StandardOutputContent" if stream == "stdout" else "StandardErrorContent") or ""
        if not (text.rstrip().endswith(TRUNCATED[stream]) or len(text) >= INLINE[stream]):
            return text, None
        url = inv.get("StandardOutputUrl" if stream == "stdout" else "StandardErrorUrl") or ""
        key = self._output_key(url) or output_key(command_id, iid, stream)
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode("utf-8", "replace"), None
        except Exception as exc:  # no object (the agent could not write it), no access: keep what SSM gave
            return text, (f"roadie: SSM cut this host's {stream} at {INLINE[stream]:,} characters and the rest of "
                          f"{stream} could not be read from s3://{self.bucket}/{key}: {exc}")

    def _output_key(self, url: str) -> str | None:
        """The object key in an output URL SSM gives (path-style or virtual-hosted), if it is in our bucket."""
        if not url:
            return None
        u = urlparse(url)
        path = unquote(u.path)
        if u.hostname and u.hostname.startswith(f"{self.bucket}."):
            return path.lstrip("/") or None
        if path.startswith(f"/{self.bucket}/"):
            return path[len(self.bucket) + 2:] or None
        return None

    def stop(self) -> None:
        """Every run_each in flight cancels its command at its next poll; its hosts' Results say 'stopped'."""
        with self._lock:
            runs = list(self._runs)
        for stopped in runs:
            stopped.set()

    def close(self) -> None:
        self.stop()
