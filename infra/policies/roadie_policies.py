"""roadie's policies as plain functions `(args, report_violation)`.

`__main__.py` wraps them in a pulumi-policy PolicyPack for `pulumi preview
--policy-pack`; the tests call them directly and over every resource of every
stack under mocks. Props are the engine's camelCase names.
"""

from __future__ import annotations

REQUIRED_TAGS = ("roadie:env", "roadie:role", "roadie:service", "owner")
PUBLIC_CIDRS = ("0.0.0.0/0", "::/0")
PUBLIC_PORTS = (80, 443)
SSH = 22

SG = "aws:ec2/securityGroup:SecurityGroup"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
BUCKET = "aws:s3/bucket:Bucket"
BUCKET_V2 = "aws:s3/bucketV2:BucketV2"
BUCKET_SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
BUCKET_PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
VOLUME = "aws:ebs/volume:Volume"
INSTANCE = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
ASG = "aws:autoscaling/group:Group"
TABLE = "aws:dynamodb/table:Table"
SUBNET = "aws:ec2/subnet:Subnet"
# Patroni's etcd keeps a majority with one member down only with three members.
DATABASE_MEMBERS = 3

# Resource types that take tags. A test checks this against pulumi_aws for
# every type the program creates, so a new resource cannot slip by untagged.
TAGGABLE = frozenset({
    "aws:ec2/vpc:Vpc", "aws:ec2/internetGateway:InternetGateway", "aws:ec2/subnet:Subnet",
    "aws:ec2/routeTable:RouteTable", "aws:ec2/eip:Eip", "aws:ec2/natGateway:NatGateway",
    "aws:ec2/vpcEndpoint:VpcEndpoint", "aws:ec2/flowLog:FlowLog", SG, INGRESS_RULE,
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule", "aws:kms/key:Key", BUCKET, BUCKET_V2, VOLUME,
    "aws:lb/targetGroup:TargetGroup", "aws:lb/loadBalancer:LoadBalancer", "aws:lb/listener:Listener",
    "aws:lb/listenerRule:ListenerRule", "aws:iam/role:Role", "aws:iam/instanceProfile:InstanceProfile",
    LAUNCH_TEMPLATE, ASG, INSTANCE, TABLE,
})


def _ingress_rules(resource_type: str, props: dict) -> list[dict]:
    """Every ingress rule a resource declares, as {cidrs, from, to, protocol}."""
    if resource_type == INGRESS_RULE:
        cidrs = [c for c in (props.get("cidrIpv4"), props.get("cidrIpv6")) if c]
        return [{"cidrs": cidrs, "from": props.get("fromPort"), "to": props.get("toPort"),
                 "protocol": str(props.get("ipProtocol", ""))}]
    if resource_type == SG_RULE and props.get("type") == "ingress":
        return [{"cidrs": [*(props.get("cidrBlocks") or []), *(props.get("ipv6CidrBlocks") or [])],
                 "from": props.get("fromPort"), "to": props.get("toPort"), "protocol": str(props.get("protocol", ""))}]
    if resource_type == SG:
        return [{"cidrs": [*(r.get("cidrBlocks") or []), *(r.get("ipv6CidrBlocks") or [])],
                 "from": r.get("fromPort"), "to": r.get("toPort"), "protocol": str(r.get("protocol", ""))}
                for r in props.get("ingress") or []]
    return []


def _all_ports(rule: dict) -> bool:
    return rule["protocol"] in ("-1", "all") or rule["from"] is None


def _covers(rule: dict, port: int) -> bool:
    return _all_ports(rule) or (rule["from"] <= port <= (rule["to"] if rule["to"] is not None else rule["from"]))


def no_public_ingress(args, report_violation) -> None:
    """Only the load balancer faces the internet, and only on 80 and 443."""
    tag_map = args.props.get("tags")
    role = tag_map.get("roadie:role") if isinstance(tag_map, dict) else None
    for rule in _ingress_rules(args.resource_type, args.props):
        if not set(rule["cidrs"]) & set(PUBLIC_CIDRS):
            continue
        exact_port = not _all_ports(rule) and rule["from"] == rule["to"] and rule["from"] in PUBLIC_PORTS
        if role == "loadbalancer" and rule["protocol"] == "tcp" and exact_port:
            continue
        ports = "all ports" if _all_ports(rule) else f"ports {rule['from']}-{rule['to']}"
        report_violation(f"{args.name}: ingress from {', '.join(rule['cidrs'])} on {ports} is open to the "
                         "internet; only the load balancer may be, on 80/443.", args.urn)


