"""Release artifacts: versions, pip command lines, reproducible tarballs, verification, real builds."""

import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from roadie import paths
from roadie.release import artifact, versions
from roadie.release.artifact import Source
from roadie.errors import BadInput


@pytest.mark.parametrize("text", ["1.4.2", "1.5.0-rc.1", "0.0.1", "10.20.30", "1.0.0-alpha.beta.1"])
def test_semantic_versions_accepted(text):
    assert str(versions.parse(text)) == text


@pytest.mark.parametrize("text", ["v1.4.2", "1.4", "1", "01.2.3", "1.2.3.4", "latest", "", "1.2.3-",
                                  "1.2.3+build.5", " 1.2.3", "1.2.3/../x"])
def test_anything_else_is_bad_input(text):
    with pytest.raises(BadInput):
        versions.parse(text)


def test_versions_sort_by_semver_precedence():
    got = sorted(["1.10.0", "1.5.0", "1.5.0-rc.1", "1.5.0-rc.10", "1.5.0-rc.2", "0.9.0"], key=versions.sort_key)
    assert got == ["0.9.0", "1.5.0-rc.1", "1.5.0-rc.2", "1.5.0-rc.10", "1.5.0", "1.10.0"]


def target():
    platforms = [a for t in artifact.PLATFORM_TAGS for a in ("--platform", t)]
    return ["--only-binary=:all:", *platforms, "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"]


@pytest.mark.parametrize("find_links,offline", [(None, []), (Path("/c"), ["--no-index", "--find-links", "/c"])])
def test_download_command(find_links, offline):
    assert artifact.download_command(Path("r.txt"), Path("/w"), find_links, python="py") == [
        "py", "-m", "pip", "download", "--quiet", *offline, "--no-deps", *target(),
        "--requirement", "r.txt", "--dest", "/w"]


def test_install_command_uses_only_the_wheelhouse():
    assert artifact.install_command(Path("r.txt"), Path("/w"), Path("/lib"), python="py") == [
        "py", "-m", "pip", "install", "--quiet", "--no-index", "--find-links", "/w", "--no-deps", "--no-compile",
        "--no-warn-script-location", *target(), "--target", "/lib", "--requirement", "r.txt"]


def test_platform_tags_cover_manylinux2014_up_to_debian_12_glibc():
    assert artifact.PLATFORM_TAGS[0] == "manylinux_2_36_x86_64"
    assert {"manylinux_2_17_x86_64", "manylinux_2_28_x86_64", "manylinux2014_x86_64"} <= set(artifact.PLATFORM_TAGS)


HASH = "--hash=sha256:" + "0" * 64


@pytest.mark.parametrize("line, message", [
    ("gunicorn", "not pinned"),
    (f"gunicorn>=20 {HASH}", "not pinned"),
    (f"gunicorn~=27.0 {HASH}", "not pinned"),
    ("gunicorn==27.0.1", "no --hash=sha256"),
    ("gunicorn==27.0.1 --hash=md5:00", "no --hash=sha256"),
])
def test_requirements_must_be_pinned_with_hashes(tmp_path, line, message):
    (tmp_path / "r.txt").write_text(f"# lock\n{line}\n")
    with pytest.raises(BadInput, match=message):
        artifact.requirement_names(tmp_path / "r.txt")


def test_requirement_names_are_the_pins_alone(tmp_path):
    (tmp_path / "r.txt").write_text(f"# lock\n\ngunicorn==27.0.1 {HASH}  # server\nsix==1.17.0 {HASH} {HASH}\n")
    assert artifact.requirement_names(tmp_path / "r.txt") == ["gunicorn==27.0.1", "six==1.17.0"]


def test_services_locks_carry_hashes():
    for service in ("catalog", "streaming"):
        assert artifact.requirement_names(artifact.service_dir(service) / "requirements.txt")


def make_tree(root: Path, mode_exec=0o755, mode_file=0o644) -> Path:
    files = {"app/svc/__init__.py": b"", "app/svc/app.py": b"print('hi')\n", "bin/serve": b"#!/bin/sh\n",
             "lib/dep/x.py": b"x = 1\n", "wheelhouse/dep-1-py3-none-any.whl": b"PK"}
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        p.chmod(mode_exec if rel.startswith("bin/") else mode_file)
    doc = artifact.manifest(root, "svc", "1.0.0", Source("abc", 1_700_000_000, False), ["dep==1"])
    (root / "manifest.json").write_bytes(artifact.manifest_bytes(doc))
    return root


