"""Assign an in-context-example context to every training target, per regime and epoch.

    python sample_contexts.py --regime contrastive --alpha 0.3 --beta 0.2 --rho 0.5 \
        --paraphrases paraphrases.jsonl --epochs 5 --out contexts.jsonl

Regimes (SPEC.md): zero | random | similar | contrastive | random+similar.
Contrastive-Context: with prob. alpha a Random-Context, with prob. beta a Similar-Context
(top-k BM25, most similar last), otherwise a One-Near-Context: one example drawn from the
top-M BM25 candidates with probability proportional to its score (or, with prob. rho, a
synthetic paraphrase of the target itself) plus k-1 random examples, positions shuffled.

One JSONL row per (epoch, target):
  {"epoch", "target", "regime", "kind", "context": [ids], "nsim": [floats], "paraphrase": bool}
Each (epoch, target) has its own RNG stream seeded from (seed, epoch, target id), so the same
command writes a byte-identical file.
"""
import argparse
import random
from collections import defaultdict

from common import UserError, check_range, print_config, progress, run_main, write_jsonl_atomic
from similarity import PoolIndex
from tasks import add_task_args, load_paraphrases, task_from_args

REGIMES = ("zero", "random", "similar", "contrastive", "random+similar")


def validate(regime, k, pool_size, alpha, beta, rho, zero_frac, top_m, epochs):
    if regime not in REGIMES:
        raise UserError(f"unknown regime '{regime}' (choose from {', '.join(REGIMES)})")
    for name, v in (("alpha", alpha), ("beta", beta), ("rho", rho), ("zero-frac", zero_frac)):
        check_range(name, v, 0.0, 1.0)
    if alpha + beta > 1 + 1e-12:
        raise UserError(f"--alpha + --beta must be <= 1, got {alpha} + {beta} = {alpha + beta:g}")
    if zero_frac > alpha + 1e-12:
        raise UserError(f"--zero-frac ({zero_frac}) is taken out of the Random share and cannot exceed --alpha ({alpha})")
    if pool_size == 0:
        raise UserError("the pool is empty")
    if k < 1:
        raise UserError(f"--k must be >= 1, got {k}")
    if regime != "zero" and k > pool_size - 1:
        raise UserError(f"--k {k} is larger than the pool minus the target ({pool_size - 1} examples)")
    if top_m < 1:
        raise UserError(f"--top-m must be >= 1, got {top_m}")
    if epochs < 1:
        raise UserError(f"--epochs must be >= 1, got {epochs}")


def pick_kind(regime, u, alpha, beta, zero_frac):
    """The kind of context for one target, from a uniform draw u in [0, 1)."""
    if regime in ("zero", "random", "similar"):
        return regime
    if regime == "random+similar":
        return "random" if u < alpha else "similar"
    if u < zero_frac:
        return "zero"
    if u < alpha:
        return "random"
    if u < alpha + beta:
        return "similar"
    return "one_near"


def sample_contexts(task, regime, k=4, epochs=1, seed=0, alpha=0.3, beta=0.2, rho=0.5, paraphrases=None,
                    top_m=50, zero_frac=0.0, min_avg_sim=None, index=None, show_progress=True):
    """Rows of the context-assignment contract for every (epoch, target) of task.pool."""
    pool = task.pool
    validate(regime, k, len(pool), alpha, beta, rho, zero_frac, top_m, epochs)
    if regime != "contrastive":
        alpha, beta, rho, zero_frac = {"random+similar": (alpha, 1 - alpha, 0.0, 0.0)}.get(regime, (0, 0, 0, 0))
    paraphrases = paraphrases or {}
    index = index or PoolIndex(pool, task.tokenize)
    n = len(pool)

    # Excluded per target: itself and exact duplicates of its input.
    exclude = [sorted(set(index.duplicates_of(ex["x"])) | {i}) for i, ex in enumerate(pool)]
    if regime in ("similar", "contrastive", "random+similar"):
        # Targets without any BM25 token (e.g. a punctuation-only line) have no neighbours:
        # their Similar/One-Near contexts fall back to random examples.
        m = min(max(top_m, k), n - 1)
        has_tok = [i for i, ex in enumerate(pool) if task.tokenize(ex["x"])]
        top_idx, top_score = [[] for _ in pool], [[] for _ in pool]
        if has_tok:
            ti, ts = index.topk([pool[i]["x"] for i in has_tok], m, exclude=[exclude[i] for i in has_tok])
            for r, i in enumerate(has_tok):
                top_idx[i], top_score[i] = [int(j) for j in ti[r]], [float(s) for s in ts[r]]

    def random_ids(rng, excl, count):
        excl = set(excl)
        if n - len(excl) < count:
            raise UserError(f"--k {k} is larger than the pool minus the target and its duplicates")
        picked = []
        while len(picked) < count:
            for j in rng.sample(range(n), min(n, count + len(excl))):
                if j not in excl:
                    excl.add(j)
                    picked.append(j)
                    if len(picked) == count:
                        break
        return picked

    rows = []
    bar = progress(total=epochs * n, desc=f"contexts[{regime}]", **({} if show_progress else {"disable": True}))
    for epoch in range(epochs):
        for i, ex in enumerate(pool):
            rng = random.Random(f"{seed}:{regime}:{epoch}:{ex['id']}")
            kind = pick_kind(regime, rng.random(), alpha, beta, zero_frac)
            is_para, ctx = False, []
            if kind == "random":
                ctx = random_ids(rng, exclude[i], k)
            elif kind == "similar":
                cand = [j for j in top_idx[i] if j >= 0][:k]
                if len(cand) < k:  # fewer scored neighbours than k: fill with random ones
                    cand += random_ids(rng, list(exclude[i]) + cand, k - len(cand))
                ctx = cand[::-1]  # most similar last, nearest the target
            elif kind == "one_near":
                if rho > 0 and paraphrases.get(ex["id"]) and rng.random() < rho:
                    near, is_para = rng.choice(paraphrases[ex["id"]]), True
                elif top_idx[i]:
                    cand, w = top_idx[i], [max(s, 0.0) for s in top_score[i]]
                    w = w if sum(w) > 0 else [1.0] * len(w)
                    near = rng.choices(cand, weights=w, k=1)[0]
                else:
                    near = random_ids(rng, exclude[i], 1)[0]
                others = random_ids(rng, list(exclude[i]) + ([] if is_para else [near]), k - 1)
                ctx = others + [near]
                rng.shuffle(ctx)
            ctx_ex = [c if isinstance(c, dict) else pool[c] for c in ctx]
            nsim = [round(s, 6) for s in index.nsim(ex["x"], [c["x"] for c in ctx_ex])] if ctx_ex else []
            rows.append({"epoch": epoch, "target": ex["id"], "regime": regime, "kind": kind,
                         "context": [c["id"] for c in ctx_ex], "nsim": nsim, "paraphrase": is_para})
            bar.update(1)
    bar.close()
    if min_avg_sim is not None:  # Appendix C.1 filter: keep well-supported Similar-Contexts only
        rows = [r for r in rows if r["kind"] != "similar" or sum(r["nsim"]) / len(r["nsim"]) > min_avg_sim]
    return rows


