"""The local fleet as a user meets it: up, isolation, repair, refusal, down.

Runs on the three-host `mini` fleet (its own bridge) so it can kill and rebuild
hosts without disturbing the main fleet that the role tests converge.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from roadie import procs
from tests.conftest import ROADIE, run_roadie
from tests.fleet.conftest import MINI_ENV, ssh, status

pytestmark = pytest.mark.fleet

HOSTS = {"mini-1": "198.18.0.130", "mini-2": "198.18.0.131", "mini-3": "198.18.0.132"}
BRIDGE = "roadiet"


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:  # a container's processes die with its init
        pass


def pids(env=MINI_ENV) -> dict:
    return {h["name"]: h["pid"] for h in status(env)["hosts"]}


def leftovers(state: Path) -> list[str]:
    """Everything of the mini fleet still present in the kernel or the process table."""
    found = [f"netns {n}" for n in os.listdir("/run/netns") if n.startswith(BRIDGE + "-")] \
        if os.path.isdir("/run/netns") else []
    found += [f"link {n}" for n in os.listdir("/sys/class/net") if n == BRIDGE or n.startswith(BRIDGE + "-")]
    found += [f"process {p}" for p in procs.find(str(state / "hosts"))]
    found += [f"process {p}" for p in procs.find(str(state / "apt-cacher-ng"))]
    found += [f"process {p}" for p in procs.find("198.18.0.129") if procs.alive(p, "moto.server")]
    if (state / "hosts").exists():
        found.append("overlays")
    found += [f"cgroup {d}" for d in glob.glob(f"/sys/fs/cgroup/*/roadie/{BRIDGE}-*")]
    return found


def test_up_reports_every_host_running(mini_fleet):
    doc = status(MINI_ENV)
    assert {h["name"]: h["state"] for h in doc["hosts"]} == dict.fromkeys(HOSTS, "running")
    assert {h["name"]: h["address"] for h in doc["hosts"]} == HOSTS
    assert {h["name"]: h["state"] for h in doc["helpers"]} == {"apt-cacher-ng": "running", "moto": "running"}


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_ssh_by_name_with_pinned_host_key(mini_fleet, host):
    proc = ssh(mini_fleet, host, "hostname; ip -4 -o addr show eth0; systemctl is-system-running")
    assert proc.returncode == 0, proc.stderr
    name, addr, state = proc.stdout.split("\n")[:3]
    assert name == host
    assert f"{HOSTS[host]}/25" in addr
    assert state == "running"


def test_a_wrong_host_key_is_refused(mini_fleet, tmp_path):
    """Strict checking is real: a known_hosts naming another key fails the connection."""
    known = (mini_fleet / "known_hosts").read_text().splitlines()
    by_name = {line.split()[0].split(",")[0]: line for line in known}
    swapped = by_name["mini-1"].split()[:1] + by_name["mini-2"].split()[1:]
    (tmp_path / "known_hosts").write_text(" ".join(swapped) + "\n")
    proc = subprocess.run(["ssh", "-F", str(mini_fleet / "ssh_config"), "-o",
                           f"UserKnownHostsFile={tmp_path / 'known_hosts'}", "mini-1", "true"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 255
    assert "host key" in proc.stderr.lower()


def test_hosts_have_their_own_filesystem(mini_fleet):
    assert ssh(mini_fleet, "mini-1", "echo mine > /root/owned-by-mini-1").returncode == 0
    assert ssh(mini_fleet, "mini-1", "cat /root/owned-by-mini-1").stdout == "mine\n"
    assert ssh(mini_fleet, "mini-2", "test -e /root/owned-by-mini-1").returncode == 1


def test_hosts_have_their_own_process_table(mini_fleet):
    start = ssh(mini_fleet, "mini-1", "systemd-run --unit roadie-marker sleep 123457")
    assert start.returncode == 0, start.stderr
    try:
        assert ssh(mini_fleet, "mini-1", "pgrep -f 'sleep 123457'").returncode == 0
        assert ssh(mini_fleet, "mini-2", "pgrep -f 'sleep 123457'").returncode == 1
        assert ssh(mini_fleet, "mini-2", "cat /proc/1/comm").stdout.strip() == "systemd"
    finally:
        ssh(mini_fleet, "mini-1", "systemctl stop roadie-marker")


def test_host_to_host_tcp(mini_fleet):
    serve = ssh(mini_fleet, "mini-1",
                "systemd-run --unit roadie-http python3 -m http.server 9000 --bind 198.18.0.130 --directory /etc")
    assert serve.returncode == 0, serve.stderr
    try:
        fetch = ("python3 -c \"import time,urllib.request\n"
                 "for _ in range(50):\n"
                 "    try:\n"
                 "        print(urllib.request.urlopen('http://mini-1:9000/hostname', timeout=2).read().decode())\n"
                 "        break\n"
                 "    except OSError: time.sleep(0.1)\"")
        assert ssh(mini_fleet, "mini-2", fetch).stdout.strip() == "mini-1"
    finally:
        ssh(mini_fleet, "mini-1", "systemctl stop roadie-http")


def test_moto_is_reachable_from_a_host_with_the_buckets(mini_fleet):
    proc = ssh(mini_fleet, "mini-3", "set -a; . /etc/roadie/aws.env; python3 -c \"import os,urllib.request;"
               "print(urllib.request.urlopen(os.environ['AWS_ENDPOINT_URL'] + '/', timeout=5).read().decode())\"")
    assert proc.returncode == 0, proc.stderr
    assert "roadie-mini-artifacts" in proc.stdout and "roadie-mini-media" in proc.stdout


def test_apt_goes_through_the_fleet_cache(mini_fleet):
    proc = ssh(mini_fleet, "mini-2", "apt-config dump Acquire::http::Proxy; apt-get -q update", timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "http://198.18.0.129:3142" in proc.stdout


def test_up_again_changes_nothing(mini_fleet):
    before = pids()
    marker = ssh(mini_fleet, "mini-2", "cat /proc/sys/kernel/random/boot_id; stat -c %Y /run/systemd")
    proc = run_roadie("local", "up", env=MINI_ENV, check=True)
    assert "booting" not in proc.stderr
    assert pids() == before
    assert ssh(mini_fleet, "mini-2", "cat /proc/sys/kernel/random/boot_id; stat -c %Y /run/systemd").stdout \
        == marker.stdout


def host_pids(netns: str) -> set[int]:
    """Every process of a host: its network namespace and the cgroup tree roadie made for it."""
    found = {int(p) for p in subprocess.run(["ip", "netns", "pids", netns], capture_output=True,
                                            text=True).stdout.split()}
    for procs_file in glob.glob(f"/sys/fs/cgroup/*/roadie/{netns}/**/cgroup.procs", recursive=True):
        found |= {int(p) for p in Path(procs_file).read_text().split()}
    return {p for p in found if procs.cmdline(p) is not None}


@pytest.mark.parametrize("cut, state", [
    ("nspawn", "running, unsupervised"),  # kill -9 of nspawn: the container's systemd is reparented, runs on
    ("power", "dead"),  # nspawn and every process of the host
])
def test_a_killed_host_is_reported_truthfully_and_rebuilt(mini_fleet, cut, state):
    before = pids()
    netns = json.loads((mini_fleet / "fleet.json").read_text())["hosts"]["mini-2"]["netns"]
    inside = host_pids(netns) - {before["mini-2"]}
    assert inside, "a running host has processes besides its nspawn"
    os.kill(before["mini-2"], signal.SIGKILL)
    if cut == "power":
        for pid in inside:
            kill(pid)
    deadline = time.monotonic() + 10
    while procs.alive(before["mini-2"], "mini-2") and time.monotonic() < deadline:
        time.sleep(0.1)
    row = {h["name"]: h for h in status(MINI_ENV)["hosts"]}["mini-2"]
    assert row["state"] == state
    if cut == "nspawn":
        assert row["pid"] in inside  # the container's init, found without its nspawn
        assert ssh(mini_fleet, "mini-2", "hostname").stdout.strip() == "mini-2"  # still serving
    proc = run_roadie("local", "up", env=MINI_ENV, check=True)
    assert "booting mini-2" in proc.stderr
    after = pids()
    assert after["mini-2"] != before["mini-2"]
    assert {k: v for k, v in after.items() if k != "mini-2"} == {k: v for k, v in before.items() if k != "mini-2"}
    assert not [p for p in inside if procs.cmdline(p) is not None], "up leaves no process of the old host"
    assert {h["name"]: h["state"] for h in status(MINI_ENV)["hosts"]}["mini-2"] == "running"
    assert ssh(mini_fleet, "mini-2", "hostname").stdout.strip() == "mini-2"


def test_leftovers_of_an_ended_session_are_repaired(mini_fleet):
    """A session's end kills every process but leaves namespaces, veths and the bridge."""
    record = json.loads((mini_fleet / "fleet.json").read_text())
    for ns in [h["netns"] for h in record["hosts"].values()]:
        out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
        for pid in out:
            kill(int(pid))
    for rec in [*record["hosts"].values(), *record["helpers"].values()]:
        kill(rec["pid"])
    time.sleep(0.5)
    assert os.path.exists(f"/sys/class/net/{BRIDGE}")
    doc = status(MINI_ENV)
    assert {h["state"] for h in doc["hosts"]} == {"dead"}
    assert {h["state"] for h in doc["helpers"]} == {"dead"}
    run_roadie("local", "up", env=MINI_ENV, check=True)
    doc = status(MINI_ENV)
    assert {h["state"] for h in doc["hosts"] + doc["helpers"]} == {"running"}
    assert ssh(mini_fleet, "mini-1", "python3 -c \"import urllib.request;"
               "urllib.request.urlopen('http://198.18.0.129:4566/', timeout=5)\"").returncode == 0


