"""The live rollout picture follows the engine's events, and shows only on a terminal."""

import io

import pytest

from roadie.deploy.view import HostRow, RolloutView
from roadie.environment import Environment
from roadie.events import event
from roadie.output import Output


def view() -> RolloutView:
    return RolloutView("deploy catalog 1.1.0 in local",
                       {h: HostRow(h, "1.0.0 -> 1.1.0") for h in ("catalog-1", "catalog-2")}, batches=2)


STARTED = event("deploy.batch.started", hosts=["catalog-1"], index=1)


@pytest.mark.parametrize("events, states", [
    ([], ["waiting", "waiting"]),
    ([STARTED], ["drain", "waiting"]),
    ([STARTED, event("deploy.host.step", host="catalog-1", step="drain", seconds=0.1)], ["switch", "waiting"]),
    ([STARTED, event("deploy.host.step", host="catalog-1", step="restart", seconds=1)], ["health", "waiting"]),
    ([STARTED, event("deploy.host.step", host="catalog-1", step="enable", seconds=1)], ["drain", "waiting"]),
    ([STARTED, event("deploy.host.done", host="catalog-1")], ["in service", "waiting"]),
    ([STARTED, event("deploy.host.failed", host="catalog-1", step="health")], ["failed at health", "waiting"]),
    ([event("deploy.host.reverted", host="catalog-2", to="1.0.0")], ["waiting", "back on 1.0.0"]),
    ([event("deploy.host.done", host="elsewhere-9")], ["waiting", "waiting"]),
])
def test_states_follow_events(events, states):
    v = view()
    for ev in events:
        v.apply(ev)
    assert [row[2] for row in v.rows()] == states


def test_summary_counts_batches_and_hosts():
    v = view()
    for ev in (STARTED, event("deploy.host.done", host="catalog-1"), event("deploy.batch.done", index=1)):
        v.apply(ev)
    assert v.summary(now=v.started + 7).startswith("batch 1/2 done · 1/2 hosts in service · 7 s")


class Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("stream, json_mode, drawn", [(Tty(), False, True), (io.StringIO(), False, False),
                                                      (Tty(), True, False)])
def test_live_draws_only_on_a_terminal(stream, json_mode, drawn):
    out = Output(json_mode=json_mode, stream=io.StringIO(), err_stream=stream)
    v = view()
    with out.live(v):
        out.emit(STARTED)
    assert (v.hosts["catalog-1"].state == "drain") is drawn  # fed only while drawn
    assert ("catalog-2" in stream.getvalue()) is drawn
    assert out.listeners == []


# -- `roadie status`: host facts in, the rendered table out --------------------------------------------------------

def host(name, releases=(), active="active", error=None, current="1.2.0", previous="1.1.0", balancer="UP"):
    h = {"host": name, "current": current, "previous": previous, "releases": list(releases), "active": active,
         "balancer": balancer}
    if error:
        h.update(current=None, previous=None, releases=[], active=f"unreachable: {error}", error=error)
    return h


SEVEN = ["0.9.0", "1.0.0", "1.0.1", "1.1.0", "1.10.0-rc.1", "1.2.0", "1.0.0-rc.1"]  # as the host lists them
SSH_ERROR = ("catalog-2 (10.0.0.12): ssh: connect to host 10.0.0.12 port 22: Connection timed out "
             "after 10 s while reading the release state")


@pytest.mark.parametrize("releases, cell", [
    ([], "none"),
    (["1.0.0"], "1: 1.0.0"),
    (["1.0.0", "1.1.0", "1.0.1"], "3: 1.1.0, 1.0.1, 1.0.0"),
    (["1.0.0", "1.1.0", "1.0.1", "0.9.0"], "4: 1.1.0, 1.0.1, 1.0.0 …"),
    (["1.9.0", "1.10.0", "1.10.0-rc.1"], "3: 1.10.0, 1.10.0-rc.1, 1.9.0"),  # SemVer order, not the host's sort
    (["1.0.0", "not-a-version"], "2: 1.0.0, not-a-version"),
])
def test_releases_cell_counts_and_names_the_newest(releases, cell):
    from roadie.deploy.view import releases_cell

    assert releases_cell(releases) == cell


