"""Preflight's reads at once: they are independent, and each mostly waits on a network or another process.

A deploy's fixed cost is dominated by waits: `ansible-inventory` (a process of
its own, ~0.5 s), an SSH handshake per host, the balancer's state, the deploys
table and the artifact's checksum in the environment's AWS. Run one after the
other they add up; run together they cost the longest of them. Nothing here
changes anything: a failed read stops the deploy before its lock is taken.

This module imports nothing heavy, so the CLI can start the inventory read
before the rest of roadie loads.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable


def read_inventory_early(env: str) -> Callable[[], None]:
    """Start reading the inventory in the background; returns the wait to call before anything else reads it.

    `ansible-inventory` runs in its own process, so it runs on the other core
    while this one loads the deploy modules (and Fabric and boto3, which
    preflight needs next). An error is not lost: the inventory read again
    after the wait raises it, as it would have without this.
    """
    from roadie import inventory

    def read() -> None:
        try:
            inventory.load(env)
        except Exception:  # raised again, where it is reported, by the next read
            pass

    worker = threading.Thread(target=read, name="inventory", daemon=True)
    worker.start()
    return worker.join


@dataclass(frozen=True)
class Tried:
    """What a job gave, or the error it raised, to be looked at later (a read whose answer may go unused)."""

    value: Any = None
    error: BaseException | None = None

    def get(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


def tried(job: Callable[[], Any]) -> Callable[[], Tried]:
    def run() -> Tried:
        try:
            return Tried(value=job())
        except Exception as exc:
            return Tried(error=exc)
    return run


def together(*jobs: Callable[[], Any]) -> list[Any]:
    """Every job at once, each in its own thread; all are waited for.

    Returns their results in order. When several fail, the error of the first
    in order is raised, so the one line a user sees does not depend on which
    thread lost a race.
    """
    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="preflight") as pool:
        outcomes = [f.result() for f in [pool.submit(tried(job)) for job in jobs]]
    return [o.get() for o in outcomes]
