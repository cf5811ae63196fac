"""Paired differences of two regime cells of a finished sweep on any per-input metric.

    python studies/synthetic/synthetic_pairs.py results/synthetic/default contrastive-a0.3-b0.2-r0.5-R0-z0-F0.3 \\
        random-z0-F0.3 --metrics acc_zero,acc_random

Pairs seed s of cell A with seed s of cell B (same model initialisation, see sweep.py) and each test
input with itself (runs/<cell>-s<seed>.inputs.json); 95 % CI clustered by test input (stats.paired_diff).
"""
import argparse
import json
import os

from contrastive_context import stats
from contrastive_context.common import UserError, run_main


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep", help="a sweep.py --out folder")
    p.add_argument("a", help="cell A (the reference)")
    p.add_argument("b", help="cell B")
    p.add_argument("--metrics", default="acc_zero", help="comma-separated per-input metrics")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    runs = os.path.join(args.sweep, "runs")

    def load(cell):
        out = {}
        for f in sorted(os.listdir(runs)):
            if f.startswith(cell + "-s") and f.endswith(".inputs.json"):
                with open(os.path.join(runs, f), encoding="utf-8") as fh:
                    out[f[len(cell) + 2:-len(".inputs.json")]] = json.load(fh)
        if not out:
            raise UserError(f"no per-input files of cell {cell} in {runs}")
        return out
    A, B = load(args.a), load(args.b)
    seeds = sorted(set(A) & set(B), key=int)
    for m in args.metrics.split(","):
        a, b, ids = [], [], []
        for s in seeds:
            for i, (u, v) in enumerate(zip(A[s][m], B[s][m])):
                if u is not None and v is not None:
                    a.append(u)
                    b.append(v)
                    ids.append(i)
        d = stats.paired_diff(a, b, ids)
        print(f"{m}: {args.a} − {args.b} = {stats.fmt(d)} (seeds {','.join(seeds)}; n {d['n']}; "
              f"A {sum(a) / len(a):.1f}, B {sum(b) / len(b):.1f})", flush=True)


if __name__ == "__main__":
    run_main(main)
