"""What each stack's program builds, checked on its mocked resources (dev, staging, prod)."""

from __future__ import annotations

import ipaddress
import itertools
import json

import pytest

from roadie import model
from roadie_infra import program
from roadie_infra.storage import deploy_table_name
from roadie_policies import REQUIRED_TAGS

# Ports, health paths and routes: the service model's, not any stack's.
STACK = model.load()

# Resource counts per stack, and the pieces that differ between stacks.
EXPECTED_COUNTS = {
    "dev": {"total": 106, "Subnet": 6, "NatGateway": 1, "Eip": 1, "RouteTable": 3, "Instance": 3, "Volume": 3,
            "VolumeAttachment": 3},
    "staging": {"total": 114, "Subnet": 9, "NatGateway": 1, "Eip": 1, "RouteTable": 4, "Instance": 3, "Volume": 3,
                "VolumeAttachment": 3},
    "prod": {"total": 118, "Subnet": 9, "NatGateway": 3, "Eip": 3, "RouteTable": 4, "Instance": 3, "Volume": 3,
             "VolumeAttachment": 3},
}
EXPECTED_OUTPUTS = {"vpcId", "publicSubnetIds", "privateSubnetIds", "databaseSubnetIds", "albDnsName", "bucketNames",
                    "targetGroupArns", "autoScalingGroups", "databasePrimaryAddress", "databaseReplicaAddress",
                    "databaseReplica2Address", "deployTableName"}


def test_resource_counts(built):
    expected = EXPECTED_COUNTS[built.stack]
    assert len(built.custom) == expected["total"]
    for short, n in expected.items():
        if short != "total":
            assert len(built.of(short)) == n, short


def test_every_output_present(built, settings_of):
    s = settings_of(built.stack)
    out = built.outputs
    assert set(out) == EXPECTED_OUTPUTS
    for kind in ("public", "private", "database"):
        assert len(out[f"{kind}SubnetIds"]) == s.az_count and all(out[f"{kind}SubnetIds"])
    assert set(out["bucketNames"]) == {"media", "artifacts", "backups", "logs"}
    assert out["bucketNames"]["media"] == f"{s.bucket_prefix}-media"
    assert set(out["targetGroupArns"]) == {"streaming", "catalog"}
    assert out["albDnsName"].endswith(".elb.amazonaws.com")
    for member in ("Primary", "Replica", "Replica2"):
        ipaddress.ip_address(out[f"database{member}Address"])
    assert out["deployTableName"] == deploy_table_name(s.environment) == f"roadie-{s.environment}-deploys"


def test_zones_are_available_and_not_opt_in(built):
    call = next(c for c in built.calls if c["token"].endswith("getAvailabilityZones"))
    assert call["args"]["state"] == "available"
    assert {"name": "opt-in-status", "values": ["opt-in-not-required"]} in call["args"]["filters"]


def _subnets(built) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for sn in built.of("Subnet"):
        out.setdefault(sn["inputs"]["tags"]["roadie:subnet"], []).append(sn)
    return out


def test_subnets_inside_the_vpc_and_disjoint(built, settings_of):
    vpc = ipaddress.ip_network(built.of("Vpc")[0]["inputs"]["cidrBlock"])
    assert vpc == settings_of(built.stack).vpc_cidr
    nets = [ipaddress.ip_network(sn["inputs"]["cidrBlock"]) for sn in built.of("Subnet")]
    assert all(n.subnet_of(vpc) for n in nets)
    assert not [(a, b) for a, b in itertools.combinations(nets, 2) if a.overlaps(b)]


def test_each_subnet_kind_spans_every_zone(built, settings_of):
    s = settings_of(built.stack)
    kinds = _subnets(built)
    assert set(kinds) == {"public", "private", "database"}
    for kind, subnets in kinds.items():
        zones = [sn["inputs"]["availabilityZone"] for sn in subnets]
        assert len(set(zones)) == len(zones) == s.az_count, kind


def _default_route(built, subnet_id: str) -> dict:
    assoc = next(a for a in built.of("RouteTableAssociation") if a["inputs"]["subnetId"] == subnet_id)
    return next(r for r in built.of("Route") if r["inputs"]["routeTableId"] == assoc["inputs"]["routeTableId"]
                and r["inputs"]["destinationCidrBlock"] == "0.0.0.0/0")


