"""Local fleet timings: cold up (image built), warm up, no-op up and down.

    .venv/bin/python -m bench.fleet [--runs 5] [--cold-runs 3] [--env local] [--json]

Baseline in the same run: a serial up, one `roadie local up --hosts H` per
host in turn, which is what a script booting hosts one by one would do.
Cold runs build the base image into a throw-away cache directory, so the
machine's cached image is neither used nor disturbed. Takes the fleet down.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROADIE = [sys.executable, "-m", "roadie"]


def roadie(*args: str, env: dict | None = None) -> float:
    started = time.monotonic()
    subprocess.run([*ROADIE, *args], check=True, cwd=ROOT, env={**os.environ, **(env or {})},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900)
    return time.monotonic() - started


def hosts_of(env: str) -> list[str]:
    out = subprocess.run([*ROADIE, "--env", env, "--output", "json", "local", "status"], check=True,
                         cwd=ROOT, capture_output=True, text=True).stdout
    return [h["name"] for h in json.loads(out)["hosts"]]


def summary(samples: list[float]) -> dict:
    return {"median_s": round(statistics.median(samples), 2), "min_s": round(min(samples), 2),
            "max_s": round(max(samples), 2), "runs": len(samples)}


def run(env: str, runs: int, cold_runs: int) -> dict:
    e = ["--env", env]
    names = hosts_of(env)
    roadie(*e, "local", "down")
    cold, warm, noop, down, serial = [], [], [], [], []
    for _ in range(cold_runs):
        cache = Path(tempfile.mkdtemp(prefix="roadie-bench-cache-"))
        try:
            cold.append(roadie(*e, "local", "up", env={"ROADIE_CACHE_DIR": str(cache)}))
            roadie(*e, "local", "down", env={"ROADIE_CACHE_DIR": str(cache)})
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    for _ in range(runs):
        warm.append(roadie(*e, "local", "up"))
        noop.append(roadie(*e, "local", "up"))
        down.append(roadie(*e, "local", "down"))
    for _ in range(max(1, runs // 2)):
        serial.append(sum(roadie(*e, "local", "up", "--hosts", name) for name in names))
        roadie(*e, "local", "down")
    result = {"env": env, "hosts": len(names), "warm_up": summary(warm), "noop_up": summary(noop),
              "down": summary(down), "baseline_serial_up": summary(serial)}
    if cold:
        result["cold_up"] = summary(cold)
    result["ratio_serial_over_warm"] = round(statistics.median(serial) / statistics.median(warm), 2)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bench.fleet")
    parser.add_argument("--env", default="local")
    parser.add_argument("--runs", type=int, default=5, help="warm/no-op/down runs (max 20)")
    parser.add_argument("--cold-runs", type=int, default=3, help="cold runs, each builds an image (max 5)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.env, max(1, min(args.runs, 20)), max(0, min(args.cold_runs, 5)))
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
