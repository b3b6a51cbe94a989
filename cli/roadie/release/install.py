"""Install a release on every host of a service at once: the deploy engine's bring-up case.

For bringing an environment up (demo, tests, a new host) rather than changing
one that serves traffic: one batch, no balancer, the same stage, migrate,
switch, restart and health steps (and lock and audit) as `roadie deploy`.
The artifact may be a local build not yet published.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from roadie import paths
from roadie.errors import BadInput, OperationFailed
from roadie.inventory import Inventory
from roadie.release import artifact


def fetch(env: str, service: str, version: str) -> Path:
    """The verified artifact: the local build if there is one, else the published one."""
    path = artifact.artifact_path(service, version, paths.DIST)
    if not path.is_file():
        from roadie import aws
        from roadie.release import publish

        s3 = aws.env_client(env, "s3")
        key = publish.keys(service, version)["tarball"]
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            s3.download_file(aws.bucket(env, "artifacts"), key, str(path))
        except Exception as exc:  # botocore raises several unrelated types here
            path.unlink(missing_ok=True)
            raise BadInput(f"{service} {version} is neither built in dist/ nor published in {env}: {exc}") from None
    artifact.verify(path, service, version)
    return path


def install(env: str, inv: Inventory, service: str, version: str, only: list[str] | None = None,
            log: Callable[[str], None] = print) -> list[dict]:
    """The deploy engine with every host in one batch and no balancer: for bring-up only."""
    from roadie.deploy import run

    prepared = run.prepare(env, service, version, run.Options(hosts=only, bring_up=True), "install",
                           emit=lambda ev: log(ev.sentence()), artifact_source=_local_or_published)
    outcome = run.execute(prepared) if prepared.plan.moves else None
    if outcome and outcome.result != "ok":
        raise OperationFailed(f"install of {service} {version} failed: {outcome.error}")
    rows = [{"host": n, "service": service, "from": f["current"], "to": version}
            for n, f in prepared.facts.items()]
    return rows


def _local_or_published(env: str, service: str, version: str):
    path = fetch(env, service, version)
    return path, artifact.sha256_file(path)
