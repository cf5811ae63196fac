import random

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from contrastive_context.similarity import BM25, PoolIndex, word_tokenize


def make_corpus(n=300, vocab=60, seed=0):
    """Zipf-ish token lists; "the" is in ~80 % of docs (negative idf -> epsilon floor);
    every 10th doc is an exact duplicate (exact score ties)."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(vocab)]
    weights = [1 / (i + 1) for i in range(vocab)]
    docs = []
    for i in range(n):
        if i % 10 == 9:
            docs.append(list(docs[rng.randrange(len(docs))]))
            continue
        d = rng.choices(words, weights, k=rng.randint(3, 12))
        if rng.random() < 0.8:
            d.insert(rng.randrange(len(d) + 1), "the")
        docs.append(d)
    return docs


def make_queries(docs, n=40, seed=1):
    rng = random.Random(seed)
    qs = [list(d) for d in rng.sample(docs, n // 2)]
    qs += [rng.choices(docs[rng.randrange(len(docs))] + ["unseen", "the"], k=rng.randint(1, 8)) for _ in range(n // 2)]
    qs.append(["w3", "w3", "the", "w3", "w1", "w1"])  # repeated tokens
    qs.append(["unseen"])  # no known token: all scores 0
    return qs


@pytest.fixture(scope="module")
def corpus():
    docs = make_corpus()
    return docs, BM25Okapi(docs), BM25(docs), make_queries(docs)


def test_scores_match_rank_bm25(corpus):
    docs, ref, ours, queries = corpus
    assert sum("the" in d for d in docs) > len(docs) / 2  # negative idf -> epsilon floor
    assert ours.idf[ours.vocab["the"]] == pytest.approx(ref.idf["the"]) == 0.25 * ref.average_idf
    for q in queries:
        np.testing.assert_allclose(ours.get_scores(q), ref.get_scores(q), rtol=0, atol=1e-9)
        assert np.array_equal(ours.get_scores(q), ref.get_scores(q))  # in fact bit-identical


def test_topk_equals_stable_argsort(corpus):
    docs, ref, ours, queries = corpus
    for M in (1, 7, 50, len(docs)):
        idx, sc = ours.topk(queries, M, batch_size=16, pad=0)  # pad=0 exercises the fallback path
        idx2, _ = ours.topk(queries, M, batch_size=16)
        for i, q in enumerate(queries):
            s = ref.get_scores(q)
            want = np.argsort(-s, kind="stable")[:M]
            assert idx[i].tolist() == want.tolist() == idx2[i].tolist()
            np.testing.assert_allclose(sc[i], s[want], rtol=1e-6)
    assert idx.dtype == np.int64 and sc.dtype == np.float32


def test_topk_exclusion_and_dedup(corpus):
    docs, ref, ours, queries = corpus
    q = docs[5]
    excl = [i for i, d in enumerate(docs) if d == q]
    idx, _ = ours.topk([q, q, q], 10, exclude=[excl, None, excl])
    assert not set(idx[0]) & set(excl) and idx[0].tolist() == idx[2].tolist()
    s = ref.get_scores(q)
    s[excl] = -np.inf
    assert idx[0].tolist() == np.argsort(-s, kind="stable")[:10].tolist()
    assert idx[1][0] in excl  # without exclusion the doc itself (or a duplicate) comes first


def test_topk_tie_heavy_self_retrieval():
    # 1-3 tokens from 30 words: big exact-tie groups at the top-M boundary (fallback path)
    rng = random.Random(0)
    docs = [[f"w{rng.randrange(30)}" for _ in range(rng.randint(1, 3))] for _ in range(400)]
    ref = BM25Okapi(docs)
    excl = [[j for j, e in enumerate(docs) if e == d] for d in docs]
    idx, _ = BM25(docs).topk(docs, 30, exclude=[np.array(e) for e in excl], batch_size=64)
    for i in range(len(docs)):
        s = ref.get_scores(docs[i])
        s[excl[i]] = -np.inf
        assert idx[i].tolist() == np.argsort(-s, kind="stable")[:30].tolist()


def test_errors(corpus):
    docs, _, ours, _ = corpus
    with pytest.raises(ValueError, match="empty pool"):
        BM25([])
    with pytest.raises(ValueError, match="empty pool"):
        PoolIndex([])
    with pytest.raises(ValueError, match="empty query"):
        ours.get_scores([])
    with pytest.raises(ValueError, match="empty query"):
        ours.topk([["w1"], []], 3)
    with pytest.raises(ValueError, match="M=301"):
        ours.topk([["w1"]], len(docs) + 1)
    with pytest.raises(ValueError, match="M=300"):
        ours.topk([["w1"]], len(docs), exclude=[[0]])


def test_self_score_and_pairs(corpus):
    docs, ref, ours, _ = corpus
    for i in (0, 3, 9, 100):
        assert ours.self_score(docs[i]) == ref.get_scores(docs[i])[i]
        assert ours.score_pair(docs[0], docs[i]) == ref.get_scores(docs[0])[i]
    assert ours.score_pair(["unseen", "w1"], ["unseen"]) == 0.0  # unknown terms contribute 0


def test_pool_index_nsim():
    pool = [{"id": f"train-{i}", "x": x, "y": ""} for i, x in enumerate(
        ["A man rides a horse.", "A woman rides a bike.", "Two dogs play in the snow.",
         "A man rides a horse.", "Children play football in a park.", "a MAN, a horse!"])]
    P = PoolIndex(pool, word_tokenize)
    assert P.duplicates_of("A man rides a horse.") == [0, 3] and P.duplicates_of("nope") == []
    for ex in pool:
        assert P.nsim(ex["x"], [ex["x"]]) == [1.0]
    v = P.nsim("A man rides a bike in the park.", [ex["x"] for ex in pool] + ["unrelated words", ""])
    assert all(0.0 <= s <= 1.0 for s in v) and v[-1] == 0.0
    assert P.nsim_idx(pool[1]["x"], range(len(pool))) == P.nsim(pool[1]["x"], [ex["x"] for ex in pool])
    assert P.nsim("???", ["a man"]) == [0.0]  # no tokens -> self-score 0 -> nsim 0
    idx, _ = P.topk(["a man rides a horse"], 2, exclude=[P.duplicates_of("A man rides a horse.")])
    assert idx[0].tolist() == [5, 1]


def test_topk_memory_is_bounded_for_a_very_long_input():
    """One 300k-word line in train.en made sample_contexts.py ask for a (200, 22,500,000)
    array (every query of a block padded to the longest, and all (candidate, query position) summands of
    the exact rescoring at once) and the OOM killer ended it. Blocks are now bounded in query-token cells
    and the rescoring is chunked: the peak stays small and the result is still exactly rank_bm25's."""
    import tracemalloc
    rng = random.Random(0)
    docs = make_corpus(n=100)
    docs.append([f"w{rng.randrange(60)}" if i % 3 else f"u{i % 3000}" for i in range(10_000)])  # one long input
    ours = BM25(docs)
    excl = [[i] for i in range(len(docs))]
    tracemalloc.start()
    try:
        idx, _ = ours.topk(docs, 4, exclude=excl)  # every pool input queries the pool, as the sampler does
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 250e6, f"peak {peak / 1e6:.0f} MB"  # unbounded: ~490 MB here, 20 GB for the 300k-word line
    ref = BM25Okapi(docs)
    for i in (0, 7, len(docs) - 1):
        s = ref.get_scores(docs[i])
        s[i] = -np.inf
        assert idx[i].tolist() == np.argsort(-s, kind="stable")[:4].tolist()
