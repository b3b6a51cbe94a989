"""`roadie release`: build, verify, publish and list immutable release artifacts."""

from __future__ import annotations

import click

from roadie import confirm, output, paths
from roadie.release import artifact, versions
from roadie.cli import options
from roadie.commands import ansible as names
from roadie.errors import BadInput, OperationFailed


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


def _bucket_client(ctx):
    """The command's environment's S3 client and artifacts bucket."""
    from botocore.exceptions import BotoCoreError

    environment = ctx.obj.environment
    try:
        return environment.client("s3"), environment.bucket("artifacts")
    except BotoCoreError as exc:
        raise OperationFailed(f"Cannot reach the {environment.name} AWS API: {exc}") from None


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
    out = output.of(ctx)
    artifact.service_dir(service)
    if version is not None and not version.strip():
        # Only an absent option falls back to the default: an empty $VERSION is a mistake.
        raise BadInput("--version is empty: give a semantic version such as 1.4.2, or leave --version out "
                       f"for services/{service}/VERSION; nothing was built.")
    version = artifact.default_version(service) if version is None else version
    versions.parse(version)
    with out.progress(f"building {service} {version}…"):
        built = artifact.build(service, version, dist=paths.DIST)
    out.result(built.as_dict(), f"built dist/{built.path.name} ({_mb(built.size)}, sha256 {built.sha256}) "
                                f"in {built.seconds:.1f} s")


@release.command()
@click.argument("service")
@click.argument("version")
@options.output
@click.pass_context
def verify(ctx, service, version):
    """Check a built artifact: its gzip stream to the end, and every file's sha256 against the manifest."""
    path = _local_artifact(service, version)
    doc = artifact.verify(path, service, version)
    output.of(ctx).result({"service": service, "version": version, "path": str(path), "files": len(doc["files"]),
                           "sha256": artifact.sha256_file(path)},
                          f"{path.name}: {len(doc['files'])} files match the manifest")


@release.command()
@click.argument("service")
@click.argument("version")
@options.yes("Do not ask; required to publish to production without a terminal.")
@options.common
@click.pass_context
def publish(ctx, service, version, yes):
    """Upload a built artifact and its manifest; a published version never changes."""
    from roadie.release import publish as pub

    path = _local_artifact(service, version)
    artifact.verify(path, service, version)  # before any AWS call: a bad artifact is bad input
    env = ctx.obj.env
    confirm.confirm(ctx, f"publish {service} {version} to {env}", yes)
    s3, bucket = _bucket_client(ctx)
    result = _aws_errors(lambda: pub.publish(s3, bucket, path, service, version, verified=True), env)
    verb = "published" if result["result"] == "published" else "already published (identical)"
    output.of(ctx).result(result, f"{service} {version} {verb}: s3://{bucket}/{result['key']} "
                                  f"sha256 {result['sha256']}")


@release.command("list")
@click.argument("service")
@options.common
@click.pass_context
def list_(ctx, service):
    """Published versions with size, sha256 and publish time."""
    from roadie.release import publish as pub

    out = output.of(ctx)
    artifact.service_dir(service)
    env = ctx.obj.env
    s3, bucket = _bucket_client(ctx)
    rows = _aws_errors(lambda: pub.list_versions(s3, bucket, service), env)
    if not rows:
        out.result({"service": service, "env": env, "versions": rows}, f"no published versions of {service} in {env}")
        return
    out.result({"service": service, "env": env, "versions": rows})
    out.table(["version", "size", "sha256", "published"],
              [(r["version"], _mb(r["size"]), r["sha256"] or "?", r["published"]) for r in rows])


@release.command()
@click.argument("service")
@click.argument("version")
@click.option("--hosts", help="Comma-separated hosts of the service's group (default: all of them).")
@options.yes("Do not ask; required to install in production without a terminal.")
@options.common
@click.pass_context
def install(ctx, service, version, hosts, yes):
    """Install a release on the service's hosts at once (bootstrap; `deploy` rolls)."""
    from roadie.deploy import install as inst

    out = output.of(ctx)
    artifact.service_dir(service)
    versions.parse(version)
    only = names.split_list(hosts, "--hosts", "host") or None
    confirm.confirm(ctx, f"install {service} {version} on {ctx.obj.env} hosts", yes)
    rows = inst.install(ctx.obj.environment, service, version, only, log=out.log)
    out.result({"service": service, "version": version, "hosts": rows},
               lambda: "\n".join(f"{r['host']}: {r['from'] or '(none)'} -> {r['to']}" for r in rows))
