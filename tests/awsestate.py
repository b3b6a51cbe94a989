"""An AWS estate on moto as the Pulumi program builds it: tagged instances, a target group per service.

Tags and names follow infra/roadie_infra (tags.py, compute.py, balancer.py), so the
SSM Targets and the ELBv2 lookups roadie makes find what they would find on AWS.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import boto3

from roadie.inventory import Host


def client(endpoint: str, service: str):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@dataclass
class Estate:
    endpoint: str
    env: str
    hosts: dict[str, list[Host]] = field(default_factory=dict)  # tier -> inventory hosts
    target_groups: dict[str, str] = field(default_factory=dict)  # backend -> arn
    bucket: str = ""


def tier_tags(env: str, tier: str) -> dict[str, str]:
    """What compute.py's launch template puts on a tier's instances."""
    return {"roadie:env": env, "roadie:role": tier, "roadie:service": tier, "owner": "sre", "Name": tier}


def build(endpoint: str, tiers: dict[str, int], delay: int = 30, register: bool = True) -> Estate:
    """`tiers` (name -> instance count) in a fresh environment name; a target group per tier."""
    ec2, elb, s3 = client(endpoint, "ec2"), client(endpoint, "elbv2"), client(endpoint, "s3")
    env = f"t{uuid.uuid4().hex[:8]}"
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    estate = Estate(endpoint, env, bucket=f"roadie-{env}-artifacts")
    s3.create_bucket(Bucket=estate.bucket)
    for tier, count in tiers.items():
        tags = tier_tags(env, tier)
        found = ec2.run_instances(ImageId="ami-12c6146b", MinCount=count, MaxCount=count, InstanceType="t3.small",
                                  TagSpecifications=[{"ResourceType": "instance", "Tags": [
                                      {"Key": k, "Value": v} for k, v in tags.items()]}])["Instances"]
        estate.hosts[tier] = [Host(f"{tier}-{i['InstanceId']}", i["PrivateIpAddress"], (tier,),
                                   {"ansible_aws_ssm_instance_id": i["InstanceId"]}) for i in found]
        arn = elb.create_target_group(Name=f"roadie-{env}-{tier}"[:32], Protocol="HTTP", Port=8080, VpcId=vpc,
                                      TargetType="instance", HealthCheckPath="/healthz")["TargetGroups"][0][
                                          "TargetGroupArn"]
        elb.modify_target_group_attributes(TargetGroupArn=arn, Attributes=[
            {"Key": "deregistration_delay.timeout_seconds", "Value": str(delay)}])
        if register:
            elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": i["InstanceId"]} for i in found])
        estate.target_groups[tier] = arn
    return estate
