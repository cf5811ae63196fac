"""Speed and exactness of similarity.BM25.topk against rank_bm25.BM25Okapi.

    python benchmarks/bm25.py                                   # 20k docs x 2k queries, top-50
    python benchmarks/bm25.py --n-docs 50000 --self             # 50k pool x 50k targets, self excluded
    python benchmarks/bm25.py --data DATA/multi30k/train.en --self --n-docs 29000
    python benchmarks/bm25.py --stream-len 30000                # incremental: retrieve + append per item

--stream-len T (deployment with feedback): a stream of T items (synthetic, or the lines of --data); for
each item, top-M retrieval over the items before it, then the item is appended to the pool
(similarity.IncrementalBM25, no rebuild). The alternative, rebuilding similarity.BM25 on the current
pool for every item, is timed on --rebuild-sample steps spread over the stream and extrapolated (the
sum over all T steps of the per-step time interpolated linearly in the pool size). The top-M of
the sampled steps must equal the rebuilt index's.

Corpus: seeded synthetic sentences (Zipfian vocabulary, lengths uniform in [min-len, max-len])
or the lines of --data (tokenised with similarity.word_tokenize). Queries: --n-queries fresh
sentences from the same source, or with --self every pool document as a target with itself and
its exact duplicates excluded (what sample_contexts does). rank_bm25 is timed on the first
--ref-queries queries only (get_scores + stable argsort of -score, exclusions set to -inf) and its
time is extrapolated linearly to all queries; the top-M indices of those queries must be identical.
"""
import argparse
import os
import time


def synthetic(n, vocab, zipf, min_len, max_len, rng):
    import numpy as np
    p = 1.0 / np.arange(1, vocab + 1) ** zipf
    lens = rng.integers(min_len, max_len + 1, n)
    words = rng.choice(vocab, size=int(lens.sum()), p=p / p.sum())
    cuts = np.cumsum(lens)[:-1]
    return [[f"w{w}" for w in s] for s in np.split(words, cuts)]


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-docs", type=int, default=20000)
    p.add_argument("--n-queries", type=int, default=2000, help="ignored with --self")
    p.add_argument("--self", action="store_true", help="queries = the pool, each excluding itself and its duplicates")
    p.add_argument("--M", type=int, default=50, help="top-M")
    p.add_argument("--ref-queries", type=int, default=100, help="queries also run through rank_bm25")
    p.add_argument("--data", default=None, help="text file, one document per line (default: synthetic)")
    p.add_argument("--vocab", type=int, default=30000)
    p.add_argument("--zipf", type=float, default=1.1)
    p.add_argument("--min-words", dest="min_len", type=int, default=10, help="synthetic documents: fewest words")
    p.add_argument("--max-words", dest="max_len", type=int, default=20, help="synthetic documents: most words")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stream-len", dest="stream", type=int, default=None, metavar="T",
                   help="incremental benchmark on a T-item stream")
    p.add_argument("--rebuild-sample", type=int, default=30, help="--stream-len: rebuilt steps timed")
    return p


def stream_bench(args, docs, np):
    """Retrieve-then-append per item with IncrementalBM25 vs rebuilding BM25 per item (sampled)."""
    from contrastive_context.common import progress
    from contrastive_context.similarity import BM25, IncrementalBM25
    T, M = len(docs), args.M
    inc = IncrementalBM25()
    steps = sorted(set(np.linspace(1, T - 1, args.rebuild_sample).astype(int).tolist()))
    got, t_ret, t_add = {}, 0.0, 0.0
    for t in progress(range(T), desc="stream", unit="item"):
        if t > 0:
            t0 = time.perf_counter()
            idx, _ = inc.topk(docs[t], M)
            t_ret += time.perf_counter() - t0
            if t in steps:
                got[t] = idx.tolist()
        t0 = time.perf_counter()
        inc.add(docs[t])
        t_add += time.perf_counter() - t0
    per = []
    same = 0
    for t in steps:
        t0 = time.perf_counter()
        bm = BM25(docs[:t])
        idx, _ = bm.topk([docs[t]], min(M, t))
        per.append(time.perf_counter() - t0)
        same += idx[0].tolist() == got[t]
    t_rebuild = float(np.sum(np.interp(np.arange(1, T), steps, per)))
    t_inc = t_ret + t_add
    print(f"incremental: {T} items, retrieval {t_ret:.2f} s ({(T - 1) / t_ret:.0f} items/s), append {t_add:.2f} s, "
          f"total {t_inc:.2f} s ({T / t_inc:.0f} items/s)")
    print(f"rebuild per item: {len(steps)} sampled steps {sum(per):.2f} s (pool {steps[0]}..{steps[-1]}) -> "
          f"{t_rebuild:.1f} s for {T} items (extrapolated: per-step time interpolated in the pool size)")
    print(f"identical top-{M} on the sampled steps: {same}/{len(steps)}")
    print(f"speed-up (retrieval + append per item vs rebuild per item): {t_rebuild / t_inc:.0f}x")
    if same != len(steps):
        raise SystemExit("incremental top-M differs from a rebuilt BM25")


