"""A bounded load generator: steady requests through the balancer, every answer recorded.

Used by the deploy tests, `make demo` and the benchmarks to prove "no client
saw an error": each request opens its own connection (a reused one would hide
a refused connect), and each answer is kept with the release that served it
(the service model's version header). Bounded in rate, count and time; it
stops by itself.

    python -m loadkit.loadgen --url http://198.18.0.10 --seconds 30 --rate 60
    python -m loadkit.loadgen --url http://198.18.0.10 --seconds 900 -- roadie deploy catalog 1.0.1
"""

from __future__ import annotations

import argparse
import http.client
import json
import queue
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

MAX_SECONDS = 1800
MAX_RATE = 500


@dataclass(frozen=True)
class Target:
    """A kind of request: its path for the n-th request, headers, and the statuses that count as success."""

    name: str
    path: str  # may hold {n}: the request's sequence number, folded into `spread`
    spread: int = 1
    headers: tuple[tuple[str, str], ...] = ()
    ok: tuple[int, ...] = (200,)


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the start
    target: str
    status: int  # 0: no HTTP answer (refused, reset, timeout)
    version: str | None
    ms: float
    error: str | None = None
    ok: bool = True
    retry_after: str | None = None  # a maintenance 503 carries it; the balancer's own 503 does not


def stack_targets(tracks: int = 50, media: int = 5) -> list[Target]:
    """Catalog reads, streaming byte ranges, and streaming requests that reach the app.

    nginx serves repeated byte ranges from its slice cache (with the version
    header of the release that filled it), so those never touch the app a
    deploy restarts. A track that does not exist is answered 404 by the app
    itself every time (nginx caches only 200/206): that target proves the app
    behind nginx stayed available and says which release answered.
    """
    return [
        Target("catalog", "/api/tracks/{n}", spread=tracks),
        Target("streaming", "/stream/{n}", spread=media, headers=(("Range", "bytes=0-4095"),), ok=(206,)),
        Target("streaming-app", "/stream/9900{n}", spread=1000, headers=(("Range", "bytes=0-4095"),), ok=(404,)),
    ]


@dataclass
class Load:
    base_url: str
    targets: list[Target]
    rate: float = 60.0  # requests a second, all targets together
    seconds: float = 60.0  # stops by itself after this
    max_requests: int = 100_000
    version_header: str = "X-Roadie-Version"
    timeout: float = 10.0
    workers: int = 16
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self):
        if not 0 < self.rate <= MAX_RATE:
            raise ValueError(f"rate must be in (0, {MAX_RATE}] requests a second")
        if not 0 < self.seconds <= MAX_SECONDS:
            raise ValueError(f"seconds must be in (0, {MAX_SECONDS}]")
        parts = urlsplit(self.base_url)
        self._host, self._port = parts.hostname, parts.port or 80
        self._stop = threading.Event()
        self._jobs: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._t0 = 0.0

    # -- one request ------------------------------------------------------------
    def _one(self, n: int, target: Target) -> Sample:
        path = target.path.format(n=(n % target.spread) + 1)
        started = time.monotonic()
        conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        try:
            conn.request("GET", path, headers={"Connection": "close", **dict(target.headers)})
            resp = conn.getresponse()
            resp.read()
            status, version = resp.status, resp.getheader(self.version_header)
            retry_after = resp.getheader("Retry-After")
            error = None if status in target.ok else f"HTTP {status}"
        except (OSError, http.client.HTTPException) as exc:
            status, version, retry_after, error = 0, None, None, f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()
        ms = (time.monotonic() - started) * 1000
        return Sample(t=round(started - self._t0, 3), target=target.name, status=status, version=version,
                      ms=round(ms, 2), error=error, ok=error is None, retry_after=retry_after)

    def _worker(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            sample = self._one(*job)
            with self._lock:
                self.samples.append(sample)

    def _pace(self) -> None:
        interval = 1.0 / self.rate
        n = 0
        deadline = self._t0 + self.seconds
        while not self._stop.is_set() and n < self.max_requests:
            due = self._t0 + n * interval
            now = time.monotonic()
            if now >= deadline:
                break
            if due > now:
                self._stop.wait(due - now)
                continue
            self._jobs.put((n, self.targets[n % len(self.targets)]))
            n += 1
        for _ in self._threads[1:]:
            self._jobs.put(None)

    # -- control ------------------------------------------------------------------
    def start(self) -> "Load":
        self._t0 = time.monotonic()
        workers = [threading.Thread(target=self._worker, name=f"load-{i}", daemon=True) for i in range(self.workers)]
        self._threads = [threading.Thread(target=self._pace, name="load-pace", daemon=True), *workers]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> dict:
        """Stop sending, wait for requests in flight, and return the summary."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.timeout + 5)
        return self.summary()

    def __enter__(self) -> "Load":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def summary(self) -> dict:
        with self._lock:
            samples = list(self.samples)
        failed = [s for s in samples if not s.ok]
        span = (max(s.t for s in samples) - min(s.t for s in samples)) if len(samples) > 1 else 0.0
        return {
            "requests": len(samples),
            "failed": len(failed),
            "rate": round(len(samples) / span, 1) if span else 0.0,
            "by_version": dict(Counter(s.version or "none" for s in samples)),
            "by_target": {name: {"requests": sum(1 for s in samples if s.target == name),
                                 "failed": sum(1 for s in failed if s.target == name),
                                 "by_version": dict(Counter(s.version or "none" for s in samples
                                                            if s.target == name))}
                          for name in sorted({s.target for s in samples})},
            "failures": [asdict(s) for s in failed[:50]],
        }


def _print_tally(summary: dict) -> None:
    print(f"load: {summary['requests']} requests at {summary['rate']}/s, {summary['failed']} failed")
    for name, t in summary["by_target"].items():
        versions = ", ".join(f"{v}: {n}" for v, n in sorted(t["by_version"].items()))
        print(f"  {name:10} {t['requests']:6} requests, {t['failed']} failed; served by {versions}")
    for f in summary.get("failures", [])[:10]:
        print(f"  failed at {f['t']:.1f} s: {f['target']} {f['error']}")


def main(argv: list[str] | None = None) -> int:
    """Load for --seconds, or for as long as a command given after `--` runs (then its exit code)."""
    import subprocess

    ap = argparse.ArgumentParser(prog="python -m loadkit.loadgen", description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="the balancer, e.g. http://198.18.0.10")
    ap.add_argument("--seconds", type=float, default=30, help="how long; with a command, the most it may take")
    ap.add_argument("--rate", type=float, default=60)
    ap.add_argument("--tracks", type=int, default=50)
    ap.add_argument("--media", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    ap.add_argument("command", nargs="*", help="a command to run under load (after --)")
    args = ap.parse_args(argv)
    load = Load(args.url, stack_targets(args.tracks, args.media), rate=args.rate, seconds=args.seconds)
    load.start()
    rc = 0
    try:
        if args.command:
            time.sleep(1.0)  # a baseline before the command starts
            rc = subprocess.run(args.command, timeout=args.seconds).returncode
            time.sleep(1.0)
        else:
            while load.elapsed() < args.seconds:
                time.sleep(0.5)
    except KeyboardInterrupt:
        rc = 130
    summary = load.stop()
    if args.json:
        print(json.dumps(summary))
    else:
        _print_tally(summary)
    return rc or (1 if summary["failed"] else 0)


if __name__ == "__main__":
    raise SystemExit(main())
