"""The deploy lock of one (environment, service): a lease in the deploys table.

A conditional put takes it only when nobody holds it or the holder's lease has
lapsed; the running deploy renews the lease, so a deploy killed with its CI job
frees the service within one lease instead of holding it until someone notices.
Renewal and release check the holder's token: a deploy whose lease lapsed
cannot release or extend a lock someone else has taken since.

A renewal that errors (throttled, a 5xx, no connection) is retried, every few
seconds with backoff, for as long as the lease lasts; one that succeeds clears
the trouble. The lock is lost only when the lease ends with no renewal having
succeeded (a watchdog sees that at the lease's end, even while a renewal hangs
in the network) or when a renewal finds another holder's token on the item.
Loss is final and told once to `on_lost`: a deploy then starts no new host and
changes nothing more (run.execute).
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from roadie.errors import BadInput, OperationFailed

LEASE_SECONDS = 60
RETRY_SECONDS = 2.0  # a failed renewal is tried again after this (at most a tenth of the lease), doubling
RETRY_MAX_SECONDS = 10.0  # up to this (at most the renewal period), and never past the lease's end


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
    def __init__(self, ddb, table: str, env: str, service: str, lease: float = LEASE_SECONDS, clock=time.time,
                 on_lost: Callable[[str], None] | None = None):
        self.ddb, self.table, self.env, self.service = ddb, table, env, service
        self.lease, self.clock = lease, clock
        self.on_lost = on_lost  # called once, from a background thread, with `lost`, when the lock is lost
        self.token: str | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._mu = threading.Lock()  # a renewal's success and the lease's lapse: one or the other
        self._expires = 0.0  # the lease's end as of the last write that succeeded
        self.lost: str | None = None  # why the lock was lost while held, if it was; final
        self.taken_by: Holder | None = None  # who holds it instead, when that is known
        self.trouble: str | None = None  # the last renewal error, until a renewal succeeds

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
        with self._mu:
            self.token, self._expires = token, now + self.lease
            self.lost, self.taken_by, self.trouble = None, None, None
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
        """Move the lease forward. False once the lock is lost (a renewal that finds another holder's token
        loses it); an error that may pass (throttled, a 5xx, no connection) is raised for the caller to retry."""
        from botocore.exceptions import ClientError

        if not self.token or self.lost:
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
                self._taken()
                return False
            raise
        with self._mu:
            if self.lost:  # the lease ran out while this call was on its way: lost stays lost
                return False
            self._expires, self.trouble = now + self.lease, None
        return True

    def _taken(self) -> None:
        """A renewal's condition failed: the item holds another token now, or none."""
        try:
            holder = self.holder()
        except Exception as exc:  # the loss stands; who took it is told later if it can be read
            self._lose(f"taken by another deploy (who could not be read: {exc})")
            return
        if holder is None:
            self._lose("released by someone else (`roadie lock release --force`?)")
        else:
            self._lose(f"taken over by {holder.describe(self.clock())}", holder)

    def _lose(self, why: str, holder: Holder | None = None) -> None:
        with self._mu:
            if self.lost:
                return
            self.lost, self.taken_by = why, holder
        if self.on_lost:
            self.on_lost(why)

    def _lapse_if_due(self) -> bool:
        """True once the lock is lost; loses it now if the lease has ended with no renewal since."""
        with self._mu:
            if self.lost:
                return True
            if self.clock() < self._expires:
                return False
            last = f"last error: {self.trouble}" if self.trouble else "a renewal did not answer"
            self.lost = f"its lease lapsed at {_iso(self._expires)} with no renewal succeeding ({last})"
        if self.on_lost:
            self.on_lost(self.lost)
        return True

    def loss(self) -> str:
        """Why the lock was lost and who holds it now ("" while held); read again if the loss did not say."""
        if not self.lost or self.taken_by:
            return self.lost or ""
        try:
            holder = self.holder()
        except Exception as exc:
            return f"{self.lost}; who holds it now could not be read ({exc})"
        if holder is None:
            return f"{self.lost}; nobody holds it now"
        if holder.token == self.token:
            return f"{self.lost}; nobody had taken it since"
        self.taken_by = holder
        return f"{self.lost}; now held by {holder.describe(self.clock())}"

    def _renew_loop(self) -> None:
        every = self.lease / 3
        first_retry = min(RETRY_SECONDS, self.lease / 10)
        wait, retry = every, first_retry
        while not self._stop.wait(wait):
            try:
                if not self.renew():
                    return
            except Exception as exc:  # throttled, a 5xx, no connection: again, within the lease
                with self._mu:
                    self.trouble = str(exc) or type(exc).__name__
                if self._lapse_if_due():
                    return
                wait = min(retry, max(self._expires - self.clock(), 0.0))
                retry = min(retry * 2, RETRY_MAX_SECONDS, every)
                continue
            wait, retry = every, first_retry

    def _watch_loop(self) -> None:
        """Loses the lock at the lease's end if no renewal succeeded by then, even while one hangs."""
        while not self._lapse_if_due():
            if self._stop.wait(max(self._expires - self.clock(), 0.01)):
                return

    def start_renewing(self) -> None:
        """Renew the lease in the background until release()."""
        self._stop.clear()
        self._threads = [threading.Thread(target=loop, name=f"lock-{self.service}-{what}", daemon=True)
                         for what, loop in (("renew", self._renew_loop), ("watch", self._watch_loop))]
        for thread in self._threads:
            thread.start()

    def release(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        if not self.token:
            return
        try:  # the token's condition: a lock taken over stays the new holder's; a lapsed one of ours is freed
            self.ddb.delete_item(TableName=self.table, Key=_key(self.env, self.service),
                                 ConditionExpression="holder_token = :token",
                                 ExpressionAttributeValues={":token": {"S": self.token}})
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise OperationFailed(f"Could not release the {self.service} lock: {exc}") from None
        except BotoCoreError as exc:
            raise OperationFailed(f"Could not release the {self.service} lock: {exc}; it lapses within "
                                  f"{self.lease:g} s") from None
        self.token = None

    def force_release(self) -> Holder | None:
        """Remove whoever holds the lock (audited by the caller)."""
        holder = self.holder()
        if holder:
            self.ddb.delete_item(TableName=self.table, Key=_key(self.env, self.service))
        return holder