def corpus(args, n_q, rng):
    """(docs, queries) as token lists: the lines of --data (shuffled) or synthetic sentences; with
    --self the queries are the docs themselves."""
    from contrastive_context.common import UserError
    from contrastive_context.similarity import word_tokenize
    if args.data:
        if not os.path.isfile(args.data):
            raise UserError(f"--data {args.data}: no such file")
        with open(args.data, encoding="utf-8") as f:
            lines = [word_tokenize(line) for line in f]
        lines = [t for t in lines if t]
        need = args.n_docs + (0 if args.self else n_q)
        if len(lines) < need:
            raise UserError(f"--data has {len(lines)} non-empty lines, need {need}")
        order = rng.permutation(len(lines))[:need]
        docs = [lines[i] for i in order[: args.n_docs]]
        queries = docs if args.self else [lines[i] for i in order[args.n_docs :]]
    else:
        docs = synthetic(args.n_docs, args.vocab, args.zipf, args.min_len, args.max_len, rng)
        queries = docs if args.self else synthetic(n_q, args.vocab, args.zipf, args.min_len, args.max_len, rng)
    return docs, queries


def self_exclusions(docs):
    """Per doc, the indices of every doc with the same tokens (itself included): what sample_contexts excludes."""
    groups = {}
    for i, d in enumerate(docs):
        groups.setdefault(tuple(d), []).append(i)
    return [groups[tuple(d)] for d in docs]


def main():
    args = build_parser().parse_args()
    # thread limits must be set before numpy loads BLAS
    for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[v] = str(args.threads)
    import numpy as np
    from rank_bm25 import BM25Okapi

    from contrastive_context.common import print_config
    from contrastive_context.similarity import BM25

    print_config(args, "bm25 benchmark")
    print(f"  cpus             {os.cpu_count()} (threads used: {args.threads})")
    rng = np.random.default_rng(args.seed)
    if args.stream:
        args.n_docs, args.self = args.stream, True
        docs, _ = corpus(args, 0, rng)
        print(f"stream: {len(docs)} items, mean length {np.mean([len(d) for d in docs]):.1f}")
        return stream_bench(args, docs, np)
    n_q = args.n_docs if args.self else args.n_queries
    docs, queries = corpus(args, n_q, rng)
    exclude = self_exclusions(docs) if args.self else None  # the target and exact duplicates of its text
    n_ref = min(args.ref_queries, n_q)
    print(f"docs: {len(docs)}, mean length {np.mean([len(d) for d in docs]):.1f}, "
          f"vocab {len({t for d in docs for t in d})}; queries: {n_q} ({len(set(map(tuple, queries)))} distinct)")

    t0 = time.perf_counter()
    bm = BM25(docs)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    idx, _ = bm.topk(queries, args.M, exclude=exclude, batch_size=args.batch_size, progress=True)
    t_ours = time.perf_counter() - t0
    print(f"ours:      build {t_build:.2f} s, top-{args.M} of {n_q} queries {t_ours:.2f} s "
          f"({t_ours / n_q * 1e3:.3f} ms/query; dense terms {len(bm.dense)})")

    t0 = time.perf_counter()
    ref = BM25Okapi(docs)
    t_ref_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    same = 0
    for i in range(n_ref):
        s = ref.get_scores(queries[i])
        if exclude:
            s[exclude[i]] = -np.inf
        same += np.argsort(-s, kind="stable")[: args.M].tolist() == idx[i].tolist()
    t_ref = time.perf_counter() - t0
    t_ref_all = t_ref / n_ref * n_q
    print(f"rank_bm25: build {t_ref_build:.2f} s, {n_ref} queries {t_ref:.2f} s -> {t_ref_all:.1f} s for {n_q} "
          f"(extrapolated linearly)")
    print(f"identical top-{args.M} indices: {same}/{n_ref}")
    print(f"speed-up (query time): {t_ref_all / t_ours:.0f}x; incl. build: {(t_ref_all + t_ref_build) / (t_ours + t_build):.0f}x")
    if same != n_ref:
        raise SystemExit("top-M indices differ from rank_bm25")


if __name__ == "__main__":
    from contrastive_context.common import run_main
    run_main(main)
