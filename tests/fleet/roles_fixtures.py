"""Shared set-up for the role tests: a converged local fleet running releases of both services.

The fixtures are registered once, by the fleet conftest; the test_roles_*
modules import only the helpers. The work is done once per test session:
`roadie local up`, `roadie converge`, then a release of catalog and of
streaming built with `roadie release build` and installed with `roadie release
install` (unpacked into /srv/SERVICE/releases/VERSION, `current` linked, catalog
migrated against the primary, units restarted and healthy), then the catalogue
seeded from catalog-1 and demo media uploaded to the media bucket.
The fleet is left running: the fleet conftest owns taking it down.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request

import pytest
import yaml

from roadie import paths
from tests.conftest import ROOT, run_roadie

STATE = ROOT / ".roadie" / "local"
SSH_CONFIG = STATE / "ssh_config"


def _inventory(env: str = "local") -> tuple[dict[str, str], dict[str, list[str]]]:
    """(address by host, hosts by group) from the static inventory roadie uses (ROADIE_INVENTORIES),
    so the tests follow a fleet moved to other addresses."""
    doc = yaml.safe_load((paths.INVENTORIES / env / "hosts.yml").read_text())
    hosts: dict[str, str] = {}
    groups: dict[str, list[str]] = {}

    def walk(name: str, node: dict) -> list[str]:
        members = []
        for host, hvars in ((node or {}).get("hosts") or {}).items():
            hosts[host] = (hvars or {}).get("ansible_host", host)
            members.append(host)
        for child, body in ((node or {}).get("children") or {}).items():
            members += walk(child, body)
        groups[name] = members
        return members

    walk("all", doc["all"])
    return hosts, groups


HOSTS, GROUPS = _inventory()
TIERS = {tier: GROUPS[tier] for tier in ("loadbalancer", "catalog", "streaming", "database")}
LB = HOSTS["lb-1"]
SEED_TRACKS = 300
SEED_MEDIA = 5


def ssh(host: str, command: str, timeout: float = 120, check: bool = True,
        user: str = "root") -> subprocess.CompletedProcess:
    proc = subprocess.run(["ssh", "-F", str(SSH_CONFIG), "-o", "BatchMode=yes", f"{user}@{host}", command],
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{host}: {command!r} exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
    return proc


def converge(*args: str, timeout: float = 900, env: dict | None = None) -> dict:
    """`roadie --output json converge ARGS`: its recap, plus returncode and raw output."""
    proc = run_roadie("--output", "json", "converge", *args, timeout=timeout, env=env)
    # The recap is a JSON document; a failed converge adds an error event (event, error, exit_code) after it.
    doc = {}
    for line in proc.stdout.splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            doc.update(parsed)
    doc.update(returncode=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)
    return doc


def http(url: str, headers: dict | None = None, timeout: float = 10):
    """(status, headers, body) of a GET; HTTP errors are answers, not exceptions."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def wait_for(predicate, timeout: float = 60, interval: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def _build(service: str) -> dict:
    proc = run_roadie("--output", "json", "release", "build", service, check=True, timeout=900)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _as_service(service: str, command: str) -> str:
    env = f"/srv/{service}/shared/{service}.env"
    return f"runuser -u {service} -- sh -c 'set -a; . {env}; set +a; {command}'"


def _setup() -> dict:
    run_roadie("local", "up", check=True, timeout=600)
    first = converge()
    assert first["returncode"] == 0 and first.get("ok"), f"converge failed:\n{first['stdout']}\n{first['stderr']}"
    builds = {service: _build(service) for service in ("catalog", "streaming")}
    # roadie's own installer: stage and verify on every host, migrate once against
    # the primary, switch `current`, restart, wait for /healthz and /version.
    for service in ("catalog", "streaming"):
        run_roadie("release", "install", service, builds[service]["version"], check=True, timeout=600)
    # nginx's slice cache answers with the version header of the release that filled it: a fleet that served
    # another release before (`make demo` leaves 1.0.1) would go on answering as that one. The tests assume
    # the fixture's release, so the cache starts empty.
    for host in TIERS["streaming"]:
        ssh(host, "find /var/cache/nginx/streaming -type f -delete && systemctl restart nginx")
    ssh("catalog-1", _as_service("catalog", f"/srv/catalog/current/bin/seed --tracks {SEED_TRACKS}"))
    ssh("streaming-1", _as_service("streaming", f"/srv/streaming/current/bin/seed-media --tracks {SEED_MEDIA} "
                                                f"--seconds 1 --create-bucket"), timeout=300)
    for host in TIERS["catalog"]:
        wait_for(lambda h=host: http(f"http://{HOSTS[h]}:8080/healthz")[0] == 200, what=f"{host} catalog health")
    for host in TIERS["streaming"]:
        wait_for(lambda h=host: http(f"http://{HOSTS[h]}/healthz")[0] == 200, what=f"{host} streaming health")
    return {"first_converge": first, "builds": builds}


@pytest.fixture(scope="session")
def roles_fleet():
    """The local fleet, converged, with both services released and healthy."""
    return _setup()


@pytest.fixture(scope="session")
def hosts(roles_fleet):
    """testinfra hosts by inventory name, over SSH with the fleet's ssh_config."""
    import testinfra

    return {name: testinfra.get_host(f"ssh://root@{name}", ssh_config=str(SSH_CONFIG)) for name in HOSTS}


def listening(host, port: int) -> set[str]:
    """Addresses host listens on at TCP port (from `ss`, which iproute2 provides)."""
    out = host.check_output(f"ss -Htln 'sport = :{port}'")
    found = set()
    for line in out.splitlines():
        local = line.split()[3]
        found.add(local.rsplit(":", 1)[0].strip("[]"))
    return found


def connect_from(host: str, address: str, port: int) -> str:
    """'open', 'refused' or 'timeout' for a TCP connection from a fleet host."""
    code = (f"import socket\ntry:\n socket.create_connection(('{address}', {port}), 3).close(); print('open')\n"
            f"except ConnectionRefusedError: print('refused')\nexcept OSError: print('timeout')")
    return ssh(host, f"python3 -c \"{code}\"").stdout.strip()
