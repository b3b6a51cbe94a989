"""`roadie release` end to end against a moto S3 on loopback: publish, list, immutability, bad input."""

import hashlib
import json
import shutil
import tarfile
import urllib.request

import pytest
from click.testing import CliRunner

from roadie import paths
from roadie.release import artifact
from roadie.release import publish as pub
from roadie.main import main
from roadie.environment import Environment

BUCKET = "roadie-local-artifacts"  # inventories/local: roadie_buckets.artifacts


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """Two catalog releases built once for the module: 1.0.0 and, from other bytes, 1.0.0 again."""
    dist = tmp_path_factory.mktemp("dist")
    built = artifact.build("catalog", "1.0.0", dist=dist)
    other = tmp_path_factory.mktemp("other")
    artifact.build("catalog", "1.0.0", dist=other, env={"SOURCE_DATE_EPOCH": "1"})
    return dist, built, other / built.path.name


@pytest.fixture
def cli(moto_endpoint, builds, monkeypatch, tmp_path):
    """Run roadie in-process with dist/ and the AWS endpoint pointed at the test's own."""
    dist = tmp_path / "dist"
    shutil.copytree(builds[0], dist)
    monkeypatch.setattr(paths, "DIST", dist)
    monkeypatch.setenv("ROADIE_AWS_ENDPOINT_URL", moto_endpoint)
    s3 = s3_client(moto_endpoint)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET) if bucket_exists(s3) else []:
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=BUCKET, Key=obj["Key"])
    if not bucket_exists(s3):
        s3.create_bucket(Bucket=BUCKET)

    def run(*args):
        return CliRunner().invoke(main, list(args), catch_exceptions=False)
    run.dist = dist
    run.s3 = s3
    return run


def s3_client(endpoint):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def bucket_exists(s3):
    return BUCKET in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_publish_uploads_artifact_manifest_and_checksum(cli, builds):
    built = builds[1]
    res = cli("--output", "json", "release", "publish", "catalog", "1.0.0")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert (doc["result"], doc["sha256"], doc["size"]) == ("published", built.sha256, built.size)
    k = pub.keys("catalog", "1.0.0")
    body = cli.s3.get_object(Bucket=BUCKET, Key=k["tarball"])["Body"].read()
    assert hashlib.sha256(body).hexdigest() == built.sha256
    manifest = json.loads(cli.s3.get_object(Bucket=BUCKET, Key=k["manifest"])["Body"].read())
    assert (manifest["service"], manifest["version"]) == ("catalog", "1.0.0")
    checksum = cli.s3.get_object(Bucket=BUCKET, Key=k["sha256"])["Body"].read().decode()
    assert checksum == f"{built.sha256}  catalog-1.0.0.tar.gz\n"


def test_republishing_the_same_bytes_is_a_no_op(cli):
    assert cli("release", "publish", "catalog", "1.0.0").exit_code == 0
    res = cli("--output", "json", "release", "publish", "catalog", "1.0.0")
    assert res.exit_code == 0 and json.loads(res.output)["result"] == "unchanged"


def test_published_version_with_different_content_is_refused(cli, builds):
    assert cli("release", "publish", "catalog", "1.0.0").exit_code == 0
    before = cli.s3.head_object(Bucket=BUCKET, Key=pub.keys("catalog", "1.0.0")["tarball"])
    shutil.copy(builds[2], cli.dist / "catalog-1.0.0.tar.gz")  # a rebuild from other source time
    res = cli("release", "publish", "catalog", "1.0.0")
    assert res.exit_code == 2
    assert "immutable" in res.output and len(res.output.strip().splitlines()) == 1
    after = cli.s3.head_object(Bucket=BUCKET, Key=pub.keys("catalog", "1.0.0")["tarball"])
    assert after["ETag"] == before["ETag"]


def test_losing_a_publish_race_is_refused(cli, builds, moto_endpoint):
    """Someone else's bytes land between our check and our write: If-None-Match stops the overwrite."""
    s3 = s3_client(moto_endpoint)
    key = pub.keys("catalog", "1.0.0")["tarball"]
    real_head = pub._head
    calls = []

    def racing_head(client, bucket, k):
        if k == key and not calls:
            calls.append(k)
            client.put_object(Bucket=bucket, Key=k, Body=b"theirs", Metadata={"sha256": "f" * 64})
            return None
        return real_head(client, bucket, k)
    pub._head = racing_head
    try:
        with pytest.raises(Exception, match="immutable"):
            pub.publish(s3, BUCKET, cli.dist / "catalog-1.0.0.tar.gz", "catalog", "1.0.0")
    finally:
        pub._head = real_head
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"theirs"


