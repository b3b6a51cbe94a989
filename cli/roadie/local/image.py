"""The cached Debian base image every local host boots from (read-only lower layer).

Built once with debootstrap and keyed by a hash of its recipe, so changing the
recipe rebuilds it and nothing else does. It lives outside the checkout
(`paths.cache_dir()`) so fresh clones on the same machine reuse it.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from roadie import paths
from roadie.errors import OperationFailed

SUITE = "bookworm"
PACKAGES = ("systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "python3-apt",
            "iproute2", "sudo", "ca-certificates")
# Units that would fight Ansible for the apt lock or make no sense in a container.
MASKED_UNITS = ("apt-daily.timer", "apt-daily-upgrade.timer", "apt-daily.service",
                "apt-daily-upgrade.service", "e2scrub_reap.service")
# Bump when the post-install steps below change meaning.
RECIPE_REVISION = 1


def mirror_from_sources(texts: list[str]) -> str:
    """The Debian archive URI from apt sources (deb822 or one-line), skipping security."""
    for text in texts:
        for stanza in text.split("\n\n"):
            fields = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            suites = fields.get("suites", "").split()
            if fields.get("uris") and any(s == SUITE for s in suites):
                return fields["uris"].split()[0].rstrip("/")
        for line in text.splitlines():
            parts = re.sub(r"\[[^\]]*\]", "", line).split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                return parts[1].rstrip("/")
    raise OperationFailed("No Debian mirror for bookworm in the apt sources; roadie builds its image from it.")


def machine_mirror() -> str:
    files = sorted(glob.glob("/etc/apt/sources.list.d/*.sources")) + ["/etc/apt/sources.list"]
    return mirror_from_sources([Path(f).read_text() for f in files if os.path.isfile(f)])


def recipe(mirror: str) -> dict:
    return {"suite": SUITE, "variant": "minbase", "packages": sorted(PACKAGES),
            "masked": sorted(MASKED_UNITS), "mirror": mirror, "revision": RECIPE_REVISION}


def recipe_id(r: dict) -> str:
    return hashlib.sha256(json.dumps(r, sort_keys=True).encode()).hexdigest()[:12]


def debootstrap_argv(r: dict, target: Path) -> list[str]:
    return ["debootstrap", f"--variant={r['variant']}", f"--include={','.join(r['packages'])}",
            r["suite"], str(target), r["mirror"]]


def image_dir(r: dict) -> Path:
    return paths.cache_dir() / "images" / f"{r['suite']}-{recipe_id(r)}"


def ensure(log=print) -> Path:
    """Return the rootfs of the current recipe, building it if absent."""
    r = recipe(machine_mirror())
    root = image_dir(r)
    rootfs = root / "rootfs"
    if (root / "complete").exists():
        return rootfs
    tmp = root.with_name(root.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    log(f"building base image {root.name} (debootstrap, about a minute and a half)")
    started = time.monotonic()
    with open(tmp / "debootstrap.log", "w") as out:
        proc = subprocess.run(debootstrap_argv(r, tmp / "rootfs"), stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise OperationFailed(f"debootstrap failed (exit {proc.returncode}); see {tmp / 'debootstrap.log'}")
    finish(tmp / "rootfs", r)
    (tmp / "recipe.json").write_text(json.dumps(r, indent=2, sort_keys=True))
    (tmp / "complete").write_text(f"{time.monotonic() - started:.1f}\n")
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    for stale in root.parent.glob(f"{SUITE}-*"):
        if stale != root and not stale.name.endswith(".building"):
            shutil.rmtree(stale, ignore_errors=True)
    return rootfs


def finish(rootfs: Path, r: dict) -> None:
    """Make the image host-neutral: each host gets its own name, keys and machine id."""
    for key in rootfs.glob("etc/ssh/ssh_host_*"):
        key.unlink()
    (rootfs / "etc/ssh/sshd_config.d/roadie.conf").write_text(
        "# Host keys are generated per host by roadie, only ed25519.\n"
        "HostKey /etc/ssh/ssh_host_ed25519_key\n")
    (rootfs / "etc/hostname").unlink(missing_ok=True)
    (rootfs / "etc/machine-id").write_text("")
    (rootfs / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    (rootfs / "etc/apt/sources.list").write_text(
        f"deb {r['mirror']} {SUITE} main\ndeb {r['mirror']} {SUITE}-updates main\n")
    system = rootfs / "etc/systemd/system"
    for unit in r["masked"]:
        link = system / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
    (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True)
