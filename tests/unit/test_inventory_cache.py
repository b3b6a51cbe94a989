"""The inventory's `ansible-inventory --list` kept while what it depends on holds, and only for static files."""

from __future__ import annotations

import subprocess

import pytest

from roadie import inventory, paths

HOSTS = "all:\n  children:\n    catalog:\n      hosts:\n        catalog-1: {ansible_host: 198.18.0.11}\n"


@pytest.fixture
def inv_dir(tmp_path, monkeypatch):
    """A static inventory `lab` and a state directory of its own; counts the ansible-inventory runs."""
    root = tmp_path / "inventories"
    (root / "lab" / "group_vars" / "all").mkdir(parents=True)
    (root / "lab" / "hosts.yml").write_text(HOSTS)
    (root / "lab" / "group_vars" / "all" / "main.yml").write_text("roadie_connection: ssh\n")
    monkeypatch.setattr(paths, "INVENTORIES", root)
    monkeypatch.setenv("ROADIE_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "state" / "lab").mkdir(parents=True)
    runs = []
    real = subprocess.run

    def counted(*args, **kwargs):
        runs.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(inventory.subprocess, "run", counted)
    inventory._load.cache_clear()
    yield root / "lab", runs
    inventory._load.cache_clear()


def _reload():
    inventory._load.cache_clear()  # a new roadie process
    return inventory.load("lab")


def _edit_hosts(path, monkeypatch):
    (path / "hosts.yml").write_text(HOSTS + "        catalog-2: {ansible_host: 198.18.0.12}\n")


def _add_group_vars(path, monkeypatch):
    (path / "group_vars" / "catalog.yml").write_text("catalog_workers: 3\n")


def _set_ansible_env(path, monkeypatch):
    monkeypatch.setenv("ANSIBLE_INVENTORY_ENABLED", "yaml")


def _nothing(path, monkeypatch):
    pass


@pytest.mark.parametrize(("change", "asks_again"), [
    (_nothing, False),
    (_edit_hosts, True),
    (_add_group_vars, True),
    (_set_ansible_env, True),
])
def test_a_second_process_asks_ansible_only_when_the_inventory_changed(inv_dir, monkeypatch, change, asks_again):
    path, runs = inv_dir
    first = _reload()
    assert len(runs) == 1
    assert (paths.state_dir("lab") / "inventory.json").stat().st_mode & 0o077 == 0  # the owner's only
    change(path, monkeypatch)
    second = _reload()
    assert len(runs) == (2 if asks_again else 1)
    if change is _edit_hosts:
        assert [h.name for h in second.group("catalog")] == ["catalog-1", "catalog-2"]
    if change is _add_group_vars:
        assert second.hosts["catalog-1"].vars["catalog_workers"] == 3
    if not asks_again:
        assert second == first and second.hosts["catalog-1"].vars == first.hosts["catalog-1"].vars


def test_a_damaged_cache_is_asked_again_not_believed(inv_dir):
    path, runs = inv_dir
    _reload()
    (paths.state_dir("lab") / "inventory.json").write_text("{not json")
    assert [h.name for h in _reload().group("catalog")] == ["catalog-1"]
    assert len(runs) == 2


def _plugin(path):
    (path / "aws_ec2.yml").write_text("plugin: amazon.aws.aws_ec2\nregions: [us-east-1]\n")


def _script(path):
    script = path / "hosts.py"
    script.write_text("#!/usr/bin/env python3\nprint('{}')\n")
    script.chmod(0o755)


def _vault(path):
    (path / "group_vars" / "all" / "secret.yml").write_text("$ANSIBLE_VAULT;1.1;AES256\n6162\n")


def _plugin_word_in_vars(path):
    (path / "group_vars" / "all" / "plugin.yml").write_text("plugin: not an inventory plugin here\n")


@pytest.mark.parametrize(("make", "cached"), [
    (_plugin, False),  # the cloud's answer changes by itself
    (_script, False),
    (_vault, False),  # --list would write the secret out decrypted
    (_plugin_word_in_vars, True),  # a variable named plugin is still a static file
])
def test_only_static_unvaulted_inventories_are_cached(inv_dir, make, cached):
    path, _ = inv_dir
    make(path)
    assert (inventory.fingerprint(path) is not None) is cached


def test_production_reads_the_cloud_every_time():
    assert inventory.fingerprint(inventory.inventory_path("production")) is None
    assert inventory.fingerprint(inventory.inventory_path("local")) is not None


def test_no_state_directory_is_made_for_the_cache(inv_dir):
    """A command refused before the environment has state (bad input) must leave nothing behind."""
    path, runs = inv_dir
    state = paths.state_dir("lab")
    state.rmdir()
    assert [h.name for h in _reload().group("catalog")] == ["catalog-1"]
    _reload()
    assert not state.exists() and len(runs) == 2  # asked each time, nothing written
