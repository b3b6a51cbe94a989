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
    ]
