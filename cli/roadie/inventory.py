"""The one inventory that Ansible, deploys and on-call tasks all read.

`ansible-inventory --list` resolves static YAML, group_vars and the aws_ec2
plugin alike, so roadie never second-guesses how Ansible sees the hosts.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from roadie import paths
from roadie.errors import BadInput


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    groups: tuple[str, ...]
    vars: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Inventory:
    env: str
    hosts: dict[str, Host]
    group_vars: dict = field(default_factory=dict, compare=False)

    @property
    def env_vars(self) -> dict:
        """Variables every host shares (group_vars/all), as Ansible resolved them."""
        return next(iter(self.hosts.values())).vars if self.hosts else self.group_vars

    def group(self, name: str) -> list[Host]:
        return [h for h in self.hosts.values() if name in h.groups]

    def select(self, names: list[str] | None) -> list[Host]:
        """Hosts or groups by name, in inventory order; an unknown name is bad input."""
        if not names:
            return list(self.hosts.values())
        chosen: dict[str, Host] = {}
        for name in names:
            if name in self.hosts:
                chosen[name] = self.hosts[name]
                continue
            members = self.group(name)
            if not members:
                raise BadInput(f"'{name}' is neither a host nor a group in the {self.env} inventory.")
            for h in members:
                chosen[h.name] = h
        return [h for h in self.hosts.values() if h.name in chosen]


def _plain(value):
    """ansible-core 2.19 writes plugin-sourced values as {"__ansible_unsafe": value}."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return _plain(value["__ansible_unsafe"])
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def parse(env: str, data: dict) -> Inventory:
    """Build an Inventory from `ansible-inventory --list` JSON."""
    data = _plain(data)
    hostvars = data.get("_meta", {}).get("hostvars", {})
    membership: dict[str, list[str]] = {}

    def walk(group: str, seen: tuple[str, ...]) -> None:
        if group in seen:
            return
        node = data.get(group, {})
        for host in node.get("hosts", []):
            membership.setdefault(host, [])
            for g in (*seen, group):
                if g not in ("all",) and g not in membership[host]:
                    membership[host].append(g)
        for child in node.get("children", []):
            walk(child, (*seen, group))

    walk("all", ())
    hosts = {}
    for name in sorted(membership, key=_natural):
        hv = hostvars.get(name, {})
        hosts[name] = Host(name=name, address=str(hv.get("ansible_host", name)),
                           groups=tuple(sorted(membership[name])), vars=hv)
    return Inventory(env=env, hosts=hosts, group_vars=data.get("all", {}).get("vars", {}))


def _natural(name: str):
    head = name.rstrip("0123456789")
    tail = name[len(head):]
    return (head, int(tail) if tail else -1)


def inventory_path(env: str) -> Path:
    path = paths.INVENTORIES / env
    if not path.is_dir():
        known = sorted(p.name for p in paths.INVENTORIES.iterdir() if p.is_dir())
        raise BadInput(f"Unknown environment '{env}': expected one of {', '.join(known)}.")
    return path


def ansible_bin(name: str) -> str:
    """An Ansible executable from roadie's own environment, else from PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def load(env: str) -> Inventory:
    """The environment's inventory, read once per process (one `ansible-inventory` run per command)."""
    return _load(env, inventory_path(env))


@functools.lru_cache(maxsize=8)
def _load(env: str, path: Path) -> Inventory:
    return parse(env, _listed(env, path))


PLUGIN = re.compile(rb"^plugin\s*:", re.MULTILINE)
VARS_DIRS = ("group_vars", "host_vars")


def fingerprint(path: Path, environ: dict | None = None) -> str | None:
    """What `ansible-inventory --list` of a static inventory depends on, hashed; None when it may change by itself.

    That answer costs ~0.5 s of CPU (a third of a small deploy's fixed cost)
    and, for static files, changes only when the files, Ansible's settings
    or Ansible itself do. Not cached: an inventory plugin (aws_ec2 reads the
    cloud) or script (an executable file), whose answer changes with the
    world, and vaulted variables, which `--list` would write out decrypted.
    """
    environ = os.environ if environ is None else environ
    digest = hashlib.sha256(str(path.resolve()).encode())
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        data = file.read_bytes()
        in_vars = any(part in VARS_DIRS for part in file.relative_to(path).parts)
        if b"$ANSIBLE_VAULT" in data or os.access(file, os.X_OK) or (not in_vars and PLUGIN.search(data)):
            return None
        digest.update(b"\0file\0" + str(file.relative_to(path)).encode() + b"\0" + data)
    config = [Path(environ.get("ANSIBLE_CONFIG", "")), Path.cwd() / "ansible.cfg", Path.home() / ".ansible.cfg",
              Path("/etc/ansible/ansible.cfg")]
    for cfg in config:
        if cfg.name and cfg.is_file():
            digest.update(b"\0cfg\0" + str(cfg).encode() + b"\0" + cfg.read_bytes())
    for key in sorted(k for k in environ if k.startswith("ANSIBLE_")):
        digest.update(f"\0env\0{key}={environ[key]}".encode())
    tool = Path(ansible_bin("ansible-inventory"))
    digest.update(f"\0tool\0{tool}\0{tool.stat().st_mtime_ns if tool.exists() else ''}\0{_ansible_version()}".encode())
    return digest.hexdigest()


def _ansible_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("ansible-core")
    except metadata.PackageNotFoundError:
        return ""


def _listed(env: str, path: Path) -> dict:
    """`ansible-inventory --list` of the environment, from the state directory while its fingerprint holds."""
    key = fingerprint(path)
    cache = paths.state_dir(env) / "inventory.json"
    if key is not None:
        try:
            saved = json.loads(cache.read_text())
            if saved.get("fingerprint") == key:
                return saved["list"]
        except (OSError, ValueError, AttributeError):
            pass  # none yet, or unreadable: ask Ansible
    proc = subprocess.run([ansible_bin("ansible-inventory"), "-i", str(path), "--list"],
                          capture_output=True, text=True,
                          env={**os.environ, "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False"})
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["ansible-inventory failed"])[-1]
        raise BadInput(f"Cannot read the {env} inventory: {last}")
    listed = json.loads(proc.stdout)
    if key is not None:
        _save(cache, {"fingerprint": key, "list": listed})
    return listed


def _save(file: Path, doc: dict) -> None:
    """Written whole or not at all (a rename), readable by its owner only; a failure only loses the cache.

    Only beside state the environment already has: a command refused as bad
    input must leave no directory behind (the first `roadie local up` makes it).
    """
    if not file.parent.is_dir():
        return
    try:
        tmp = file.with_name(f".{file.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(doc, out)
        os.replace(tmp, file)
    except OSError:
        pass
