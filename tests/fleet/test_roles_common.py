"""common role on every host: sshd, firewall, sysctl, journald, apt proxy, admin user, hostname."""

import importlib.util
import subprocess

import pytest

from tests.conftest import ROOT
from tests.fleet.roles_fixtures import HOSTS, SSH_CONFIG, connect_from, converge, ssh

pytestmark = pytest.mark.fleet

ALL = sorted(HOSTS)


@pytest.mark.parametrize("name", ALL)
def test_base_services_running_and_enabled(hosts, name):
    host = hosts[name]
    for unit in ("ssh", "nftables"):
        svc = host.service(unit)
        assert svc.is_enabled, unit
    assert host.service("ssh").is_running
    assert host.run("systemctl is-active nftables").stdout.strip() == "active"
    assert host.check_output("hostname") == name
    assert host.file("/etc/hostname").content_string.strip() == name


@pytest.mark.parametrize("name", ALL)
def test_sshd_refuses_passwords(hosts, name):
    effective = hosts[name].check_output("sshd -T")
    assert "passwordauthentication no" in effective
    assert "kbdinteractiveauthentication no" in effective
    assert "permitrootlogin without-password" in effective
    assert "permitemptypasswords no" in effective


@pytest.mark.parametrize("name", ["lb-1", "db-2"])
def test_ssh_password_authentication_is_refused(name):
    proc = subprocess.run(["ssh", "-F", str(SSH_CONFIG), "-o", "PubkeyAuthentication=no", "-o", "BatchMode=yes",
                           "-o", "PreferredAuthentications=password,keyboard-interactive",
                           "-o", "NumberOfPasswordPrompts=0", name, "true"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 255
    assert "Permission denied (publickey)" in proc.stderr


@pytest.mark.parametrize("name", ALL)
def test_config_values(hosts, name):
    host = hosts[name]
    assert host.sysctl("net.core.somaxconn") == 4096
    assert host.sysctl("net.ipv4.tcp_fin_timeout") == 15
    assert host.file("/etc/systemd/journald.conf").contains("^SystemMaxUse=512M$")
    proxy = host.file("/etc/apt/apt.conf.d/01roadie-proxy")
    assert proxy.content_string.strip() == 'Acquire::http::Proxy "http://198.18.0.1:3142";'
    sudoers = host.file("/etc/sudoers.d/roadie-admins")
    assert sudoers.mode == 0o440 and sudoers.contains("^roadie ALL=")
    assert host.run("visudo -c").rc == 0
    ruleset = host.check_output("nft list table inet roadie")
    assert "policy drop" in ruleset and "tcp dport 22 accept" in ruleset


@pytest.mark.parametrize("name", ["lb-1", "catalog-2"])
def test_admin_user_logs_in_with_its_key_and_sudo(roles_fleet, name):
    proc = subprocess.run(["ssh", "-F", str(SSH_CONFIG), "-o", "BatchMode=yes", f"roadie@{name}", "sudo -n id -u"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0"


@pytest.mark.parametrize("source, target, port, expected", [
    ("catalog-1", "db-1", 5432, "open"),
    ("catalog-2", "db-1", 5432, "open"),
    ("db-2", "db-1", 5432, "open"),
    ("streaming-1", "db-1", 5432, "refused"),
    ("lb-1", "db-1", 5432, "refused"),
    ("streaming-2", "db-2", 5432, "refused"),
    ("lb-1", "catalog-1", 8080, "open"),
    ("streaming-1", "catalog-1", 8080, "refused"),
    ("lb-1", "streaming-2", 80, "open"),
    ("catalog-1", "streaming-2", 80, "refused"),
    ("lb-1", "streaming-1", 8081, "refused"),
    ("catalog-1", "lb-1", 8404, "refused"),
    ("catalog-1", "db-1", 22, "refused"),
])
def test_firewall_between_tiers(roles_fleet, source, target, port, expected):
    assert connect_from(source, HOSTS[target], port) == expected


def _roadie_packages():
    spec = importlib.util.spec_from_file_location("roadie_packages", ROOT / "filter_plugins" / "roadie_packages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_package_check_is_implemented_once():
    """The dpkg-query check lives in one filter plugin; roles only call it."""
    copies = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "roles").rglob("*.yml")
                    if "dpkg-query" in p.read_text() or "_missing_packages:" in p.read_text())
    assert copies == []
    plugin = _roadie_packages()
    result = {"stdout_lines": ["ii  nginx", "un  sudo", "ii  libc6:amd64", "rc  haproxy"]}
    assert plugin.roadie_missing_packages(result, ["nginx", "sudo", "libc6", "haproxy", "curl"]) == \
        ["sudo", "haproxy", "curl"]
    assert plugin.roadie_missing_packages({"skipped": True}, ["nginx"]) == ["nginx"]


def test_a_removed_package_is_reinstalled(roles_fleet):
    ssh("catalog-2", "DEBIAN_FRONTEND=noninteractive apt-get remove -y -q systemd-timesyncd")
    doc = converge("--tags", "common_install", "--limit", "catalog-2")
    assert doc["returncode"] == 0 and doc["hosts"]["catalog-2"]["changed"] >= 1, doc["stdout"] + doc["stderr"]
    assert ssh("catalog-2", "dpkg-query -W -f '${db:Status-Abbrev}' systemd-timesyncd").stdout.strip() == "ii"
    again = converge("--tags", "common", "--limit", "catalog-2")
    assert again["returncode"] == 0 and again["hosts"]["catalog-2"]["changed"] == 0, again["changes"]
