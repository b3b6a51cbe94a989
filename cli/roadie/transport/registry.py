"""Which transport an inventory asks for (roadie_connection): a new one is one module and one line here."""

from __future__ import annotations

from roadie.errors import BadInput
from roadie.transport.ssh import SSH
from roadie.transport.ssm import SSM

KINDS: dict[str, type] = {"ssh": SSH, "local": SSH, "bastion": SSH, "ssm": SSM}  # bastion: SSH via a ProxyJump
SSH_KINDS = tuple(k for k, made in KINDS.items() if made is SSH)


def kind_of(env: str, connection: str = "ssh") -> type:
    """The transport class of roadie_connection `connection`; BadInput in one line for one roadie cannot use."""
    try:
        return KINDS[connection]
    except KeyError:
        raise BadInput(f"The {env} inventory asks for roadie_connection '{connection}', which roadie cannot use "
                       f"(known: {', '.join(KINDS)}).") from None


def for_env(env: str, connection: str = "ssh", *, inventory=None, client=None, bucket=None):
    """The transport an inventory asks for (roadie_connection). From an Environment: its `inventory`, its
    `client(service, retries)` and `bucket(kind)`, so the transport reads no inventory of its own."""
    return kind_of(env, connection).from_environment(env, inventory=inventory, client=client, bucket=bucket)
