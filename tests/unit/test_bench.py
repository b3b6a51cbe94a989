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


RUN = {"date": "2026-11-22 08:05 UTC", "commit": "1bc4d5c" + "0" * 33, "dirty": False,
       "machine": "x86_64", "cpus": 2, "python": "3.11.7"}
FLEET = {"ratio_serial_over_warm": 3.2, "warm_up": {"median_s": 4.0}, "baseline_serial_up": {"median_s": 12.8}}


def test_a_suite_not_run_again_keeps_its_stored_run(tmp_path, monkeypatch):
    """Refreshing one suite rewrites its stored run only; the others stay, with their own date and commit."""
    import json
    import subprocess

    import bench.__main__ as driver

    runs, doc = tmp_path / "runs", tmp_path / "BENCHMARKS.md"
    runs.mkdir()
    (runs / "fleet.json").write_text(json.dumps({"run": RUN, "result": FLEET}))
    doc.write_text(f"# Benchmarks\n\nWhat is measured.\n\n{driver.MARK}\n\nwhatever was here\n")
    monkeypatch.setattr(driver, "RUNS", runs)
    monkeypatch.setattr(driver, "DOC", doc)
    monkeypatch.setattr(driver, "ROOT", tmp_path)
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "deploy.py").write_text("")

    def fake_run(argv, **kw):
        out = {"git": "abcdef1234567890" if "rev-parse" in argv else " M cli/x.py"}.get(argv[0], '{"new": 2}')
        return subprocess.CompletedProcess(argv, 0, out + "\n", "")

    monkeypatch.setattr(driver.subprocess, "run", fake_run)
    assert driver.main(["deploy"]) == 0
    stored = json.loads((runs / "deploy.json").read_text())
    assert stored["result"] == {"new": 2}
    assert stored["run"]["commit"] == "abcdef1234567890" and stored["run"]["dirty"] is True
    assert stored["run"]["date"].endswith(" UTC")
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nWhat is measured.\n\n" + driver.MARK) and "whatever" not in text
    assert "### fleet (run 2026-11-22 08:05 UTC, commit 1bc4d5c00000, x86_64, 2 CPUs, Python 3.11.7)" in text
    assert f"### deploy (run {stored['run']['date']}, commit abcdef123456 with uncommitted changes," in text
    assert "| fleet | warm `local up` vs serial up, host after host | 3.2x (4.0 s vs 12.8 s) |" in text
    assert "| new | 2 |" in text and "deploy-timeline.png" in text
    assert text == doc.read_text().split(driver.MARK)[0] + driver.render(driver.load(runs))


def test_no_stored_run_renders_no_figure():
    from bench.__main__ import render

    assert "No stored run yet" in render({}) and "|" not in render({})
