"""roadie db: reading Patroni's /cluster answer and choosing a switchover target (pure)."""

import shlex

import pytest

from roadie.db import patroni
from roadie.errors import BadInput, OperationFailed


def cluster(*members):
    return patroni.parse_cluster({"members": [
        {"name": n, "role": r, "state": s, "host": f"198.18.0.{15 + i}", "timeline": 3,
         **({} if lag is None else {"lag": lag})} for i, (n, r, s, lag) in enumerate(members)]})


HEALTHY = [("db-1", "leader", "running", None), ("db-2", "sync_standby", "streaming", 0),
           ("db-3", "replica", "streaming", 512)]


def test_parse_cluster_maps_roles_and_keeps_lag_of_standbys_only():
    found = cluster(("db-1", "master", "running", 0), ("db-2", "replica", "running", "unknown"))
    assert [(m.name, m.role, m.lag) for m in found] == [("db-1", "leader", None), ("db-2", "replica", None)]
    assert not found[1].healthy_standby  # lag unknown: not a target


@pytest.mark.parametrize(("members", "to", "max_lag", "expected"), [
    (HEALTHY, None, 1024, ("db-1", "db-2")),          # the sync standby first
    (HEALTHY, "db-3", 1024, ("db-1", "db-3")),
    ([HEALTHY[0], ("db-2", "sync_standby", "streaming", 9000), HEALTHY[2]], None, 1024, ("db-1", "db-3")),
])
def test_choose_target(members, to, max_lag, expected):
    lead, target = patroni.choose_target(cluster(*members), to, max_lag)
    assert (lead.name, target.name) == expected


@pytest.mark.parametrize(("members", "to", "max_lag", "message"), [
    (HEALTHY, "db-1", 1024, "already the leader"),
    (HEALTHY, "db-9", 1024, "not a member"),
    (HEALTHY, "db-3", 100, "over the bound of 100"),
    ([HEALTHY[0], ("db-2", "replica", "stopped", None)], "db-2", 1024, "not a healthy standby"),
    ([HEALTHY[0], ("db-2", "replica", "stopped", None)], None, 1024, "No standby is streaming"),
    ([HEALTHY[0], ("db-2", "replica", "streaming", 5000)], None, 1024, "over the lag bound"),
    ([("db-1", "replica", "streaming", 0)], None, 1024, "No running leader"),
])
def test_refusals_are_bad_input(members, to, max_lag, message):
    with pytest.raises(BadInput, match=message):
        patroni.choose_target(cluster(*members), to, max_lag)


@pytest.mark.parametrize(("text", "expected"), [("200 {\"a\": 1}", (200, '{"a": 1}')), ("412 no\n", (412, "no"))])
def test_split_answer(text, expected):
    assert patroni.split_answer(text) == expected


def test_split_answer_without_status_fails():
    with pytest.raises(OperationFailed):
        patroni.split_answer("Traceback ...")


def test_commands_post_the_switchover_to_the_members_own_address():
    cmd = patroni.switchover_cmd("198.18.0.15", "db-1", "db-2")
    assert cmd.startswith("python3 -c ") and "http://198.18.0.15:8008/switchover" in cmd
    assert '"leader": "db-1", "candidate": "db-2"' in cmd and "'POST'" in cmd


@pytest.mark.parametrize(("make", "path", "method"), [
    (lambda port: patroni.cluster_cmd("198.18.0.16", port), "/cluster", "GET"),
    (lambda port: patroni.switchover_cmd("198.18.0.16", "db-1", "db-2", port), "/switchover", "POST"),
    (lambda port: patroni.config_cmd("198.18.0.16", port), "/config", "GET"),
    (lambda port: patroni.put_config_cmd("198.18.0.16", {"ttl": 20}, port), "/config", "PUT"),
])
@pytest.mark.parametrize(("port", "expected"), [(None, 8008), (8100, 8100)])
def test_commands_ask_the_given_port_else_the_models(make, path, method, port, expected):
    """No port: roadie_database.patroni_rest_port from inventories/stack.yml (8008), where the role makes it listen."""
    python, flag, code = shlex.split(make(port))
    assert (python, flag) == ("python3", "-c")
    assert f"u.Request('http://198.18.0.16:{expected}{path}', " in code and f"method={method!r}" in code
    assert (":8008/" in code) is (expected == 8008)


def test_one_transport_serves_every_read_of_a_command(monkeypatch):
    """`db status` and a backup's plan ask the same hosts several times: one transport per command (one SSH
    handshake per host), not one per read, and it is closed when the command's environment closes."""
    import json

    from roadie import transport
    from roadie.db import backups, ops
    from roadie.environment import Environment

    made, closed = [], []

    class Transport:
        def run(self, host, command, what):
            return "200 " + json.dumps({"members": [{"name": "db-1", "role": "leader", "state": "running"}]})

        def close(self):
            closed.append(self)

    monkeypatch.setattr(transport, "for_env", lambda env, kind, **_: made.append(Transport()) or made[-1])
    with Environment.load("local") as environment:
        assert ops.status(environment)["leader"] == "db-1"
        assert backups.plan_backup(environment)["on"] == "db-1"
        ops.members(environment)
        assert len(made) == 1 and closed == []
    assert closed == made  # closed with the environment
