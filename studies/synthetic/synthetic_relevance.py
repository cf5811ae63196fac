"""Synthetic track: what training with counterfactual near examples (gamma) changes, per cell.

    python studies/synthetic/synthetic_relevance.py results/synthetic/relevance --out results/synthetic/relevance/relevance.md

For every contrastive cell with gamma > 0 in the sweep, its gamma = 0 twin (same alpha, beta, rho, R, zero
share, F; same seeds, same initialisations) is the reference. Paired per (seed, test input), CI clustered by
test input (stats.paired_diff, seeds pooled). Rules, stated before reading the numbers:
  * "raises edit-ok" / "lowers cf-copy": the difference's 95 % CI excludes 0 in that direction;
  * "keeps X" (paraphrase use: acc under random+paraphrase; in-weights: acc under zero and random contexts):
    "kept" when the CI's lower bound is above -2 points (non-inferiority margin 2 points), "lost" when its
    upper bound is below -2 AND every seed's difference is below -2, else "not separated";
  * "raises"/"lowers" hold only if the per-seed differences agree in sign with the pooled one (seed check).
A second table, per cell: per-symbol in-context learning apart from whole-input copying -- on the drift
test with random contexts, drifted chunks whose symbol IS shown (with its new-rule chunk) in some context
example minus those whose symbol is shown nowhere, paired within (seed, input) over the inputs that have
both; "present" when the CI excludes 0 upwards and every seed agrees. Beside it, whole-input copying: drifted
chunks with the exact target in context minus with random contexts, same pairing.
The copier row (answer = the near example's label, copied whole) is scored on the same instances, rebuilt
from the sweep's recorded configuration (sweep.jsonl.meta.json): it is the trivial baseline a claim of
"checks relevance" must beat (its edit-ok is not 0: an edited symbol's PFA may accept the copied chunk).
"""
import argparse
import json
import types
import os
import re

import numpy as np

from contrastive_context import stats
from contrastive_context.synthetic import runs as synthetic_runs
from contrastive_context.synthetic import scratch
from contrastive_context.common import UserError, run_main, write_text_atomic

METRICS = [("edit_ok", "edit-ok", "up"), ("cf_copy", "cf-copy", "down"),
           ("acc_random+counterfactual", "acc rand+cf", None), ("acc_random+paraphrase", "acc rand+para", "keep"),
           ("acc_random", "acc random", "keep"), ("acc_zero", "acc zero", "keep"),
           ("drift_random_drifted_shown", "drift shown", None), ("drift_paraphrase_drifted", "drift para", None)]
MARGIN = 2.0


def load(runs, cell):
    out = {}
    for f in sorted(os.listdir(runs)):
        m = re.fullmatch(re.escape(cell) + r"-s(\d+)\.inputs\.json", f)
        if m:
            with open(os.path.join(runs, f), encoding="utf-8") as fh:
                out[m.group(1)] = json.load(fh)
    return out


def compare(A, B, metric):
    """gamma cell (A) minus its gamma-0 twin (B): pooled paired difference + per-seed means."""
    a, b, ids, per_seed = [], [], [], {}
    for s in sorted(set(A) & set(B), key=int):
        pa, pb = [], []
        for i, (u, v) in enumerate(zip(A[s].get(metric, []), B[s].get(metric, []))):
            if u is not None and v is not None:
                a.append(u), b.append(v), ids.append(i), pa.append(u), pb.append(v)
        if pa:
            per_seed[s] = sum(pa) / len(pa) - sum(pb) / len(pb)
    if not a:
        return None
    d = stats.paired_diff(a, b, ids)
    d.update(a=sum(a) / len(a), b=sum(b) / len(b), per_seed=per_seed)
    return d


def within(runs, cell, key_a, key_b):
    """key_a minus key_b of the same runs (seed, input): pooled paired difference + per-seed means."""
    A = load(runs, cell)
    return compare({s: {"m": v[key_a]} for s, v in A.items()}, {s: {"m": v[key_b]} for s, v in A.items()}, "m")


def icl_table(runs, cells):
    """Per cell: per-symbol ICL (shown - unseen drifted chunks) and whole-input copying (copy - random)."""
    lines = ["\n## Per-symbol in-context learning vs whole-input copying (drift test, each cell on its own)\n",
             "| cell | shown | unseen | shown − unseen [95 % CI] (per seed) | per-symbol ICL | copy − random "
             "context [95 % CI] |", "|---|---|---|---|---|---|"]
    for cell in cells:
        d = within(runs, cell, "drift_random_drifted_shown", "drift_random_drifted_unseen")
        c = within(runs, cell, "drift_copy_drifted", "drift_random_drifted")
        if d is None or c is None:
            continue
        seeds = ", ".join(f"{v:+.1f}" for v in d["per_seed"].values())
        lines.append(f"| `{cell}` | {d['a']:.1f} | {d['b']:.1f} | {stats.fmt(d)} ({seeds}) | "
                     f"{'present' if verdict(d, 'up') == 'holds' else 'not shown'} | {stats.fmt(c)} |")
    return lines


