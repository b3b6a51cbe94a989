"""On-call operations on the local fleet: `roadie ops ...` and the Fabric tasks, as an on-call engineer runs them.

Restarts run under the deploy tests' load generator through HAProxy on lb-1,
every failed request counted. Each test leaves the fleet as it found it: no
host drained, no maintenance on, no lock held, every host up.
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import run_roadie
from tests.fleet.roles_fixtures import HOSTS, LB, TIERS, http, ssh, wait_for
from tests.fleet.test_deploy import act_at, balancer_servers, roadie_json, under_load, versions_on

pytestmark = pytest.mark.fleet


def _healthy_fleet() -> bool:
    """Both services installed and active on every host (a fleet left by an earlier session)."""
    code, docs, _ = roadie_json("status")
    if code != 0:
        return False
    return all(h["current"] and h["active"] == "active" for s in docs[-1]["services"] for h in s["hosts"])


@pytest.fixture(scope="module")
def fleet(request):
    """The local fleet with both services running; set up from scratch (roles_fleet) only when it is not."""
    run_roadie("local", "up", check=True, timeout=600)
    if not _healthy_fleet():
        request.getfixturevalue("roles_fleet")
    yield
    # leave it as found, whatever a failed test did
    for name in TIERS["catalog"] + TIERS["streaming"]:
        run_roadie("ops", "enable", name)
    for service in ("catalog", "streaming"):
        run_roadie("ops", "maintenance", service, "off")


def main_pids(service: str) -> dict[str, int]:
    return {h: int(ssh(h, f"systemctl show -p MainPID --value {service}.service").stdout.strip())
            for h in TIERS[service]}


def last_audit(service: str, operation: str) -> dict:
    code, docs, err = roadie_json("audit", "--since", "1h", "--limit", "1000")
    assert code == 0, err
    return [r for r in docs[-1]["records"] if r["operation"] == operation and r["service"] == service][0]  # newest


@pytest.mark.parametrize("service", ["catalog", "streaming"])
def test_rolling_restart_under_load_fails_no_request_and_restarts_every_host(fleet, service):
    versions, pids = versions_on(service), main_pids(service)
    load = under_load()
    try:
        time.sleep(2)
        started = time.monotonic()
        code, docs, err = roadie_json("ops", "restart", service, "--message", f"restart {service} under load")
        seconds = time.monotonic() - started
        time.sleep(2)
    finally:
        summary = load.stop()
    assert code == 0, f"{err}\n{docs[-3:]}"
    print(f"ops restart {service}: {seconds:.1f} s wall; {summary['failed']} failed of {summary['requests']} "
          f"requests ({ {t: v['requests'] for t, v in summary['by_target'].items()} })")
    assert summary["requests"] >= 300, summary
    assert summary["failed"] == 0, summary["failures"]
    after = main_pids(service)
    assert all(after[h] and after[h] != pids[h] for h in pids), (pids, after)  # every host restarted
    assert versions_on(service) == versions  # no version changed
    assert all(s.up for n, s in balancer_servers().items() if n.startswith(f"{service}/"))
    code, docs, _ = roadie_json("lock", "status", service)
    assert code == 0 and docs[-1]["holder"] is None
    record = last_audit(service, "restart")
    assert record["result"] == "ok" and record["message"] == f"restart {service} under load"
    assert {h["host"] for h in record["hosts"]} == set(TIERS[service])
    assert all(h["from"] == h["to"] == versions[h["host"]] for h in record["hosts"])


def test_drain_by_hand_refuses_the_last_host_and_enable_puts_it_back(fleet):
    code, docs, err = roadie_json("ops", "drain", "catalog-1", "--plan")
    assert code == 0 and docs[-1]["change"] is True, err
    assert balancer_servers()["catalog/catalog-1"].up  # --plan changed nothing
    code, docs, err = roadie_json("ops", "drain", "catalog-1", "--message", "look at it")
    try:
        assert code == 0, err
        assert docs[-1]["state"] == "DRAIN" and docs[-1]["changed"] is True
        servers = balancer_servers()
        assert servers["catalog/catalog-1"].status == "DRAIN" and servers["catalog/catalog-2"].up
        code, docs, _ = roadie_json("status")
        catalog = next(s for s in docs[-1]["services"] if s["service"] == "catalog")
        assert {h["host"]: h["balancer"] for h in catalog["hosts"]}["catalog-1"] == "DRAIN"
        for _ in range(10):  # the tier still serves, from catalog-2
            assert http(f"http://{LB}/api/tracks/1")[0] == 200
        code, docs, err = roadie_json("ops", "drain", "catalog-2")
        assert code == 2 and "Refusing to drain catalog-2" in docs[-1]["error"]
        assert "below its minimum of 1" in docs[-1]["error"], docs[-1]
        assert balancer_servers()["catalog/catalog-2"].up  # nothing changed
    finally:
        code, docs, err = roadie_json("ops", "enable", "catalog-1")
    assert code == 0, err
    assert docs[-1]["state"] == "UP" and balancer_servers()["catalog/catalog-1"].up
    assert last_audit("catalog", "drain")["message"] == "look at it"
    assert last_audit("catalog", "enable")["result"] == "ok"
    for args, message in [(("ops", "drain", "db-1"), "behind no balancer"), (("ops", "drain", "nosuch"),
                                                                              "Unknown host 'nosuch'"),
                          (("ops", "enable", "lb-1"), "behind no balancer")]:
        code, docs, _ = roadie_json(*args)
        assert code == 2 and message in docs[-1]["error"], (args, docs)


def test_maintenance_on_answers_503_with_retry_after_and_off_serves_again(fleet):
    api, stream = f"http://{LB}/api/tracks/1", f"http://{LB}/stream/1"
    code, docs, err = roadie_json("ops", "maintenance", "catalog", "on", "--plan")
    assert code == 0 and docs[-1]["changed"] is True, err
    assert http(api)[0] == 200  # --plan changed nothing
    code, docs, err = roadie_json("ops", "maintenance", "catalog", "on", "--retry-after", "120", "-m", "db work")
    try:
        assert code == 0, err
        status, headers, body = http(api)
        headers = {k.lower(): v for k, v in headers.items()}  # HAProxy sends header names in lower case
        assert status == 503 and headers.get("retry-after") == "120", (status, headers)
        assert b"catalog is in maintenance" in body
        assert http(stream, {"Range": "bytes=0-99"})[0] == 206  # only the catalog's route
        code, docs, _ = roadie_json("status")
        mt = {s["service"]: s["maintenance"] for s in docs[-1]["services"]}
        assert mt["catalog"]["on"] and mt["catalog"]["retry_after"] == 120 and not mt["streaming"]["on"]
        ssh("lb-1", "systemctl reload haproxy")  # the map file holds the state: a reload keeps it
        wait_for(lambda: http(api)[0] == 503 and http(stream, {"Range": "bytes=0-99"})[0] == 206, timeout=20,
                 what="maintenance kept over a reload")
    finally:
        code, docs, err = roadie_json("ops", "maintenance", "catalog", "off")
    assert code == 0, err
    assert http(api)[0] == 200
    on, off = last_audit("catalog", "maintenance.on"), last_audit("catalog", "maintenance.off")
    assert on["message"] == "db work" and on["retry_after"] == 120 and off["result"] == "ok"
    assert on["recorded_at"] < off["recorded_at"]
    for args, message in [(("ops", "maintenance", "nosuch", "on"), "Unknown service 'nosuch'"),
                          (("ops", "maintenance", "catalog", "maybe"), "'on' or 'off'"),
                          (("ops", "maintenance", "catalog", "on", "--retry-after", "0"), "--retry-after")]:
        code, docs, _ = roadie_json(*args)
        assert code == 2 and message in docs[-1]["error"], (args, docs)
    assert http(api)[0] == 200


def test_health_of_a_healthy_fleet_exits_0(fleet):
    run_roadie("db", "backup", check=True, timeout=600)  # a fleet with no base backup needs a human
    started = time.monotonic()
    code, docs, err = roadie_json("ops", "health")
    seconds = time.monotonic() - started
    report = docs[0]
    print(f"ops health: {seconds:.1f} s wall ({report['seconds']} s collecting)")
    assert code == 0, (report.get("problems"), err)
    assert report["problems"] == [] and set(HOSTS) <= set(report["hosts"])  # the inventory's hosts, all of them
    assert not [n for n, h in report["hosts"].items() if "error" in h]
    assert {m["role"] for m in report["database"]} == {"primary", "replica"}
    assert report["backups"]["backups"] >= 1 and report["backups"]["last_backup_age_s"] < 600, report["backups"]
    assert {s["service"]: bool(s["versions"]) for s in report["services"]} == {"catalog": True, "streaming": True}


def test_health_names_a_host_whose_container_is_stopped(fleet):
    run_roadie("local", "kill", "streaming-2", check=True)
    try:
        code, docs, err = roadie_json("ops", "health")
        assert code == 1, err
        assert "streaming-2" in docs[-1]["error"], docs[-1]
        assert any(p.startswith("streaming-2: does not answer") for p in docs[0]["problems"]), docs[0]["problems"]
        text = run_roadie("ops", "health")
        assert text.returncode == 1 and "PROBLEM: streaming-2" in text.stdout
    finally:
        run_roadie("local", "up", check=True, timeout=600)  # power back: the host boots on its own disk
        wait_for(lambda: balancer_servers()["streaming/streaming-2"].up, timeout=120, what="streaming-2 UP")
    code, docs, err = roadie_json("ops", "health")
    assert code == 0, docs[0]["problems"]


def test_logs_from_a_tier_come_from_every_host_prefixed_and_grep_filters(fleet):
    proc = run_roadie("ops", "logs", "catalog", "--lines", "30")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines and all(line.startswith(("catalog-1 | ", "catalog-2 | ")) for line in lines), lines[:5]
    assert {line.split(" | ")[0] for line in lines} == {"catalog-1", "catalog-2"}
    proc = run_roadie("ops", "logs", "catalog", "--since", "2 hours ago", "--grep", "Started|Stopped", "-n", "50")
    assert proc.returncode == 0, proc.stderr
    hits = proc.stdout.splitlines()
    assert {line.split(" | ")[0] for line in hits} == {"catalog-1", "catalog-2"}, hits
    assert all(("Started" in line or "Stopped" in line) for line in hits), hits
    code, docs, _ = roadie_json("ops", "logs", "catalog", "--grep", "no-such-line-anywhere-4711")
    assert code == 0 and not [d for d in docs if d.get("event") == "log"]
    code, docs, _ = roadie_json("ops", "logs", "nosuch")
    assert code == 2 and "neither a host nor a group" in docs[-1]["error"]


def test_disk_clean_on_a_host_with_8_releases_keeps_the_retention_with_current_and_previous(fleet):
    """Fake releases (hard-linked copies) fill catalog-1 up to 8; `current` and `previous` are made the oldest of
    all, so age alone would remove them. The fakes are older than the host's other releases: clean removes fakes only.
    """
    host, base = "catalog-1", "/srv/catalog"
    cur = ssh(host, f"basename $(readlink {base}/current)").stdout.strip()
    had_prev = ssh(host, f"readlink {base}/previous", check=False).stdout.strip()
    before = ssh(host, f"ls {base}/releases").stdout.split()
    assert len(before) <= 5, before  # the deploys' prune keeps 5
    fakes = [f"0.0.{i}" for i in range(1, 9 - len(before))]
    others = [v for v in before if v != cur]
    prev = had_prev.rsplit("/", 1)[-1] if had_prev else (others[0] if others else fakes[0])
    mtimes = ssh(host, f"stat -c '%n %Y' {base}/releases/{cur} {base}/releases/{prev} 2>/dev/null || true").stdout
    ssh(host, " && ".join([f"cp -al {base}/releases/{cur} {base}/releases/{v}" for v in fakes]
                          + [f"touch -d '2020-01-0{i + 1}' {base}/releases/{v}" for i, v in enumerate(fakes)]
                          + [f"touch -d '2019-06-01' {base}/releases/{prev} {base}/releases/{cur}",
                             f"ln -sfn releases/{prev} {base}/previous"]))
    try:
        assert len(ssh(host, f"ls {base}/releases").stdout.split()) == 8
        code, docs, err = roadie_json("ops", "disk", "clean", "--hosts", host, "--keep", "5", "--plan")
        assert code == 0, err
        planned = [r["release"] for r in docs[-1]["hosts"][host]["releases"]["catalog"]]
        assert len(planned) == 3 and cur not in planned and prev not in planned, planned
        assert len(ssh(host, f"ls {base}/releases").stdout.split()) == 8  # --plan removed nothing
        code, docs, err = roadie_json("ops", "disk", "clean", "--hosts", host, "--keep", "5")
        assert code == 0, err
        left = ssh(host, f"ls {base}/releases").stdout.split()
        assert len(left) == 5 and cur in left and prev in left, left
        assert sorted(set(before + fakes) - set(left)) == sorted(planned)
        done = docs[-1]["hosts"][host]
        assert done["freed"] > 0 and done["journal"]["bound"] == "200M"
        assert last_audit("catalog", "disk.clean")["result"] == "ok"
        assert http(f"http://{HOSTS[host]}:8080/healthz")[0] == 200
    finally:
        ssh(host, f"ln -sfn {had_prev} {base}/previous" if had_prev else f"rm -f {base}/previous")
        ssh(host, "rm -rf " + " ".join(f"{base}/releases/{v}" for v in fakes if v not in before))
        for line in mtimes.splitlines():  # the real releases' ages as they were
            path, ts = line.rsplit(" ", 1)
            ssh(host, f"touch -d @{ts} {path}", check=False)


def test_exec_runs_on_every_host_of_a_group_grouped_by_host(fleet):
    proc = run_roadie("ops", "exec", "catalog", "--", "hostname")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["== catalog-1 (exit 0) ==", "catalog-1", "== catalog-2 (exit 0) ==",
                                        "catalog-2"]
    code, docs, _ = roadie_json("ops", "exec", "catalog,db-1", "--", "test -e /srv/catalog")
    assert code == 1 and "failed on db-1" in docs[-1]["error"], docs[-1]
    assert last_audit("catalog,db-1", "exec")["command"] == "test -e /srv/catalog"
    for args, message in [(("ops", "exec", "catalog"), "Name the command"),
                          (("ops", "exec", "nosuch", "--", "uptime"), "neither a host nor a group")]:
        code, docs, _ = roadie_json(*args)
        assert code == 2 and message in docs[-1]["error"], (args, docs)


def test_fab_runs_the_same_operations_through_fabrics_entry_point(fleet):
    import subprocess
    import sys
    from pathlib import Path

    from tests.conftest import ROOT

    fab = [str(Path(sys.executable).parent / "fab")]
    proc = subprocess.run([*fab, "health"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pids = main_pids("catalog")
    proc = subprocess.run([*fab, "restart", "catalog", "--message", "from fab"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = main_pids("catalog")
    assert all(after[h] != pids[h] for h in pids)
    assert last_audit("catalog", "restart")["message"] == "from fab"
    proc = subprocess.run([*fab, "drain", "catalog-9"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Unknown host 'catalog-9'" in proc.stderr


def test_logs_follow_stops_cleanly_on_ctrl_c_and_leaves_nothing_running(fleet):
    import signal
    import subprocess

    from tests.conftest import ROADIE, ROOT

    proc = subprocess.Popen([*ROADIE, "ops", "logs", "catalog", "--follow", "--lines", "3"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(6)]  # 3 from each host, then new ones as they come
        assert {line.split(" | ")[0] for line in lines} == {"catalog-1", "catalog-2"}, lines
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "stopped following" in err, err
    assert time.monotonic() - started < 10
    for host in TIERS["catalog"]:  # the pty hang-up ended the remote journalctl
        wait_for(lambda h=host: "journalctl" not in ssh(h, "ps -eo comm").stdout, timeout=10,
                 what=f"no journalctl left on {host}")


def test_ctrl_c_mid_restart_finishes_the_host_in_progress_and_leaves_none_drained(fleet):
    import signal

    pids = main_pids("catalog")
    # SIGINT once catalog-1 is drained, not yet restarted
    code, out, err = act_at(["ops", "restart", "catalog"], ('"deploy.host.step"', '"drain"'),
                            lambda proc: proc.send_signal(signal.SIGINT), timeout=300)
    assert code == 130, err
    assert '"interrupt"' in out
    after = main_pids("catalog")
    assert after["catalog-1"] != pids["catalog-1"] and after["catalog-2"] == pids["catalog-2"]
    assert all(s.up for n, s in balancer_servers().items() if n.startswith("catalog/"))
    code, docs, _ = roadie_json("lock", "status", "catalog")
    assert code == 0 and docs[-1]["holder"] is None
    assert last_audit("catalog", "restart")["result"] == "interrupted"
