"""IAM grants of a mocked stack against iam_needs.yaml: what each role allows vs what its code calls.

Pure functions over a `Built` (infra_testlib) and the table, so the tests can plant
a defect in either and see it reported. `check(built)` is all of it:

    role_grants(built)                       tier -> RoleGrants, as the program wrote them
    role_needs(table, built, prefix)         tier -> RoleNeeds, the table resolved to this stack's ARNs
    disagreements(table, needs, grants, ..)  one line per missing or extra grant
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from infra_testlib import ROOT

NEEDS_FILE = Path(__file__).with_name("iam_needs.yaml")
IAM = "aws:iam/"
# The IAM resource types this check reads. Any other (a user, a group, a policy attached
# some other way) fails the check until it learns to read it: no grant goes unseen.
KNOWN_IAM_TYPES = {"aws:iam/role:Role", "aws:iam/rolePolicy:RolePolicy",
                   "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
                   "aws:iam/instanceProfile:InstanceProfile", "aws:iam/policy:Policy"}


def load_needs(path: Path = NEEDS_FILE) -> dict:
    return yaml.safe_load(path.read_text())


def backup_prefix() -> str:
    from roadie import model

    return model.load().database.backup_prefix


@dataclass
class RoleGrants:
    """What one role is allowed, as the program wrote it: (action, resource ARN) pairs and managed policies."""

    role: str
    actions: set[tuple[str, str]] = field(default_factory=set)
    managed: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)  # what the check cannot model


@dataclass
class RoleNeeds:
    """What one role must be allowed: each (action, ARN) with the table lines that need it."""

    actions: dict[tuple[str, str], list[dict]] = field(default_factory=dict)
    managed: dict[str, list[dict]] = field(default_factory=dict)


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def _statements(doc: dict, where: str, out: RoleGrants) -> None:
    for st in _listed(doc.get("Statement", [])):
        sid = st.get("Sid", "?")
        unmodelled = [k for k in ("NotAction", "NotResource", "Condition", "Principal") if k in st]
        if st.get("Effect") != "Allow" or unmodelled:
            out.problems.append(f"{out.role}: {where} statement {sid} has {st.get('Effect')} "
                                f"{', '.join(unmodelled)}: the IAM check does not model it; teach it first")
            continue
        for action in _listed(st.get("Action", [])):
            for resource in _listed(st.get("Resource", [])):
                out.actions.add((action, resource))


def role_grants(built) -> dict[str, RoleGrants]:
    """tier -> what its role allows. A role's tier is the roadie:role of the hosts whose instance
    profile carries it (launch templates, instances); a role no host uses keeps its own tag."""
    roles = built.of("Role")
    by_ref = {}  # role id and name -> role
    for r in roles:
        by_ref[r["id"]] = by_ref[r["state"].get("name") or r["id"]] = r
    profiles = {}  # profile ARN and name -> role
    for p in built.of("InstanceProfile"):
        role = by_ref.get(p["inputs"].get("role"))
        profiles[p["state"]["arn"]] = profiles[p["state"].get("name") or p["id"]] = role
    hosts: dict[str, set[str]] = {}  # role id -> tiers of the hosts that run with it
    for lt in built.of("LaunchTemplate"):
        spec = next(t for t in lt["inputs"]["tagSpecifications"] if t["resourceType"] == "instance")
        role = profiles.get((lt["inputs"].get("iamInstanceProfile") or {}).get("arn"))
        if role:
            hosts.setdefault(role["id"], set()).add(spec["tags"]["roadie:role"])
    for inst in built.of("Instance"):
        role = profiles.get(inst["inputs"].get("iamInstanceProfile"))
        if role:
            hosts.setdefault(role["id"], set()).add(inst["inputs"]["tags"]["roadie:role"])

    own_policies = {p["state"]["arn"]: p for p in built.of("Policy")}
    out: dict[str, RoleGrants] = {}
    for r in roles:
        tiers = hosts.get(r["id"]) or {(r["inputs"].get("tags") or {}).get("roadie:role", r["name"])}
        tier = "+".join(sorted(tiers))  # hosts of two tiers sharing a role: no table line matches
        if tier in out:
            out[tier].problems.append(f"{tier}: more than one role for these hosts; the check wants one per tier")
        g = out.setdefault(tier, RoleGrants(role=tier))
        refs = {r["id"], r["state"].get("name")}
        for p in r["inputs"].get("inlinePolicies") or []:
            _statements(json.loads(p["policy"]), f"inline policy {p.get('name')}", g)
        g.managed.update(r["inputs"].get("managedPolicyArns") or [])
        for rp in built.of("RolePolicy"):
            if rp["inputs"].get("role") in refs:
                _statements(json.loads(rp["inputs"]["policy"]), f"role policy {rp['name']}", g)
        for att in built.of("RolePolicyAttachment"):
            if att["inputs"].get("role") not in refs:
                continue
            arn = att["inputs"]["policyArn"]
            if arn in own_policies:
                _statements(json.loads(own_policies[arn]["inputs"]["policy"]), f"policy {own_policies[arn]['name']}", g)
            else:
                g.managed.add(arn)
    unknown = sorted({r["type"] for r in built.custom if r["type"].startswith(IAM)} - KNOWN_IAM_TYPES)
    for typ in unknown:
        out.setdefault("?", RoleGrants(role="?")).problems.append(
            f"the program creates {typ}, which the IAM check does not read; teach it first")
    return out


def resolve(symbol: str, built, prefix: str) -> str:
    """bucket:KIND[/KEYS] or key:NAME -> the ARN in this stack."""
    kind, _, rest = symbol.partition(":")
    if kind == "bucket":
        bucket, _, keys = rest.partition("/")
        name = built.outputs["bucketNames"][bucket]
        return f"arn:aws:s3:::{name}" + (f"/{keys.format(backup_prefix=prefix)}" if keys else "")
    if kind == "key":
        return built.one("Key", f"{rest}-key")["state"]["arn"]
    raise ValueError(f"iam_needs.yaml: unknown resource {symbol!r} (bucket:KIND[/KEYS] or key:NAME)")


def names(built, prefix: str, table: dict) -> dict[str, str]:
    """ARN -> the table's name for it, for messages (every bucket, its objects, each key, the table's own)."""
    symbols = {f"bucket:{k}{keys}" for k in built.outputs["bucketNames"] for keys in ("", "/*")}
    symbols |= {f"key:{k['name'].removesuffix('-key')}" for k in built.of("Key")}
    symbols |= {line["resource"] for role in table["roles"].values() for line in role.get("grants") or []}
    return {resolve(s, built, prefix): s for s in symbols}


def role_needs(table: dict, built, prefix: str) -> dict[str, RoleNeeds]:
    out: dict[str, RoleNeeds] = {}
    for tier, role in table["roles"].items():
        if "no_role" in role:
            continue
        n = out[tier] = RoleNeeds()
        for m in role.get("managed_policies") or []:
            n.managed.setdefault(m["policy"], []).append(m)
        for line in role.get("grants") or []:
            n.actions.setdefault((line["action"], resolve(line["resource"], built, prefix)), []).append(line)
    return out


def _named(arn: str, arn_names: dict[str, str]) -> str:
    return f"{arn_names[arn]} ({arn})" if arn in arn_names else arn


def _vias(lines: list[dict]) -> str:
    return ", ".join(dict.fromkeys(v for line in lines for v in _listed(line["via"])))


def disagreements(table: dict, needs: dict[str, RoleNeeds], grants: dict[str, RoleGrants],
                  arn_names: dict[str, str]) -> list[str]:
    """One line per difference between what the table says each role needs and what it is granted."""
    out = [p for g in grants.values() for p in g.problems]
    no_role = {t for t, r in table["roles"].items() if "no_role" in r}
    for tier in sorted(set(grants) - set(needs) - {"?"}):
        why = "the table says it has none" if tier in no_role else "iam_needs.yaml has no entry for it"
        out.append(f"{tier}: the program makes a role ({why}); list what its code calls in iam_needs.yaml")
    for tier in sorted(set(needs) - set(grants)):
        out.append(f"{tier}: the program gives its hosts no role, but iam_needs.yaml lists what they call")
    for tier in sorted(set(needs) & set(grants)):
        need, have = needs[tier], grants[tier]
        for arn in sorted(set(need.managed) - have.managed):
            out.append(f"{tier}: missing managed policy {arn}, needed by {_vias(need.managed[arn])}")
        for arn in sorted(have.managed - set(need.managed)):
            out.append(f"{tier}: extra managed policy {arn}: no line of iam_needs.yaml needs it")
        for action, arn in sorted(set(need.actions) - have.actions):
            out.append(f"{tier}: missing {action} on {_named(arn, arn_names)}, "
                       f"needed by {_vias(need.actions[action, arn])}")
        for action, arn in sorted(have.actions - set(need.actions)):
            out.append(f"{tier}: extra grant {action} on {_named(arn, arn_names)}: "
                       "no line of iam_needs.yaml needs it")
    return out


def check(built, table: dict | None = None, grants: dict[str, RoleGrants] | None = None) -> list[str]:
    """Every disagreement of one mocked stack with the table (the real one unless given)."""
    table = table if table is not None else load_needs()
    prefix = backup_prefix()
    return disagreements(table, role_needs(table, built, prefix), grants if grants is not None else role_grants(built),
                         names(built, prefix, table))


def code_evidence(table: dict) -> list[tuple[str, str, str]]:
    """(where in the table, file, text) for every `code` reference of the table."""
    out = []
    for tier, role in table["roles"].items():
        for kind in ("managed_policies", "grants"):
            for line in role.get(kind) or []:
                where = f"{tier}: {line.get('action') or line.get('policy')}"
                out += [(where, path, text) for path, texts in line["code"].items() for text in _listed(texts)]
    for what, code in (table.get("operator") or {}).items():
        out += [(f"operator: {what}", path, text) for path, texts in code.items() for text in _listed(texts)]
    return out


def missing_evidence(table: dict, root: Path = ROOT) -> list[str]:
    out = []
    for where, path, text in code_evidence(table):
        file = root / path
        if not file.is_file():
            out.append(f"{where}: {path} does not exist")
        elif text not in file.read_text():
            out.append(f"{where}: {path} no longer contains {text!r}")
    return out


def vias(table: dict, tier: str, kind: str) -> set[str]:
    """The `via` names of one kind ('barman', 'boto3', 'aws-cli') in a tier's grant lines."""
    found = set()
    for line in table["roles"][tier].get("grants") or []:
        for v in _listed(line["via"]):
            head, _, rest = v.partition(" ")
            if head == kind:
                found.add(rest)
    return found
