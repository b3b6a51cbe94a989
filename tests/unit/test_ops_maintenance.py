"""Maintenance mode: the HAProxy map commands and HAProxy's maintenance methods against a fake load balancer.

The fake answers the runtime API lines the way HAProxy 2.6 does (checked on
lb-1): `show map` lists "0xID key value", `add/set/del map` answer nothing on
success and a sentence on failure.
"""

from __future__ import annotations

import re
import shlex

import pytest

from roadie.balancer.haproxy import HAProxy
from roadie.commands import haproxy as cmd
from roadie.errors import BadInput, OperationFailed
from roadie.inventory import Host
from roadie.ops import maintenance as mt

SOCK, MAP = "/run/haproxy/admin.sock", "/etc/haproxy/maintenance.map"


@pytest.mark.parametrize(("builder", "args", "line"), [
    (cmd.show_map, (SOCK, MAP), f"show map {MAP}"),
    (cmd.put_map, (SOCK, MAP, "catalog", "300", False), f"add map {MAP} catalog 300"),
    (cmd.put_map, (SOCK, MAP, "catalog", "60", True), f"set map {MAP} catalog 60"),
    (cmd.del_map, (SOCK, MAP, "catalog"), f"del map {MAP} catalog"),
])
def test_runtime_lines(builder, args, line):
    assert builder(*args) == f"echo {shlex.quote(line)} | socat -t 10 stdio UNIX-CONNECT:{SOCK}"


@pytest.mark.parametrize(("answer", "expected"), [
    ("", {}), ("\n", {}),
    ("0x55d2b7a1c2e0 catalog 300\n0x55d2b7a1c330 streaming 60\n", {"catalog": "300", "streaming": "60"}),
    ("Unknown map identifier. Please use #<id> or <file>.\n", ValueError),
])
def test_parse_map(answer, expected):
    if expected is ValueError:
        with pytest.raises(ValueError, match="not a show map answer"):
            cmd.parse_map(answer)
    else:
        assert cmd.parse_map(answer) == expected


class FakeLB:
    """The runtime map and the map file of one HAProxy."""

    def __init__(self, entries=None, refuse=False):
        self.runtime = dict(entries or {})
        self.file = dict(entries or {})
        self.refuse = refuse
        self.calls = []

    def run(self, host, command, what):
        self.calls.append(what)
        if command.startswith("printf"):
            body = shlex.split(command)[2]
            self.file = dict(line.split(" ", 1) for line in body.splitlines())
            return ""
        line = shlex.split(command)[1]
        m = re.fullmatch(r"(show|add|set|del) map \S+ ?(\S*) ?(\S*)", line)
        verb, key, value = m.groups()
        if verb == "show":
            return "".join(f"0x{i:012x} {k} {v}\n" for i, (k, v) in enumerate(self.runtime.items()))
        if self.refuse:
            return "Permission denied.\n"
        if verb == "del":
            return "" if self.runtime.pop(key, None) else "Key not found.\n"
        if verb == "set" and key not in self.runtime:
            return "entry not found.\n"
        self.runtime[key] = value
        return ""


def switch(fake, backend, retry_after):
    m = HAProxy(fake, [Host("lb-1", "198.18.0.10", ("loadbalancer",))], SOCK, MAP)
    m.set_maintenance(backend, retry_after)
    return m.maintenance()


@pytest.mark.parametrize(("before", "backend", "retry_after", "after"), [
    ({}, "catalog", 300, {"catalog": 300}),
    ({"streaming": "60"}, "catalog", 120, {"catalog": 120, "streaming": 60}),
    ({"catalog": "300"}, "catalog", 30, {"catalog": 30}),  # set map on an existing entry
    ({"catalog": "300", "streaming": "60"}, "catalog", None, {"streaming": 60}),
    ({}, "catalog", None, {}),  # off when off: nothing sent
])
def test_runtime_and_file_agree_after_a_switch(before, backend, retry_after, after):
    fake = FakeLB(before)
    assert switch(fake, backend, retry_after) == after
    assert {k: int(v) for k, v in fake.file.items()} == after  # a reload would keep the state
    if before.get(backend) is None and retry_after is None:
        assert "changing the maintenance map" not in fake.calls


def test_haproxy_refusing_the_change_is_an_error():
    with pytest.raises(OperationFailed, match="HAProxy said: Permission denied"):
        switch(FakeLB(refuse=True), "catalog", 300)


@pytest.mark.parametrize(("value", "expected"), [("on", True), ("OFF", False), (" off ", False), ("yes", None),
                                                 ("", None)])
def test_parse_switch(value, expected):
    if expected is None:
        with pytest.raises(BadInput, match="'on' or 'off'"):
            mt.parse_switch(value)
    else:
        assert mt.parse_switch(value) is expected
