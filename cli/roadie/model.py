"""The service model (inventories/stack.yml), typed.

One file says each service's port, paths, balancer route and deploy limits; the
roles read it as group_vars, the Pulumi program and roadie read it through here.
Validation is strict (unknown keys are errors) so a typo cannot silently fall
back to a default in one layer while another layer reads the file.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from roadie.commands import release_host as cmd
from roadie.errors import BadInput

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "inventories" / "stack.yml"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Route(_Model):
    """A tier's place behind the balancer: requests under `route_prefix` go to `backend` (the HAProxy
    backend, the key of its ALB target group). A tier without one is not behind the balancer."""

    route_prefix: str = Field(pattern=r"^/[a-z0-9/_-]*$")
    backend: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")


class Tier(_Model):
    """What every entry of roadie_services has, whatever its kind: where it runs and how many of its hosts
    must stay up. A kind (a subclass registered in KINDS) adds its own fields and answers what status,
    logs, restart and health ask of it: its unit, its log, how a host shows it is healthy on a release."""

    name: str = ""
    kind: str
    group: str = Field(min_length=1)
    balancer: Route | None = None
    min_healthy: int = Field(default=1, ge=0)
    drain_timeout: int = Field(default=0, ge=0, le=3600)
    migrations: bool = False

    @model_validator(mode="after")
    def _reachable(self):
        if self.balancer and not {"port", "health_path"} <= set(type(self).model_fields):
            raise ValueError(f"a {self.kind} has no port and health path for the balancer to forward to and "
                             "check: leave out its balancer section")
        return self

    @property
    def unit(self) -> str:
        """The systemd unit a host runs it as: restarted on a switch, its state is the host's in status."""
        return f"{self.name}.service"

    @property
    def log_units(self) -> list[str]:
        """The units whose journal is its log (roadie ops logs)."""
        return [self.unit]

    @property
    def backend(self) -> str | None:
        """Its balancer backend, None when it is not behind the balancer."""
        return self.balancer.backend if self.balancer else None

    def health_check(self, version: str, seconds: int) -> str:
        """The command that waits, on a host just switched to `version`, until the host runs it well: here,
        until its unit is active."""
        return cmd.wait_active(self.unit, seconds)


class Service(Tier):
    """An HTTP service: a port the balancer (or its peers) reach, a health and a version path."""

    kind: Literal["service"] = "service"
    port: int = Field(ge=1, le=65535)
    app_port: int | None = Field(default=None, ge=1, le=65535)
    health_path: str = Field(pattern=r"^/")
    version_path: str = Field(pattern=r"^/")
    version_header: str = Field(pattern=r"^[A-Za-z0-9-]+$")

    def health_check(self, version: str, seconds: int) -> str:
        """Healthy on `version`: its health path answers 200 and its version path names the release."""
        return cmd.wait_healthy(self.name, version, seconds, self.health_path, self.version_path)


# kind -> the model of its entries. A new kind is a Tier subclass with `kind: Literal["NAME"]` and one
# register() call; nothing else in roadie names the kinds.
KINDS: dict[str, type[Tier]] = {}


def register(cls: type[Tier]) -> type[Tier]:
    """Add a tier kind (usable as a class decorator); its name is the default of its `kind` field."""
    name = cls.model_fields["kind"].default
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} needs a default for `kind`: the name entries give it by")
    KINDS[name] = cls
    return cls


@register
class Job(Tier):
    """A scheduled batch job: NAME.timer starts NAME.service on `schedule` (systemd OnCalendar); a run may take
    `timeout` seconds. The timer is what a host runs it as: a deploy re-arms the timer and never restarts a
    run in progress (the run keeps the release it started from)."""

    kind: Literal["job"] = "job"
    schedule: str = Field(min_length=1, pattern=r"^[^\n'\"\\]+$")
    timeout: int = Field(ge=1, le=7 * 86400)
    min_healthy: int = Field(default=0, ge=0)

    @property
    def unit(self) -> str:
        return f"{self.name}.timer"

    @property
    def log_units(self) -> list[str]:
        return [f"{self.name}.service", self.unit]  # the runs' output, and the timer's own lines (missed runs)


register(Service)


def check_schedule(job: Job) -> None:
    """The job's schedule through systemd's own parser (systemd-analyze calendar), before it reaches a host;
    BadInput naming the job when systemd refuses it. Where systemd-analyze is absent (an operator's Mac) the
    hosts' systemd is the first to read it."""
    import shutil
    import subprocess

    tool = shutil.which("systemd-analyze")
    if tool is None:
        return
    done = subprocess.run([tool, "calendar", job.schedule], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["refused"])[-1]
        raise BadInput(f"services.{job.name}.schedule: systemd does not read '{job.schedule}' as a calendar "
                       f"event ({why}); e.g. '*-*-* 03:00:00' or 'daily'.")