def test_a_second_fleet_on_the_same_bridge_is_refused(mini_fleet, tmp_path):
    other = tmp_path / "other-checkout"
    proc = run_roadie("local", "up", env={**MINI_ENV, "ROADIE_STATE_DIR": str(other)})
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "already running" in proc.stderr or "is running on bridge roadiet" in proc.stderr
    assert not other.exists()


@pytest.mark.fleet_last
def test_down_leaves_nothing_behind(mini_fleet):
    assert leftovers(mini_fleet), "the fleet should be up before down"
    proc = run_roadie("local", "down", env=MINI_ENV)
    assert proc.returncode == 0, proc.stderr
    assert leftovers(mini_fleet) == []
    assert {h["state"] for h in status(MINI_ENV)["hosts"]} == {"stopped"}


def started_hosts(state: Path) -> list[str]:
    """Hosts the fleet record says have a booting nspawn."""
    try:
        record = json.loads((state / "fleet.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []
    return sorted(name for name, rec in record.get("hosts", {}).items() if rec.get("pid"))


@pytest.mark.fleet_last
@pytest.mark.parametrize("when", ["before-hosts", "mid-hosts"])
def test_down_cleans_a_half_built_fleet(mini_fleet, when):
    """`up` interrupted part-way (SIGINT) still downs completely.

    mid-hosts: stopped (SIGSTOP) as soon as its record names a first booting host,
    so the record at the moment of the SIGINT proves some hosts had started and
    others not.
    """
    run_roadie("local", "down", env=MINI_ENV, check=True)  # from nothing, whatever ran before
    up = subprocess.Popen([*ROADIE, "local", "up"],
                          env={**os.environ, **MINI_ENV}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if when == "before-hosts":
            time.sleep(0.3)
            up.send_signal(signal.SIGSTOP)
            assert started_hosts(mini_fleet) == []
        else:
            deadline = time.monotonic() + 120
            while not started_hosts(mini_fleet) and up.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            up.send_signal(signal.SIGSTOP)
            started = started_hosts(mini_fleet)
            assert started and len(started) < len(HOSTS), f"not mid-build: started {started}"
            assert all(procs.alive(pid, name) for name, pid in pids_in_record(mini_fleet).items() if name in started)
        up.send_signal(signal.SIGINT)
    except BaseException:
        up.kill()  # never leave it running on: down below must not race it
        raise
    finally:
        up.send_signal(signal.SIGCONT)
        up.wait(timeout=60)
    assert up.returncode != 0  # interrupted, not finished
    assert len(started_hosts(mini_fleet)) < len(HOSTS)
    proc = run_roadie("local", "down", env=MINI_ENV)
    assert proc.returncode == 0, proc.stderr
    assert leftovers(mini_fleet) == []


def pids_in_record(state: Path) -> dict:
    return {n: r["pid"] for n, r in json.loads((state / "fleet.json").read_text())["hosts"].items() if r.get("pid")}