def test_tarball_is_byte_identical_whatever_the_files_mtimes_and_modes(tmp_path):
    a = make_tree(tmp_path / "a")
    b = make_tree(tmp_path / "b", mode_exec=0o700, mode_file=0o600)
    for p in b.rglob("*"):
        os.utime(p, (1, 1))
    artifact.write_tar(a, tmp_path / "a.tgz", 1_700_000_000)
    artifact.write_tar(b, tmp_path / "b.tgz", 1_700_000_000)
    assert (tmp_path / "a.tgz").read_bytes() == (tmp_path / "b.tgz").read_bytes()


def test_tarball_entries_sorted_owned_by_root_with_fixed_mtime(tmp_path):
    tree = make_tree(tmp_path / "t")
    out = tmp_path / "t.tgz"
    artifact.write_tar(tree, out, 1_700_000_000)
    raw = out.read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # gzip header mtime
    with tarfile.open(out) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[0] == "manifest.json" and names[1:] == sorted(names[1:])
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "", "", 1_700_000_000)}
    modes = {m.name: m.mode for m in members}
    assert (modes["bin/serve"], modes["app/svc/app.py"], modes["app"]) == (0o755, 0o644, 0o755)


def test_manifest_lists_every_file_but_itself_and_takes_build_time_from_the_source(tmp_path):
    tree = make_tree(tmp_path / "t")
    doc = json.loads((tree / "manifest.json").read_text())
    assert doc["build_time"] == "2023-11-14T22:13:20Z"
    assert doc["files"]["app/svc/app.py"] == hashlib.sha256(b"print('hi')\n").hexdigest()
    assert "manifest.json" not in doc["files"] and len(doc["files"]) == 5
    assert (doc["service"], doc["version"], doc["source_commit"], doc["bin"]) == ("svc", "1.0.0", "abc", ["serve"])


def rewrite(src: Path, dest: Path, change) -> None:
    """Copy a tarball, letting change(name, data) return new bytes, None to drop, or a list to add."""
    with tarfile.open(src) as tin, tarfile.open(dest, "w:gz") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read() if m.isreg() else None
            new = change(m.name, data)
            if new is None and m.isreg():
                continue
            if m.isreg():
                m.size = len(new)
                tout.addfile(m, io.BytesIO(new))
            else:
                tout.addfile(m)
        for extra in change.extra if hasattr(change, "extra") else []:
            tout.addfile(extra[0], io.BytesIO(extra[1]) if extra[1] is not None else None)


def corrupt_trailer(data: bytes, field: str) -> bytes:
    """The gzip stream with its trailer's CRC-32 or length (ISIZE) changed: every tar
    member still reads, only a reader that goes to the end of the stream notices."""
    at = len(data) - (8 if field == "crc" else 4)
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


def tampered(tmp_path, kind):
    tree = make_tree(tmp_path / "t")
    good = tmp_path / "svc-1.0.0.tar.gz"
    artifact.write_tar(tree, good, 1_700_000_000)
    bad = tmp_path / "bad" / good.name
    bad.parent.mkdir()
    if kind == "not-a-tarball":
        bad.write_bytes(b"hello")
        return bad
    if kind == "truncated":
        bad.write_bytes(good.read_bytes()[:200])
        return bad
    if kind in ("crc", "length"):
        bad.write_bytes(corrupt_trailer(good.read_bytes(), kind))
        return bad

    def change(name, data):
        if kind == "changed" and name == "app/svc/app.py":
            return b"print('pwned')\n"
        if kind == "missing" and name == "lib/dep/x.py":
            return None
        if kind == "no-manifest" and name == "manifest.json":
            return None
        return data
    change.extra = []
    if kind == "extra":
        ti = tarfile.TarInfo("app/svc/evil.py")
        ti.size = 3
        change.extra = [(ti, b"x=1")]
    if kind in ("symlink", "traversal"):
        ti = tarfile.TarInfo("lib/link" if kind == "symlink" else "../../etc/cron.d/x")
        if kind == "symlink":
            ti.type, ti.linkname = tarfile.SYMTYPE, "/etc/passwd"
            change.extra = [(ti, None)]
        else:
            ti.size = 1
            change.extra = [(ti, b"x")]
    rewrite(good, bad, change)
    return bad


