"""The balancer kinds by the inventory's `roadie_balancer`: a new kind is its module plus one line here."""

from __future__ import annotations

from typing import Callable

from roadie.balancer.base import Balancer
from roadie.balancer.elbv2 import ELBv2
from roadie.balancer.haproxy import HAProxy
from roadie.errors import BadInput

# kind -> factory(inventory, transport, stack, client=None): client(service) is the Environment's boto3 clients
KINDS: dict[str, Callable[..., Balancer]] = {"haproxy": HAProxy.from_inventory, "elbv2": ELBv2.from_inventory}


def for_inventory(inv, transport, stack, client=None) -> Balancer:
    """The balancer the inventory names (roadie_balancer, default haproxy)."""
    kind = str(inv.env_vars.get("roadie_balancer", "haproxy"))
    if kind not in KINDS:
        known = ", ".join(f"'{k}'" for k in sorted(KINDS))
        raise BadInput(f"The {inv.env} inventory's balancer is '{kind}'; roadie knows {known}.")
    return KINDS[kind](inv, transport, stack, client=client)
