"""Command lines and config for the fleet's helper servers on the bridge address."""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlsplit


def port_of(url: str) -> int:
    return urlsplit(url).port or 80


def aptcache_conf(cache_dir: Path, log_dir: Path, address: str, port: int) -> str:
    # Only the Debian remap: hosts ask for the machine's own mirror, which the
    # backends_debian file beside this config names.
    return "\n".join([
        f"CacheDir: {cache_dir}",
        f"LogDir: {log_dir}",
        "SupportDir: /usr/lib/apt-cacher-ng",
        f"Port: {port}",
        f"BindAddress: {address}",
        "Remap-debrep: file:deb_mirror*.gz /debian ; file:backends_debian",
        "ExThreshold: 4",
        "ForeGround: 1",
        "",
    ])


def aptcache_argv(conf_dir: Path) -> list[str]:
    return ["apt-cacher-ng", "-c", str(conf_dir), "ForeGround=1"]


def moto_argv(address: str, port: int) -> list[str]:
    return [sys.executable, "-m", "moto.server", "-H", address, "-p", str(port)]
