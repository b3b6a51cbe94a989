"""The restore over the live cluster: its shell lines, its order, and its refusals before anything is read."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from roadie.db import barman, live
from roadie.main import main

DATADIR = "/var/lib/postgresql/15/main"
ASIDE = live.aside_dir("20261123T120000")


@pytest.mark.parametrize(("target", "present", "absent"), [
    (None, "recovery_target=immediate", "recovery_target_time"),
    (datetime(2026, 11, 23, 14, 5, tzinfo=UTC), "recovery_target_time='2026-11-23T14:05:00+00:00'",
     "recovery_target=immediate"),
])
def test_recover_script_restores_into_the_empty_live_dir_unreachable_then_stops(target, present, absent):
    script = live.recover_script("20261123T120000", target)
    opts = " ".join(barman.recovery_options(target, 5499, "/var/run/postgresql/roadie-restore"))
    assert f"-o {shlex.quote(opts)} start" in script
    assert present in opts and absent not in opts and "recovery_target_action=promote" in opts
    # Nobody reaches it while it recovers: scratch port, its own socket, no TCP.
    assert "-p 5499" in opts and "listen_addresses=''" in opts
    assert "unix_socket_directories=/var/run/postgresql/roadie-restore" in opts
    # It will be the cluster: archiving stays on so the new timeline's history reaches the bucket.
    assert "archive_mode" not in script
    order = [script.index(s) for s in (
        f'[ -z "$(ls -A {DATADIR})" ]',                      # refuses a data directory that is not empty
        f"roadie-barman restore -- 20261123T120000 {DATADIR}",
        f"sed -i '/^recovery_target/d' {DATADIR}/postgresql.conf",
        "pg_ctl -D /var/lib/postgresql/15/main -l",          # start, recover, promote
        'promoted=1',
        f"pg_ctl -D {DATADIR} -s -m fast -w stop",          # left stopped, for Patroni
    )]
    assert order == sorted(order)
    assert "rm -rf /var/lib/postgresql/15/main" not in script


@pytest.mark.parametrize(("cmd", "expected"), [
    (live.move_aside_cmd(ASIDE),
     f"set -eu; [ ! -e {ASIDE} ] || {{ echo '{ASIDE} exists already' >&2; exit 1; }}; "
     f"mv {DATADIR} {ASIDE} && install -d -o postgres -g postgres -m 0700 {DATADIR}"),
    # No name: the model's roadie_database.patroni_scope.
    (live.remove_cluster_cmd(),
     "printf %s 'roadie-catalog\nYes I am aware\n' | patronictl -c /etc/patroni/config.yml remove roadie-catalog"),
    (live.remove_cluster_cmd("other-cluster"),
     "printf %s 'other-cluster\nYes I am aware\n' | patronictl -c /etc/patroni/config.yml remove other-cluster"),
    (live.start_member_cmd(), "systemctl start patroni"),
    (live.drop_aside_cmd(ASIDE), f"rm -rf {ASIDE}"),
])
def test_commands(cmd, expected):
    assert cmd == expected


def test_put_back_only_with_an_aside_and_with_postgres_stopped_first():
    cmd = live.put_back_cmd(ASIDE)
    assert cmd.startswith(f"set -eu; if [ -d {ASIDE} ]; then ")
    assert cmd.index("-m fast -w stop") < cmd.index(f"rm -rf {DATADIR} && mv {ASIDE} {DATADIR}")


def test_stop_fails_when_postgres_outlives_patroni():
    cmd = live.stop_member_cmd()
    assert cmd.startswith("systemctl stop patroni && if ")
    assert f"pg_ctl -D {DATADIR} status" in cmd and "exit 1" in cmd


def test_steps_stop_standbys_before_the_leader_and_start_the_leader_first():
    steps = live.steps("db-1", ["db-2", "db-3"], "20261123T120000", None, ["catalog"])
    text = "\n".join(steps)
    assert steps[0].startswith("take a fresh base backup on db-1")
    assert "stop Patroni on db-2, db-3, then on db-1" in text
    assert text.index("remove the cluster from etcd") < text.index("move every member's data directory aside") \
        < text.index("restore 20261123T120000 on db-1, recover to the end of 20261123T120000") \
        < text.index("start Patroni on db-1") < text.index("start Patroni on db-2, db-3")
    assert steps[1].startswith("maintenance on for catalog") and steps[-1].startswith("maintenance off for catalog")
    assert "remove the cluster from etcd (patronictl remove roadie-catalog)" in steps
    assert "remove the cluster from etcd (patronictl remove other)" in live.steps(
        "db-1", ["db-2"], "20261123T120000", None, [], cluster="other")


@pytest.mark.parametrize(("args", "message"), [
    (["--into", "live", "--backup", "20261123T120000"], "needs --force"),
    (["--into", "live", "--time", "2026-11-23T12:00:00", "--keep", "--force"], "--keep is for --into scratch"),
])
def test_live_refusals_come_before_any_host_is_asked(monkeypatch, args, message):
    from roadie.db import backups

    monkeypatch.setattr(backups, "_hosts", lambda env: pytest.fail("a host was asked"))
    result = CliRunner().invoke(main, ["db", "restore", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_every_undo_runs_even_when_one_fails(monkeypatch):
    """Maintenance off for the first client fails: the second still leaves maintenance,
    both locks are released and the connections closed, and the failure is not hidden."""
    from roadie import inventory
    from roadie.db import backups, ops, restore_live
    from roadie.errors import OperationFailed
    from roadie.ops import maintenance

    done = []

    class Transport:
        def run(self, host, command, what):
            return "500 Patroni is busy"  # the configuration read fails: the restore stops there

        def close(self):
            done.append("closed")

    class Lock:
        def __init__(self, service):
            self.service = service

        def acquire(self, *args):
            done.append(f"locked {self.service}")

        def start_renewing(self):
            pass

        def release(self):
            done.append(f"released {self.service}")

    def switch(env, service, on, message=""):
        done.append(f"maintenance {'on' if on else 'off'} {service}")
        if not on and service == "catalog":
            raise OperationFailed("the balancer did not answer")
        return {"was_on": False}

    hosts = [inventory.Host(n, f"198.18.0.{i}", ("database",)) for i, n in enumerate(("db-1", "db-2"), 15)]
    environment = SimpleNamespace(name="local", transport=Transport(), lock=lambda service: Lock(service))
    monkeypatch.setattr(ops, "db_hosts", lambda env: hosts)
    monkeypatch.setattr(backups, "backup", lambda env, opts: {"backup_id": "B", "size": 1, "seconds": 1})
    monkeypatch.setattr(maintenance, "switch", switch)
    plan = {"on": "db-1", "standbys": ["db-2"], "target_time": None, "stamp": "20261123T120000",
            "clients": ["catalog", "streaming"], "maintenance": ["catalog", "streaming"], "backup_id": "A"}
    with pytest.raises(OperationFailed, match="the balancer did not answer") as failed:
        restore_live.run(environment, plan, lambda line: None)
    assert "Patroni answered 500" in str(failed.value.__context__)
    assert done == ["locked catalog", "locked streaming", "maintenance on catalog", "maintenance on streaming",
                    "maintenance off streaming", "maintenance off catalog", "released streaming",
                    "released catalog"]  # the connections are the environment's, closed when the command ends


@pytest.mark.parametrize(("audit", "expected"), [
    ({"seconds": 4.5}, {"seconds": 4.5}),  # into scratch
    ({"into": "live", "fresh_backup": "20261123T130000", "seconds": 30.0, "downtime_seconds": 21.0},
     {"into": "live", "fresh_backup": "20261123T130000", "seconds": 30.0, "downtime_seconds": 21.0}),
])
def test_a_finished_restore_is_audited_with_each_tables_rows(monkeypatch, audit, expected):
    from roadie.cli import db as db_cli

    records, shown = [], []

    class Out:
        json = False

        def result(self, doc, message):
            shown.append(message)

        def table(self, header, rows, title):
            shown.append(rows)

    monkeypatch.setattr(db_cli, "_audit", lambda env, doc: records.append(doc))
    done = {"backup_id": "20261123T120000", "target_time": None, "on": "db-2",
            "tables": {"tracks": {"rows": 300, "md5": "abc"}}}
    db_cli._restored(Out(), SimpleNamespace(name="local"), done, audit, "restored")
    assert records == [{"operation": "db.restore", "result": "ok", "backup_id": "20261123T120000",
                        "target_time": None, "on": "db-2", "tables": {"tracks": 300}, **expected}]
    assert shown == ["restored", [("tracks", 300, "abc")]]
