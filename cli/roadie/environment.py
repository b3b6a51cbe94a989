"""One environment as a command needs it: built once, handed down, closed once (Kamal's commander).

The layers below the CLI take this object, not an environment's name: the
inventory is read once per command, the transport and the balancer are made
once and shared by every step (and closed at the end), the deploys table that
holds the lock, the journal and the audit log is checked once, and every audit
record of a deploy, an on-call operation or a database operation is built here.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from roadie import inventory, model
from roadie.errors import BadInput
from roadie.inventory import Host, Inventory
from roadie.model import Stack


@dataclass(eq=False)
class Environment:
    name: str
    inventory: Inventory
    stack: Stack
    _made: dict = field(default_factory=dict, repr=False)
    _making: threading.RLock = field(default_factory=threading.RLock, repr=False)  # a make may need another

    @classmethod
    def load(cls, name: str) -> Environment:
        """The environment's inventory (ansible-inventory, cached by its fingerprint) and the service model."""
        return cls(name, inventory.load(name), model.load())

    # -- facts -------------------------------------------------------------------------------

    @property
    def vars(self) -> dict:
        """The variables every host shares (group_vars/all)."""
        return self.inventory.env_vars

    @property
    def emulated(self) -> bool:
        """The AWS API is an emulator (moto locally): roadie may create what Pulumi owns elsewhere."""
        return bool(self.vars.get("roadie_aws_endpoint_url"))

    def tier(self, service: model.Tier) -> list[Host]:
        hosts = self.inventory.group(service.group)
        if not hosts:
            raise BadInput(f"The {self.name} inventory has no '{service.group}' group of {service.name} hosts.")
        return hosts

    def bucket(self, kind: str) -> str:
        buckets = dict(self.vars.get("roadie_buckets") or {})
        if kind not in buckets:
            raise BadInput(f"The {self.name} inventory names no '{kind}' bucket (roadie_buckets.{kind}).")
        return buckets[kind]

    # -- what is made once and shared ----------------------------------------------------------

    def _once(self, key: str, make):
        with self._making:
            if key not in self._made:
                self._made[key] = make()
            return self._made[key]

    @property
    def transport(self):
        """The transport the inventory names (roadie_connection: ssh, bastion or ssm)."""
        from roadie import transport

        return self._once("transport", lambda: transport.for_env(
            self.name, str(self.vars.get("roadie_connection", "ssh")), inventory=self.inventory,
            client=self.client, bucket=self.bucket))

    @property
    def balancer(self):
        """The balancer the inventory names (roadie_balancer: haproxy or elbv2), over this transport."""
        from roadie import balancer

        return self._once("balancer", lambda: balancer.for_inventory(self.inventory, self.transport, self.stack,
                                                                     client=self.client))

    def client(self, service: str, retries: dict | None = None):
        """One boto3 client per AWS service (and retry settings: botocore's `retries`) for the whole command (a
        client costs ~0.1 s to make; boto3's default session makes them one at a time), usable from any thread."""
        from roadie import aws

        def make():
            from botocore.config import Config

            endpoint = aws.settings_of(self.vars)
            return aws.client(service, endpoint_url=endpoint["endpoint_url"], region=endpoint["region"],
                              config=Config(retries=dict(retries)) if retries else None)

        return self._once(f"client:{service}:{sorted((retries or {}).items())}", make)

    def table(self) -> tuple[object, str]:
        """The deploys table's client and name; made (on an emulator) or checked once."""
        from roadie.state import table

        def make():
            ddb, name = self.client("dynamodb"), table.name_for(self.inventory)
            table.ensure(ddb, name, emulated=self.emulated)
            return ddb, name

        return self._once("table", make)

    def lock(self, service: str, on_lost=None):
        from roadie.state.lock import Lock

        ddb, name = self.table()
        return Lock(ddb, name, self.name, service, on_lost=on_lost)

    def journal(self, service: str):
        from roadie.state.journal import Journal

        ddb, name = self.table()
        return Journal(ddb, name, self.name, service)

    # -- the audit log ---------------------------------------------------------------------------

    def record(self, doc: dict) -> dict:
        """Append `doc` to the audit log as it is (it carries operation, service, actor and result)."""
        from roadie.state import audit

        ddb, name = self.table()
        return audit.record(ddb, name, self.name, doc)

    def audit(self, operation: str, result: str, service: str = "", started: float | None = None,
              **facts) -> dict:
        """The one audit record of every operation: what, on which service, who from where, the result,
        when it started and how long it took, and the operation's own facts."""
        from roadie.state import audit, table

        doc = {"operation": operation, "service": service, **table.actor(), "result": result}
        if started is not None:
            doc.update(started_at=audit.iso(started), seconds=round(time.time() - started, 3))
        return self.record({**doc, **facts})

    # -- the end ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Close what was opened (the transport's connections); safe to call twice."""
        made = self._made.pop("transport", None)
        if made is not None:
            made.close()

    def __enter__(self) -> Environment:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
