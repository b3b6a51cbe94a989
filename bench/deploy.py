"""Deploy wall time: `roadie deploy` against the Ansible rolling-update pattern, under load.

Both rotate the catalog tier of the local fleet one host at a time between two
releases already unpacked on every host (so both do the same work: drain,
switch, restart, health, enable), alternating direction run after run, with the
load generator counting failed requests through HAProxy for each. Also reported:
roadie's own overhead per batch (wall time less the drain, restart, health and
balancer waits it records per host).

    python -m bench.deploy --runs 3 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import timeline
from roadie import inventory, loadgen

ROOT = Path(__file__).resolve().parents[1]
ROADIE = [sys.executable, "-m", "roadie"]
LB = "http://198.18.0.10"
# Versions of the benchmark's own, new each run: published versions never change.
STAMP = int(time.time())
A, B = f"9.0.0-bench.{STAMP}.1", f"9.0.0-bench.{STAMP}.2"
WAITS = ("drain", "restart", "health", "enable")


def sh(*cmd: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} exited {proc.returncode}: {proc.stderr.strip()[-600:]}")
    return proc


def prepare() -> None:
    """Fleet up and converged; catalog A and B built, published and unpacked everywhere, A current."""
    sh(*ROADIE, "local", "up")
    sh(*ROADIE, "converge")
    for version in (A, B):
        sh(*ROADIE, "release", "build", "catalog", "--version", version)
        sh(*ROADIE, "release", "publish", "catalog", version)
    sh(*ROADIE, "release", "install", "catalog", A)
    sh(*ROADIE, "local", "ssh", "catalog-1", "set -a; . /srv/catalog/shared/catalog.env; /srv/catalog/current/bin/seed")
    sh(*ROADIE, "deploy", "catalog", B)  # unpacks B on every host
    sh(*ROADIE, "deploy", "catalog", A)


def timed_under_load(cmd: list[str]) -> tuple[float, dict, str, loadgen.Load]:
    load = loadgen.Load(LB, [loadgen.Target("catalog", "/api/tracks/{n}", 50)], rate=60, seconds=900).start()
    time.sleep(1)
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    seconds = time.monotonic() - started
    time.sleep(1)
    summary = load.stop()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} exited {proc.returncode}: {proc.stderr.strip()[-600:]}")
    return seconds, summary, proc.stdout, load


def draw_timeline(out: str, load: loadgen.Load, version: str) -> str:
    """The rollout as a PNG (docs/), on the load generator's clock."""
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    wall0 = time.time() - load.elapsed()
    samples = [{"t": s.t, "version": s.version, "ok": s.ok} for s in load.samples]
    path = ROOT / "docs" / "deploy-timeline.png"
    timeline.plot(events, samples, wall0, path,
                  f"roadie deploy catalog {version}: 2 hosts, one at a time, under 60 req/s through HAProxy")
    return str(path.relative_to(ROOT))


def roadie_run(version: str, draw: bool = False) -> dict:
    seconds, load, out, gen = timed_under_load([*ROADIE, "--output", "json", "deploy", "catalog", version])
    if draw:
        draw_timeline(out, gen, version)
    result = json.loads(out.strip().splitlines()[-1])
    steps = [h["steps"] for h in result["hosts"]]
    waits = sum(sum(s.get(k, 0.0) for k in WAITS) for s in steps)  # batches of one host: waits add up
    n = result["batches_done"]
    return {"profile": "roadie", "to": version, "seconds": round(seconds, 2), "failed": load["failed"],
            "requests": load["requests"], "batches": n,
            "overhead_per_batch_s": round((seconds - waits) / n, 3)}


def baseline_run(version: str) -> dict:
    env_inv = str(inventory.inventory_path("local"))
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", env_inv,
           str(ROOT / "bench" / "baselines" / "rolling_update.yml"),
           "-e", "rolling_service=catalog", "-e", f"rolling_version={version}", "-e", "rolling_serial=1"]
    seconds, load, _, _ = timed_under_load(cmd)
    return {"profile": "ansible rolling_update.yml", "to": version, "seconds": round(seconds, 2),
            "failed": load["failed"], "requests": load["requests"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-prepare", action="store_true")
    args = ap.parse_args()
    if not args.no_prepare:
        prepare()
    runs = []
    for i in range(args.runs):
        runs.append(roadie_run(B, draw=i == args.runs - 1))  # A -> B
        runs.append(baseline_run(A))  # B -> A
    ours = [r["seconds"] for r in runs if r["profile"] == "roadie"]
    theirs = [r["seconds"] for r in runs if r["profile"] != "roadie"]
    result = {
        "runs": runs,
        "roadie_seconds": {"median": statistics.median(ours), "best": min(ours)},
        "baseline_seconds": {"median": statistics.median(theirs), "best": min(theirs)},
        "ratio_roadie_over_baseline": round(statistics.median(ours) / statistics.median(theirs), 2),
        "failed_requests": {"roadie": sum(r["failed"] for r in runs if r["profile"] == "roadie"),
                            "baseline": sum(r["failed"] for r in runs if r["profile"] != "roadie")},
        "overhead_per_batch_s": statistics.median(r["overhead_per_batch_s"] for r in runs if r["profile"] == "roadie"),
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
