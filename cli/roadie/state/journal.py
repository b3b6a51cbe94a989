"""The deploy journal: each host's progress, written to the deploys table as it happens.

While a deploy runs, a header item (operation, target) and one item per moving
host (from and to versions, and the last step it reached: staged, draining,
drained, switched, restarted, healthy, enabled; done, reverted or failed). It is
written from the engine's own events, so the engine does not know it exists, and
deleted when the deploy ends by itself. An item that outlives its
deploy's lock is a deploy whose machine died: `roadie deploy --resume` or
`roadie rollback` read it, put every host it left out of service back in, and
bring the tier to one version.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from roadie.errors import BadInput
from roadie.events import Event, Kind

# The engine's events, as the step a host has reached.
STEPS = {"drain": "drained", "switch": "switched", "restart": "restarted", "health": "healthy", "enable": "enabled"}
ENDS = {Kind.HOST_DONE: "done", Kind.HOST_REVERTED: "reverted", Kind.HOST_FAILED: "failed"}
# Steps after which a host may be out of service, or off both releases' health.
UNSETTLED = ("draining", "drained", "switched", "restarted", "healthy", "failed")


def _pk(env: str, service: str) -> dict:
    return {"S": f"journal#{env}#{service}"}


def _key(env: str, service: str, host: str | None = None) -> dict:
    """The journal's header item, or one host's item: one small item each, so a step is one small write."""
    return {"pk": _pk(env, service), "sk": {"S": f"host#{host}" if host else "journal"}}


@dataclass(frozen=True)
class Entry:
    operation: str
    version: str
    moves: dict[str, dict]  # host -> {"from", "to", "step"}
    started_at: float
    who: str

    def unsettled(self) -> list[str]:
        """Hosts the dead deploy may have left drained or half-switched."""
        return [h for h, m in self.moves.items() if m["step"] in UNSETTLED]

    def from_versions(self) -> set[str]:
        return {m["from"] for m in self.moves.values() if m["from"]}

    def as_dict(self) -> dict:
        return {"operation": self.operation, "version": self.version, "who": self.who,
                "started_at": self.started_at, "hosts": self.moves, "unsettled": self.unsettled()}

    def describe(self) -> str:
        steps = ", ".join(f"{h} {m['step']}" for h, m in self.moves.items())
        return f"unfinished {self.operation} to {self.version} by {self.who}: {steps}"


FLUSH_SECONDS = 0.2  # steps noted within this are written together (batch writes, 25 hosts a call)


class Journal:
    """One header item and one item per moving host; steps are written by a background flusher.

    Coalescing keeps a 1,000-host deploy's journal at a few hundred writes instead of
    one per host and step; a process killed loses at most the last FLUSH_SECONDS of
    steps, which `settle` covers by also reading the balancer's live state.
    """

    def __init__(self, ddb, table: str, env: str, service: str):
        self.ddb, self.table, self.env, self.service = ddb, table, env, service
        self._moves: dict[str, dict] = {}
        self._dirty: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None

    def _items(self) -> list[dict]:
        pages = self.ddb.get_paginator("query").paginate(
            TableName=self.table, KeyConditionExpression="pk = :pk", ConsistentRead=True,
            ExpressionAttributeValues={":pk": _pk(self.env, self.service)})
        return [item for page in pages for item in page.get("Items", [])]

    def read(self) -> Entry | None:
        items = self._items()
        head = next((i for i in items if i["sk"]["S"] == "journal"), None)
        if head is None:
            return None
        value = lambda i, k: None if "NULL" in i[k] else i[k]["S"]  # noqa: E731
        moves = {i["sk"]["S"].removeprefix("host#"): {k: value(i, k) for k in ("from", "to", "step")}
                 for i in items if i["sk"]["S"].startswith("host#")}
        return Entry(operation=head["operation"]["S"], version=head["version"]["S"], moves=moves,
                     started_at=float(head["started_at"]["N"]), who=head["who"]["S"])

    def _writer(self):
        """boto3's batch writer over this journal's client: 25 requests a batch_write_item, and what DynamoDB
        leaves unprocessed sent again until none is left (items are in the client's typed form, {"S": ...})."""
        from boto3.dynamodb.table import BatchWriter

        return BatchWriter(self.table, self.ddb)

    def begin(self, operation: str, version: str, moves: dict[str, tuple[str | None, str]], who: str) -> None:
        """A new journal; refused (BadInput) while a dead deploy's journal is unsettled."""
        from botocore.exceptions import ClientError

        try:
            self.ddb.put_item(TableName=self.table, ConditionExpression="attribute_not_exists(pk)", Item={
                **_key(self.env, self.service), "operation": {"S": operation}, "version": {"S": version},
                "who": {"S": who}, "started_at": {"N": f"{time.time():.3f}"}})
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            left = self.read()
            raise BadInput(f"{self.service} has an {left.describe() if left else 'unfinished deploy'}; finish it "
                           f"with `roadie deploy {self.service} VERSION --resume` or undo it with "
                           f"`roadie rollback {self.service}`.") from None
        self._moves = {h: {"from": f, "to": t, "step": "planned"} for h, (f, t) in moves.items()}
        self._write(list(self._moves))
        self._stop.clear()
        self._flusher = threading.Thread(target=self._flush_loop, name=f"journal-{self.service}", daemon=True)
        self._flusher.start()

    def _write(self, hosts: list[str]) -> None:
        s = lambda v: {"S": v} if v else {"NULL": True}  # noqa: E731
        with self._lock:
            items = [{**_key(self.env, self.service, h), **{k: s(v) for k, v in self._moves[h].items()}}
                     for h in hosts]
        with self._writer() as batch:
            for item in items:
                batch.put_item(Item=item)

    def note(self, host: str, step: str) -> None:
        """A host's progress, written at the next flush; a host this journal does not hold is ignored."""
        with self._lock:
            if host in self._moves:
                self._moves[host]["step"] = step
                self._dirty.add(host)

    def flush(self) -> None:
        with self._lock:
            hosts, self._dirty = sorted(self._dirty), set()
        if hosts:
            self._write(hosts)

    def _flush_loop(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS):
            try:
                self.flush()
            except Exception:  # a network blip: the steps stay noted and go with a later flush or close
                pass

    def abandon(self) -> None:
        """Stop writing, without the last write `close` makes: this process no longer holds the service's lock,
        so the journal stays as it stood for the new holder to settle from."""
        self._stop.set()

    def close(self) -> None:
        """Stop the flusher and write what is left."""
        self._stop.set()
        if self._flusher:
            self._flusher.join(timeout=10)
            self._flusher = None
        self.flush()

    def end(self) -> None:
        """Host items first, the header last: a journal half deleted still reads as unfinished."""
        with self._writer() as batch:  # every host item is gone when the block ends
            for i in self._items():
                if i["sk"]["S"] != "journal":
                    batch.delete_item(Key={"pk": i["pk"], "sk": i["sk"]})
        self.ddb.delete_item(TableName=self.table, Key=_key(self.env, self.service))

    def recording(self, emit: Callable[[Event], None]) -> Callable[[Event], None]:
        """`emit` that also writes each host's step as the engine reports it."""
        def both(ev: Event) -> None:
            host = ev.fields.get("host")
            if ev.kind == Kind.BATCH_STARTED:  # written before any host of the batch leaves service
                for h in ev.fields.get("hosts", []):
                    self.note(h, "draining")
                self.flush()
            elif host:
                if ev.kind == Kind.STAGED:
                    self.note(host, "staged")
                elif ev.kind == Kind.HOST_STEP and ev.fields.get("step") in STEPS:
                    self.note(host, STEPS[ev.fields["step"]])
                elif ev.kind in ENDS:
                    self.note(host, ENDS[ev.kind])
            emit(ev)
        return both


def check_resume(entry: Entry | None, service: str, env: str, version: str | None, operation: str) -> None:
    """BadInput unless there is an unfinished deploy this resume can finish."""
    if entry is None:
        raise BadInput(f"Nothing to resume: no unfinished deploy of {service} in {env}.")
    if operation == "deploy" and version != entry.version:
        raise BadInput(f"The unfinished {entry.operation} of {service} was to {entry.version}, not {version}: "
                       f"resume with {entry.version}, or `roadie rollback {service}` to undo it.")
