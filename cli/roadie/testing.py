"""Fakes for testing what runs on roadie: a transport, a balancer, a clock and the deploys table.

roadie's own unit tests use them, and so can a user testing a task of their own
(as `fabric.testing` serves Fabric's users): no host, no HAProxy, no DynamoDB,
no real waits. Each fake keeps the state the real thing would (a host's
`current` link, a server's weight, a lock's item) and records what it was asked,
in order, so a test asserts the effect and the calls.

- `FakeTransport`: hosts with a current and previous release; versions whose
  health check fails, dead hosts, a step failing or a host that stops answering
  at a step (`Fault`), an `on_step` hook. `run`/`put`/`run_each`/`stop`/`close`.
- `FakeBalancer`: servers with a state, a weight and sessions; peers coming back
  UP after some reads; `servers`/`drain`/`ready`/`weight`/`drain_seconds`,
  `maintenance`/`set_maintenance`, `names`.
- `FakeClock`: time that moves only when something sleeps on it.
- `FakeDeploysTable`: the DynamoDB calls the lock, the journal and the audit log
  make, with DynamoDB's conditional-write failures.
- `engine_deps`: the deploy engine's Deps over these fakes, for a scenario.

No test runner is imported (use it from pytest, unittest or a script), and only
roadie's lowest layers are: the engine is imported by `engine_deps` when called.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import threading
import types
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple

from roadie.commands.haproxy import Server
from roadie.errors import HostUnreachable, OperationFailed
from roadie.events import Event
from roadie.inventory import Host
from roadie.model import Service

# The steps a deploy runs on a host, by the short name a test writes, and the `what` the engine passes to the
# transport for each (the engine's words: tests/unit/test_testing_kit.py checks the two agree).
STEPS = {
    "facts": "reading the release state",
    "put": "put",
    "stage": "unpacking",
    "cleanup": "cleaning up a failed stage",
    "migrate": "migrating the database",
    "switch": "switching current",
    "restart": "restarting",
    "health": "health check",
    "previous": "restoring previous",
    "prune": "pruning old releases",
}
SHORT = {what: short for short, what in STEPS.items()}


def what_of(step: str) -> str:
    """The transport's `what` for a short step name ("switch"); any other text is taken as a `what` already."""
    return STEPS.get(step, step)


def step_of(what: str) -> str:
    """The short name of a `what` ("switching current" -> "switch"); a `what` roadie does not name stays as is."""
    return SHORT.get(what, what)


def _name(host: Host | str) -> str:
    return host if isinstance(host, str) else host.name


# -- the service and its hosts ----------------------------------------------------------------------------------


def service(name: str = "catalog", **changes: Any) -> Service:
    """A service of the model for tests: HTTP on 8080, /healthz and /version, behind the balancer as /api on its
    own backend, no drain wait. `balancer=None`: a service behind no balancer."""
    base = {"name": name, "group": name, "port": 8080, "health_path": "/healthz", "version_path": "/version",
            "version_header": "X-Roadie-Version", "balancer": {"route_prefix": "/api", "backend": name},
            "min_healthy": 1, "drain_timeout": 0, "migrations": False}
    return Service(**{**base, **changes})


def names(count: int, prefix: str = "catalog") -> list[str]:
    """["catalog-1", ..., "catalog-COUNT"]."""
    return [f"{prefix}-{i}" for i in range(1, count + 1)]


def tier(hosts: Iterable[str], group: str = "catalog") -> dict[str, Host]:
    """Inventory hosts by name, in order, each in `group`, on documentation addresses (198.18.0.10 on)."""
    return {n: Host(n, f"198.18.0.{i + 10}", (group,)) for i, n in enumerate(hosts)}


