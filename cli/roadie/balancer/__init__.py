"""The balancer a deploy drains hosts in and maintenance mode switches: HAProxy locally, ELBv2 on AWS."""

from roadie.balancer.base import Balancer
from roadie.balancer.registry import for_inventory

__all__ = ["Balancer", "for_inventory"]
