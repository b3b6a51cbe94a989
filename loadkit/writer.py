"""A bounded writer through the balancer: creates playlists at a steady rate and
records every acknowledged id and every failure, with times.

Used by the failover and switchover tests and by bench.database to prove that no
acknowledged write is lost and to measure the time without successful writes.
Each attempt is also kept with its wall-clock (UTC epoch) send and answer times,
so a restore to a time can be compared with what was acknowledged before it.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Attempt:
    """One write: wall-clock seconds when it was sent and answered; the id if acknowledged."""

    sent: float
    done: float
    id: int | None = None
    error: str | None = None


def longest_gap(times, since: float) -> float:
    """The longest time without an acknowledged write from `since` on (the outage); inf with none."""
    points = [since] + sorted(t for t in times if t > since)
    return max((b - a for a, b in zip(points, points[1:], strict=False)), default=float("inf"))


@dataclass
class Writer:
    url: str                      # the balancer, e.g. http://198.18.0.10
    rate: float = 20.0            # writes per second (one at a time)
    max_seconds: float = 180.0    # a hard bound: the writer stops by itself
    tag: str = "roadie-writer"
    acked: dict[int, float] = field(default_factory=dict)   # id -> monotonic time of the 201
    failures: list[tuple[float, str]] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)   # every write, wall-clock times
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _write(self, n: int) -> None:
        body = json.dumps({"name": f"{self.tag}-{n}", "track_ids": [1]}).encode()
        req = urllib.request.Request(f"{self.url}/api/playlists", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        sent = time.time()
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                doc = json.loads(resp.read())
                if resp.status == 201 and isinstance(doc.get("id"), int):
                    self.acked[doc["id"]] = time.monotonic()
                    self.attempts.append(Attempt(sent, time.time(), id=doc["id"]))
                    return
                error = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            error = type(exc).__name__
        self.failures.append((time.monotonic(), error))
        self.attempts.append(Attempt(sent, time.time(), error=error))

    def _run(self) -> None:
        start, n = time.monotonic(), 0
        while not self._stop.is_set() and time.monotonic() - start < self.max_seconds:
            due = start + n / self.rate
            if (wait := due - time.monotonic()) > 0:
                self._stop.wait(wait)
            self._write(n)
            n += 1

    def start(self) -> Writer:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)

    def acked_since(self, t: float) -> int:
        return sum(1 for at in self.acked.values() if at > t)

    def longest_gap(self, since: float) -> float:
        """The longest time without an acknowledged write from `since` (monotonic) on."""
        return longest_gap(self.acked.values(), since)
