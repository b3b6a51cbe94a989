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
