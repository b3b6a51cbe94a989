"""The SSH transport's error lines: host, step and the remote error's last line; connections dropped on failure;
connections opened once, with Nagle off."""

from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace

import pytest

from roadie.transport import registry
from roadie.transport import ssh as transport
from roadie.errors import BadInput, OperationFailed
from roadie.inventory import Host

HOST = Host("catalog-1", "198.18.0.11", ("catalog",))


class Conn:
    is_connected = True

    def __init__(self, result=None, exc=None):
        self.result, self.exc, self.closed, self.commands = result, exc, False, []

    def run(self, command, **kwargs):
        self.commands.append((command, kwargs))
        if self.exc:
            raise self.exc
        return self.result

    def close(self):
        self.closed = True


def result(ok, stdout="", stderr="", exited=0):
    return SimpleNamespace(ok=ok, stdout=stdout, stderr=stderr, exited=exited)


@pytest.mark.parametrize(("res", "message"), [
    (result(False, stderr="line one\nunit failed to start\n", exited=1), "catalog-1: restarting failed: unit failed"),
    (result(False, stdout="only stdout\n", exited=3), "catalog-1: restarting failed: only stdout"),
    (result(False, exited=7), "catalog-1: restarting failed: exit 7"),
])
def test_a_failed_command_names_host_step_and_remote_error(res, message):
    with pytest.raises(OperationFailed, match=message):
        transport.run(Conn(res), HOST, "systemctl restart catalog", "restarting")


def test_output_of_a_good_command_and_no_stdin():
    conn = Conn(result(True, stdout="releases/1.0.0\n"))
    assert transport.run(conn, HOST, "readlink current", "reading") == "releases/1.0.0\n"
    assert conn.commands[0][1] == {"hide": True, "warn": True, "in_stream": False,
                                   "timeout": transport.STEP_SECONDS}


def test_the_pool_reuses_one_connection_and_drops_a_broken_one(monkeypatch):
    made = []

    def connect(host, env):
        made.append(Conn(result(True, stdout="ok")) if len(made) == 0 else Conn(result(True, stdout="again")))
        return made[-1]

    monkeypatch.setattr(transport, "connect", connect)
    ssh = transport.SSH("local")
    assert ssh.run(HOST, "true", "a") == "ok" and ssh.run(HOST, "true", "b") == "ok"
    assert len(made) == 1
    made[0].exc = ConnectionResetError("gone")
    with pytest.raises(OperationFailed, match="catalog-1: c failed: ConnectionResetError: gone"):
        ssh.run(HOST, "true", "c")
    assert made[0].closed
    assert ssh.run(HOST, "true", "d") == "again" and len(made) == 2


@pytest.mark.parametrize(("kind", "made"), [("ssh", "ssh"), ("bastion", "ssh"), ("ssm", "ssm"), ("telnet", None)])
def test_the_inventory_chooses_the_transport(kind, made):
    if made:
        assert registry.for_env("local", kind).kind == made
    else:
        with pytest.raises(BadInput, match=f"roadie_connection '{kind}'"):
            registry.for_env("local", kind)


