"""The job kind of the service model: a schedule systemd reads, a bounded run, the timer as its unit.

A job entry is validated by its kind's model; its schedule goes through
systemd's own parser (systemd-analyze calendar) before `roadie converge`
reaches a host. Bad input is one line naming the entry.
"""

from __future__ import annotations

import shutil

import pytest
import yaml
from click.testing import CliRunner

from roadie import model
from roadie.errors import BadInput

JOB = {"kind": "job", "group": "recommender", "schedule": "*-*-* 03:00:00", "timeout": 3600}


def stack_with(**job) -> dict:
    doc = yaml.safe_load(model.DEFAULT_PATH.read_text())
    doc["roadie_services"]["recommender"] = {**JOB, **job}
    return doc


def test_a_job_entry_is_a_job_run_by_its_timer():
    job = model.parse(stack_with()).service("recommender")
    assert type(job) is model.Job and (job.schedule, job.timeout, job.balancer) == ("*-*-* 03:00:00", 3600, None)
    assert job.unit == "recommender.timer" and job.log_units == ["recommender.service", "recommender.timer"]
    assert job.min_healthy == 0  # a job has no traffic to keep: every host may switch at once
    assert [j.name for j in model.parse(stack_with()).jobs] == ["recommender"]


@pytest.mark.parametrize(("change", "message"), [
    ({"timeout": 0}, "services.recommender.timeout: Input should be greater than or equal to 1."),
    ({"schedule": ""}, "services.recommender.schedule: String should have at least 1 character."),
    ({"schedule": "daily'; rm -rf /"}, "services.recommender.schedule: String should match pattern"),
    ({"balancer": {"route_prefix": "/jobs", "backend": "jobs"}}, "a job has no port and health path"),
    ({"port": 8080}, "services.recommender.port: Extra inputs are not permitted."),
], ids=["timeout-0", "empty-schedule", "quote-in-schedule", "balancer-section", "a-service-field"])
def test_a_bad_job_entry_is_one_line(change, message):
    with pytest.raises(BadInput) as bad:
        model.parse(stack_with(**change))
    assert message in bad.value.message and "\n" not in bad.value.message


def test_systemd_analyze_is_here():
    """The checks below need systemd's parser; `make deps` installs systemd on the machines roadie runs from."""
    assert shutil.which("systemd-analyze")


@pytest.mark.parametrize(("schedule", "good"), [
    ("*-*-* 03:00:00", True), ("daily", True), ("Mon..Fri 02:30", True), ("hourly", True),
    ("nightly", False), ("*-*-* 25:00:00", False), ("every day at 3", False),
])
def test_the_schedule_is_read_by_systemd_itself(schedule, good):
    job = model.parse(stack_with(schedule=schedule)).service("recommender")
    if good:
        model.check_schedule(job)
        return
    with pytest.raises(BadInput) as bad:
        model.check_schedule(job)
    assert bad.value.message.startswith(f"services.recommender.schedule: systemd does not read '{schedule}'")


def test_converge_refuses_a_bad_schedule_before_ansible_runs(tmp_path, monkeypatch):
    from roadie.converge import run as engine
    from roadie.main import main

    planted = tmp_path / "stack.yml"
    planted.write_text(yaml.safe_dump(stack_with(schedule="nightly")))
    monkeypatch.setenv("ROADIE_STACK_FILE", str(planted))
    model._load.cache_clear()
    ran = []
    monkeypatch.setattr(engine, "run", lambda *a, **k: ran.append(a))
    try:
        result = CliRunner().invoke(main, ["converge", "--env", "local"])
    finally:
        model._load.cache_clear()
    assert result.exit_code == 2, result.output
    assert "systemd does not read 'nightly' as a calendar event" in result.output and ran == []
