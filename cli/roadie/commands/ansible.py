"""ansible-playbook command lines and environments for `roadie converge` (pure: no I/O).

Two settings profiles:

- roadie's own (ansible.cfg at the repository root, plus the mitogen strategy
  when it is installed): pipelining, ControlPersist, forks 20, a jsonfile fact
  cache and smart gathering;
- "stock": what Ansible does out of the box (forks 5, no pipelining, no
  ControlPersist, no fact cache, implicit gathering, the linear strategy),
  used by the benchmark as the baseline.

Results come back as JSON lines (the ansible.posix.jsonl stdout callback);
`summarize` turns them into the per-host recap roadie prints.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from roadie.errors import BadInput

STRATEGIES = ("auto", "mitogen", "linear")
JSON_CALLBACK = "ansible.posix.jsonl"
MITOGEN_STRATEGY = "mitogen_linear"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_COUNTERS = ("ok", "changed", "failures", "unreachable", "skipped", "rescued", "ignored")


def split_list(value: str | None, option: str = "The list", noun: str = "name") -> list[str]:
    """`a,b , c` -> ['a', 'b', 'c']; None (the option not given) -> [].

    A value that is given but names nothing ('', ',', ' ') is bad input: an empty
    `$VAR` in a script must never widen a selection to every host.
    """
    if value is None:
        return []
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if not parts:
        raise BadInput(f"{option} is empty: name at least one {noun}, or leave {option} out for all of them; "
                       "nothing was changed.")
    return parts


def check_names(kind: str, names: list[str]) -> list[str]:
    """Host, group and tag names are plain words; anything else is bad input."""
    for name in names:
        if not _NAME.match(name):
            raise BadInput(f"Bad {kind} '{name}': use host, group or tag names separated by commas.")
    return names


def choose_strategy(requested: str, mitogen_dir: str | None) -> str:
    """The ansible strategy to run: mitogen_linear when asked for (or on auto, when
    installed), else the built-in linear strategy."""
    if requested not in STRATEGIES:
        raise BadInput(f"Unknown strategy '{requested}': expected one of {', '.join(STRATEGIES)}.")
    if requested == "linear":
        return "linear"
    if mitogen_dir:
        return MITOGEN_STRATEGY
    if requested == "mitogen":
        raise BadInput("The mitogen strategy is not installed here: install mitogen or use --strategy linear.")
    return "linear"


def mitogen_strategy_dir(package_dir: str | Path | None) -> str | None:
    """Where ansible_mitogen keeps its strategy plugins, given the package's directory."""
    if not package_dir:
        return None
    path = Path(package_dir) / "plugins" / "strategy"
    return str(path) if (path / f"{MITOGEN_STRATEGY}.py").is_file() else None


def playbook_argv(ansible_playbook: str, inventory: str | Path, playbook: str | Path, *,
                  limit: list[str] | None = None, tags: list[str] | None = None,
                  check: bool = False, diff: bool = False,
                  vault_password_file: str | Path | None = None,
                  extra_vars_files: list[str | Path] | tuple = ()) -> list[str]:
    argv = [ansible_playbook, "-i", str(inventory)]
    if limit:
        argv += ["--limit", ",".join(limit)]
    if tags:
        argv += ["--tags", ",".join(tags)]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    if vault_password_file:
        argv += ["--vault-password-file", str(vault_password_file)]
    for path in extra_vars_files:
        argv += ["--extra-vars", f"@{path}"]
    argv.append(str(playbook))
    return argv


@dataclass(frozen=True)
class Settings:
    """How ansible-playbook runs: roadie's tuned profile or Ansible's stock one."""

    strategy: str = "linear"
    mitogen_dir: str | None = None
    fact_cache_dir: str | None = None
    stock: bool = False
    forks: int | None = None
    extra: dict = field(default_factory=dict)


def playbook_env(base: dict, settings: Settings, *, config_file: str | Path) -> dict:
    """The environment for ansible-playbook: the repository's ansible.cfg, JSON-lines
    results, and the strategy and speed settings of the chosen profile."""
    env = dict(base)
    env.update({
        "ANSIBLE_CONFIG": str(config_file),
        "ANSIBLE_STDOUT_CALLBACK": JSON_CALLBACK,
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
        "PYTHONUNBUFFERED": "1",
    })
    if settings.stock:
        env.update({
            "ANSIBLE_FORKS": "5",
            "ANSIBLE_PIPELINING": "False",
            # OpenSSH's defaults: no connection sharing between tasks.
            "ANSIBLE_SSH_ARGS": "-o ControlMaster=no -o ControlPersist=no",
            "ANSIBLE_CACHE_PLUGIN": "memory",
            "ANSIBLE_GATHERING": "implicit",
            "ANSIBLE_STRATEGY": "linear",
        })
    else:
        if settings.fact_cache_dir:
            env["ANSIBLE_CACHE_PLUGIN_CONNECTION"] = str(settings.fact_cache_dir)
        if settings.strategy == MITOGEN_STRATEGY:
            if not settings.mitogen_dir:
                raise BadInput("The mitogen strategy needs ansible_mitogen's plugin directory.")
            env["ANSIBLE_STRATEGY_PLUGINS"] = settings.mitogen_dir
            env["ANSIBLE_STRATEGY"] = MITOGEN_STRATEGY
        else:
            env["ANSIBLE_STRATEGY"] = "linear"
    if settings.forks:
        env["ANSIBLE_FORKS"] = str(settings.forks)
    env.update(settings.extra)
    return env


