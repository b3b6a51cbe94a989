"""docs/BENCHMARKS.md: every figure is `make bench`'s, rendered from a stored run with its date and commit.

Outside the generated region (below bench.__main__.MARK) the doc describes what is
measured and against what, without figures; older figures live only under the
History heading, each entry with its date. Inside the region every suite's header
names its run (date, commit), and that run is a file in bench/runs/.
"""

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.__main__ import MARK  # noqa: E402

DOC = ROOT / "docs" / "BENCHMARKS.md"
RUNS = ROOT / "bench" / "runs"  # one stored run a suite, committed with the doc
HISTORY = "## History (not re-measured; not backed by a stored run)"
DATE = re.compile(r"\b\d{4}-\d\d-\d\d\b")
NUMBER = r"\d[\d,]*(?:\.\d+)?"
# A measured figure: a number (or range) with a unit of time, ratio, size or rate, a bold
# number, or a count "N of M".
FIGURE = re.compile(rf"(?<![\w.]){NUMBER}(?:\s?[-–]\s?{NUMBER})?\s?(?:s|ms|x|×|B|KB|kB|MB|GB|req/s)(?![\w/])"
                    rf"|\*\*{NUMBER}|(?<![\w.]){NUMBER} of {NUMBER}")
RUN_HEADER = re.compile(r"^### (\w+) \(run (\d{4}-\d\d-\d\d \d\d:\d\d UTC), commit ([0-9a-f]{7,40})\b")


def bears_figure(line: str) -> bool:
    table_row = line.startswith("|") and not re.fullmatch(r"[|\-: ]+", line.strip())
    return bool(FIGURE.search(line) or (table_row and re.search(r"\d", line)))


def stored_run(runs_dir: Path, suite: str) -> dict | None:
    path = runs_dir / f"{suite}.json"
    return json.loads(path.read_text()).get("run") if path.exists() else None


def problems(text: str, runs_dir: Path) -> list[str]:
    """Every figure of the doc that is neither a stored run's nor dated history, one line each."""
    if text.count(MARK) != 1:
        return [f"the generated region's mark is there {text.count(MARK)} times, not once"]
    head, region = text.split(MARK)
    found = []
    section, dated = None, False
    for n, line in enumerate(head.splitlines(), 1):
        if line.startswith("## "):
            section, dated = ("history" if line.strip() == HISTORY else None), False
        elif section == "history" and line.startswith("### "):
            dated = bool(DATE.search(line))
            if not dated:
                found.append(f"line {n}: a history entry without its date: {line}")
        if bears_figure(line):
            if section != "history":
                found.append(f"line {n}: a figure outside the generated region and the history: {line}")
            elif not dated:
                found.append(f"line {n}: a history figure outside a dated entry: {line}")

    first = head.count("\n") + 1
    lines = list(enumerate(region.splitlines(), first))
    verified = set()
    for n, line in lines:
        if not line.startswith("### "):
            continue
        m = RUN_HEADER.match(line)
        if not m:
            found.append(f"line {n}: a run header without its date and commit: {line}")
            continue
        suite, date, commit = m.groups()
        run = stored_run(runs_dir, suite)
        if run is None:
            found.append(f"line {n}: no stored run {runs_dir.name}/{suite}.json for: {line}")
        elif run.get("date") != date or not str(run.get("commit", "")).startswith(commit):
            found.append(f"line {n}: {runs_dir.name}/{suite}.json is the run of {run.get('date')} at "
                         f"{run.get('commit')}, not: {line}")
        else:
            verified.add(suite)
    under = None
    for n, line in lines:
        if line.startswith("#"):
            m = RUN_HEADER.match(line)
            under = m.group(1) if m and m.group(1) in verified else None
        elif bears_figure(line):
            row = re.match(r"\| (\w+) \|", line)  # the ratio table: one row a suite's headline
            if under is None and not (row and row.group(1) in verified):
                found.append(f"line {n}: a figure under no stored run's header: {line}")
    return found


def test_every_figure_in_the_doc_is_a_stored_runs_or_dated_history():
    assert problems(DOC.read_text(), RUNS) == []


def test_the_generated_region_is_what_the_stored_runs_render():
    from bench.__main__ import load, render

    region = MARK + DOC.read_text().split(MARK, 1)[1]
    assert region == render(load(RUNS))


RUN = {"date": "2026-11-23 18:59 UTC", "commit": "d4fd671" + "0" * 33, "dirty": False,
       "machine": "x86_64", "cpus": 2, "python": "3.11.7"}
FLEET = {"ratio_serial_over_warm": 3.2, "warm_up": {"median_s": 4.0}, "baseline_serial_up": {"median_s": 12.8}}


@pytest.fixture
def runs_dir(tmp_path):
    (tmp_path / "fleet.json").write_text(json.dumps({"run": RUN, "result": FLEET}))
    return tmp_path


def test_a_rendered_stored_run_passes(runs_dir):
    from bench.__main__ import load, render

    text = "# Benchmarks\n\nWhat is measured, against what.\n\n" + render(load(runs_dir))
    assert "### fleet (run 2026-11-23 18:59 UTC, commit d4fd67100000," in text
    assert problems(text, runs_dir) == []


@pytest.mark.parametrize("edit, why", [
    (lambda t: t.replace("What is measured", "Warm up takes 4.0 s; what is measured"),
     "a figure outside the generated region and the history"),
    (lambda t: t.replace("What is measured, against what.",
                         HISTORY + "\n\n| before | 3.0 s |"), "a history figure outside a dated entry"),
    (lambda t: t.replace("What is measured, against what.",
                         HISTORY + "\n\n### stop 9\n\n| before | 3.0 s |"), "a history entry without its date"),
    (lambda t: re.sub(r"### fleet .*", "### fleet", t), "a run header without its date and commit"),
    (lambda t: t.replace("commit d4fd67100000", "commit 1bc67d1"), "fleet.json is the run of"),
    (lambda t: t.replace("18:59 UTC", "19:20 UTC"), "fleet.json is the run of"),
    (lambda t: t.replace("### fleet", "### converge"), "no stored run"),
    (lambda t: t.replace("\n### fleet", "\nquiet run: 2.52 s\n\n### fleet"), "a figure under no stored run's header"),
    (lambda t: t.replace("| fleet |", "| deploy |", 1), "a figure under no stored run's header"),
])
def test_a_figure_not_from_a_stored_run_is_found(runs_dir, edit, why):
    from bench.__main__ import load, render

    text = edit("# Benchmarks\n\nWhat is measured, against what.\n\n" + render(load(runs_dir)))
    found = problems(text, runs_dir)
    assert any(why in f for f in found), found


def test_the_figure_pattern():
    for figure in ["2.52 s", "0.46x", "10x faster", "13–16 s", "4.25-4.32 MB", "**0**", "0 of 1362", "250ms",
                   "775.0 req/s"]:
        assert bears_figure(f"text {figure} text"), figure
    for setting in ["7 hosts", "31 small tasks", "2-CPU machine", "20 writes/s", "Patroni 3.0.2", "2 roles",
                    "`--runs 5`", "stop 12", "ttl 20"]:
        assert not bears_figure(f"text {setting} text"), setting
    assert bears_figure("| hosts | 7 |") and not bears_figure("|---|---|")
