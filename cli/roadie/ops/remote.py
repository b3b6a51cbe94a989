"""Commands whose output matters line by line (logs, exec): on every host at once, over the pinned-key SSH.

The deploy transport returns a step's stdout or raises; these need each host's
exit code and its output as it comes, so they open their own connections with
the same keys and known_hosts (transport.connect).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from roadie import transport
from roadie.errors import BadInput
from roadie.inventory import Host, Inventory
from roadie.ops.common import PARALLEL


def require_ssh(inv: Inventory, what: str) -> None:
    """logs and exec stream each host's lines and exit code, which only SSH gives: an SSM inventory is
    refused in one line rather than left to time out on SSH ports its hosts do not open."""
    kind = str(inv.env_vars.get("roadie_connection", "ssh"))
    if kind not in transport.SSH_KINDS:
        raise BadInput(f"`roadie ops {what}` needs SSH to the hosts, and the {inv.env} inventory reaches them by "
                       f"{kind}: use `aws ssm start-session --target INSTANCE-ID`, or roadie_connection: bastion.")


@dataclass
class Result:
    host: str
    exit: int | None  # None: the host did not answer
    stdout: str = ""
    stderr: str = ""
    error: str | None = None


class _Lines:
    """A file-like sink that hands complete lines to `on_line(host, line)`."""

    def __init__(self, host: str, on_line: Callable[[str, str], None]):
        self.host, self.on_line, self.buf = host, on_line, ""

    def write(self, data: str) -> None:
        self.buf += data.replace("\r", "")
        *lines, self.buf = self.buf.split("\n")
        for line in lines:
            self.on_line(self.host, line)

    def flush(self) -> None:
        pass


class Fanout:
    """One command on many hosts in parallel; `stop()` (Ctrl-C) closes every connection."""

    def __init__(self, env: str, hosts: list[Host]):
        self.env, self.hosts = env, hosts
        self.conns: dict[str, object] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    def _one(self, host: Host, command: str, on_line, pty: bool, timeout: float | None) -> Result:
        try:
            conn = transport.connect(host, self.env)
            with self.lock:
                if self.stopped.is_set():
                    return Result(host.name, None, error="stopped")
                self.conns[host.name] = conn
            transport.open_once(conn)  # Nagle off, as on every roadie connection
            kw = {"out_stream": _Lines(host.name, on_line)} if on_line else {}
            r = conn.run(command, hide=True, warn=True, in_stream=False, pty=pty, timeout=timeout, **kw)
            return Result(host.name, r.exited, r.stdout, r.stderr)
        except Exception as exc:  # the host did not answer, or the connection was closed by stop()
            if self.stopped.is_set():
                return Result(host.name, None, error="stopped")
            return Result(host.name, None, error=f"{type(exc).__name__}: {exc}")
        finally:
            self._close(host.name)

    def _close(self, name: str) -> None:
        with self.lock:
            conn = self.conns.pop(name, None)
        if conn is not None:
            try:
                conn.close()
            except Exception:  # closing a dead connection may raise anything; it is gone either way
                pass

    def run(self, command: str, on_line: Callable[[str, str], None] | None = None, pty: bool = False,
            timeout: float | None = None) -> dict[str, Result]:
        """Results by host, in inventory order. Ctrl-C closes every connection (a pty hangs the remote up).

        Lines streamed as they come (`on_line`, as `logs --follow` does) may never end: every host gets its
        own worker then, or hosts past PARALLEL would never start."""
        workers = len(self.hosts) if on_line else min(PARALLEL, len(self.hosts))
        pool = ThreadPoolExecutor(max_workers=max(1, workers))
        futures = [pool.submit(self._one, h, command, on_line, pty, timeout) for h in self.hosts]
        try:
            return {h.name: f.result() for h, f in zip(self.hosts, futures, strict=True)}
        except KeyboardInterrupt:
            self.stop()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def stop(self) -> None:
        self.stopped.set()
        for name in list(self.conns):
            self._close(name)
