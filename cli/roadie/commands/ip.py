"""iproute2 command lines for the fleet's bridge, namespaces and veth pairs."""

from __future__ import annotations


def bridge_up(bridge: str, gateway_cidr: str) -> list[list[str]]:
    return [
        ["ip", "link", "add", bridge, "type", "bridge"],
        ["ip", "addr", "add", gateway_cidr, "dev", bridge],
        ["ip", "link", "set", bridge, "up"],
    ]


def bridge_down(bridge: str) -> list[list[str]]:
    return [["ip", "link", "del", bridge]]


def mac_for(address: str) -> str:
    """A stable, locally administered MAC per address, so a rebuilt host is not
    unreachable behind its predecessor's stale ARP entry on the bridge."""
    octets = [int(o) for o in address.split(".")]
    return "02:72:64:" + ":".join(f"{o:02x}" for o in octets[1:])


def host_net_up(netns: str, veth: str, bridge: str, address_cidr: str, gateway: str) -> list[list[str]]:
    """A namespace whose eth0 is one end of a veth pair; the other end joins the bridge."""
    peer = veth + "p"
    return [
        ["ip", "netns", "add", netns],
        ["ip", "link", "add", veth, "type", "veth", "peer", "name", peer, "address",
         mac_for(address_cidr.split("/")[0])],
        ["ip", "link", "set", peer, "netns", netns],
        ["ip", "-n", netns, "link", "set", peer, "name", "eth0"],
        ["ip", "-n", netns, "addr", "add", address_cidr, "dev", "eth0"],
        ["ip", "-n", netns, "link", "set", "lo", "up"],
        ["ip", "-n", netns, "link", "set", "eth0", "up"],
        ["ip", "-n", netns, "route", "add", "default", "via", gateway],
        ["ip", "link", "set", veth, "master", bridge],
        ["ip", "link", "set", veth, "up"],
    ]


def host_net_down(netns: str, veth: str) -> list[list[str]]:
    # Deleting the namespace destroys eth0 and with it the veth peer; the del is for leftovers.
    return [["ip", "netns", "del", netns]] + ([["ip", "link", "del", veth]] if veth else [])


def netns_pids(netns: str) -> list[str]:
    return ["ip", "netns", "pids", netns]
