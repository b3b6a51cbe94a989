"""The local fleet: real Debian hosts on this machine, plus apt cache and moto.

Everything the fleet makes is written to its record (fleet.json) before the
next step starts, so `down` can undo a half-built fleet, and `up` can tell a
live host from the leftovers of one whose session ended (namespaces, veths and
bridges outlive their processes).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from roadie import paths, procs
from roadie.local import image
from roadie.commands import helpers, ip, nspawn, ssh
from roadie.errors import BadInput, OperationFailed
from roadie.local.plan import FleetPlan, HostPlan

CLAIMS = Path(os.environ.get("ROADIE_RUN_DIR", "/run/roadie"))
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
        self.record = self._load()

    # -- the record -----------------------------------------------------
    def _load(self) -> dict:
        try:
            return json.loads(self.record_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {"hosts": {}, "helpers": {}}

    def _save(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        tmp = self.record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.record, indent=2, sort_keys=True))
        tmp.replace(self.record_path)

    def upper(self, name: str) -> Path:
        return self.state / "hosts" / name / "upper"

    def host_marker(self, name: str) -> str:
        # Unique to this checkout's host: its overlay's upper directory.
        return f":{self.upper(name)}:/"

    def host_alive(self, name: str) -> bool:
        return procs.alive(self.record["hosts"].get(name, {}).get("pid"), self.host_marker(name))

    def host_processes(self, h: HostPlan) -> list[int]:
        """The host's live processes apart from its recorded nspawn: its cgroup tree and its network namespace.

        After a `kill -9` of nspawn the container's systemd is reparented and
        goes on running (sshd, services): these are how to see it.
        """
        found = _namespace_pids(h.netns) | _cgroup_pids(h.netns)
        found.discard(self.record["hosts"].get(h.name, {}).get("pid"))
        return sorted(p for p in found if procs.cmdline(p) is not None)

    def helper_alive(self, name: str) -> bool:
        rec = self.record["helpers"].get(name, {})
        return procs.alive(rec.get("pid"), rec.get("marker", ""))

    # -- the claim on the bridge ------------------------------------------
    def claim_path(self) -> Path:
        return CLAIMS / f"{self.plan.bridge}.json"

    def check_claim(self) -> None:
        """Refuse to share a bridge with a live fleet of another checkout."""
        try:
            owner = json.loads(self.claim_path().read_text())["state"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            return
        if Path(owner) == self.state:
            return
        other = Fleet(self.plan, Path(owner), self.log)
        if any(other.host_alive(n) for n in other.record["hosts"]) or any(
                other.helper_alive(n) for n in other.record["helpers"]):
            raise BadInput(f"Another fleet ({owner}) is running on bridge {self.plan.bridge}; "
                           "run `roadie local down` there first.")
        self.log(f"taking over bridge {self.plan.bridge} from a dead fleet ({owner})")

    def claim(self) -> None:
        CLAIMS.mkdir(parents=True, exist_ok=True)
        self.claim_path().write_text(json.dumps({"state": str(self.state), "pid": os.getpid()}))

    # -- up ----------------------------------------------------------------
    def up(self, only: list[str] | None = None) -> list[dict]:
        self.check_claim()
        self.state.mkdir(parents=True, exist_ok=True)
        self.claim()
        base = image.ensure(self.log)
        self._ensure_key()
        self._ensure_bridge()
        self._ensure_helpers()
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
        have = _link_exists(bridge)
        if not have:
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

    def _ensure_helpers(self) -> None:
        addr = self.plan.gateway
        logs = self.state / "logs"
        if not self.helper_alive("apt-cacher-ng"):
            conf = self.state / "apt-cacher-ng"
            conf.mkdir(parents=True, exist_ok=True)
            cache = paths.cache_dir() / "apt-cacher-ng"
            cache.mkdir(parents=True, exist_ok=True)
            port = helpers.port_of(self.plan.apt_proxy)
            (conf / "acng.conf").write_text(helpers.aptcache_conf(cache, logs, addr, port))
            (conf / "backends_debian").write_text(image.machine_mirror() + "/\n")
            pid = procs.start_detached(helpers.aptcache_argv(conf), logs / "apt-cacher-ng.log")
            self.record["helpers"]["apt-cacher-ng"] = {"pid": pid, "marker": str(conf)}
            self._save()
        if not self.helper_alive("moto"):
            argv = helpers.moto_argv(addr, helpers.port_of(self.plan.aws_endpoint))
            pid = procs.start_detached(argv, logs / "moto.log")
            self.record["helpers"]["moto"] = {"pid": pid, "marker": "\0".join(argv[1:]) + "\0"}
            self._save()
        for name, url in (("apt-cacher-ng", self.plan.apt_proxy), ("moto", self.plan.aws_endpoint)):
            _wait_port(addr, helpers.port_of(url), name, self.state / "logs" / f"{name}.log")
        self._ensure_buckets()

    def _ensure_buckets(self) -> None:
        from roadie import aws

        s3 = aws.client("s3", endpoint_url=self.plan.aws_endpoint, region=self.plan.aws_region)
        have = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        for bucket in self.plan.buckets:
            if bucket not in have:
                s3.create_bucket(Bucket=bucket)
                s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})

    def _sweep_strays(self) -> None:
        """Remove namespaces on our bridge's prefix that belong to no planned host."""
        planned = {h.netns for h in self.plan.hosts}
        for ns in _netns_list():
            if ns.startswith(self.plan.bridge + "-") and ns not in planned:
                self._clear_host_net(ns, "")

    def _ensure_host_keys(self, hosts) -> None:
        lines = []
        for h in hosts:
            keydir = self.state / "hosts" / h.name
            keydir.mkdir(parents=True, exist_ok=True)
            hostkey = keydir / "ssh_host_ed25519_key"
            if not hostkey.exists():
                self._run([ssh.keygen_argv(hostkey, f"root@{h.name}")])
            lines.append(ssh.known_hosts_line([h.name, h.address], (keydir / "ssh_host_ed25519_key.pub").read_text()))
        self.known_hosts.write_text("\n".join(lines) + "\n")
        self._write_ssh_config(hosts)

    def _write_ssh_config(self, hosts) -> None:
        blocks = [f"Host {h.name}\n  HostName {h.address}\n  User root\n  IdentityFile {self.key}\n"
                  f"  IdentitiesOnly yes\n  UserKnownHostsFile {self.known_hosts}\n  StrictHostKeyChecking yes\n"
                  for h in hosts]
        (self.state / "ssh_config").write_text("\n".join(blocks))

    def _ensure_host(self, h: HostPlan, base: Path) -> bool:
        """Boot `h` unless it already runs; returns whether it was started."""
        if self.host_alive(h.name):
            return False
        self._clear_host_net(h.netns, h.veth)  # leftovers of a dead host
        self._prepare_overlay(h)
        self.record["hosts"][h.name] = {"address": h.address, "netns": h.netns, "veth": h.veth, "pid": None}
        self._save()
        self._run(ip.host_net_up(h.netns, h.veth, self.plan.bridge, h.cidr, self.plan.gateway))
        argv = nspawn.boot_argv(h.name, base, self.upper(h.name), h.netns)
        pid = procs.start_detached(nspawn.in_own_cgroup(h.netns, argv),
                                   self.state / "logs" / f"{h.name}.console.log", env=nspawn.boot_env())
        self.record["hosts"][h.name]["pid"] = pid
        self._save()
        return True

    def _clear_host_net(self, netns: str, veth: str) -> None:
        """Kill what still runs inside a host's namespace, then remove the namespace and veth.

        A container whose nspawn was killed keeps its init running in the
        namespace; booting a new one over the same overlay beside it goes badly.
        """
        deadline = time.monotonic() + 10
        while (left := _namespace_pids(netns) | _cgroup_pids(netns)) and time.monotonic() < deadline:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        self._run(ip.host_net_down(netns, veth), check=False)
        for top in nspawn.cgroup_dirs(netns):
            _rmdir_tree(Path(top))

    def _prepare_overlay(self, h: HostPlan) -> None:
        up = self.upper(h.name)
        keydir = up.parent
        files = {
            "etc/hostname": f"{h.name}\n",
            "etc/hosts": _hosts_file(self.plan, h),
            "etc/apt/apt.conf.d/01roadie-proxy": f'Acquire::http::Proxy "{self.plan.apt_proxy}";\n',
            "etc/roadie/aws.env": (f"AWS_ENDPOINT_URL={self.plan.aws_endpoint}\n"
                                   f"AWS_DEFAULT_REGION={self.plan.aws_region}\n"),
            "root/.ssh/authorized_keys": (self.key.with_suffix(".pub")).read_text(),
            "etc/ssh/ssh_host_ed25519_key": (keydir / "ssh_host_ed25519_key").read_text(),
            "etc/ssh/ssh_host_ed25519_key.pub": (keydir / "ssh_host_ed25519_key.pub").read_text(),
        }
        for rel, text in files.items():
            path = up / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        for private in ("root/.ssh", "root/.ssh/authorized_keys", "etc/ssh/ssh_host_ed25519_key"):
            (up / private).chmod(0o700 if private.endswith(".ssh") else 0o600)

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

    def wait_ready(self, hosts) -> list[dict]:
        with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
            states = list(pool.map(lambda h: self.probe(h, BOOT_TIMEOUT), hosts))
        return [{"name": h.name, "state": s} for h, s in zip(hosts, states, strict=True)]

    def status(self, probe: bool = True, ready: list[dict] | None = None) -> list[dict]:
        known = {r["name"]: r["state"] for r in (ready or [])}
        netns = set(_netns_list())
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
                rows.append({"name": h.name, "address": h.address, "pid": _root_of(orphans),
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
        rows = []
        for name in ("apt-cacher-ng", "moto"):
            rec = self.record["helpers"].get(name)
            state = "running" if self.helper_alive(name) else ("dead" if rec else "stopped")
            rows.append({"name": name, "pid": (rec or {}).get("pid"), "state": state})
        return rows

    # -- down ----------------------------------------------------------------
    def down(self) -> None:
        hosts = self.plan.hosts
        recorded = [(rec.get("pid"), self.host_marker(name)) for name, rec in self.record["hosts"].items()]
        # Also any of our hosts whose record was lost mid-write.
        strays = [(pid, self.host_marker(h.name)) for h in hosts for pid in procs.find(self.host_marker(h.name))]
        procs.stop([(p, m) for p, m in recorded + strays if p])
        for h in hosts:
            self._clear_host_net(h.netns, h.veth)
        for rec in list(self.record["hosts"].values()):
            self._clear_host_net(rec["netns"], rec["veth"])
        shutil.rmtree(self.state / "hosts", ignore_errors=True)
        self.record["hosts"] = {}
        self._save()
        procs.stop([(rec.get("pid"), rec.get("marker", "")) for rec in self.record["helpers"].values()])
        self.record["helpers"] = {}
        self._save()
        if _link_exists(self.plan.bridge):
            self._run(ip.bridge_down(self.plan.bridge), check=False)
        self.record.pop("bridge", None)
        self._save()
        try:
            if json.loads(self.claim_path().read_text()).get("state") == str(self.state):
                self.claim_path().unlink()
        except (FileNotFoundError, json.JSONDecodeError):
            pass


def _namespace_pids(netns: str) -> set[int]:
    if netns not in _netns_list():
        return set()
    out = subprocess.run(ip.netns_pids(netns), capture_output=True, text=True).stdout
    return {int(p) for p in out.split() if p.isdigit()}


def _cgroup_pids(name: str) -> set[int]:
    """Every process in the cgroup trees nspawn.in_own_cgroup made for a host."""
    found: set[int] = set()
    for top in nspawn.cgroup_dirs(name):
        for dirpath, _, filenames in os.walk(top):
            if "cgroup.procs" in filenames:
                try:
                    found |= {int(p) for p in Path(dirpath, "cgroup.procs").read_text().split()}
                except OSError:
                    pass
    return found


def _root_of(pids: list[int]) -> int:
    """The process of `pids` whose parent is not among them: a container's init."""
    members = set(pids)
    for pid in pids:
        try:
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid not in members:
            return pid
    return pids[0]


def _hosts_file(plan: FleetPlan, me: HostPlan) -> str:
    lines = ["127.0.0.1\tlocalhost", f"127.0.1.1\t{me.name}", "::1\tlocalhost ip6-localhost ip6-loopback", ""]
    lines += [f"{h.address}\t{h.name}" for h in plan.hosts]
    return "\n".join(lines) + "\n"


def _rmdir_tree(top: Path) -> None:
    """Remove an emptied cgroup tree (cgroups go with rmdir, deepest first)."""
    if not top.is_dir():
        return
    for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass


def _link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def _netns_list() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def _wait_port(address: str, port: int, name: str, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise OperationFailed(f"{name} did not start listening on {address}:{port}; see {log}.")
