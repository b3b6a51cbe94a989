"""A synthetic, deterministic play history with planted taste groups.

The quality tests need data where a good recommender measurably beats a
popularity baseline: tracks fall into genres, each listener favours one or two
of them, and plays inside a genre follow a Zipf-like popularity curve. Every
step draws whole arrays from one numpy Generator, so a million plays take
about a second and the same seed gives the same rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TASTE_SHARE = 0.82       # plays inside the listener's favourite genres; the rest is global popular noise
TWO_GENRES_SHARE = 0.5   # listeners with a second favourite genre
PRIMARY_SHARE = 0.6      # of a two-genre listener's taste plays, those in the first genre
ZIPF = 1.0               # popularity exponent inside a genre and across the catalogue
ACTIVITY_SIGMA = 0.8     # lognormal spread of how much each listener plays
START = pd.Timestamp("2025-01-01", tz="UTC")
SPAN_SECONDS = 30 * 86400


def generate(listeners: int, tracks: int, plays: int, groups: int, seed: int) -> pd.DataFrame:
    """Plays (listener_id, track_id, played_at UTC) ordered by time; ids start at 1."""
    if listeners < 1 or plays < 1:
        raise ValueError(f"listeners and plays must be at least 1, got {listeners} and {plays}")
    if not 1 <= groups <= tracks:
        raise ValueError(f"groups must be between 1 and tracks ({tracks}), got {groups}")
    rng = np.random.default_rng(seed)

    # Tracks laid out genre by genre, in popularity order inside each genre.
    genre = rng.permutation(tracks) % groups
    layout = np.lexsort((rng.random(tracks), genre))
    sizes = np.bincount(genre, minlength=groups)
    starts = np.concatenate(([0], np.cumsum(sizes)))
    rank = np.arange(tracks) - np.repeat(starts[:-1], sizes)
    cum = np.cumsum(1.0 / (rank + 1) ** ZIPF)
    below = np.concatenate(([0.0], cum))

    activity = rng.lognormal(0.0, ACTIVITY_SIGMA, listeners)
    who = rng.choice(listeners, size=plays, p=activity / activity.sum())
    favourite = rng.integers(groups, size=(listeners, 2))
    favourite[:, 1] = np.where(rng.random(listeners) < TWO_GENRES_SHARE, favourite[:, 1], favourite[:, 0])

    track = np.empty(plays, dtype=np.int64)
    taste = rng.random(plays) < TASTE_SHARE
    g = favourite[who[taste], (rng.random(taste.sum()) >= PRIMARY_SHARE).astype(int)]
    target = below[starts[g]] + rng.random(g.size) * (below[starts[g + 1]] - below[starts[g]])
    slot = np.clip(np.searchsorted(cum, target, side="right"), starts[g], starts[g + 1] - 1)
    track[taste] = layout[slot]

    popular = rng.permutation(tracks)
    weights = 1.0 / np.arange(1, tracks + 1) ** ZIPF
    track[~taste] = popular[rng.choice(tracks, size=(~taste).sum(), p=weights / weights.sum())]

    seconds = rng.integers(0, SPAN_SECONDS, size=plays)
    order = np.lexsort((track, who, seconds))
    return pd.DataFrame({
        "listener_id": who[order].astype(np.int64) + 1,
        "track_id": track[order] + 1,
        "played_at": START + pd.to_timedelta(seconds[order], unit="s"),
    })
