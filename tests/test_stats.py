"""stats.py: bootstrap CIs, cluster bootstrap and paired differences."""
import numpy as np
import pytest

from contrastive_context import stats


def test_paired_diff_mean_and_counts():
    a, b = [10, 20, 30, 40], [10, 10, 40, 20]
    r = stats.paired_diff(a, b, clusters=["x", "x", "y", "z"])
    assert r["mean"] == 5.0 and r["n"] == 4 and r["n_clusters"] == 3
    assert r["wins"] == 2 and r["losses"] == 1
    assert r["ci"][0] <= r["mean"] <= r["ci"][1]


def test_cluster_ci_wider_than_row_ci_when_rows_are_copies():
    # 20 inputs, each duplicated 10 times: resampling rows pretends n=200, clusters know n=20
    rng = np.random.default_rng(0)
    base = rng.normal(size=20)
    vals = np.repeat(base, 10)
    ids = np.repeat(np.arange(20), 10)
    row = stats.cluster_bootstrap_ci(vals, list(range(vals.size)), seed=1)
    clu = stats.cluster_bootstrap_ci(vals, list(ids), seed=1)
    assert (clu[1] - clu[0]) > 2 * (row[1] - row[0])


def test_paired_diff_zero_difference_and_determinism():
    a = [1.0, 2.0, 3.0]
    r = stats.paired_diff(a, a)
    assert r["mean"] == 0.0 and r["ci"] == [0.0, 0.0]
    assert stats.paired_diff([1, 5, 2], [0, 1, 3], seed=3) == stats.paired_diff([1, 5, 2], [0, 1, 3], seed=3)


def test_bootstrap_ci_covers_true_mean_at_nominal_rate():
    rng = np.random.default_rng(123)
    hits = 0
    for rep in range(200):
        x = rng.normal(loc=5.0, scale=2.0, size=50)
        lo, hi = stats.bootstrap_ci(x, seed=rep)
        assert lo <= x.mean() <= hi
        hits += lo <= 5.0 <= hi
    assert 0.88 <= hits / 200 <= 0.99


def test_bootstrap_ci_seeded_and_edge_cases():
    x = [0, 100, 100, 0, 100, 50]
    assert stats.bootstrap_ci(x, seed=3) == stats.bootstrap_ci(x, seed=3)
    assert stats.bootstrap_ci([], seed=0) is None
    assert stats.bootstrap_ci([42.0]) == [42.0, 42.0]
    s = stats.summarize([10, 20, 30])
    assert s["mean"] == pytest.approx(20) and s["n"] == 3 and s["ci"][0] <= 20 <= s["ci"][1]


