"""Host-side release commands: exact strings, and the shell really run in a temp tree."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import time

import pytest

from roadie.commands import release_host as cmd


@pytest.mark.parametrize(("fn", "args", "expected"), [
    (cmd.release_dir, ("catalog", "1.2.0"), "/srv/catalog/releases/1.2.0"),
    (cmd.incoming, ("streaming", "1.0.0"), "/srv/streaming/releases/.incoming-1.0.0.tar.gz"),
    (cmd.env_file, ("catalog",), "/srv/catalog/shared/catalog.env"),
    (cmd.switch, ("catalog", "1.2.0"),
     'cd /srv/catalog && old=$(readlink current || true) && if [ -n "$old" ] && [ "$old" != releases/1.2.0 ]; '
     'then ln -sfn "$old" previous.new && mv -T previous.new previous; fi && '
     "ln -sfn releases/1.2.0 current.new && mv -T current.new current"),
    (cmd.restart, ("streaming.service",), "systemctl restart streaming.service"),
    (cmd.migrate, ("2.0.0",),
     "runuser -u catalog -- sh -c 'set -a && . /srv/catalog/shared/catalog.env && set +a && "
     "exec /srv/catalog/releases/2.0.0/bin/migrate'"),
])
def test_command_strings(fn, args, expected):
    assert fn(*args) == expected


def in_tree(script: str, root) -> str:
    """The same shell, pointed at a temp tree instead of /srv."""
    return script.replace("/srv/", f"{root}/")


def run(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True)


def make_tarball(path, files: dict[str, bytes]) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "svc" / "releases").mkdir(parents=True)
    return tmp_path


def test_unpack_verifies_renames_in_and_is_repeatable(tree):
    tarball = tree / "svc/releases/.incoming-1.0.0.tar.gz"
    sha = make_tarball(tarball, {"bin/serve": b"#!/bin/sh\n", "manifest.json": b"{}"})
    script = in_tree(cmd.unpack("svc", "1.0.0", sha), tree)
    assert run(script).returncode == 0
    assert (tree / "svc/releases/1.0.0/bin/serve").read_bytes() == b"#!/bin/sh\n"
    assert not tarball.exists()
    assert not (tree / "svc/releases/1.0.0.unpacking").exists()
    make_tarball(tarball, {"bin/serve": b"other"})
    assert run(in_tree(cmd.unpack("svc", "1.0.0", hashlib.sha256(tarball.read_bytes()).hexdigest()), tree)
               ).returncode == 0
    assert (tree / "svc/releases/1.0.0/bin/serve").read_bytes() == b"#!/bin/sh\n"  # a release never changes


@pytest.mark.parametrize("source, compiled", [
    (b"VALUE = 1\n", True),  # bytecode beside it, so a restart does not compile the release again
    (b"def broken(:\n", False),  # the host's python3 cannot run it: the stage fails, nothing is renamed in
])
def test_unpack_compiles_the_release_or_refuses_it(tree, source, compiled):
    tarball = tree / "svc/releases/.incoming-1.0.0.tar.gz"
    sha = make_tarball(tarball, {"app/mod.py": source})
    proc = run(in_tree(cmd.unpack("svc", "1.0.0", sha), tree))
    assert (proc.returncode == 0) is compiled
    assert (tree / "svc/releases/1.0.0").exists() is compiled
    assert bool(list(tree.glob("svc/releases/1.0.0/app/__pycache__/mod.*.pyc"))) is compiled


def test_unpack_refuses_a_tampered_upload(tree):
    tarball = tree / "svc/releases/.incoming-1.0.0.tar.gz"
    make_tarball(tarball, {"a": b"1"})
    proc = run(in_tree(cmd.unpack("svc", "1.0.0", "0" * 64), tree))
    assert proc.returncode != 0
    assert not (tree / "svc/releases/1.0.0").exists()


def test_switch_is_a_rename_over_current_and_keeps_previous(tree):
    for v in ("1.0.0", "1.1.0"):
        (tree / "svc/releases" / v).mkdir()
    assert run(in_tree(cmd.switch("svc", "1.0.0"), tree)).returncode == 0
    assert os.readlink(tree / "svc/current") == "releases/1.0.0"
    assert not (tree / "svc/previous").is_symlink()  # a first install has no previous release
    assert run(in_tree(cmd.switch("svc", "1.1.0"), tree)).returncode == 0
    assert os.readlink(tree / "svc/current") == "releases/1.1.0"
    assert os.readlink(tree / "svc/previous") == "releases/1.0.0"
    # switching again to the same release (a repeated step) must not lose previous
    assert run(in_tree(cmd.switch("svc", "1.1.0"), tree)).returncode == 0
    assert os.readlink(tree / "svc/previous") == "releases/1.0.0"


def test_set_previous_restores_or_removes_the_link(tree):
    for v in ("1.0.0", "1.1.0"):
        (tree / "svc/releases" / v).mkdir()
    assert run(in_tree(cmd.set_previous("svc", "1.0.0"), tree)).returncode == 0
    assert os.readlink(tree / "svc/previous") == "releases/1.0.0"
    assert run(in_tree(cmd.set_previous("svc", None), tree)).returncode == 0
    assert not (tree / "svc/previous").is_symlink()


def test_facts_reports_links_releases_and_disk(tree):
    for v in ("1.0.0", "1.1.0"):
        (tree / "svc/releases" / v).mkdir()
    (tree / "svc/releases/.incoming-2.0.0.tar.gz").write_bytes(b"x")
    (tree / "svc/releases/2.0.0.unpacking").mkdir()
    run(in_tree(cmd.switch("svc", "1.0.0"), tree))
    run(in_tree(cmd.switch("svc", "1.1.0"), tree))
    proc = run(in_tree(cmd.facts("svc", "svc.service"), tree))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert (doc["current"], doc["previous"], doc["releases"]) == ("1.1.0", "1.0.0", ["1.0.0", "1.1.0"])
    assert doc["disk_free"] > 0


@pytest.mark.parametrize(("switches", "keep", "left"), [
    # current is the oldest, no previous: current + the 2 newest
    (["1.0.0"], 3, ["1.0.0", "1.6.0", "1.7.0"]),
    # current and previous both old: both stay, + the newest
    (["1.1.0", "1.0.0"], 3, ["1.0.0", "1.1.0", "1.7.0"]),
    # keep 2: only current and previous
    (["1.1.0", "1.0.0"], 2, ["1.0.0", "1.1.0"]),
    # current is the newest, previous the one before: nothing else
    (["1.6.0", "1.7.0"], 2, ["1.6.0", "1.7.0"]),
])
def test_prune_keeps_current_previous_and_the_newest(tree, switches, keep, left):
    releases = tree / "svc/releases"
    names = [f"1.{i}.0" for i in range(8)]
    for i, v in enumerate(names):
        (releases / v).mkdir()
        os.utime(releases / v, (time.time() - 100 + i, time.time() - 100 + i))
    (releases / "1.9.0.unpacking").mkdir()
    for v in switches:
        run(in_tree(cmd.switch("svc", v), tree))
    assert run(in_tree(cmd.prune("svc", keep=keep), tree)).returncode == 0
    assert sorted(p.name for p in releases.iterdir()) == sorted([*left, "1.9.0.unpacking"])


def test_wait_healthy_reads_the_bind_and_reports_why(tree):
    assert cmd.wait_healthy("svc", "1.0.0").startswith("runuser -u svc -- sh -c ")
    proc = subprocess.run(["python3", "-c", cmd.health_script("svc", "1.0.0", seconds=1)],
                          capture_output=True, text=True, env={**os.environ, "SVC_BIND": "0.0.0.0:9"})
    assert proc.returncode == 1
    assert "not healthy at http://127.0.0.1:9 after 1 s" in proc.stderr


@pytest.mark.parametrize(("answers", "version", "ok", "why"), [
    ({"/healthz": (200, {}), "/version": (200, {"version": "1.2.0"})}, "1.2.0", True, ""),
    ({"/healthz": (200, {}), "/version": (200, {"version": "1.1.0"})}, "1.2.0", False, "version 1.1.0"),
    ({"/healthz": (503, {}), "/version": (200, {"version": "1.2.0"})}, "1.2.0", False, "503"),
    ({"/up": (200, {}), "/v": (200, {"version": "1.2.0"})}, "1.2.0", True, ""),  # paths from the model
])
def test_wait_healthy_against_a_live_server(answers, version, ok, why):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            status, body = answers.get(self.path, (404, {}))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    paths = ("/up", "/v") if "/up" in answers else ("/healthz", "/version")
    try:
        proc = subprocess.run(["python3", "-c", cmd.health_script("svc", version, 2, *paths)], capture_output=True,
                              text=True, env={**os.environ, "SVC_BIND": f"127.0.0.1:{httpd.server_address[1]}"})
    finally:
        httpd.shutdown()
    assert (proc.returncode == 0) == ok, proc.stderr
    assert why in proc.stderr
