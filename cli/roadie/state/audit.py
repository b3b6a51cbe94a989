"""The audit log: one record per deploy, rollback, restart or lock override, in the deploys table.

Records share one partition per environment, sorted by time (`sk` is the ISO time,
then the record's id), so `roadie audit` is one query read from its newest end,
`--since` bounding it; each record is the operation's whole document (JSON), with the fields
used for filtering copied beside it.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone

from roadie.errors import BadInput

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


def parse_limit(text: str) -> int:
    """`--limit N`: a positive whole number, or BadInput."""
    value = str(text).strip()
    if not (value.isascii() and value.isdigit() and int(value) > 0):
        raise BadInput(f"--limit must be a positive whole number, not '{text}'.")
    return int(value)


def query(ddb, table: str, env: str, service: str | None = None, since: float | None = None,
          limit: int | None = None, newest_first: bool = False) -> list[dict]:
    """Records oldest (or newest) first, optionally of one service and after a time; all of them, or `limit`.

    One Query on the environment's partition, read from either end of its time-ordered
    sort key. Without a service filter a page is exactly the records asked for, so the
    newest N cost N records' reads however long the history; with one, DynamoDB reads
    then filters (MaxItems counts what the filter kept).
    """
    values = {":pk": {"S": f"{PARTITION}#{env}"}}
    condition = "pk = :pk"
    if since is not None:
        condition += " AND sk >= :since"
        values[":since"] = {"S": iso(since)}
    kwargs = {"TableName": table, "KeyConditionExpression": condition, "ExpressionAttributeValues": values,
              "ScanIndexForward": not newest_first}
    if service:
        kwargs["FilterExpression"] = "service = :svc"
        values[":svc"] = {"S": service}
    config = {}
    if limit is not None:
        config["MaxItems"] = limit
        if not service:
            config["PageSize"] = limit
    pages = ddb.get_paginator("query").paginate(**kwargs, PaginationConfig=config)
    return [json.loads(item["doc"]["S"]) for page in pages for item in page.get("Items", [])]


def latest(ddb, table: str, env: str, limit: int, service: str | None = None,
           since: float | None = None) -> tuple[list[dict], bool]:
    """The newest `limit` records, newest first, and whether older ones (within `since`) were left out."""
    records = query(ddb, table, env, service=service, since=since, limit=limit + 1, newest_first=True)
    return records[:limit], len(records) > limit
