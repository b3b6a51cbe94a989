"""VPC over the stack's AZs: public, private and database subnets, NAT, routes."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from roadie_infra.layout import plan_subnets
from roadie_infra.settings import Settings
from roadie_infra.tags import tags


@dataclass
class NetworkArgs:
    settings: Settings
    zones: list[str]
    flow_log_bucket_arn: pulumi.Input[str]
    region: str


class Network(pulumi.ComponentResource):
    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("roadie:infra:Network", name, None, opts)
        s = args.settings
        child = pulumi.ResourceOptions(parent=self)

        def t(kind: str, label: str) -> dict[str, str]:
            return tags(s, "network", kind, name=f"roadie-{s.environment}-{label}")

        self.vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=str(s.vpc_cidr), enable_dns_support=True,
                               enable_dns_hostnames=True, tags=t("vpc", "vpc"), opts=child)
        self.igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=self.vpc.id, tags=t("vpc", "igw"), opts=child)

        self.subnets: dict[str, list[aws.ec2.Subnet]] = {"public": [], "private": [], "database": []}
        for plan in plan_subnets(str(s.vpc_cidr), args.zones):
            label = f"{plan.kind}-{plan.zone[-1]}"
            self.subnets[plan.kind].append(aws.ec2.Subnet(
                f"{name}-{label}", vpc_id=self.vpc.id, cidr_block=plan.cidr, availability_zone=plan.zone,
                map_public_ip_on_launch=False,
                tags=t("vpc", label) | {"roadie:subnet": plan.kind}, opts=child))

        public_rt = aws.ec2.RouteTable(f"{name}-public-rt", vpc_id=self.vpc.id, tags=t("vpc", "public-rt"),
                                       opts=child)
        aws.ec2.Route(f"{name}-public-default", route_table_id=public_rt.id, destination_cidr_block="0.0.0.0/0",
                      gateway_id=self.igw.id, opts=child)
        for subnet, zone in zip(self.subnets["public"], args.zones, strict=True):
            aws.ec2.RouteTableAssociation(f"{name}-public-{zone[-1]}", subnet_id=subnet.id,
                                          route_table_id=public_rt.id, opts=child)

        # One NAT per AZ survives an AZ outage; a shared one is cheaper for dev.
        nat_count = len(args.zones) if s.nat_per_az else 1
        self.nat_gateways = []
        for i in range(nat_count):
            zone = args.zones[i]
            eip = aws.ec2.Eip(f"{name}-nat-{zone[-1]}", domain="vpc", tags=t("nat", f"nat-{zone[-1]}"), opts=child)
            self.nat_gateways.append(aws.ec2.NatGateway(
                f"{name}-nat-{zone[-1]}", allocation_id=eip.id, subnet_id=self.subnets["public"][i].id,
                tags=t("nat", f"nat-{zone[-1]}"),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.igw])))

        # Private and database subnets of an AZ share its route table: out through a NAT.
        self.private_route_tables = []
        for i, zone in enumerate(args.zones):
            rt = aws.ec2.RouteTable(f"{name}-private-rt-{zone[-1]}", vpc_id=self.vpc.id,
                                    tags=t("vpc", f"private-rt-{zone[-1]}"), opts=child)
            aws.ec2.Route(f"{name}-private-default-{zone[-1]}", route_table_id=rt.id,
                          destination_cidr_block="0.0.0.0/0",
                          nat_gateway_id=self.nat_gateways[i % nat_count].id, opts=child)
            for kind in ("private", "database"):
                aws.ec2.RouteTableAssociation(f"{name}-{kind}-{zone[-1]}", subnet_id=self.subnets[kind][i].id,
                                              route_table_id=rt.id, opts=child)
            self.private_route_tables.append(rt)

        # S3 traffic (artifacts, media, backups) stays off the NATs.
        aws.ec2.VpcEndpoint(f"{name}-s3", vpc_id=self.vpc.id, service_name=f"com.amazonaws.{args.region}.s3",
                            vpc_endpoint_type="Gateway",
                            route_table_ids=[rt.id for rt in self.private_route_tables],
                            tags=t("vpc", "s3-endpoint"), opts=child)
        aws.ec2.FlowLog(f"{name}-flow-log", vpc_id=self.vpc.id, traffic_type="ALL", log_destination_type="s3",
                        log_destination=args.flow_log_bucket_arn, max_aggregation_interval=600,
                        tags=t("flow-logs", "flow-log"), opts=child)

        self.register_outputs({
            "vpc_id": self.vpc.id,
            **{f"{kind}_subnet_ids": [sn.id for sn in subnets] for kind, subnets in self.subnets.items()},
        })

    def subnet_ids(self, kind: str) -> list[pulumi.Output[str]]:
        return [sn.id for sn in self.subnets[kind]]
