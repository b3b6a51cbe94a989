"""The whole estate of one stack, wired from the components."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from roadie_infra.balancer import Balancer, BalancerArgs
from roadie_infra.compute import Compute, ComputeArgs
from roadie_infra.network import Network, NetworkArgs
from roadie_infra.security import Security, SecurityArgs
from roadie_infra.settings import ConfigError, Settings
from roadie_infra.storage import Storage, StorageArgs


def service_model():
    """The service model (inventories/stack.yml): ports, health paths, routes.

    A bad model, or one whose services are not the stack's app tiers, stops the
    program before anything is created, like a bad stack setting.
    """
    from roadie import model
    from roadie.errors import BadInput

    try:
        stack = model.load()
    except BadInput as exc:
        raise ConfigError(str(exc)) from None
    from roadie_infra.compute import BUCKET_ACCESS

    unknown = [t for t in stack.services if t not in BUCKET_ACCESS]
    if unknown:
        raise ConfigError(f"The service model {model.path()} has the tier(s) {', '.join(unknown)}, which "
                          "compute.BUCKET_ACCESS gives no bucket access: say what their hosts may do with the "
                          "buckets (least privilege is written, never assumed).")
    return stack


def available_zones(count: int) -> list[str]:
    """The first `count` AZs that are up and need no opt-in (no Local/Wavelength zones)."""
    found = aws.get_availability_zones(
        state="available", filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}]).names
    if len(found) < count:
        raise ConfigError(f"Bad stack config roadie:azCount: the region has {len(found)} usable AZs, "
                          f"the stack asks for {count}.")
    return sorted(found)[:count]


def address_output(member: str) -> str:
    """The stack output of a database member's private address: databasePrimaryAddress, databaseReplica2Address."""
    return "database" + "".join(part.capitalize() for part in member.split("-")) + "Address"


def build(s: Settings, stack=None) -> dict[str, pulumi.Input]:
    """Create every resource; return the stack outputs by name."""
    stack = stack or service_model()
    zones = available_zones(s.az_count)
    account_id = aws.get_caller_identity().account_id
    region = aws.get_region().region
    image_id = aws.ssm.get_parameter(name=s.image_parameter).value

    storage = Storage("storage", StorageArgs(settings=s, account_id=account_id, zones=zones))
    network = Network("network", NetworkArgs(settings=s, zones=zones, region=region,
                                             flow_log_bucket_arn=storage.buckets["logs"].arn))
    security = Security("security", SecurityArgs(settings=s, vpc_id=network.vpc.id, stack=stack))
    balancer = Balancer("balancer", BalancerArgs(
        settings=s, services=stack.services, vpc_id=network.vpc.id, public_subnet_ids=network.subnet_ids("public"),
        security_group_id=security.groups["loadbalancer"].id))
    compute = Compute("compute", ComputeArgs(
        settings=s, image_id=image_id, region=region, account_id=account_id, zones=zones,
        private_subnet_ids=network.subnet_ids("private"), database_subnet_ids=network.subnet_ids("database"),
        security_group_ids={tier: g.id for tier, g in security.groups.items()},
        target_group_arns={svc: tg.arn for svc, tg in balancer.target_groups.items()},
        bucket_arns={kind: b.arn for kind, b in storage.buckets.items()}, key_arn=storage.key.arn,
        data_volume_ids={role: v.id for role, v in storage.volumes.items()},
        backup_prefix=stack.database.backup_prefix))

    return {
        "vpcId": network.vpc.id,
        "publicSubnetIds": network.subnet_ids("public"),
        "privateSubnetIds": network.subnet_ids("private"),
        "databaseSubnetIds": network.subnet_ids("database"),
        "albDnsName": balancer.alb.dns_name,
        "bucketNames": {kind: b.bucket for kind, b in storage.buckets.items()},
        "targetGroupArns": {svc: tg.arn for svc, tg in balancer.target_groups.items()},
        "autoScalingGroups": {tier: g.name for tier, g in compute.groups.items()},
        **{address_output(member): host.private_ip for member, host in compute.databases.items()},
        "deployTableName": storage.deploy_table.name,
    }
