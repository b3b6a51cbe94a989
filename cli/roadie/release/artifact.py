"""Release artifacts: self-contained, reproducible tarballs of a service.

Hosts have python3 and nothing else, so a release carries its dependencies
twice: as wheels (wheelhouse/, for audit and reinstall) and installed (lib/,
for running). Two builds of the same source and version are byte-identical:
entries are sorted, owners and modes normalised, every mtime is the source
commit's time, and the gzip header has no name or time. The build time lives
only in manifest.json, taken from SOURCE_DATE_EPOCH or the source commit.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from roadie import paths, procs
from roadie.release import versions
from roadie.errors import BadInput, OperationFailed

# What the hosts run: Debian 12's CPython 3.11 on x86_64 (glibc 2.36).
PYTHON_VERSION = "3.11"
ABI = "cp311"
PLATFORM = "manylinux_2_36_x86_64"
# pip 23 does not widen a manylinux tag to the older ones a host also runs, so list them all.
PLATFORM_TAGS = [f"manylinux_2_{minor}_x86_64" for minor in range(36, 16, -1)] + ["manylinux2014_x86_64"]
MANIFEST = "manifest.json"
TOP_LEVEL = ("app", "bin", "lib", "wheelhouse", MANIFEST)
SKIP_NAMES = {"__pycache__", ".pytest_cache", "tests"}
SKIP_SUFFIXES = (".pyc", ".pyo")
GZIP_LEVEL = 6


# -- services -----------------------------------------------------------------

def known_services(root: Path | None = None) -> list[str]:
    root = root or paths.SERVICES
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir()
                  if (p / "requirements.txt").is_file() and (p / p.name).is_dir() and (p / "bin").is_dir())


def service_dir(service: str, root: Path | None = None) -> Path:
    root = root or paths.SERVICES
    if service not in known_services(root):
        known = ", ".join(known_services(root)) or "none"
        raise BadInput(f"Unknown service '{service}': expected one of {known}.")
    return root / service


def default_version(service: str, root: Path | None = None) -> str:
    """The version in services/SERVICE/VERSION, used when --version is not given."""
    path = service_dir(service, root) / "VERSION"
    if not path.is_file():
        raise BadInput(f"{path} is missing: pass --version.")
    return path.read_text().strip()


def artifact_name(service: str, version: str) -> str:
    return f"{service}-{version}.tar.gz"


def artifact_path(service: str, version: str, dist: Path | None = None) -> Path:
    return (dist or paths.DIST) / artifact_name(service, version)


# -- source provenance --------------------------------------------------------

@dataclass(frozen=True)
class Source:
    commit: str | None
    epoch: int
    dirty: bool


def source(src: Path, env=os.environ) -> Source:
    """The last commit that touched the service, its time, and uncommitted changes.

    Keyed on the service's own directory so an unrelated commit elsewhere in
    the repository does not change the artifact.
    """
    def git(*args):
        proc = subprocess.run(["git", "-C", str(src), *args], capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else None

    head = git("log", "-1", "--format=%H %ct", "--", ".")
    commit, epoch = (head.split() if head else (None, "0"))
    dirty = bool(git("status", "--porcelain", "--", "."))
    if env.get("SOURCE_DATE_EPOCH", "").isdigit():
        epoch = env["SOURCE_DATE_EPOCH"]
    return Source(commit=commit, epoch=int(epoch), dirty=dirty)


# -- pip command builders (pure) ---------------------------------------------

def _target_args() -> list[str]:
    platforms = [arg for tag in PLATFORM_TAGS for arg in ("--platform", tag)]
    return ["--only-binary=:all:", *platforms, "--python-version", PYTHON_VERSION,
            "--implementation", "cp", "--abi", ABI]


def download_command(requirements: Path, dest: Path, find_links: Path | None = None,
                     python: str = sys.executable) -> list[str]:
    """pip download of exactly the pinned wheels; offline from find_links when given."""
    offline = ["--no-index", "--find-links", str(find_links)] if find_links is not None else []
    return [python, "-m", "pip", "download", "--quiet", *offline, "--no-deps", *_target_args(),
            "--requirement", str(requirements), "--dest", str(dest)]


def install_command(requirements: Path, wheelhouse: Path, target: Path, python: str = sys.executable) -> list[str]:
    """pip install into lib/ from the wheelhouse only: no index, no deps, no .pyc."""
    return [python, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(wheelhouse),
            "--no-deps", "--no-compile", "--no-warn-script-location", *_target_args(),
            "--target", str(target), "--requirement", str(requirements)]


def _run(cmd: list[str], what: str) -> None:
    procs.run(cmd, what, env={**os.environ, "PIP_NO_INPUT": "1"})


def requirement_names(requirements: Path) -> list[str]:
    """The `name==version` pins of a lock whose every line also carries its wheel's
    sha256 (`--hash=sha256:...`), so pip refuses a download that does not match."""
    names = []
    for line in requirements.read_text().splitlines():
        pin, *options = line.split("#", 1)[0].split() or [""]
        if not pin:
            continue
        if "==" not in pin:
            raise BadInput(f"{requirements}: '{pin}' is not pinned (name==version); the file must be a full lock.")
        if not any(opt.startswith("--hash=sha256:") for opt in options):
            raise BadInput(f"{requirements}: '{pin}' has no --hash=sha256:...; every pin must carry its wheel's hash.")
        names.append(pin)
    return names


def fill_wheelhouse(requirements: Path, wheelhouse: Path, cache: Path) -> None:
    """Copy the pinned wheels into wheelhouse/, fetching into the shared cache only what it lacks."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel builds share the cache
        offline = subprocess.run(download_command(requirements, wheelhouse, find_links=cache),
                                 capture_output=True, text=True)
        if offline.returncode != 0:
            _run(download_command(requirements, cache), "Downloading wheels")
            _run(download_command(requirements, wheelhouse, find_links=cache), "Collecting wheels")
    wheels = list(wheelhouse.glob("*.whl"))
    if len(wheels) != len(requirement_names(requirements)):
        raise OperationFailed(f"Expected one wheel per requirement in {requirements}, got {len(wheels)}.")


