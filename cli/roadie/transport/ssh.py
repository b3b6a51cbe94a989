"""SSH to inventory hosts through Fabric, with the same pinned keys Ansible uses.

Fabric's default is to trust unknown host keys (AutoAddPolicy); roadie never
does: host keys come from the environment's known_hosts and anything else is
refused, for a jump host as for the hosts behind it. ssh_config files are not
read either (a ProxyJump there would open a jump connection of Fabric's own,
trusting any key): the inventory says how hosts are reached.

Every command is bounded twice over. A host that stops answering (its link cut,
its power gone) is noticed by TCP within DEAD_PEER_SECONDS: SSH keepalives keep
data in flight and TCP_USER_TIMEOUT aborts a connection whose data goes
unacknowledged that long (without both, a dead peer is noticed only when the
kernel gives up retransmitting: about 16 minutes). A command that runs on but
hangs ends at its step's timeout.

`SSH.run_each` is Fabric's Group over the same pool of connections: every host
at once (FANOUT at a time, or all of them for a follow), each line of a host's
stdout handed on as it comes, every host's own Result; `stop()` closes the
connections in flight, and with them (a pty's hang-up) the remote commands.
"""

from __future__ import annotations

import re
import shlex
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from roadie import paths, procs
from roadie.errors import BadInput, HostUnreachable, OperationFailed
from roadie.inventory import Host
from roadie.transport.base import Lines, OnLine, Result

CONNECT_SECONDS = 10
KEEPALIVE_SECONDS = 5  # an SSH keepalive this often keeps data in flight, so TCP_USER_TIMEOUT can fire
DEAD_PEER_SECONDS = 20  # unacknowledged data this long: the connection is dead
STEP_SECONDS = 120  # a command with no timeout of its own
FANOUT = 16  # hosts a run_each asks at once (a follow asks all of them: it never ends by itself)


def ssh_files(env: str) -> tuple[Path, Path]:
    state = paths.state_dir(env)
    return state / "id_ed25519", state / "known_hosts"


@dataclass(frozen=True)
class Jump:
    """A jump host (bastion), as `-o ProxyJump=[USER@]HOST[:PORT]` in ansible_ssh_common_args names it."""

    host: str
    user: str | None = None
    port: int = 22


def jump_of(host: Host) -> Jump | None:
    """The ProxyJump Ansible uses for `host`, so roadie goes the same way; None when it connects directly."""
    args = shlex.split(str(host.vars.get("ansible_ssh_common_args") or ""))
    spec = None
    for i, arg in enumerate(args):
        opt = arg[2:] if arg.startswith("-o") and len(arg) > 2 else (args[i + 1] if arg == "-o" and i + 1 < len(args)
                                                                     else None)
        if opt and opt.lower().startswith("proxyjump="):
            spec = opt.split("=", 1)[1]
        elif arg == "-J" and i + 1 < len(args):
            spec = args[i + 1]
    if not spec or spec.lower() == "none":
        return None
    if "," in spec:
        raise BadInput(f"{host.name}: ProxyJump {spec} chains jump hosts; roadie goes through one.")
    m = re.fullmatch(r"(?:(?P<user>[^@]+)@)?(?P<host>[^:@]+)(?::(?P<port>\d+))?", spec)
    if not m:
        raise BadInput(f"{host.name}: ProxyJump '{spec}' is not [USER@]HOST[:PORT].")
    return Jump(m["host"], m["user"], int(m["port"] or 22))


def _pinned(address: str, user: str, known_hosts: Path, key: Path, gateway=None, port: int = 22):
    import fabric
    import paramiko

    conn = fabric.Connection(address, user=user, port=port, gateway=gateway,
                             config=fabric.Config(overrides={"load_ssh_configs": False}),
                             connect_kwargs={"key_filename": str(key), "look_for_keys": False,
                                             "allow_agent": False, "banner_timeout": CONNECT_SECONDS,
                                             "auth_timeout": CONNECT_SECONDS},
                             connect_timeout=CONNECT_SECONDS)
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    conn.client.load_host_keys(str(known_hosts))
    return conn