@pytest.mark.parametrize("kind,message", [
    ("changed", "app/svc/app.py has sha256"),
    ("missing", "lib/dep/x.py is missing"),
    ("extra", "app/svc/evil.py is not listed"),
    ("no-manifest", "no usable manifest.json"),
    ("symlink", "not a regular file"),
    ("traversal", "unsafe path"),
    ("not-a-tarball", "not a gzipped tarball"),
    ("truncated", "damaged"),
    ("crc", "damaged: CRC check failed"),
    ("length", "damaged: Incorrect length"),
])
def test_verify_refuses_artifacts_that_do_not_match_their_manifest(tmp_path, kind, message):
    with pytest.raises(BadInput, match=message):
        artifact.verify(tampered(tmp_path, kind))


def test_verify_accepts_the_untouched_artifact_and_checks_its_identity(tmp_path):
    tree = make_tree(tmp_path / "t")
    artifact.write_tar(tree, tmp_path / "a.tgz", 1)
    assert artifact.verify(tmp_path / "a.tgz", "svc", "1.0.0")["version"] == "1.0.0"
    with pytest.raises(BadInput, match="version '1.0.0', not '2.0.0'"):
        artifact.verify(tmp_path / "a.tgz", "svc", "2.0.0")


def test_unknown_service_names_the_known_ones():
    with pytest.raises(BadInput, match="expected one of catalog, streaming"):
        artifact.service_dir("billing")


def test_real_build_is_reproducible_and_self_contained(tmp_path):
    """Two builds of the catalog into different places: the same bytes, and a layout hosts can run."""
    one = artifact.build("catalog", "1.2.3-rc.1", dist=tmp_path / "one")
    two = artifact.build("catalog", "1.2.3-rc.1", dist=tmp_path / "two")
    assert one.sha256 == two.sha256 == hashlib.sha256(two.path.read_bytes()).hexdigest()
    doc = artifact.verify(one.path, "catalog", "1.2.3-rc.1")
    names = set(doc["files"])
    assert {"app/catalog/app.py", "app/catalog/migrations/0001_catalog.sql", "bin/serve", "bin/migrate",
            "bin/seed", "app/requirements.txt"} <= names
    assert any(n.startswith("lib/psycopg_binary/") for n in names)
    assert any(n.startswith("lib/gunicorn/") for n in names)
    assert len([n for n in names if n.startswith("wheelhouse/") and n.endswith(".whl")]) == 7
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or n.startswith("lib/bin/")]
    assert not [n for n in names if n.startswith("app/catalog/tests")]
    with tarfile.open(one.path) as tar:
        assert tar.getmember("bin/serve").mode == 0o755
    assert doc["source_commit"] and len(doc["source_commit"]) == 40


def test_a_wheel_that_does_not_match_its_locked_hash_is_refused(tmp_path):
    """pip runs in hash-checking mode: a swapped wheel in the cache never reaches a release."""
    artifact.build("catalog", "1.2.3", dist=tmp_path / "dist")  # fills the shared wheel cache
    lock = artifact.service_dir("catalog") / "requirements.txt"
    pin = next(p for p in artifact.requirement_names(lock) if p.startswith("gunicorn=="))
    cache = tmp_path / "cache"
    cache.mkdir()
    shared = Path(os.environ.get("ROADIE_WHEEL_CACHE", paths.cache_dir() / "wheels"))
    wheel = next(shared.glob("gunicorn-*.whl"))
    (cache / wheel.name).write_bytes(wheel.read_bytes() + b"tampered")
    (tmp_path / "r.txt").write_text(next(line for line in lock.read_text().splitlines() if line.startswith(pin)))
    proc = subprocess.run(artifact.download_command(tmp_path / "r.txt", tmp_path / "out", find_links=cache),
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "HASHES" in proc.stderr and not (tmp_path / "out" / wheel.name).exists()


def test_build_time_comes_from_source_date_epoch(tmp_path):
    src = artifact.source(artifact.service_dir("catalog"), {"SOURCE_DATE_EPOCH": "86400"})
    assert src.epoch == 86400
