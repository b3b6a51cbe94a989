"""The fleet's record (fleet.json) and its claim on a bridge.

Everything the fleet makes is written to the record before the next step
starts, so `down` can undo a half-built fleet. The claim (/run/roadie/BRIDGE.json)
says which checkout's fleet owns a bridge, so two checkouts never share one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

CLAIMS = Path(os.environ.get("ROADIE_RUN_DIR", "/run/roadie"))


def empty() -> dict:
    return {"hosts": {}, "helpers": {}}


def load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return empty()


def save(path: Path, record: dict) -> None:
    """Write atomically: a reader (or a crash) never sees half a record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True))
    tmp.replace(path)


def claim_path(bridge: str) -> Path:
    return CLAIMS / f"{bridge}.json"


def claim_owner(bridge: str) -> Path | None:
    """The state directory of the fleet that claimed `bridge`, if any."""
    try:
        return Path(json.loads(claim_path(bridge).read_text())["state"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return None


def claim(bridge: str, state: Path) -> None:
    CLAIMS.mkdir(parents=True, exist_ok=True)
    claim_path(bridge).write_text(json.dumps({"state": str(state), "pid": os.getpid()}))


def release(bridge: str, state: Path) -> None:
    """Drop the claim if it is still ours."""
    if claim_owner(bridge) == state:
        claim_path(bridge).unlink(missing_ok=True)