def connect(host: Host, env: str):
    key, known_hosts = ssh_files(env)
    if not known_hosts.exists():
        raise OperationFailed(f"No known_hosts for {env} ({known_hosts}); is the fleet up (`roadie local up`), "
                              "or pin the hosts' keys (`roadie hosts pin-keys`)?")
    user = str(host.vars.get("ansible_user", "root"))
    jump = jump_of(host)
    gateway = _pinned(jump.host, jump.user or user, known_hosts, key, port=jump.port) if jump else None
    return _pinned(host.address, user, known_hosts, key, gateway=gateway)


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


def dead_peer_bound(conn) -> None:
    """Keepalives on the SSH transport and TCP_USER_TIMEOUT on its socket: a dead peer ends the connection
    within DEAD_PEER_SECONDS (a jump host's socket too: the hosts behind it ride on that one)."""
    while conn is not None:
        transport = conn.transport
        if transport is not None:
            transport.set_keepalive(KEEPALIVE_SECONDS)
            sock = transport.sock
            if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, DEAD_PEER_SECONDS * 1000)
        conn = conn.gateway if not isinstance(conn.gateway, str) else None


def open_once(conn) -> None:
    """Open the connection if it is not (key exchange, auth), with Nagle off and dead peers bounded."""
    if conn.is_connected:
        return
    conn.open()
    nodelay(conn.transport.sock)
    dead_peer_bound(conn)


class TimedOut(HostUnreachable):
    """A command outlived its bound: its channel is closed, and its connection is not to be trusted."""


def run(conn, host: Host, command: str, what: str, timeout: float | None = None) -> str:
    """Run `command` for at most `timeout` s (STEP_SECONDS if None); a failure names the host, the step and
    the remote error."""
    from invoke.exceptions import CommandTimedOut

    limit = STEP_SECONDS if timeout is None else timeout
    try:
        result = conn.run(command, hide=True, warn=True, in_stream=False, timeout=limit)
    except CommandTimedOut:
        raise TimedOut(f"{host.name}: {what} did not finish within {limit:.0f} s "
                              "(the host stopped answering, or the command hangs)") from None
    if result.exited == -1:  # paramiko's word for a channel closed without an exit status: the link died
        raise HostUnreachable(f"{host.name}: {what} failed: the connection closed without an exit status "
                              "(the host stopped answering)")
    if not result.ok:
        cause = procs.last_line(result.stderr.strip() or result.stdout, f"exit {result.exited}")
        raise OperationFailed(f"{host.name}: {what} failed: {cause}")
    return result.stdout


class _Run:
    """One run_each in flight: what stop() must cut."""

    def __init__(self):
        self.stopped = threading.Event()
        self.conns: dict[str, object] = {}  # host name -> its connection while its command runs
        self.lock = threading.Lock()


