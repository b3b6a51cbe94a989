"""One local host in the kernel: its overlay files, its processes, and clearing what is left of it.

A host is a systemd-nspawn container in a network namespace of its own and a
cgroup tree of its own (commands.nspawn.in_own_cgroup); those two find every
process of a host, with or without the nspawn that started it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from roadie import procs
from roadie.commands import ip, nspawn
from roadie.local.plan import FleetPlan, HostPlan


def overlay_files(plan: FleetPlan, h: HostPlan, authorized_key: str, keydir: Path) -> dict[str, str]:
    """What roadie writes into a host's upper directory before it boots (path -> text)."""
    return {
        "etc/hostname": f"{h.name}\n",
        "etc/hosts": hosts_file(plan, h),
        "etc/apt/apt.conf.d/01roadie-proxy": f'Acquire::http::Proxy "{plan.apt_proxy}";\n',
        "etc/roadie/aws.env": f"AWS_ENDPOINT_URL={plan.aws_endpoint}\nAWS_DEFAULT_REGION={plan.aws_region}\n",
        "root/.ssh/authorized_keys": authorized_key,
        "etc/ssh/ssh_host_ed25519_key": (keydir / "ssh_host_ed25519_key").read_text(),
        "etc/ssh/ssh_host_ed25519_key.pub": (keydir / "ssh_host_ed25519_key.pub").read_text(),
    }


def write_overlay(upper: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = upper / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for private in ("root/.ssh", "root/.ssh/authorized_keys", "etc/ssh/ssh_host_ed25519_key"):
        (upper / private).chmod(0o700 if private.endswith(".ssh") else 0o600)


def hosts_file(plan: FleetPlan, me: HostPlan) -> str:
    lines = ["127.0.0.1\tlocalhost", f"127.0.1.1\t{me.name}", "::1\tlocalhost ip6-localhost ip6-loopback", ""]
    lines += [f"{h.address}\t{h.name}" for h in plan.hosts]
    return "\n".join(lines) + "\n"


def processes(netns: str, exclude: int | None = None) -> list[int]:
    """A host's live processes (its namespace and its cgroup tree), less `exclude` (its nspawn).

    After a `kill -9` of nspawn the container's systemd is reparented and goes
    on running (sshd, services): this is how to see it.
    """
    found = namespace_pids(netns) | cgroup_pids(netns)
    found.discard(exclude)
    return sorted(p for p in found if procs.cmdline(p) is not None)


def power_cut(netns: str) -> int:
    """SIGKILL every process of a host at once, as pulling its plug would; its network stays.

    Killing only nspawn leaves the container running (its init is reparented),
    so the whole cgroup tree and namespace go. Returns how many processes died.
    """
    killed: set[int] = set()
    deadline = time.monotonic() + 10
    while (left := namespace_pids(netns) | cgroup_pids(netns)) and time.monotonic() < deadline:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    return len(killed)


def clear(netns: str, veth: str) -> None:
    """Kill what still runs of a host, then remove its namespace, veth and cgroups.

    A container whose nspawn was killed keeps its init running in the
    namespace; booting a new one over the same overlay beside it goes badly.
    """
    deadline = time.monotonic() + 10
    while (left := namespace_pids(netns) | cgroup_pids(netns)) and time.monotonic() < deadline:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    for argv in ip.host_net_down(netns, veth):
        subprocess.run(argv, capture_output=True, text=True)
    for top in nspawn.cgroup_dirs(netns):
        rmdir_tree(Path(top))


def namespace_pids(netns: str) -> set[int]:
    if netns not in netns_list():
        return set()
    out = subprocess.run(ip.netns_pids(netns), capture_output=True, text=True).stdout
    return {int(p) for p in out.split() if p.isdigit()}


def cgroup_pids(name: str) -> set[int]:
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


def root_of(pids: list[int]) -> int:
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


def rmdir_tree(top: Path) -> None:
    """Remove an emptied cgroup tree (cgroups go with rmdir, deepest first)."""
    if not top.is_dir():
        return
    for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass


def link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def netns_list() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []
