"""roadie converge's command builder, as data: arguments in, argv/env/recap out (no hosts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from roadie.commands import ansible as cmd
from roadie.errors import BadInput
from roadie.main import main

AP = "/venv/bin/ansible-playbook"


@pytest.mark.parametrize("kwargs, expected", [
    ({}, [AP, "-i", "inv/local", "site.yml"]),
    ({"limit": ["catalog"]}, [AP, "-i", "inv/local", "--limit", "catalog", "site.yml"]),
    ({"limit": ["db-1", "lb-1"]}, [AP, "-i", "inv/local", "--limit", "db-1,lb-1", "site.yml"]),
    ({"tags": ["common", "database_configure"]},
     [AP, "-i", "inv/local", "--tags", "common,database_configure", "site.yml"]),
    ({"check": True}, [AP, "-i", "inv/local", "--check", "site.yml"]),
    ({"check": True, "diff": True}, [AP, "-i", "inv/local", "--check", "--diff", "site.yml"]),
    ({"vault_password_file": "/s/vault-password", "extra_vars_files": ["/s/vault.yml"]},
     [AP, "-i", "inv/local", "--vault-password-file", "/s/vault-password", "--extra-vars", "@/s/vault.yml",
      "site.yml"]),
    ({"limit": ["streaming"], "tags": ["streaming_run"], "check": True, "diff": True},
     [AP, "-i", "inv/local", "--limit", "streaming", "--tags", "streaming_run", "--check", "--diff", "site.yml"]),
])
def test_playbook_argv(kwargs, expected):
    assert cmd.playbook_argv(AP, "inv/local", "site.yml", **kwargs) == expected


@pytest.mark.parametrize("requested, mitogen_dir, expected", [
    ("auto", "/m/strategy", "mitogen_linear"),
    ("auto", None, "linear"),
    ("mitogen", "/m/strategy", "mitogen_linear"),
    ("linear", "/m/strategy", "linear"),
    ("linear", None, "linear"),
])
def test_choose_strategy(requested, mitogen_dir, expected):
    assert cmd.choose_strategy(requested, mitogen_dir) == expected


@pytest.mark.parametrize("requested, mitogen_dir, message", [
    ("mitogen", None, "not installed"),
    ("free", "/m", "Unknown strategy"),
])
def test_choose_strategy_refuses(requested, mitogen_dir, message):
    with pytest.raises(BadInput, match=message):
        cmd.choose_strategy(requested, mitogen_dir)


def test_mitogen_strategy_dir(tmp_path):
    assert cmd.mitogen_strategy_dir(None) is None
    assert cmd.mitogen_strategy_dir(tmp_path) is None
    (tmp_path / "plugins" / "strategy").mkdir(parents=True)
    (tmp_path / "plugins" / "strategy" / "mitogen_linear.py").write_text("")
    assert cmd.mitogen_strategy_dir(tmp_path) == str(tmp_path / "plugins" / "strategy")


BASE = {"PATH": "/usr/bin", "ANSIBLE_STRATEGY": "free"}


@pytest.mark.parametrize("settings, expected, absent", [
    (cmd.Settings(strategy="linear", fact_cache_dir="/r/.roadie/facts/local"),
     {"ANSIBLE_STRATEGY": "linear", "ANSIBLE_CACHE_PLUGIN_CONNECTION": "/r/.roadie/facts/local"},
     ["ANSIBLE_FORKS", "ANSIBLE_PIPELINING", "ANSIBLE_STRATEGY_PLUGINS"]),
    (cmd.Settings(strategy="mitogen_linear", mitogen_dir="/m/strategy"),
     {"ANSIBLE_STRATEGY": "mitogen_linear", "ANSIBLE_STRATEGY_PLUGINS": "/m/strategy"},
     ["ANSIBLE_FORKS", "ANSIBLE_PIPELINING"]),
    (cmd.Settings(stock=True, strategy="mitogen_linear", mitogen_dir="/m/strategy"),
     {"ANSIBLE_STRATEGY": "linear", "ANSIBLE_FORKS": "5", "ANSIBLE_PIPELINING": "False",
      "ANSIBLE_SSH_ARGS": "-o ControlMaster=no -o ControlPersist=no", "ANSIBLE_CACHE_PLUGIN": "memory",
      "ANSIBLE_GATHERING": "implicit"},
     ["ANSIBLE_STRATEGY_PLUGINS", "ANSIBLE_CACHE_PLUGIN_CONNECTION"]),
    (cmd.Settings(strategy="linear", forks=3), {"ANSIBLE_FORKS": "3"}, []),
])
def test_playbook_env(settings, expected, absent):
    env = cmd.playbook_env(BASE, settings, config_file="/r/ansible.cfg")
    assert env["ANSIBLE_CONFIG"] == "/r/ansible.cfg"
    assert env["ANSIBLE_STDOUT_CALLBACK"] == "ansible.posix.jsonl"
    assert env["PATH"] == "/usr/bin"
    for key, value in expected.items():
        assert env[key] == value, key
    for key in absent:
        assert key not in env, key


def test_playbook_env_mitogen_needs_its_plugins():
    with pytest.raises(BadInput):
        cmd.playbook_env({}, cmd.Settings(strategy="mitogen_linear"), config_file="/r/ansible.cfg")


@pytest.mark.parametrize("value, expected", [
    (None, []), ("catalog", ["catalog"]), ("db-1, lb-1,,", ["db-1", "lb-1"]),
])
def test_split_list(value, expected):
    assert cmd.split_list(value) == expected


@pytest.mark.parametrize("value", ["", ",", " ", " , ,"])
def test_split_list_refuses_a_given_value_that_names_nothing(value):
    with pytest.raises(BadInput, match="--hosts is empty"):
        cmd.split_list(value, "--hosts", "host")


@pytest.mark.parametrize("name", ["catalog:&db", "all!", "a b", "../x", "$(id)"])
def test_check_names_refuses_patterns(name):
    with pytest.raises(BadInput, match="Bad"):
        cmd.check_names("host or group", [name])


def _line(event: str, **doc) -> str:
    return json.dumps({"_event": event, **doc})


STATS = _line("v2_playbook_on_stats", stats={
    "db-1": {"ok": 17, "changed": 0, "failures": 0, "unreachable": 0, "skipped": 5, "rescued": 0, "ignored": 0},
    "lb-1": {"ok": 9, "changed": 1, "failures": 1, "unreachable": 0, "skipped": 0, "rescued": 0, "ignored": 0},
})


@pytest.mark.parametrize("lines, ok, totals, failures", [
    ([], False, {"ok": 0, "changed": 0, "failed": 0, "unreachable": 0, "skipped": 0}, []),
    (["[WARNING]: noise", STATS], False, {"ok": 26, "changed": 1, "failed": 1, "unreachable": 0, "skipped": 5}, []),
    ([_line("v2_runner_on_failed", task={"name": "Configure HAProxy"},
            hosts={"lb-1": {"msg": "failed to validate", "stderr": "[ALERT] parsing haproxy.cfg\n"}}), STATS],
     False, None, [{"host": "lb-1", "task": "Configure HAProxy", "unreachable": False,
                    "message": "failed to validate: [ALERT] parsing haproxy.cfg"}]),
    ([_line("v2_runner_on_unreachable", task={"name": "Gathering Facts"},
            hosts={"db-2": {"msg": "ssh: connect to host 198.18.0.16 port 22: No route to host"}})],
     False, None, [{"host": "db-2", "task": "Gathering Facts", "unreachable": True,
                    "message": "ssh: connect to host 198.18.0.16 port 22: No route to host"}]),
    ([_line("v2_runner_on_failed", task={"name": "Write files"},
            hosts={"db-1": {"msg": "One or more items failed", "results": [
                {"failed": False, "_ansible_item_label": "a.j2"},
                {"failed": True, "_ansible_item_label": "nftables.conf.j2", "msg": "failed to validate"}]}})],
     False, None, [{"host": "db-1", "task": "Write files", "unreachable": False,
                    "message": "nftables.conf.j2: failed to validate"}]),
    ([_line("v2_runner_on_failed", task={"name": "Create roles"},
            hosts={"db-1": {"censored": "the output has been hidden due to the fact that 'no_log: true' was "
                                        "specified for this result"}})],
     False, None, [{"host": "db-1", "task": "Create roles", "unreachable": False,
                    "message": "the output has been hidden due to the fact that 'no_log: true' was specified "
                               "for this result"}]),
])
def test_summarize(lines, ok, totals, failures):
    recap = cmd.summarize(lines)
    assert recap.ok is ok
    if totals is not None:
        assert recap.totals() == totals
    assert recap.failures == failures


def test_summarize_clean_run_and_host_rows():
    stats = _line("v2_playbook_on_stats", stats={
        "db-1": {"ok": 17, "changed": 0, "failures": 0, "unreachable": 0, "skipped": 5, "rescued": 0, "ignored": 0}})
    recap = cmd.summarize([stats])
    assert recap.ok and recap.complete
    assert recap.hosts == {"db-1": {"ok": 17, "changed": 0, "failed": 0, "unreachable": 0, "skipped": 5,
                                    "rescued": 0, "ignored": 0}}
    assert recap.as_dict()["totals"]["changed"] == 0


def test_changes_carry_diffs_and_item_events_are_not_double_counted():
    diff = {"before": "a\n", "after": "b\n", "before_header": "/etc/x", "after_header": "/etc/x"}
    lines = [
        _line("v2_runner_item_on_ok", task={"name": "T"}, hosts={"h": {"changed": True}}),
        _line("v2_runner_on_ok", task={"name": "T"}, hosts={"h": {"changed": True, "results": [{"diff": [diff]}]}}),
        _line("v2_runner_on_ok", task={"name": "U"}, hosts={"h": {"changed": False}}),
    ]
    recap = cmd.Recap()
    shown = [s for line in lines for s in cmd.apply_event(recap, cmd.read_event(line))]
    assert recap.changes == [{"host": "h", "task": "T"}]
    assert shown == [("changed", {"host": "h", "task": "T", "diff": [diff]})]
    assert cmd.unified_diff(diff).splitlines() == ["--- /etc/x", "+++ /etc/x", "@@ -1 +1 @@", "-a", "+b"]


@pytest.mark.parametrize("line", ["", "not json", "{broken", json.dumps([1, 2]), json.dumps({"no": "event"})])
def test_read_event_ignores_other_output(line):
    assert cmd.read_event(line) is None


# ---- the command line, with ansible-playbook replaced ---------------------------------------

@pytest.fixture
def fake_run(monkeypatch, tmp_path):
    """roadie converge with secrets in a temporary state dir and a recorded, canned run."""
    from roadie.converge import run as engine

    monkeypatch.setenv("ROADIE_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("ROADIE_VAULT_PASSWORD_FILE", raising=False)
    canned = Canned()

    def run(argv, env, on_event=None, timeout=None):
        canned.calls.append((argv, env))
        return cmd.summarize(canned.lines), canned.rc, ""

    monkeypatch.setattr(engine, "run", run)
    return canned


class Canned:
    def __init__(self):
        self.lines, self.rc, self.calls = [], 0, []


CLEAN = _line("v2_playbook_on_stats", stats={
    "lb-1": {"ok": 9, "changed": 0, "failures": 0, "unreachable": 0, "skipped": 0, "rescued": 0, "ignored": 0}})


def test_cli_json_recap_and_argv(fake_run):
    fake_run.lines = [CLEAN]
    result = CliRunner().invoke(main, ["--output", "json", "converge", "--check", "--tags", "common",
                                       "--strategy", "linear"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["ok"] and doc["check"] and doc["strategy"] == "linear"
    assert doc["hosts"]["lb-1"]["changed"] == 0
    argv, env = fake_run.calls[0]
    assert argv[-1].endswith("playbooks/site.yml")
    assert "--check" in argv and argv[argv.index("--tags") + 1] == "common"
    assert argv[argv.index("-i") + 1].endswith("inventories/local")
    assert any(a.startswith("@") and a.endswith("vault.yml") for a in argv)
    assert env["ANSIBLE_STRATEGY"] == "linear"


@pytest.mark.parametrize("lines, rc", [
    ([_line("v2_runner_on_failed", task={"name": "T"}, hosts={"lb-1": {"msg": "boom"}}), STATS], 2),
    ([], 4),  # stopped before its recap (a syntax error, a missing inventory)
    ([CLEAN], 2),  # a clean recap but ansible-playbook itself failed
])
def test_cli_failure_exits_1(fake_run, lines, rc):
    fake_run.lines, fake_run.rc = lines, rc
    result = CliRunner().invoke(main, ["converge", "--strategy", "linear"])
    assert result.exit_code == 1, result.output
    assert "Error:" in result.output


@pytest.mark.parametrize("args, message", [
    (["converge", "--limit", "catalog:&db"], "Bad host or group"),
    (["converge", "--tags", "a b"], "Bad tag"),
    (["converge", "--playbook", "nope.yml"], "No playbook nope.yml"),
    (["--env", "nowhere", "converge"], "Unknown environment"),
    (["converge", "--limit", ""], "--limit is empty"),
    (["converge", "--limit", ","], "--limit is empty"),
    (["converge", "--limit", " "], "--limit is empty"),
    (["converge", "--tags", ""], "--tags is empty"),
    (["converge", "--env", "production"], "Refusing to converge production: it needs --yes"),
    (["converge", "--strategy", "fast"], "Invalid value for '--strategy'"),
])
@pytest.mark.parametrize("json_mode", [False, True])
def test_cli_bad_input_exits_2_before_running(fake_run, monkeypatch, args, message, json_mode):
    from roadie import confirm

    monkeypatch.setattr(confirm, "interactive", lambda: False)
    result = CliRunner().invoke(main, args + (["--output", "json"] if json_mode else []))
    assert result.exit_code == 2, result.output
    if json_mode:
        doc = json.loads(result.stdout)
        assert doc["event"] == "error" and doc["exit_code"] == 2 and message in doc["error"], result.output
    else:
        assert message in result.stderr and result.stdout == ""
    assert fake_run.calls == []


@pytest.mark.parametrize("args", [["--yes"], ["-y"], ["--check"]])
def test_cli_production_goes_on_with_yes_or_in_check_mode(fake_run, monkeypatch, args):
    from roadie import confirm

    monkeypatch.setattr(confirm, "interactive", lambda: False)
    fake_run.lines = [CLEAN]
    result = CliRunner().invoke(main, ["converge", "--env", "production", *args])
    assert result.exit_code == 0, result.output
    assert len(fake_run.calls) == 1


@pytest.mark.parametrize("typed, exit_code", [("production\n", 0), ("yes\n", 2), ("\n", 2)])
def test_cli_production_typed_confirmation(fake_run, monkeypatch, typed, exit_code):
    from roadie import confirm

    monkeypatch.setattr(confirm, "interactive", lambda: True)
    fake_run.lines = [CLEAN]
    result = CliRunner().invoke(main, ["converge", "--env", "production"], input=typed)
    assert result.exit_code == exit_code, result.output
    assert len(fake_run.calls) == (exit_code == 0)


def test_cli_mitogen_missing(fake_run, monkeypatch):
    from roadie.converge import run as engine

    monkeypatch.setattr(engine, "mitogen_dir", lambda: None)
    result = CliRunner().invoke(main, ["converge", "--strategy", "mitogen"])
    assert result.exit_code == 2 and "not installed" in result.output
    fake_run.lines = [CLEAN]
    result = CliRunner().invoke(main, ["--output", "json", "converge"])  # auto falls back to linear
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["strategy"] == "linear"
    assert fake_run.calls[-1][1]["ANSIBLE_STRATEGY"] == "linear"


def test_mitogen_is_found_in_this_venv():
    from roadie.converge import run as engine

    found = engine.mitogen_dir()
    assert found and Path(found, "mitogen_linear.py").is_file()
