"""A deploy whose hosts are all on the version says "nothing to do" only when nothing is unfinished.

Seen: the deploying process SIGKILLed right after catalog-2's switch; a plain re-run answered "every
catalog host is already on V; nothing to do", exit 0, with catalog-2 still drained (half the tier).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from roadie.deploy.resume import nothing_left as _nothing_left
from roadie.commands.haproxy import Server
from roadie.state.journal import Entry
from roadie.errors import BadInput

HOSTS = ("catalog-1", "catalog-2")


def server(name: str, status: str = "UP", weight: int = 1) -> Server:
    return Server("catalog", name, status, weight, 0, 0, 0, 0, 0)


def prepared(*servers: Server):
    return SimpleNamespace(service=SimpleNamespace(name="catalog"), version="1.1.0",
                           deps=SimpleNamespace(hosts={h: None for h in HOSTS}),
                           servers={s.name: s for s in servers})


RUNNING = Entry(operation="deploy", version="1.1.0", who="sre", started_at=1_796_000_000.0,
                moves={"catalog-1": {"from": "1.0.0", "to": "1.1.0", "step": "done"},
                       "catalog-2": {"from": "1.0.0", "to": "1.1.0", "step": "switch"}})


def test_every_host_on_the_version_and_in_service_is_nothing_to_do():
    _nothing_left(prepared(server("catalog-1"), server("catalog-2")), None)  # no error


@pytest.mark.parametrize(("servers", "running", "says"), [
    ((server("catalog-1"), server("catalog-2", "DRAIN", 0)), None, "catalog-2 (DRAIN)"),
    ((server("catalog-1"), server("catalog-2", "MAINT")), None, "`roadie ops enable catalog-2`"),
    ((server("catalog-1", "DOWN"), server("catalog-2")), None, "catalog-1 (DOWN)"),
    ((server("catalog-1"), server("catalog-2")), RUNNING, "--resume"),
    ((server("catalog-1"), server("catalog-2", "DRAIN", 0)), RUNNING, "lock lease still runs"),
])
def test_an_unfinished_tier_is_said_with_how_to_finish_it(servers, running, says):
    with pytest.raises(BadInput, match="every catalog host is on 1.1.0, but") as err:
        _nothing_left(prepared(*servers), running)
    assert says in err.value.message
    assert "\n" not in err.value.message
