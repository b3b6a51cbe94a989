"""The engine's cost grows with batches, not hosts: counted calls of the simulated deploy (bench/scale.py)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import scale  # noqa: E402


@pytest.mark.parametrize("hosts, batch, batches", [
    (10, "10%", 10),
    (100, "10%", 10),
    (400, "10%", 10),
    (400, "50", 8),
])
def test_balancer_reads_are_a_constant_per_batch_whatever_the_hosts_in_it(hosts, batch, batches):
    run = scale.deploy(hosts, batch=batch)
    assert run["batches"] == batches
    # per batch: the capacity check, one read for the batch's drain, one for its UP wait
    assert run["calls"]["balancer_reads"] == 3 * batches, run["calls"]
    # per host, once each: drain and ready; facts, put, unpack, switch, restart, health, prune
    assert run["calls"]["balancer_writes"] == 2 * hosts
    assert run["calls"]["transport"] == 7 * hosts
