"""The pure pieces of `roadie ops` health, disk, logs, exec and database: facts in, lines and verdicts out."""

from __future__ import annotations

import pytest

from roadie import model
from roadie.commands import release_host
from roadie.errors import BadInput
from roadie.inventory import Host
from roadie import health
from roadie.ops import database, disk, execute, logs

DF = """Filesystem     1-blocks      Used Available Capacity Mounted on
overlay      100000000  90000000  10000000      90% /
/dev/vdb      50000000   5000000  45000000      10% /srv
overlay      100000000  90000000  10000000      90% /
---
40960000\t/srv/catalog/releases/1.0.0
8192\t/tmp
"""


def test_parse_usage():
    u = disk.parse_usage(DF)
    assert [(m["mount"], m["percent"]) for m in u["mounts"]] == [("/", 90), ("/srv", 10)]
    assert u["top"] == [{"path": "/srv/catalog/releases/1.0.0", "bytes": 40960000}, {"path": "/tmp", "bytes": 8192}]


def test_plan_lists_exactly_what_prune_removes():
    """One rule: disk clean's listing is the deploy's prune without the removal."""
    assert release_host.prune("catalog", 3).startswith(release_host.prunable("catalog", 3) + " | ")
    assert disk.plan_cmd("catalog", 3).startswith(release_host.prunable("catalog", 3) + " | ")


def test_prune_takes_a_release_out_of_the_list_before_deleting_it_and_clears_leftovers(tmp_path):
    """A prune stopped half-way leaves `.removing-V` (no listing shows it), never a half-deleted `V`."""
    import os
    import subprocess

    base = tmp_path / "srv" / "svc"
    releases = base / "releases"
    for i, v in enumerate(["1.0.0", "1.1.0", "1.2.0", "1.3.0"]):
        (releases / v / "app").mkdir(parents=True)
        os.utime(releases / v, (1_700_000_000 + i, 1_700_000_000 + i))
    (releases / ".removing-0.9.0" / "app").mkdir(parents=True)  # an earlier prune interrupted
    os.symlink("releases/1.3.0", base / "current")
    os.symlink("releases/1.2.0", base / "previous")
    line = release_host.prune("svc", keep=3).replace("/srv/svc", str(base))
    assert " mv -T -- \"$r\" \".removing-$r\" && rm -rf" in line
    proc = subprocess.run(["sh", "-c", line], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in releases.iterdir()) == ["1.1.0", "1.2.0", "1.3.0"]


@pytest.mark.parametrize(("bound", "ok"), [("200M", True), ("1G", True), ("0M", False), ("200", False),
                                           ("1G; rm -rf /", False)])
def test_journal_bound(bound, ok):
    if ok:
        assert disk.check_bound(bound) == bound
    else:
        with pytest.raises(BadInput, match="not a size"):
            disk.check_bound(bound)


@pytest.mark.parametrize("names", [[], [""], ["", " "], ["catalog", ""]])
def test_disk_refuses_an_empty_selection_rather_than_every_host(monkeypatch, names):
    """[] is a selection given empty (`--hosts ''`), not None (no --hosts): never every host."""
    from pathlib import Path

    from roadie import paths
    from roadie.environment import Environment

    monkeypatch.setattr(paths, "INVENTORIES", Path(__file__).resolve().parents[1] / "fleet" / "inventories")
    with pytest.raises(BadInput):
        disk.check(Environment.load("mini"), names, 5, "200M")
    assert [h.name for h in disk.check(Environment.load("mini"), None, 5, "200M")] == ["mini-1", "mini-2", "mini-3"]


@pytest.mark.parametrize(("value", "names"), [
    (None, None), ("catalog", ["catalog"]), ("catalog, db-1", ["catalog", "db-1"]), (" lb-1 ,", ["lb-1"]),
    ("", BadInput), (",", BadInput), (" , ", BadInput),
])
def test_a_selection_given_empty_is_bad_input_and_none_is_every_host(value, names):
    from roadie.ops import common

    if names is BadInput:
        with pytest.raises(BadInput, match="^--hosts is empty: .*nothing was changed"):
            common.selection(value, "--hosts")
    else:
        assert common.selection(value, "--hosts") == names


