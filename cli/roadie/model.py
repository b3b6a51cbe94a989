"""The service model (inventories/stack.yml), typed.

One file says each service's port, paths, balancer route and deploy limits; the
roles read it as group_vars, the Pulumi program and roadie read it through here.
Validation is strict (unknown keys are errors) so a typo cannot silently fall
back to a default in one layer while another layer reads the file.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from roadie.errors import BadInput

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "inventories" / "stack.yml"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Service(_Model):
    name: str = ""
    group: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    app_port: int | None = Field(default=None, ge=1, le=65535)
    health_path: str = Field(pattern=r"^/")
    version_path: str = Field(pattern=r"^/")
    version_header: str = Field(pattern=r"^[A-Za-z0-9-]+$")
    route_prefix: str = Field(pattern=r"^/[a-z0-9/_-]*$")
    backend: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    min_healthy: int = Field(ge=0)
    drain_timeout: int = Field(ge=0, le=3600)
    migrations: bool = False


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
    services: dict[str, Service]
    loadbalancer: LoadBalancer
    database: Database

    @model_validator(mode="after")
    def _distinct(self):
        for field in ("backend", "route_prefix"):
            seen = [getattr(s, field) for s in self.services.values()]
            if len(seen) != len(set(seen)):
                raise ValueError(f"two services share a {field}: {sorted(seen)}")
        return self

    def service(self, name: str) -> Service:
        if name not in self.services:
            raise BadInput(f"Unknown service '{name}': expected one of {', '.join(sorted(self.services))}.")
        return self.services[name]


def path() -> Path:
    return Path(os.environ.get("ROADIE_STACK_FILE", DEFAULT_PATH))


def parse(doc: dict, source: str = "stack.yml") -> Stack:
    """Validate the group_vars document (keys roadie_services, roadie_loadbalancer, roadie_database)."""
    try:
        services = {name: {**body, "name": name} for name, body in (doc.get("roadie_services") or {}).items()}
        return Stack(services=services, loadbalancer=doc.get("roadie_loadbalancer"),
                     database=doc.get("roadie_database"))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise BadInput(f"{source}: {where}: {err['msg']}.") from None
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
