"""The deploy lock of one (environment, service): a lease in the deploys table.

A conditional put takes it only when nobody holds it or the holder's lease has
lapsed; the running deploy renews the lease, so a deploy killed with its CI job
frees the service within one lease instead of holding it until someone notices.
Renewal and release check the holder's token: a deploy whose lease lapsed
cannot release or extend a lock someone else has taken since.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from roadie.errors import BadInput, OperationFailed

LEASE_SECONDS = 60


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Holder:
    who: str
    machine: str
    pid: int
    operation: str
    message: str
    ci_run: str | None
    acquired_at: float
    expires_at: float
    token: str

    def describe(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        left = self.expires_at - now
        lease = f"lease {left:.0f} s left" if left > 0 else f"lease lapsed {-left:.0f} s ago"
        why = f", '{self.message}'" if self.message else ""
        ci = f", {self.ci_run}" if self.ci_run else ""
        return (f"{self.who}@{self.machine} (pid {self.pid}, {self.operation}{why}{ci}) "
                f"since {_iso(self.acquired_at)}, {lease}")

    def as_dict(self) -> dict:
        return {"who": self.who, "machine": self.machine, "pid": self.pid, "operation": self.operation,
                "message": self.message, "ci_run": self.ci_run, "acquired_at": _iso(self.acquired_at),
                "expires_at": _iso(self.expires_at)}


def _key(env: str, service: str) -> dict:
    return {"pk": {"S": f"lock#{env}#{service}"}, "sk": {"S": "lock"}}


def _holder(item: dict) -> Holder:
    s = lambda k: item.get(k, {}).get("S", "")  # noqa: E731
    n = lambda k: float(item.get(k, {}).get("N", "0"))  # noqa: E731
    return Holder(who=s("who"), machine=s("machine"), pid=int(n("pid")), operation=s("operation"),
                  message=s("message"), ci_run=s("ci_run") or None, acquired_at=n("acquired_at"),
                  expires_at=n("expires_at"), token=s("holder_token"))


class Lock:
    def __init__(self, ddb, table: str, env: str, service: str, lease: float = LEASE_SECONDS, clock=time.time):
        self.ddb, self.table, self.env, self.service = ddb, table, env, service
        self.lease, self.clock = lease, clock
        self.token: str | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self.lost: str | None = None  # why the lease was lost while held, if it was

    def holder(self) -> Holder | None:
        item = self.ddb.get_item(TableName=self.table, Key=_key(self.env, self.service),
                                 ConsistentRead=True).get("Item")
        return _holder(item) if item else None

    def _try(self, actor: dict, operation: str, message: str) -> bool:
        from botocore.exceptions import ClientError

        now = self.clock()
        token = uuid.uuid4().hex
        item = {**_key(self.env, self.service), "who": {"S": actor["who"]}, "machine": {"S": actor["machine"]},
                "pid": {"N": str(actor["pid"])}, "operation": {"S": operation}, "message": {"S": message or ""},
                "ci_run": {"S": actor.get("ci_run") or ""}, "acquired_at": {"N": f"{now:.3f}"},
                "expires_at": {"N": f"{now + self.lease:.3f}"}, "holder_token": {"S": token}}
        try:
            self.ddb.put_item(TableName=self.table, Item=item,
                              ConditionExpression="attribute_not_exists(pk) OR expires_at < :now",
                              ExpressionAttributeValues={":now": {"N": f"{now:.3f}"}})
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        self.token = token
        return True

    def acquire(self, actor: dict, operation: str, message: str = "", wait: float = 0,
                on_wait=None, poll: float = 1.0) -> None:
        """Take the lock, or wait up to `wait` seconds for it; held past that is BadInput naming the holder."""
        deadline = self.clock() + wait
        announced = False
        while not self._try(actor, operation, message):
            holder = self.holder()
            if self.clock() >= deadline:
                who = holder.describe(self.clock()) if holder else "another deploy"
                raise BadInput(f"{self.service} in {self.env} is locked by {who}; wait with --lock-wait SECONDS, "
                               f"or if that deploy is dead, `roadie lock release {self.service} --force`.")
            if on_wait and not announced and holder:
                on_wait(holder)
                announced = True
            time.sleep(poll)

    def renew(self) -> bool:
        from botocore.exceptions import ClientError

        if not self.token:
            return False
        now = self.clock()
        try:
            self.ddb.update_item(TableName=self.table, Key=_key(self.env, self.service),
                                 UpdateExpression="SET expires_at = :exp",
                                 ConditionExpression="holder_token = :token",
                                 ExpressionAttributeValues={":exp": {"N": f"{now + self.lease:.3f}"},
                                                            ":token": {"S": self.token}})
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                self.lost = "the lock was taken over after its lease lapsed"
                return False
            raise
        return True

    def start_renewing(self) -> None:
        def loop():
            while not self._stop.wait(self.lease / 3):
                try:
                    if not self.renew():
                        return
                except Exception as exc:  # a network blip: try again next period
                    self.lost = f"renewal failed: {exc}"

        self._renewer = threading.Thread(target=loop, name=f"lock-{self.service}", daemon=True)
        self._renewer.start()

    def release(self) -> None:
        from botocore.exceptions import ClientError

        self._stop.set()
        if self._renewer:
            self._renewer.join(timeout=5)
        if not self.token:
            return
        try:
            self.ddb.delete_item(TableName=self.table, Key=_key(self.env, self.service),
                                 ConditionExpression="holder_token = :token",
                                 ExpressionAttributeValues={":token": {"S": self.token}})
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise OperationFailed(f"Could not release the {self.service} lock: {exc}") from None
        self.token = None

    def force_release(self) -> Holder | None:
        """Remove whoever holds the lock (audited by the caller)."""
        holder = self.holder()
        if holder:
            self.ddb.delete_item(TableName=self.table, Key=_key(self.env, self.service))
        return holder
