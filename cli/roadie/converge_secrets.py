"""Secrets for converging an environment, kept out of the repository.

Locally (and in any environment without secrets of its own), roadie generates
them on first use under the environment's state directory (git-ignored):

    .roadie/ENV/vault-password   random, mode 0600
    .roadie/ENV/vault.yml        ansible-vault encrypted: vault_catalog_db_password,
                                 vault_replication_password (random)

Staging keeps a committed, vault-encrypted group_vars file and passes its vault
password file in ROADIE_VAULT_PASSWORD_FILE; AWS environments read SSM Parameter
Store from their group_vars instead.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

# Variable names the roles read (through database_password, catalog_database_password, ...).
GENERATED = ("vault_catalog_db_password", "vault_replication_password")


@dataclass(frozen=True)
class VaultFiles:
    password_file: Path | None
    vars_files: tuple[Path, ...]


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def ensure_local(state_dir: Path) -> VaultFiles:
    """The environment's vault password and encrypted vars file, created when missing."""
    from ansible.parsing.vault import VaultLib, VaultSecret

    password_file = state_dir / "vault-password"
    vars_file = state_dir / "vault.yml"
    if not password_file.exists():
        _write_private(password_file, secrets.token_urlsafe(32).encode() + b"\n")
    if not vars_file.exists():
        password = password_file.read_bytes().strip()
        plain = "".join(f"{name}: {secrets.token_urlsafe(24).replace('-', 'x').replace('_', 'y')}\n"
                        for name in GENERATED)
        vault = VaultLib([("default", VaultSecret(password))])
        _write_private(vars_file, vault.encrypt(plain.encode()))
    return VaultFiles(password_file, (vars_file,))


def for_env(state_dir: Path) -> VaultFiles:
    """ROADIE_VAULT_PASSWORD_FILE when set (the environment's own vault files are in its
    inventory); otherwise generated local secrets."""
    given = os.environ.get("ROADIE_VAULT_PASSWORD_FILE")
    if given:
        return VaultFiles(Path(given), ())
    return ensure_local(state_dir)


def read_local(state_dir: Path) -> dict:
    """The decrypted generated secrets (tests and on-call tools that need the DB password)."""
    import yaml
    from ansible.parsing.vault import VaultLib, VaultSecret

    files = ensure_local(state_dir)
    vault = VaultLib([("default", VaultSecret(files.password_file.read_bytes().strip()))])
    return yaml.safe_load(vault.decrypt(files.vars_files[0].read_bytes()))
