"""Item-item collaborative filtering over implicit feedback (play counts).

Two tracks are similar when the same listeners play them (cosine over the
listener x track matrix); a listener's score for a track is the sum of its
similarity to what they played. Only each track's top neighbours are kept and
both the similarity and the scoring run in blocks, so memory grows with the
plays and the block size, never with listeners x tracks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.preprocessing import normalize

COLUMNS = ("listener_id", "track_id")
WEIGHTINGS = ("count", "log", "tfidf")
BLOCK_CELLS = 4_000_000  # dense cells (float64: 32 MB) a similarity or scoring block may hold
TIE = 1e-9               # popularity tie-break: zero-score slots are filled with popular tracks


@dataclass(frozen=True)
class Model:
    listeners: pd.Index
    tracks: pd.Index
    played: sp.csr_matrix       # listener x track play counts
    weighted: sp.csr_matrix     # the same, weighted: what scores are built from
    similarity: sp.csr_matrix   # track x track, each row holds that track's top neighbours
    plays_per_track: np.ndarray


def matrix(plays: pd.DataFrame) -> tuple[pd.Index, pd.Index, sp.csr_matrix]:
    """The listener x track play-count matrix and the ids of its rows and columns."""
    missing = [c for c in COLUMNS if c not in plays.columns]
    if missing:
        raise ValueError(f"plays lack the columns {missing}")
    if plays.empty:
        raise ValueError("plays is empty: nothing to learn from")
    if plays[list(COLUMNS)].isna().any(axis=None):
        raise ValueError("plays have a missing listener_id or track_id")
    listeners = pd.Categorical(plays["listener_id"])
    tracks = pd.Categorical(plays["track_id"])
    counts = sp.csr_matrix((np.ones(len(plays)), (listeners.codes, tracks.codes)),
                           shape=(len(listeners.categories), len(tracks.categories)))  # repeats are summed
    return pd.Index(listeners.categories), pd.Index(tracks.categories), counts


def fit(plays: pd.DataFrame, neighbours: int = 50, weighting: str = "log") -> Model:
    """Learn track similarities; `weighting` damps heavy repeat plays (log) and popular tracks (tfidf)."""
    if neighbours < 1:
        raise ValueError(f"neighbours must be at least 1, got {neighbours}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    listeners, tracks, counts = matrix(plays)
    if weighting == "count":
        weighted = counts
    elif weighting == "log":
        weighted = counts.log1p()
    else:
        weighted = sp.csr_matrix(TfidfTransformer(sublinear_tf=True).fit_transform(counts))
    items = normalize(weighted.T.tocsr(), norm="l2", axis=1)
    return Model(listeners, tracks, counts, weighted, _neighbours(items, neighbours),
                 np.asarray(counts.sum(axis=0)).ravel())


def _neighbours(items: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Cosine similarity of every track to the others, keeping its k most similar (positive) ones."""
    count = items.shape[0]
    k = min(k, count - 1)
    if k < 1:
        return sp.csr_matrix((count, count))
    step = max(1, BLOCK_CELLS // count)
    rows, cols, vals = [], [], []
    for start in range(0, count, step):
        block = (items[start:start + step] @ items.T).toarray()
        np.negative(block, out=block)
        here = np.arange(block.shape[0])
        block[here, here + start] = 0.0
        top = np.argpartition(block, k - 1, axis=1)[:, :k]
        sim = -np.take_along_axis(block, top, axis=1)
        keep = sim > 0
        rows.append(np.broadcast_to((here + start)[:, None], top.shape)[keep])
        cols.append(top[keep])
        vals.append(sim[keep])
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(count, count))


def recommend(model: Model, n: int = 20) -> pd.DataFrame:
    """The top-n unplayed tracks for every listener, by item-item score (ties: the more played track)."""
    tie = TIE * model.plays_per_track / model.plays_per_track.max()
    return _top(model.listeners, model.tracks, model.played, n,
                lambda rows: (model.weighted[rows] @ model.similarity).toarray(), tie)


def popularity(plays: pd.DataFrame, n: int = 20) -> pd.DataFrame:
    """The baseline: every listener gets the most played tracks they have not played yet."""
    listeners, tracks, counts = matrix(plays)
    per_track = np.asarray(counts.sum(axis=0)).ravel()
    return _top(listeners, tracks, counts, n,
                lambda rows: np.tile(per_track, (rows.stop - rows.start, 1)), np.zeros(len(tracks)))


def _top(listeners: pd.Index, tracks: pd.Index, played: sp.csr_matrix, n: int,
         scores: Callable[[slice], np.ndarray], tie: np.ndarray) -> pd.DataFrame:
    """Rank each listener's unplayed tracks by scores(rows) + tie, a block of listeners at a time."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    n = min(n, len(tracks))
    step = max(1, BLOCK_CELLS // len(tracks))
    parts = []
    for start in range(0, len(listeners), step):
        rows = slice(start, min(start + step, len(listeners)))
        cost = scores(rows)  # negated in place below: one dense block per batch, no copies
        cost += tie
        np.negative(cost, out=cost)
        cost[played[rows].nonzero()] = np.inf
        top = np.argpartition(cost, n - 1, axis=1)[:, :n]
        order = np.argsort(np.take_along_axis(cost, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        best = -np.take_along_axis(cost, top, axis=1)
        keep = np.isfinite(best)
        listener = np.broadcast_to(np.arange(rows.start, rows.stop)[:, None], top.shape)
        parts.append(pd.DataFrame({
            "listener_id": listeners[listener[keep]],
            "rank": np.broadcast_to(np.arange(1, n + 1), top.shape)[keep],
            "track_id": tracks[top[keep]],
            "score": best[keep] - tie[top[keep]],
        }))
    return pd.concat(parts, ignore_index=True)
