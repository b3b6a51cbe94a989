"""The fleet's helper processes on the bridge address: apt-cacher-ng (the hosts' apt proxy)
and moto (the AWS API), with the buckets the inventory names."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Callable

from roadie import paths, procs
from roadie.commands import helpers as cmd
from roadie.errors import BadInput, OperationFailed
from roadie.local import image
from roadie.local.plan import FleetPlan

NAMES = ("apt-cacher-ng", "moto")


def require_moto() -> None:
    """The local environment's AWS API is moto's server, which an operator's install (the runtime lock alone)
    lacks: refused in one line before anything of the fleet is made."""
    import importlib.util

    if importlib.util.find_spec("moto") is None:
        raise BadInput("The local environment runs moto's server as its AWS API and this install has no moto: "
                       "pip install 'roadie[local]' (make venv installs it).")


def alive(record: dict, name: str) -> bool:
    rec = record["helpers"].get(name, {})
    return procs.alive(rec.get("pid"), rec.get("marker", ""))


def ensure(plan: FleetPlan, state: Path, record: dict, save: Callable[[], None]) -> None:
    """Start the helpers that do not run (recording each before the next step), wait for their ports,
    create missing buckets."""
    addr = plan.gateway
    logs = state / "logs"
    if not alive(record, "apt-cacher-ng"):
        conf = state / "apt-cacher-ng"
        conf.mkdir(parents=True, exist_ok=True)
        cache = paths.cache_dir() / "apt-cacher-ng"
        cache.mkdir(parents=True, exist_ok=True)
        port = cmd.port_of(plan.apt_proxy)
        (conf / "acng.conf").write_text(cmd.aptcache_conf(cache, logs, addr, port))
        (conf / "backends_debian").write_text(image.machine_mirror() + "/\n")
        pid = procs.start_detached(cmd.aptcache_argv(conf), logs / "apt-cacher-ng.log")
        record["helpers"]["apt-cacher-ng"] = {"pid": pid, "marker": str(conf)}
        save()
    if not alive(record, "moto"):
        argv = cmd.moto_argv(addr, cmd.port_of(plan.aws_endpoint))
        pid = procs.start_detached(argv, logs / "moto.log")
        record["helpers"]["moto"] = {"pid": pid, "marker": "\0".join(argv[1:]) + "\0"}
        save()
    for name, url in (("apt-cacher-ng", plan.apt_proxy), ("moto", plan.aws_endpoint)):
        wait_port(addr, cmd.port_of(url), name, logs / f"{name}.log")
    ensure_buckets(plan)


def ensure_buckets(plan: FleetPlan) -> None:
    from roadie import aws

    s3 = aws.client("s3", endpoint_url=plan.aws_endpoint, region=plan.aws_region)
    have = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for bucket in plan.buckets:
        if bucket not in have:
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def status(record: dict) -> list[dict]:
    rows = []
    for name in NAMES:
        rec = record["helpers"].get(name)
        state = "running" if alive(record, name) else ("dead" if rec else "stopped")
        rows.append({"name": name, "pid": (rec or {}).get("pid"), "state": state})
    return rows


def stop(record: dict) -> None:
    procs.stop([(rec.get("pid"), rec.get("marker", "")) for rec in record["helpers"].values()])


def wait_port(address: str, port: int, name: str, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise OperationFailed(f"{name} did not start listening on {address}:{port}; see {log}.")
