"""The rollout timeline's arithmetic: step bars end where roadie said, requests land in their second."""

import pytest

from bench import timeline

EVENTS = [
    {"event": "deploy.batch.started", "ts": 100.0},
    {"event": "deploy.host.step", "ts": 101.5, "host": "catalog-1", "step": "drain", "seconds": 0.5},
    {"event": "deploy.host.step", "ts": 103.5, "host": "catalog-1", "step": "restart", "seconds": 2.0},
    {"event": "deploy.host.step", "ts": 104.0, "host": "catalog-2", "step": "drain", "seconds": 0.25},
]


@pytest.mark.parametrize("host, expected", [
    ("catalog-1", [("drain", 1.0, 0.5), ("restart", 1.5, 2.0)]),
    ("catalog-2", [("drain", 3.75, 0.25)]),
])
def test_host_steps_start_where_they_began(host, expected):
    assert timeline.host_steps(EVENTS, t0=100.0)[host] == expected


def test_rate_by_version_buckets_answers_and_failures():
    samples = [{"t": 0.1, "version": "1.0.0", "ok": True}, {"t": 0.9, "version": "1.0.0", "ok": True},
               {"t": 1.2, "version": "1.1.0", "ok": True}, {"t": 2.5, "version": None, "ok": False},
               {"t": 2.6, "version": "1.1.0", "ok": True}]
    times, by_version, failed = timeline.rate_by_version(samples)
    assert times == [0.0, 1.0, 2.0]
    assert by_version == {"1.0.0": [2, 0, 0], "1.1.0": [0, 1, 1]}
    assert failed == [0, 0, 1]


def test_plot_writes_a_png(tmp_path):
    path = tmp_path / "t.png"
    timeline.plot(EVENTS, [{"t": 0.5, "version": "1.0.0", "ok": True}], 100.0, path, "t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
