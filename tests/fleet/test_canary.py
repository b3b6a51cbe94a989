"""A judged canary on the local fleet, under load through HAProxy.

A real built variant of the catalog answers every tenth track request with 500
(healthy otherwise, so the health gate alone would let it through). Deployed with
--canary 1 --bake, the verdict rolls it back during the bake: exit 1 with the
figures, no request to the old hosts fails, the audit record holds the verdict.
Then a healthy release passes its bake and the deploy completes.
"""

from __future__ import annotations

import time

import pytest

from tests.fleet.roles_fixtures import TIERS
from tests.fleet.test_deploy import (  # noqa: F401 (fleet_v1 is a fixture)
    V2, build_and_publish, catalog_variant, fleet_v1, roadie_json, under_load, versions_on)

pytestmark = pytest.mark.fleet

FAULTY = f"1.3.0-faulty.{int(time.time())}"  # published versions never change: one per run
BAKE = "15"


def faulty_catalog(tmp_path):
    """The catalog, with every tenth /api/tracks/N answered 500 by the app (per worker)."""
    marker = "    def on_track(self, request, item_id):\n"

    def patch(text: str) -> str:
        assert marker in text and "\nclass Catalog:\n" in text
        counter = "\nimport itertools\n\nFAULTS = itertools.count(1)\n\n"
        text = text.replace("\nclass Catalog:\n", counter + "\nclass Catalog:\n")
        return text.replace(marker, marker + "        if next(FAULTS) % 10 == 0:\n"
                            "            return as_json({\"error\": \"canary fault\"}, status=500)\n")
    return catalog_variant(tmp_path, patch)


def deploy_under_load(*args: str):
    load = under_load()
    try:
        time.sleep(2)
        code, docs, err = roadie_json("deploy", "catalog", *args)
        time.sleep(2)
    finally:
        summary = load.stop()
    return code, docs, err, summary, load


def last_audit(version: str) -> dict:
    code, docs, _ = roadie_json("audit", "--service", "catalog")
    assert code == 0
    return [r for r in docs[-1]["records"] if r["operation"] == "deploy" and r["version"] == version][0]


def test_a_canary_answering_500s_is_judged_and_rolled_back_during_its_bake(fleet_v1, tmp_path):  # noqa: F811
    old = fleet_v1["catalog"]
    assert set(versions_on("catalog").values()) == {old}
    build_and_publish("catalog", FAULTY, services_dir=faulty_catalog(tmp_path))
    code, docs, err, summary, load = deploy_under_load(FAULTY, "--canary", "1", "--bake", BAKE,
                                                      "--max-error-rate", "0.02")
    assert code == 1, err
    error = docs[-1]["error"]
    assert "canary judged worse than the old hosts: error rate" in error and "old hosts: 0/" in error, error
    assert set(versions_on("catalog").values()) == {old}  # the canary went back
    failed = [s for s in load.samples if not s.ok]
    assert failed and {s.version for s in failed} == {FAULTY}, summary["failures"][:5]  # old hosts never failed
    verdict = last_audit(FAULTY)["verdict"]
    assert verdict["ok"] is False and verdict["canary"]["hosts"] == [TIERS["catalog"][0]]
    assert verdict["canary"]["requests"] > 50 and 0.04 < verdict["canary"]["error_rate"] < 0.2, verdict
    assert verdict["baseline"]["errors"] == 0 and verdict["baseline"]["requests"] > 50, verdict
    second = TIERS["catalog"][1]
    assert {h["host"]: h["result"] for h in last_audit(FAULTY)["hosts"]}[second] == "untouched"


def test_a_healthy_canary_passes_its_bake_and_the_deploy_completes(fleet_v1):  # noqa: F811
    code, docs, err, summary, _ = deploy_under_load(V2, "--canary", "1", "--bake", BAKE)
    assert code == 0, err
    assert summary["failed"] == 0, summary["failures"]
    assert set(versions_on("catalog").values()) == {V2}
    verdict = last_audit(V2)["verdict"]
    assert verdict["ok"] is True and verdict["canary"]["requests"] > 50 and verdict["canary"]["errors"] == 0
