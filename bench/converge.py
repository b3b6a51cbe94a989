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

--synthetic also times, with the same profiles, a generated no-op play of 31 small
tasks (file, copy, lineinfile, command, stat) on every host: the shape of
ENVIRONMENT.md's reference figures, where per-task cost dominates.

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

from roadie.converge.run import prepare, run  # noqa: E402
from roadie import procs  # noqa: E402

ROADIE = [sys.executable, "-m", "roadie"]


def _roadie(*args: str, timeout: float = 300) -> None:
    subprocess.run([*ROADIE, *args], check=True, cwd=ROOT, timeout=timeout, stdout=subprocess.DEVNULL)


SCRATCH = "/var/tmp/roadie-bench"


def synthetic_play(tasks: int = 31) -> str:
    """A play of `tasks` small tasks, each a no-op once it has run: the per-task
    cost of each settings profile without the roles' own work."""
    import yaml

    def task(i: int) -> dict:
        n, kind = divmod(i - 1, 5)
        if i == 0:
            return {"ansible.builtin.file": {"path": SCRATCH, "state": "directory", "mode": "0755"}}
        return [
            {"ansible.builtin.file": {"path": f"{SCRATCH}/d{n}", "state": "directory", "mode": "0755"}},
            {"ansible.builtin.copy": {"dest": f"{SCRATCH}/f{n}", "content": "roadie\n", "mode": "0644"}},
            {"ansible.builtin.lineinfile": {"path": f"{SCRATCH}/lines", "line": f"line {n}", "create": True,
                                            "mode": "0644"}},
            {"ansible.builtin.command": {"argv": ["test", "-d", SCRATCH]}, "changed_when": False},
            {"ansible.builtin.stat": {"path": f"{SCRATCH}/f{n}"}},
        ][kind]

    play = [{"name": "Synthetic no-op play", "hosts": "all",
             "tasks": [{"name": f"Task {i}", **task(i)} for i in range(tasks)]}]
    return yaml.safe_dump(play, sort_keys=False)


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
        row["error"] = procs.last_line(stderr)
    print(f"  {label:14s} {seconds:7.1f} s  changed={row['changed']} ok={row['ok']}"
          f"{'  (timed out: lower bound)' if row['timed_out'] else ''}", file=sys.stderr)
    return row


def compare(runs: list[dict], noop: list[dict]) -> dict:
    """Best and median of the roadie runs, and the other profiles' times over the best."""
    best = min(r["seconds"] for r in noop)
    doc = {"runs": runs, "roadie_noop_seconds": {"best": best,
                                                 "median": statistics.median(r["seconds"] for r in noop)}}
    by = {r["profile"]: r for r in runs}
    if "roadie-linear" in by:
        doc["speedup_mitogen_over_linear"] = round(by["roadie-linear"]["seconds"] / best, 1)
    if "stock" in by:
        doc["speedup_vs_stock"] = round(by["stock"]["seconds"] / best, 1)
        doc["speedup_is_lower_bound"] = by["stock"]["timed_out"]
    return doc


def synthetic(args) -> dict:
    """The generated play with each profile, after one untimed run that makes it a no-op."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="roadie-bench-") as tmp:
        play = Path(tmp) / "synthetic.yml"
        play.write_text(synthetic_play())
        print("synthetic 31-task play: warm-up (untimed)", file=sys.stderr)
        converge_once("synthetic-warm-up", args.timeout, playbook=str(play))
        noop = [converge_once("roadie", args.timeout, playbook=str(play)) for _ in range(max(1, args.runs))]
        runs = [*noop, converge_once("roadie-linear", args.timeout, playbook=str(play), strategy="linear")]
        if not args.skip_stock:
            runs.append(converge_once("stock", args.stock_timeout, playbook=str(play), stock=True))
    return {"tasks": 31, **compare(runs, noop)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="timed no-op runs with roadie's settings")
    ap.add_argument("--cold", action="store_true", help="also rebuild the fleet bare and time a cold converge")
    ap.add_argument("--timeout", type=float, default=600, help="bound on each roadie run (s)")
    ap.add_argument("--stock-timeout", type=float, default=900, help="bound on the stock run (s)")
    ap.add_argument("--skip-stock", action="store_true")
    ap.add_argument("--synthetic", action="store_true", help="also time the generated 31-task no-op play")
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

    doc.update(compare(doc["runs"], noop))
    if args.synthetic:
        doc["synthetic"] = synthetic(args)
    doc["all_noop_changed_zero"] = all(r["changed"] == 0 and r["ok"] for r in doc["runs"]
                                       + doc.get("synthetic", {}).get("runs", []) if r["complete"])

    out = ROOT / "bench" / "results" / "converge.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    if args.json:
        print(json.dumps(doc))  # one line: `make bench` reads the last line
    else:
        print("| profile | strategy | seconds | changed |\n|---|---|---|---|")
        for r in ([doc["cold"]] if "cold" in doc else []) + doc["runs"]:
            bound = "+" if r["timed_out"] else ""
            print(f"| {r['profile']} | {r['strategy']} | {r['seconds']}{bound} | {r['changed']} |")
        for label, part in (("roles", doc), ("synthetic 31-task play", doc.get("synthetic", {}))):
            if "speedup_vs_stock" in part:
                print(f"\n{label}: no-op speedup vs stock {part['speedup_vs_stock']}x"
                      f"{' (lower bound)' if part['speedup_is_lower_bound'] else ''}")
    return 0 if doc["all_noop_changed_zero"] else 1


if __name__ == "__main__":
    sys.exit(main())
