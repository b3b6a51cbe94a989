"""The exact command lines the local fleet runs (Kamal style: strings, no hosts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from roadie.commands import helpers, ip, nspawn, ssh


def test_bridge_up_and_down():
    assert ip.bridge_up("roadie0", "198.18.0.1/24") == [
        ["ip", "link", "add", "roadie0", "type", "bridge"],
        ["ip", "addr", "add", "198.18.0.1/24", "dev", "roadie0"],
        ["ip", "link", "set", "roadie0", "up"],
    ]
    assert ip.bridge_down("roadie0") == [["ip", "link", "del", "roadie0"]]


def test_host_net_up_builds_namespace_veth_and_routes():
    cmds = ip.host_net_up("roadie0-db-1", "roadie0-15", "roadie0", "198.18.0.15/24", "198.18.0.1")
    assert cmds == [
        ["ip", "netns", "add", "roadie0-db-1"],
        ["ip", "link", "add", "roadie0-15", "type", "veth", "peer", "name", "roadie0-15p",
         "address", "02:72:64:12:00:0f"],
        ["ip", "link", "set", "roadie0-15p", "netns", "roadie0-db-1"],
        ["ip", "-n", "roadie0-db-1", "link", "set", "roadie0-15p", "name", "eth0"],
        ["ip", "-n", "roadie0-db-1", "addr", "add", "198.18.0.15/24", "dev", "eth0"],
        ["ip", "-n", "roadie0-db-1", "link", "set", "lo", "up"],
        ["ip", "-n", "roadie0-db-1", "link", "set", "eth0", "up"],
        ["ip", "-n", "roadie0-db-1", "route", "add", "default", "via", "198.18.0.1"],
        ["ip", "link", "set", "roadie0-15", "master", "roadie0"],
        ["ip", "link", "set", "roadie0-15", "up"],
    ]


@pytest.mark.parametrize(("veth", "expected"), [
    ("roadie0-15", [["ip", "netns", "del", "ns"], ["ip", "link", "del", "roadie0-15"]]),
    ("", [["ip", "netns", "del", "ns"]]),
])
def test_host_net_down(veth, expected):
    assert ip.host_net_down("ns", veth) == expected


@pytest.mark.parametrize(("address", "mac"), [
    ("198.18.0.10", "02:72:64:12:00:0a"),
    ("198.18.0.130", "02:72:64:12:00:82"),
    ("198.18.0.255", "02:72:64:12:00:ff"),
])
def test_mac_is_stable_and_locally_administered(address, mac):
    assert ip.mac_for(address) == mac
    assert int(mac.split(":")[0], 16) & 0b10  # locally administered bit


def test_nspawn_boot_line():
    argv = nspawn.boot_argv("db-1", Path("/img/rootfs"), Path("/st/hosts/db-1/upper"), "roadie0-db-1")
    assert argv == [
        "systemd-nspawn", "--quiet", "--register=no", "--keep-unit",
        "-D", "/img/rootfs", "--overlay=/img/rootfs:/st/hosts/db-1/upper:/",
        "--boot", "--network-namespace-path=/run/netns/roadie0-db-1",
        "-M", "db-1", "--console=read-only", "--capability=CAP_NET_ADMIN",
    ]
    assert nspawn.boot_env()["SYSTEMD_NSPAWN_API_VFS_WRITABLE"] == "network"


def test_ssh_is_strict_and_key_only():
    argv = ssh.ssh_argv("198.18.0.10", "true", Path("/k"), Path("/kh"))
    joined = " ".join(argv)
    assert "StrictHostKeyChecking=yes" in joined
    assert "UserKnownHostsFile=/kh" in joined
    assert "BatchMode=yes" in joined and "IdentitiesOnly=yes" in joined
    assert "StrictHostKeyChecking=no" not in joined
    assert argv[-2:] == ["root@198.18.0.10", "true"]


def test_known_hosts_line_drops_the_comment():
    line = ssh.known_hosts_line(["db-1", "198.18.0.15"], "ssh-ed25519 AAAAC3Nza root@db-1\n")
    assert line == "db-1,198.18.0.15 ssh-ed25519 AAAAC3Nza"


def test_aptcache_config_binds_the_bridge_only():
    conf = helpers.aptcache_conf(Path("/c"), Path("/l"), "198.18.0.1", 3142)
    assert "BindAddress: 198.18.0.1" in conf.splitlines()
    assert "Port: 3142" in conf.splitlines()
    assert "Remap-debrep: file:deb_mirror*.gz /debian ; file:backends_debian" in conf
    assert helpers.aptcache_argv(Path("/conf")) == ["apt-cacher-ng", "-c", "/conf", "ForeGround=1"]


def test_moto_binds_an_explicit_address():
    argv = helpers.moto_argv("198.18.0.1", 4566)
    assert argv[1:] == ["-m", "moto.server", "-H", "198.18.0.1", "-p", "4566"]


@pytest.mark.parametrize(("url", "port"), [("http://198.18.0.1:3142", 3142), ("http://h", 80)])
def test_port_of(url, port):
    assert helpers.port_of(url) == port


def test_each_host_boots_in_its_own_cgroup():
    argv = nspawn.in_own_cgroup("roadie0-db-1", ["systemd-nspawn", "-M", "db-1"])
    assert argv[:2] == ["sh", "-c"]
    assert argv[3:] == ["roadie-nspawn", "roadie0-db-1", "systemd-nspawn", "-M", "db-1"]
    assert 'exec "$@"' in argv[2]
    assert nspawn.cgroup_dirs("roadie0-db-1") == ["/sys/fs/cgroup/unified/roadie/roadie0-db-1",
                                                  "/sys/fs/cgroup/systemd/roadie/roadie0-db-1"]
