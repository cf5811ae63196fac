"""G1 and G2 of deployment with feedback (SPEC "Deployment with feedback"), from finished deploy.py folders.

    python studies/deploy/deploy_report.py --g1 deploy/c-nearest deploy/c-p0 --g2 deploy/c-nearest deploy/zero-zero \\
        --out deploy/report.md

--g1 FEEDBACK P0: G1 = the nearest-policy score with feedback − the same model's score with P_0 only
(deploy.py --feedback off), on the stream items whose best feedback neighbour (in the feedback run's
P_t) is in the high nsim bin. --g2 MODEL ZERO: G2 = the model's score on low-bin items − the
zero-regime model's zero-prompt score (deploy.py --policy zero) on the same items. Each side may be
several folders, comma-separated (seeds): rows are paired by (seed, stream item) and the 95 % CI is a
bootstrap over stream items (stats.paired_diff, clusters = items). Bins: --bins a,b, else the edges
in the first FEEDBACK / MODEL folder's summary.json. Both flags may repeat. Writes --out (markdown)
and its .json twin atomically.
"""
import argparse

from contrastive_context import deployment as dp
from contrastive_context import evaluation as ev
from contrastive_context.common import (UserError, check_output_path, print_config, run_main,
                                        write_json_atomic, write_text_atomic)
from contrastive_context.outputs import check_out_not_input
from contrastive_context.stats import fmt


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--g1", nargs=2, action="append", default=[], metavar=("FEEDBACK", "P0"))
    p.add_argument("--g2", nargs=2, action="append", default=[], metavar=("MODEL", "ZERO"))
    p.add_argument("--bins", default=None, help="fixed inner edges 'a,b' (default: the first folder's edges)")
    p.add_argument("--out", required=True, help="markdown report (and OUT.json)")
    return p


def _runs(spec):
    return [(d, *dp.read_folder(d)[:2]) for d in spec.split(",") if d]


def main(argv=None):
    args = build_parser().parse_args(argv)
    print_config(args, "deploy report")
    if not args.g1 and not args.g2:
        raise UserError("give at least one --g1 FEEDBACK P0 or --g2 MODEL ZERO")
    folders = [d for pair in args.g1 + args.g2 for s in pair for d in s.split(",")]
    for path in (args.out, args.out + ".json"):
        check_output_path(path)
        check_out_not_input(path, folders)
    fixed = ev.parse_bins(args.bins) if args.bins else None
    lines, result = ["# Deployment with feedback: G1 and G2", "",
                     "Paired differences on the same stream items, mean [95% CI, bootstrap over items].", "",
                     "| claim | model run | reference run | bin edges | n items | difference | wins / losses |",
                     "|---|---|---|---|---|---|---|"], []
    for claim, pairs, fn in (("G1", args.g1, dp.g1), ("G2", args.g2, dp.g2)):
        for a, b in pairs:
            ra, rb = _runs(a), _runs(b)
            edges = ev.bin_edges([], fixed) if fixed else dp.read_folder(ra[0][0])[2]["bin_edges"]
            d = fn(ra, rb, edges)
            result.append({"claim": claim, "model": a, "reference": b, "bin_edges": edges, **d})
            lines.append(f"| {claim} | {a} | {b} | {edges[1]:.3f}, {edges[2]:.3f} | {d['n']} | {fmt(d)} | "
                         f"{d['wins']} / {d['losses']} |")
    write_json_atomic(args.out + ".json", result)
    write_text_atomic(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    run_main(main)
