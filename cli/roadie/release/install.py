"""Install a release on every host of a service, all at once.

For bringing an environment up (demo, tests, a new host) rather than changing
one that serves traffic: every host is staged first, the catalog's migrations
run once on one host against the primary, then each host switches `current`,
restarts and must answer healthy with the new version. A rolling,
balancer-aware rollout is `roadie deploy`'s job.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from roadie import paths
from roadie.release import artifact
from roadie.commands import release_host as cmd
from roadie.errors import BadInput, OperationFailed
from roadie.inventory import Host, Inventory
from roadie.transport import connect, run


def targets(inv: Inventory, service: str, only: list[str] | None) -> list[Host]:
    hosts = inv.group(service)
    if not hosts:
        raise BadInput(f"The {inv.env} inventory has no '{service}' group to install {service} on.")
    if only:
        unknown = [n for n in only if n not in {h.name for h in hosts}]
        if unknown:
            raise BadInput(f"{', '.join(unknown)} not in the {service} group ({', '.join(h.name for h in hosts)}).")
        hosts = [h for h in hosts if h.name in only]
    return hosts


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
    hosts = targets(inv, service, only)
    path = fetch(env, service, version)
    sha = artifact.sha256_file(path)

    def stage(host: Host) -> None:
        with connect(host, env) as conn:
            run(conn, host, f"test -d {cmd.base(service)}/releases && test -f {cmd.env_file(service)}",
                "checking the host is converged for " + service)
            conn.put(str(path), cmd.incoming(service, version))
            run(conn, host, cmd.unpack(service, version, sha), "unpacking")

    def activate(host: Host) -> dict:
        with connect(host, env) as conn:
            before = run(conn, host, cmd.current(service), "reading current").strip().rsplit("/", 1)[-1]
            try:
                run(conn, host, cmd.switch(service, version), "switching current")
                run(conn, host, cmd.restart(service), "restarting")
                run(conn, host, cmd.wait_healthy(service, version), "health check")
            except OperationFailed as exc:
                if before and before != version:  # put the host back as it was
                    conn.run(f"{cmd.switch(service, before)} && {cmd.restart(service)}", hide=True, warn=True)
                    raise OperationFailed(f"{exc.message}; rolled {host.name} back to {before}") from None
                raise
            run(conn, host, cmd.prune(service), "pruning old releases")
        return {"host": host.name, "service": service, "from": before or None, "to": version}

    log(f"staging {service} {version} on {', '.join(h.name for h in hosts)}")
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        list(pool.map(stage, hosts))
    if service == "catalog":
        log("migrating the catalog database")
        with connect(hosts[0], env) as conn:
            run(conn, hosts[0], cmd.migrate(version), "migrating")
    log(f"activating {service} {version}")
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        return list(pool.map(activate, hosts))
