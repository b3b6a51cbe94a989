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
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import timeline
from loadkit import loadgen
from roadie import inventory

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


def last_prepared() -> tuple[str, str]:
    """The versions an earlier prepare() built (its artifacts in dist/), for --no-prepare."""
    stamps = [p.name.split(".")[-4] for p in (ROOT / "dist").glob("catalog-9.0.0-bench.*.2.tar.gz")]
    if not stamps:
        raise SystemExit("--no-prepare: no earlier bench release in dist/; run once without it.")
    stamp = max(stamps, key=int)
    return f"9.0.0-bench.{stamp}.1", f"9.0.0-bench.{stamp}.2"


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


def timed_under_load(cmd: list[str]) -> tuple[float, dict, str, loadgen.Load, tuple[float, float]]:
    """Wall seconds of `cmd` under load, the load's summary, its stdout, the load, and its (start, end) wall clock."""
    load = loadgen.Load(LB, [loadgen.Target("catalog", "/api/tracks/{n}", 50)], rate=60, seconds=900).start()
    time.sleep(1)
    wall0, started = time.time(), time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    seconds = time.monotonic() - started
    wall1 = time.time()
    time.sleep(1)
    summary = load.stop()
    if proc.returncode != 0:  # --output json reports the error on stdout
        said = (proc.stderr.strip() or proc.stdout.strip())[-600:]
        raise SystemExit(f"{' '.join(cmd[:6])} exited {proc.returncode}: {said}")
    return seconds, summary, proc.stdout, load, (wall0, wall1)


def phases(events: list[dict], wall0: float, wall1: float) -> dict[str, float]:
    """Where a deploy's wall time went, from its JSON events' clocks and the process's start and end.

    start: process start, imports, preflight, lock and journal, up to `deploy.started`;
    before_rotation: stage and migrate (and the first capacity read); rotation: first
    batch started to last batch done (the hosts' steps and the gaps between batches,
    given apart as between_batches); end: prune, audit record, journal, lock release;
    exit: from `deploy.finished` to the process's end (the result line, interpreter exit).
    """
    at = {}
    for ev in events:
        at.setdefault(ev["event"], []).append(ev["ts"])
    whole = {kind.split(".")[1]: ts[0] for kind, ts in at.items() if kind.count(".") == 1}  # deploy.started ...
    started, finished = whole["started"], whole["finished"]
    begun, done = at.get("deploy.batch.started", [started]), at.get("deploy.batch.done", [started])
    gaps = sum(b - d for d, b in zip(done, begun[1:], strict=False))  # a batch done, the next begun
    return {k: round(v, 3) for k, v in {
        "start": started - wall0, "before_rotation": begun[0] - started, "rotation": done[-1] - begun[0],
        "between_batches": gaps, "end": finished - done[-1], "exit": wall1 - finished}.items()}


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
    seconds, load, out, gen, (wall0, wall1) = timed_under_load([*ROADIE, "--output", "json", "deploy", "catalog",
                                                                 version])
    if draw:
        draw_timeline(out, gen, version)
    events = [json.loads(line) for line in out.splitlines() if line.startswith('{"event"')]
    result = json.loads(out.strip().splitlines()[-1])
    steps = [h["steps"] for h in result["hosts"]]
    waits = sum(sum(s.get(k, 0.0) for k in WAITS) for s in steps)  # batches of one host: waits add up
    n = result["batches_done"]
    return {"profile": "roadie", "to": version, "seconds": round(seconds, 2), "failed": load["failed"],
            "requests": load["requests"], "batches": n,
            "overhead_per_batch_s": round((seconds - waits) / n, 3), "phases": phases(events, wall0, wall1),
            "waits_s": round(waits, 3)}


def baseline_run(version: str) -> dict:
    env_inv = str(inventory.inventory_path("local"))
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", env_inv,
           str(ROOT / "bench" / "baselines" / "rolling_update.yml"),
           "-e", "rolling_service=catalog", "-e", f"rolling_version={version}", "-e", "rolling_serial=1"]
    seconds, load, _, _, _ = timed_under_load(cmd)
    return {"profile": "ansible rolling_update.yml", "to": version, "seconds": round(seconds, 2),
            "failed": load["failed"], "requests": load["requests"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-prepare", action="store_true")
    args = ap.parse_args()
    global A, B
    if args.no_prepare:
        A, B = last_prepared()
    else:
        prepare()
    load_before = [round(x, 2) for x in os.getloadavg()]  # other work on the machine's cores skews every figure
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
        "roadie_phases_median_s": {k: statistics.median(r["phases"][k] for r in runs if r["profile"] == "roadie")
                                   for k in runs[0]["phases"]},
        "load_average": {"before": load_before, "after": [round(x, 2) for x in os.getloadavg()]},
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
