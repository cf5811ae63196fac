"""stats.py: cluster bootstrap and paired differences."""
import numpy as np

import stats


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