def no_ssh_ingress(args, report_violation) -> None:
    """Hosts are reached through SSM Session Manager, never SSH."""
    for rule in _ingress_rules(args.resource_type, args.props):
        if _covers(rule, SSH):
            report_violation(f"{args.name}: ingress rule admits SSH (port 22); use SSM Session Manager.", args.urn)


def _truthy(value) -> bool:
    return value is True or str(value).lower() == "true"


def encrypted_volumes(args, report_violation) -> None:
    """EBS volumes, instance root/data disks and launch template disks are encrypted."""
    p, bad = args.props, []
    if args.resource_type == VOLUME and not _truthy(p.get("encrypted")):
        bad.append("volume")
    elif args.resource_type == INSTANCE:
        if not _truthy((p.get("rootBlockDevice") or {}).get("encrypted")):
            bad.append("root block device")
        bad += [f"block device {d.get('deviceName')}" for d in p.get("ebsBlockDevices") or []
                if not _truthy(d.get("encrypted"))]
    elif args.resource_type == LAUNCH_TEMPLATE:
        bad += [f"block device {m.get('deviceName')}" for m in p.get("blockDeviceMappings") or []
                if m.get("ebs") is not None and not _truthy(m["ebs"].get("encrypted"))]
    for what in bad:
        report_violation(f"{args.name}: {what} is not encrypted.", args.urn)


def imdsv2_required(args, report_violation) -> None:
    """IMDSv1 hands credentials to any SSRF; require session tokens."""
    if args.resource_type in (INSTANCE, LAUNCH_TEMPLATE):
        if (args.props.get("metadataOptions") or {}).get("httpTokens") != "required":
            report_violation(f"{args.name}: metadataOptions.httpTokens must be 'required' (IMDSv2).", args.urn)


def tables_encrypted_and_recoverable(args, report_violation) -> None:
    """DynamoDB tables (the deploy lock and audit log) use a KMS key and point-in-time recovery.

    Without SSE enabled a table is encrypted only with an AWS-owned key that no
    one can audit or revoke; without PITR a bad write or a deleted audit log
    cannot be restored.
    """
    if args.resource_type != TABLE:
        return
    sse = args.props.get("serverSideEncryption") or {}
    if not _truthy(sse.get("enabled")):
        report_violation(f"{args.name}: table is not encrypted with a KMS key (serverSideEncryption.enabled).",
                         args.urn)
    if not _truthy((args.props.get("pointInTimeRecovery") or {}).get("enabled")):
        report_violation(f"{args.name}: table has no point-in-time recovery (pointInTimeRecovery.enabled).",
                         args.urn)


def _tag_maps(resource_type: str, props: dict) -> list[tuple[str, dict]]:
    if resource_type == ASG:
        return [("tags", {t.get("key"): t.get("value") for t in props.get("tags") or []})]
    maps = [("tags", props.get("tags") or {})]
    if resource_type == LAUNCH_TEMPLATE:
        maps += [(f"tagSpecifications[{s.get('resourceType')}]", s.get("tags") or {})
                 for s in props.get("tagSpecifications") or []]
    return maps


def required_tags(args, report_violation) -> None:
    """The inventories, costs and on-call all key on these tags."""
    if args.resource_type not in TAGGABLE and "tags" not in args.props:
        return
    for where, tag_map in _tag_maps(args.resource_type, args.props):
        missing = [k for k in REQUIRED_TAGS if not tag_map.get(k)]
        if missing:
            report_violation(f"{args.name}: {where} lacks {', '.join(missing)}.", args.urn)
    if args.resource_type == ASG:
        unpropagated = [t.get("key") for t in args.props.get("tags") or []
                        if t.get("key") in REQUIRED_TAGS and not _truthy(t.get("propagateAtLaunch"))]
        if unpropagated:
            report_violation(f"{args.name}: tags {', '.join(unpropagated)} are not propagated to instances.",
                             args.urn)


def _guards(resources, bucket, guard_type: str) -> list:
    """The guard resources (SSE config, access block) that apply to a bucket.

    Matched by dependency where the engine gives one (values may be unknown in a
    preview), else by bucket name.
    """
    name = bucket.props.get("bucket")
    return [r for r in resources if r.resource_type == guard_type
            and (bucket in (getattr(r, "dependencies", None) or []) or (name and r.props.get("bucket") == name))]


