"""One security group per tier; who may reach whom is the RULES table below.

No SSH anywhere: operators reach hosts through SSM Session Manager, which
needs only outbound HTTPS from the host.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from roadie_infra.settings import Settings
from roadie_infra.tags import tags

ANYWHERE = "0.0.0.0/0"


@dataclass(frozen=True)
class Rule:
    direction: str  # ingress | egress
    tier: str  # the group the rule belongs to
    peer: str  # another tier, or a CIDR
    port: int
    why: str


def host_roles(stack) -> tuple[str, ...]:
    """Every tier with hosts, each one security group: the balancer, the model's tiers, the database."""
    return ("loadbalancer", *stack.services, "database")


def rules(stack) -> list[Rule]:
    """The tier matrix, from the service model (a roadie.model.Stack): the balancer forwards to each tier that
    has a balancer section, on its port; the tiers with migrations are the database's clients."""
    db = stack.database
    postgres = db.port
    # Between database hosts only (as the role's nftables admits them): Patroni on every member
    # uses etcd's client port on each, etcd members talk on the peer port, and members ask each
    # other's Patroni REST API (failover and switchover checks). roadie asks Patroni on the member
    # itself, which no security group sees.
    cluster = [(db.etcd_client_port, "etcd clients (Patroni)"), (db.etcd_peer_port, "etcd peers"),
               (db.patroni_rest_port, "Patroni REST API between members")]
    found = [Rule("ingress", "loadbalancer", ANYWHERE, 80, "HTTP from listeners, redirected to HTTPS"),
             Rule("ingress", "loadbalancer", ANYWHERE, 443, "HTTPS from listeners")]
    for t in stack.services.values():
        if t.balancer:
            found += [Rule("egress", "loadbalancer", t.name, t.port, f"forward {t.balancer.route_prefix}"),
                      Rule("ingress", t.name, "loadbalancer", t.port, "traffic and health checks from the ALB")]
        found.append(Rule("egress", t.name, ANYWHERE, 443, "S3, SSM and package mirrors over HTTPS"))
        if t.migrations:
            found += [Rule("egress", t.name, "database", postgres, "queries"),
                      Rule("ingress", "database", t.name, postgres, f"queries from {t.name}")]
    return found + [
        Rule("ingress", "database", "database", postgres, "streaming replication"),
        Rule("egress", "database", "database", postgres, "streaming replication"),
        *(Rule(d, "database", "database", port, why) for port, why in cluster for d in ("ingress", "egress")),
        Rule("egress", "database", ANYWHERE, 443, "backups to S3, SSM and package mirrors"),
    ]


@dataclass
class SecurityArgs:
    settings: Settings
    vpc_id: pulumi.Input[str]
    stack: object  # roadie.model.Stack: the ports


class Security(pulumi.ComponentResource):
    def __init__(self, name: str, args: SecurityArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("roadie:infra:Security", name, None, opts)
        s = args.settings
        child = pulumi.ResourceOptions(parent=self)
        self.groups: dict[str, aws.ec2.SecurityGroup] = {
            tier: aws.ec2.SecurityGroup(
                f"{name}-{tier}", vpc_id=args.vpc_id, description=f"roadie {s.environment} {tier} tier",
                tags=tags(s, tier, "security-group", name=f"roadie-{s.environment}-{tier}"),
                opts=child)
            for tier in host_roles(args.stack)
        }
        for r in rules(args.stack):
            peer = ({"cidr_ipv4": r.peer} if r.peer == ANYWHERE
                    else {"referenced_security_group_id": self.groups[r.peer].id})
            cls = aws.vpc.SecurityGroupIngressRule if r.direction == "ingress" else aws.vpc.SecurityGroupEgressRule
            source = "any" if r.peer == ANYWHERE else r.peer
            cls(f"{name}-{r.tier}-{r.direction}-{source}-{r.port}", security_group_id=self.groups[r.tier].id,
                ip_protocol="tcp", from_port=r.port, to_port=r.port, description=r.why,
                tags=tags(s, r.tier, "security-group"), opts=child, **peer)
        self.register_outputs({f"{tier}_group_id": g.id for tier, g in self.groups.items()})
