"""`roadie audit` and the audit log's query, against the deploys table on moto (over HTTP).

1,200 records, one a minute, in one environment's partition: more than the old
1,000-record cap, so a query that read oldest first and stopped there shows.
"""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace
from unittest import mock

import pytest
from click.testing import CliRunner

from roadie.environment import Environment
from roadie.state import audit, table
from roadie.main import main
from tests import awsestate

START = 1_800_000_000.0  # 2027-01-15T08:00Z
COUNT = 1_200
SERVICES = ("catalog", "streaming", "catalog")  # record i is of SERVICES[i % 3]


def at(i: int) -> float:
    return START + 60 * i


def newest(*indexes: int) -> list[str]:
    return [f"1.{i}.0" for i in indexes]


@pytest.fixture(scope="module")
def history(moto_endpoint):
    ddb = awsestate.client(moto_endpoint, "dynamodb")
    name = f"roadie-audit-{uuid.uuid4().hex[:8]}-deploys"
    table.ensure(ddb, name, emulated=True)
    clock = iter(at(i) for i in range(COUNT))
    with mock.patch.object(audit, "time", SimpleNamespace(time=lambda: next(clock))):
        for i in range(COUNT):
            audit.record(ddb, name, "local", {"operation": "deploy", "service": SERVICES[i % 3],
                                              "version": f"1.{i}.0", "who": "alice"})
    audit.record(ddb, name, "staging", {"operation": "deploy", "service": "catalog", "version": "9.0.0"})
    return ddb, name


@pytest.mark.parametrize("kwargs, expected", [
    ({}, newest(*range(COUNT))),  # everything, oldest first: no silent cap at 1,000
    ({"limit": 3}, newest(0, 1, 2)),
    ({"newest_first": True, "limit": 5}, newest(1199, 1198, 1197, 1196, 1195)),
    ({"newest_first": True, "limit": 1100}, newest(*range(1199, 99, -1))),
    ({"newest_first": True, "limit": 5, "service": "streaming"}, newest(1198, 1195, 1192, 1189, 1186)),
    ({"newest_first": True, "since": at(1195)}, newest(1199, 1198, 1197, 1196, 1195)),
    ({"newest_first": True, "since": at(1190), "limit": 2, "service": "streaming"}, newest(1198, 1195)),
    ({"newest_first": True, "since": at(COUNT)}, []),
])
def test_query_reads_newest_or_oldest_first_up_to_the_limit(history, kwargs, expected):
    assert [r["version"] for r in audit.query(*history, "local", **kwargs)] == expected


@pytest.mark.parametrize("text, expected", [("1", 1), ("50", 50), (" 7 ", 7), ("100000", 100000)])
def test_a_limit_is_a_positive_whole_number(text, expected):
    assert audit.parse_limit(text) == expected


@pytest.fixture
def cli(monkeypatch, history):
    """`roadie ARGS` in process, its deploys table the history's."""
    monkeypatch.delenv("ROADIE_ENV", raising=False)
    monkeypatch.delenv("ROADIE_OUTPUT", raising=False)
    monkeypatch.setattr(Environment, "table", lambda self: history)

    def invoke(*args):
        return CliRunner().invoke(main, list(args))
    return invoke


@pytest.mark.parametrize("args, expected, more", [
    ([], newest(*range(1199, 1149, -1)), True),  # the newest 50
    (["--limit", "5"], newest(1199, 1198, 1197, 1196, 1195), True),
    (["--limit=1"], newest(1199), True),
    (["--limit", "3", "--service", "streaming"], newest(1198, 1195, 1192), True),
    (["--since", audit.iso(at(1197))], newest(1199, 1198, 1197), False),
    (["--since", audit.iso(at(1190)), "--limit", "2", "--service", "catalog"], newest(1199, 1197), True),
    (["--limit", str(COUNT)], newest(*range(COUNT - 1, -1, -1)), False),
    (["--limit", str(COUNT + 1)], newest(*range(COUNT - 1, -1, -1)), False),
])
def test_roadie_audit_shows_the_newest_records_first(cli, args, expected, more):
    res = cli("--output", "json", "audit", *args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["env"] == "local" and doc["more"] is more
    assert [r["version"] for r in doc["records"]] == expected


def test_roadie_audit_as_text_is_a_table_newest_first_saying_there_is_more(cli):
    res = cli("audit", "--limit", "2")
    assert res.exit_code == 0, res.output
    rows = [line for line in res.stdout.splitlines() if "deploy" in line]
    assert [row.split()[4] for row in rows] == ["1.1199.0", "1.1198.0"]
    assert "newest 2" in res.stderr and "--limit" in res.stderr


@pytest.mark.parametrize("value", ["0", "-3", "abc", "2.5", "", " ", "1e3", "0x10"])
@pytest.mark.parametrize("as_json", [False, True])
def test_a_bad_limit_is_one_error_line_exit_2_and_reads_nothing(cli, monkeypatch, value, as_json):
    def unread(self):
        raise AssertionError("the deploys table was read")
    monkeypatch.setattr(Environment, "table", unread)
    res = cli(*(["--output", "json"] if as_json else []), "audit", f"--limit={value}")
    assert res.exit_code == 2, res.output
    message = f"--limit must be a positive whole number, not '{value}'."
    if as_json:
        assert res.stderr == ""
        assert [json.loads(line) for line in res.stdout.splitlines()] == [
            {"event": "error", "error": message, "exit_code": 2}]
    else:
        assert res.stdout == "" and res.stderr == f"Error: {message}\n"
