"""`roadie release`: build, verify, publish and list immutable release artifacts."""

from __future__ import annotations

import json

import click

from roadie import paths
from roadie.release import artifact, versions
from roadie.cli import options
from roadie.errors import BadInput, OperationFailed


def _emit(ctx, doc: dict, text: str) -> None:
    click.echo(json.dumps(doc) if ctx.obj.json else text)


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _local_artifact(service: str, version: str):
    artifact.service_dir(service)
    versions.parse(version)
    path = artifact.artifact_path(service, version, paths.DIST)
    if not path.is_file():
        raise BadInput(f"No build of {service} {version} ({path.name} is not in dist/): "
                       f"run `roadie release build {service} --version {version}` first.")
    return path


def _bucket_client(env: str):
    from botocore.exceptions import BotoCoreError

    from roadie import aws

    try:
        return aws.env_client(env, "s3"), aws.bucket(env, "artifacts")
    except BotoCoreError as exc:
        raise OperationFailed(f"Cannot reach the {env} AWS API: {exc}") from None


def _aws_errors(fn, env: str):
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn()
    except (BotoCoreError, ClientError) as exc:
        raise OperationFailed(f"The {env} artifacts bucket could not be used: {exc}") from None


@click.group()
def release():
    """Release artifacts: self-contained, reproducible tarballs in the artifacts bucket."""


@release.command()
@click.argument("service")
@click.option("--version", "version", help="Semantic version (default: services/SERVICE/VERSION).")
@options.output
@click.pass_context
def build(ctx, service, version):
    """Build dist/SERVICE-VERSION.tar.gz: app, wheelhouse, installed lib/, bin/ and manifest."""
    artifact.service_dir(service)
    version = version or artifact.default_version(service)
    versions.parse(version)
    if not ctx.obj.json:
        click.echo(f"building {service} {version}…", err=True)
    built = artifact.build(service, version, dist=paths.DIST)
    _emit(ctx, built.as_dict(), f"built dist/{built.path.name} ({_mb(built.size)}, sha256 {built.sha256}) "
                                f"in {built.seconds:.1f} s")


@release.command()
@click.argument("service")
@click.argument("version")
@options.output
@click.pass_context
def verify(ctx, service, version):
    """Check a built artifact against its manifest (every file's sha256)."""
    path = _local_artifact(service, version)
    doc = artifact.verify(path, service, version)
    _emit(ctx, {"service": service, "version": version, "path": str(path), "files": len(doc["files"]),
                "sha256": artifact.sha256_file(path)},
          f"{path.name}: {len(doc['files'])} files match the manifest")


@release.command()
@click.argument("service")
@click.argument("version")
@options.common
@click.pass_context
def publish(ctx, service, version):
    """Upload a built artifact and its manifest; a published version never changes."""
    from roadie.release import publish as pub

    path = _local_artifact(service, version)
    artifact.verify(path, service, version)  # before any AWS call: a bad artifact is bad input
    env = ctx.obj.env
    s3, bucket = _bucket_client(env)
    result = _aws_errors(lambda: pub.publish(s3, bucket, path, service, version, verified=True), env)
    verb = "published" if result["result"] == "published" else "already published (identical)"
    _emit(ctx, result, f"{service} {version} {verb}: s3://{bucket}/{result['key']} sha256 {result['sha256']}")


@release.command("list")
@click.argument("service")
@options.common
@click.pass_context
def list_(ctx, service):
    """Published versions with size, sha256 and publish time."""
    from roadie.release import publish as pub

    artifact.service_dir(service)
    env = ctx.obj.env
    s3, bucket = _bucket_client(env)
    rows = _aws_errors(lambda: pub.list_versions(s3, bucket, service), env)
    if ctx.obj.json:
        click.echo(json.dumps({"service": service, "env": env, "versions": rows}))
        return
    if not rows:
        click.echo(f"no published versions of {service} in {env}")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("version", "size", "sha256", "published", box=None)
    for r in rows:
        table.add_row(r["version"], _mb(r["size"]), r["sha256"] or "?", r["published"])
    Console().print(table)


@release.command()
@click.argument("service")
@click.argument("version")
@click.option("--hosts", help="Comma-separated hosts of the service's group (default: all of them).")
@options.common
@click.pass_context
def install(ctx, service, version, hosts):
    """Install a release on the service's hosts at once (bootstrap; `deploy` rolls)."""
    from roadie.release import install as inst
    from roadie import inventory

    artifact.service_dir(service)
    versions.parse(version)
    only = [h.strip() for h in hosts.split(",") if h.strip()] if hosts else None
    inv = inventory.load(ctx.obj.env)
    quiet = ctx.obj.json
    rows = inst.install(ctx.obj.env, inv, service, version, only,
                        log=(lambda m: None) if quiet else (lambda m: click.echo(m, err=True)))
    if ctx.obj.json:
        click.echo(json.dumps({"service": service, "version": version, "hosts": rows}))
    else:
        for r in rows:
            click.echo(f"{r['host']}: {r['from'] or '(none)'} -> {r['to']}")
