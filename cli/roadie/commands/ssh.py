"""ssh and ssh-keygen command lines: roadie's own key, pinned host keys, no TOFU."""

from __future__ import annotations

from pathlib import Path


def keygen_argv(path: Path, comment: str) -> list[str]:
    return ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)]


def options(key: Path, known_hosts: Path, *, connect_timeout: int = 5) -> list[str]:
    return [
        "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
        "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
        "-o", f"ConnectTimeout={connect_timeout}", "-o", "LogLevel=ERROR",
    ]


def ssh_argv(address: str, command: str, key: Path, known_hosts: Path, user: str = "root",
             *, connect_timeout: int = 5) -> list[str]:
    return ["ssh", *options(key, known_hosts, connect_timeout=connect_timeout), f"{user}@{address}", command]


def known_hosts_line(names: list[str], public_key: str) -> str:
    """One known_hosts entry; public_key is the '.pub' text (type, key, comment)."""
    keytype, key = public_key.split()[:2]
    return f"{','.join(names)} {keytype} {key}"
