"""A published artifact, read back from the environment's artifacts bucket and verified.

A deploy ships only what was published: the bucket's sha256 (object metadata,
written by `roadie release publish`) is the one the artifact must have.
"""

from __future__ import annotations

from pathlib import Path

from roadie import paths
from roadie.errors import BadInput, OperationFailed
from roadie.release import artifact, publish


def published_sha(environment, service: str, version: str) -> str:
    """The sha256 the environment published for the artifact; BadInput if it was never published."""
    from botocore.exceptions import BotoCoreError, ClientError

    env = environment.name
    try:
        head = environment.client("s3").head_object(Bucket=environment.bucket("artifacts"),
                                                    Key=publish.keys(service, version)["tarball"])
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            raise BadInput(f"{service} {version} was never published in {env}: "
                           f"`roadie release publish {service} {version}` first.") from None
        raise OperationFailed(f"The {env} artifacts bucket could not be read: {exc}") from None
    except BotoCoreError as exc:
        raise OperationFailed(f"The {env} AWS API did not answer: {exc}") from None
    return head.get("Metadata", {}).get("sha256", "")


def fetch_published(environment, service: str, version: str, published: str | None = None) -> tuple[Path, str]:
    """The published artifact, downloaded once into dist/ and checked against its published sha256.

    `published`: that sha256 when preflight has already read it.
    """
    if published is None:
        published = published_sha(environment, service, version)
    path = artifact.artifact_path(service, version, paths.DIST)
    sha = artifact.sha256_file(path) if path.is_file() else None
    if sha != published:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".download")
        environment.client("s3").download_file(environment.bucket("artifacts"),
                                               publish.keys(service, version)["tarball"], str(tmp))
        tmp.replace(path)
        sha = artifact.sha256_file(path)
    if sha != published:
        raise BadInput(f"{path.name} has sha256 {sha[:12]}… but {environment.name} published {published[:12]}…; "
                       "the artifact in the bucket or its metadata was changed.")
    artifact.verify(path, service, version)
    return path, sha


def local_or_published(environment, service: str, version: str) -> tuple[Path, str]:
    """A local build of the version if there is one (verified), else the published artifact."""
    path = artifact.artifact_path(service, version, paths.DIST)
    if not path.is_file():
        return fetch_published(environment, service, version)
    artifact.verify(path, service, version)
    return path, artifact.sha256_file(path)