class SSH:
    """The SSH transport: one Fabric connection per host, reused by every step.

    A host's steps run one at a time (a batch runs different hosts in parallel);
    the balancer's host may be asked by several threads at once, which one
    paramiko transport allows (a channel each). Hosts are opened in parallel:
    the pool's lock covers the bookkeeping, each host's own lock its handshake.
    """

    kind = "ssh"
    streams = True

    @classmethod
    def from_environment(cls, env: str, **_environment) -> SSH:
        """For the registry: SSH needs only the environment's name (its key and known_hosts files)."""
        return cls(env)

    def __init__(self, env: str):
        self.env = env
        self._conns: dict[str, object] = {}
        self._opening: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._runs: set[_Run] = set()

    def _conn(self, host: Host):
        with self._lock:
            if host.name not in self._conns:
                self._conns[host.name] = connect(host, self.env)
                self._opening[host.name] = threading.Lock()
            conn, opening = self._conns[host.name], self._opening[host.name]
        with opening:
            open_once(conn)
        return conn

    def run(self, host: Host, command: str, what: str, timeout: float | None = None) -> str:
        """stdout of `command`, bounded by `timeout` s; OperationFailed naming host, step and error otherwise."""
        try:
            return run(self._conn(host), host, command, what, timeout)
        except HostUnreachable:  # timed out, or the channel died: the connection is not to be trusted
            self.drop(host)
            raise
        except OperationFailed:
            raise
        except Exception as exc:  # paramiko/socket errors: the host did not answer
            self.drop(host)
            raise HostUnreachable(f"{host.name}: {what} failed: {type(exc).__name__}: {exc}") from None

    def put(self, host: Host, local: Path, remote: str) -> None:
        try:
            self._conn(host).put(str(local), remote)
        except Exception as exc:
            self.drop(host)
            raise HostUnreachable(f"{host.name}: upload of {local.name} failed: {exc}") from None

    # -- many hosts at once ----------------------------------------------------------------------

    def run_each(self, hosts: Iterable[Host], command: str, what: str, timeout: float | None = None,
                 on_line: OnLine | None = None, *, follow: bool = False) -> dict[str, Result]:
        """Every host's Result, in the order of `hosts`; each line of stdout to `on_line` as it comes.

        A host that fails or does not answer has its own Result (its connection
        dropped from the pool); the others go on. Bounded by `timeout` s per host
        (STEP_SECONDS if None); a `follow` runs in a pty, unbounded unless given
        a timeout, until stop() hangs it up. Ctrl-C here stops every host."""
        hosts = list(hosts)
        if not hosts:
            return {}
        limit = timeout if follow or timeout is not None else STEP_SECONDS
        state = _Run()
        with self._lock:
            self._runs.add(state)
        workers = len(hosts) if follow else min(FANOUT, len(hosts))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="roadie-ssh")
        try:
            futures = [pool.submit(self._each, state, h, command, what, limit, on_line, follow) for h in hosts]
            return {h.name: f.result() for h, f in zip(hosts, futures, strict=True)}
        except KeyboardInterrupt:
            self.stop()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            with self._lock:
                self._runs.discard(state)

    def _each(self, state: _Run, host: Host, command: str, what: str, limit: float | None,
              on_line: OnLine | None, follow: bool) -> Result:
        from invoke.exceptions import CommandTimedOut

        stopped = Result(host.name, None, error="stopped")
        if state.stopped.is_set():
            return stopped
        try:
            conn = self._conn(host)
        except Exception as exc:  # no known_hosts, a refused or dead connection, a handshake that failed
            self.drop(host)
            return stopped if state.stopped.is_set() else Result(host.name, None, error=_why(exc))
        with state.lock:
            if state.stopped.is_set():
                return stopped
            state.conns[host.name] = conn
        sink = Lines(host.name, on_line) if on_line else None
        try:
            r = conn.run(command, hide=True, warn=True, in_stream=False, pty=follow, timeout=limit,
                         **({"out_stream": sink} if sink else {}))
        except CommandTimedOut:
            self._drop(host.name, conn)
            return Result(host.name, None, error=f"{what} did not finish within {limit:.0f} s "
                                                 "(the host stopped answering, or the command hangs)")
        except Exception as exc:  # the host stopped answering, or stop() closed the connection
            self._drop(host.name, conn)
            return stopped if state.stopped.is_set() else Result(host.name, None, error=_why(exc))
        finally:
            with state.lock:
                state.conns.pop(host.name, None)
        if sink:
            sink.end()
        if state.stopped.is_set():  # hung up by stop(): what it printed is kept, its exit is not its own
            return Result(host.name, None, r.stdout, r.stderr, error="stopped")
        return Result(host.name, r.exited, r.stdout, r.stderr)

    def stop(self) -> None:
        """Cut every run_each in flight: its connections are closed (a pty's hang-up ends the remote command)
        and dropped from the pool; hosts not yet started are not asked."""
        with self._lock:
            runs = list(self._runs)
        for state in runs:
            with state.lock:
                state.stopped.set()
                cut = list(state.conns.items())
            for name, conn in cut:
                self._drop(name, conn)

    # -- the pool ------------------------------------------------------------------------------

    def _drop(self, name: str, conn) -> None:
        """Close `conn` and take it out of the pool if it is still the host's connection there."""
        with self._lock:
            if self._conns.get(name) is conn:
                del self._conns[name]
        try:
            conn.close()
        except Exception:  # closing a dead connection may raise anything; it is gone either way
            pass

    def drop(self, host: Host) -> None:
        with self._lock:
            conn = self._conns.pop(host.name, None)
        if conn is not None:
            try:
                conn.close()
            except Exception:  # closing a dead connection may raise anything; it is gone either way
                pass

    def close(self) -> None:
        self.stop()
        with self._lock:
            conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            try:
                conn.close()
            except Exception:  # best effort at exit
                pass


def _why(exc: Exception) -> str:
    """A host's error as one line: roadie's own message, else the exception's type and text."""
    message = getattr(exc, "message", None)
    return message if isinstance(message, str) and message else f"{type(exc).__name__}: {exc}"
