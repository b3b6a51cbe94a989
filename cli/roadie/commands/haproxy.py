"""HAProxy runtime API commands, run on a load balancer host against its admin socket.

socat exits 0 whatever HAProxy answered, so callers must read the answer:
`set server` answers nothing on success and a sentence ("No such server.") on
failure; `check_set` below tells the two apart.
"""

from __future__ import annotations

import csv
import io
import shlex
from dataclasses import dataclass


def runtime(socket: str, *commands: str) -> str:
    """Shell that sends commands (';'-separated, one session) to the admin socket."""
    return f"echo {shlex.quote('; '.join(commands))} | socat -t 10 stdio UNIX-CONNECT:{shlex.quote(socket)}"


def set_state(socket: str, backend: str, server: str, state: str) -> str:
    assert state in ("ready", "drain", "maint"), state
    return runtime(socket, f"set server {backend}/{server} state {state}")


def set_weight(socket: str, backend: str, server: str, weight: str) -> str:
    return runtime(socket, f"set server {backend}/{server} weight {weight}")


def show_stat(socket: str) -> str:
    return runtime(socket, "show stat")


def check_set(answer: str) -> str | None:
    """The error HAProxy gave to a `set server`, or None when it accepted it."""
    text = answer.strip()
    return text or None


@dataclass(frozen=True)
class Server:
    """One server's line of `show stat`."""

    backend: str
    name: str
    status: str  # UP, DOWN, DRAIN, MAINT, "UP 1/3" (going down), "DOWN 1/2" (going up), "no check"
    weight: int
    sessions: int  # current sessions (scur)
    total: int  # sessions since start (stot)
    errors: int  # connection + response errors (econ + eresp)
    http_5xx: int
    response_ms: int  # average response time over the last 1024 requests (rtime)
    responses: int = 0  # HTTP answers since start, every status class (hrsp_1xx..hrsp_5xx, hrsp_other)

    @property
    def up(self) -> bool:
        """Taking traffic: health checks pass and not drained or in maintenance."""
        return self.status == "UP" and self.weight > 0

    @property
    def returning(self) -> bool:
        """Out of service by its health checks alone, with no admin state keeping it out (not drained, not in
        maintenance): a host another tool just restarted, which HAProxy puts back when its checks rise."""
        return self.weight > 0 and (self.status == "DOWN" or self.status.startswith("DOWN "))

    @property
    def healthy(self) -> bool:
        """Health checks pass, whatever the admin state (a drained server may be healthy)."""
        return self.status in ("UP", "DRAIN") or self.status.startswith("UP ")


def _int(value: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def parse_stat(text: str) -> dict[tuple[str, str], Server]:
    """Servers by (backend, server) from `show stat` CSV; frontends and backend rows skipped."""
    lines = text.strip().splitlines()
    if not lines or not lines[0].startswith("# "):
        raise ValueError(f"not a show stat answer: {text.strip()[:120]!r}")
    reader = csv.DictReader(io.StringIO("\n".join([lines[0][2:], *lines[1:]])))
    found = {}
    for row in reader:
        if row.get("svname") in ("FRONTEND", "BACKEND") or not row.get("pxname"):
            continue
        found[(row["pxname"], row["svname"])] = Server(
            backend=row["pxname"], name=row["svname"], status=row.get("status", ""),
            weight=_int(row.get("weight")), sessions=_int(row.get("scur")), total=_int(row.get("stot")),
            errors=_int(row.get("econ")) + _int(row.get("eresp")), http_5xx=_int(row.get("hrsp_5xx")),
            response_ms=_int(row.get("rtime")),
            responses=sum(_int(row.get(f"hrsp_{k}")) for k in ("1xx", "2xx", "3xx", "4xx", "5xx", "other")))
    return found


# -- maps (maintenance mode: an entry per backend in a map the frontend reads) ------------

def show_map(socket: str, path: str) -> str:
    return runtime(socket, f"show map {path}")


def parse_map(answer: str) -> dict[str, str]:
    """{key: value} from `show map FILE` ("0x55d2... key value" lines); an error answer raises ValueError."""
    entries = {}
    for line in answer.strip().splitlines():
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("0x"):
            raise ValueError(f"not a show map answer: {answer.strip()[:120]!r}")
        entries[parts[1]] = parts[2] if len(parts) > 2 else ""
    return entries


def put_map(socket: str, path: str, key: str, value: str, present: bool) -> str:
    """Set `key` to `value` at run time: `set map` changes an entry, `add map` makes one."""
    verb = "set" if present else "add"
    return runtime(socket, f"{verb} map {path} {key} {value}")


def del_map(socket: str, path: str, key: str) -> str:
    return runtime(socket, f"del map {path} {key}")


def write_map_file(path: str, entries: dict[str, str]) -> str:
    """Write the map file as the runtime holds it (renamed into place), so a reload keeps the state."""
    body = "".join(f"{k} {v}\n" for k, v in sorted(entries.items()))
    return (f"printf %s {shlex.quote(body)} > {shlex.quote(path + '.new')} && "
            f"mv -f {shlex.quote(path + '.new')} {shlex.quote(path)}")
