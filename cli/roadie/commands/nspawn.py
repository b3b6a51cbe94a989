"""The systemd-nspawn command line that boots one local host.

Host PID 1 is not systemd here, so --register=no and --keep-unit; networking
is a namespace roadie made (--network-veth needs a system bus we lack).
"""

from __future__ import annotations

from pathlib import Path


def boot_argv(machine: str, base: Path, upper: Path, netns: str) -> list[str]:
    return [
        "systemd-nspawn", "--quiet", "--register=no", "--keep-unit",
        "-D", str(base), f"--overlay={base}:{upper}:/",
        "--boot", f"--network-namespace-path=/run/netns/{netns}",
        "-M", machine, "--console=read-only",
        # Own network namespace, so the firewall and net.* sysctls are the host's own to manage.
        "--capability=CAP_NET_ADMIN",
    ]


def boot_env() -> dict:
    """nspawn's environment: /proc/sys/net writable (it is the host's own namespace), the rest read-only."""
    import os

    return {**os.environ, "SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"}


CGROUP_HIERARCHIES = ("unified", "systemd")


def cgroup_dirs(name: str) -> list[str]:
    """The cgroups in_own_cgroup makes for `name` (removed again by `down`)."""
    return [f"/sys/fs/cgroup/{h}/roadie/{name}" for h in CGROUP_HIERARCHIES]


def in_own_cgroup(name: str, argv: list[str]) -> list[str]:
    """Start `argv` in a cgroup of its own (the hybrid unified and name=systemd hierarchies, when mounted).

    nspawn --keep-unit splits the cgroup it starts in into supervisor/ and payload/;
    started from the same cgroup, every container's systemd would share one payload/
    tree and race over the same unit cgroups (219/CGROUP when two hosts start a unit).
    """
    script = ('n="$1"; shift; for h in unified systemd; do r=/sys/fs/cgroup/$h; '
              'if [ -f "$r/cgroup.procs" ]; then '
              'mkdir -p "$r/roadie/$n" && echo $$ > "$r/roadie/$n/cgroup.procs"; fi; done; '
              'exec "$@"')
    return ["sh", "-c", script, "roadie-nspawn", name, *argv]
