"""bench.database's arithmetic: the outage (longest gap without an acknowledged write),
the restore target between two writes, and the restore-to-time comparison."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.database import accuracy, pick_target, spread  # noqa: E402
from loadkit.writer import Attempt, longest_gap  # noqa: E402


@pytest.mark.parametrize(("times", "since", "gap"), [
    ([1.0, 2.0, 3.0], 0.0, 1.0),             # steady writes: the first one's wait counts too
    ([0.5, 1.0, 27.0, 27.1], 1.0, 26.0),     # writes before `since` do not count
    ([10.0, 11.0], 2.0, 8.0),                # the outage runs from `since` to the first ack after it
    ([3.0, 1.0, 2.0], 0.0, 1.0),             # order of acknowledgement does not matter
    ([], 5.0, float("inf")),                 # nothing acknowledged after: no end to the outage
])
def test_longest_gap(times, since, gap):
    assert longest_gap(times, since) == pytest.approx(gap)


def _steady(n: int, every: float = 0.05, busy: float = 0.01, fail: tuple[int, ...] = ()) -> list[Attempt]:
    return [Attempt(k * every, k * every + busy, None if k in fail else 100 + k, "HTTP 503" if k in fail else None)
            for k in range(n)]


@pytest.mark.parametrize(("attempts", "low", "high"), [
    # Steady writes: T lies between an answer and the next send, in the middle third.
    (_steady(9), 0.16, 0.30),
    # The widest idle gap in the middle third wins.
    (_steady(3) + [Attempt(0.20, 0.21, 200), Attempt(0.60, 0.61, 201), Attempt(0.65, 0.66, 202)]
     + [Attempt(1 + k, 1 + k + 0.01, 300 + k) for k in range(3)], 0.21, 0.60),
    # A failed write before the gap: T is not placed after it (its row may or may not exist).
    ([Attempt(0.0, 0.01, 1), Attempt(0.05, 0.06, 2), Attempt(0.10, 0.5, None, "timeout"),
      Attempt(0.55, 0.56, 3), Attempt(0.60, 0.61, 4), Attempt(0.65, 0.66, 5)], 0.56, 0.60),
])
def test_pick_target_is_in_an_idle_gap_after_an_acknowledged_write(attempts, low, high):
    t = pick_target(attempts)
    assert low < t < high
    assert not any(a.sent <= t <= a.done for a in attempts)


def test_pick_target_without_an_idle_gap_is_an_error():
    with pytest.raises(ValueError, match="no idle gap"):
        pick_target([Attempt(0.0, 1.0, 1), Attempt(0.5, 2.0, 2), Attempt(1.5, 3.0, 3)])


ATTEMPTS = [Attempt(1.0, 1.1, 1), Attempt(2.0, 2.1, 2), Attempt(3.0, 3.1, None, "HTTP 503"),
            Attempt(4.0, 4.1, 4), Attempt(5.0, 5.1, 5)]


@pytest.mark.parametrize(("restored", "t", "want"), [
    # Exactly what was acknowledged before T: nothing missing, nothing extra; the newest restored
    # write (id 2) was answered 1.4 s before T and began (created_at 2.02) 1.48 s before.
    ({1: 1.02, 2: 2.02}, 3.5, {"acked_before_t": 2, "acked_after_t": 2, "missing_acked_before_t": 0,
                               "present_committed_after_t": 0, "present_unacknowledged": 0,
                               "in_flight_at_t": 0, "last_commit_gap_s": {"at_least": 1.4, "at_most": 1.48}}),
    # A row acknowledged before T is missing (a restore that stopped early).
    ({1: 1.02}, 3.5, {"missing_acked_before_t": 1, "present_committed_after_t": 0, "missing_ids": [2],
                      "last_commit_gap_s": {"at_least": 2.4, "at_most": 2.48}}),
    # A row sent after T is present (a restore that went past T).
    ({1: 1.02, 2: 2.02, 4: 4.02}, 3.5, {"missing_acked_before_t": 0, "present_committed_after_t": 1,
                                        "after_t_ids": [4]}),
    # A failed write that committed anyway is counted apart, neither missing nor after T.
    ({1: 1.02, 2: 2.02, 3: 3.02}, 3.5, {"present_unacknowledged": 1, "missing_acked_before_t": 0,
                                        "present_committed_after_t": 0}),
    # T inside a write: it is in flight, so its row may be there or not.
    ({1: 1.02}, 2.05, {"in_flight_at_t": 1, "acked_before_t": 1, "missing_acked_before_t": 0,
                       "present_committed_after_t": 0}),
    # ... and its row present is not "after T" either (it was sent before T).
    ({1: 1.02, 2: 2.02}, 2.05, {"in_flight_at_t": 1, "present_committed_after_t": 0}),
    # Nothing restored at all before T: every acknowledged row missing, no gap to report.
    ({}, 9.0, {"missing_acked_before_t": 4, "restored_rows": 0, "last_commit_gap_s": None}),
])
def test_accuracy(restored, t, want):
    got = accuracy(ATTEMPTS, restored, t)
    assert {k: got[k] for k in want} == want


def test_spread():
    assert spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "runs": 3}
