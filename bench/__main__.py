"""`make bench`: run every benchmark suite and write docs/BENCHMARKS.md.

Each suite is its own module (`python -m bench.NAME --json`), run in a fresh
process and bounded in time by its own flags. Its result is stored in
bench/runs/SUITE.json with the run's date, commit and machine (committed with the
doc), and the "Latest results" part of the doc is rendered from those files only:
a suite not re-run keeps its own stored run, dated; a suite never run shows nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "BENCHMARKS.md"
MARK = "<!-- latest run: written by `make bench`, everything below is replaced -->"
RUNS = ROOT / "bench" / "runs"
SUITES = {
    "fleet": ["--runs", "5", "--cold-runs", "3"],
    "converge": ["--cold", "--synthetic", "--runs", "3"],
    "services": ["--seconds", "5"],
    "deploy": ["--runs", "5"],
    "scale": ["--runs", "3", "--plot", "docs/deploy-scale.png"],
    "database": ["--runs", "1"],
}


def flatten(prefix: str, value, rows: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            flatten(f"{prefix}.{key}" if prefix else key, sub, rows)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        # Runs: one row each, named by profile, holding its time and counts.
        for i, run in enumerate(value):
            label = run.get("profile", str(i))
            rows.append((f"{prefix}[{i}] {label}", ", ".join(f"{k}={v}" for k, v in run.items() if k != "profile")))
    elif isinstance(value, list):
        rows.append((prefix, ", ".join(map(str, value))))
    else:
        rows.append((prefix, str(value)))


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


# The headline of each suite: (suite, what, how it is read from the suite's results).
RATIOS = [
    ("fleet", "warm `local up` vs serial up, host after host",
     lambda r: f"{r['ratio_serial_over_warm']}x ({r['warm_up']['median_s']} s vs "
               f"{r['baseline_serial_up']['median_s']} s)"),
    ("converge", "no-op converge of the roles, roadie vs stock Ansible (goal 10x)",
     lambda r: f"{r['speedup_vs_stock']}x ({r['roadie_noop_seconds']['best']} s vs "
               f"{next(x['seconds'] for x in r['runs'] if x['profile'] == 'stock')} s)"),
    ("converge", "synthetic 31-task no-op play, roadie vs stock Ansible",
     lambda r: f"{r['synthetic']['speedup_vs_stock']}x ({r['synthetic']['roadie_noop_seconds']['best']} s vs "
               f"{next(x['seconds'] for x in r['synthetic']['runs'] if x['profile'] == 'stock')} s)"),
    ("converge", "no-op converge, mitogen vs built-in linear strategy",
     lambda r: f"{r['speedup_mitogen_over_linear']}x"),
    ("deploy", "rolling deploy of the catalog tier under load, roadie vs Ansible rolling_update.yml "
               "(time; goal 0.5x)",
     lambda r: f"{r['ratio_roadie_over_baseline']}x ({r['roadie_seconds']['median']} s vs "
               f"{r['baseline_seconds']['median']} s; failed requests {r['failed_requests']['roadie']} vs "
               f"{r['failed_requests']['baseline']})"),
    ("deploy", "roadie's own overhead per batch (wall time less drain, restart, health, UP waits; goal < 1 s)",
     lambda r: f"{r['overhead_per_batch_s']} s"),
    ("scale", "SIMULATED: roadie's own orchestration time for a deploy of 1,000 hosts in batches of 10 % (goal < 2 s)",
     lambda r: f"{r['seconds_1000_hosts']} s"),
    ("database", "failover (power cut of the leader) under 20 writes/s: seconds without a successful write; "
                 "acknowledged writes lost (goal 0)",
     lambda r: f"{r['failover.no_write_s']['median']} s; {r['failover.lost']['max']} lost of "
               f"{sum(x['acked'] for x in r['runs'] if x['profile'] == 'failover')} acknowledged"),
    ("database", "`roadie db switchover` under 20 writes/s: seconds without a successful write; "
                 "acknowledged writes lost (goal 0)",
     lambda r: f"{r['switchover.no_write_s']['median']} s; {r['switchover.lost']['max']} lost of "
               f"{sum(x['acked'] for x in r['runs'] if x['profile'] == 'switchover')} acknowledged"),
    ("database", "base backup of the catalogue, `roadie db backup` vs `pg_dump -Fc` on the leader (time)",
     lambda r: f"{r['backup.ratio_over_pg_dump']['median']}x ({r['backup.barman_s']['median']} s vs "
               f"{r['backup.baseline_pg_dump_s']['median']} s)"),
    ("database", "restore to a time between two acknowledged writes: rows wrong (goal 0), restore seconds",
     lambda r: f"{r['restore_rows_wrong_total']} wrong; {r['restore_to_a_time.restore_s']['median']} s"),
    ("services", "catalog search req/s, trigram indexes vs none",
     lambda r: _ratio(r["catalog_search_common_word"]["rps"], r["baseline_no_trgm_search_common_word"]["rps"])),
]


def ratios(results: dict) -> list[str]:
    rows = []
    for suite, what, read in RATIOS:
        try:
            rows.append(f"| {suite} | {what} | {read(results[suite])} |")
        except (KeyError, StopIteration, TypeError):
            continue  # that suite has not run, or ran without this part
    return ["| suite | ratio | value |", "|---|---|---|", *rows, ""] if rows else []


def stamp() -> dict:
    """The run a result comes from: when, at which commit (uncommitted changes or not), on what."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                  ":!docs/BENCHMARKS.md", ":!docs/*.png", ":!bench/runs")  # what the bench itself writes
    return {"date": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC", "commit": git("rev-parse", "HEAD"),
            "dirty": bool(changed), "machine": platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version()}


def load(runs_dir: Path | None = None) -> dict[str, dict]:
    """The stored runs, {suite: {"run": stamp, "result": ...}}, in SUITES' order."""
    runs_dir = runs_dir or RUNS
    return {s: json.loads((runs_dir / f"{s}.json").read_text()) for s in SUITES if (runs_dir / f"{s}.json").exists()}


def header(suite: str, run: dict) -> str:
    dirty = " with uncommitted changes" if run.get("dirty") else ""
    return (f"### {suite} (run {run['date']}, commit {(run.get('commit') or 'unknown')[:12]}{dirty}, "
            f"{run.get('machine')}, {run.get('cpus')} CPUs, Python {run.get('python')})")


# Drawn by the suite's own run (bench.deploy's last roadie run, bench.scale --plot).
PLOTS = {"deploy": "![rollout timeline: per-host steps over requests/s by serving release](deploy-timeline.png)",
         "scale": "![simulated orchestration time against hosts](deploy-scale.png)"}


def render(stored: dict[str, dict]) -> str:
    """The generated part of the doc, from the stored runs alone (nothing from the doc itself)."""
    out = [MARK, "", "## Latest results", "",
           "Each suite's figures are from its own latest stored run (`bench/runs/SUITE.json`), named with "
           "its date and commit in the suite's heading below; the ratio rows come from the same files.", ""]
    if not stored:
        return "\n".join(out + ["_No stored run yet: `make bench` (on the local fleet) writes them._", ""])
    out += ratios({s: v["result"] for s, v in stored.items()}) or ["| suite | ratio | value |", "|---|---|---|", ""]
    for suite, entry in stored.items():
        rows: list[tuple[str, str]] = []
        flatten("", entry["result"], rows)
        out += [header(suite, entry["run"]), "", "| measure | value |", "|---|---|",
                *[f"| {k} | {v} |" for k, v in rows], ""]
        out += [PLOTS[suite], ""] if suite in PLOTS else []
    return "\n".join(out).rstrip() + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("suites", nargs="*", help=f"some of {', '.join(SUITES)} (default: all)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.suites) - set(SUITES))
    if unknown:
        parser.error(f"unknown suite {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    chosen = args.suites or list(SUITES)
    RUNS.mkdir(parents=True, exist_ok=True)
    # Suites not run this time keep their stored runs (each suite's ratios
    # come from one run of that suite), so one suite can be refreshed alone.
    failed = []
    for suite in chosen:
        if not (ROOT / "bench" / f"{suite}.py").exists():
            continue
        print(f"bench: {suite}", file=sys.stderr, flush=True)
        run = stamp()
        proc = subprocess.run([sys.executable, "-m", f"bench.{suite}", "--json", *SUITES[suite]],
                              cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            failed.append(suite)
            print(proc.stderr[-2000:], file=sys.stderr)
            continue
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        (RUNS / f"{suite}.json").write_text(json.dumps({"run": run, "result": result}, indent=2) + "\n")
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    head = text.split(MARK)[0].rstrip() + "\n\n"
    DOC.write_text(head + render(load()))
    print(f"wrote {DOC.relative_to(ROOT)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
