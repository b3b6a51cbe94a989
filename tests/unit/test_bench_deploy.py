"""bench/deploy.py's breakdown of a deploy's wall time from its JSON events."""

from __future__ import annotations

import pytest

from bench.deploy import phases


def events(*pairs: tuple[str, float]) -> list[dict]:
    return [{"event": kind, "ts": ts} for kind, ts in pairs]


@pytest.mark.parametrize(("evs", "wall", "expected"), [
    (events(("deploy.started", 100.8), ("deploy.migrated", 101.1), ("deploy.batch.started", 101.2),
            ("deploy.host.step", 101.3), ("deploy.batch.done", 102.0), ("deploy.batch.started", 102.1),
            ("deploy.batch.done", 103.0), ("deploy.finished", 103.05)),
     (100.0, 103.1),
     {"start": 0.8, "before_rotation": 0.4, "rotation": 1.8, "between_batches": 0.1, "end": 0.05, "exit": 0.05}),
    (events(("lock.waiting", 100.2), ("rollback.started", 101.0), ("deploy.batch.started", 101.0),
            ("deploy.batch.done", 102.0), ("rollback.finished", 102.5)),
     (100.0, 103.0),
     {"start": 1.0, "before_rotation": 0.0, "rotation": 1.0, "between_batches": 0.0, "end": 0.5, "exit": 0.5}),
    (events(("deploy.started", 100.5), ("deploy.batch.started", 100.6), ("deploy.batch.done", 101.0),
            ("deploy.batch.started", 101.3), ("deploy.batch.done", 102.0), ("deploy.batch.started", 102.2),
            ("deploy.batch.done", 103.0), ("deploy.finished", 103.0)),
     (100.0, 103.0),
     {"start": 0.5, "before_rotation": 0.1, "rotation": 2.4, "between_batches": 0.5, "end": 0.0, "exit": 0.0}),
])
def test_a_deploys_wall_time_is_split_into_its_phases(evs, wall, expected):
    got = phases(evs, *wall)
    assert got == pytest.approx(expected, abs=1e-3)
    assert sum(got[k] for k in ("start", "before_rotation", "rotation", "end", "exit")) == pytest.approx(
        wall[1] - wall[0], abs=1e-3)
