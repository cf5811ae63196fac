"""
Okapi BM25 that gives exactly the scores of rank_bm25.BM25Okapi (0.2.2), vectorised.

rank_bm25 scores a query q against document d as a left-to-right sum over the query
tokens (repeated tokens are added once per occurrence):

    score(q, d) = sum_{t in q} idf(t) * tf(t,d) * (k1+1) / (tf(t,d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t)      = log(N - n_t + 0.5) - log(n_t + 0.5), and idf(t) = epsilon * mean(idf) where idf(t) < 0

Every (doc, term) summand is precomputed once, in float64 with rank_bm25's exact operation
order, into a sparse matrix W (N x V). Exact scores add those summands in query order, so
they are bit-identical to rank_bm25 (adding 0.0 for absent terms changes nothing).

Fast top-M retrieval (`BM25.topk`) works on blocks of (deduplicated) queries:
  1. float32 scores S = Q @ W^T for the block (b x N), Q = query-term counts; the few very
     frequent terms go through a dense BLAS matmul, all other terms through scipy.sparse;
  2. excluded docs get -inf; the top M+pad candidates per row come from a cheap threshold
     (from a 1/16 sample of the docs) followed by argpartition of the docs above it;
  3. candidates are rescored exactly (float64, rank_bm25's order) and sorted by
     (-score, doc index), i.e. like a stable argsort of -score;
  4. a bound on the float32 error proves that no non-candidate can reach the M-th exact
     score; rows where that proof fails (e.g. big tie groups at the boundary) redo the
     selection over all docs whose float32 score is within the error bound.
So topk returns exactly what a stable argsort of rank_bm25's scores returns.

Memory is bounded whatever the input lengths (one 300k-word line in train.en asked
for a (200, 22,500,000) array): a block holds at most CELL_BUDGET query-token cells (queries
padded to the block's longest), so a very long query forms a block of its own, and the exact
rescoring reads its (candidate, query position) summands CELL_BUDGET at a time. Cost grows
linearly with a query's length; results are unchanged.
"""

import math
import re
from collections import Counter, defaultdict

import numpy as np
import scipy.sparse as sp
from scipy.linalg.blas import sgemm

_WORD = re.compile(r"\w+")
CELL_BUDGET = 1 << 22  # query-token cells per topk block and summands per exact-rescoring chunk (~32 MB each)


def word_tokenize(text):
    """Default BM25 tokenizer: lower-cased unicode word tokens (`\\w+`)."""
    return _WORD.findall(text.lower())


