"""Published releases in the artifacts bucket, immutable once there.

Layout per release, under releases/SERVICE/VERSION/:
  SERVICE-VERSION.tar.gz          the artifact (metadata sha256=HEX)
  SERVICE-VERSION.tar.gz.sha256   "HEX  SERVICE-VERSION.tar.gz" for sha256sum -c / get_url checksum
  manifest.json                   the artifact's manifest, readable without the tarball
The tarball is written with If-None-Match: * so two publishers racing for one
version cannot both win; it is the marker that a version exists.
"""

from __future__ import annotations

from pathlib import Path

from roadie.release import artifact, versions
from roadie.errors import BadInput, OperationFailed


def prefix(service: str, version: str) -> str:
    return f"releases/{service}/{version}/"


def keys(service: str, version: str) -> dict[str, str]:
    base = prefix(service, version) + artifact.artifact_name(service, version)
    return {"tarball": base, "sha256": base + ".sha256", "manifest": prefix(service, version) + "manifest.json"}


def _code(exc) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _head(s3, bucket: str, key: str) -> dict | None:
    from botocore.exceptions import ClientError

    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if _code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None
        if _code(exc) in ("NoSuchBucket",):
            raise OperationFailed(f"The artifacts bucket '{bucket}' does not exist.") from None
        raise


def _put_new(s3, bucket: str, key: str, body, **extra) -> bool:
    """Create key unless it exists; False when it already did."""
    from botocore.exceptions import ClientError

    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*", ChecksumAlgorithm="SHA256", **extra)
        return True
    except ClientError as exc:
        if _code(exc) in ("PreconditionFailed", "ConditionalRequestConflict"):
            return False
        if _code(exc) == "NoSuchBucket":
            raise OperationFailed(f"The artifacts bucket '{bucket}' does not exist.") from None
        raise


def _refuse(service, version, theirs, ours):
    raise BadInput(f"{service} {version} is already published with sha256 {theirs[:12]}…, and this build is "
                   f"{ours[:12]}…: published versions are immutable; build and publish a new version.")


def publish(s3, bucket: str, path: Path, service: str, version: str, verified: bool = False) -> dict:
    """Upload a verified artifact; re-publishing identical bytes is a no-op, different bytes are refused."""
    versions.parse(version)
    if not verified:
        artifact.verify(path, service, version)
    sha = artifact.sha256_file(path)
    k = keys(service, version)
    existing = _head(s3, bucket, k["tarball"])
    if existing is not None and existing.get("Metadata", {}).get("sha256") != sha:
        _refuse(service, version, existing.get("Metadata", {}).get("sha256", "unknown"), sha)
    created = False
    if existing is None:
        with open(path, "rb") as body:
            created = _put_new(s3, bucket, k["tarball"], body, Metadata={"sha256": sha},
                               ContentType="application/gzip")
        if not created:  # lost a race: someone published this version meanwhile
            theirs = (_head(s3, bucket, k["tarball"]) or {}).get("Metadata", {}).get("sha256", "unknown")
            if theirs != sha:
                _refuse(service, version, theirs, sha)
    # Completed on every run so an interrupted publish is finished by the next one.
    _put_new(s3, bucket, k["manifest"], artifact.read_manifest(path), ContentType="application/json")
    _put_new(s3, bucket, k["sha256"], f"{sha}  {path.name}\n".encode(), ContentType="text/plain")
    head = _head(s3, bucket, k["tarball"])
    return {"service": service, "version": version, "bucket": bucket, "key": k["tarball"], "sha256": sha,
            "size": head["ContentLength"], "published": head["LastModified"].isoformat(),
            "result": "published" if created else "unchanged"}


def list_versions(s3, bucket: str, service: str) -> list[dict]:
    """Published versions of a service, oldest to newest by SemVer precedence."""
    from botocore.exceptions import ClientError

    found = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"releases/{service}/"):
            for obj in page.get("Contents", []):
                parts = obj["Key"].split("/")
                if len(parts) == 4 and parts[3] == artifact.artifact_name(service, parts[2]):
                    found.append((parts[2], obj))
    except ClientError as exc:
        if _code(exc) == "NoSuchBucket":
            raise OperationFailed(f"The artifacts bucket '{bucket}' does not exist.") from None
        raise
    rows = []
    for version, obj in found:
        try:
            versions.sort_key(version)
        except ValueError:
            continue  # not ours: roadie never publishes a non-SemVer version
        head = _head(s3, bucket, obj["Key"]) or {}
        rows.append({"version": version, "size": obj["Size"], "sha256": head.get("Metadata", {}).get("sha256"),
                     "published": obj["LastModified"].isoformat(), "key": obj["Key"]})
    return sorted(rows, key=lambda r: versions.sort_key(r["version"]))
