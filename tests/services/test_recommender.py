"""The recommender job's core: planted-taste history, item-item model, offline metrics, shadow-canary overlap."""

import sys

import numpy as np
import pandas as pd
import pytest

from tests import servicekit

SERVICE = str(servicekit.SERVICES / "recommender")
if SERVICE not in sys.path:
    sys.path.insert(0, SERVICE)

from recommender import evaluate, history, job, model  # noqa: E402

KEY = ["listener_id", "track_id"]
LISTENERS, TRACKS, PLAYS, GROUPS, SEED = 2000, 1000, 100_000, 10, 7


def plays_of(rows):
    """Hand-built plays from (listener, track, minute) triples."""
    frame = pd.DataFrame(rows, columns=["listener_id", "track_id", "minute"])
    frame["played_at"] = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(frame.pop("minute"), unit="min")
    return frame


def recs_of(lists):
    """Hand-built recommendations from {listener: [track, ...]} in rank order."""
    return pd.DataFrame([(lid, rank, tid, 1.0 / rank) for lid, tracks in lists.items()
                         for rank, tid in enumerate(tracks, 1)], columns=["listener_id", "rank", "track_id", "score"])


@pytest.fixture(scope="module")
def plays():
    return history.generate(LISTENERS, TRACKS, PLAYS, GROUPS, SEED)


@pytest.fixture(scope="module")
def halves(plays):
    return evaluate.split(plays, seed=SEED)


@pytest.fixture(scope="module")
def live(halves):
    return model.recommend(model.fit(halves[0]), 20)


# -- history ------------------------------------------------------------------

@pytest.mark.parametrize("seed_a, seed_b, same", [(7, 7, True), (7, 8, False)])
def test_generate_is_deterministic_per_seed(seed_a, seed_b, same):
    a = history.generate(300, 200, 5000, 4, seed_a)
    b = history.generate(300, 200, 5000, 4, seed_b)
    assert a.equals(b) is same


@pytest.mark.parametrize("listeners, tracks, plays, groups", [(50, 40, 2000, 4), (1, 1, 10, 1), (20, 7, 500, 7)])
def test_generate_shape(listeners, tracks, plays, groups):
    frame = history.generate(listeners, tracks, plays, groups, 1)
    assert list(frame.columns) == ["listener_id", "track_id", "played_at"]
    assert len(frame) == plays
    assert frame["listener_id"].between(1, listeners).all() and frame["track_id"].between(1, tracks).all()
    assert str(frame["played_at"].dt.tz) == "UTC" and frame["played_at"].is_monotonic_increasing


@pytest.mark.parametrize("groups, low, high", [(1, 0.8, 1.25), (10, 3.0, None)])
def test_generate_plants_taste_groups(groups, low, high):
    """With one genre there is no taste to learn (item-item ~ popularity); with ten, item-item finds it."""
    train, test = evaluate.split(history.generate(1000, 500, 40_000, groups, 3), seed=3)
    ratio = (evaluate.recall_at(model.recommend(model.fit(train), 20), test)
             / evaluate.recall_at(model.popularity(train, 20), test))
    assert low <= ratio and (high is None or ratio <= high), ratio


