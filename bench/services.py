"""Benchmarks of the reference services and their release artifacts, on loopback.

    .venv/bin/python -m bench.services [--seconds 5] [--tracks 12000] [--json]

Starts its own PostgreSQL, moto and gunicorn processes (stopped by PID),
seeds the catalogue, and measures with keep-alive HTTP clients in separate
processes (the client shares the machine's cores with the server, so these
are lower bounds). Every scenario is bounded by time and request count.
Baseline in the same run: catalog search with the trigram indexes dropped.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "services" / "catalog"),
                str(ROOT / "services" / "streaming"), str(ROOT / "cli")]

import servicekit  # noqa: E402

MAX_REQUESTS = 200_000  # per client process


def _client(port: int, paths: list[str], headers: dict, seconds: float, seed: int, q):
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    lat, nbytes, errors = [], 0, 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline and len(lat) < MAX_REQUESTS:
        path = rng.choice(paths)
        hdrs = headers(rng) if callable(headers) else headers
        t0 = time.perf_counter()
        conn.request("GET", path, headers=hdrs)
        resp = conn.getresponse()
        body = resp.read()
        lat.append(time.perf_counter() - t0)
        nbytes += len(body)
        errors += resp.status >= 400
    q.put((lat, nbytes, errors))


def load(port, paths, seconds, clients, headers=None) -> dict:
    q = mp.Queue()
    procs = [mp.Process(target=_client, args=(port, paths, headers or {}, seconds, i, q)) for i in range(clients)]
    for p in procs:
        p.start()
    results = [q.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join(10)
    lat = sorted(x for r in results for x in r[0])
    n = len(lat)
    return {"requests": n, "rps": round(n / seconds, 1), "p50_ms": round(lat[n // 2] * 1000, 2),
            "p99_ms": round(lat[min(n - 1, int(n * 0.99))] * 1000, 2),
            "mb_per_s": round(sum(r[1] for r in results) / seconds / 1e6, 1),
            "errors": sum(r[2] for r in results), "clients": clients, "seconds": seconds}


def bench_catalog(args, out: dict) -> None:
    import psycopg

    from catalog import migrate, seed

    with servicekit.postgres() as pg:
        url = pg.create_database("catalog_bench")
        with psycopg.connect(url) as conn:
            migrate.migrate(conn, migrate.load(), log=lambda _: None)
            t0 = time.perf_counter()
            seed.load(conn, args.tracks)
            out["catalog_seed_seconds"] = round(time.perf_counter() - t0, 2)
            artists = [r[0] for r in conn.execute("SELECT name FROM artists ORDER BY random() LIMIT 50")]
        words = seed.ADJ + seed.NOUN  # each matches ~3-6% of titles
        from urllib.parse import quote
        port = servicekit.free_port()
        env = servicekit.service_env("catalog", CATALOG_BIND=f"127.0.0.1:{port}", CATALOG_DATABASE_URL=url,
                                     CATALOG_WORKERS=2, CATALOG_THREADS=8)
        with tempfile.TemporaryDirectory() as tmp:
            proc = servicekit.gunicorn("catalog", port, env, Path(tmp) / "catalog.log")
            try:
                lookups = [f"/api/tracks/{i}" for i in random.Random(1).sample(range(1, args.tracks + 1), 2000)]
                common = [f"/api/search?q={w}&page={p}" for w in words for p in (1, 2)]
                selective = [f"/api/search?q={quote(a)}" for a in artists]  # an artist's full name
                out["catalog_track_lookup"] = load(port, lookups, args.seconds, args.clients)
                out["catalog_search_common_word"] = load(port, common, args.seconds, args.clients)
                out["catalog_search_artist_name"] = load(port, selective, args.seconds, args.clients)
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("DROP INDEX tracks_title_trgm, artists_name_trgm")
                out["baseline_no_trgm_search_common_word"] = load(port, common, args.seconds, args.clients)
                out["baseline_no_trgm_search_artist_name"] = load(port, selective, args.seconds, args.clients)
            finally:
                servicekit.stop(proc)


def bench_streaming(args, out: dict) -> None:
    from streaming import seed_media

    with servicekit.moto_server() as endpoint, tempfile.TemporaryDirectory() as tmp:
        s3 = servicekit.s3(endpoint)
        s3.create_bucket(Bucket="media")
        seed_media.seed(s3, "media", 20, seconds=10.0, log=lambda _: None)  # 20 x ~441 kB
        size = len(seed_media.wav(1, 10.0))
        port = servicekit.free_port()
        env = servicekit.service_env("streaming", STREAMING_BIND=f"127.0.0.1:{port}", STREAMING_MEDIA_BUCKET="media",
                                     STREAMING_CACHE_DIR=Path(tmp) / "cache", STREAMING_WORKERS=2,
                                     STREAMING_THREADS=8, AWS_ENDPOINT_URL=endpoint)
        proc = servicekit.gunicorn("streaming", port, env, Path(tmp) / "streaming.log")
        try:
            paths = [f"/stream/{i}" for i in range(1, 21)]
            t0 = time.perf_counter()
            for p in paths:  # warm the cache
                assert servicekit.get(f"http://127.0.0.1:{port}{p}")[0] == 200
            out["streaming_cold_fetch_ms_per_track"] = round((time.perf_counter() - t0) / 20 * 1000, 1)

            def range_64k(rng):
                start = rng.randrange(0, size - 65536)
                return {"Range": f"bytes={start}-{start + 65535}"}
            out["streaming_warm_range_64KiB"] = load(port, paths, args.seconds, args.clients, range_64k)
            out["streaming_warm_whole_file_441kB"] = load(port, paths, args.seconds, args.clients)
        finally:
            servicekit.stop(proc)


def bench_artifacts(args, out: dict) -> None:
    from roadie.release import artifact

    with tempfile.TemporaryDirectory() as tmp:
        for service in ("catalog", "streaming"):
            artifact.build(service, "0.0.1", dist=Path(tmp) / "warm")  # fills the wheel cache if empty
            built = artifact.build(service, "0.0.1", dist=Path(tmp) / service)
            out[f"artifact_{service}"] = {"size_mb": round(built.size / 1e6, 1),
                                         "build_seconds_warm_cache": round(built.seconds, 2),
                                         "files": len(artifact.verify(built.path)["files"])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bench.services")
    parser.add_argument("--seconds", type=float, default=5.0, help="per scenario (max 60)")
    parser.add_argument("--clients", type=int, default=4, help="client processes (max 16)")
    parser.add_argument("--tracks", type=int, default=12_000)
    parser.add_argument("--only", choices=["catalog", "streaming", "artifacts"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    args.seconds = min(args.seconds, 60.0)
    args.clients = max(1, min(args.clients, 16))
    out = {"cpus": os.cpu_count(), "tracks": args.tracks}
    for name, fn in (("catalog", bench_catalog), ("streaming", bench_streaming), ("artifacts", bench_artifacts)):
        if args.only in (None, name):
            fn(args, out)
    print(json.dumps(out, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
