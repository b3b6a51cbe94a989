"""loadbalancer role: HAProxy routes /api and /stream, checks health, answers its runtime API."""

import json

import pytest

from tests.fleet.roles_fixtures import LB, http, listening, wait_for

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
                 "stats socket /run/haproxy/admin.sock"):
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


def test_stats_page_on_the_fleet_address():
    status, _, body = http(f"http://{LB}:8404/stats")
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
