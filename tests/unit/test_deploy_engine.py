"""The rolling engine's shared rig for the tests that drive it by hand (canary, restart, run under a lock).

The engine's scenarios themselves (order of steps, an unhealthy release put back,
max_fail, peers down or coming back, stop requests, dead and unreachable hosts,
bounded steps) are data now: tests/unit/engine_cases/*.yaml, played by
test_deploy_engine_cases.py. The fakes are roadie.testing's; `deps` and `run`
below keep the shape the other tests use.
"""

from __future__ import annotations

from roadie import testing
from roadie.deploy import engine
from roadie.deploy import plan as planner

SVC = testing.service("catalog")
NAMES = testing.names(4)


def deps(names, bad=(), dead=(), on_step=None, down=()):
    """(Deps, FakeTransport, FakeBalancer, events) for `names`, every host on 1.0.0 (previous 0.9.0), all UP
    but `down`; `bad` versions fail their health check, `dead` hosts answer every call with an error."""
    return testing.engine_deps(names, svc=SVC, balancer=testing.FakeBalancer(names, down=down), bad=bad, dead=dead,
                               on_step=on_step)


def run(d, version="2.0.0", **kw):
    """Plan from the fake hosts' releases, roll, and revert when it failed, as `roadie deploy` does."""
    current = {n: d.transport.current[n] for n in d.hosts}
    p = planner.build("catalog", version, current, min_healthy=SVC.min_healthy, drain_timeout=0, **kw)
    results = {n: engine.HostResult(n, m.from_version, m.to_version, previous=d.transport.previous[n])
               for n, m in p.moves.items()}
    outcome = engine.roll(d, p, results)
    if outcome.result == "failed":
        engine.revert(d, p, results)
    return outcome, results
