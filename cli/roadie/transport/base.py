"""What every transport offers: one step on one host, or one command on many hosts at once.

`run` and `put` are the deploy engine's steps: a host's stdout, or an
OperationFailed naming host, step and remote error (HostUnreachable when the
host did not answer). `run_each` is Fabric's Group.run and GroupResult: one
command on many hosts in parallel and every host's own Result, one host failing
never stopping the others (`roadie ops logs`, `roadie ops exec`). A new way to
reach hosts is one module with one class that has these methods and one line in
registry.KINDS (as pyinfra's connectors/).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Protocol

from roadie.inventory import Host

OnLine = Callable[[str, str], None]  # on_line(host name, one line of its stdout, without its newline)


@dataclass
class Result:
    """One host's end of a run_each."""

    host: str
    exit: int | None  # None: no answer (unreachable, past its bound, stopped, never run there)
    stdout: str = ""
    stderr: str = ""
    error: str | None = None  # why there is no exit status


class Transport(Protocol):
    kind: str  # ssh | ssm (what registry.KINDS maps an inventory's roadie_connection to)
    streams: bool  # on_line gets lines as the hosts write them (SSH); False: when each host's command ends (SSM)

    @classmethod
    def from_environment(cls, env: str, *, inventory=None, client=None, bucket=None) -> Transport:
        """What the registry makes: from the Environment's inventory, boto3 `client(service, retries)` and
        `bucket(kind)`, so a command reads its inventory and makes its AWS clients once."""

    def run(self, host: Host, command: str, what: str, timeout: float | None = None) -> str:
        """stdout of `command` on `host` within `timeout` s (the transport's step bound if None); OperationFailed
        (or HostUnreachable) naming host, step (`what`) and the remote error otherwise."""

    def put(self, host: Host, local: Path, remote: str) -> None:
        """The local file at `remote` on the host."""

    def run_each(self, hosts: Iterable[Host], command: str, what: str, timeout: float | None = None,
                 on_line: OnLine | None = None, *, follow: bool = False) -> dict[str, Result]:
        """`command` on every host at once; each host's Result, in the order of `hosts`.

        `on_line(host, line)` gets every complete line of a host's stdout, in order
        per host (lines of different hosts interleave), from the transport's threads.
        `follow`: a command that runs until stop() (journalctl -f); refused by a
        transport that does not stream."""

    def stop(self) -> None:
        """End every run_each in flight now (Ctrl-C, the end of a --follow); its hosts' Results say 'stopped'."""

    def close(self) -> None:
        """Let go of connections; the transport opens them again if asked."""


class Lines:
    """A file-like sink (Fabric's out_stream) that hands complete lines to `on_line(host, line)`, in order."""

    def __init__(self, host: str, on_line: OnLine):
        self.host, self.on_line, self.buf = host, on_line, ""

    def write(self, data: str) -> None:
        self.buf += data.replace("\r", "")
        *lines, self.buf = self.buf.split("\n")
        for line in lines:
            self.on_line(self.host, line)

    def flush(self) -> None:
        pass

    def end(self) -> None:
        """The command ended: a last line without its newline is complete now."""
        if self.buf:
            line, self.buf = self.buf, ""
            self.on_line(self.host, line)


def each_line(host: str, text: str, on_line: OnLine | None) -> None:
    """A whole output, line by line (a transport that has it only at the end)."""
    if on_line:
        sink = Lines(host, on_line)
        sink.write(text)
        sink.end()
