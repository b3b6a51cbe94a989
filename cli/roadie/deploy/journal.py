"""The deploy journal: each host's progress, written to the deploys table as it happens.

One item per (environment, service) while a deploy runs: the operation, the
target, each moving host's from and to versions and the last step it finished
(staged, drained, switched, restarted, healthy, enabled; done, reverted or
failed). It is written from the engine's own events, so the engine does not know
it exists, and deleted when the deploy ends by itself. An item that outlives its
deploy's lock is a deploy whose machine died: `roadie deploy --resume` or
`roadie rollback` read it, put every host it left out of service back in, and
bring the tier to one version.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from roadie.errors import BadInput
from roadie.events import Event

# The engine's events, as the step a host has reached.
STEPS = {"drain": "drained", "switch": "switched", "restart": "restarted", "health": "healthy", "enable": "enabled"}
ENDS = {"deploy.host.done": "done", "deploy.host.reverted": "reverted", "deploy.host.failed": "failed"}
# Steps after which a host may be out of service, or off both releases' health.
UNSETTLED = ("drained", "switched", "restarted", "healthy", "failed")


def _key(env: str, service: str) -> dict:
    return {"pk": {"S": f"journal#{env}#{service}"}, "sk": {"S": "journal"}}


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


class Journal:
    def __init__(self, ddb, table: str, env: str, service: str):
        self.ddb, self.table, self.env, self.service = ddb, table, env, service

    def read(self) -> Entry | None:
        item = self.ddb.get_item(TableName=self.table, Key=_key(self.env, self.service),
                                 ConsistentRead=True).get("Item")
        if not item:
            return None
        moves = {h: {k: None if "NULL" in x else x["S"] for k, x in v["M"].items()}
                 for h, v in item["hosts"]["M"].items()}
        return Entry(operation=item["operation"]["S"], version=item["version"]["S"], moves=moves,
                     started_at=float(item["started_at"]["N"]), who=item["who"]["S"])

    def begin(self, operation: str, version: str, moves: dict[str, tuple[str | None, str]], who: str) -> None:
        """A new journal; refused (BadInput) while a dead deploy's journal is unsettled."""
        from botocore.exceptions import ClientError

        s = lambda v: {"S": v} if v else {"NULL": True}  # noqa: E731
        hosts = {h: {"M": {"from": s(f), "to": s(t), "step": s("planned")}} for h, (f, t) in moves.items()}
        try:
            self.ddb.put_item(TableName=self.table, ConditionExpression="attribute_not_exists(pk)", Item={
                **_key(self.env, self.service), "operation": {"S": operation}, "version": {"S": version},
                "who": {"S": who}, "started_at": {"N": f"{time.time():.3f}"}, "hosts": {"M": hosts}})
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            left = self.read()
            raise BadInput(f"{self.service} has an {left.describe() if left else 'unfinished deploy'}; finish it "
                           f"with `roadie deploy {self.service} VERSION --resume` or undo it with "
                           f"`roadie rollback {self.service}`.") from None

    def step(self, host: str, step: str) -> None:
        """One host's progress: one write; a host this journal does not hold is ignored."""
        from botocore.exceptions import ClientError

        try:
            self.ddb.update_item(TableName=self.table, Key=_key(self.env, self.service),
                                 UpdateExpression="SET hosts.#h.#s = :s",
                                 ConditionExpression="attribute_exists(hosts.#h)",
                                 ExpressionAttributeNames={"#h": host, "#s": "step"},
                                 ExpressionAttributeValues={":s": {"S": step}})
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def end(self) -> None:
        self.ddb.delete_item(TableName=self.table, Key=_key(self.env, self.service))

    def recording(self, emit: Callable[[Event], None]) -> Callable[[Event], None]:
        """`emit` that also writes each host's step as the engine reports it."""
        def both(ev: Event) -> None:
            host = ev.fields.get("host")
            if host:
                if ev.kind == "deploy.staged":
                    self.step(host, "staged")
                elif ev.kind == "deploy.host.step" and ev.fields.get("step") in STEPS:
                    self.step(host, STEPS[ev.fields["step"]])
                elif ev.kind in ENDS:
                    self.step(host, ENDS[ev.kind])
            emit(ev)
        return both


def check_resume(entry: Entry | None, service: str, env: str, version: str | None, operation: str) -> None:
    """BadInput unless there is an unfinished deploy this resume can finish."""
    if entry is None:
        raise BadInput(f"Nothing to resume: no unfinished deploy of {service} in {env}.")
    if operation == "deploy" and version != entry.version:
        raise BadInput(f"The unfinished {entry.operation} of {service} was to {entry.version}, not {version}: "
                       f"resume with {entry.version}, or `roadie rollback {service}` to undo it.")
