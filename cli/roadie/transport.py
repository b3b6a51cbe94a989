"""SSH to inventory hosts through Fabric, with the same pinned keys Ansible uses.

Fabric's default is to trust unknown host keys (AutoAddPolicy); roadie never
does: host keys come from the environment's known_hosts and anything else is
refused.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from roadie import paths, procs
from roadie.errors import BadInput, OperationFailed
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


def nodelay(sock) -> bool:
    """Turn Nagle's algorithm off on a TCP socket; False for anything else (a bastion's channel).

    An SSH exec is a few small packets each way; with Nagle on, one of them
    waits for the peer's delayed ACK, about 40 ms per command here (48 ms ->
    13 ms for `true` on a fleet host, and a deploy runs ~20 commands in a row).
    """
    if not isinstance(sock, socket.socket) or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return True


def open_once(conn) -> None:
    """Open the connection if it is not (key exchange, auth), with Nagle off."""
    if conn.is_connected:
        return
    conn.open()
    nodelay(conn.transport.sock)


def run(conn, host: Host, command: str, what: str) -> str:
    """Run `command`; a failure names the host, the step and the remote error."""
    result = conn.run(command, hide=True, warn=True, in_stream=False)
    if not result.ok:
        cause = procs.last_line(result.stderr.strip() or result.stdout, f"exit {result.exited}")
        raise OperationFailed(f"{host.name}: {what} failed: {cause}")
    return result.stdout


class SSH:
    """The SSH transport: one Fabric connection per host, reused by every step.

    A host's steps run one at a time (a batch runs different hosts in parallel);
    the balancer's host may be asked by several threads at once, which one
    paramiko transport allows (a channel each). Hosts are opened in parallel:
    the pool's lock covers the bookkeeping, each host's own lock its handshake.
    """

    kind = "ssh"

    def __init__(self, env: str):
        self.env = env
        self._conns: dict[str, object] = {}
        self._opening: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def _conn(self, host: Host):
        with self._lock:
            if host.name not in self._conns:
                self._conns[host.name] = connect(host, self.env)
                self._opening[host.name] = threading.Lock()
            conn, opening = self._conns[host.name], self._opening[host.name]
        with opening:
            open_once(conn)
        return conn

    def run(self, host: Host, command: str, what: str) -> str:
        """stdout of `command`; OperationFailed naming host, step and remote error otherwise."""
        try:
            return run(self._conn(host), host, command, what)
        except OperationFailed:
            raise
        except Exception as exc:  # paramiko/socket errors: the host did not answer
            self.drop(host)
            raise OperationFailed(f"{host.name}: {what} failed: {type(exc).__name__}: {exc}") from None

    def put(self, host: Host, local: Path, remote: str) -> None:
        try:
            self._conn(host).put(str(local), remote)
        except Exception as exc:
            self.drop(host)
            raise OperationFailed(f"{host.name}: upload of {local.name} failed: {exc}") from None

    def drop(self, host: Host) -> None:
        with self._lock:
            conn = self._conns.pop(host.name, None)
        if conn is not None:
            try:
                conn.close()
            except Exception:  # closing a dead connection may raise anything; it is gone either way
                pass

    def close(self) -> None:
        for name in list(self._conns):
            conn = self._conns.pop(name)
            try:
                conn.close()
            except Exception:  # best effort at exit
                pass


SSH_KINDS = ("ssh", "local", "bastion")  # roadie_connection values reached over SSH (bastion: a ProxyJump)


def for_env(env: str, connection: str = "ssh"):
    """The transport an inventory asks for (roadie_connection)."""
    if connection in SSH_KINDS:
        return SSH(env)
    if connection == "ssm":
        from roadie.transport_ssm import SSM

        return SSM(env)
    raise BadInput(f"The {env} inventory asks for roadie_connection '{connection}', which roadie cannot use "
                   "(known: ssh, bastion, ssm).")
