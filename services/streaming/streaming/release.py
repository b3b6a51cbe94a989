"""Which release is running, read from the release's own manifest.json.

A release unpacks to /srv/streaming/releases/VERSION with this package under
app/, so the manifest sits two directories above it; a checkout has none.
"""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Every response names the release that served it (the service model's version_header).
HEADER = "X-Roadie-Version"


def info(root: Path = ROOT) -> dict:
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return {"service": "streaming", "version": "0.0.0+dev", "source_commit": None}
    return {k: manifest.get(k) for k in ("service", "version", "source_commit", "build_time")}
