"""The audit log: one record per deploy, rollback, restart or lock override, in the deploys table.

Records share one partition ordered by time, so `roadie audit --since` is one
query; each record is the operation's whole document (JSON), with the fields
used for filtering copied beside it.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone

PARTITION = "audit"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


def record(ddb, table: str, env: str, doc: dict) -> dict:
    """Append `doc` (which must have `operation` and `service`); returns it with id and time."""
    now = time.time()
    doc = {"id": uuid.uuid4().hex[:12], "env": env, "recorded_at": iso(now), **doc}
    ddb.put_item(TableName=table, Item={
        "pk": {"S": f"{PARTITION}#{env}"}, "sk": {"S": f"{doc['recorded_at']}#{doc['id']}"},
        "service": {"S": str(doc.get("service", ""))}, "operation": {"S": str(doc.get("operation", ""))},
        "doc": {"S": json.dumps(doc, default=str)}})
    return doc


def query(ddb, table: str, env: str, service: str | None = None, since: float | None = None,
          limit: int = 1000) -> list[dict]:
    """Records oldest first, optionally of one service and after a time."""
    kwargs = {"TableName": table, "KeyConditionExpression": "pk = :pk AND sk >= :since",
              "ExpressionAttributeValues": {":pk": {"S": f"{PARTITION}#{env}"},
                                            ":since": {"S": iso(since) if since else "0"}}}
    if service:
        kwargs["FilterExpression"] = "service = :svc"
        kwargs["ExpressionAttributeValues"][":svc"] = {"S": service}
    out: list[dict] = []
    while True:
        page = ddb.query(**kwargs)
        out.extend(json.loads(item["doc"]["S"]) for item in page.get("Items", []))
        if "LastEvaluatedKey" not in page or len(out) >= limit:
            return out[:limit]
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
