"""A built catalog release runs with nothing but the system python3, as on a Debian 12 host."""

import json
import signal
import subprocess
import tarfile

import pytest

from tests import servicekit
from roadie.release import artifact

SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory):
    built = artifact.build("catalog", "2.0.0-rc.1", dist=tmp_path_factory.mktemp("dist"))
    root = tmp_path_factory.mktemp("srv") / "releases" / "2.0.0-rc.1"
    root.mkdir(parents=True)
    with tarfile.open(built.path) as tar:
        tar.extractall(root, filter="data")
    return root


def host_env(**extra):
    """A host's environment: no venv, no PYTHONPATH, only python3 on PATH."""
    return {"PATH": "/usr/bin:/bin", "PYTHON": SYSTEM_PYTHON, "LANG": "C.UTF-8",
            **{k: str(v) for k, v in extra.items()}}


def test_system_python_has_none_of_the_dependencies():
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import psycopg"], env=host_env(), capture_output=True)
    assert probe.returncode != 0


def test_migrate_seed_and_serve_from_the_release(release_dir, pg, tmp_path):
    url = pg.create_database("catalog_release")

    def run(*cmd):
        return subprocess.run(cmd, env=host_env(CATALOG_DATABASE_URL=url), capture_output=True, text=True, timeout=120)

    first = run(str(release_dir / "bin" / "migrate"))
    assert first.returncode == 0, first.stderr
    assert "applied 0002_search_indexes" in first.stdout
    assert "up to date" in run(str(release_dir / "bin" / "migrate")).stdout
    seeded = run(str(release_dir / "bin" / "seed"), "--tracks", "500")
    assert seeded.returncode == 0 and "seeded 500 tracks" in seeded.stdout

    port = servicekit.free_port()
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([str(release_dir / "bin" / "serve")], stdout=log, stderr=subprocess.STDOUT,
                            env=host_env(CATALOG_BIND=f"127.0.0.1:{port}", CATALOG_DATABASE_URL=url,
                                         CATALOG_WORKERS=1))
    try:
        servicekit.wait_for_port(port, proc)
        status, _, body = servicekit.get(f"http://127.0.0.1:{port}/version")
        assert status == 200 and json.loads(body)["version"] == "2.0.0-rc.1"
        assert servicekit.get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        status, _, body = servicekit.get(f"http://127.0.0.1:{port}/api/tracks/7")
        assert status == 200 and json.loads(body)["id"] == 7
    finally:
        assert servicekit.stop(proc, signal.SIGTERM) == 0
    assert not list(release_dir.rglob("__pycache__")), "the release tree must stay as unpacked"