# -- the transport ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """A step that fails on a host.

    `host` None: every host; `step` a short step name (STEPS) or a `what`, None: every step; `version`: only
    while the host's current release is this one. `unreachable`: the host does not answer (HostUnreachable, as
    a dead link or a command past its bound) instead of answering with an error (OperationFailed). `lasting`:
    once it has fired, every later call to the host fails the same way; a host that stops answering stays
    silent (lasting defaults to `unreachable`).
    """

    host: str | None = None
    step: str | None = None
    version: str | None = None
    unreachable: bool = False
    lasting: bool | None = None
    message: str = ""

    @property
    def stays(self) -> bool:
        return self.unreachable if self.lasting is None else self.lasting

    def matches(self, host: str, what: str, current: str | None) -> bool:
        return ((self.host is None or self.host == host) and (self.step is None or what_of(self.step) == what)
                and (self.version is None or self.version == current))

    def error(self, host: str, what: str, timeout: float | None) -> OperationFailed:
        if self.unreachable:
            bound = f"{timeout:.0f} s" if timeout is not None else "its bound"
            return HostUnreachable(f"{host}: {what} did not finish within {bound} "
                                   f"({self.message or 'the host stopped answering'})")
        return OperationFailed(f"{host}: {what} failed: {self.message or 'injected fault'}")


class Call(NamedTuple):
    host: str
    what: str
    command: str
    timeout: float | None


_SWITCH = re.compile(r"ln -sfn releases/(\S+) current\.new")
_PREVIOUS = re.compile(r"ln -sfn releases/(\S+) previous\.new")
_UNPACK = re.compile(r"mkdir -p \S*/releases/([^/\s]+)\.unpacking")
_HEALTH = re.compile(r"got\.get\('version'\) == '([^']*)'")


def _health_version(command: str) -> str | None:
    """The version a health check command waits for (commands.release_host.wait_healthy), if it is one."""
    try:
        inner = shlex.split(command)[-1]  # runuser -u SVC -- sh -c INNER
        script = shlex.split(inner)[-1]  # ... exec python3 -c SCRIPT
    except (ValueError, IndexError):
        return None
    m = _HEALTH.search(script)
    return m.group(1) if m else None


@dataclass
class Result:
    """One host's end of a `run_each`: the fields of the Transport protocol's Result (roadie.transport)."""

    host: str
    exit: int | None  # None: no answer (dead, past its bound, stopped)
    stdout: str = ""
    stderr: str = ""
    error: str | None = None  # why there is no exit status


class FakeTransport:
    """Hosts as the deploy engine sees them through a transport, each with a current and a previous release.

    What a step does is read from its `what` and its command, as on a real host:
    `switching current` moves `current` (the old one becomes `previous`), `restoring
    previous` sets `previous`, `unpacking` adds a release, `reading the release
    state` answers the facts line, `health check` fails for a version in `bad` or a
    host not running the version the check waits for. Other steps answer "" or what
    `answers` gives for their `what` (text, or a function of host name and command).

    Faults: `dead` hosts answer every call with an error (connection refused);
    `faults` fail given steps (see Fault); `on_step(host, what)` is called before
    each step and may raise, or set a stop request. Every call is recorded:
    `calls` [(host, what)], `log` [Call], and each `run`'s bound in `timeouts`
    [(what, timeout)] (an upload, `put`, has none).
    """

    kind = "fake"
    streams = True  # run_each gives on_line each host's lines (all of them when its command ends)

    def __init__(self, hosts: Iterable[Host | str], version: str | None = "1.0.0", previous: str | None = "0.9.0",
                 *, current: dict[str, str | None] | None = None, releases: Iterable[str] = (),
                 bad: Iterable[str] = (), dead: Iterable[str] = (), faults: Iterable[Fault] = (),
                 on_step: Callable[[str, str], None] | None = None, active: dict[str, str] | None = None,
                 disk_free: int | dict[str, int] = 10**12,
                 answers: dict[str, str | Callable[[str, str], str]] | None = None):
        self.hosts = [_name(h) for h in hosts]
        strays = set(current or {}) | set(active or {}) | (set(disk_free) if isinstance(disk_free, dict) else set())
        if strays - set(self.hosts):
            raise ValueError(f"FakeTransport: {', '.join(sorted(strays - set(self.hosts)))} not among its hosts")
        self.current: dict[str, str | None] = {n: version for n in self.hosts} | dict(current or {})
        self.previous: dict[str, str | None] = {n: previous for n in self.hosts}
        self.releases: dict[str, set[str]] = {
            n: {v for v in (self.current[n], self.previous[n], *releases) if v} for n in self.hosts}
        self.active = {n: "active" for n in self.hosts} | dict(active or {})
        self.disk_free = (dict(disk_free) if isinstance(disk_free, dict) else {n: disk_free for n in self.hosts})
        self.bad, self.dead = set(bad), set(dead)
        self.faults = list(faults)
        self.on_step = on_step
        self.answers = dict(answers or {})
        self.calls: list[tuple[str, str]] = []
        self.timeouts: list[tuple[str, float | None]] = []
        self.log: list[Call] = []
        self.silent: dict[str, Fault] = {}  # hosts a lasting fault took down, and the fault they fail by now
        self.closed = False
        self._stopping = threading.Event()
        self.lock = threading.Lock()

    # -- what the transport offers ----------------------------------------------------------------------------

    def run(self, host: Host | str, command: str, what: str, timeout: float | None = None) -> str:
        name = _name(host)
        self._record(name, what, command, timeout)
        self._check(name, what, timeout)
        return self._do(name, command, what)

    def put(self, host: Host | str, local: Path | str, remote: str) -> None:
        name = _name(host)
        self._record(name, "put", f"put {local} {remote}", None, bounded=False)  # an upload has no step bound
        self._check(name, "put", None)

    def run_each(self, hosts: Iterable[Host | str], command: str, what: str, timeout: float | None = None,
                 on_line: Callable[[str, str], None] | None = None, *, follow: bool = False) -> dict[str, Result]:
        """`command` on every host (one after the other, in order): each host's Result, as Fabric's GroupResult.

        A host that answered with an error has exit 1 and the error as stderr; a dead host, or one that does not
        answer, exit None and the error; hosts not yet asked when `stop()` was called, exit None, "stopped".
        `on_line(host, line)` gets each line of a host's stdout. `follow` runs the command once, as any other."""
        self._stopping.clear()
        out: dict[str, Result] = {}
        for host in hosts:
            name = _name(host)
            if self._stopping.is_set():
                out[name] = Result(name, None, error="stopped")
                continue
            try:
                stdout = self.run(host, command, what, timeout)
            except OperationFailed as exc:
                silent = isinstance(exc, HostUnreachable) or name in self.dead
                out[name] = Result(name, None, error=exc.message) if silent else Result(name, 1, stderr=exc.message)
                continue
            out[name] = Result(name, 0, stdout)
            if on_line:
                for line in stdout.splitlines():
                    on_line(name, line)
        return out

    def stop(self) -> None:
        """The run_each in progress asks no further host (their Results say "stopped")."""
        self._stopping.set()

    def close(self) -> None:
        self.closed = True

    # -- for assertions ---------------------------------------------------------------------------------------

    def steps(self, host: str) -> list[str]:
        """The steps asked of `host`, in order, by short name (switch, restart, health, ...)."""
        with self.lock:
            return [step_of(w) for h, w in self.calls if h == host]

    def commands(self, host: str, step: str | None = None) -> list[str]:
        """The command lines run on `host` (of one step, if given), in order."""
        with self.lock:
            return [c.command for c in self.log if c.host == host and (step is None or c.what == what_of(step))]

    # -- inside -----------------------------------------------------------------------------------------------

    def _record(self, name: str, what: str, command: str, timeout: float | None, bounded: bool = True) -> None:
        if name not in self.current:
            raise LookupError(f"{name} is not a host of this FakeTransport (it has {', '.join(self.hosts)})")
        with self.lock:
            self.calls.append((name, what))
            if bounded:
                self.timeouts.append((what, timeout))
            self.log.append(Call(name, what, command, timeout))

    def _check(self, name: str, what: str, timeout: float | None) -> None:
        if self.on_step:
            self.on_step(name, what)
        with self.lock:
            if name in self.silent:
                raise self.silent[name].error(name, what, timeout)
            if name in self.dead:
                raise OperationFailed(f"{name}: {what} failed: connection refused")
            for fault in self.faults:
                if fault.matches(name, what, self.current[name]):
                    if fault.stays:
                        self.silent[name] = fault
                    raise fault.error(name, what, timeout)

    def _do(self, name: str, command: str, what: str) -> str:
        if what in self.answers:  # outside the lock: an answer may ask the fake again
            answer = self.answers[what]
            return answer(name, command) if callable(answer) else answer
        with self.lock:
            if what == STEPS["facts"]:
                return json.dumps({"current": self.current[name], "previous": self.previous[name],
                                   "releases": sorted(self.releases[name]), "active": self.active[name], "pid": 1,
                                   "disk_free": self.disk_free.get(name, 10**12)}) + "\n"
            if what == STEPS["switch"] and (m := _SWITCH.search(command)):
                if self.current[name] != m.group(1):
                    self.previous[name] = self.current[name]
                self.current[name] = m.group(1)
            elif what == STEPS["previous"]:
                m = _PREVIOUS.search(command)
                self.previous[name] = m.group(1) if m else None  # `rm -f .../previous`: none
            elif what == STEPS["stage"] and (m := _UNPACK.search(command)):
                self.releases[name].add(m.group(1))
            elif what == STEPS["health"]:
                running, expected = self.current[name], _health_version(command)
                if running in self.bad:
                    raise OperationFailed(f"{name}: health check failed: not healthy after 60 s: HTTP 500")
                if expected is not None and expected != running:
                    raise OperationFailed(f"{name}: health check failed: version {running}, not {expected}")
            return ""


