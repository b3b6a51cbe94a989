"""`roadie ops` in production: every changing operation needs --yes (no terminal), refused before any host is read.

The production inventory here has no SSH state at all: an operation that reached
a host would fail with exit 1 ("No known_hosts"), not be refused with exit 2.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from roadie import confirm, inventory, paths
from roadie.main import main

HOSTS = """all:
  children:
    loadbalancer: {hosts: {lb-1: {ansible_host: 198.18.0.20}}}
    catalog: {hosts: {catalog-1: {ansible_host: 198.18.0.21}, catalog-2: {ansible_host: 198.18.0.22}}}
"""


@pytest.fixture
def prod(tmp_path, monkeypatch):
    d = tmp_path / "inventories" / "prod-eu"
    (d / "group_vars" / "all").mkdir(parents=True)
    (d / "hosts.yml").write_text(HOSTS)
    (d / "group_vars" / "all" / "main.yml").write_text("roadie_env: production\n")
    monkeypatch.setattr(paths, "INVENTORIES", tmp_path / "inventories")
    monkeypatch.setenv("ROADIE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(confirm, "interactive", lambda: False)
    inventory._load.cache_clear()
    yield
    inventory._load.cache_clear()


@pytest.mark.parametrize("args", [
    ["exec", "catalog", "--", "uptime"],
    ["drain", "catalog-1"],
    ["enable", "catalog-1"],
    ["maintenance", "catalog", "on"],
    ["maintenance", "catalog", "off"],
    ["disk", "clean"],
])
def test_production_without_yes_and_no_terminal_is_refused_before_any_host(prod, args):
    result = CliRunner().invoke(main, ["--env", "prod-eu", "ops", *args])
    assert result.exit_code == 2, result.output
    assert "it needs --yes" in result.output and "nothing was changed" in result.output


@pytest.mark.parametrize("args", [["exec", "catalog", "--yes", "--", "uptime"], ["drain", "catalog-1", "--yes"]])
def test_with_yes_it_goes_on_to_the_hosts(prod, args):
    result = CliRunner().invoke(main, ["--env", "prod-eu", "ops", *args])
    assert result.exit_code != 2 and "it needs --yes" not in result.output, result.output


@pytest.mark.parametrize(("connection", "args", "refused"), [
    # (ssm exec and logs go on to the AWS API, which this test has none of: test_ops_pieces covers them on moto)
    ("ssm", ["logs", "catalog", "--follow"], True),  # SSM returns output only when a command ends
    ("bastion", ["exec", "catalog", "--yes", "--", "uptime"], False),  # SSH through a jump host
    ("ssh", ["logs", "catalog"], False),
])
def test_only_logs_follow_is_refused_on_a_fleet_without_ssh_before_any_host(prod, tmp_path, connection, args,
                                                                            refused):
    """logs and exec go through the environment's transport (SSH or SSM); following needs a stream, which SSM
    does not give: one line and exit 2, not a command that never ends."""
    vars_file = tmp_path / "inventories" / "prod-eu" / "group_vars" / "all" / "main.yml"
    vars_file.write_text(f"roadie_env: production\nroadie_connection: {connection}\n")
    result = CliRunner().invoke(main, ["--env", "prod-eu", "ops", *args])
    assert ("needs each line as the hosts write it" in result.output) is refused, result.output
    assert (result.exit_code == 2) is refused, result.output
