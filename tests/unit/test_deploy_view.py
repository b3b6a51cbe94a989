"""The live rollout picture follows the engine's events, and shows only on a terminal."""

import io

import pytest

from roadie.deploy.view import HostRow, RolloutView
from roadie.events import event
from roadie.output import Output


def view() -> RolloutView:
    return RolloutView("deploy catalog 1.1.0 in local",
                       {h: HostRow(h, "1.0.0 -> 1.1.0") for h in ("catalog-1", "catalog-2")}, batches=2)


STARTED = event("deploy.batch.started", hosts=["catalog-1"], index=1)


@pytest.mark.parametrize("events, states", [
    ([], ["waiting", "waiting"]),
    ([STARTED], ["drain", "waiting"]),
    ([STARTED, event("deploy.host.step", host="catalog-1", step="drain", seconds=0.1)], ["switch", "waiting"]),
    ([STARTED, event("deploy.host.step", host="catalog-1", step="restart", seconds=1)], ["health", "waiting"]),
    ([STARTED, event("deploy.host.step", host="catalog-1", step="enable", seconds=1)], ["drain", "waiting"]),
    ([STARTED, event("deploy.host.done", host="catalog-1")], ["in service", "waiting"]),
    ([STARTED, event("deploy.host.failed", host="catalog-1", step="health")], ["failed at health", "waiting"]),
    ([event("deploy.host.reverted", host="catalog-2", to="1.0.0")], ["waiting", "back on 1.0.0"]),
    ([event("deploy.host.done", host="elsewhere-9")], ["waiting", "waiting"]),
])
def test_states_follow_events(events, states):
    v = view()
    for ev in events:
        v.apply(ev)
    assert [row[2] for row in v.rows()] == states


def test_summary_counts_batches_and_hosts():
    v = view()
    for ev in (STARTED, event("deploy.host.done", host="catalog-1"), event("deploy.batch.done", index=1)):
        v.apply(ev)
    assert v.summary(now=v.started + 7).startswith("batch 1/2 done · 1/2 hosts in service · 7 s")


class Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("stream, json_mode, drawn", [(Tty(), False, True), (io.StringIO(), False, False),
                                                      (Tty(), True, False)])
def test_live_draws_only_on_a_terminal(stream, json_mode, drawn):
    out = Output(json_mode=json_mode, stream=io.StringIO(), err_stream=stream)
    v = view()
    with out.live(v):
        out.emit(STARTED)
    assert (v.hosts["catalog-1"].state == "drain") is drawn  # fed only while drawn
    assert ("catalog-2" in stream.getvalue()) is drawn
    assert out.listeners == []
