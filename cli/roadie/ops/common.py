"""What every on-call operation shares: who acts, the audit record, hosts run in parallel."""

from __future__ import annotations

import contextlib
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from roadie import inventory
from roadie.errors import BadInput, OperationFailed

PARALLEL = 16


def selection(value: str | None, what: str = "--hosts") -> list[str] | None:
    """The names of a selection as typed ("catalog, db-1" -> ["catalog", "db-1"]); None when it was not given
    (every host). Given but naming nothing ('', ',', as an unset $VAR gives) is bad input, never every host;
    checked before the inventory is read or any host is asked."""
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        out = f", or leave {what} out for every host" if what.startswith("-") else ""
        raise BadInput(f"{what} is empty: name groups or hosts, comma-separated{out}; nothing was changed.")
    return names


def select(inv: inventory.Inventory, names: list[str] | tuple[str, ...] | str) -> list[inventory.Host]:
    """Hosts of groups or host names ("catalog", "db-1", "catalog,db-1"); empty or unknown is bad input."""
    if isinstance(names, str):
        names = [n for n in names.split(",")]
    names = [n.strip() for n in names]
    if not names or any(not n for n in names):
        raise BadInput(f"Name a group or host of the {inv.env} inventory ({', '.join(groups(inv))}).")
    return inv.select(names)


def groups(inv: inventory.Inventory) -> list[str]:
    seen: list[str] = []
    for h in inv.hosts.values():
        seen += [g for g in h.groups if g not in seen]
    return seen


def on_hosts(hosts: list[inventory.Host], work: Callable[[inventory.Host], dict]) -> dict[str, dict]:
    """work(host) on every host at once; a host that fails gives {"error": ...} instead of stopping the rest."""
    def one(host):
        try:
            return work(host)
        except OperationFailed as exc:
            return {"error": exc.message}

    with ThreadPoolExecutor(max_workers=min(PARALLEL, max(1, len(hosts)))) as pool:
        return dict(zip([h.name for h in hosts], pool.map(one, hosts), strict=True))


@contextlib.contextmanager
def uninterrupted():
    """Ctrl-C waits until the block is done (a change across several balancers is made whole), then stops."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if caught:
        raise KeyboardInterrupt
