"""The public ALB: HTTPS in, HTTP redirected, paths routed to the app tiers.

Target groups live here rather than with the auto scaling groups because the
rolling deploys drain and re-enable hosts through them. Each service's port,
health path and route prefix come from the service model (inventories/stack.yml),
the same values the roles make the hosts listen on and HAProxy checks locally.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from roadie_infra.settings import Settings
from roadie_infra.tags import tags

TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"

# The target groups' health check: a host is in service after HEALTHY_THRESHOLD
# passing checks INTERVAL seconds apart, out after UNHEALTHY_THRESHOLD failures.
HEALTH_CHECK = {"protocol": "HTTP", "port": "traffic-port", "matcher": "200", "interval": 10, "timeout": 5,
                "healthy_threshold": 2, "unhealthy_threshold": 3}


def path_patterns(route_prefix: str) -> list[str]:
    """The ALB path patterns of a route prefix: the prefix itself and everything under it."""
    prefix = route_prefix.rstrip("/") or "/"
    return [prefix, f"{prefix}/*"] if prefix != "/" else ["/*"]


@dataclass
class BalancerArgs:
    settings: Settings
    services: dict  # tier name -> roadie.model.Tier; those with a balancer section get a target group
    vpc_id: pulumi.Input[str]
    public_subnet_ids: list[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]


class Balancer(pulumi.ComponentResource):
    def __init__(self, name: str, args: BalancerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("roadie:infra:Balancer", name, None, opts)
        s = args.settings
        child = pulumi.ResourceOptions(parent=self)

        self.target_groups: dict[str, aws.lb.TargetGroup] = {}
        balanced = {name: svc for name, svc in args.services.items() if svc.balancer}
        for service, svc in balanced.items():
            self.target_groups[service] = aws.lb.TargetGroup(
                f"{name}-{service}", name=f"roadie-{s.environment}-{svc.backend}"[:32], port=svc.port,
                protocol="HTTP", target_type="instance", vpc_id=args.vpc_id,
                deregistration_delay=s.deregistration_delay,
                health_check={"path": svc.health_path, **HEALTH_CHECK},
                tags=tags(s, service, "target-group"), opts=child)

        self.alb = aws.lb.LoadBalancer(
            f"{name}-alb", name=f"roadie-{s.environment}"[:32], load_balancer_type="application", internal=False,
            security_groups=[args.security_group_id], subnets=args.public_subnet_ids,
            drop_invalid_header_fields=True, enable_deletion_protection=s.production,
            idle_timeout=300,  # long enough for a slow client to fetch an audio segment
            tags=tags(s, "loadbalancer", "alb", name=f"roadie-{s.environment}"), opts=child)

        self.https = aws.lb.Listener(
            f"{name}-https", load_balancer_arn=self.alb.arn, port=443, protocol="HTTPS", ssl_policy=TLS_POLICY,
            certificate_arn=s.certificate_arn,
            default_actions=[{"type": "fixed-response",
                              "fixed_response": {"content_type": "text/plain", "message_body": "not found",
                                                 "status_code": "404"}}],
            tags=tags(s, "loadbalancer", "alb"), opts=child)
        aws.lb.Listener(
            f"{name}-http", load_balancer_arn=self.alb.arn, port=80, protocol="HTTP",
            default_actions=[{"type": "redirect",
                              "redirect": {"port": "443", "protocol": "HTTPS", "status_code": "HTTP_301"}}],
            tags=tags(s, "loadbalancer", "alb"), opts=child)
        # Sorted by prefix so a service added to the model does not renumber the others.
        routes = sorted(balanced, key=lambda svc: balanced[svc].balancer.route_prefix)
        for priority, service in enumerate(routes, start=1):
            aws.lb.ListenerRule(
                f"{name}-{service}-route", listener_arn=self.https.arn, priority=priority * 10,
                actions=[{"type": "forward", "target_group_arn": self.target_groups[service].arn}],
                conditions=[{"path_pattern": {"values": path_patterns(balanced[service].balancer.route_prefix)}}],
                tags=tags(s, service, "alb"), opts=child)

        self.register_outputs({"dns_name": self.alb.dns_name,
                               **{f"{svc}_target_group": tg.arn for svc, tg in self.target_groups.items()}})
