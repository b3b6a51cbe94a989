"""Run one stack's program under Pulumi mocks and print what it built as JSON.

Each stack runs in its own process: Pulumi's runtime settings, config and the
root stack are process-global, so a fresh interpreter per stack keeps the
pytest-xdist workers (and other test modules) free of leaked state.

    python tests/infra/mockrun.py STACK [--set key=value ...]

Prints {"resources", "outputs", "calls", "violations"}; exits 3 with the
message on a stack config error.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
sys.path[:0] = [str(INFRA), str(INFRA / "policies")]

import pulumi  # noqa: E402
from pulumi_policy import PolicyResource, PolicyResourceOptions, ResourceValidationArgs, StackValidationArgs  # noqa: E402

import roadie_policies  # noqa: E402

ACCOUNT = "123456789012"
REGION = "us-east-1"
ZONES = ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d", "us-east-1e", "us-east-1f"]
IMAGE = "ami-0123456789abcdef0"


def _opts() -> PolicyResourceOptions:
    return PolicyResourceOptions(protect=False, ignore_changes=[], delete_before_replace=None, aliases=[],
                                 additional_secret_outputs=[], custom_timeouts=None)


class Mocks(pulumi.runtime.Mocks):
    """Fills in what AWS would compute, and runs the resource policies as resources arrive."""

    def __init__(self):
        self.resources: list[dict] = []
        self.calls: list[dict] = []
        self.violations: list[str] = []
        self.subnets: dict[str, str] = {}
        self.hosts: dict[str, int] = {}

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.calls.append({"token": args.token, "args": args.args})
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {"names": ZONES, "zoneIds": [f"use1-az{i + 1}" for i in range(len(ZONES))], "id": REGION}, []
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/ci", "userId": "AIDA", "id": ACCOUNT}, []
        if args.token == "aws:index/getRegion:getRegion":
            return {"region": REGION, "name": REGION, "id": REGION, "endpoint": f"ec2.{REGION}.amazonaws.com"}, []
        if args.token == "aws:ssm/getParameter:getParameter":
            return {"name": args.args["name"], "value": IMAGE, "type": "String", "id": args.args["name"]}, []
        raise NotImplementedError(f"no mock for invoke {args.token}")

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        typ, name, inputs = args.typ, args.name, dict(args.inputs)
        service = typ.split(":")[1].split("/")[0]
        rid = f"{name}-id"
        state = {**inputs, "arn": f"arn:aws:{service}:{REGION}:{ACCOUNT}:{name}"}
        if typ == "aws:s3/bucket:Bucket":
            rid = inputs.get("bucket") or f"{name}-0a1b2c3d"
            state.update(bucket=rid, arn=f"arn:aws:s3:::{rid}")
        elif typ == "aws:ec2/subnet:Subnet":
            self.subnets[rid] = inputs["cidrBlock"]
        elif typ == "aws:ec2/instance:Instance":
            n = self.hosts[inputs["subnetId"]] = self.hosts.get(inputs["subnetId"], 9) + 1
            state["privateIp"] = str(ipaddress.ip_network(self.subnets[inputs["subnetId"]])[n])
        elif typ == "aws:lb/loadBalancer:LoadBalancer":
            state["dnsName"] = f"{inputs.get('name', name)}-1234567890.{REGION}.elb.amazonaws.com"
        elif typ == "aws:ec2/launchTemplate:LaunchTemplate":
            state["latestVersion"] = 1
        elif typ == "aws:autoscaling/group:Group":
            state["name"] = f"{inputs.get('namePrefix', name)}20260101000000"
        elif typ == "aws:kms/key:Key":
            state["keyId"] = "0000aaaa-11bb-22cc-33dd-444444eeeeee"
        elif typ in ("aws:iam/role:Role", "aws:iam/instanceProfile:InstanceProfile"):
            state["name"] = f"{name}-0a1b2c3d"
        if args.custom:
            urn = f"urn:pulumi:mock::roadie::{typ}::{name}"
            for pname, (fn, _) in roadie_policies.RESOURCE_POLICIES.items():
                fn(ResourceValidationArgs(typ, inputs, urn, name, _opts(), None),
                   lambda msg, _urn=None, p=pname: self.violations.append(f"{p}: {msg}"))
        self.resources.append({"type": typ, "name": name, "id": rid, "custom": bool(args.custom),
                               "inputs": inputs, "state": state})
        return rid, state

    def stack_violations(self) -> list[str]:
        resources = [PolicyResource(r["type"], r["state"], f"urn:pulumi:mock::roadie::{r['type']}::{r['name']}",
                                    r["name"], _opts(), None, None, [], {})
                     for r in self.resources if r["custom"]]
        found = []
        for pname, (fn, _) in roadie_policies.STACK_POLICIES.items():
            fn(StackValidationArgs(resources), lambda msg, _urn=None, p=pname: found.append(f"{p}: {msg}"))
        return found


def stack_config(stack: str, overrides: list[str]) -> dict[str, str]:
    """The config map the Pulumi CLI would hand the program: all values as text."""
    doc = yaml.safe_load((INFRA / f"Pulumi.{stack}.yaml").read_text())["config"]
    for item in overrides:
        key, _, value = item.partition("=")
        doc[key] = yaml.safe_load(value)
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in doc.items() if v is not None}


def run(stack: str, overrides: list[str]) -> dict:
    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project="roadie", stack=stack, preview=False)
    pulumi.runtime.set_all_config(stack_config(stack, overrides))
    from roadie_infra import program, settings  # only after set_mocks

    outputs: dict = {}

    @pulumi.runtime.test
    def build():
        built = program.build(settings.from_pulumi())
        return pulumi.Output.from_input(built).apply(outputs.update)

    build()
    if not outputs:
        raise SystemExit("the program's outputs never resolved")
    return {"resources": mocks.resources, "outputs": outputs, "calls": mocks.calls,
            "violations": mocks.violations + mocks.stack_violations()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("stack")
    parser.add_argument("--set", action="append", default=[], help="override a config key: roadie:azCount=0")
    opts = parser.parse_args()
    from roadie_infra.settings import ConfigError

    try:
        result = run(opts.stack, opts.set)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(3) from None
    json.dump(result, sys.stdout, default=str, sort_keys=True)


if __name__ == "__main__":
    main()