def buckets_encrypted(args, report_violation) -> None:
    """Every bucket has default encryption (SSE-KMS, or SSE-S3 where a service must write)."""
    for b in (r for r in args.resources if r.resource_type in (BUCKET, BUCKET_V2)):
        ok = any(rule.get("applyServerSideEncryptionByDefault", {}).get("sseAlgorithm")
                 in ("aws:kms", "aws:kms:dsse", "AES256")
                 for g in _guards(args.resources, b, BUCKET_SSE) for rule in g.props.get("rules") or [])
        if not ok:
            report_violation(f"{b.name}: bucket has no default encryption configuration.", b.urn)


def buckets_block_public_access(args, report_violation) -> None:
    """Every bucket has a public access block with all four switches on."""
    switches = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    for b in (r for r in args.resources if r.resource_type in (BUCKET, BUCKET_V2)):
        ok = any(all(g.props.get(k) is True for k in switches) for g in _guards(args.resources, b, BUCKET_PAB))
        if not ok:
            report_violation(f"{b.name}: bucket lacks a public access block with all four settings on.", b.urn)


def _tag(resource, key: str):
    tag_map = resource.props.get("tags")
    return tag_map.get(key) if isinstance(tag_map, dict) else None


def database_quorum(args, report_violation) -> None:
    """Three database members, one primary, spread over the AZs: etcd and Patroni survive losing one.

    With two members, losing either loses etcd's majority and no failover can
    happen (docs/database.md). Members share an AZ only when the database
    subnets span fewer than three, and no replica shares the primary's.
    """
    hosts = [r for r in args.resources if r.resource_type == INSTANCE and _tag(r, "roadie:role") == "database"]
    if len(hosts) < DATABASE_MEMBERS:
        report_violation(f"the stack has {len(hosts)} database instances; Patroni's etcd needs {DATABASE_MEMBERS} "
                         "to keep a majority with one down.")
    primaries = [h for h in hosts if _tag(h, "roadie:db-role") == "primary"]
    if hosts and len(primaries) != 1:
        report_violation(f"the stack has {len(primaries)} database instances tagged roadie:db-role=primary; "
                         "Patroni bootstraps on exactly one.")
    zones = {h.name: h.props.get("availabilityZone") for h in hosts}
    if not hosts or None in zones.values():  # unknown until the zones are read
        return
    subnet_zones = {r.props.get("availabilityZone") for r in args.resources
                    if r.resource_type == SUBNET and _tag(r, "roadie:subnet") == "database"}
    want = min(len(hosts), len(subnet_zones - {None}) or len(hosts))  # too few hosts is reported above
    if len(set(zones.values())) < want:
        report_violation(f"the database instances use {len(set(zones.values()))} AZs "
                         f"({', '.join(sorted(set(zones.values())))}); they must use {want}.")
    for p in primaries:
        beside = sorted(h.name for h in hosts if h is not p and zones[h.name] == zones[p.name])
        if beside:
            report_violation(f"{', '.join(beside)}: in the primary's AZ {zones[p.name]}; losing it would take "
                             "two members.", p.urn)


# name -> (function, description): the pack, in one place for __main__ and the tests.
RESOURCE_POLICIES = {
    "no-public-ingress": (no_public_ingress, "No ingress from the internet except the load balancer on 80/443."),
    "no-ssh-ingress": (no_ssh_ingress, "No SSH ingress at all; hosts are reached through SSM."),
    "encrypted-volumes": (encrypted_volumes, "EBS volumes and instance disks are encrypted."),
    "imdsv2-required": (imdsv2_required, "Instances and launch templates require IMDSv2."),
    "required-tags": (required_tags, "Taggable resources carry roadie:env, roadie:role, roadie:service, owner."),
    "tables-encrypted-and-recoverable": (tables_encrypted_and_recoverable,
                                         "DynamoDB tables are KMS-encrypted and have point-in-time recovery."),
}
STACK_POLICIES = {
    "buckets-encrypted": (buckets_encrypted, "Every bucket has default encryption."),
    "buckets-block-public-access": (buckets_block_public_access, "Every bucket has a full public access block."),
    "database-quorum": (database_quorum, "Three database members, one primary, each in its own AZ where there are 3."),
}
