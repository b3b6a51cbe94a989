"""How the VPC CIDR is cut into subnets: a pure plan the tests can check."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

KINDS = ("public", "private", "database")
# Each kind owns an aligned block of 4 slots of 1/16 of the VPC, so a fourth AZ
# can be added later without renumbering any existing subnet.
SLOTS_PER_KIND = 4


@dataclass(frozen=True)
class SubnetPlan:
    kind: str
    zone: str
    index: int
    cidr: str


def plan_subnets(vpc_cidr: str, zones: list[str]) -> list[SubnetPlan]:
    vpc = ipaddress.ip_network(vpc_cidr)
    if len(zones) > SLOTS_PER_KIND:
        raise ValueError(f"at most {SLOTS_PER_KIND} AZs fit the subnet plan, got {len(zones)}")
    blocks = list(vpc.subnets(new_prefix=vpc.prefixlen + 4))
    return [SubnetPlan(kind, zone, i, str(blocks[k * SLOTS_PER_KIND + i]))
            for k, kind in enumerate(KINDS) for i, zone in enumerate(zones)]