def test_public_subnets_route_to_the_internet_gateway(built):
    igw = built.of("InternetGateway")[0]["id"]
    for sn in _subnets(built)["public"]:
        assert _default_route(built, sn["id"])["inputs"].get("gatewayId") == igw


@pytest.mark.parametrize("kind", ["private", "database"])
def test_private_subnets_route_through_a_nat(built, settings_of, kind):
    nats = {n["id"]: n for n in built.of("NatGateway")}
    public_zone = {sn["id"]: sn["inputs"]["availabilityZone"] for sn in _subnets(built)["public"]}
    per_az = settings_of(built.stack).nat_per_az
    for sn in _subnets(built)[kind]:
        route = _default_route(built, sn["id"])["inputs"]
        assert "gatewayId" not in route
        nat = nats[route["natGatewayId"]]
        if per_az:  # an AZ's outage must not cut the others' egress
            assert public_zone[nat["inputs"]["subnetId"]] == sn["inputs"]["availabilityZone"]


def test_s3_endpoint_and_flow_logs(built):
    endpoint = built.of("VpcEndpoint")[0]["inputs"]
    assert endpoint["vpcEndpointType"] == "Gateway" and endpoint["serviceName"].endswith(".s3")
    private_tables = {_default_route(built, sn["id"])["inputs"]["routeTableId"] for sn in _subnets(built)["private"]}
    assert set(endpoint["routeTableIds"]) == private_tables
    flow = built.of("FlowLog")[0]["inputs"]
    logs_bucket = next(b for b in built.of("Bucket") if b["id"].endswith("-logs"))
    assert flow["logDestination"] == logs_bucket["state"]["arn"] and flow["trafficType"] == "ALL"


# Who may reach whom on which port; anything not listed must be impossible.
def tier_matrix(streaming_port: int, catalog_port: int, db_port: int, *cluster_ports: int) -> set[tuple[str, str, int]]:
    """CLUSTER_PORTS: etcd's and Patroni's, between database hosts only."""
    return {
        ("internet", "loadbalancer", 80), ("internet", "loadbalancer", 443),
        ("loadbalancer", "streaming", streaming_port), ("loadbalancer", "catalog", catalog_port),
        ("catalog", "database", db_port), ("database", "database", db_port),
        *(("database", "database", p) for p in cluster_ports),
    }

PORTS = {"streaming": STACK.service("streaming").port, "catalog": STACK.service("catalog").port,
         "database": STACK.database.port, "etcd_client": STACK.database.etcd_client_port,
         "etcd_peer": STACK.database.etcd_peer_port, "patroni_rest": STACK.database.patroni_rest_port}
CLUSTER = ("etcd_client", "etcd_peer", "patroni_rest")


def ingress_graph(built) -> set[tuple[str, str, int]]:
    role = {g["id"]: g["inputs"]["tags"]["roadie:role"] for g in built.of("SecurityGroup")}
    edges = set()
    for r in built.of("SecurityGroupIngressRule"):
        i = r["inputs"]
        assert i["fromPort"] == i["toPort"] and i["ipProtocol"] == "tcp"
        source = role[i["referencedSecurityGroupId"]] if "referencedSecurityGroupId" in i else {
            "0.0.0.0/0": "internet"}[i["cidrIpv4"]]
        edges.add((source, role[i["securityGroupId"]], int(i["fromPort"])))
    return edges


def test_security_group_graph_is_the_tier_matrix(built):
    assert ingress_graph(built) == tier_matrix(PORTS["streaming"], PORTS["catalog"], PORTS["database"],
                                               *(PORTS[p] for p in CLUSTER))
    assert (PORTS["streaming"], PORTS["catalog"], PORTS["database"]) == (80, 8080, 5432)
    assert tuple(PORTS[p] for p in CLUSTER) == (2379, 2380, 8008)


@pytest.mark.parametrize("source, target, port, allowed", [
    ("internet", "loadbalancer", 443, True),
    ("internet", "loadbalancer", 80, True),
    ("internet", "loadbalancer", 22, False),
    ("internet", "streaming", "streaming", False),
    ("internet", "database", "database", False),
    ("loadbalancer", "streaming", "streaming", True),
    ("loadbalancer", "catalog", "catalog", True),
    ("loadbalancer", "database", "database", False),
    ("streaming", "database", "database", False),
    ("streaming", "catalog", "catalog", False),
    ("catalog", "database", "database", True),
    ("database", "database", "database", True),
    ("catalog", "streaming", "streaming", False),
    # The HA cluster forms only if its members reach each other's etcd and Patroni; nobody else does.
    *(("database", "database", p, True) for p in CLUSTER),
    *((src, "database", p, False) for p in CLUSTER for src in ("internet", "loadbalancer", "streaming", "catalog")),
])
def test_who_may_reach_whom(built, source, target, port, allowed):
    port = PORTS.get(port, port)
    assert ((source, target, port) in ingress_graph(built)) is allowed