def test_generate_skews_popularity(plays):
    counts = plays["track_id"].value_counts()
    assert counts.iloc[:TRACKS // 10].sum() > 0.3 * PLAYS  # Zipf: the top 10% of tracks take far more than 10%
    assert len(counts) == TRACKS                              # yet the long tail is played too


# -- model --------------------------------------------------------------------

@pytest.mark.parametrize("weighting", model.WEIGHTINGS)
def test_recommend_ranks_unplayed_tracks_for_everyone(halves, weighting):
    train = halves[0]
    recs = model.recommend(model.fit(train, weighting=weighting), 20)
    assert list(recs.columns) == ["listener_id", "rank", "track_id", "score"]
    assert set(recs["listener_id"]) == set(train["listener_id"])
    ranks = recs.groupby("listener_id")["rank"].agg(list)
    assert all(r == list(range(1, 21)) for r in ranks)
    assert (recs.groupby("listener_id")["score"].diff().dropna() <= 1e-12).all()
    assert recs.merge(train[KEY].drop_duplicates(), on=KEY).empty
    assert not recs.duplicated(KEY).any()


def test_blocks_do_not_change_the_answer(monkeypatch):
    """Memory is bounded by computing in blocks; many tiny blocks must give what one big block gives."""
    small = history.generate(300, 200, 6000, 5, 2)
    whole = model.recommend(model.fit(small), 10)
    monkeypatch.setattr(model, "BLOCK_CELLS", 700)  # 3 rows a block, uneven last block
    pieces = model.recommend(model.fit(small), 10)
    pd.testing.assert_frame_equal(whole, pieces)


@pytest.mark.parametrize("recommender", ["model", "popularity"])
def test_fewer_unplayed_tracks_than_n(recommender):
    tiny = plays_of([(1, 10, 0), (1, 11, 1), (1, 12, 2), (2, 10, 3), (2, 13, 4), (2, 13, 5)])
    recs = model.recommend(model.fit(tiny), 5) if recommender == "model" else model.popularity(tiny, 5)
    assert recs.groupby("listener_id")["track_id"].agg(sorted).to_dict() == {1: [13], 2: [11, 12]}
    assert recs.groupby("listener_id")["rank"].agg(list).to_dict() == {1: [1], 2: [1, 2]}


def test_model_scores_co_listened_tracks_first():
    # Listeners 1-3 play 10 and 11 together; listener 4 plays only 10, so 11 should come before the popular 12.
    rows = [(lid, tid, i) for i, (lid, tid) in enumerate(
        [(1, 10), (1, 11), (2, 10), (2, 11), (3, 10), (3, 11), (4, 10)] + [(lid, 12) for lid in range(5, 12)])]
    recs = model.recommend(model.fit(plays_of(rows)), 2)
    assert recs.loc[recs["listener_id"] == 4, "track_id"].tolist() == [11, 12]


def test_popularity_gives_the_most_played_unplayed():
    tiny = plays_of([(1, 10, 0), (2, 10, 1), (3, 10, 2), (1, 11, 3), (2, 11, 4), (3, 12, 5)])
    recs = model.popularity(tiny, 2)
    assert recs.groupby("listener_id")["track_id"].agg(list).to_dict() == {1: [12], 2: [12], 3: [11]}


@pytest.mark.parametrize("weighting", model.WEIGHTINGS)
def test_item_item_recall_at_10_at_least_twice_popularity(halves, weighting):
    train, test = halves
    baseline = evaluate.recall_at(model.popularity(train, 20), test, k=10)
    recall = evaluate.recall_at(model.recommend(model.fit(train, weighting=weighting), 20), test, k=10)
    assert recall >= 2 * baseline, f"recall@10 {recall:.3f} vs popularity {baseline:.3f}"


# -- evaluate -----------------------------------------------------------------

def test_split_holds_out_each_listeners_latest_new_tracks():
    rows = [(1, t, t) for t in range(1, 11)]          # 10 plays: the last 2 (tracks 9, 10) are held out
    rows += [(2, 20 + t, t) for t in range(3)]        # under min_plays: all kept for training
    rows += [(3, 30 + t, t) for t in range(4)] + [(3, 30, 9)]  # its last play repeats a trained track
    train, test = evaluate.split(plays_of(rows), holdout=0.2, min_plays=5)
    assert sorted(map(tuple, test[KEY].to_numpy())) == [(1, 9), (1, 10)]
    assert len(train) == 8 + 3 + 4
    assert train.loc[train["listener_id"] == 1, "track_id"].max() == 8


def test_split_on_generated_history(plays, halves):
    train, test = halves
    assert len(train) < len(plays) and not test.empty
    assert test.merge(train[KEY].drop_duplicates(), on=KEY).empty
    last_train = train.groupby("listener_id")["played_at"].max()
    first_test = test.merge(plays, on=KEY).groupby("listener_id")["played_at"].min()
    assert (first_test >= last_train.reindex(first_test.index)).all()


@pytest.mark.parametrize("k, expected", [(1, 0.0), (2, 0.5), (3, 0.5)])
def test_recall_at_known_answer(k, expected):
    recs = recs_of({1: ["a", "b", "c"], 2: ["x", "y"], 4: ["q"]})
    test = pd.DataFrame([(1, "b"), (1, "z"), (2, "y"), (3, "q")], columns=KEY)
    # k=2: listener 1 hits b of {b, z} -> 1/2; listener 2 hits y -> 1/1; listener 3 has no recs -> 0.
    assert evaluate.recall_at(recs, test, k=k) == pytest.approx(expected)


def test_overlap_known_answer():
    result = evaluate.overlap(recs_of({1: [1, 2, 3]}), recs_of({1: [1, 2, 4]}), k=3)
    # Jaccard 2/4; RBO_ext = X3/3 p^3 + (1-p)/p (X1 p + X2/2 p^2 + X3/3 p^3) with X = 1, 2, 2.
    assert result == {"listeners": 1, "jaccard": pytest.approx(0.5), "rbo": pytest.approx(0.73, abs=1e-9)}


def candidate(kind, live, halves):
    if kind == "identical":
        return live.copy()
    if kind == "reversed":
        top = live[live["rank"] <= 10].copy()
        top["rank"] = 11 - top["rank"]
        return top
    if kind == "half the listeners":
        return live[live["listener_id"] % 2 == 0]
    if kind == "popularity":
        return model.popularity(halves[0], 20)
    listeners = live["listener_id"].unique()
    picks = np.random.default_rng(1).random((len(listeners), TRACKS)).argsort(axis=1)[:, :10] + 1
    return pd.DataFrame({"listener_id": np.repeat(listeners, 10), "rank": np.tile(np.arange(1, 11), len(listeners)),
                         "track_id": picks.ravel(), "score": 0.0})


@pytest.mark.parametrize("kind, jaccard, rbo", [
    ("identical", (1.0, 1.0), (1.0, 1.0)),
    ("reversed", (1.0, 1.0), (0.45, 0.6)),   # the same tracks, the order flipped: only RBO notices
    ("half the listeners", (0.45, 0.55), (0.45, 0.55)),
    ("popularity", (0.0, 0.05), (0.0, 0.05)),
    ("random", (0.0, 0.03), (0.0, 0.03)),
])
def test_overlap_of_live_and_candidate(live, halves, kind, jaccard, rbo):
    result = evaluate.overlap(live, candidate(kind, live, halves), k=10)
    assert result["listeners"] == live["listener_id"].nunique()
    assert jaccard[0] - 1e-9 <= result["jaccard"] <= jaccard[1] + 1e-9
    assert rbo[0] - 1e-9 <= result["rbo"] <= rbo[1] + 1e-9


# -- job ----------------------------------------------------------------------

def test_run_reports_size_and_cost(plays):
    recs, stats = job.run(plays, n=20)
    assert stats["listeners"] == plays["listener_id"].nunique() and stats["tracks"] == plays["track_id"].nunique()
    assert stats["plays"] == PLAYS and stats["recommendations"] == len(recs) == 20 * stats["listeners"]
    assert stats["seconds"] > 0 and stats["peak_rss_mib"] > 0


# -- bad input ----------------------------------------------------------------

SMALL = plays_of([(1, 10, 0), (2, 11, 1), (2, 10, 2)])
EMPTY = SMALL.iloc[:0]


@pytest.mark.parametrize("call, message", [
    (lambda: history.generate(0, 10, 10, 2, 0), "listeners and plays must be at least 1"),
    (lambda: history.generate(10, 10, 0, 2, 0), "listeners and plays must be at least 1"),
    (lambda: history.generate(10, 10, 10, 11, 0), "groups must be between 1 and tracks"),
    (lambda: model.fit(EMPTY), "plays is empty"),
    (lambda: model.fit(SMALL.drop(columns="track_id")), r"lack the columns \['track_id'\]"),
    (lambda: model.fit(SMALL.assign(track_id=[10, None, 11])), "missing listener_id or track_id"),
    (lambda: model.fit(SMALL, neighbours=0), "neighbours must be at least 1"),
    (lambda: model.fit(SMALL, weighting="bm25"), "weighting must be one of"),
    (lambda: model.recommend(model.fit(SMALL), 0), "n must be at least 1, got 0"),
    (lambda: model.popularity(SMALL, -1), "n must be at least 1, got -1"),
    (lambda: model.popularity(EMPTY), "plays is empty"),
    (lambda: evaluate.split(EMPTY), "plays is empty"),
    (lambda: evaluate.split(SMALL, holdout=1.0), "holdout must be between 0 and 1"),
    (lambda: evaluate.recall_at(recs_of({1: [1]}), SMALL, k=0), "k must be at least 1"),
    (lambda: evaluate.recall_at(recs_of({1: [1]}), EMPTY), "test is empty"),
    (lambda: evaluate.overlap(recs_of({1: [1]}), recs_of({1: [1]}), k=0), "k must be at least 1"),
    (lambda: evaluate.overlap(recs_of({}), recs_of({})), "both generations are empty"),
    (lambda: job.run(EMPTY), "plays is empty"),
    (lambda: job.run(SMALL, n=0), "n must be at least 1, got 0"),
])
def test_bad_input_is_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()
