"""roadie converge on the converged fleet: idempotent, clean in check mode, built-in strategy fallback."""

import pytest

from roadie.converge import secrets as converge_secrets
from tests.fleet.roles_fixtures import HOSTS, STATE, TIERS, converge, ssh

pytestmark = pytest.mark.fleet


def _assert_clean(doc):
    assert doc["returncode"] == 0, doc["stdout"] + doc["stderr"]
    assert doc["ok"] and doc["complete"] and doc["failures"] == []
    assert set(doc["hosts"]) == set(HOSTS)
    changed = {h: r["changed"] for h, r in doc["hosts"].items() if r["changed"]}
    assert changed == {}, f"changed on a second converge: {changed}; tasks: {doc['changes']}"
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in doc["hosts"].values())


def test_first_converge_changed_the_fleet(roles_fleet):
    first = roles_fleet["first_converge"]
    assert first["ok"] and set(first["hosts"]) == set(HOSTS)


def test_second_converge_changes_nothing(roles_fleet):
    _assert_clean(converge())


def test_check_mode_reports_no_changes_and_no_errors(roles_fleet):
    doc = converge("--check", "--diff")
    _assert_clean(doc)
    assert doc["check"] is True


def test_builtin_linear_strategy_fallback(roles_fleet):
    doc = converge("--strategy", "linear", "--limit", "loadbalancer,database")
    assert doc["strategy"] == "linear"
    assert doc["returncode"] == 0 and doc["ok"], doc["stdout"] + doc["stderr"]
    assert set(doc["hosts"]) == {*TIERS["loadbalancer"], *TIERS["database"]}
    assert all(r["changed"] == 0 for r in doc["hosts"].values())


def test_secrets_never_printed(roles_fleet):
    secrets = converge_secrets.read_local(STATE)
    doc = converge("--tags", "database,catalog", "--diff")
    assert doc["returncode"] == 0
    for value in secrets.values():
        assert value not in doc["stdout"] and value not in doc["stderr"]
    assert (STATE / "vault.yml").read_bytes().startswith(b"$ANSIBLE_VAULT")


def test_unknown_limit_is_bad_input(roles_fleet):
    doc = converge("--limit", "no-such-host")
    # Under --output json the error is a JSON event on stdout (the last line, parsed by converge()).
    assert doc["returncode"] == 2 and doc.get("event") == "error"
    assert "neither a host nor a group" in doc["error"] and doc["exit_code"] == 2


DRIFT_HOST, DRIFT_FILE = "streaming-1", "/etc/systemd/journald.conf"


def test_drift_on_one_host_is_detected_and_repaired(roles_fleet):
    """A hand-edited templated file on one host: the next converge changes that host only and restores it."""
    original = ssh(DRIFT_HOST, f"sha256sum {DRIFT_FILE}").stdout.split()[0]
    ssh(DRIFT_HOST, f"echo '# edited by hand' >> {DRIFT_FILE}")
    assert ssh(DRIFT_HOST, f"sha256sum {DRIFT_FILE}").stdout.split()[0] != original
    doc = converge()
    assert doc["returncode"] == 0 and doc["ok"], doc["stdout"] + doc["stderr"]
    changed = {h: r["changed"] for h, r in doc["hosts"].items() if r["changed"]}
    assert set(changed) == {DRIFT_HOST}, f"changed: {changed}; tasks: {doc['changes']}"
    assert ssh(DRIFT_HOST, f"sha256sum {DRIFT_FILE}").stdout.split()[0] == original
    _assert_clean(converge())
