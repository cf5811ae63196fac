"""Score vs feedback seen on a deployment stream: one line per model, the mean score (with feedback and the
P_0-only / zero-prompt reference, dashed) per window of the stream, and the share of items with a high-nsim
neighbour in P_t.

    python studies/deploy/figure.py --root results/deploy/chat_ende --start empty \\
        --labels contrastive-cf1 contrastive zero base copier --out results/deploy/chat_empty.png

--start empty reads <model>-empty and <model>-zeroprompt (the zero-regime model's is --zero); --start train
reads <model>-nearest and <model>-p0. A model whose folders are not both finished is left out (and named).
"""
import argparse
import os

from contrastive_context import deployment as dp
from contrastive_context import evaluation as ev
from contrastive_context.common import UserError, print_config, run_main, write_json_atomic


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="folder holding the deploy folders")
    p.add_argument("--labels", nargs="+", required=True, help="model labels (folder prefixes)")
    p.add_argument("--start", choices=["train", "empty"], default="train", help="which pair of folders per model")
    p.add_argument("--zero", default="zero-zero", help="the zero-regime model's zero-policy folder (under --root)")
    p.add_argument("--window", type=int, default=50, help="stream items per point (default 50)")
    p.add_argument("--out", required=True, help="output PNG (and OUT.json with the plotted numbers)")
    return p


def _rows(root, name):
    path = os.path.join(root, name)
    return dp.read_folder(path) if os.path.isfile(os.path.join(path, "summary.json")) else None


def series(rows, window):
    """[(first t, mean score)] per window of `window` stream items."""
    out = []
    for lo in range(0, max(r["t"] for r in rows) + 1, window):
        chunk = [r["score"] for r in rows if lo <= r["t"] < lo + window]
        if chunk:
            out.append((lo, sum(chunk) / len(chunk)))
    return out


def main(argv=None):
    args = build_parser().parse_args(argv)
    print_config(args, "deploy figure")
    if args.window < 1:
        raise UserError(f"--window must be >= 1, got {args.window}")
    lines, missing = {}, []
    for m in args.labels:
        fb = _rows(args.root, f"{m}-empty" if args.start == "empty" else f"{m}-nearest")
        ref_name = (args.zero if m == args.zero.split("-")[0] else f"{m}-zeroprompt") if args.start == "empty" \
            else f"{m}-p0"
        ref = _rows(args.root, ref_name)
        if fb is None or (ref is None and m != "copier"):
            missing.append(m)
            continue
        edges = fb[2]["bin_edges"]
        high = [(t, 100.0 * v) for t, v in series([{**r, "score": float(ev.assign_bin(r["best_nsim"], edges) == 2)}
                                                     for r in fb[1]], args.window)]
        lines[m] = {"feedback": series(fb[1], args.window), "reference": series(ref[1], args.window) if ref else None,
                    "high_share": high, "metric": fb[0]["metric"]}
    if not lines:
        raise UserError(f"no model of {args.labels} has its folders finished in {args.root}")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for i, (m, d) in enumerate(lines.items()):
        c = f"C{i}"
        ax.plot(*zip(*d["feedback"]), "-o", color=c, ms=3, label=f"{m}: with feedback")
        if d["reference"]:
            ax.plot(*zip(*d["reference"]), "--", color=c, alpha=0.7,
                    label=f"{m}: " + ("zero prompt" if args.start == "empty" else "P_0 only"))
    first = next(iter(lines.values()))
    bx.plot(*zip(*first["high_share"]), "-", color="k")
    ax.set_ylabel(f"{first['metric']} per {args.window}-item window")
    ax.set_title(f"Score vs feedback seen ({os.path.basename(os.path.normpath(args.root))}, {args.start} start)")
    ax.legend(fontsize=7, ncol=2)
    bx.set_ylabel("% high-nsim")
    bx.set_xlabel("stream position t (items seen = feedback available after the delay)")
    fig.tight_layout()
    tmp = args.out + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, args.out)
    write_json_atomic(args.out + ".json", {"root": args.root, "start": args.start, "window": args.window,
                                           "models": lines, "missing": missing})
    print(f"wrote {args.out}" + (f" (not finished: {', '.join(missing)})" if missing else ""), flush=True)
    return 0


if __name__ == "__main__":
    run_main(main)
