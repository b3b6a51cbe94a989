"""Secrets for converging an environment, kept out of the repository.

Each inventory says where its secrets come from, in group_vars/all/main.yml:

    roadie_secrets: generated   (local) roadie generates them on first use under
                                the environment's state directory (git-ignored):
                                .roadie/ENV/vault-password (random, 0600) and
                                .roadie/ENV/vault.yml (ansible-vault encrypted)
    roadie_secrets: vault       (staging) the environment's own vault-encrypted
                                group_vars; ROADIE_VAULT_PASSWORD_FILE names the
                                password file, and without it converge refuses
    roadie_secrets: ssm         (production) group_vars look the values up in SSM
                                Parameter Store; roadie passes nothing

Generating secrets for an environment that already has its own would rotate
its database passwords by accident, so only `generated` ever generates.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from roadie.errors import BadInput

# Variable names the roles read (through database_password, catalog_database_password,
# database_patroni_rest_password, loadbalancer_stats_password, ...).
GENERATED = ("vault_catalog_db_password", "vault_replication_password", "vault_database_superuser_password",
             "vault_patroni_rest_password", "vault_loadbalancer_stats_password")


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
    password = password_file.read_bytes().strip()
    vault = VaultLib([("default", VaultSecret(password))])
    plain = vault.decrypt(vars_file.read_bytes()).decode() if vars_file.exists() else ""
    # A secret added to GENERATED later is appended; existing ones are never rotated.
    missing = [name for name in GENERATED if not re.search(rf"^{name}:", plain, re.MULTILINE)]
    if missing:
        plain += "".join(f"{name}: {secrets.token_urlsafe(24).replace('-', 'x').replace('_', 'y')}\n"
                         for name in missing)
        _write_private(vars_file, vault.encrypt(plain.encode()))
    return VaultFiles(password_file, (vars_file,))


SOURCES = ("generated", "vault", "ssm")


def source(inventory_dir: Path) -> str:
    """roadie_secrets from the inventory's group_vars/all/main.yml or all.yml (default: generated)."""
    import yaml

    candidates = [inventory_dir / "group_vars" / "all" / "main.yml", inventory_dir / "group_vars" / "all.yml"]
    all_vars = next((p for p in candidates if p.is_file()), candidates[0])
    doc = yaml.safe_load(all_vars.read_text()) if all_vars.is_file() else None
    value = (doc or {}).get("roadie_secrets", "generated")
    if value not in SOURCES:
        raise BadInput(f"{all_vars}: roadie_secrets is '{value}'; expected one of {', '.join(SOURCES)}.")
    return value


def for_env(state_dir: Path, secrets_source: str = "generated") -> VaultFiles:
    """The vault password and vars files to pass to ansible-playbook for this source."""
    given = os.environ.get("ROADIE_VAULT_PASSWORD_FILE")
    if given and not Path(given).is_file():
        raise BadInput(f"ROADIE_VAULT_PASSWORD_FILE names {given}, which is not a file.")
    if secrets_source == "vault" and not given:
        raise BadInput(f"The {state_dir.name} environment keeps its secrets in ansible-vault files: "
                       "set ROADIE_VAULT_PASSWORD_FILE to the vault password file.")
    if given or secrets_source != "generated":
        return VaultFiles(Path(given) if given else None, ())
    return ensure_local(state_dir)


def read_local(state_dir: Path) -> dict:
    """The decrypted generated secrets (tests and on-call tools that need the DB password)."""
    import yaml
    from ansible.parsing.vault import VaultLib, VaultSecret

    files = ensure_local(state_dir)
    vault = VaultLib([("default", VaultSecret(files.password_file.read_bytes().strip()))])
    return yaml.safe_load(vault.decrypt(files.vars_files[0].read_bytes()))
