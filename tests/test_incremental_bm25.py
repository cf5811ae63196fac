"""IncrementalBM25 / GrowingPoolIndex: after every append, scores equal rank_bm25.BM25Okapi and the
existing BM25 built fresh on the current pool (bit for bit), top-k equals BM25.topk (ties included)."""
import random

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from contrastive_context.similarity import BM25, GrowingPoolIndex, IncrementalBM25, PoolIndex


def _stream(seed, n, vocab, max_len, empty_every=0):
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        L = 0 if empty_every and i % empty_every == empty_every - 1 else rng.randint(1, max_len)
        docs.append([f"w{rng.randrange(vocab)}" for _ in range(L)])
    return docs


@pytest.mark.parametrize("seed,vocab,max_len", [(0, 3, 4), (1, 5, 6), (2, 12, 8), (3, 40, 10)])
def test_every_step_equals_a_fresh_index(seed, vocab, max_len):
    docs = _stream(seed, 90, vocab, max_len)
    queries = _stream(seed + 100, 90, vocab + 2, max_len)   # some tokens unknown to the pool
    inc = IncrementalBM25()
    negative_floor_seen = False
    for t, (d, q) in enumerate(zip(docs, queries)):
        inc.add(d)
        pool = docs[:t + 1]
        ref = BM25Okapi(pool)
        fresh = BM25(pool)
        s = inc.get_scores(q)
        assert s.tolist() == ref.get_scores(q).tolist()          # bit-identical to rank_bm25
        assert s.tolist() == fresh.get_scores(q).tolist()
        negative_floor_seen |= any(v < 0 for v in ref.idf.values()) or min(ref.idf.values()) == 0
        for M in (1, 3, 7):
            M = min(M, t + 1)
            idx, sc = inc.topk(q, M)
            fi, _ = fresh.topk([q], M)
            assert idx.tolist() == fi[0].tolist()
            assert idx.tolist() == np.argsort(-ref.get_scores(q), kind="stable")[:M].tolist()
            assert sc.tolist() == s[idx].tolist()
        assert inc.self_score(q) == fresh.self_score(q)
    if vocab <= 5:
        assert negative_floor_seen  # the small vocabularies exercise the epsilon floor


def test_growing_pool_nsim_equals_pool_index():
    rng = random.Random(7)
    words = ["a", "man", "dog", "runs", "red", "ball", "park", "the"]
    xs = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 6))) for _ in range(60)]
    xs[10] = "."  # a document with no token
    g = GrowingPoolIndex()
    for t, x in enumerate(xs):
        g.add({"id": f"i{t}", "x": x, "y": ""})
        if t < 11:
            continue
        pi = PoolIndex(xs[:t + 1])
        q = xs[(t * 7) % (t + 1)] + " dog"
        _, scores, self_s = g.query(q)
        idx = list(range(t + 1))
        assert g.nsim_of(scores, self_s) == pi.nsim_idx(q, idx)


def test_empty_pool_and_tokenless_docs():
    inc = IncrementalBM25()
    assert inc.get_scores(["a"]).tolist() == []
    assert inc.topk(["a"], 3)[0].tolist() == []
    inc.add([])
    assert inc.get_scores(["a"]).tolist() == [0.0] and inc.self_score(["a"]) == 0.0
    inc.add(["a", "b"])
    assert inc.get_scores(["b"]).tolist() == BM25Okapi([[], ["a", "b"]]).get_scores(["b"]).tolist()


def test_top_of_with_a_hint_equals_without_ties_included():
    """top_of's hint (any >= M distinct docs, e.g. rare_docs) only narrows which docs are partitioned: the
    answer equals the plain stable argsort, on scores with many ties, for every hint."""
    rng = np.random.default_rng(1)
    for trial in range(300):
        n = int(rng.integers(2, 60))
        score = rng.integers(0, 5, size=n).astype(float) * 0.5
        M = int(rng.integers(1, n + 1))
        hint = rng.choice(n, size=int(rng.integers(M, n + 1)), replace=False)
        want = np.argsort(-score, kind="stable")[:M].tolist()
        assert IncrementalBM25.top_of(score, M, hint).tolist() == want
        assert IncrementalBM25.top_of(score, M).tolist() == want


def test_rare_docs_holds_the_rarest_terms_postings():
    inc = IncrementalBM25()
    for d in (["a", "x"], ["a"], ["a", "y"], ["a", "x", "y"], ["a"], ["z"]):
        inc.add(d)
    assert inc.rare_docs(["a", "x", "y"], 1).tolist() == [0, 3]  # x alone (2 docs) reaches 2M postings
    assert inc.rare_docs(["x"], 2) is None  # 2 postings < 2M = 4
    assert inc.rare_docs(["q"], 1) is None  # no known term
    assert sorted(inc.rare_docs(["a", "z"], 3).tolist()) == [0, 1, 2, 3, 4, 5]