class LoadBalancer(_Model):
    group: str
    http_port: int = Field(ge=1, le=65535)
    admin_socket: str = Field(pattern=r"^/")
    # HAProxy map of the backends in maintenance (roadie ops maintenance): backend -> Retry-After seconds.
    maintenance_map: str = Field(default="/etc/haproxy/maintenance.map", pattern=r"^/")


Port = Annotated[int, Field(ge=1, le=65535)]


class Database(_Model):
    group: str
    port: Port
    # Patroni's cluster name (etcd key prefix) and barman-cloud's server name: one word, as it goes
    # into etcd keys, bucket keys and shell lines.
    patroni_scope: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    patroni_rest_port: Port
    etcd_client_port: Port
    etcd_peer_port: Port
    # Bucket key prefix of the backups: words joined by "/", no leading or trailing "/".
    backup_prefix: str = Field(pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")

    @model_validator(mode="after")
    def _distinct_ports(self):
        ports = {"port": self.port, "patroni_rest_port": self.patroni_rest_port,
                 "etcd_client_port": self.etcd_client_port, "etcd_peer_port": self.etcd_peer_port}
        if len(set(ports.values())) != len(ports):
            raise ValueError(f"two database listeners share a port: {ports}")
        return self

    @property
    def backup_server(self) -> str:
        """barman-cloud's server name: the Patroni scope (the role's database_backup_server)."""
        return self.patroni_scope

    @property
    def backup_base(self) -> str:
        """Where the base backups are in the backups bucket."""
        return f"{self.backup_prefix}/{self.backup_server}/base/"


class Stack(_Model):
    services: dict[str, Tier]
    loadbalancer: LoadBalancer
    database: Database

    @model_validator(mode="after")
    def _distinct(self):
        routes = [s.balancer for s in self.services.values() if s.balancer]
        for field in ("backend", "route_prefix"):
            seen = [getattr(r, field) for r in routes]
            if len(seen) != len(set(seen)):
                raise ValueError(f"two services share a {field}: {sorted(seen)}")
        return self

    @property
    def jobs(self) -> list[Job]:
        """The scheduled jobs, in the model's order."""
        return [s for s in self.services.values() if isinstance(s, Job)]

    @property
    def balanced(self) -> list[Tier]:
        """The tiers behind the balancer, in the model's order."""
        return [s for s in self.services.values() if s.balancer]

    def service(self, name: str) -> Tier:
        if name not in self.services:
            raise BadInput(f"Unknown service '{name}': expected one of {', '.join(sorted(self.services))}.")
        return self.services[name]


def path() -> Path:
    return Path(os.environ.get("ROADIE_STACK_FILE", DEFAULT_PATH))


class _BadTier(ValueError):
    """An entry of roadie_services its kind's model refused; the message names where."""


def _where(exc: ValidationError, prefix: tuple = ()) -> str:
    err = exc.errors()[0]
    return f"{'.'.join(str(p) for p in (*prefix, *err['loc']))}: {err['msg']}."


def _tier(name: str, body: dict) -> Tier:
    """One entry, validated by the model of its kind (`service` when it names none)."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", str(name)):
        raise _BadTier(f"services.{name}: a tier's name is a lowercase word (letters, digits, _): it names its "
                       "user, unit, directories, environment variables and the stack's roadie:<tier> setting.")
    kind = body.get("kind", "service")
    if kind not in KINDS:
        raise _BadTier(f"services.{name}.kind: '{kind}' is not a tier kind (known: {', '.join(sorted(KINDS))}).")
    try:
        return KINDS[kind].model_validate({**body, "name": name, "kind": kind})
    except ValidationError as exc:
        raise _BadTier(_where(exc, ("services", name))) from None


def parse(doc: dict, source: str = "stack.yml") -> Stack:
    """Validate the group_vars document (keys roadie_services, roadie_loadbalancer, roadie_database)."""
    try:
        services = {name: _tier(name, body) for name, body in (doc.get("roadie_services") or {}).items()}
        return Stack(services=services, loadbalancer=doc.get("roadie_loadbalancer"),
                     database=doc.get("roadie_database"))
    except ValidationError as exc:
        raise BadInput(f"{source}: {_where(exc)}") from None
    except _BadTier as exc:
        raise BadInput(f"{source}: {exc}") from None
    except (AttributeError, TypeError):
        raise BadInput(f"{source}: not a mapping of roadie_services, roadie_loadbalancer, roadie_database.") from None


@functools.lru_cache(maxsize=4)
def _load(file: Path) -> Stack:
    try:
        doc = yaml.safe_load(file.read_text()) or {}
    except FileNotFoundError:
        raise BadInput(f"The service model {file} is missing.") from None
    except yaml.YAMLError as exc:
        raise BadInput(f"{file.name} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return parse(doc, file.name)


def load() -> Stack:
    """The stack model, read once per process."""
    return _load(path())