# ---- results ---------------------------------------------------------------------------

@dataclass
class Recap:
    """What a run did, per host, from the callback's JSON lines."""

    hosts: dict[str, dict] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)
    changes: list[dict] = field(default_factory=list)
    complete: bool = False

    @property
    def ok(self) -> bool:
        return self.complete and not self.failures and all(
            not h["failed"] and not h["unreachable"] for h in self.hosts.values())

    def totals(self) -> dict:
        keys = ("ok", "changed", "failed", "unreachable", "skipped")
        return {k: sum(h[k] for h in self.hosts.values()) for k in keys}

    def as_dict(self) -> dict:
        return {"ok": self.ok, "complete": self.complete, "hosts": self.hosts, "totals": self.totals(),
                "failures": self.failures, "changes": self.changes}


def host_row(stats: dict) -> dict:
    """One host's recap with roadie's names (failed, not failures)."""
    row = {k: int(stats.get(k, 0)) for k in _COUNTERS}
    row["failed"] = row.pop("failures")
    return row


def _message(result: dict) -> str:
    for item in result.get("results", []) or []:
        if isinstance(item, dict) and item.get("failed"):
            label = item.get("_ansible_item_label", item.get("item", ""))
            label = label if isinstance(label, str) else json.dumps(label, sort_keys=True)
            return f"{label}: {_message(item)}"[:400]
    if result.get("censored"):
        return str(result["censored"])
    parts = []
    for key in ("msg", "stderr", "reason"):
        value = str(result.get(key) or "").strip()
        if value and value not in parts:
            parts.append(value.splitlines()[-1][:300])
    return ": ".join(parts[:2]) or "failed"


def read_event(line: str) -> dict | None:
    """A callback event from one line of output; other lines (warnings) are None."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "_event" in event else None


def apply_event(recap: Recap, event: dict) -> list[tuple[str, dict]]:
    """Fold one event into the recap; returns (kind, detail) pairs worth showing a user."""
    kind = event.get("_event", "")
    shown: list[tuple[str, dict]] = []
    if kind == "v2_playbook_on_stats":
        recap.hosts = {host: host_row(stats) for host, stats in sorted(event.get("stats", {}).items())}
        recap.complete = True
    elif kind in ("v2_playbook_on_task_start", "v2_playbook_on_handler_task_start", "v2_runner_on_start"):
        task = event.get("task", {})
        shown.append(("task", {"task": task.get("name", ""), "id": task.get("id", "")}))
    elif kind.startswith("v2_runner_on_") or kind.startswith("v2_runner_item_on_"):
        if kind.startswith("v2_runner_item_on_"):
            return shown  # the task's own result follows and carries every item
        task = event.get("task", {}).get("name", "")
        for host, result in event.get("hosts", {}).items():
            if kind in ("v2_runner_on_failed", "v2_runner_on_unreachable"):
                failure = {"host": host, "task": task, "unreachable": kind.endswith("unreachable"),
                           "message": _message(result)}
                recap.failures.append(failure)
                shown.append(("failure", failure))
            elif kind == "v2_runner_on_ok" and result.get("changed"):
                change = {"host": host, "task": task}
                recap.changes.append(change)
                detail = dict(change)
                diffs = _diffs(result)
                if diffs:
                    detail["diff"] = diffs
                shown.append(("changed", detail))
    return shown


def _diffs(result: dict) -> list[dict]:
    found = []
    for item in [result, *result.get("results", [])]:
        diff = item.get("diff") if isinstance(item, dict) else None
        for d in diff if isinstance(diff, list) else [diff] if diff else []:
            if isinstance(d, dict) and ("before" in d or "after" in d or "prepared" in d):
                found.append(d)
    return found


def unified_diff(diff: dict) -> str:
    """A Python difflib rendering of one Ansible diff (before/after or prepared)."""
    import difflib

    if "prepared" in diff:
        return str(diff["prepared"])
    before, after = diff.get("before", ""), diff.get("after", "")
    if not isinstance(before, str) or not isinstance(after, str):
        before, after = json.dumps(before, indent=2, sort_keys=True), json.dumps(after, indent=2, sort_keys=True)
    return "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True),
                                        str(diff.get("before_header", "before")),
                                        str(diff.get("after_header", "after"))))


def summarize(lines) -> Recap:
    """The recap of a whole run's output."""
    recap = Recap()
    for line in lines:
        event = read_event(line)
        if event:
            apply_event(recap, event)
    return recap
