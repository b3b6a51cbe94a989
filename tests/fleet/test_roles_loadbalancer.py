"""loadbalancer role: HAProxy routes /api and /stream, checks health, answers its runtime API."""

import base64
import json

import pytest

from roadie.converge import secrets as converge_secrets
from tests.fleet.roles_fixtures import LB, STATE, http, listening, wait_for

pytestmark = pytest.mark.fleet

SERVERS = {("catalog", "catalog-1"), ("catalog", "catalog-2"), ("streaming", "streaming-1"),
           ("streaming", "streaming-2")}


def runtime(hosts, command: str) -> str:
    return hosts["lb-1"].check_output(f"echo '{command}' | socat stdio /run/haproxy/admin.sock")


def server_states(hosts) -> dict:
    rows = [line.split(",") for line in runtime(hosts, "show stat").splitlines() if line and not line.startswith("#")]
    return {(r[0], r[1]): r[17] for r in rows if r[1] not in ("FRONTEND", "BACKEND")}


def test_haproxy_running_enabled_and_listening(hosts):
    host = hosts["lb-1"]
    svc = host.service("haproxy")
    assert svc.is_running and svc.is_enabled
    assert listening(host, 80) == {LB}
    assert listening(host, 8404) == {LB}
    assert host.run("haproxy -c -f /etc/haproxy/haproxy.cfg").rc == 0
    cfg = host.file("/etc/haproxy/haproxy.cfg")
    for line in ("option redispatch", "retries 3", "retry-on conn-failure", "option httpchk GET /healthz",
                 "stats socket /run/haproxy/admin.sock", "server-state-file /var/lib/haproxy/server-state",
                 "load-server-state-from-file global", "stats auth roadie:"):
        assert cfg.contains(line), line


def test_runtime_api_answers(hosts):
    assert "Name: HAProxy" in runtime(hosts, "show info")
    states = runtime(hosts, "show servers state")
    for backend, server in SERVERS:
        assert f" {backend} " in states and f" {server} " in states


def test_all_backends_up(hosts):
    states = wait_for(lambda: (lambda s: s if set(s) == SERVERS and set(s.values()) == {"UP"} else None)(
        server_states(hosts)), timeout=30, what="every server UP")
    assert set(states) == SERVERS


def stats_credentials() -> dict:
    password = converge_secrets.read_local(STATE)["vault_loadbalancer_stats_password"]
    return {"Authorization": "Basic " + base64.b64encode(f"roadie:{password}".encode()).decode()}


def test_stats_page_on_the_fleet_address_asks_for_credentials():
    status, headers, _ = http(f"http://{LB}:8404/stats")
    assert status == 401 and "Basic" in {k.lower(): v for k, v in headers.items()}.get("www-authenticate", "")
    wrong = {"Authorization": "Basic " + base64.b64encode(b"roadie:not-the-password").decode()}
    assert http(f"http://{LB}:8404/stats", wrong)[0] == 401
    status, _, body = http(f"http://{LB}:8404/stats", stats_credentials())
    assert status == 200 and b"catalog" in body


def test_end_to_end_through_haproxy(roles_fleet, hosts):
    status, _, body = http(f"http://{LB}/api/tracks/1")
    assert status == 200
    track = json.loads(body)
    assert track["stream"] == "/stream/1"
    status, _, body = http(f"http://{LB}/api/search?q=a&per_page=5")
    assert status == 200 and json.loads(body)
    status, headers, body = http(f"http://{LB}/stream/1", {"Range": "bytes=0-1023"})
    assert status == 206 and len(body) == 1024 and body[:4] == b"RIFF"
    status, _, body = http(f"http://{LB}/nowhere")
    assert status == 404


def runtime_ok(hosts, command: str) -> None:
    """A runtime API command that must succeed: HAProxy answers nothing when it does
    ("No such server.", "Require 'backend/server'." ... otherwise), and socat exits 0 either way."""
    answer = runtime(hosts, command).strip()
    assert answer == "", f"HAProxy refused {command!r}: {answer}"


def stat(hosts) -> dict:
    """`show stat` rows by (backend, server), as dicts keyed by the header's column names."""
    lines = runtime(hosts, "show stat").splitlines()
    columns = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(columns, line.split(","), strict=False)) for line in lines[1:] if line]
    return {(r["pxname"], r["svname"]): r for r in rows if r["svname"] not in ("FRONTEND", "BACKEND")}


def test_runtime_refusals_are_caught(hosts):
    with pytest.raises(AssertionError, match="No such server"):
        runtime_ok(hosts, "set server catalog/no-such-server state drain")


