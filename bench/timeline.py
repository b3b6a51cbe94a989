"""A rollout timeline: each host's deploy steps over the requests per second by serving release.

Drawn from what `roadie --output json deploy` printed (its `deploy.host.step`
events carry each step's end time and length) and the load generator's samples
taken through the balancer during the same deploy, on one clock.
"""

from __future__ import annotations

from collections import Counter, defaultdict

STEP_COLOURS = {"drain": "#f4a261", "switch": "#8d99ae", "restart": "#e76f51", "health": "#2a9d8f",
                "enable": "#264653"}


def host_steps(events: list[dict], t0: float) -> dict[str, list[tuple[str, float, float]]]:
    """Per host, (step, start, length) in seconds since t0, in the order they ran."""
    out: dict[str, list[tuple[str, float, float]]] = defaultdict(list)
    for e in events:
        if e.get("event") == "deploy.host.step":
            end = e["ts"] - t0
            out[e["host"]].append((e["step"], end - e["seconds"], e["seconds"]))
    return dict(out)


def rate_by_version(samples: list[dict], bucket: float = 1.0) -> tuple[list[float], dict[str, list[int]], list[int]]:
    """Requests answered per bucket by each version, and failed requests per bucket."""
    if not samples:
        return [], {}, []
    n = int(max(s["t"] for s in samples) // bucket) + 1
    counts: dict[str, Counter] = defaultdict(Counter)
    failed: Counter = Counter()
    for s in samples:
        i = int(s["t"] // bucket)
        if s["ok"]:
            counts[s["version"] or "none"][i] += 1
        else:
            failed[i] += 1
    times = [i * bucket for i in range(n)]
    return times, {v: [c[i] / bucket for i in range(n)] for v, c in sorted(counts.items())}, \
        [failed[i] for i in range(n)]


def plot(events: list[dict], samples: list[dict], t0: float, path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = host_steps(events, t0)
    times, by_version, failed = rate_by_version(samples)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True,
                                      gridspec_kw={"height_ratios": [1, 1.4]})
    hosts = sorted(steps)
    for row, host in enumerate(hosts):
        for step, start, length in steps[host]:
            top.barh(row, max(length, 0.05), left=start, color=STEP_COLOURS.get(step, "grey"), edgecolor="white")
    top.set_yticks(range(len(hosts)), hosts)
    top.invert_yaxis()
    top.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in STEP_COLOURS.values()],
               labels=[f"{s}" for s in STEP_COLOURS], ncol=len(STEP_COLOURS), loc="lower center",
               bbox_to_anchor=(0.5, 1.0), frameon=False, fontsize=8)
    top.set_title(title, pad=24, fontsize=10)
    bottom.stackplot(times, *by_version.values(), labels=list(by_version), step="post", alpha=0.85)
    if any(failed):
        bottom.bar(times, failed, width=1.0, align="edge", color="red", label="failed")
    bottom.set_ylabel("requests/s through HAProxy")
    bottom.set_xlabel("seconds since the load started")
    bottom.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
