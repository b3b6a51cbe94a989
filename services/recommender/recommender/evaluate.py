"""Offline quality: a time-based holdout, recall@k, and how much two generations agree.

recall_at says whether a model finds what listeners went on to play; overlap
is what a shadow canary compares between the live and the candidate
generation before the candidate is promoted: a big drop means the new
generation would change what listeners see far more than a nightly retrain should.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

KEY = ["listener_id", "track_id"]
RBO_P = 0.9


def split(plays: pd.DataFrame, holdout: float = 0.2, min_plays: int = 5,
          seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out the last `holdout` of each listener's plays (by played_at; ties broken by `seed`).

    Only listeners with at least `min_plays` plays lose any. The test side is
    (listener_id, track_id) pairs the listener did not also play in training:
    a recommender never suggests a played track, so those could never be hit.
    """
    if not 0 < holdout < 1:
        raise ValueError(f"holdout must be between 0 and 1, got {holdout}")
    if plays.empty:
        raise ValueError("plays is empty: nothing to split")
    shuffled = plays.assign(_tie=np.random.default_rng(seed).random(len(plays)))
    ordered = shuffled.sort_values(["played_at", "_tie"], kind="stable")
    size = ordered.groupby("listener_id")["track_id"].transform("size").to_numpy()
    position = ordered.groupby("listener_id").cumcount().to_numpy()
    held = (size >= min_plays) & (position >= size - np.maximum(1, (size * holdout).astype(int)))
    train = ordered[~held].drop(columns="_tie").sort_index()
    later = ordered.loc[held, KEY].drop_duplicates()
    seen = later.merge(train[KEY].drop_duplicates(), on=KEY, how="left", indicator=True)["_merge"] == "both"
    return train, later[~seen.to_numpy()].reset_index(drop=True)


def recall_at(recs: pd.DataFrame, test: pd.DataFrame, k: int = 10) -> float:
    """Mean over listeners with held-out tracks of |top-k ∩ held-out| / min(k, |held-out|)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    truth = test[KEY].drop_duplicates()
    if truth.empty:
        raise ValueError("test is empty: no held-out tracks to recall")
    wanted = truth.groupby("listener_id").size()
    hits = recs.loc[recs["rank"] <= k, KEY].merge(truth, on=KEY).groupby("listener_id").size()
    return float((hits.reindex(wanted.index, fill_value=0) / np.minimum(wanted, k)).mean())


def overlap(recs_a: pd.DataFrame, recs_b: pd.DataFrame, k: int = 10) -> dict:
    """Mean Jaccard and extrapolated rank-biased overlap (RBO, p=0.9) of each listener's top-k.

    Listeners present in only one generation count as no overlap, so a
    candidate that drops listeners scores lower. RBO weights agreement at the
    top of the list more and is 1.0 only for the same tracks in the same order.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    a = recs_a.loc[recs_a["rank"] <= k, [*KEY, "rank"]]
    b = recs_b.loc[recs_b["rank"] <= k, [*KEY, "rank"]]
    listeners = pd.Index(a["listener_id"].unique()).union(pd.Index(b["listener_id"].unique()))
    if listeners.empty:
        raise ValueError("both generations are empty: nothing to compare")
    both = a.merge(b, on=KEY, suffixes=("_a", "_b"))
    shared = both.groupby("listener_id").size().reindex(listeners, fill_value=0)
    sizes = (a.groupby("listener_id").size().reindex(listeners, fill_value=0)
             + b.groupby("listener_id").size().reindex(listeners, fill_value=0))
    jaccard = shared / (sizes - shared)

    # X_d, the overlap of the two depth-d prefixes: a shared track counts from the deeper of its two ranks on.
    agree = np.zeros((len(listeners), k))
    depth = np.maximum(both["rank_a"], both["rank_b"]).to_numpy() - 1
    np.add.at(agree, (listeners.get_indexer(both["listener_id"]), depth), 1)
    agree = agree.cumsum(axis=1)
    d = np.arange(1, k + 1)
    rbo = agree[:, -1] / k * RBO_P ** k + (1 - RBO_P) / RBO_P * (agree / d * RBO_P ** d).sum(axis=1)
    return {"listeners": len(listeners), "jaccard": float(jaccard.mean()), "rbo": float(rbo.mean())}
