"""A canary with a verdict: the canary batch bakes under real traffic, then is judged against the old hosts.

The figures are the balancer's per-server counters (HAProxy `show stat`), read
before and after the bake: requests answered, errors (5xx answers, connection
and response errors) and the mean response time (`rtime`; HAProxy gives no
per-server p95). The canary fails when its error rate is worse than the old
hosts' by more than `max_error_rate`, when its response time is more than
`max_latency_ratio` times theirs (and at least LATENCY_FLOOR_MS slower: a few
milliseconds either way is noise), or when it got no request at all during the
bake (a canary nobody used proves nothing). Pure but for `read` and `sleep`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

from roadie.commands.haproxy import Server
from roadie.errors import BadInput

LATENCY_FLOOR_MS = 20
DEFAULT_ERROR_RATE = 0.01
DEFAULT_LATENCY_RATIO = 2.0


@dataclass(frozen=True)
class Rules:
    bake: int
    max_error_rate: float = DEFAULT_ERROR_RATE
    max_latency_ratio: float = DEFAULT_LATENCY_RATIO


def rules(canary: int | None, bake: int | None, max_error_rate: float | None,
          max_latency_ratio: float | None) -> Rules | None:
    """The bake's rules from the flags; every inconsistent or out-of-range one is BadInput."""
    if bake is None:
        if max_error_rate is not None or max_latency_ratio is not None:
            raise BadInput("--max-error-rate and --max-latency-ratio judge a bake: add --canary N --bake SECONDS.")
        return None
    if canary is None:
        raise BadInput("--bake needs --canary N: the bake judges the canary batch.")
    if not 1 <= bake <= 3600:
        raise BadInput(f"--bake {bake}: between 1 and 3600 seconds.")
    if max_error_rate is not None and not 0 <= max_error_rate < 1:
        raise BadInput(f"--max-error-rate {max_error_rate}: a share of requests, from 0 up to (not including) 1.")
    if max_latency_ratio is not None and not 1 <= max_latency_ratio <= 100:
        raise BadInput(f"--max-latency-ratio {max_latency_ratio}: between 1 and 100 (times the old hosts' time).")
    return Rules(bake, DEFAULT_ERROR_RATE if max_error_rate is None else max_error_rate,
                 DEFAULT_LATENCY_RATIO if max_latency_ratio is None else max_latency_ratio)


@dataclass(frozen=True)
class Figures:
    hosts: tuple[str, ...]
    requests: int
    errors: int
    response_ms: float

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def describe(self) -> str:
        return (f"{self.errors}/{self.requests} errors ({self.error_rate:.1%}), "
                f"{self.response_ms:.0f} ms mean response")


def figures(before: dict[str, Server], after: dict[str, Server], hosts: list[str]) -> Figures:
    """What `hosts` served between two reads: counter deltas, and the request-weighted mean response time."""
    requests = errors = 0
    weighted = 0.0
    for h in hosts:
        a, b = after[h], before[h]
        served = max(0, a.responses - b.responses)
        failed = max(0, (a.http_5xx + a.errors) - (b.http_5xx + b.errors))
        requests += served + max(0, a.errors - b.errors)  # a connection error is a request without an answer
        errors += failed
        weighted += a.response_ms * served
    return Figures(tuple(hosts), requests, errors, round(weighted / requests, 1) if requests else 0.0)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reasons: tuple[str, ...]
    canary: Figures
    baseline: Figures
    rules: Rules

    def summary(self) -> str:
        head = "canary passed its bake" if self.ok else "canary judged worse than the old hosts: " + \
            "; ".join(self.reasons)
        return (f"{head} (canary {', '.join(self.canary.hosts)}: {self.canary.describe()}; old hosts: "
                f"{self.baseline.describe()}; bake {self.rules.bake} s)")

    def as_dict(self) -> dict:
        return {"ok": self.ok, "reasons": list(self.reasons), "rules": asdict(self.rules),
                "canary": {**asdict(self.canary), "error_rate": round(self.canary.error_rate, 4)},
                "baseline": {**asdict(self.baseline), "error_rate": round(self.baseline.error_rate, 4)}}


def verdict(canary: Figures, baseline: Figures, r: Rules) -> Verdict:
    reasons = []
    if canary.requests == 0:
        reasons.append("no request reached the canary during the bake")
    elif canary.error_rate > baseline.error_rate + r.max_error_rate:
        reasons.append(f"error rate {canary.error_rate:.1%} vs {baseline.error_rate:.1%} "
                       f"(allowed {r.max_error_rate:.1%} more)")
    if canary.requests and baseline.requests and baseline.response_ms > 0 \
            and canary.response_ms > r.max_latency_ratio * baseline.response_ms \
            and canary.response_ms - baseline.response_ms >= LATENCY_FLOOR_MS:
        reasons.append(f"response time {canary.response_ms:.0f} ms vs {baseline.response_ms:.0f} ms "
                       f"(allowed {r.max_latency_ratio:g}x)")
    return Verdict(not reasons, tuple(reasons), canary, baseline, r)


def bake(read: Callable[[], dict[str, Server]], sleep: Callable[[float], None], canary: list[str],
         baseline: list[str], r: Rules) -> Verdict:
    """Serve for the bake time, then judge the canary against the hosts still on the old version."""
    before = read()
    sleep(r.bake)
    after = read()
    return verdict(figures(before, after, canary), figures(before, after, baseline), r)
