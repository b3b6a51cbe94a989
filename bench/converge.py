"""Converge speed on the local fleet: roadie's settings against stock Ansible, side by side.

    .venv/bin/python -m bench.converge [--runs 3] [--cold] [--stock-timeout 900] [--json]

Brings the local fleet up (idempotent) and converges it once untimed, so every
measured run is a no-op on a converged fleet (each is checked: changed=0, no
failures). Then, in one run of this script:

- roadie: ansible.cfg (pipelining, ControlPersist, forks 20, jsonfile fact cache,
  smart gathering) plus the mitogen_linear strategy when installed;
- roadie-linear: the same settings with Ansible's built-in linear strategy
  (the fallback when mitogen is missing);
- stock: forks 5, no pipelining, no ControlPersist, no fact cache (facts gathered
  by every play), linear strategy.

--cold first rebuilds the fleet from bare hosts (`roadie local down && up`) and
times that first converge. Every run is bounded by a timeout; a stock run that
hits it is reported as a lower bound. Results go to bench/results/converge.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "cli"))

from roadie.cli.converge import prepare, run  # noqa: E402

ROADIE = [sys.executable, "-m", "roadie"]


def _roadie(*args: str, timeout: float = 300) -> None:
    subprocess.run([*ROADIE, *args], check=True, cwd=ROOT, timeout=timeout, stdout=subprocess.DEVNULL)


def converge_once(label: str, timeout: float, **kwargs) -> dict:
    argv, env, strategy = prepare("local", **kwargs)
    started = time.monotonic()
    recap, rc, stderr = run(argv, env, timeout=timeout)
    seconds = time.monotonic() - started
    totals = recap.totals() if recap.hosts else {}
    row = {"profile": label, "strategy": strategy, "seconds": round(seconds, 1), "complete": recap.complete,
           "ok": recap.ok and rc == 0, "hosts": len(recap.hosts), "changed": totals.get("changed"),
           "tasks_ok": totals.get("ok"), "timed_out": not recap.complete and seconds >= timeout}
    if not recap.complete and not row["timed_out"]:
        row["error"] = (stderr.strip().splitlines() or ["no output"])[-1]
    print(f"  {label:14s} {seconds:7.1f} s  changed={row['changed']} ok={row['ok']}"
          f"{'  (timed out: lower bound)' if row['timed_out'] else ''}", file=sys.stderr)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="timed no-op runs with roadie's settings")
    ap.add_argument("--cold", action="store_true", help="also rebuild the fleet bare and time a cold converge")
    ap.add_argument("--timeout", type=float, default=600, help="bound on each roadie run (s)")
    ap.add_argument("--stock-timeout", type=float, default=900, help="bound on the stock run (s)")
    ap.add_argument("--skip-stock", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    doc: dict = {"fleet_hosts": 7, "runs": []}
    if args.cold:
        print("cold: rebuilding the fleet from bare hosts", file=sys.stderr)
        _roadie("local", "down")
        _roadie("local", "up")
        facts = ROOT / ".roadie" / "facts" / "local"
        for f in facts.glob("*"):
            f.unlink()
        doc["cold"] = converge_once("cold", args.timeout)
    else:
        _roadie("local", "up")
        print("warm-up converge (untimed)", file=sys.stderr)
        converge_once("warm-up", args.timeout)

    print("no-op converges", file=sys.stderr)
    noop = [converge_once("roadie", args.timeout) for _ in range(max(1, args.runs))]
    doc["runs"] += noop
    doc["runs"].append(converge_once("roadie-linear", args.timeout, strategy="linear"))
    if not args.skip_stock:
        doc["runs"].append(converge_once("stock", args.stock_timeout, stock=True))

    best = min(r["seconds"] for r in noop)
    doc["roadie_noop_seconds"] = {"best": best, "median": statistics.median(r["seconds"] for r in noop)}
    by = {r["profile"]: r for r in doc["runs"]}
    if "roadie-linear" in by:
        doc["speedup_mitogen_over_linear"] = round(by["roadie-linear"]["seconds"] / best, 1)
    if "stock" in by:
        doc["speedup_vs_stock"] = round(by["stock"]["seconds"] / best, 1)
        doc["speedup_is_lower_bound"] = by["stock"]["timed_out"]
    doc["all_noop_changed_zero"] = all(r["changed"] == 0 and r["ok"] for r in doc["runs"] if r["complete"])

    out = ROOT / "bench" / "results" / "converge.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    if args.json:
        print(json.dumps(doc))  # one line: `make bench` reads the last line
    else:
        print("| profile | strategy | seconds | changed |\n|---|---|---|---|")
        for r in ([doc["cold"]] if "cold" in doc else []) + doc["runs"]:
            print(f"| {r['profile']} | {r['strategy']} | {r['seconds']}{'+' if r['timed_out'] else ''} | {r['changed']} |")
        if "speedup_vs_stock" in doc:
            print(f"\nno-op speedup vs stock: {doc['speedup_vs_stock']}x"
                  f"{' (lower bound)' if doc['speedup_is_lower_bound'] else ''}")
    return 0 if doc["all_noop_changed_zero"] else 1


if __name__ == "__main__":
    sys.exit(main())
