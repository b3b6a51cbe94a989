"""Converge secrets: generated ones private, vault-encrypted and stable once made;
environments with their own secrets never get any generated."""

import stat

import pytest

from roadie import paths
from roadie.converge import secrets as converge_secrets
from roadie.errors import BadInput


def test_generated_once_private_and_encrypted(tmp_path, monkeypatch):
    monkeypatch.delenv("ROADIE_VAULT_PASSWORD_FILE", raising=False)
    files = converge_secrets.for_env(tmp_path / "local")
    vault = files.vars_files[0]
    for path in (files.password_file, vault):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert vault.read_bytes().startswith(b"$ANSIBLE_VAULT;1.1;AES256")
    secrets = converge_secrets.read_local(tmp_path / "local")
    assert set(secrets) == set(converge_secrets.GENERATED)
    assert all(len(v) >= 24 and v.isalnum() for v in secrets.values())
    for value in secrets.values():
        assert value.encode() not in vault.read_bytes()
    before = (files.password_file.read_bytes(), vault.read_bytes())
    again = converge_secrets.for_env(tmp_path / "local")
    assert (again.password_file.read_bytes(), again.vars_files[0].read_bytes()) == before


@pytest.mark.parametrize("source", ["generated", "vault", "ssm"])
def test_given_password_file_is_used_as_is(tmp_path, monkeypatch, source):
    (tmp_path / "pw").write_text("secret\n")
    monkeypatch.setenv("ROADIE_VAULT_PASSWORD_FILE", str(tmp_path / "pw"))
    files = converge_secrets.for_env(tmp_path / "staging", source)
    assert files.password_file == tmp_path / "pw" and files.vars_files == ()
    assert not (tmp_path / "staging").exists()


@pytest.mark.parametrize("source, given, message", [
    ("vault", None, "keeps its secrets in ansible-vault files: set ROADIE_VAULT_PASSWORD_FILE"),
    ("generated", "missing", "which is not a file"),
    ("ssm", "missing", "which is not a file"),
])
def test_refusals_generate_nothing(tmp_path, monkeypatch, source, given, message):
    monkeypatch.delenv("ROADIE_VAULT_PASSWORD_FILE", raising=False)
    if given:
        monkeypatch.setenv("ROADIE_VAULT_PASSWORD_FILE", str(tmp_path / given))
    with pytest.raises(BadInput, match=message):
        converge_secrets.for_env(tmp_path / "staging", source)
    assert not (tmp_path / "staging").exists()


def test_ssm_environments_get_nothing_generated(tmp_path, monkeypatch):
    monkeypatch.delenv("ROADIE_VAULT_PASSWORD_FILE", raising=False)
    assert converge_secrets.for_env(tmp_path / "production", "ssm") == converge_secrets.VaultFiles(None, ())
    assert not (tmp_path / "production").exists()


@pytest.mark.parametrize("env, expected", [("local", "generated"), ("staging", "vault"), ("production", "ssm")])
def test_each_inventory_names_its_secrets_source(env, expected):
    assert converge_secrets.source(paths.INVENTORIES / env) == expected


@pytest.mark.parametrize("text, expected", [(None, "generated"), ("roadie_env: x\n", "generated"),
                                            ("roadie_secrets: ssm\n", "ssm")])
def test_source_defaults_to_generated(tmp_path, text, expected):
    if text is not None:
        (tmp_path / "group_vars").mkdir()
        (tmp_path / "group_vars" / "all.yml").write_text(text)
    assert converge_secrets.source(tmp_path) == expected


def test_unknown_source_is_bad_input(tmp_path):
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text("roadie_secrets: keychain\n")
    with pytest.raises(BadInput, match="roadie_secrets is 'keychain'; expected one of generated, vault, ssm"):
        converge_secrets.source(tmp_path)


def test_a_secret_added_later_is_appended_and_the_old_ones_kept(tmp_path, monkeypatch):
    monkeypatch.delenv("ROADIE_VAULT_PASSWORD_FILE", raising=False)
    monkeypatch.setattr(converge_secrets, "GENERATED", converge_secrets.GENERATED[:2])
    converge_secrets.for_env(tmp_path / "local")
    before = converge_secrets.read_local(tmp_path / "local")
    monkeypatch.setattr(converge_secrets, "GENERATED", (*converge_secrets.GENERATED, "vault_new_secret"))
    converge_secrets.for_env(tmp_path / "local")
    after = converge_secrets.read_local(tmp_path / "local")
    assert set(after) == {*before, "vault_new_secret"}
    assert {k: after[k] for k in before} == before