def test_egress_is_restricted_per_tier(built):
    streaming, catalog, postgres = PORTS["streaming"], PORTS["catalog"], PORTS["database"]
    role = {g["id"]: g["inputs"]["tags"]["roadie:role"] for g in built.of("SecurityGroup")}
    egress = set()
    for r in built.of("SecurityGroupEgressRule"):
        i = r["inputs"]
        peer = role[i["referencedSecurityGroupId"]] if "referencedSecurityGroupId" in i else i["cidrIpv4"]
        egress.add((role[i["securityGroupId"]], peer, int(i["fromPort"]), int(i["toPort"])))
    assert egress == {
        ("loadbalancer", "streaming", streaming, streaming),
        ("loadbalancer", "catalog", catalog, catalog),
        ("streaming", "0.0.0.0/0", 443, 443), ("catalog", "0.0.0.0/0", 443, 443),
        ("catalog", "database", postgres, postgres), ("database", "database", postgres, postgres),
        *(("database", "database", PORTS[p], PORTS[p]) for p in CLUSTER),
        ("database", "0.0.0.0/0", 443, 443),
    }
    assert not [g for g in built.of("SecurityGroup") if g["inputs"].get("ingress") or g["inputs"].get("egress")]


def test_alb_listeners_and_routes(built, settings_of):
    s = settings_of(built.stack)
    alb = built.of("LoadBalancer")[0]
    assert alb["inputs"]["loadBalancerType"] == "application" and alb["inputs"]["internal"] is False
    public_ids = {sn["id"] for sn in _subnets(built)["public"]}
    assert set(alb["inputs"]["subnets"]) == public_ids
    listeners = {int(lst["inputs"]["port"]): lst for lst in built.of("Listener")}
    assert set(listeners) == {80, 443}
    https, http = listeners[443]["inputs"], listeners[80]["inputs"]
    assert https["protocol"] == "HTTPS" and https["certificateArn"] == s.certificate_arn
    assert https["sslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    assert http["defaultActions"] == [{"type": "redirect", "redirect": {
        "port": "443", "protocol": "HTTPS", "statusCode": "HTTP_301"}}]
    tg_service = {tg["state"]["arn"]: tg["inputs"]["tags"]["roadie:role"] for tg in built.of("TargetGroup")}
    routes, priorities = {}, {}
    for rule in built.of("ListenerRule"):
        i = rule["inputs"]
        assert i["listenerArn"] == listeners[443]["state"]["arn"]
        (cond,) = i["conditions"]
        (action,) = i["actions"]
        routes[tuple(cond["pathPattern"]["values"])] = tg_service[action["targetGroupArn"]]
        priorities[tg_service[action["targetGroupArn"]]] = int(i["priority"])
    assert routes == {(svc.balancer.route_prefix, f"{svc.balancer.route_prefix}/*"): name
                      for name, svc in STACK.services.items()}
    assert routes == {("/api", "/api/*"): "catalog", ("/stream", "/stream/*"): "streaming"}
    assert priorities == {"catalog": 10, "streaming": 20}  # as before the model: no rule is replaced


@pytest.mark.parametrize("service", ["streaming", "catalog"])
def test_target_groups(built, settings_of, service):
    s = settings_of(built.stack)
    svc = STACK.service(service)
    tg = next(t for t in built.of("TargetGroup") if t["inputs"]["tags"]["roadie:role"] == service)["inputs"]
    assert int(tg["port"]) == svc.port
    assert int(tg["deregistrationDelay"]) == s.deregistration_delay
    check = tg["healthCheck"]
    assert (check["path"], check["port"], check["matcher"], check["protocol"]) == (svc.health_path, "traffic-port",
                                                                                   "200", "HTTP")
    assert check["path"] == "/healthz" and tg["targetType"] == "instance"
    assert tg["name"] == f"roadie-{s.environment}-{svc.backend}"


