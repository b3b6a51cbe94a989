"""The local fleet: real Debian hosts on this machine, plus apt cache and moto.

Fleet puts the pieces in order: the record and the bridge claim (record.py),
the helper processes (helpers.py), each host in the kernel (hosts.py), the base
image (image.py) and the plan from the inventory (plan.py). Everything it makes
is written to the record before the next step starts, so `down` can undo a
half-built fleet, and `up` can tell a live host from the leftovers of one whose
session ended (namespaces, veths and bridges outlive their processes).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from roadie import procs
from roadie.commands import ip, nspawn, ssh
from roadie.errors import BadInput, OperationFailed
from roadie.local import helpers, hosts, image, record
from roadie.local.plan import FleetPlan, HostPlan

REQUIRED_TOOLS = {"systemd-nspawn": "systemd-container", "debootstrap": "debootstrap", "ip": "iproute2",
                  "apt-cacher-ng": "apt-cacher-ng", "ssh": "openssh-client", "ssh-keygen": "openssh-client"}
BOOT_TIMEOUT = 90.0
UNSUPERVISED = "running, unsupervised"  # the container runs, its recorded nspawn does not
Log = Callable[[str], None]


def preflight() -> None:
    if os.geteuid() != 0:
        raise BadInput("The local fleet needs root (network namespaces, bridges, containers); run as root.")
    missing = sorted({pkg for tool, pkg in REQUIRED_TOOLS.items() if not shutil.which(tool)})
    if missing:
        raise BadInput(f"Missing Debian packages {', '.join(missing)}: run `make deps` "
                       f"or apt-get install {' '.join(missing)}.")


class Fleet:
    """One environment's fleet as recorded on disk."""

    def __init__(self, plan: FleetPlan, state: Path, log: Log = print):
        self.plan = plan
        self.state = state
        self.log = log
        self.record_path = state / "fleet.json"
        self.key = state / "id_ed25519"
        self.known_hosts = state / "known_hosts"
        self.record = record.load(self.record_path)

    def _save(self) -> None:
        record.save(self.record_path, self.record)

    def upper(self, name: str) -> Path:
        return self.state / "hosts" / name / "upper"

    def host_marker(self, name: str) -> str:
        # Unique to this checkout's host: its overlay's upper directory.
        return f":{self.upper(name)}:/"

    def host_alive(self, name: str) -> bool:
        return procs.alive(self.record["hosts"].get(name, {}).get("pid"), self.host_marker(name))

    def host_processes(self, h: HostPlan) -> list[int]:
        """The host's live processes apart from its recorded nspawn (see hosts.processes)."""
        return hosts.processes(h.netns, exclude=self.record["hosts"].get(h.name, {}).get("pid"))

    def kill(self, name: str) -> int:
        """A power cut of one host: every process of it killed at once; `up` rebuilds it."""
        h = self.plan.host(name)
        rec = self.record["hosts"].get(name, {})
        killed = 0
        if rec.get("pid") and self.host_alive(name):  # checked against its marker: only our nspawn
            os.kill(rec["pid"], signal.SIGKILL)
            killed = 1
        return killed + hosts.power_cut(h.netns)

    def helper_alive(self, name: str) -> bool:
        return helpers.alive(self.record, name)

    # -- the claim on the bridge ------------------------------------------
    def check_claim(self) -> None:
        """Refuse to share a bridge with a live fleet of another checkout."""
        owner = record.claim_owner(self.plan.bridge)
        if owner is None or owner == self.state:
            return
        other = Fleet(self.plan, owner, self.log)
        if any(other.host_alive(n) for n in other.record["hosts"]) or any(
                other.helper_alive(n) for n in other.record["helpers"]):
            raise BadInput(f"Another fleet ({owner}) is running on bridge {self.plan.bridge}; "
                           "run `roadie local down` there first.")
        self.log(f"taking over bridge {self.plan.bridge} from a dead fleet ({owner})")

    # -- up ----------------------------------------------------------------
    def up(self, only: list[str] | None = None) -> list[dict]:
        helpers.require_moto()
        self.check_claim()
        self.state.mkdir(parents=True, exist_ok=True)
        record.claim(self.plan.bridge, self.state)
        base = image.ensure(self.log)
        self._ensure_key()
        self._ensure_bridge()
        helpers.ensure(self.plan, self.state, self.record, self._save)
        self._sweep_strays()
        wanted = [h for h in self.plan.hosts if not only or h.name in only]
        self._ensure_host_keys(self.plan.hosts)
        started = [h for h in wanted if self._ensure_host(h, base)]
        if started:
            self.log(f"booting {', '.join(h.name for h in started)}")
        rows = self.wait_ready(wanted)
        bad = [r for r in rows if r["state"] not in ("running", "degraded")]
        if bad:
            raise OperationFailed("Hosts did not come up: " + ", ".join(f"{r['name']} ({r['state']})" for r in bad)
                                  + f"; consoles in {self.state / 'logs'}.")
        return self.status(probe=False, ready=rows)

    def _run(self, argvs: list[list[str]], check: bool = True) -> None:
        for argv in argvs:
            if check:
                procs.run(argv)
            else:
                subprocess.run(argv, capture_output=True, text=True)

    def _ensure_key(self) -> None:
        if not self.key.exists():
            self._run([ssh.keygen_argv(self.key, f"roadie-{self.state.name}")])

    def _ensure_bridge(self) -> None:
        bridge = self.plan.bridge
        if not hosts.link_exists(bridge):
            self.record["bridge"] = bridge
            self._save()
            self._run(ip.bridge_up(bridge, self.plan.gateway_cidr))
            return
        # A leftover bridge: make sure it still has its address and is up.
        addrs = subprocess.run(["ip", "-o", "addr", "show", "dev", bridge], capture_output=True, text=True).stdout
        if f" {self.plan.gateway_cidr} " not in addrs:
            self._run([["ip", "addr", "add", self.plan.gateway_cidr, "dev", bridge]])
        self._run([["ip", "link", "set", bridge, "up"]])
        self.record["bridge"] = bridge
        self._save()

    def _sweep_strays(self) -> None:
        """Remove namespaces on our bridge's prefix that belong to no planned host."""
        planned = {h.netns for h in self.plan.hosts}
        for ns in hosts.netns_list():
            if ns.startswith(self.plan.bridge + "-") and ns not in planned:
                hosts.clear(ns, "")

    def _ensure_host_keys(self, planned) -> None:
        lines = []
        for h in planned:
            keydir = self.state / "hosts" / h.name
            keydir.mkdir(parents=True, exist_ok=True)
            hostkey = keydir / "ssh_host_ed25519_key"
            if not hostkey.exists():
                self._run([ssh.keygen_argv(hostkey, f"root@{h.name}")])
            lines.append(ssh.known_hosts_line([h.name, h.address], (keydir / "ssh_host_ed25519_key.pub").read_text()))
        self.known_hosts.write_text("\n".join(lines) + "\n")
        self._write_ssh_config(planned)

    def _write_ssh_config(self, planned) -> None:
        blocks = [f"Host {h.name}\n  HostName {h.address}\n  User root\n  IdentityFile {self.key}\n"
                  f"  IdentitiesOnly yes\n  UserKnownHostsFile {self.known_hosts}\n  StrictHostKeyChecking yes\n"
                  for h in planned]
        (self.state / "ssh_config").write_text("\n".join(blocks))

    def _ensure_host(self, h: HostPlan, base: Path) -> bool:
        """Boot `h` unless it already runs; returns whether it was started."""
        if self.host_alive(h.name):
            return False
        hosts.clear(h.netns, h.veth)  # leftovers of a dead host, or one still running unsupervised
        upper = self.upper(h.name)
        hosts.write_overlay(upper, hosts.overlay_files(self.plan, h, self.key.with_suffix(".pub").read_text(),
                                                       upper.parent))
        self.record["hosts"][h.name] = {"address": h.address, "netns": h.netns, "veth": h.veth, "pid": None}
        self._save()
        self._run(ip.host_net_up(h.netns, h.veth, self.plan.bridge, h.cidr, self.plan.gateway))
        argv = nspawn.boot_argv(h.name, base, upper, h.netns)
        pid = procs.start_detached(nspawn.in_own_cgroup(h.netns, argv),
                                   self.state / "logs" / f"{h.name}.console.log", env=nspawn.boot_env())
        self.record["hosts"][h.name]["pid"] = pid
        self._save()
        return True

    # -- readiness and status ---------------------------------------------
    def probe(self, h: HostPlan, wait: float = 0.0) -> str:
        """systemd's state on `h` over SSH, retrying until `wait` seconds have passed."""
        deadline = time.monotonic() + wait
        cmd = "systemctl is-system-running --wait" if wait else "systemctl is-system-running"
        while True:
            if not self.host_alive(h.name):
                return "dead"
            proc = subprocess.run(ssh.ssh_argv(h.address, cmd, self.key, self.known_hosts, connect_timeout=3),
                                  capture_output=True, text=True)
            state = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
            if proc.returncode != 255 and state:
                if state in ("running", "degraded") or time.monotonic() >= deadline:
                    return state
            elif time.monotonic() >= deadline:
                return "unreachable"
            time.sleep(0.25)

    def wait_ready(self, planned) -> list[dict]:
        with ThreadPoolExecutor(max_workers=max(1, len(planned))) as pool:
            states = list(pool.map(lambda h: self.probe(h, BOOT_TIMEOUT), planned))
        return [{"name": h.name, "state": s} for h, s in zip(planned, states, strict=True)]

    def status(self, probe: bool = True, ready: list[dict] | None = None) -> list[dict]:
        known = {r["name"]: r["state"] for r in (ready or [])}
        netns = set(hosts.netns_list())
        rows = []
        to_probe = []
        for h in self.plan.hosts:
            rec = self.record["hosts"].get(h.name)
            if self.host_alive(h.name):
                state = known.get(h.name, "running")
                if probe and h.name not in known:
                    to_probe.append(h)
            elif (rec or h.netns in netns) and (orphans := self.host_processes(h)):
                # Its nspawn is gone but its init still runs: reachable, and unsupervised
                # (nothing stops it with the fleet); `up` replaces it.
                rows.append({"name": h.name, "address": h.address, "pid": hosts.root_of(orphans),
                             "state": UNSUPERVISED})
                continue
            elif rec or h.netns in netns:
                state = "dead"
            else:
                state = "stopped"
            pid = (rec or {}).get("pid") if state != "stopped" else None
            rows.append({"name": h.name, "address": h.address, "pid": pid, "state": state})
        if to_probe:
            with ThreadPoolExecutor(max_workers=len(to_probe)) as pool:
                found = dict(zip((h.name for h in to_probe), pool.map(self.probe, to_probe), strict=True))
            for row in rows:
                row["state"] = found.get(row["name"], row["state"])
        return rows

    def helpers_status(self) -> list[dict]:
        return helpers.status(self.record)

    # -- down ----------------------------------------------------------------
    def down(self) -> None:
        planned = self.plan.hosts
        recorded = [(rec.get("pid"), self.host_marker(name)) for name, rec in self.record["hosts"].items()]
        # Also any of our hosts whose record was lost mid-write.
        strays = [(pid, self.host_marker(h.name)) for h in planned for pid in procs.find(self.host_marker(h.name))]
        procs.stop([(p, m) for p, m in recorded + strays if p])
        for h in planned:
            hosts.clear(h.netns, h.veth)
        for rec in list(self.record["hosts"].values()):
            hosts.clear(rec["netns"], rec["veth"])
        shutil.rmtree(self.state / "hosts", ignore_errors=True)
        self.record["hosts"] = {}
        self._save()
        helpers.stop(self.record)
        self.record["helpers"] = {}
        self._save()
        if hosts.link_exists(self.plan.bridge):
            self._run(ip.bridge_down(self.plan.bridge), check=False)
        self.record.pop("bridge", None)
        self._save()
        record.release(self.plan.bridge, self.state)
