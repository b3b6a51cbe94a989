"""Which hosts the local fleet has and where they sit on the bridge.

Pure: inventory in, plan out, every bad input refused before anything is made.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from roadie.errors import BadInput
from roadie.inventory import Inventory

MAX_BRIDGE = 10  # leaves room for "-NNNp" within the kernel's 15-character names
_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class HostPlan:
    name: str
    address: str
    prefixlen: int
    netns: str
    veth: str

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefixlen}"


@dataclass(frozen=True)
class FleetPlan:
    bridge: str
    network: str
    gateway: str
    apt_proxy: str
    aws_endpoint: str
    aws_region: str
    buckets: tuple[str, ...]
    hosts: tuple[HostPlan, ...]

    @property
    def gateway_cidr(self) -> str:
        return f"{self.gateway}/{ipaddress.ip_network(self.network).prefixlen}"

    def host(self, name: str) -> HostPlan:
        return next(h for h in self.hosts if h.name == name)


def _setting(settings: dict, key: str) -> str:
    if not settings.get(key):
        raise BadInput(f"The inventory does not set {key}, so it is not a local fleet (see inventories/local).")
    return str(settings[key])


def build(inv: Inventory, only: list[str] | None = None) -> FleetPlan:
    """Plan every inventory host (the fleet's full shape); `only` must name some of them."""
    if not inv.hosts:
        raise BadInput(f"The {inv.env} inventory has no hosts.")
    settings = next(iter(inv.hosts.values())).vars
    try:
        network = ipaddress.ip_network(_setting(settings, "roadie_fleet_network"))
        gateway = ipaddress.ip_address(_setting(settings, "roadie_fleet_gateway"))
    except ValueError as exc:
        raise BadInput(f"Bad fleet network setting: {exc}.") from None
    if gateway not in network:
        raise BadInput(f"The fleet gateway {gateway} is outside the fleet network {network}.")
    bridge = _setting(settings, "roadie_fleet_bridge")
    if len(bridge) > MAX_BRIDGE or not re.match(r"^[a-z][a-z0-9]*$", bridge):
        raise BadInput(f"Bridge name '{bridge}' must be lowercase letters and digits, at most {MAX_BRIDGE}.")

    hosts, seen = [], {str(gateway): "the bridge"}
    for h in inv.hosts.values():
        if not _HOSTNAME.match(h.name):
            raise BadInput(f"Host name '{h.name}' is not a valid hostname (lowercase letters, digits, '-').")
        if "ansible_host" not in h.vars:
            raise BadInput(f"Host {h.name} has no address (ansible_host) in the {inv.env} inventory.")
        try:
            addr = ipaddress.ip_address(str(h.vars["ansible_host"]))
        except ValueError:
            raise BadInput(f"Host {h.name} has address '{h.vars['ansible_host']}', "
                           "which is not an IP address.") from None
        if addr not in network or addr in (network.network_address, network.broadcast_address):
            raise BadInput(f"Host {h.name} has address {addr}, outside the fleet's range {network}.")
        if str(addr) in seen:
            raise BadInput(f"Host {h.name} has address {addr}, already used by {seen[str(addr)]}.")
        seen[str(addr)] = h.name
        index = int(addr) - int(network.network_address)
        hosts.append(HostPlan(name=h.name, address=str(addr), prefixlen=network.prefixlen,
                              netns=f"{bridge}-{h.name}", veth=f"{bridge}-{index}"))
    if only:
        unknown = [n for n in only if n not in inv.hosts]
        if unknown:
            raise BadInput(f"Unknown host {', '.join(unknown)}: the {inv.env} inventory has "
                           f"{', '.join(inv.hosts)}.")
    return FleetPlan(bridge=bridge, network=str(network), gateway=str(gateway),
                     apt_proxy=_setting(settings, "roadie_apt_proxy"),
                     aws_endpoint=_setting(settings, "roadie_aws_endpoint_url"),
                     aws_region=str(settings.get("roadie_aws_region", "us-east-1")),
                     buckets=tuple(sorted(dict(settings.get("roadie_buckets") or {}).values())), hosts=tuple(hosts))