# -- manifest and tarball (pure) ----------------------------------------------

def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_files(tree: Path) -> list[str]:
    """Relative paths of the regular files under tree, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        for name in filenames:
            out.append(os.path.relpath(os.path.join(dirpath, name), tree))
    return sorted(out)


def manifest(tree: Path, service: str, version: str, src: Source, requirements: list[str]) -> dict:
    files = {rel: sha256_file(tree / rel) for rel in tree_files(tree) if rel != MANIFEST}
    bins = sorted(p.name for p in (tree / "bin").iterdir()) if (tree / "bin").is_dir() else []
    return {
        "service": service,
        "version": version,
        "source_commit": src.commit,
        "source_dirty": src.dirty,
        "build_time": datetime.fromtimestamp(src.epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": f"cpython-{PYTHON_VERSION}",
        "platform": PLATFORM,
        "requirements": requirements,
        "bin": bins,
        "files": files,
    }


def manifest_bytes(doc: dict) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def _tarinfo(name: str, mode: int, mtime: int, size: int = 0, is_dir: bool = False) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    ti.mode, ti.mtime, ti.size = mode, mtime, size
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def write_tar(tree: Path, out: Path, mtime: int) -> None:
    """A reproducible .tar.gz of tree: manifest.json first, then every path sorted."""
    dirs, files = set(), tree_files(tree)
    for rel in files:
        parent = os.path.dirname(rel)
        while parent:
            dirs.add(parent)
            parent = os.path.dirname(parent)
    order = sorted(dirs | set(files), key=lambda p: (p != MANIFEST, p))
    with open(out, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=GZIP_LEVEL) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for rel in order:
            path = tree / rel
            if rel in dirs:
                tar.addfile(_tarinfo(rel, 0o755, mtime, is_dir=True))
                continue
            if path.is_symlink():
                raise OperationFailed(f"{rel} is a symlink; release artifacts hold regular files only.")
            executable = os.stat(path).st_mode & 0o111
            with open(path, "rb") as f:
                tar.addfile(_tarinfo(rel, 0o755 if executable else 0o644, mtime, os.fstat(f.fileno()).st_size), f)


# -- verify -------------------------------------------------------------------

def verify(path: Path, service: str | None = None, version: str | None = None) -> dict:
    """The artifact's manifest, after checking every file against it; BadInput names the first mismatch."""
    name = path.name
    if not path.is_file():
        raise BadInput(f"{path} does not exist.")
    try:
        tar = tarfile.open(path, "r:gz")
    except (tarfile.TarError, OSError, EOFError):
        raise BadInput(f"{name} is not a gzipped tarball.") from None
    seen: dict[str, str] = {}
    doc = None
    try:
        with tar:
            for member in tar:
                rel = member.name
                if rel.startswith("/") or ".." in rel.split("/"):
                    raise BadInput(f"{name} has an unsafe path '{rel}'; refusing it.")
                if member.isdir():
                    continue
                if not member.isreg():
                    raise BadInput(f"{name} has '{rel}', which is not a regular file or directory; refusing it.")
                data = tar.extractfile(member)
                if rel == MANIFEST:
                    try:
                        doc = json.loads(data.read())
                    except ValueError:
                        raise BadInput(f"{name}: manifest.json is not valid JSON.") from None
                    continue
                seen[rel] = hashlib.file_digest(data, "sha256").hexdigest()
            # tarfile stops at the end-of-archive blocks; gzip checks its CRC and
            # length only at the end of the stream, which tar -xzf on a host reads.
            while tar.fileobj.read(1 << 20):
                pass
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise BadInput(f"{name} is damaged: {exc}.") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), dict):
        raise BadInput(f"{name} has no usable manifest.json; it is not a roadie release artifact.")
    expected = doc["files"]
    for rel in sorted(set(expected) | set(seen)):
        if rel not in seen:
            raise BadInput(f"{name} does not match its manifest: {rel} is missing.")
        if rel not in expected:
            raise BadInput(f"{name} does not match its manifest: {rel} is not listed in it.")
        if seen[rel] != expected[rel]:
            raise BadInput(f"{name} does not match its manifest: {rel} has sha256 {seen[rel][:12]}…, "
                           f"the manifest says {str(expected[rel])[:12]}….")
    for key, want in (("service", service), ("version", version)):
        if want is not None and doc.get(key) != want:
            raise BadInput(f"{name}'s manifest says {key} {doc.get(key)!r}, not {want!r}.")
    return doc