def test_list_shows_versions_in_semver_order_with_size_sha_and_time(cli, builds):
    for v in ("1.10.0", "1.2.0-rc.1", "1.0.0"):
        if v != "1.0.0":
            artifact.build("catalog", v, dist=cli.dist)
        assert cli("release", "publish", "catalog", v).exit_code == 0
    res = cli("--output", "json", "release", "list", "catalog")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)["versions"]
    assert [r["version"] for r in rows] == ["1.0.0", "1.2.0-rc.1", "1.10.0"]
    for r in rows:
        data = cli.s3.get_object(Bucket=BUCKET, Key=r["key"])["Body"].read()
        assert (r["size"], r["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
        assert r["published"][:4].isdigit()
    text = cli("release", "list", "catalog")
    assert text.exit_code == 0 and "1.10.0" in text.output
    assert "no published versions" in cli("release", "list", "streaming").output


def test_verify_command(cli):
    res = cli("release", "verify", "catalog", "1.0.0")
    assert res.exit_code == 0 and "match the manifest" in res.output


def tamper(path):
    """Change one file's bytes inside the artifact, leaving its manifest as it was."""
    tmp = path.with_suffix(".tmp")
    with tarfile.open(path) as tin, tarfile.open(tmp, "w:gz") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read() if m.isreg() else None
            if m.name == "app/catalog/app.py":
                data += b"\n# sneaky\n"
                m.size = len(data)
            tout.addfile(m, __import__("io").BytesIO(data) if data is not None else None)
    tmp.replace(path)


def corrupt_trailer(path, field):
    """Flip a byte of the gzip trailer's CRC-32 or length: the tar members all still read."""
    data = bytearray(path.read_bytes())
    data[len(data) - (8 if field == "crc" else 4)] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {"manifest": tamper, "CRC": lambda p: corrupt_trailer(p, "crc"),
          "length": lambda p: corrupt_trailer(p, "length")}


@pytest.mark.parametrize("args,message", [
    (["release", "build", "billing"], "Unknown service 'billing'"),
    (["release", "build", "catalog", "--version", "1.2"], "not a semantic version"),
    (["release", "build", "catalog", "--version", "v1.2.3"], "not a semantic version"),
    (["release", "publish", "catalog", "latest"], "not a semantic version"),
    (["release", "publish", "billing", "1.0.0"], "Unknown service"),
    (["release", "publish", "catalog", "7.7.7"], "No build of catalog 7.7.7"),
    (["release", "verify", "catalog", "7.7.7"], "No build of catalog 7.7.7"),
    (["release", "list", "billing"], "Unknown service"),
    (["release", "publish", "catalog", "1.0.0"], "does not match its manifest: app/catalog/app.py"),
    (["release", "verify", "catalog", "1.0.0"], "does not match its manifest: app/catalog/app.py"),
    (["release", "publish", "catalog", "1.0.0"], "damaged: CRC check failed"),
    (["release", "verify", "catalog", "1.0.0"], "damaged: CRC check failed"),
    (["release", "publish", "catalog", "1.0.0"], "damaged: Incorrect length"),
    (["release", "verify", "catalog", "1.0.0"], "damaged: Incorrect length"),
    (["release", "build", "catalog", "--version", ""], "--version is empty"),
    (["release", "build", "catalog", "--version", " "], "--version is empty"),
    (["release", "install", "catalog", "1.0.0", "--hosts", ""], "--hosts is empty"),
    (["release", "install", "catalog", "1.0.0", "--hosts", ","], "--hosts is empty"),
    (["release", "install", "catalog", "1.0.0", "--hosts", " , "], "--hosts is empty"),
    (["release", "publish", "catalog", "1.0.0", "--env", "production"],
     "Refusing to publish catalog 1.0.0 to production: it needs --yes"),
    (["release", "install", "catalog", "1.0.0", "--env", "production"],
     "Refusing to install catalog 1.0.0 on production hosts: it needs --yes"),
])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(cli, args, message):
    for word, damage in DAMAGE.items():
        if word in message:
            damage(cli.dist / "catalog-1.0.0.tar.gz")
    before = sorted(p.name for p in cli.dist.iterdir())
    res = cli(*args)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], res.output
    assert "Traceback" not in res.output
    assert cli.s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0
    assert sorted(p.name for p in cli.dist.iterdir()) == before


def test_missing_bucket_is_an_operation_failure(cli, monkeypatch):
    for obj in cli.s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        cli.s3.delete_object(Bucket=BUCKET, Key=obj["Key"])
    cli.s3.delete_bucket(Bucket=BUCKET)
    res = cli("release", "publish", "catalog", "1.0.0")
    assert res.exit_code == 1 and "does not exist" in res.output


def test_published_artifact_downloads_and_checks_like_a_host_would(cli, builds, moto_endpoint):
    """What a deploy does: fetch tarball and .sha256 over HTTP, compare, verify the manifest."""
    assert cli("release", "publish", "catalog", "1.0.0").exit_code == 0
    s3 = cli.s3
    k = pub.keys("catalog", "1.0.0")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": k["tarball"]})
    data = urllib.request.urlopen(url, timeout=30).read()
    want = s3.get_object(Bucket=BUCKET, Key=k["sha256"])["Body"].read().split()[0].decode()
    assert hashlib.sha256(data).hexdigest() == want


@pytest.mark.parametrize("tamper", ["object", "metadata"])
def test_a_deploy_refuses_an_artifact_changed_in_the_bucket(cli, builds, tamper):
    from roadie.release import fetch
    from roadie.errors import BadInput

    assert cli("release", "publish", "catalog", "1.0.0").exit_code == 0
    key = pub.keys("catalog", "1.0.0")["tarball"]
    published = cli.s3.head_object(Bucket=BUCKET, Key=key)["Metadata"]["sha256"]
    body, sha = (builds[2].read_bytes(), published) if tamper == "object" else \
        (cli.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read(), "0" * 64)
    cli.s3.put_object(Bucket=BUCKET, Key=key, Body=body, Metadata={"sha256": sha})
    shutil.rmtree(cli.dist)  # as on a CI runner that never built it
    with pytest.raises(BadInput, match="the artifact in the bucket or its metadata was changed"):
        fetch.fetch_published(Environment.load("local"), "catalog", "1.0.0")