def nodelay_of(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


@pytest.fixture
def tcp():
    """A real connected TCP socket on loopback (Nagle on, as the kernel makes it)."""
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    yield client
    for s in (client, peer, server):
        s.close()


def test_nodelay_turns_nagle_off_on_a_tcp_socket(tcp):
    assert nodelay_of(tcp) == 0
    assert transport.nodelay(tcp) is True
    assert nodelay_of(tcp) != 0


@pytest.mark.parametrize("sock", [None, "a paramiko Channel through a bastion", socket.socket(socket.AF_UNIX)])
def test_nodelay_leaves_what_is_not_tcp_alone(sock):
    assert transport.nodelay(sock) is False


class Closed:
    """A connection not yet open: open() gives it a transport over `sock`."""

    gateway = None

    def __init__(self, sock):
        self.sock, self.opened, self.transport = sock, 0, None
        self.keepalive = None

    @property
    def is_connected(self):
        return self.transport is not None

    def open(self):
        self.opened += 1
        time.sleep(0.02)  # a handshake takes time: threads asking meanwhile must wait for it, not open again
        self.transport = SimpleNamespace(sock=self.sock, set_keepalive=lambda s: setattr(self, "keepalive", s))

    def run(self, command, **kwargs):
        return result(True, stdout=command)


def test_a_connection_is_opened_once_with_nagle_off(tcp):
    conn = Closed(tcp)
    transport.open_once(conn)
    transport.open_once(conn)
    assert conn.opened == 1 and nodelay_of(tcp) != 0


def test_the_pool_opens_a_host_once_when_threads_ask_together(monkeypatch, tcp):
    conn = Closed(tcp)
    monkeypatch.setattr(transport, "connect", lambda host, env: conn)
    ssh = transport.SSH("local")
    threads = [threading.Thread(target=ssh.run, args=(HOST, "true", "x")) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert conn.opened == 1 and nodelay_of(tcp) != 0


def test_a_command_past_its_bound_names_host_step_and_bound_and_its_connection_is_dropped(monkeypatch):
    from invoke.exceptions import CommandTimedOut

    conn = Conn(exc=CommandTimedOut(result(False), timeout=30))
    monkeypatch.setattr(transport, "connect", lambda host, env: conn)
    ssh = transport.SSH("local")
    with pytest.raises(transport.TimedOut, match=r"catalog-1: switching current did not finish within 30 s"):
        ssh.run(HOST, "ln -sfn ...", "switching current", timeout=30)
    assert conn.commands[0][1]["timeout"] == 30
    assert conn.closed  # the next step opens a fresh connection rather than trusting this one


def test_a_failing_command_keeps_its_connection(monkeypatch):
    conn = Conn(result(False, stderr="no", exited=1))
    monkeypatch.setattr(transport, "connect", lambda host, env: conn)
    with pytest.raises(OperationFailed):
        transport.SSH("local").run(HOST, "false", "x")
    assert not conn.closed


def test_a_channel_closed_without_an_exit_status_is_a_host_that_stopped_answering(monkeypatch):
    """Seen on the fleet with catalog-2's link cut: TCP_USER_TIMEOUT ended the connection and paramiko gave the
    switch an exit status of -1; taken for a failed command, the engine then tried to put the host back and
    waited 30 s for it UP (the deploy ended 68.8 s after the cut)."""
    from roadie.errors import HostUnreachable

    conn = Conn(result(False, exited=-1))
    monkeypatch.setattr(transport, "connect", lambda host, env: conn)
    with pytest.raises(HostUnreachable, match="catalog-1: switching current failed: the connection closed"):
        transport.SSH("local").run(HOST, "ln -sfn ...", "switching current")
    assert conn.closed


def test_a_connection_is_opened_with_keepalives_and_a_dead_peer_bound(tcp):
    """Without both, a cut link holds a step for TCP's retransmission limit (977 s seen)."""
    conn = Closed(tcp)
    transport.open_once(conn)
    assert conn.keepalive == transport.KEEPALIVE_SECONDS
    assert tcp.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == transport.DEAD_PEER_SECONDS * 1000


@pytest.mark.parametrize(("args", "jump"), [
    (None, None),
    ("", None),
    ("-o StrictHostKeyChecking=yes", None),
    ("-o ProxyJump=admin@203.0.113.5", transport.Jump("203.0.113.5", "admin")),
    ("-o ProxyJump=bastion.example:2222", transport.Jump("bastion.example", None, 2222)),
    ("-oProxyJump=ops@10.1.0.4 -o ServerAliveInterval=5", transport.Jump("10.1.0.4", "ops")),
    ("-J admin@203.0.113.5", transport.Jump("203.0.113.5", "admin")),
    ("-o ProxyJump=none", None),
])
def test_the_jump_host_is_read_from_the_ssh_args_ansible_uses(args, jump):
    host = Host("catalog-1", "10.1.2.3", ("catalog",), {"ansible_ssh_common_args": args} if args is not None else {})
    assert transport.jump_of(host) == jump


@pytest.mark.parametrize("args", ["-o ProxyJump=a@b,c@d", "-o ProxyJump=@:x"])
def test_a_jump_host_roadie_cannot_follow_is_refused(args):
    with pytest.raises(BadInput, match="catalog-1: ProxyJump"):
        transport.jump_of(Host("catalog-1", "10.1.2.3", ("catalog",), {"ansible_ssh_common_args": args}))


def test_host_and_jump_host_alike_refuse_unknown_keys_and_read_no_ssh_config(monkeypatch, tmp_path):
    import paramiko

    (tmp_path / "known_hosts").write_text("")
    monkeypatch.setattr(transport, "ssh_files", lambda env: (tmp_path / "id_ed25519", tmp_path / "known_hosts"))
    host = Host("catalog-1", "10.1.2.3", ("catalog",),
                {"ansible_user": "admin", "ansible_ssh_common_args": "-o ProxyJump=jump@203.0.113.5:2200"})
    conn = transport.connect(host, "staging")
    for c in (conn, conn.gateway):
        assert isinstance(c.client._policy, paramiko.RejectPolicy)
        assert c.config.load_ssh_configs is False
    assert (conn.gateway.host, conn.gateway.user, conn.gateway.port) == ("203.0.113.5", "jump", 2200)
    assert (conn.host, conn.user) == ("10.1.2.3", "admin")