def host(name, *groups):
    return Host(name, "198.18.0.99", groups)


@pytest.mark.parametrize(("h", "units"), [
    (host("catalog-1", "catalog"), ["catalog.service"]), (host("lb-1", "loadbalancer"), ["haproxy.service"]),
    (host("db-1", "database", "database_primary"), ["patroni.service", "etcd.service", "postgresql*"]),
    (host("x", "other"), []),
])
def test_units_per_host(h, units):
    assert logs.units(model.load(), h) == units


@pytest.mark.parametrize(("kw", "line"), [
    ({}, "journalctl --no-pager -o short-iso -u catalog.service -n 200"),
    ({"lines": 5, "since": "1h ago"}, "journalctl --no-pager -o short-iso -u catalog.service --since '1h ago' -n 5"),
    ({"grep": "GET /api", "lines": 3},
     "journalctl --no-pager -o short-iso -u catalog.service | grep -E -e 'GET /api' | tail -n 3"),
    ({"follow": True}, "journalctl --no-pager -o short-iso -u catalog.service -f -n 200"),
    ({"follow": True, "grep": "x"},
     "journalctl --no-pager -o short-iso -u catalog.service -f -n 1000 | grep --line-buffered -E -e x"),
])
def test_journal_lines(kw, line):
    assert logs.command(["catalog.service"], **kw) == line


@pytest.mark.parametrize(("lines", "grep", "since", "message"), [
    (0, None, None, "--lines"), (10_001, None, None, "--lines"), (5, "", None, "needs a pattern"),
    (5, "(", None, "not a regular expression"), (5, None, " ", "--since"),
])
def test_bad_log_options(lines, grep, since, message):
    with pytest.raises(BadInput, match=message):
        logs.check(lines, grep, since)


def test_merge_orders_hosts_lines_by_time_and_drops_journal_notes():
    got = logs.merge({"a": ["2026-11-23T10:00:02+0000 a two", "-- No entries --"],
                      "b": ["2026-11-23T10:00:01+0000 b one", "2026-11-23T10:00:03+0000 b three"]})
    assert got == [("b", "2026-11-23T10:00:01+0000 b one"), ("a", "2026-11-23T10:00:02+0000 a two"),
                   ("b", "2026-11-23T10:00:03+0000 b three")]


@pytest.mark.parametrize(("argv", "line"), [
    (("uptime",), "uptime"), (("df -h | tail -1",), "df -h | tail -1"), (("ls", "-l", "/srv/a b"), "ls -l '/srv/a b'"),
    ((), None), (("",), None), (("  ",), None),
])
def test_exec_command_line(argv, line):
    if line is None:
        with pytest.raises(BadInput, match="Name the command"):
            execute.command_line(argv)
    else:
        assert execute.command_line(argv) == line


PRIMARY = {"recovery": False, "senders": [{"name": "db_2", "state": "streaming", "lag": 0.2}], "receiver": None,
           "replay_age": None}
REPLICA = {"recovery": True, "senders": [], "receiver": "streaming", "replay_age": 500.0}


@pytest.mark.parametrize(("docs", "expected"), [
    ({"db-1": PRIMARY, "db-2": REPLICA}, []),
    ({"db-1": PRIMARY, "db-2": {**REPLICA, "receiver": None}}, ["db-2: database replica not streaming"]),
    ({"db-1": {"error": "connection refused"}, "db-2": REPLICA},
     ["db-1: database connection refused", "database: no primary"]),
    ({"db-1": PRIMARY, "db-2": PRIMARY}, ["split brain"]),
    ({"db-1": {**PRIMARY, "senders": [{"name": "db_2", "state": "streaming", "lag": 95.0}]}, "db-2": REPLICA},
     ["db-1: replication lag 95 s"]),
])
def test_database_problems(docs, expected):
    found = database.problems([database.member(n, d) for n, d in docs.items()])
    assert len(found) == len(expected) and all(e in f for e, f in zip(expected, found, strict=True)), found


