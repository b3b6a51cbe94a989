"""The nightly job's pure core: plays in, recommendations and run statistics out.

Reading plays from and writing recommendations to the database wrap this
later; keeping it pure lets the tests and benchmarks run it on generated history.
"""

from __future__ import annotations

import resource
import time

import pandas as pd

from recommender import model


def run(plays: pd.DataFrame, n: int = 20) -> tuple[pd.DataFrame, dict]:
    """Fit on every play and recommend n tracks per listener; stats say how big and how costly the run was."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")  # before the fit, which is the costly part
    started = time.perf_counter()
    fitted = model.fit(plays)
    recs = model.recommend(fitted, n)
    stats = {
        "listeners": len(fitted.listeners),
        "tracks": len(fitted.tracks),
        "plays": len(plays),
        "recommendations": len(recs),
        "seconds": round(time.perf_counter() - started, 3),
        # ru_maxrss is KiB on Linux and covers the whole process so far, not just this run.
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    return recs, stats
