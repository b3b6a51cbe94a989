"""Simulated: roadie's own orchestration cost over 10, 100 and 1,000 hosts.

The transport and the balancer are fakes that answer at once and count their
calls, so every second measured is roadie's: the real planner builds batches of
10 %, the real engine reads facts, stages, rotates each batch (drain, switch,
restart, health, enable) and prunes, exactly as `run.execute` drives it. No host,
network or balancer wait is in these figures; they say how the orchestration
grows with the tier, not how long a real deploy takes.

    python -m bench.scale --json [--sizes 10,100,1000] [--plot docs/deploy-scale.png]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from roadie import model
from roadie.commands.haproxy import Server
from roadie.deploy import engine
from roadie.deploy import plan as planner
from roadie.inventory import Host

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "catalog"
FROM, TO = "1.0.0", "2.0.0"


class Transport:
    """Every host answers at once: facts say FROM is current and nothing is staged."""

    kind = "fake"

    def __init__(self):
        self.calls: Counter = Counter()
        self._lock = threading.Lock()
        self.facts = json.dumps({"current": FROM, "previous": None, "releases": [FROM], "active": "active",
                                 "pid": 1, "disk_free": 10**12})

    def run(self, host: Host, command: str, what: str, timeout: float | None = None) -> str:
        with self._lock:
            self.calls[what] += 1
        return self.facts if what == "reading the release state" else ""

    def put(self, host: Host, local: Path, remote: str) -> None:
        with self._lock:
            self.calls["put"] += 1

    def close(self) -> None:
        pass


class Balancer:
    """A backend whose servers drain and come back at once; reads and writes counted."""

    kind = "fake"

    def __init__(self, names: list[str]):
        self.weight = dict.fromkeys(names, 1)
        self.calls: Counter = Counter()
        self._lock = threading.Lock()

    def servers(self, backend: str) -> dict[str, Server]:
        with self._lock:
            self.calls["servers"] += 1
            weights = dict(self.weight)
        return {n: Server(backend, n, "UP" if w else "DRAIN", w, 0, 0, 0, 0, 0) for n, w in weights.items()}

    def drain(self, backend: str, server: str) -> None:
        with self._lock:
            self.calls["drain"] += 1
            self.weight[server] = 0

    def ready(self, backend: str, server: str) -> None:
        with self._lock:
            self.calls["ready"] += 1
            self.weight[server] = 1


def deploy(size: int, batch: str = "10%") -> dict:
    """One simulated deploy of `size` hosts: wall time, per-batch times and call counts."""
    svc = model.load().service(SERVICE).model_copy(update={"drain_timeout": 0, "min_healthy": 1,
                                                           "migrations": False})
    names = [f"{SERVICE}-{i + 1}" for i in range(size)]
    hosts = {n: Host(n, f"198.18.{i // 250}.{i % 250 + 1}", (svc.group,)) for i, n in enumerate(names)}
    transport, balancer = Transport(), Balancer(names)
    batches: list[dict] = []
    opened: dict[int, float] = {}

    def emit(ev) -> None:
        if ev.kind == "deploy.batch.started":
            opened[ev.fields["index"]] = ev.ts
        elif ev.kind == "deploy.batch.done":
            batches.append({"hosts": len(ev.fields["hosts"]), "seconds": ev.ts - opened[ev.fields["index"]]})

    d = engine.Deps(service=svc, hosts=hosts, transport=transport, balancer=balancer, emit=emit)
    with tempfile.TemporaryDirectory() as tmp:
        tarball = Path(tmp) / f"{SERVICE}-{TO}.tar.gz"
        tarball.write_bytes(b"\0" * 1024)
        started = time.perf_counter()
        facts = engine.host_facts(d, names)
        p = planner.build(SERVICE, TO, {n: facts[n]["current"] for n in names}, batch=batch,
                          min_healthy=svc.min_healthy, drain_timeout=svc.drain_timeout)
        results = {n: engine.HostResult(n, m.from_version, m.to_version, previous=facts[n]["previous"])
                   for n, m in p.moves.items()}
        engine.stage(d, names, TO, tarball, "0" * 64, facts)
        outcome = engine.roll(d, p, results)
        engine.prune(d, p.hosts)
        total = time.perf_counter() - started
    if outcome.result != "ok" or any(r.result != "ok" for r in results.values()):
        raise SystemExit(f"{size} hosts: the simulated deploy did not complete: {outcome.error}")
    per_batch = [b["seconds"] for b in batches]
    return {"hosts": size, "batches": len(batches), "seconds": round(total, 4),
            "rotate_seconds": round(sum(per_batch), 4),
            "per_batch_s": {"mean": round(sum(per_batch) / len(per_batch), 4), "max": round(max(per_batch), 4)},
            "per_host_ms": round(total / size * 1000, 3),
            "calls": {"transport": sum(transport.calls.values()), "balancer_reads": balancer.calls["servers"],
                      "balancer_writes": balancer.calls["drain"] + balancer.calls["ready"]}}


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["hosts"] for r in runs]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(xs, [r["seconds"] for r in runs], "o-", label="whole deploy (facts, stage, rotate, prune)")
    ax.plot(xs, [r["per_batch_s"]["mean"] for r in runs], "s--", label="one batch (mean)")
    ax.axhline(2.0, color="grey", linestyle=":", label="goal: 2 s for 1,000 hosts")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("hosts in the tier (batches of 10 %)")
    ax.set_ylabel("roadie's own time (s)")
    ax.set_title("SIMULATED: orchestration overhead, instant fake hosts and balancer")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--runs", type=int, default=3, help="runs per size; the best is reported")
    ap.add_argument("--plot", help="write the curve as a PNG here")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    runs = [min((deploy(n) for _ in range(args.runs)), key=lambda r: r["seconds"]) for n in sizes]
    if args.plot:
        plot(runs, Path(args.plot))
    doc = {"simulated": True, "runs": [{"profile": f"{r['hosts']} hosts", **r} for r in runs],
           "seconds_1000_hosts": next((r["seconds"] for r in runs if r["hosts"] == 1000), None)}
    print(json.dumps(doc) if args.json else json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