def resolve_context(row, pool_by_id, para_by_id=None):
    """Context ids -> examples; '<id>#p<j>' names the j-th paraphrase of example <id>."""
    out = []
    for cid in row["context"]:
        if cid in pool_by_id:
            out.append(pool_by_id[cid])
        elif "#p" in cid and para_by_id:
            base, j = cid.rsplit("#p", 1)
            try:
                out.append(para_by_id[base][int(j)])
            except (KeyError, IndexError, ValueError):
                raise UserError(f"context id {cid} is not in the paraphrase file") from None
        else:
            raise UserError(f"context id {cid} is not in the pool" +
                            (" (a paraphrase: pass the paraphrase file)" if "#p" in cid else ""))
    return out


def summarize(rows):
    by = defaultdict(list)
    for r in rows:
        by[r["kind"]].append(r)
    lines = [f"{'kind':<10} {'rows':>7} {'share':>6} {'mean nsim':>9} {'mean max':>9} {'paraphrase':>10}"]
    for kind in ("zero", "random", "similar", "one_near"):
        rs = by.get(kind, [])
        if not rs:
            continue
        sims = [s for r in rs for s in r["nsim"]]
        mx = [max(r["nsim"]) for r in rs if r["nsim"]]
        mean = f"{sum(sims) / len(sims):.3f}" if sims else "-"
        mmax = f"{sum(mx) / len(mx):.3f}" if mx else "-"
        lines.append(f"{kind:<10} {len(rs):>7} {len(rs) / len(rows):>6.3f} {mean:>9} {mmax:>9} "
                     f"{sum(r['paraphrase'] for r in rs):>10}")
    return "\n".join(lines)


def add_regime_args(p):
    g = p.add_argument_group("contexts")
    g.add_argument("--regime", default="contrastive", help=f"one of {', '.join(REGIMES)} (default: contrastive)")
    g.add_argument("--k", type=int, default=4, help="examples per context (default 4)")
    g.add_argument("--alpha", type=float, default=0.3, help="contrastive: share of Random-Contexts "
                   "(random+similar: share of Random, the rest Similar)")
    g.add_argument("--beta", type=float, default=0.2, help="contrastive: share of Similar-Contexts")
    g.add_argument("--rho", type=float, default=0.5, help="contrastive: within One-Near-Contexts, probability "
                   "that the near example is a synthetic paraphrase of the target (needs --paraphrases)")
    g.add_argument("--paraphrases", default=None, help="paraphrase JSONL from paraphrase.py (for --rho)")
    g.add_argument("--top-m", type=int, default=50, help="One-Near candidates: the top-M BM25 neighbours")
    g.add_argument("--zero-frac", type=float, default=0.0, help="extension: share of targets with no context, "
                   "taken out of the Random share (default 0 = the paper's method)")
    g.add_argument("--min-avg-sim", type=float, default=None, help="similar: keep only targets whose mean nsim "
                   "to their context exceeds this (paper App. C.1)")
    return g


def contexts_from_args(args, task, epochs, show_progress=True):
    paraphrases = None
    if args.paraphrases:
        paraphrases = load_paraphrases(args.paraphrases, task)
    elif args.regime == "contrastive" and args.rho > 0:
        print(f"note: no --paraphrases given, so --rho {args.rho} has nothing to draw from: "
              "every One-Near example comes from the pool", flush=True)
    if args.min_avg_sim is not None and args.regime != "similar":
        raise UserError("--min-avg-sim applies to --regime similar only")
    return sample_contexts(task, args.regime, k=args.k, epochs=epochs, seed=args.seed, alpha=args.alpha,
                           beta=args.beta, rho=args.rho, paraphrases=paraphrases, top_m=args.top_m,
                           zero_frac=args.zero_frac, min_avg_sim=args.min_avg_sim, show_progress=show_progress)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_task_args(p)
    add_regime_args(p)
    p.add_argument("--epochs", type=int, default=1, help="contexts are re-drawn for every epoch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output JSONL")
    args = p.parse_args()
    print_config(args, "sample_contexts")
    task = task_from_args(args)
    print(task.describe(), flush=True)
    rows = contexts_from_args(args, task, args.epochs)
    write_jsonl_atomic(args.out, rows)
    print(summarize(rows))
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    run_main(main)