# -- the balancer -----------------------------------------------------------------------------------------------


class Weights(dict):
    """Each server's weight (a dict: `lb.weight["catalog-1"]`), and the Balancer's `weight(backend, server, weight)`
    method when called: the fake balancer's per-server weights and its weight method share a name, as the
    engine's tests have always read `lb.weight` as the weights."""

    def __init__(self, balancer: FakeBalancer, weights: dict[str, int]):
        super().__init__(weights)
        self._balancer = balancer

    def __call__(self, backend: str, server: str, weight: int | str) -> None:
        self._balancer.set_weight(backend, server, weight)


class FakeBalancer:
    """A backend's servers as HAProxy's runtime API shows them, by name.

    `state` is each server's health-check state (UP, DOWN, MAINT, "DOWN 1/2"...),
    `weight` its weight (0: drained: its status reads DRAIN), `sessions` its open
    sessions. A server in `returning` is a peer coming back by itself: DOWN, then
    "DOWN 1/2" one read before UP, UP on its Nth read of `servers`. `drain` sets the
    weight to 0; `ready` gives back the weight it had (1 if none). Maintenance mode
    is {backend: retry_after}. Every change is recorded in `calls` as (server or
    backend, action); reads of `servers` are counted in `reads`.
    """

    kind = "fake"

    def __init__(self, servers: Iterable[str], down: Iterable[str] = (), *, states: dict[str, str] | None = None,
                 weights: dict[str, int] | None = None, sessions: dict[str, int] | None = None,
                 returning: dict[str, int] | None = None, drain_seconds: int = 0, backend: str | None = None,
                 maintenance: dict[str, int] | None = None, lbs: Iterable[str] = ("lb-1",)):
        servers = list(servers)
        down = set(down)
        strays = {n for given in (down, states, weights, sessions, returning) for n in (given or ())} - set(servers)
        if strays:
            raise ValueError(f"FakeBalancer: {', '.join(sorted(strays))} not among its servers")
        self.state = {n: "DOWN" if n in down else "UP" for n in servers} | dict(states or {})
        self.weight = Weights(self, {n: 1 for n in servers} | dict(weights or {}))
        self.sessions = {n: 0 for n in servers} | dict(sessions or {})
        self.returning = dict(returning or {})
        for n in self.returning:
            self.state[n] = "DOWN"
        self.backend = backend  # None: any backend name is this one
        self.names = list(lbs)  # the balancer hosts it stands for, for reports (the Balancer protocol's `names`)
        self.in_maintenance: dict[str, int] = dict(maintenance or {})
        self._drain_seconds = drain_seconds
        self._enabled = {n: w or 1 for n, w in self.weight.items()}
        self.calls: list[tuple[str, str]] = []
        self.reads = 0
        self.lock = threading.RLock()

    def _backend(self, backend: str) -> None:
        if self.backend is not None and backend != self.backend:
            raise OperationFailed(f"the fake balancer has no backend '{backend}' (it has '{self.backend}')")

    def _server(self, backend: str, server: str) -> None:
        self._backend(backend)
        if server not in self.state:
            raise OperationFailed(f"the fake balancer: {backend}/{server}: No such server.")

    def servers(self, backend: str) -> dict[str, Server]:
        with self.lock:
            self._backend(backend)
            self.reads += 1
            for n in list(self.returning):
                self.returning[n] -= 1
                left = self.returning[n]
                self.state[n] = "UP" if left <= 0 else "DOWN 1/2" if left == 1 else "DOWN"
                if left <= 0:
                    del self.returning[n]
            return {n: Server(backend, n, self.state[n] if self.weight[n] else "DRAIN", self.weight[n],
                              self.sessions[n], 0, 0, 0, 0) for n in self.state}

    def drain(self, backend: str, server: str) -> None:
        with self.lock:
            self._server(backend, server)
            self.calls.append((server, "drain"))
            self.weight[server] = 0

    def ready(self, backend: str, server: str) -> None:
        with self.lock:
            self._server(backend, server)
            self.calls.append((server, "ready"))
            self.weight[server] = self._enabled[server]

    def set_weight(self, backend: str, server: str, weight: int | str) -> None:
        """What `weight(backend, server, weight)` does (see Weights)."""
        with self.lock:
            self._server(backend, server)
            value = int(str(weight).rstrip("%"))
            self.calls.append((server, f"weight {value}"))
            self.weight[server] = value
            if value:
                self._enabled[server] = value

    def drain_seconds(self, backend: str) -> int:
        self._backend(backend)
        return self._drain_seconds

    def maintenance(self) -> dict[str, int]:
        """{backend: retry_after} of the backends in maintenance."""
        with self.lock:
            return dict(self.in_maintenance)

    def set_maintenance(self, backend: str, retry_after: int | None) -> None:
        """Maintenance on (answering 503 with Retry-After `retry_after` s) or off (None)."""
        with self.lock:
            self.calls.append((backend, "maintenance off" if retry_after is None else f"maintenance {retry_after}"))
            if retry_after is None:
                self.in_maintenance.pop(backend, None)
            else:
                self.in_maintenance[backend] = int(retry_after)

    def actions(self, server: str) -> list[str]:
        """What was done to `server`, in order (drain, ready, weight N)."""
        with self.lock:
            return [a for s, a in self.calls if s == server]