@pytest.mark.parametrize("hosts, rows, notes", [
    ([host("catalog-1", SEVEN)],
     [("catalog-1", "1.2.0", "1.1.0", "7: 1.10.0-rc.1, 1.2.0, 1.1.0 …", "active", "UP")], []),
    ([host("catalog-1", ["1.1.0", "1.2.0"]), host("catalog-2", error=SSH_ERROR, balancer="DOWN")],
     [("catalog-1", "1.2.0", "1.1.0", "2: 1.2.0, 1.1.0", "active", "UP"),
      ("catalog-2", None, None, "", "unreachable", "DOWN")],
     [f"catalog-2: {SSH_ERROR}"]),
    ([host("catalog-1", ["1.2.0"], active="failed")],
     [("catalog-1", "1.2.0", "1.1.0", "1: 1.2.0", "failed", "UP")], []),
])
def test_status_table_rows_and_notes(hosts, rows, notes):
    from roadie.deploy.view import status_table

    assert status_table(hosts) == (rows, notes)


@pytest.fixture
def status_cli(monkeypatch):
    """`roadie status` over given host facts: no host, balancer or lock is asked."""
    from click.testing import CliRunner

    from roadie.deploy import status as st
    from roadie.main import main

    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.delenv("ROADIE_OUTPUT", raising=False)

    class NoJournal:
        def read(self):
            return None

    monkeypatch.setattr(Environment, "journal", lambda self, service: NoJournal())

    def invoke(hosts, *args):
        doc = {"env": "local", "services": [{"service": "catalog", "versions": ["1.2.0"], "hosts": hosts,
                                             "maintenance": {"on": False, "retry_after": None, "error": None},
                                             "lock": None}]}
        monkeypatch.setattr(st, "collect", lambda env: doc)
        return CliRunner().invoke(main, ["status", *args])
    return invoke


@pytest.mark.parametrize("hosts, lines", [
    ([host("catalog-1", SEVEN), host("catalog-3", ["1.2.0", "1.1.0"])],
     ["catalog-1  1.2.0    1.1.0     7: 1.10.0-rc.1, 1.2.0, 1.1.0 …  active  UP",
      "catalog-3  1.2.0    1.1.0     2: 1.2.0, 1.1.0                 active  UP"]),
    ([host("catalog-1", ["1.2.0"]), host("catalog-2", error=SSH_ERROR, balancer="DOWN")],
     ["catalog-1  1.2.0    1.1.0     1: 1.2.0  active       UP",
      "catalog-2                               unreachable  DOWN",
      f"catalog-2: {SSH_ERROR}"]),
])
def test_status_prints_one_line_per_host_and_errors_under_the_table(status_cli, hosts, lines):
    res = status_cli(hosts)
    assert res.exit_code == 0, res.output
    out = [line.strip() for line in res.stdout.splitlines()]
    header = next(i for i, line in enumerate(out) if line.lstrip().startswith("host"))
    assert out[header + 1:] == lines, res.stdout


def test_status_json_keeps_every_release_and_the_whole_error(status_cli):
    import json

    hosts = [host("catalog-1", SEVEN), host("catalog-2", error=SSH_ERROR)]
    res = status_cli(hosts, "--output", "json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["services"][0]["hosts"][0]["releases"] == SEVEN
    assert doc["services"][0]["hosts"][1]["error"] == SSH_ERROR


def test_an_unreachable_host_keeps_its_whole_error_apart_from_its_unit_state():
    from roadie.deploy import status as st
    from roadie.errors import OperationFailed

    facts = st.unreachable_facts(OperationFailed(SSH_ERROR))
    assert facts == {"current": None, "previous": None, "releases": [], "active": f"unreachable: {SSH_ERROR}",
                     "error": SSH_ERROR}