class BM25:
    def __init__(self, docs, k1=1.5, b=0.75, epsilon=0.25, dense_df=0.02, max_dense=64):
        """docs: list of token lists. dense_df/max_dense: terms in more than a dense_df fraction
        of the docs (at most max_dense of them) are scored with a dense matmul in topk."""
        if len(docs) == 0:
            raise ValueError("empty pool")
        self.k1, self.b, self.epsilon = k1, b, epsilon
        # vocabulary in order of first occurrence: the order rank_bm25 sums the idfs in
        self.vocab = {}
        ids = [self.vocab.setdefault(t, len(self.vocab)) for d in docs for t in d]
        self.N, V = len(docs), len(self.vocab)
        if V == 0:
            raise ValueError("pool has no tokens")
        self.V = V  # column V is an always-empty column for unknown / padding tokens
        doc_len = np.array([len(d) for d in docs], dtype=np.int64)
        indptr = np.concatenate([[0], np.cumsum(doc_len)])
        tf = sp.csr_array((np.ones(len(ids)), np.array(ids, dtype=np.int64), indptr), shape=(self.N, V + 1))
        tf.sum_duplicates()  # -> term counts, sorted indices
        self.doc_len = doc_len
        self.avgdl = int(doc_len.sum()) / self.N

        # idf exactly as rank_bm25: math.log twice, sequential sum for the average
        df = np.bincount(tf.indices, minlength=V + 1)[:V]
        idf, idf_sum = [], 0.0
        for n in df.tolist():
            v = math.log(self.N - n + 0.5) - math.log(n + 0.5)
            idf.append(v)
            idf_sum += v
        self.average_idf = idf_sum / V
        eps = epsilon * self.average_idf
        self.idf = np.array([eps if v < 0 else v for v in idf] + [0.0])  # + dummy column

        # per (doc, term) summand, same expression and operation order as rank_bm25
        f = tf.data
        dl = np.repeat(doc_len, np.diff(tf.indptr)).astype(np.float64)
        w = self.idf[tf.indices] * (f * (k1 + 1) / (f + k1 * (1 - b + b * dl / self.avgdl)))
        self.W = sp.csr_array((w, tf.indices, tf.indptr), shape=tf.shape)  # exact lookups
        self.Wc = self.W.tocsc()  # columns = postings, for get_scores
        self.Wc.sort_indices()
        self.maxw = np.zeros(V + 1)  # max |summand| per term, for the float32 error bound
        np.maximum.at(self.maxw, tf.indices, np.abs(w))

        # float32 retrieval matrices: dense part for the most frequent terms, sparse for the rest
        order = np.argsort(-df, kind="stable")
        self.dense = np.sort(order[: max_dense][df[order[: max_dense]] > dense_df * self.N])
        WT = self.Wc.T.tocsr().astype(np.float32)  # V+1 x N, rows = postings
        self.WdT = WT[self.dense].toarray()  # F x N
        keep = np.ones(V + 1, dtype=np.float32)
        keep[self.dense] = 0
        self.WsT = sp.csr_array(sp.diags(keep) @ WT)
        self.WsT.eliminate_zeros()

    # ---- exact (float64, bit-identical to rank_bm25) -------------------------------------
    def _ids(self, query):
        if len(query) == 0:
            raise ValueError("empty query (no tokens)")
        return [self.vocab.get(t, self.V) for t in query]

    def get_scores(self, query):
        """Scores of all pool docs for one token list; == BM25Okapi.get_scores(query)."""
        score = np.zeros(self.N)
        for j in self._ids(query):  # one pass per token occurrence, in query order
            s, e = self.Wc.indptr[j], self.Wc.indptr[j + 1]
            score[self.Wc.indices[s:e]] += self.Wc.data[s:e]
        return score

    def _exact(self, T, C):
        """Exact scores of docs C (b x m) for padded query ids T (b x L): sum in query order."""
        score = np.zeros(C.shape)
        step = max(1, CELL_BUDGET // max(1, C.size))  # query positions per chunk: bounded memory
        for s in range(0, T.shape[1], step):
            Tj = T[:, s : s + step]
            vals = self.W[np.repeat(C, Tj.shape[1], axis=1).ravel(), np.tile(Tj, (1, C.shape[1])).ravel()]
            vals = vals.reshape(C.shape[0], C.shape[1], Tj.shape[1])
            for j in range(Tj.shape[1]):
                score += vals[:, :, j]
        return score

    def score_pair(self, query, doc):
        """BM25 of an arbitrary (virtual) document `doc` for `query`, with the pool's idf and
        avgdl; tokens absent from the pool contribute 0. Equals get_scores for pool docs."""
        tf, dl, k1, b = Counter(doc), len(doc), self.k1, self.b
        score = 0.0
        for t, j in zip(query, self._ids(query)):
            f = tf.get(t, 0)
            if f and j < self.V:
                score += float(self.idf[j]) * (f * (k1 + 1) / (f + k1 * (1 - b + b * dl / self.avgdl)))
        return score

    def self_score(self, query):
        """BM25(x, x): x scored as a virtual document of the pool."""
        return self.score_pair(query, query)

    # ---- fast top-M --------------------------------------------------------------------
    def topk(self, queries, M, exclude=None, batch_size=1024, pad=None, progress=False):
        """Top-M pool docs per query, sorted by score desc, ties by lower doc index.
        exclude: per query an iterable of doc indices that must not be returned (or None).
        Returns (idx int64 (nq, M), scores float32 (nq, M)); scores are the exact ones."""
        nq = len(queries)
        if M < 1:
            raise ValueError(f"M={M} must be >= 1")
        exclude = [()] * nq if exclude is None else exclude
        if len(exclude) != nq:
            raise ValueError(f"exclude has {len(exclude)} entries for {nq} queries")
        # de-duplicate: identical (tokens, exclusion set) pairs are computed once
        keys, inverse, seen = [], np.empty(nq, dtype=np.int64), {}
        for i, (q, ex) in enumerate(zip(queries, exclude)):
            if len(q) == 0:
                raise ValueError(f"empty query (no tokens) at position {i}")
            ex = frozenset(int(e) for e in (() if ex is None else ex))
            if ex and (min(ex) < 0 or max(ex) >= self.N):
                raise ValueError(f"exclude index out of range [0, {self.N}) for query {i}")
            if M > self.N - len(ex):
                raise ValueError(f"M={M} is larger than the {self.N - len(ex)} documents available to query {i}")
            key = (tuple(q), ex)
            inverse[i] = seen.setdefault(key, len(keys))
            if inverse[i] == len(keys):
                keys.append(key)
        by_len = np.argsort([len(k[0]) for k in keys], kind="stable")  # less padding per block
        idx = np.empty((len(keys), M), dtype=np.int64)
        scores = np.empty((len(keys), M), dtype=np.float32)
        # one score buffer for all blocks: fresh 100s-of-MB arrays cost a lot in page faults
        buf = np.empty((min(batch_size, len(keys)), self.N), dtype=np.float32)
        # blocks of at most batch_size queries and CELL_BUDGET padded query-token cells (queries sorted by
        # length: the cells of a block are at most its size times its last query's length)
        blocks, s = [], 0
        while s < len(keys):
            e = s + 1
            while e < min(len(keys), s + batch_size) and (e - s + 1) * len(keys[by_len[e]][0]) <= CELL_BUDGET:
                e += 1
            blocks.append((s, e))
            s = e
        if progress:
            from tqdm import tqdm
            blocks = tqdm(blocks, desc="bm25 top-M", unit="block")
        for s, e in blocks:
            rows = by_len[s:e]
            idx[rows], scores[rows] = self._topk_block([keys[r] for r in rows], M, pad, buf[: len(rows)])
        return idx[inverse], scores[inverse]

    def _topk_block(self, keys, M, pad, S):
        b, N = len(keys), self.N
        L = max(len(q) for q, _ in keys)
        T = np.full((b, L), self.V, dtype=np.int64)  # padded term ids (V = empty column)
        for i, (q, _) in enumerate(keys):
            T[i, : len(q)] = [self.vocab.get(t, self.V) for t in q]
        Q = sp.csr_array((np.ones(b * L, np.float32), T.flatten(), np.arange(0, b * L + 1, L)), shape=(b, self.V + 1))
        Q.sum_duplicates()  # query-term counts (in place: hence T.flatten(), a copy)

        # 1. float32 scores S (b x N): sparse product for the rare terms, written into the zeroed
        # buffer, plus a dense BLAS matmul for the frequent ones, accumulated in place
        # (sgemm on the transposes: S^T += WdT^T @ Qd^T, all Fortran-ordered views, no copies)
        S.fill(0)
        (Q @ self.WsT).toarray(out=S)
        if len(self.dense):
            sgemm(1.0, self.WdT.T, Q[:, self.dense].toarray().T, beta=1.0, c=S.T, overwrite_c=True)
        for i, (_, ex) in enumerate(keys):
            if ex:
                S[i, list(ex)] = -np.inf

        # 2. top Mc candidates per row. A full argpartition of each row is slow, so first a
        # threshold: the Mc-th largest score among every 16th doc is reached by >= Mc docs,
        # and typically by only ~16 Mc; argpartition just those.
        Mc = min(N, M + (pad if pad is not None else max(16, M // 2)))
        sample = S[:, :: max(1, min(16, N // Mc))]
        tau = np.partition(sample, sample.shape[1] - Mc, axis=1)[:, sample.shape[1] - Mc]
        C = np.empty((b, Mc), dtype=np.int64)
        for i in range(b):
            c = np.flatnonzero(S[i] >= tau[i])
            C[i] = c[np.argpartition(S[i, c], len(c) - Mc)[len(c) - Mc :]]

        # 3. exact rescoring, sort by (-score, index)
        fC = np.take_along_axis(S, C, axis=1)
        ex = np.where(fC == -np.inf, -np.inf, self._exact(T, C))
        order = np.lexsort((C, -ex), axis=-1)
        C, ex = np.take_along_axis(C, order, 1)[:, :M], np.take_along_axis(ex, order, 1)[:, :M]

        # 4. proof: non-candidates have float32 score <= min(fC); their exact score is within
        # err of it. Generous bound on float32 rounding: (2 * #terms + 8) ulps of sum |summands|.
        err = (2 * np.diff(Q.indptr) + 8) * 2.0**-23 * (Q.astype(np.float64) @ self.maxw)
        thr = ex[:, M - 1] - err
        for i in np.flatnonzero(fC.min(axis=1) >= thr):
            cand = np.flatnonzero(S[i] >= thr[i])  # every doc that may reach the M-th score
            q = T[i : i + 1]
            e = self.get_scores(keys[i][0])[cand] if len(cand) > N // 8 else self._exact(q, cand[None])[0]
            o = np.lexsort((cand, -e))[:M]
            C[i], ex[i] = cand[o], e[o]
        return C, ex.astype(np.float32)


class PoolIndex:
    """BM25 over a task pool (list of examples {"id", "x", "y"} or plain strings)."""

    def __init__(self, pool, tokenize=word_tokenize, **bm25_kw):
        self.xs = [ex["x"] if isinstance(ex, dict) else ex for ex in pool]
        self.tokenize = tokenize
        self.docs = [tokenize(x) for x in self.xs]
        self.bm25 = BM25(self.docs, **bm25_kw)
        self._by_text = defaultdict(list)
        for i, x in enumerate(self.xs):
            self._by_text[x].append(i)

    def topk(self, xs, M, exclude=None, **kw):
        """Top-M pool indices (and exact scores as float32) for raw query strings."""
        return self.bm25.topk([self.tokenize(x) for x in xs], M, exclude, **kw)

    def _nsim(self, x, docs):
        q = self.tokenize(x)
        s = self.bm25.self_score(q) if q else 0.0
        if s <= 0:  # no (known) tokens: nothing to be similar to
            return [0.0] * len(docs)
        return [min(max(self.bm25.score_pair(q, d) / s, 0.0), 1.0) for d in docs]

    def nsim(self, x, others):
        """clip(BM25(x, o) / BM25(x, x), 0, 1) for raw strings o (in the pool or not)."""
        return self._nsim(x, [self.tokenize(o) for o in others])

    def nsim_idx(self, x, idx):
        """nsim of x to the pool examples at indices idx."""
        return self._nsim(x, [self.docs[i] for i in idx])

    def duplicates_of(self, x):
        """Pool indices whose x is exactly the string x."""
        return list(self._by_text.get(x, []))


class IncrementalBM25:
    """Exact BM25 over a pool that grows one document at a time (deployment with feedback), without
    rebuilding anything: document frequencies, document lengths, the token total (avgdl), an inverted
    index (growable postings per term) and a table of log(n + 0.5) are kept up to date by `add`.

    Scores are bit-identical to rank_bm25.BM25Okapi (and `BM25`) built on the current pool: the idf
    of a query term is log(N - n + 0.5) - log(n + 0.5) from the table (math.log values), the epsilon
    floor epsilon * mean(idf) for negative idfs uses the sequential sum of every term's idf in order
    of first occurrence (np.cumsum, computed only when a query term has a negative idf), and each
    summand has rank_bm25's operation order, added in query order. `topk` = a stable argsort of
    -score: ties by lower doc index (doc index = order of addition). Cost per query: O(N + the
    postings of its terms); per `add`: O(the document's distinct terms)."""

    def __init__(self, k1=1.5, b=0.75, epsilon=0.25):
        self.k1, self.b, self.epsilon = k1, b, epsilon
        self.vocab = {}
        self.N, self.total = 0, 0
        self._df = np.zeros(16, dtype=np.int64)
        self._dl = np.zeros(16, dtype=np.int64)
        self._log = np.array([math.log(0.5)])            # _log[n] = math.log(n + 0.5)
        self._pdoc, self._ptf, self._plen = [], [], []    # postings per term: doc ids, tf (float), length
        self._K = None                                    # k1 * (1 - b + b * dl / avgdl) per doc, for this N

    @property
    def V(self):
        return len(self.vocab)

    def add(self, doc):
        """Append one document (a token list; may be empty) as doc index N."""
        d = self.N
        if d == len(self._dl):
            self._dl = np.concatenate([self._dl, np.zeros(len(self._dl), dtype=np.int64)])
        self._dl[d] = len(doc)
        self.N += 1
        self.total += len(doc)
        if len(self._log) <= self.N:  # capacity doubling: amortised O(1) per add
            old = len(self._log)
            self._log = np.concatenate([self._log, [math.log(n + 0.5) for n in range(old, 2 * old + 1)]])
        counts = {}
        for t in doc:
            counts[t] = counts.get(t, 0) + 1
        for t, f in counts.items():  # first-occurrence order within the doc, as rank_bm25's nd
            j = self.vocab.get(t)
            if j is None:
                j = self.vocab[t] = len(self.vocab)
                if j == len(self._df):
                    self._df = np.concatenate([self._df, np.zeros(len(self._df), dtype=np.int64)])
                self._pdoc.append(np.empty(4, dtype=np.int64))
                self._ptf.append(np.empty(4, dtype=np.float64))
                self._plen.append(0)
            self._df[j] += 1
            n = self._plen[j]
            if n == len(self._pdoc[j]):
                self._pdoc[j] = np.concatenate([self._pdoc[j], np.empty(n, dtype=np.int64)])
                self._ptf[j] = np.concatenate([self._ptf[j], np.empty(n, dtype=np.float64)])
            self._pdoc[j][n], self._ptf[j][n] = d, f
            self._plen[j] = n + 1
        self._K = None

    def _avgdl(self):
        return self.total / self.N  # int / int, as rank_bm25's num_doc / corpus_size

    def _idf(self, js):
        """{term id: idf} for the given term ids, with rank_bm25's epsilon floor."""
        L, N, df = self._log, self.N, self._df
        raw = {j: float(L[N - df[j]] - L[df[j]]) for j in js}
        if any(v < 0 for v in raw.values()):
            all_idf = L[N - df[:self.V]] - L[df[:self.V]]
            eps = self.epsilon * (float(np.cumsum(all_idf)[-1]) / self.V)
            raw = {j: (eps if v < 0 else v) for j, v in raw.items()}
        return raw

    def get_scores(self, query):
        """Scores of all N docs for a token list; == BM25Okapi(current pool).get_scores(query).
        An empty pool, or a pool without any token, gives zeros (rank_bm25 cannot be built on it)."""
        score = np.zeros(self.N)
        if self.N == 0 or self.total == 0:
            return score
        js = [self.vocab.get(t) for t in query]
        idf = self._idf({j for j in js if j is not None})
        if self._K is None:
            b = self.b
            self._K = self.k1 * (1 - b + b * self._dl[:self.N] / self._avgdl())
        k1, cache = self.k1, {}
        for j in js:  # one pass per token occurrence, in query order
            if j is None:
                continue
            if j not in cache:
                n = self._plen[j]
                docs, f = self._pdoc[j][:n], self._ptf[j][:n]
                cache[j] = (docs, idf[j] * (f * (k1 + 1) / (f + self._K[docs])))
            docs, w = cache[j]
            score[docs] += w
        return score

    def score_pair(self, query, doc):
        """BM25 of a virtual document `doc` for `query` with the current pool's idf and avgdl (as
        BM25.score_pair); 0 for an empty pool."""
        if self.N == 0 or self.total == 0:
            return 0.0
        tf, dl, k1, b, avgdl = Counter(doc), len(doc), self.k1, self.b, self._avgdl()
        js = [self.vocab.get(t) for t in query]
        idf = self._idf({j for j in js if j is not None})
        score = 0.0
        for t, j in zip(query, js):
            f = tf.get(t, 0)
            if f and j is not None:
                score += idf[j] * (f * (k1 + 1) / (f + k1 * (1 - b + b * dl / avgdl)))
        return score

    def self_score(self, query):
        return self.score_pair(query, query)

    @staticmethod
    def top_of(score, M, hint=None):
        """The first M doc indices of a stable argsort of -score (ties: lower index first).
        hint: >= M distinct doc indices (any); the M-th largest of their scores is at most the M-th
        largest of all, so only the docs scoring at least that are partitioned (the answer is the same)."""
        M = min(M, len(score))
        if M <= 0:
            return np.zeros(0, dtype=np.int64)
        if M < len(score):
            pool, sub = None, score
            if hint is not None and len(hint) >= M:
                low = np.partition(score[hint], len(hint) - M)[len(hint) - M]  # <= the M-th largest of all
                pool = np.flatnonzero(score >= low)
                sub = score[pool]
            kth = np.partition(sub, len(sub) - M)[len(sub) - M]  # the M-th largest score (pool holds the top M)
            cand = np.flatnonzero(sub >= kth)
            if pool is not None:
                cand = pool[cand]
        else:
            cand = np.arange(len(score))
        order = np.lexsort((cand, -score[cand]))[:M]
        return cand[order]

    def topk(self, query, M):
        """(indices, exact scores) of the top-M docs (M capped at N), sorted by score desc, ties by
        lower doc index: what BM25(current pool).topk returns for one query."""
        score = self.get_scores(query)
        idx = self.top_of(score, M, self.rare_docs(query, M))
        return idx, score[idx]

    def rare_docs(self, query, M):
        """At least M distinct doc indices holding the query's rarest terms (rarest first, whole postings),
        or None when the query's terms reach fewer docs: a hint for top_of."""
        js = sorted({j for j in (self.vocab.get(t) for t in query) if j is not None}, key=lambda j: self._plen[j])
        parts, n = [], 0
        for j in js:
            parts.append(self._pdoc[j][:self._plen[j]])
            n += self._plen[j]
            if n >= 2 * M:
                docs = np.unique(np.concatenate(parts))
                if len(docs) >= M:
                    return docs
        return None


class GrowingPoolIndex:
    """PoolIndex over a pool that grows (IncrementalBM25): examples {"id", "x", "y"} appended one at a
    time; nsim as PoolIndex.nsim_idx over the current pool."""

    def __init__(self, pool=(), tokenize=word_tokenize, **bm25_kw):
        self.tokenize = tokenize
        self.bm25 = IncrementalBM25(**bm25_kw)
        self.examples, self.docs = [], []
        for ex in pool:
            self.add(ex)

    def __len__(self):
        return len(self.examples)

    def add(self, ex):
        tokens = self.tokenize(ex["x"] if isinstance(ex, dict) else ex)
        self.examples.append(ex)
        self.docs.append(tokens)
        self.bm25.add(tokens)

    def query(self, x):
        """(tokens, exact scores of every pool doc, self-score) of a raw query string."""
        q = self.tokenize(x)
        if not q:
            return q, np.zeros(len(self.docs)), 0.0
        return q, self.bm25.get_scores(q), self.bm25.self_score(q)

    @staticmethod
    def nsim_of(scores, self_score):
        """clip(score / self-score, 0, 1) (0 when the query has no known token)."""
        if self_score <= 0:
            return [0.0] * len(scores)
        return [min(max(float(s) / self_score, 0.0), 1.0) for s in scores]