# -- build --------------------------------------------------------------------

@dataclass(frozen=True)
class Built:
    service: str
    version: str
    path: Path
    sha256: str
    size: int
    seconds: float

    def as_dict(self) -> dict:
        return {"service": self.service, "version": self.version, "path": str(self.path),
                "sha256": self.sha256, "size": self.size, "seconds": round(self.seconds, 2)}


def _copy_tree(src: Path, dest: Path) -> None:
    shutil.copytree(src, dest, ignore=lambda d, names: [
        n for n in names if n in SKIP_NAMES or n.endswith(SKIP_SUFFIXES)])


def stage(service: str, version: str, tree: Path, services: Path, wheel_cache: Path, env=os.environ) -> Source:
    """Lay out the release under tree: app/, bin/, wheelhouse/, lib/, manifest.json."""
    src_dir = service_dir(service, services)
    requirements = src_dir / "requirements.txt"
    pins = requirement_names(requirements)
    src = source(src_dir, env)
    app = tree / "app"
    _copy_tree(src_dir / service, app / service)
    shutil.copy2(requirements, app / "requirements.txt")
    _copy_tree(src_dir / "bin", tree / "bin")
    for p in (tree / "bin").iterdir():
        p.chmod(0o755)
    wheelhouse = tree / "wheelhouse"
    wheelhouse.mkdir()
    fill_wheelhouse(requirements, wheelhouse, wheel_cache)
    _run(install_command(requirements, wheelhouse, tree / "lib"), "Installing wheels into lib/")
    # Console scripts carry this controller's interpreter path; bin/serve uses python3 -m instead.
    shutil.rmtree(tree / "lib" / "bin", ignore_errors=True)
    for cache in (tree / "lib").rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)
    (tree / MANIFEST).write_bytes(manifest_bytes(manifest(tree, service, version, src, pins)))
    return src


def build(service: str, version: str, dist: Path | None = None, services: Path | None = None,
          wheel_cache: Path | None = None, env=os.environ) -> Built:
    versions.parse(version)
    services = services or paths.SERVICES
    service_dir(service, services)
    dist = dist or paths.DIST
    wheel_cache = wheel_cache or Path(env.get("ROADIE_WHEEL_CACHE", paths.cache_dir() / "wheels"))
    started = time.monotonic()
    dist.mkdir(parents=True, exist_ok=True)
    out = artifact_path(service, version, dist)
    with tempfile.TemporaryDirectory(prefix=f".build-{service}-", dir=dist) as tmp:
        tree = Path(tmp) / "tree"
        tree.mkdir()
        src = stage(service, version, tree, services, wheel_cache, env)
        partial = Path(tmp) / out.name
        write_tar(tree, partial, src.epoch)
        os.replace(partial, out)
    return Built(service, version, out, sha256_file(out), out.stat().st_size, time.monotonic() - started)


def read_manifest(path: Path) -> bytes:
    """manifest.json's bytes from an artifact (published next to it)."""
    with tarfile.open(path, "r:gz") as tar:
        return tar.extractfile(MANIFEST).read()

