"""Install a release on every host of a service at once: the deploy engine's bring-up case.

For bringing an environment up (demo, tests, a new host) rather than changing
one that serves traffic: one batch, no balancer, the same stage, migrate,
switch, restart and health steps (and lock and audit) as `roadie deploy`.
The artifact may be a local build not yet published.
"""

from __future__ import annotations

from typing import Callable

from roadie.deploy import run
from roadie.environment import Environment
from roadie.errors import OperationFailed
from roadie.release import fetch


def install(environment: Environment, service: str, version: str, only: list[str] | None = None,
            log: Callable[[str], None] = print) -> list[dict]:
    """The deploy engine with every host in one batch and no balancer: for bring-up only."""
    prepared = run.prepare(environment, service, version, run.Options(hosts=only, bring_up=True), "install",
                           emit=lambda ev: log(ev.sentence()), artifact_source=fetch.local_or_published)
    outcome = run.execute(prepared) if prepared.plan.moves else None
    if outcome and outcome.result != "ok":
        raise OperationFailed(f"install of {service} {version} failed: {outcome.error}")
    return [{"host": n, "service": service, "from": f["current"], "to": version} for n, f in prepared.facts.items()]
