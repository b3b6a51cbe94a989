"""Image recipe, inventory parsing, preflight and process identity."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from roadie import inventory, procs
from roadie.local import fleet, image
from roadie.errors import BadInput, OperationFailed

DEB822 = """Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


@pytest.mark.parametrize(("texts", "mirror"), [
    ([DEB822], "http://mirror.example/debian"),
    (["deb http://old.example/debian/ bookworm main\n"], "http://old.example/debian"),
    (["deb [arch=amd64 signed-by=/k.gpg] http://opt.example/debian bookworm main"], "http://opt.example/debian"),
    (["# nothing\n", "deb http://sec.example/debian-security bookworm-security main\n"
      "deb http://second.example/debian bookworm main\n"], "http://second.example/debian"),
])
def test_mirror_from_sources(texts, mirror):
    assert image.mirror_from_sources(texts) == mirror


def test_no_mirror_is_a_clear_failure():
    with pytest.raises(OperationFailed, match="No Debian mirror"):
        image.mirror_from_sources(["deb http://x.example/debian trixie main"])


def test_recipe_id_changes_with_the_recipe_only():
    a = image.recipe("http://m.example/debian")
    assert image.recipe_id(a) == image.recipe_id(dict(a))
    assert image.recipe_id(a) != image.recipe_id({**a, "packages": [*a["packages"], "curl"]})
    assert image.recipe_id(a) != image.recipe_id({**a, "mirror": "http://n.example/debian"})


def test_debootstrap_line():
    r = image.recipe("http://m.example/debian")
    argv = image.debootstrap_argv(r, image.Path("/t"))
    assert argv[:2] == ["debootstrap", "--variant=minbase"]
    assert argv[-3:] == ["bookworm", "/t", "http://m.example/debian"]
    assert set(argv[2].removeprefix("--include=").split(",")) >= {"systemd", "openssh-server", "python3"}


def test_parse_walks_nested_groups():
    data = {
        "_meta": {"hostvars": {"db-1": {"ansible_host": "198.18.0.15"}, "lb-1": {}}},
        "all": {"children": ["ungrouped", "database", "loadbalancer"]},
        "database": {"children": ["database_primary"]},
        "database_primary": {"hosts": ["db-1"]},
        "loadbalancer": {"hosts": ["lb-1"]},
    }
    inv = inventory.parse("x", data)
    assert inv.hosts["db-1"].groups == ("database", "database_primary")
    assert inv.hosts["db-1"].address == "198.18.0.15"
    assert inv.hosts["lb-1"].address == "lb-1"
    assert [h.name for h in inv.select(["database"])] == ["db-1"]
    with pytest.raises(BadInput, match="neither a host nor a group"):
        inv.select(["web"])


def test_parse_unwraps_unsafe_values():
    data = {"_meta": {"hostvars": {"i-1": {"ansible_host": {"__ansible_unsafe": "10.0.1.5"},
                                           "tags": {"roadie:role": {"__ansible_unsafe": "catalog"}}}}},
            "all": {"children": ["catalog"]}, "catalog": {"hosts": ["i-1"]}}
    host = inventory.parse("x", data).hosts["i-1"]
    assert host.address == "10.0.1.5"
    assert host.vars["tags"] == {"roadie:role": "catalog"}


def test_load_local_inventory_groups():
    inv = inventory.load("local")
    assert [h.name for h in inv.group("catalog")] == ["catalog-1", "catalog-2"]
    assert [h.name for h in inv.group("database_replica")] == ["db-2", "db-3"]
    assert inv.hosts["lb-1"].address == "198.18.0.10"


def test_unknown_environment_is_bad_input():
    with pytest.raises(BadInput, match="Unknown environment 'nowhere'"):
        inventory.load("nowhere")


@pytest.mark.parametrize(("euid", "missing", "message"), [
    (1000, set(), "needs root"),
    (0, {"systemd-nspawn"}, "Missing Debian packages systemd-container"),
    (0, {"debootstrap", "apt-cacher-ng"}, "Missing Debian packages apt-cacher-ng, debootstrap"),
])
def test_preflight(monkeypatch, euid, missing, message):
    monkeypatch.setattr(fleet.os, "geteuid", lambda: euid)
    monkeypatch.setattr(fleet.shutil, "which", lambda tool: None if tool in missing else f"/usr/bin/{tool}")
    with pytest.raises(BadInput, match=message):
        fleet.preflight()


def test_process_identity_needs_the_marker():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "marker-xyz"])
    try:
        deadline = time.monotonic() + 5  # /proc may show the pre-exec command line for a moment
        while not procs.alive(child.pid, "marker-xyz") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert procs.alive(child.pid, "marker-xyz")
        assert not procs.alive(child.pid, "some-other-marker")
        assert procs.alive(child.pid, "marker-xyz\0")  # an exact last argument
        assert not procs.alive(child.pid, "marker-xy\0")
        assert child.pid in procs.find("marker-xyz")
        procs.stop([(child.pid, "marker-xyz")], timeout=5)
        child.wait(timeout=5)
        assert not procs.alive(child.pid, "marker-xyz")
    finally:
        child.kill()


def test_a_zombie_is_not_alive():
    child = subprocess.Popen([sys.executable, "-c", "pass", "zombie-marker"])
    deadline = time.monotonic() + 5
    while procs.cmdline(child.pid) is not None and time.monotonic() < deadline:
        time.sleep(0.05)  # exited but not yet waited for: a zombie
    assert not procs.alive(child.pid, "zombie-marker")
    child.wait()


def test_a_local_fleet_without_moto_is_refused_before_anything_is_made(monkeypatch):
    import importlib.util

    from roadie.errors import BadInput
    from roadie.local import helpers

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "moto" else real(name, *a))
    with pytest.raises(BadInput, match=r"pip install 'roadie\[local\]'"):
        helpers.require_moto()
