"""Stack settings: every stack file parses, and bad config is one line naming the key."""

from __future__ import annotations

import copy
import ipaddress
import json

import pytest
import yaml

from infra_testlib import INFRA, STACKS, run_mocked
from roadie_infra import layout, settings


def _raw(stack: str = "dev") -> dict:
    doc = yaml.safe_load((INFRA / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {k.removeprefix("roadie:"): v for k, v in doc.items() if k.startswith("roadie:")}


def test_every_stack_file_parses():
    assert settings.stacks() == sorted(STACKS)
    for stack in STACKS:
        assert settings.from_stack_file(stack).environment in ("dev", "staging", "production")


@pytest.mark.parametrize("stack, az_count, nat_per_az", [("dev", 2, False), ("staging", 3, False), ("prod", 3, True)])
def test_stacks_differ_as_designed(stack, az_count, nat_per_az):
    s = settings.from_stack_file(stack)
    assert (s.az_count, s.nat_per_az) == (az_count, nat_per_az)


def _set(raw: dict, dotted: str, value) -> dict:
    raw = copy.deepcopy(raw)
    *parents, leaf = dotted.split(".")
    node = raw
    for p in parents:
        node = node[p]
    if value is DELETE:
        del node[leaf]
    else:
        node[leaf] = value
    return raw


DELETE = object()

BAD = [
    ("vpcCidr", DELETE, "Stack config is missing roadie:vpcCidr."),
    ("vpcCidr", "10.0.0.0/33", "Bad stack config roadie:vpcCidr: Input is not a valid IPv4 network"),
    ("vpcCidr", "10.0.0.1/16", "Bad stack config roadie:vpcCidr: Input is not a valid IPv4 network"),
    ("vpcCidr", "10.0.0.0/8", "Bad stack config roadie:vpcCidr: the VPC must be a /16 to /24 network"),
    ("azCount", 0, "Bad stack config roadie:azCount: Input should be greater than or equal to 2 (got 0)."),
    ("azCount", 5, "Bad stack config roadie:azCount: Input should be less than or equal to 4"),
    ("azCount", "three", "Bad stack config roadie:azCount: Input should be a valid integer"),
    ("natPerAz", "maybe", "Bad stack config roadie:natPerAz: Input should be a valid boolean"),
    ("environment", "prod", "Bad stack config roadie:environment: Input should be 'dev', 'staging' or 'production'"),
    ("certificateArn", "not-an-arn", "Bad stack config roadie:certificateArn: String should match pattern"),
    ("bucketPrefix", "Roadie_Prod", "Bad stack config roadie:bucketPrefix: String should match pattern"),
    ("owner", DELETE, "Stack config is missing roadie:owner."),
    ("streaming", DELETE, "Stack config is missing roadie:streaming."),
    ("streaming.minSize", DELETE, "Stack config is missing roadie:streaming.minSize."),
    # Ports, health paths and routes are the service model's (inventories/stack.yml), never a stack's.
    ("streaming.port", 8000, "Stack config has an unknown key roadie:streaming.port."),
    ("catalog.healthCheckPath", "/health", "Stack config has an unknown key roadie:catalog.healthCheckPath."),
    ("catalog.desiredCapacity", 9, "Bad stack config roadie:catalog.desiredCapacity: must lie between minSize 1"),
    ("catalog.healthCheckGracePeriod", 30,
     "Bad stack config roadie:catalog.healthCheckGracePeriod: Input should be greater than or equal to 60"),
    ("catalog.instanceTyp", "t3.small", "Stack config has an unknown key roadie:catalog.instanceTyp."),
    ("database.replicaAzs", [0, 1],
     "Bad stack config roadie:database.replicaAzs: a replica must not share the primary's AZ (0)."),
    ("database.replicaAzs", [1],
     "Bad stack config roadie:database.replicaAzs: Tuple should have at least 2 items after validation, not 1"),
    ("database.replicaAzs", [1, 1, 1],
     "Bad stack config roadie:database.replicaAzs: Tuple should have at most 2 items after validation, not 3"),
    ("database.replicaAzs", [1, -1],
     "Bad stack config roadie:database.replicaAzs.1: Input should be greater than or equal to 0"),
    ("database.replicaAzs", [1, 2],
     "Bad stack config roadie:database.replicaAzs.1: AZ index 2 is outside the stack's 2 AZs (0..1)."),
    ("database.replicaAz", 1, "Stack config has an unknown key roadie:database.replicaAz."),
    ("database.primaryAz", 2, "Bad stack config roadie:database.primaryAz: AZ index 2 is outside the stack's 2 AZs"),
    ("database.volumeSizeGb", 5,
     "Bad stack config roadie:database.volumeSizeGb: Input should be greater than or equal to 20"),
]


@pytest.mark.parametrize("key, value, message", BAD,
                         ids=[f"{k}={v if v is not DELETE else 'missing'}" for k, v, _ in BAD])
def test_bad_config_is_one_line_naming_the_key(key, value, message):
    with pytest.raises(settings.ConfigError) as exc:
        settings.parse(_set(_raw(), key, value))
    text = str(exc.value)
    assert text.startswith(message)
    assert "\n" not in text


# The database members' AZs on a three-AZ stack (staging): each member in its own.
BAD_THREE_AZ = [
    ({"primaryAz": 0, "replicaAzs": [1, 1]},
     "Bad stack config roadie:database.replicaAzs: with 3 AZs every database member needs its own AZ, "
     "got both replicas in AZ 1."),
    ({"primaryAz": 2, "replicaAzs": [2, 2]},
     "Bad stack config roadie:database.replicaAzs: a replica must not share the primary's AZ (2)."),
    ({"primaryAz": 1, "replicaAzs": [0, 1]},
     "Bad stack config roadie:database.replicaAzs: a replica must not share the primary's AZ (1)."),
    ({"primaryAz": 0, "replicaAzs": [3, 1]},
     "Bad stack config roadie:database.replicaAzs.0: AZ index 3 is outside the stack's 3 AZs (0..2)."),
]


@pytest.mark.parametrize("azs, message", BAD_THREE_AZ, ids=[str(a) for a, _ in BAD_THREE_AZ])
def test_three_az_stacks_put_each_database_member_in_its_own_az(azs, message):
    raw = _raw("staging")
    raw["database"] = {**raw["database"], **azs}
    with pytest.raises(settings.ConfigError) as exc:
        settings.parse(raw)
    assert str(exc.value) == message


@pytest.mark.parametrize("stack, members", [
    ("dev", (("primary", "primary", 0), ("replica", "replica", 1), ("replica-2", "replica", 1))),
    ("staging", (("primary", "primary", 0), ("replica", "replica", 1), ("replica-2", "replica", 2))),
    ("prod", (("primary", "primary", 0), ("replica", "replica", 2), ("replica-2", "replica", 1))),
])
def test_database_members_of_each_stack(stack, members):
    """Three members; the first replica keeps the AZ a two-member stack gave `replica` (prod: 2)."""
    assert settings.from_stack_file(stack).database.members == members


def test_structured_values_arrive_as_json_text():
    """The Pulumi CLI passes objects as JSON strings and scalars as text."""
    raw = {f"roadie:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in _raw("prod").items()}
    assert settings.from_mapping(raw) == settings.from_stack_file("prod")


def test_grace_period_defaults_to_cover_bootstrap():
    for stack in STACKS:
        s = settings.from_stack_file(stack)
        assert s.streaming.health_check_grace_period == s.catalog.health_check_grace_period == 900


@pytest.mark.parametrize("override, message", [
    ("roadie:azCount=0", "Bad stack config roadie:azCount:"),
    ("roadie:streaming={\"instanceType\": \"t3.small\", \"minSize\": 1, \"maxSize\": 2, \"desiredCapacity\": 1, "
     "\"port\": 8000}", "Stack config has an unknown key roadie:streaming.port."),
    ("roadie:database={\"instanceType\": \"t3.medium\", \"volumeSizeGb\": 20, \"primaryAz\": 1, "
     "\"replicaAzs\": [0, 1]}",
     "Bad stack config roadie:database.replicaAzs: a replica must not share the primary's AZ"),
    ("roadie:database={\"instanceType\": \"t3.medium\", \"volumeSizeGb\": 20, \"primaryAz\": 1, \"replicaAzs\": [0]}",
     "Bad stack config roadie:database.replicaAzs: Tuple should have at least 2 items"),
])
def test_the_program_rejects_bad_config_before_creating_anything(override, message):
    proc = run_mocked("dev", override)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert proc.stderr.strip().startswith(message) and proc.stdout == ""


@pytest.mark.parametrize("cidr, zones", [("10.0.0.0/16", ["a", "b"]), ("10.1.0.0/20", ["a", "b", "c"]),
                                         ("192.168.0.0/24", ["a", "b", "c", "d"])])
def test_subnet_plan(cidr, zones):
    plan = layout.plan_subnets(cidr, zones)
    vpc = ipaddress.ip_network(cidr)
    nets = [ipaddress.ip_network(p.cidr) for p in plan]
    assert len(plan) == 3 * len(zones)
    assert all(n.subnet_of(vpc) and n.prefixlen == vpc.prefixlen + 4 for n in nets)
    assert len(set(nets)) == len(nets)
    for kind in layout.KINDS:
        assert [p.zone for p in plan if p.kind == kind] == zones


def test_subnet_plan_keeps_existing_subnets_when_a_zone_is_added():
    two = {(p.kind, p.zone): p.cidr for p in layout.plan_subnets("10.0.0.0/16", ["a", "b"])}
    three = {(p.kind, p.zone): p.cidr for p in layout.plan_subnets("10.0.0.0/16", ["a", "b", "c"])}
    assert all(three[k] == v for k, v in two.items())


@pytest.mark.parametrize("model_text, message", [
    ("roadie_services: {}\n", "bad-stack.yml: loadbalancer:"),
    (None, "The service model"),
])
def test_the_program_rejects_a_bad_service_model(tmp_path, model_text, message):
    """Ports and health paths come from the model: a broken one stops the program, one line."""
    planted = tmp_path / "bad-stack.yml"
    if model_text is not None:
        planted.write_text(model_text)
    proc = run_mocked("dev", env={"ROADIE_STACK_FILE": str(planted)})
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert proc.stderr.strip().startswith(message) and "\n" not in proc.stderr.strip() and proc.stdout == ""


WORKER = {"kind": "service", "group": "worker", "port": 9000, "health_path": "/healthz", "version_path": "/version",
          "version_header": "X-Roadie-Version"}


@pytest.mark.parametrize(("change", "message"), [
    # the app tiers are the model's: a stack setting for a tier the model lacks is refused...
    (lambda services: services.pop("streaming"),
     "Stack config has an unknown key roadie:streaming (the app tiers are the service model's: catalog)."),
    # ...and a model tier the stack does not size, or whose bucket access nobody wrote, too
    (lambda services: services.update(worker=WORKER), "Stack config is missing roadie:worker."),
    (lambda services: services.update(worker=WORKER), "The service model MODEL has the tier(s) worker, which "
     "compute.BUCKET_ACCESS gives no bucket access: say what their hosts may do with the buckets (least "
     "privilege is written, never assumed)."),
], ids=["tier-not-in-model", "model-tier-not-sized", "model-tier-without-bucket-access"])
def test_the_app_tiers_are_the_model_s(tmp_path, change, message):
    doc = yaml.safe_load((INFRA.parent / "inventories" / "stack.yml").read_text())
    change(doc["roadie_services"])
    planted = tmp_path / "stack.yml"
    planted.write_text(yaml.safe_dump(doc))
    sized = ['roadie:worker={"instanceType": "t3.small", "minSize": 1, "maxSize": 2, "desiredCapacity": 1}'
             ] if "BUCKET_ACCESS" in message else []
    message = message.replace("MODEL", str(planted))
    proc = run_mocked("dev", *sized, env={"ROADIE_STACK_FILE": str(planted)})
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert proc.stderr.strip() == message