def test_drained_server_gets_no_new_sessions(hosts):
    drained, other = ("catalog", "catalog-1"), ("catalog", "catalog-2")
    wait_for(lambda: stat(hosts)[drained]["status"] == "UP", timeout=30, what="catalog-1 UP before the test")
    try:
        runtime_ok(hosts, "set server catalog/catalog-1 state drain")
        before = stat(hosts)
        assert before[drained]["status"] == "DRAIN"
        assert before[other]["status"] == "UP"
        codes = [http(f"http://{LB}/api/tracks/{i}")[0] for i in range(1, 21)]
        assert codes == [200] * 20
        after = stat(hosts)
        assert after[drained]["status"] == "DRAIN"
        assert int(after[drained]["stot"]) == int(before[drained]["stot"]), "a drained server got new sessions"
        assert int(after[other]["stot"]) - int(before[other]["stot"]) >= 20
    finally:
        runtime_ok(hosts, "set server catalog/catalog-1 state ready")
    assert wait_for(lambda: stat(hosts)[drained]["status"] == "UP", timeout=30, what="catalog-1 UP again")
    # Back in rotation: round robin gives it sessions again.
    start = int(stat(hosts)[drained]["stot"])
    for i in range(1, 11):
        assert http(f"http://{LB}/api/tracks/{i}")[0] == 200
    assert int(stat(hosts)[drained]["stot"]) - start >= 3


# Runtime server state across reloads and restarts (server-state-file + the haproxy.service drop-in).

def worker_pid(hosts) -> str | None:
    """The worker answering the runtime API; None while none does (during a restart)."""
    out = hosts["lb-1"].run("echo 'show info' | socat stdio /run/haproxy/admin.sock")
    found = [line.split(":", 1)[1].strip() for line in out.stdout.splitlines() if line.startswith("Pid:")]
    return found[0] if out.rc == 0 and found else None


def admin_states(hosts) -> dict:
    """(backend, server) -> srv_admin_state from `show servers state` (8: drained, 1: maintenance)."""
    rows = [line.split() for line in runtime(hosts, "show servers state").splitlines()[1:]
            if line and not line.startswith("#")]
    return {(r[1], r[3]): r[6] for r in rows}


def test_the_drop_in_is_loaded(hosts):
    host = hosts["lb-1"]
    shown = host.check_output("systemctl show haproxy -p DropInPaths -p ExecReload -p ExecStop -p ExecStartPre")
    assert "/etc/systemd/system/haproxy.service.d/roadie-server-state.conf" in shown
    assert "roadie-haproxy-state save" in shown and "roadie-haproxy-state expire" in shown
    assert "kill -USR2" in shown and "-c -q" in shown  # Debian's check and signal, re-listed


@pytest.mark.parametrize("how", ["reload", "restart"])
def test_a_drained_server_stays_drained_across_a_reload_and_a_restart(hosts, how):
    """`roadie ops drain catalog-1`, then `systemctl reload haproxy`: catalog-1 stayed in service (admin
    state 8 became 0) before the state file; now it stays drained, and ready again once told."""
    drained = ("catalog", "catalog-1")
    wait_for(lambda: stat(hosts)[drained]["status"] == "UP", timeout=30, what="catalog-1 UP before the test")
    before = worker_pid(hosts)
    try:
        runtime_ok(hosts, "set server catalog/catalog-1 state drain")
        assert admin_states(hosts)[drained] == "8"
        hosts["lb-1"].check_output(f"systemctl {how} haproxy")
        wait_for(lambda: worker_pid(hosts) not in (None, before), timeout=30,
                 what=f"a new HAProxy worker after the {how}")
        wait_for(lambda: "catalog" in runtime(hosts, "show servers state"), timeout=10, what="the new worker's state")
        assert admin_states(hosts)[drained] == "8", f"catalog-1's drain was lost by the {how}"
        assert stat(hosts)[drained]["status"] == "DRAIN"
        assert admin_states(hosts)[("catalog", "catalog-2")] == "0"
        codes = [http(f"http://{LB}/api/tracks/{i}")[0] for i in range(1, 11)]
        assert codes == [200] * 10
    finally:
        runtime_ok(hosts, "set server catalog/catalog-1 state ready")
    assert wait_for(lambda: stat(hosts)[drained]["status"] == "UP", timeout=30, what="catalog-1 UP again")
    # The state file is a hand-off between processes: a ready server stays ready after the next reload.
    again = worker_pid(hosts)
    hosts["lb-1"].check_output("systemctl reload haproxy")
    wait_for(lambda: worker_pid(hosts) not in (None, again), timeout=30, what="a new HAProxy worker")
    assert admin_states(hosts)[drained] == "0"
