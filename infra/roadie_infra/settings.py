"""Stack settings: read once from `Pulumi.<stack>.yaml`, validated and typed.

Kept free of Pulumi imports so `roadie infra` can reject a bad stack file
before it ever starts the Pulumi CLI, with the same one-line message.
"""

from __future__ import annotations

import functools
import ipaddress
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, ValidationError, create_model
from pydantic.alias_generators import to_camel

NAMESPACE = "roadie"
INFRA_DIR = Path(__file__).resolve().parents[1]
DEBIAN_AMI_PARAMETER = "/aws/service/debian/release/bookworm/latest/amd64"
# A fresh app host is unconfigured until `roadie converge` and a deploy reach it
# (apt installs, the release download, migrations for the catalog): 15 minutes.
DEFAULT_GRACE_PERIOD = 900


class ConfigError(ValueError):
    """A stack setting is missing or wrong; the message names the key."""


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, extra="forbid", frozen=True)


class Tier(_Model):
    """An auto-scaled app tier behind the load balancer.

    Its port, health path and route are not stack settings: they are facts of
    the service, read from the service model (inventories/stack.yml) so that the
    balancer, the roles and the services cannot disagree about them.
    """

    instance_type: str = Field(pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
    min_size: int = Field(ge=0, le=100)
    max_size: int = Field(ge=1, le=100)
    desired_capacity: int = Field(ge=0, le=100)
    # Seconds a new instance has before the ASG acts on the target group's
    # verdict: boot, `roadie converge` and the first deploy must fit in it.
    health_check_grace_period: int = Field(default=DEFAULT_GRACE_PERIOD, ge=60, le=7200)


class Database(_Model):
    """The three members of the Patroni cluster; the AZs are indexes into the stack's zones.

    Three, as on the local fleet (db-1..3): etcd keeps a majority with one member
    down only with three, and Patroni's synchronous_mode needs a standby left after
    a failover (docs/database.md). The bootstrap member is the `primary`; the leader
    may later be any of them.
    """

    instance_type: str = Field(pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
    volume_size_gb: int = Field(ge=20, le=16384)
    primary_az: int = Field(ge=0)
    # The first replica's AZ first: it is the one a two-member stack had (`replicaAz`).
    replica_azs: tuple[NonNegativeInt, ...] = Field(min_length=2, max_length=2)

    @property
    def members(self) -> tuple[tuple[str, str, int], ...]:
        """(member, roadie:db-role tag, AZ index) of each member, in a stable order.

        The first replica keeps the member name `replica` (its Pulumi resources
        were named so when a stack had one replica): renaming it would replace
        that instance and its data volume on an existing stack, which then only
        gains `replica-2`.
        """
        first, second = self.replica_azs
        return ("primary", "primary", self.primary_az), ("replica", "replica", first), ("replica-2", "replica", second)


class Settings(_Model):
    environment: Literal["dev", "staging", "production"]
    owner: str = Field(min_length=1)
    bucket_prefix: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{2,40}$")
    vpc_cidr: ipaddress.IPv4Network
    az_count: int = Field(ge=2, le=4)
    nat_per_az: bool
    certificate_arn: str = Field(pattern=r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[A-Za-z0-9-]+$")
    image_parameter: str = Field(default=DEBIAN_AMI_PARAMETER, pattern=r"^/")
    deregistration_delay: int = Field(default=30, ge=0, le=3600)
    backup_retention_days: int = Field(default=35, ge=1)
    media_infrequent_after_days: int = Field(default=30, ge=30)
    database: Database
    # And one Tier per tier of the service model, `roadie:<tier>` (settings_model adds them).

    @property
    def production(self) -> bool:
        return self.environment == "production"

    @property
    def tiers(self) -> dict[str, Tier]:
        """The auto-scaled tiers' settings by name, in the service model's order."""
        return {n: getattr(self, n) for n, f in type(self).model_fields.items() if f.annotation is Tier}


def app_tiers() -> tuple[str, ...]:
    """The auto-scaled tiers: every tier of the service model (inventories/stack.yml), in its order."""
    from roadie import model
    from roadie.errors import BadInput

    try:
        return tuple(model.load().services)
    except BadInput as exc:
        raise ConfigError(str(exc)) from None


@functools.cache
def settings_model(tiers: tuple[str, ...]) -> type[Settings]:
    """Settings with a required Tier for each of `tiers`: a tier added to the model needs its sizes here."""
    return create_model("Settings", __base__=Settings, **{t: (Tier, ...) for t in tiers})


def _key(loc: tuple) -> str:
    fields = [to_camel(p) if isinstance(p, str) else str(p) for p in loc]
    return f"{NAMESPACE}:{'.'.join(fields)}"


def _cross_checks(s: Settings):
    """What one field alone cannot say; yields (key, problem)."""
    if not 16 <= s.vpc_cidr.prefixlen <= 24:
        yield "vpcCidr", f"the VPC must be a /16 to /24 network so each subnet gets 1/16 of it, got {s.vpc_cidr}"
    for tier, t in s.tiers.items():
        if not t.min_size <= t.desired_capacity <= t.max_size:
            yield f"{tier}.desiredCapacity", (f"must lie between minSize {t.min_size} and maxSize {t.max_size}, "
                                              f"got {t.desired_capacity}")
    db = s.database
    for key, az in (("primaryAz", db.primary_az), *((f"replicaAzs.{i}", az) for i, az in enumerate(db.replica_azs))):
        if az >= s.az_count:
            yield f"database.{key}", f"AZ index {az} is outside the stack's {s.az_count} AZs (0..{s.az_count - 1})"
    if db.primary_az in db.replica_azs:
        yield "database.replicaAzs", f"a replica must not share the primary's AZ ({db.primary_az})"
    if s.az_count >= 3 and len(set(db.replica_azs)) < 2:
        yield "database.replicaAzs", (f"with {s.az_count} AZs every database member needs its own AZ, "
                                      f"got both replicas in AZ {db.replica_azs[0]}")


def parse(raw: dict[str, Any]) -> Settings:
    """Validate settings keyed without the namespace (`vpcCidr`, `streaming`...)."""
    tiers = app_tiers()
    try:
        settings = settings_model(tiers).model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = _key(err["loc"])
        if err["type"] == "missing":
            raise ConfigError(f"Stack config is missing {key}.") from None
        if err["type"] == "extra_forbidden":
            tail = (f" (the app tiers are the service model's: {', '.join(tiers)})" if len(err["loc"]) == 1
                    and isinstance(raw.get(err["loc"][0]), dict) else "")
            raise ConfigError(f"Stack config has an unknown key {key}{tail}.") from None
        raise ConfigError(f"Bad stack config {key}: {err['msg']} (got {err['input']!r}).") from None
    for key, problem in _cross_checks(settings):
        raise ConfigError(f"Bad stack config {NAMESPACE}:{key}: {problem}.")
    return settings


def _decode(value: Any) -> Any:
    """The Pulumi CLI hands structured config to the program as JSON text."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def from_mapping(config: dict[str, Any]) -> Settings:
    """Settings from a `project:key` map, as in a stack file or the engine's config."""
    prefix = f"{NAMESPACE}:"
    return parse({k[len(prefix):]: _decode(v) for k, v in config.items() if k.startswith(prefix)})


def stacks(directory: Path = INFRA_DIR) -> list[str]:
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in directory.glob("Pulumi.*.yaml"))


def from_stack_file(stack: str, directory: Path = INFRA_DIR) -> Settings:
    path = directory / f"Pulumi.{stack}.yaml"
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"No stack file {path.name}: expected one of {', '.join(stacks(directory))}.") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path.name} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return from_mapping(doc.get("config") or {})


def from_pulumi() -> Settings:
    """Inside a Pulumi program: the engine's config for this project."""
    from pulumi.runtime.config import CONFIG

    return from_mapping(dict(CONFIG.get()))