BACKUPS = {"backups": 2, "last_backup_age_s": 3600.0, "last_archived_wal": "000000010000000000000009",
           "archive_age_s": 30, "failed_count": 0, "last_failed_wal": None}


def report(**over):
    svc = {"service": "catalog", "versions": ["1.0.0"], "lock": None, "maintenance": {"on": False},
           "hosts": [{"host": "catalog-1", "current": "1.0.0", "active": "active", "balancer": "UP"},
                     {"host": "catalog-2", "current": "1.0.0", "active": "active", "balancer": "UP"}]}
    svc.update(over.pop("svc", {}))
    r = {"services": [svc], "database": [database.member("db-1", PRIMARY)], "backups": BACKUPS,
         "hosts": {"catalog-1": {"mounts": [{"mount": "/", "percent": 40}], "top": []},
                   "catalog-2": {"mounts": [{"mount": "/", "percent": 40}], "top": []}}}
    r.update(over)
    return r


LOCK = {"describe": "alice@laptop (pid 1, deploy)", "expires_at": "2026-11-23T10:01:00+00:00"}
NOW = 1795428000.0  # 2026-11-23T10:00:00Z


@pytest.mark.parametrize(("r", "problem", "note"), [
    (report(), None, None),
    (report(hosts={"catalog-1": {"error": "timed out"}, "catalog-2": {"mounts": [], "top": []}}),
     "catalog-1: does not answer", None),
    (report(hosts={"catalog-1": {"mounts": [{"mount": "/srv", "percent": 91}], "top": []}}),
     "catalog-1: /srv is 91% full", None),
    (report(svc={"hosts": [{"host": "catalog-1", "current": "1.0.0", "active": "failed", "balancer": "DOWN"}]}),
     "catalog-1: catalog unit is failed", None),
    (report(svc={"hosts": [{"host": "catalog-1", "current": "1.0.0", "active": "active", "balancer": "DOWN"},
                           {"host": "catalog-2", "current": "1.0.0", "active": "active", "balancer": "UP"}]}),
     "catalog-1: DOWN in the balancer", None),
    (report(svc={"hosts": [{"host": "catalog-1", "current": "1.0.0", "active": "active", "balancer": "DRAIN"},
                           {"host": "catalog-2", "current": "1.0.0", "active": "active", "balancer": "UP"}]}),
     None, "catalog-1: drained"),
    (report(svc={"versions": ["1.0.0", "1.1.0"]}), "version drift", None),
    (report(svc={"versions": ["1.0.0", "1.1.0"], "lock": LOCK}), None, "locked by alice"),
    (report(svc={"lock": {**LOCK, "expires_at": "2026-11-23T09:00:00+00:00"}}), "lock held past its lease", None),
    (report(svc={"maintenance": {"on": True, "retry_after": 300}}), None, "in maintenance"),
    (report(backups=None), None, "backups: none configured"),
    (report(backups={**BACKUPS, "backups": 0, "last_backup_age_s": None}), "backups: no base backup", None),
    (report(backups={**BACKUPS, "last_backup_age_s": 30 * 3600.0}), "the last base backup is 30 h old", None),
    (report(backups={**BACKUPS, "failed_count": 3, "last_failed_wal": "00000001000000000000000A"}),
     "WAL archiving is failing", None),
    (report(backups={**BACKUPS, "failed_count": 3, "last_failed_wal": "000000010000000000000008"}), None, None),
    (report(backups={"error": "access denied"}), "backups: cannot be read (access denied)", None),
])
def test_health_problems_and_notes(r, problem, note):
    found, notes = health.problems(r, threshold=85, now=NOW)
    assert (any(problem in f for f in found) if problem else found == []), found
    if note:
        assert any(note in n for n in notes), notes


