"""SSH to inventory hosts through Fabric, with the same pinned keys Ansible uses.

Fabric's default is to trust unknown host keys (AutoAddPolicy); roadie never
does: host keys come from the environment's known_hosts and anything else is
refused.
"""

from __future__ import annotations

from pathlib import Path

from roadie import paths
from roadie.errors import OperationFailed
from roadie.inventory import Host


def ssh_files(env: str) -> tuple[Path, Path]:
    state = paths.state_dir(env)
    return state / "id_ed25519", state / "known_hosts"


def connect(host: Host, env: str):
    import fabric
    import paramiko

    key, known_hosts = ssh_files(env)
    if not known_hosts.exists():
        raise OperationFailed(f"No known_hosts for {env} ({known_hosts}); is the fleet up (`roadie local up`)?")
    conn = fabric.Connection(host.address, user=str(host.vars.get("ansible_user", "root")),
                             connect_kwargs={"key_filename": str(key), "look_for_keys": False,
                                             "allow_agent": False},
                             connect_timeout=10)
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    conn.client.load_host_keys(str(known_hosts))
    return conn


def run(conn, host: Host, command: str, what: str) -> str:
    """Run `command`; a failure names the host, the step and the remote error."""
    result = conn.run(command, hide=True, warn=True, in_stream=False)
    if not result.ok:
        lines = (result.stderr.strip() or result.stdout.strip() or f"exit {result.exited}").splitlines()
        raise OperationFailed(f"{host.name}: {what} failed: {lines[-1]}")
    return result.stdout