@pytest.mark.parametrize("service", ["streaming", "catalog"])
def test_auto_scaling_groups_follow_config(built, settings_of, service):
    cfg = getattr(settings_of(built.stack), service)
    asg = next(g for g in built.of("Group") if g["name"] == f"compute-{service}")["inputs"]
    assert (asg["minSize"], asg["maxSize"], asg["desiredCapacity"]) == (cfg.min_size, cfg.max_size,
                                                                        cfg.desired_capacity)
    tg = next(t for t in built.of("TargetGroup") if t["inputs"]["tags"]["roadie:role"] == service)
    assert asg["targetGroupArns"] == [tg["state"]["arn"]]
    assert asg["healthCheckType"] == "ELB" and asg["instanceRefresh"]["strategy"] == "Rolling"
    # A new host must survive boot + converge + first deploy before the target group's verdict counts.
    assert int(asg["healthCheckGracePeriod"]) == cfg.health_check_grace_period == 900
    assert int(asg["instanceRefresh"]["preferences"]["instanceWarmup"]) == cfg.health_check_grace_period
    private_ids = {sn["id"] for sn in _subnets(built)["private"]}
    assert set(asg["vpcZoneIdentifiers"]) == private_ids
    template = built.by_id(asg["launchTemplate"]["id"])["inputs"]
    assert template["instanceType"] == cfg.instance_type
    assert {t["key"]: t["value"] for t in asg["tags"]}["roadie:role"] == service


# Each stack's database members: Name tag -> (roadie:db-role, AZ index), as its Pulumi.<stack>.yaml says.
DB_MEMBERS = {
    "dev": {"db-primary": ("primary", 0), "db-replica": ("replica", 1), "db-replica-2": ("replica", 1)},
    "staging": {"db-primary": ("primary", 0), "db-replica": ("replica", 1), "db-replica-2": ("replica", 2)},
    "prod": {"db-primary": ("primary", 0), "db-replica": ("replica", 2), "db-replica-2": ("replica", 1)},
}


def test_three_database_members_in_their_zones_with_their_volumes(built, settings_of):
    """Three Patroni members (etcd quorum with one down), in the settings' AZs, each with its own data volume."""
    s = settings_of(built.stack)
    db_subnets = {sn["id"]: sn for sn in _subnets(built)["database"]}
    zones = sorted({sn["inputs"]["availabilityZone"] for sn in db_subnets.values()})
    hosts = {i["inputs"]["tags"]["Name"]: i for i in built.of("Instance")}
    assert {name: (h["inputs"]["tags"]["roadie:db-role"], zones.index(h["inputs"]["availabilityZone"]))
            for name, h in hosts.items()} == DB_MEMBERS[built.stack]
    member_zones = [h["inputs"]["availabilityZone"] for h in hosts.values()]
    # Every member in its own AZ where the stack has three; else no replica beside the primary.
    assert len(set(member_zones)) == min(3, s.az_count)
    assert [z for z in member_zones if z == zones[s.database.primary_az]] == [zones[s.database.primary_az]]
    volumes = set()
    for name, h in hosts.items():
        zone = h["inputs"]["availabilityZone"]
        subnet = db_subnets[h["inputs"]["subnetId"]]
        assert subnet["inputs"]["availabilityZone"] == zone
        assert ipaddress.ip_address(h["state"]["privateIp"]) in ipaddress.ip_network(subnet["inputs"]["cidrBlock"])
        assert built.outputs[program.address_output(name.removeprefix("db-"))] == h["state"]["privateIp"]
        (att,) = [a for a in built.of("VolumeAttachment") if a["inputs"]["instanceId"] == h["id"]]
        volume = built.by_id(att["inputs"]["volumeId"])
        vol = volume["inputs"]
        assert vol["availabilityZone"] == zone
        assert vol["tags"]["roadie:db-role"] == h["inputs"]["tags"]["roadie:db-role"]
        assert (vol["type"], vol["encrypted"], vol["size"]) == ("gp3", True, s.database.volume_size_gb)
        volumes.add(volume["id"])
    assert len(volumes) == 3


def test_existing_database_resources_keep_their_names(built):
    """A two-member stack's primary and replica are not replaced; only replica-2's resources are new."""
    names = {r["name"] for kind in ("Instance", "Volume", "VolumeAttachment") for r in built.of(kind)}
    assert names == {f"{kind}-db-{member}{suffix}" for member in ("primary", "replica", "replica-2")
                     for kind, suffix in (("compute", ""), ("storage", "-data"), ("compute", "-data"))}