def test_ctrl_c_inside_uninterrupted_waits_for_the_block_then_stops():
    import os
    import signal

    from roadie.ops import common

    done = []
    with pytest.raises(KeyboardInterrupt):
        with common.uninterrupted():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("the rest of the block ran")
    assert done == ["the rest of the block ran"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# -- logs and exec through the transport's run_each: SSH and SSM alike (only --follow needs a stream) -------------

def _ssm_free_inventory(tmp_path, connection: str):
    """A two-host catalog tier reached by `connection`, as a static inventory (the aws_ec2 one reads EC2)."""
    root = tmp_path / "inventories"
    (root / "awsy" / "group_vars").mkdir(parents=True)
    (root / "awsy" / "group_vars" / "all.yml").write_text(
        f"roadie_connection: {connection}\nroadie_buckets: {{artifacts: roadie-awsy-artifacts}}\n")
    (root / "awsy" / "hosts.yml").write_text("""all:
  children:
    catalog:
      hosts:
        catalog-1: {ansible_host: 10.0.1.1, ansible_aws_ssm_instance_id: i-01}
        catalog-2: {ansible_host: 10.0.1.2, ansible_aws_ssm_instance_id: i-02}
""")
    return root


class Fanned:
    """A transport of any kind whose run_each answers from the hosts' journals; records what it was asked."""

    made: list = []

    @classmethod
    def from_environment(cls, env, **_environment):
        return cls(env)

    def __init__(self, env):
        self.env, self.asked, self.closed = env, [], False
        Fanned.made.append(self)

    def run_each(self, hosts, command, what, timeout=None, on_line=None, follow=False):
        from roadie.transport import Result

        self.asked.append((tuple(h.name for h in hosts), command, timeout, follow))
        out = {}
        for i, h in enumerate(hosts):
            text = f"2026-11-23T10:00:0{i}+0000 {h.name} said hello\n"
            if on_line:
                on_line(h.name, text.rstrip("\n"))
            out[h.name] = Result(h.name, 0, text if "journalctl" in command else f"{h.name}\n", "")
        return out

    def stop(self):
        pass

    def close(self):
        self.closed = True


@pytest.mark.parametrize(("connection", "args", "code", "said"), [
    ("ssh", ["ops", "logs", "catalog"], 0, "catalog-1 | 2026-11-23T10:00:00+0000 catalog-1 said hello"),
    ("ssm", ["ops", "logs", "catalog"], 0, "catalog-1 | 2026-11-23T10:00:00+0000 catalog-1 said hello"),
    ("ssm", ["ops", "logs", "catalog", "--grep", "hello", "-n", "5"], 0, "catalog-2 | "),
    ("ssh", ["ops", "logs", "catalog", "--follow"], 0, "catalog-2 | 2026-11-23T10:00:01+0000 catalog-2 said hello"),
    ("bastion", ["ops", "logs", "catalog", "--follow"], 0, "catalog-1 | "),
    ("ssm", ["ops", "logs", "catalog", "--follow"], 2, "--follow"),
    ("ssm", ["ops", "exec", "catalog", "--plan", "--", "uptime"], 0, "would run on catalog-1, catalog-2: uptime"),
    ("ssh", ["ops", "exec", "catalog", "--plan", "--", "uptime"], 0, "would run on catalog-1, catalog-2: uptime"),
])
def test_logs_and_exec_on_an_ssm_inventory_are_not_refused_but_a_follow_is(monkeypatch, tmp_path, connection, args,
                                                                          code, said):
    from click.testing import CliRunner

    from roadie import paths
    from roadie.main import main
    from roadie.transport import registry

    monkeypatch.setattr(paths, "INVENTORIES", _ssm_free_inventory(tmp_path, connection))
    monkeypatch.setenv("ROADIE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("ROADIE_OUTPUT", raising=False)
    kind = type("Fanned", (Fanned,), {"streams": registry.KINDS[connection].streams})  # streams as the real one
    monkeypatch.setitem(registry.KINDS, connection, kind)
    Fanned.made = []
    res = CliRunner().invoke(main, ["--env", "awsy", *args])
    assert res.exit_code == code, (res.output, res.exception)
    if code == 2:  # refused in one line, before any host was asked
        assert res.stderr.count("\n") == 1 and said in res.stderr and "SSM" in res.stderr, res.stderr
        assert Fanned.made == []
        return
    assert said in res.stdout, res.stdout
    if "logs" in args:
        (asked,) = Fanned.made[0].asked
        assert asked[0] == ("catalog-1", "catalog-2") and asked[1].startswith("journalctl ")
        assert asked[3] == ("--follow" in args)
    else:
        assert Fanned.made == []  # a plan asks no host


@pytest.mark.parametrize(("connection", "follow", "refused"), [
    ("ssh", True, False), ("local", True, False), ("bastion", True, False), ("ssm", False, False),
    ("ssm", True, True), ("telnet", False, True),
])
def test_which_transports_logs_can_follow(connection, follow, refused):
    if refused:
        with pytest.raises(BadInput) as exc:
            logs.check_follow("awsy", connection, follow)
        assert "\n" not in exc.value.message
    else:
        logs.check_follow("awsy", connection, follow)


def test_logs_read_asks_each_group_of_units_once_and_merges_in_time_order():
    from roadie.transport import Result

    stack = model.load()
    hosts = [host("catalog-1", "catalog"), host("lb-1", "loadbalancer"), host("catalog-2", "catalog")]

    class T:
        asked = []

        def run_each(self, hs, command, what, timeout=None, on_line=None, follow=False):
            T.asked.append(([h.name for h in hs], command, timeout))
            return {h.name: (Result(h.name, 0, f"2026-11-23T10:00:0{len(T.asked)}+0000 {h.name}\n")
                             if h.name != "catalog-2" else Result(h.name, None, error="TimeoutError: timed out"))
                    for h in hs}

    rows, failed = logs.read(T(), stack, hosts, lines=20)
    assert T.asked == [(["catalog-1", "catalog-2"], logs.command(["catalog.service"], 20), logs.READ_SECONDS),
                       (["lb-1"], logs.command(["haproxy.service"], 20), logs.READ_SECONDS)]
    assert rows == [("catalog-1", "2026-11-23T10:00:01+0000 catalog-1"), ("lb-1", "2026-11-23T10:00:02+0000 lb-1")]
    assert failed == ["catalog-2: TimeoutError: timed out"]


def test_exec_runs_through_run_each_and_audits_each_hosts_exit():
    from roadie.transport import Result

    class Env:
        name, records = "awsy", []

        class transport:  # noqa: N801 (an attribute that is a transport)
            @staticmethod
            def run_each(hs, command, what, timeout=None, on_line=None, follow=False):
                Env.asked = (tuple(h.name for h in hs), command, timeout)
                return {h.name: Result(h.name, 0 if h.name == "catalog-1" else 1) for h in hs}

        def audit(self, operation, result, service="", started=None, **facts):
            Env.records.append({"operation": operation, "result": result, "service": service, **facts})

    hosts = [host("catalog-1", "catalog"), host("db-1", "database")]
    got = execute.run(Env(), hosts, "test -e /srv/catalog", "catalog,db-1", "why", timeout=42)
    assert Env.asked == (("catalog-1", "db-1"), "test -e /srv/catalog", 42)
    assert {n: r.exit for n, r in got.items()} == {"catalog-1": 0, "db-1": 1}
    assert Env.records == [{"operation": "exec", "result": "failed", "service": "catalog,db-1",
                            "command": "test -e /srv/catalog", "hosts": {"catalog-1": 0, "db-1": 1},
                            "message": "why"}]
