"""The benchmark driver's pure parts: the synthetic play and the results table."""

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.__main__ import flatten  # noqa: E402
from bench.converge import SCRATCH, compare, synthetic_play  # noqa: E402


def test_synthetic_play_has_31_distinct_tasks_confined_to_the_scratch_dir():
    play = yaml.safe_load(synthetic_play())
    tasks = play[0]["tasks"]
    assert len(tasks) == 31
    assert len({t["name"] for t in tasks}) == 31
    modules = [next(k for k in t if k.startswith("ansible.builtin.")) for t in tasks]
    assert set(modules) == {f"ansible.builtin.{m}" for m in ("file", "copy", "lineinfile", "command", "stat")}
    for task, module in zip(tasks, modules, strict=True):
        args = task[module]
        target = args.get("path") or args.get("dest") or args["argv"][-1]
        assert target.startswith(SCRATCH)


@pytest.mark.parametrize("value, rows", [
    ({"a": {"b": 1}}, [("a.b", "1")]),
    ({"xs": [1, 2]}, [("xs", "1, 2")]),
    ({"runs": [{"profile": "stock", "seconds": 5.0}]}, [("runs[0] stock", "seconds=5.0")]),
    ({"runs": []}, [("runs", "")]),
])
def test_flatten(value, rows):
    out = []
    flatten("", value, out)
    assert out == rows


def test_compare_reports_ratios_over_the_best_roadie_run():
    noop = [{"profile": "roadie", "seconds": 10.0}, {"profile": "roadie", "seconds": 12.0}]
    runs = [*noop, {"profile": "roadie-linear", "seconds": 30.0},
            {"profile": "stock", "seconds": 55.0, "timed_out": True}]
    doc = compare(runs, noop)
    assert doc["roadie_noop_seconds"] == {"best": 10.0, "median": 11.0}
    assert doc["speedup_mitogen_over_linear"] == 3.0
    assert doc["speedup_vs_stock"] == 5.5 and doc["speedup_is_lower_bound"] is True


def test_ratios_list_what_ran_and_skip_what_did_not():
    from bench.__main__ import ratios

    assert ratios({}) == []
    fleet = {"ratio_serial_over_warm": 3.2, "warm_up": {"median_s": 4.0}, "baseline_serial_up": {"median_s": 12.8}}
    rows = ratios({"fleet": fleet})
    assert rows[2] == "| fleet | warm `local up` vs serial up, host after host | 3.2x (4.0 s vs 12.8 s) |"
    assert len(rows) == 4


def test_a_suite_not_run_here_keeps_what_the_doc_said_of_it():
    """bench/results/ is per machine: refreshing one suite must not drop the others from the doc."""
    from bench.__main__ import MARK, render

    before = render({"fleet": {"ratio_serial_over_warm": 3.2, "warm_up": {"median_s": 4.0},
                               "baseline_serial_up": {"median_s": 12.8}},
                     "deploy": {"old": 1}}, "")
    after = render({"deploy": {"new": 2}}, "# Benchmarks\n\n" + before)
    assert "| fleet | warm `local up` vs serial up, host after host | 3.2x (4.0 s vs 12.8 s) |" in after
    assert "### fleet" in after and "| warm_up.median_s | 4.0 |" in after
    assert "_Not re-run on this machine: as written 20" in after
    assert "| new | 2 |" in after and "| old | 1 |" not in after  # the suite that ran is replaced
    first = next(line for line in after.splitlines() if line.startswith("_Not re-run"))
    dated = after.replace(first, "_Not re-run on this machine: as written 2026-01-01 00:00 UTC._")
    again = render({"deploy": {"new": 3}}, "# Benchmarks\n\n" + dated)
    assert again.count("### fleet") == 1 and again.count("_Not re-run") == 1 and again.count(MARK) == 1
    assert "as written 2026-01-01 00:00 UTC" in again  # the date of the measurement, not of the last rewrite
