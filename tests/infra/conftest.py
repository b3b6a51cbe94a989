"""Fixtures for the Pulumi program tests: one mocked run per stack per session.

Each stack's program runs once, in its own process (mockrun.py), and its JSON
is shared by every xdist worker through a file guarded by a lock.
"""

from __future__ import annotations

import json

import pytest
from filelock import FileLock

from infra_testlib import STACKS, Built, run_mocked

@pytest.fixture(scope="session")
def build(tmp_path_factory, request):
    shared = tmp_path_factory.getbasetemp()
    if hasattr(request.config, "workerinput"):  # an xdist worker: share with the other workers
        shared = shared.parent
    cache = shared / "roadie-infra-mocked"
    cache.mkdir(exist_ok=True)

    def get(stack: str) -> Built:
        path = cache / f"{stack}.json"
        with FileLock(str(path) + ".lock"):
            if not path.exists():
                proc = run_mocked(stack)
                if proc.returncode != 0:
                    pytest.fail(f"mocked {stack} program failed:\n{proc.stderr[-3000:]}", pytrace=False)
                path.write_text(proc.stdout)
        return Built(stack=stack, **json.loads(path.read_text()))

    return get


@pytest.fixture(params=STACKS)
def built(request, build) -> Built:
    return build(request.param)


@pytest.fixture
def settings_of():
    from roadie_infra import settings

    return settings.from_stack_file
