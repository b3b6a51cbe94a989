"""Generated converge secrets: private, vault-encrypted, stable once made."""

import stat

from roadie import converge_secrets


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


def test_given_password_file_is_used_as_is(tmp_path, monkeypatch):
    monkeypatch.setenv("ROADIE_VAULT_PASSWORD_FILE", str(tmp_path / "pw"))
    files = converge_secrets.for_env(tmp_path / "staging")
    assert files.password_file == tmp_path / "pw" and files.vars_files == ()
    assert not (tmp_path / "staging").exists()
