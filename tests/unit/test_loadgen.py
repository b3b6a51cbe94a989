"""The load generator against a small HTTP server on loopback: it counts what fails and who served."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from loadkit import loadgen


class Handler(BaseHTTPRequestHandler):
    version = "1.0.0"
    fail_every = 0
    seen = 0

    def do_GET(self):  # noqa: N802 (http.server's name)
        Handler.seen += 1
        if Handler.fail_every and Handler.seen % Handler.fail_every == 0:
            self.send_response(503)
        elif self.path.startswith("/stream/9900"):  # a track nobody has: the app's own 404
            self.send_response(404)
        elif self.path.startswith("/stream/"):
            self.send_response(206 if self.headers.get("Range") else 200)
        else:
            self.send_response(200)
        self.send_header("X-Roadie-Version", Handler.version)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Handler.version, Handler.fail_every, Handler.seen = "1.0.0", 0, 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_counts_requests_by_version_and_target(server):
    load = loadgen.Load(server, loadgen.stack_targets(10, 3), rate=100, seconds=1.0)
    load.start()
    time.sleep(0.5)
    Handler.version = "2.0.0"  # a deploy, as the client sees it
    time.sleep(0.8)
    summary = load.stop()
    assert 60 <= summary["requests"] <= 101
    assert summary["failed"] == 0
    assert set(summary["by_version"]) == {"1.0.0", "2.0.0"}
    assert set(summary["by_target"]) == {"catalog", "streaming", "streaming-app"}


def test_every_failure_is_counted(server):
    Handler.fail_every = 5
    load = loadgen.Load(server, [loadgen.Target("catalog", "/api/tracks/{n}", 10)], rate=100, seconds=0.5)
    load.start()
    time.sleep(0.8)
    summary = load.stop()
    assert summary["requests"] >= 40
    assert summary["failed"] == summary["requests"] // 5
    assert all(f["error"] == "HTTP 503" for f in summary["failures"])


def test_a_refused_connection_is_a_failure():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    load = loadgen.Load(f"http://127.0.0.1:{port}", [loadgen.Target("catalog", "/x")], rate=50, seconds=0.3)
    load.start()
    time.sleep(0.5)
    summary = load.stop()
    assert summary["requests"] > 0 and summary["failed"] == summary["requests"]
    assert summary["failures"][0]["status"] == 0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"rate": 0}, "rate"), ({"rate": 10_000}, "rate"), ({"seconds": 0}, "seconds"), ({"seconds": 99_999}, "seconds"),
])
def test_bounded(kwargs, message):
    with pytest.raises(ValueError, match=message):
        loadgen.Load("http://127.0.0.1:9", [loadgen.Target("x", "/")], **kwargs)


def test_the_installed_package_holds_no_load_or_bench_tools():
    """loadgen and writer live in loadkit/ (tests, bench, make demo): an operator's roadie does not ship them."""
    import importlib.util

    assert importlib.util.find_spec("roadie.loadgen") is None
    assert importlib.util.find_spec("roadie.writer") is None
    assert importlib.util.find_spec("loadkit.loadgen") is not None
    assert importlib.util.find_spec("loadkit.writer") is not None


def test_roadie_imports_nothing_from_loadkit():
    """Layers: loadkit may use roadie, never the other way round."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[2] / "cli" / "roadie"
    offenders = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "loadkit"]
    assert not offenders, offenders