# -- the clock --------------------------------------------------------------------------------------------------


class FakeClock:
    """Time that passes only when something sleeps on it (or `advance` is called).

    Callable, as `time.time` is (the lock takes `clock=`); `sleep` goes where code
    takes a sleep function (the engine's `Deps.sleep`). Code that reads
    `time.monotonic()` itself waits on real time: swap `module` in for its `time`
    (the deploy engine's deadlines, for one: `monkeypatch.setattr(engine, "time",
    clock.module)`), and its waits take no real time at all.
    """

    def __init__(self, start: float = 1_800_000_000.0):
        self.now = float(start)
        self.slept: list[float] = []
        self._lock = threading.Lock()
        self.module = types.SimpleNamespace(time=self.time, monotonic=self.monotonic, perf_counter=self.monotonic,
                                            sleep=self.sleep)

    def __call__(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds

    @property
    def waited(self) -> float:
        """Seconds slept on this clock in all."""
        return sum(self.slept)


# -- the deploys table ------------------------------------------------------------------------------------------


def _client_error(code: str, message: str, operation: str) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": 400}}, operation)


def _typed(value: dict) -> tuple[str, Any]:
    """A DynamoDB attribute value ({"S": "x"}, {"N": "1.5"}) as (type, comparable value)."""
    (kind, raw), = value.items()
    return kind, Decimal(raw) if kind == "N" else raw


_COMPARE = {"=": lambda a, b: a == b, "<>": lambda a, b: a != b, "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
_CLAUSE = re.compile(r"(?P<fn>attribute_not_exists|attribute_exists)\((?P<attr>\w+)\)"
                     r"|begins_with\((?P<battr>\w+), *(?P<bval>:\w+)\)"
                     r"|(?P<left>\w+) *(?P<op><>|<=|>=|=|<|>) *(?P<right>:\w+)")


class FakeDeploysTable:
    """The deploys table as an in-memory stand-in for the boto3 DynamoDB client, for the calls roadie makes.

    get_item; put_item, update_item (SET a = :v, ...) and delete_item with a
    ConditionExpression; batch_write_item (boto3's BatchWriter: 25 requests a
    call); get_paginator("query") with KeyConditionExpression `pk = :pk [AND sk OP
    :v]`, FilterExpression, ScanIndexForward and PaginationConfig (MaxItems,
    PageSize). Conditions are clauses joined by AND/OR: attribute_exists(a),
    attribute_not_exists(a), begins_with(a, :v), `a OP :v` (= <> < <= > >=). A
    failed condition raises botocore's ClientError ConditionalCheckFailedException,
    another table name ResourceNotFoundException, an expression outside that
    grammar NotImplementedError (so a changed expression is not silently passed).
    `fail(operation, code)` makes the next call(s) of an operation raise that
    error (a throttle, a 5xx). Items are keyed by (pk, sk) and copied in and out.
    """

    def __init__(self, name: str = "roadie-test-deploys"):
        self.name = name
        self.items: dict[tuple[str, str], dict] = {}
        self.calls: list[str] = []  # operation names, in order (PutItem, UpdateItem, ...)
        self._failing: dict[str, list[str]] = {}
        self._lock = threading.RLock()

    # -- errors -----------------------------------------------------------------------------------------------

    def fail(self, operation: str, code: str = "ProvisionedThroughputExceededException", times: int = 1) -> None:
        """The next `times` calls of `operation` (PutItem, UpdateItem, ...) raise ClientError `code`."""
        with self._lock:
            self._failing.setdefault(operation, []).extend([code] * times)

    def _enter(self, operation: str, table: str) -> None:
        with self._lock:
            self.calls.append(operation)
            failing = self._failing.get(operation)
            if failing:
                raise _client_error(failing.pop(0), f"injected by FakeDeploysTable.fail({operation!r})", operation)
        if table != self.name:
            raise _client_error("ResourceNotFoundException", f"Requested resource not found: {table}", operation)

    # -- expressions ------------------------------------------------------------------------------------------

    @staticmethod
    def _value(values: dict | None, ref: str, operation: str) -> tuple[str, Any]:
        if not values or ref not in values:
            raise _client_error("ValidationException", f"An expression attribute value used in expression is not "
                                f"defined; attribute value: {ref}", operation)
        return _typed(values[ref])

    def _holds(self, expression: str, item: dict | None, values: dict | None, operation: str) -> bool:
        item = item or {}
        alternatives = re.split(r"\s+OR\s+", expression.strip())
        return any(all(self._clause(c, item, values, operation, expression) for c in re.split(r"\s+AND\s+", alt))
                   for alt in alternatives)

    def _clause(self, clause: str, item: dict, values: dict | None, operation: str, expression: str) -> bool:
        m = _CLAUSE.fullmatch(clause.strip())
        if not m:
            raise NotImplementedError(f"FakeDeploysTable does not understand {clause!r} in {expression!r}")
        if m["fn"]:
            return (m["attr"] in item) == (m["fn"] == "attribute_exists")
        if m["battr"]:
            kind, want = self._value(values, m["bval"], operation)
            return m["battr"] in item and kind == "S" and _typed(item[m["battr"]])[1].startswith(want)
        kind, want = self._value(values, m["right"], operation)
        if m["left"] not in item:
            return False
        have_kind, have = _typed(item[m["left"]])
        return have_kind == kind and _COMPARE[m["op"]](have, want)

    def _key(self, key: dict, operation: str) -> tuple[str, str]:
        if set(key) != {"pk", "sk"}:
            raise _client_error("ValidationException", "The provided key element does not match the schema",
                                operation)
        return key["pk"]["S"], key["sk"]["S"]

    # -- the client's calls -----------------------------------------------------------------------------------

    def get_item(self, *, TableName: str, Key: dict, ConsistentRead: bool = False) -> dict:
        self._enter("GetItem", TableName)
        with self._lock:
            item = self.items.get(self._key(Key, "GetItem"))
            return {"Item": copy.deepcopy(item)} if item is not None else {}

    def put_item(self, *, TableName: str, Item: dict, ConditionExpression: str | None = None,
                 ExpressionAttributeValues: dict | None = None) -> dict:
        self._enter("PutItem", TableName)
        with self._lock:
            key = self._key({"pk": Item.get("pk"), "sk": Item.get("sk")}, "PutItem")
            if ConditionExpression and not self._holds(ConditionExpression, self.items.get(key),
                                                       ExpressionAttributeValues, "PutItem"):
                raise _client_error("ConditionalCheckFailedException", "The conditional request failed", "PutItem")
            self.items[key] = copy.deepcopy(Item)
        return {}

    def update_item(self, *, TableName: str, Key: dict, UpdateExpression: str,
                    ConditionExpression: str | None = None,
                    ExpressionAttributeValues: dict | None = None) -> dict:
        self._enter("UpdateItem", TableName)
        m = re.fullmatch(r"\s*SET\s+(.+)", UpdateExpression)
        sets = [re.fullmatch(r"\s*(\w+)\s*=\s*(:\w+)\s*", part) for part in m.group(1).split(",")] if m else [None]
        if not all(sets):
            raise NotImplementedError(f"FakeDeploysTable updates only `SET a = :v, ...`, not {UpdateExpression!r}")
        with self._lock:
            key = self._key(Key, "UpdateItem")
            item = self.items.get(key)
            if ConditionExpression and not self._holds(ConditionExpression, item, ExpressionAttributeValues,
                                                       "UpdateItem"):
                raise _client_error("ConditionalCheckFailedException", "The conditional request failed",
                                    "UpdateItem")
            item = copy.deepcopy(item) if item is not None else copy.deepcopy(Key)
            for s in sets:
                self._value(ExpressionAttributeValues, s.group(2), "UpdateItem")
                item[s.group(1)] = copy.deepcopy(ExpressionAttributeValues[s.group(2)])
            self.items[key] = item
        return {}

    def delete_item(self, *, TableName: str, Key: dict, ConditionExpression: str | None = None,
                    ExpressionAttributeValues: dict | None = None) -> dict:
        self._enter("DeleteItem", TableName)
        with self._lock:
            key = self._key(Key, "DeleteItem")
            if ConditionExpression and not self._holds(ConditionExpression, self.items.get(key),
                                                       ExpressionAttributeValues, "DeleteItem"):
                raise _client_error("ConditionalCheckFailedException", "The conditional request failed",
                                    "DeleteItem")
            self.items.pop(key, None)
        return {}

    def batch_write_item(self, *, RequestItems: dict) -> dict:
        (table, requests), = RequestItems.items()
        self._enter("BatchWriteItem", table)
        if not 1 <= len(requests) <= 25:
            raise _client_error("ValidationException", "Member must have length less than or equal to 25",
                                "BatchWriteItem")
        with self._lock:
            for request in requests:
                if "PutRequest" in request:
                    item = request["PutRequest"]["Item"]
                    self.items[self._key({"pk": item["pk"], "sk": item["sk"]}, "BatchWriteItem")] = copy.deepcopy(item)
                else:
                    self.items.pop(self._key(request["DeleteRequest"]["Key"], "BatchWriteItem"), None)
        return {"UnprocessedItems": {}}

    def get_paginator(self, operation: str) -> _QueryPaginator:
        if operation != "query":
            raise NotImplementedError(f"FakeDeploysTable pages only 'query', not {operation!r}")
        return _QueryPaginator(self)

    def _query(self, table: str, condition: str, values: dict, forward: bool, filter_: str | None,
               max_items: int | None, page_size: int | None) -> Iterator[dict]:
        self._enter("Query", table)
        m = re.fullmatch(r"\s*pk\s*=\s*(:\w+)(?:\s+AND\s+(.+))?", condition)
        if not m:
            raise NotImplementedError(f"FakeDeploysTable queries by `pk = :v [AND sk ...]`, not {condition!r}")
        _, pk = self._value(values, m.group(1), "Query")
        with self._lock:
            found = sorted((copy.deepcopy(i) for (p, _), i in self.items.items() if p == pk),
                           key=lambda i: i["sk"]["S"], reverse=not forward)
        if m.group(2):
            found = [i for i in found if self._holds(m.group(2), i, values, "Query")]
        size = page_size or max(1, len(found))
        given = 0
        for start in range(0, max(1, len(found)), size):
            page = found[start:start + size]
            items = [i for i in page if not filter_ or self._holds(filter_, i, values, "Query")]
            if max_items is not None:
                items = items[:max_items - given]
            given += len(items)
            yield {"Items": items, "Count": len(items), "ScannedCount": len(page)}
            if max_items is not None and given >= max_items:
                return


class _QueryPaginator:
    def __init__(self, table: FakeDeploysTable):
        self.table = table

    def paginate(self, *, TableName: str, KeyConditionExpression: str,
                 ExpressionAttributeValues: dict,
                 ConsistentRead: bool = False, ScanIndexForward: bool = True,
                 FilterExpression: str | None = None, PaginationConfig: dict | None = None
                 ) -> Iterator[dict]:
        config = PaginationConfig or {}
        return self.table._query(TableName, KeyConditionExpression, ExpressionAttributeValues, ScanIndexForward,
                                 FilterExpression, config.get("MaxItems"), config.get("PageSize"))


# -- the engine over the fakes ----------------------------------------------------------------------------------


class Rig(NamedTuple):
    """The deploy engine's Deps over fakes, and the fakes for the test to arrange and read (it unpacks as
    `d, transport, balancer, events = engine_deps(...)`)."""

    deps: Any  # roadie.deploy.engine.Deps
    transport: FakeTransport
    balancer: FakeBalancer | None
    events: list[Event]

    def kinds(self) -> list[str]:
        return [str(e.kind) for e in self.events]


def engine_deps(hosts: Iterable[str] | int = 4, *, svc: Service | None = None,
                transport: FakeTransport | None = None, balancer: FakeBalancer | None | bool = True,
                clock: FakeClock | None = None, health_seconds: int = 60, **hosts_are: Any) -> Rig:
    """The engine's Deps for `hosts` (names, or how many catalog hosts) of `svc` (service()).

    Over `transport`, or a FakeTransport of `hosts` made with `hosts_are` (bad=, dead=, faults=, on_step=,
    current=, ...: every host on 1.0.0, previous 0.9.0, by default), and `balancer`, or a FakeBalancer with
    every server UP (False: no balancer, a bring-up). Events are collected in the rig; the engine sleeps on
    `clock` and reads its deadlines from it (a FakeClock of its own if none is given).
    """
    from roadie.deploy import engine  # a higher layer: imported only by the test that asks for it

    svc = svc or service()
    hosts = names(hosts, svc.group) if isinstance(hosts, int) else list(hosts)
    if transport is None:
        transport = FakeTransport(hosts, **hosts_are)
    elif hosts_are:
        raise TypeError(f"engine_deps: {', '.join(hosts_are)} given with a transport of the test's own")
    if balancer is True:
        balancer = FakeBalancer(hosts)
    events: list[Event] = []
    clock = clock or FakeClock()
    d = engine.Deps(service=svc, hosts=tier(hosts, svc.group), transport=transport, balancer=balancer or None,
                    emit=events.append, sleep=clock.sleep, clock=clock.monotonic, health_seconds=health_seconds)
    return Rig(d, transport, balancer or None, events)