@pytest.mark.parametrize("kind, sse", [("media", "aws:kms"), ("artifacts", "aws:kms"), ("backups", "aws:kms"),
                                       ("logs", "AES256")])
def test_buckets_are_guarded(built, kind, sse):
    bucket = next(b for b in built.of("Bucket") if b["id"].endswith(f"-{kind}"))
    guards = {r["type"].rsplit(":", 1)[1]: r["inputs"] for r in built.custom
              if r["inputs"].get("bucket") == bucket["id"]}
    assert guards["BucketVersioning"]["versioningConfiguration"]["status"] == "Enabled"
    (rule,) = guards["BucketServerSideEncryptionConfiguration"]["rules"]
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == sse
    pab = guards["BucketPublicAccessBlock"]
    assert all(pab[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
    deny = json.loads(guards["BucketPolicy"]["policy"])["Statement"][0]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert guards["BucketLifecycleConfiguration"]["rules"]


def test_lifecycle_rules(built, settings_of):
    s = settings_of(built.stack)
    rules = {b["inputs"]["bucket"]: b["inputs"]["rules"] for b in built.of("BucketLifecycleConfiguration")}
    media = rules[f"{s.bucket_prefix}-media"][0]
    assert media["transitions"] == [{"days": s.media_infrequent_after_days, "storageClass": "STANDARD_IA"}]
    backups = rules[f"{s.bucket_prefix}-backups"][0]
    assert backups["noncurrentVersionExpiration"]["noncurrentDays"] == s.backup_retention_days


def test_ssm_command_output_expires_after_a_few_days(built, settings_of):
    """The agents' copies of run_each's output (the transport's OUTPUT_PREFIX) are read once, when the
    command ends: they go after a few days, old versions and delete markers included (the bucket is
    versioned), while releases and staged files keep the artifacts bucket's own rules."""
    from roadie.transport.ssm import OUTPUT_PREFIX

    s = settings_of(built.stack)
    rules = {b["inputs"]["bucket"]: b["inputs"]["rules"] for b in built.of("BucketLifecycleConfiguration")}
    artifacts = rules[f"{s.bucket_prefix}-artifacts"]
    output = [r for r in artifacts if r["filter"].get("prefix") == f"{OUTPUT_PREFIX}/"]
    assert len(output) == 1, f"no lifecycle rule on the artifacts bucket for {OUTPUT_PREFIX}/: {artifacts}"
    (rule,) = output
    assert rule["status"] == "Enabled"
    assert 1 <= rule["expiration"]["days"] <= 7
    assert rule["noncurrentVersionExpiration"]["noncurrentDays"] <= 7
    assert rule["abortIncompleteMultipartUpload"]["daysAfterInitiation"] <= 7
    # the whole bucket's rules still hold for everything else
    whole = {r["id"] for r in artifacts if r["filter"].get("prefix") == ""}
    assert whole == {"expire-old-artifact-versions", "abort-incomplete-uploads"}
    assert all("expiration" not in r for r in artifacts if r["filter"].get("prefix") == "")


def _bucket_keys(resource: str) -> str:
    """arn:aws:s3:::roadie-dev-artifacts/roadie-output/* -> artifacts/roadie-output/* (the kind, then the keys)."""
    bucket, _, keys = resource.split(":::", 1)[1].partition("/")
    return f"{bucket.rsplit('-', 1)[1]}/{keys}"


@pytest.mark.parametrize("tier, readable, writable", [
    ("streaming", {"artifacts/*", "media/*"}, {"artifacts/roadie-output/*"}),
    ("catalog", {"artifacts/*"}, {"artifacts/roadie-output/*"}),
    ("database", {"backups/*"}, {"backups/*", "artifacts/roadie-output/*"}),
])
def test_instance_roles_are_least_privilege(built, tier, readable, writable):
    """Which objects each tier may read and write, by bucket and keys: the SSM agent's output only under
    the transport's prefix (roadie-output/*), never over releases or another tier's files."""
    env = {"dev": "dev", "staging": "staging", "prod": "production"}[built.stack]
    policy = next(p for p in built.of("RolePolicy") if p["name"] == f"compute-{tier}-access")
    doc = json.loads(policy["inputs"]["policy"])
    reads, writes = set(), set()
    for st in doc["Statement"]:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        assert st["Resource"] != "*" and not any(a.endswith(":*") for a in actions)
        if "s3:GetObject" in actions:
            reads.add(_bucket_keys(st["Resource"]))
        if "s3:PutObject" in actions:
            writes.add(_bucket_keys(st["Resource"]))
        if any(a.startswith("ssm:") for a in actions):
            assert st["Resource"].endswith(f":parameter/roadie/{env}/{tier}/*")
    assert reads == readable
    assert writes == writable


def test_every_taggable_resource_is_tagged(built):
    env = {"dev": "dev", "staging": "staging", "prod": "production"}[built.stack]
    for r in built.custom:
        tags = r["inputs"].get("tags")
        if isinstance(tags, list):
            tags = {t["key"]: t["value"] for t in tags}
        if tags is None:
            continue
        assert all(tags.get(k) for k in REQUIRED_TAGS), r["name"]
        assert tags["roadie:env"] == env


def test_hosts_carry_the_inventory_tags(built):
    """The aws_ec2 inventories group hosts by these; see inventories/*/aws_ec2.yml."""
    roles = set()
    for lt in built.of("LaunchTemplate"):
        spec = next(t for t in lt["inputs"]["tagSpecifications"] if t["resourceType"] == "instance")
        roles.add(spec["tags"]["roadie:role"])
    for inst in built.of("Instance"):
        roles.add(inst["inputs"]["tags"]["roadie:role"])
        assert inst["inputs"]["tags"]["roadie:db-role"] in ("primary", "replica")
    assert roles == {"streaming", "catalog", "database"}


def test_deploy_table(built, settings_of):
    """The deploy lock, journal and audit log (issue 11): one table per environment."""
    s = settings_of(built.stack)
    (table,) = built.of("Table")
    i = table["inputs"]
    assert i["name"] == built.outputs["deployTableName"] == f"roadie-{s.environment}-deploys"
    assert (i["hashKey"], i["rangeKey"], i["billingMode"]) == ("pk", "sk", "PAY_PER_REQUEST")
    assert sorted((a["name"], a["type"]) for a in i["attributes"]) == [("pk", "S"), ("sk", "S")]
    (key,) = built.of("Key")
    assert i["serverSideEncryption"] == {"enabled": True, "kmsKeyArn": key["state"]["arn"]}
    assert i["pointInTimeRecovery"] == {"enabled": True}
    assert i["ttl"] == {"attributeName": "expires_at", "enabled": True}
    assert i["deletionProtectionEnabled"] is s.production
    assert i["tags"]["roadie:env"] == s.environment and all(i["tags"].get(k) for k in REQUIRED_TAGS)


def test_a_tier_without_a_balancer_section_gets_no_route_and_ec2_health_checks(tmp_path):
    """The tiers are the model's data: streaming, its balancer section left out, keeps its hosts and its
    security group but gets no target group, no listener rule, no ingress from the ALB, and its auto scaling
    group judges instances by EC2 status checks (there is no target group verdict to read)."""
    import yaml

    from infra_testlib import INFRA, Built, run_mocked

    doc = yaml.safe_load((INFRA.parent / "inventories" / "stack.yml").read_text())
    doc["roadie_services"]["streaming"].pop("balancer")
    planted = tmp_path / "stack.yml"
    planted.write_text(yaml.safe_dump(doc))
    proc = run_mocked("dev", env={"ROADIE_STACK_FILE": str(planted)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    built = Built(stack="dev", **json.loads(proc.stdout))
    assert [tg["inputs"]["tags"]["roadie:role"] for tg in built.of("TargetGroup")] == ["catalog"]
    assert len(built.of("ListenerRule")) == 1 and set(built.outputs["targetGroupArns"]) == {"catalog"}
    groups = {g["name"]: g["inputs"] for g in built.of("Group")}
    streaming = next(i for n, i in groups.items() if "streaming" in n)
    catalog = next(i for n, i in groups.items() if "catalog" in n)
    assert (streaming.get("targetGroupArns") or []) == [] and streaming["healthCheckType"] == "EC2"
    assert len(catalog["targetGroupArns"]) == 1 and catalog["healthCheckType"] == "ELB"
    edges = ingress_graph(built)
    assert not any(src == "loadbalancer" and dst == "streaming" for src, dst, _ in edges)
    assert ("loadbalancer", "catalog", 8080) in edges and any(r["name"].endswith("streaming") for r in
                                                              built.of("SecurityGroup"))
