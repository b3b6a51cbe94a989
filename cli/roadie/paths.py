"""Where roadie finds its project files and keeps its state.

State lives in the checkout (git-ignored) so two checkouts never share keys;
caches that are slow to rebuild (the base image, the apt cache) live outside it
so a fresh clone on the same machine reuses them.
"""

import os
from pathlib import Path

ROOT = Path(os.environ.get("ROADIE_ROOT", Path(__file__).resolve().parents[2]))
INVENTORIES = Path(os.environ.get("ROADIE_INVENTORIES", ROOT / "inventories"))
PLAYBOOKS = ROOT / "playbooks"
SERVICES = ROOT / "services"
DIST = ROOT / "dist"


def state_dir(env: str) -> Path:
    """Per-environment state (SSH keys, known_hosts, fleet records, overlays)."""
    base = Path(os.environ.get("ROADIE_STATE_DIR", ROOT / ".roadie"))
    return base / env


def cache_dir() -> Path:
    return Path(os.environ.get("ROADIE_CACHE_DIR", "/var/cache/roadie"))