def copier(sweep):
    """Edit-ok, cf-copy and acceptance of the copier on the sweep's random+counterfactual instances."""
    with open(os.path.join(sweep, "sweep.jsonl.meta.json"), encoding="utf-8") as f:
        cfg = json.load(f)["config"]
    synthetic_runs.setup_data(types.SimpleNamespace(**cfg))
    data, s = synthetic_runs.DATA["data"], synthetic_runs.DATA["full"]["random+counterfactual"]
    E, m, N = data.ex_len, data.m, len(s["prompt"])
    start = s["position"] * E + m + 1                       # the near example's label letters in the prompt
    lab = np.stack([s["prompt"][i, start[i]:start[i] + data.n_target] for i in range(N)]) - scratch.LET0
    ok, rows = data.chunk_ok(s, lab[None])[0], np.arange(N)
    chunks = lab.reshape(N, m, data.l)[:, data.pi_inv, :]   # by input position
    cf = (chunks[rows, s["edit_pos"]] == s["cf_c"][rows, s["edit_pos"]]).all(-1)
    return {"edit-ok": 100 * ok[rows, s["edit_pos"]].mean(), "cf-copy": 100 * cf.mean(), "acc rand+cf": 100 * ok.mean(),
            "n": N}


def verdict(d, rule):
    if d is None or rule is None:
        return ""
    lo, hi = d["ci"]
    agree = all((v > 0) == (d["mean"] > 0) for v in d["per_seed"].values())
    if rule == "up":
        return "holds" if lo > 0 and agree else "does not hold"
    if rule == "down":
        return "holds" if hi < 0 and agree else "does not hold"
    if lo > -MARGIN:
        return "kept"
    return "lost" if hi < -MARGIN and all(v < -MARGIN for v in d["per_seed"].values()) else "not separated"


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep", help="a sweep.py --out folder with a --counterfactuals axis")
    p.add_argument("--out", required=True, help="markdown report")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    runs = os.path.join(args.sweep, "runs")
    if not os.path.isdir(runs):
        raise UserError(f"no runs/ folder in {args.sweep}")
    cells = sorted({re.sub(r"-s\d+\.inputs\.json$", "", f) for f in os.listdir(runs) if f.endswith(".inputs.json")})
    pairs = [(c, re.sub(r"-g[0-9.]+(?=-|$)", "", c)) for c in cells if re.search(r"-g[0-9.]+(?=-|$)", c)]
    pairs = [(c, t) for c, t in pairs if t in cells]
    if not pairs:
        raise UserError(f"{args.sweep}: no cell with gamma > 0 next to its gamma = 0 twin")
    lines = [f"# Counterfactual near examples in training (gamma): paired against gamma = 0\n",
             f"Sweep `{os.path.relpath(args.sweep)}`; each row: cell with gamma > 0 minus its gamma = 0 twin, "
             "mean over seeds and test inputs, 95 % CI clustered by test input; per-seed differences in "
             f"brackets. Rules in `studies/synthetic/synthetic_relevance.py` (margin for \"kept\": {MARGIN:g} points).\n"]
    c = copier(args.sweep)
    lines += [f"Copier on the same {c['n']} random+counterfactual inputs: edit-ok {c['edit-ok']:.1f}, cf-copy "
              f"{c['cf-copy']:.1f}, acceptance {c['acc rand+cf']:.1f} (the trivial baseline).\n"]
    for cell, twin in pairs:
        A, B = load(runs, cell), load(runs, twin)
        lines += [f"\n## `{cell}` − `{twin}` (seeds {', '.join(sorted(set(A) & set(B), key=int))})\n",
                  "| metric | gamma > 0 | gamma = 0 | difference [95 % CI] | per seed | verdict |", "|---|---|---|---|---|---|"]
        for key, name, rule in METRICS:
            d = compare(A, B, key)
            if d is None:
                continue
            seeds = ", ".join(f"{v:+.1f}" for v in d["per_seed"].values())
            lines.append(f"| {name} | {d['a']:.1f} | {d['b']:.1f} | {stats.fmt(d)} | {seeds} | {verdict(d, rule)} |")
    lines += icl_table(runs, cells)
    write_text_atomic(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    run_main(main)
