"""Statistics shared by every report: bootstrap CIs of means and of paired differences,
resampling whole clusters (test inputs, or (seed, input) pairs) rather than single rows.

    bootstrap_ci(scores)                       percentile CI of a mean (rows independent)
    summarize(scores)                          {"mean", "ci", "n"}
    paired_diff(a, b, clusters)                mean of a - b with a CI that resamples clusters:
                                               rows sharing a cluster key (e.g. the test input,
                                               or the seed) are drawn together
Scores are plain floats (percent in this repository). Seeded: the same call gives the same CI.
"""
import numpy as np


def bootstrap_ci(scores, n_resamples=1000, seed=0, level=0.95):
    """Percentile bootstrap CI of the mean: [lo, hi] (None for no scores)."""
    x = np.asarray(scores, dtype=np.float64)
    if x.size == 0:
        return None
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_resamples, x.size))].mean(axis=1)
    a = (1.0 - level) / 2.0
    return [float(np.quantile(means, a)), float(np.quantile(means, 1.0 - a))]


def summarize(scores, seed=0):
    scores = list(scores)
    return {"mean": float(np.mean(scores)) if scores else None, "ci": bootstrap_ci(scores, seed=seed),
            "n": len(scores)}


def cluster_bootstrap_ci(values, clusters, n_resamples=2000, seed=0, level=0.95):
    """CI of the mean of `values` resampling whole clusters with replacement.

    The statistic of a resample is sum(values in drawn clusters) / count(rows in drawn clusters),
    so clusters of unequal size are weighted by their rows, like the plain mean."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return None
    keys = {}
    idx = np.array([keys.setdefault(c, len(keys)) for c in clusters])
    n_c = len(keys)
    sums = np.bincount(idx, weights=v, minlength=n_c)
    counts = np.bincount(idx, minlength=n_c).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_c, size=(n_resamples, n_c))
    stats = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    a = (1.0 - level) / 2.0
    return [float(np.quantile(stats, a)), float(np.quantile(stats, 1.0 - a))]


def paired_diff(a, b, clusters=None, n_resamples=2000, seed=0, level=0.95):
    """Mean difference a - b over paired rows with a cluster-bootstrap CI.

    a, b: equal-length score lists, row i of a paired with row i of b (same test input, same
    context, same seed). clusters: one hashable key per row (default: each row its own cluster),
    e.g. the test input id, or (seed, input id) with a seed-level key for seed clustering.
    Returns {"mean", "ci", "n", "n_clusters", "wins", "losses"}."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired_diff: {a.size} vs {b.size} rows")
    d = a - b
    clusters = list(range(d.size)) if clusters is None else list(clusters)
    return {"mean": float(d.mean()) if d.size else None,
            "ci": cluster_bootstrap_ci(d, clusters, n_resamples, seed, level),
            "n": int(d.size), "n_clusters": len(set(clusters)),
            "wins": int((d > 0).sum()), "losses": int((d < 0).sum())}


def fmt(s, digits=1):
    """'mean [lo, hi]' of a summarize()/paired_diff() dict ('—' when empty)."""
    if not s or s.get("mean") is None:
        return "—"
    if not s.get("ci"):
        return f"{s['mean']:.{digits}f}"
    return f"{s['mean']:.{digits}f} [{s['ci'][0]:.{digits}f}, {s['ci'][1]:.{digits}f}]"
