"""Compare evaluation folders (evaluate.py --out): the paper's Figure 3 and paired differences.

    python figure3.py evals/base evals/random evals/similar evals/contrastive \\
        --labels base random similar contrastive --ref contrastive --out figure3.png

Several folders may share a label (e.g. one per training seed): their rows are pooled, and a
paired difference pairs the i-th folder of one label with the i-th of the other (a label with a
single folder, e.g. the untuned base, pairs with every seed).

A folder evaluate.py wrote is read only when its cc_output.json records it as finished and its
files unchanged since (an interrupted evaluation is refused); folders without that file (older
ones, or made by hand) are read as they are. predictions.jsonl must match its .meta.json sidecar
(sha256), hold rows, and name only known context types. The folders must share task, metric (no
chrF beside exact match), test split and test set (summary.json's test_fp, and the same reference
for every shared test id). --out and --table must not lie inside an input folder.

Writes the PNG ((a) mean score per context type, (b) per shared max_nsim bin over all non-zero context
types; one bar per label with its 95% CI, the metric with its unit, the caption under the panels) and a
markdown table (--table, default: beside the PNG) with, in this order:
  1. the mean score per context type and label (95% CI clustered by test input);
  2. paired differences --ref minus every other label, per context type: rows paired by
     (seed slot, test input, context type), 95% CI from a cluster bootstrap over test inputs
     (stats.paired_diff), with wins/losses;
  3. per max_nsim bin (tertiles of the union of all folders, or --bins a,b): over all non-zero
     context types, and within random+nearest (natural neighbours only), so that bins do not
     merely re-sort context types.
"""
import argparse
import os
import sys
import textwrap
from collections import OrderedDict

from contrastive_context import evaluation as ev
from contrastive_context import stats
from contrastive_context.common import (UserError, atomic_path, check_output_path, print_config, run_main,
                                        write_text_atomic)
from contrastive_context.config import SEED
from contrastive_context.outputs import check_out_not_input


def load_eval_dir(d):
    """(rows, summary, sidecar) of an evaluation folder, checked (evaluation.read_eval_folder): finished and
    unchanged (cc_output.json; folders without one, older or hand-made, are read as they are), predictions
    matching their sidecar's sha256, not empty, known context types, finite scores."""
    return ev.read_eval_folder(d)


def compare(dirs, labels, fixed_bins=None, seed=0, ref=None):
    """Everything the table and figure need, from folders grouped by label (refused when the folders
    differ in task, metric or test set: evaluation.check_comparable)."""
    loaded = [load_eval_dir(d) for d in dirs]
    ev.check_comparable([(d, *x) for d, x in zip(dirs, loaded)])
    groups = OrderedDict()
    for (rows, summ, _), label in zip(loaded, labels):
        groups.setdefault(label, []).append((rows, summ))
    ctx = {l: [r for rows, _ in g for r in rows if r["context_type"] != "zero"] for l, g in groups.items()}
    keys = [sorted((r["id"], r["context_type"]) for r in rows if r["context_type"] != "zero")
            for g in groups.values() for rows, _ in g]
    edges = ev.bin_edges([r["max_nsim"] for rs in ctx.values() for r in rs], fixed_bins)
    models = []
    for label, g in groups.items():
        rows = [r for rs, _ in g for r in rs]
        types = list(dict.fromkeys(r["context_type"] for r in rows))
        by_type = {t: stats.summarize([r["score"] for r in rows if r["context_type"] == t], seed=seed) for t in types}
        for t in types:  # CIs clustered by test input (several seeds of one input move together)
            sel = [r for r in rows if r["context_type"] == t]
            by_type[t]["ci"] = stats.cluster_bootstrap_ci([r["score"] for r in sel], [r["id"] for r in sel], seed=seed)
        models.append({"label": label, "n_folders": len(g), "metric": g[0][1].get("metric"),
                       "bins": ev.bin_summary(ctx[label], edges, seed=seed),
                       "bins_nearest": ev.bin_summary([r for r in ctx[label] if r["context_type"] == "random+nearest"],
                                                      edges, seed=seed),
                       "by_context_type": by_type})
    diffs = []
    if ref is not None:
        if ref not in groups:
            raise UserError(f"--ref {ref} is not one of the labels ({', '.join(groups)})")
        for other in groups:
            if other != ref:
                diffs.append({"ref": ref, "other": other, "by_context_type": paired(groups[ref], groups[other], seed)})
    return {"edges": edges, "same_instances": all(k == keys[0] for k in keys), "models": models, "diffs": diffs,
            "task": loaded[0][1].get("task"), "n_inputs": len({r["id"] for rows, _, _ in loaded for r in rows})}


def paired(ref_group, other_group, seed):
    """{context type: paired_diff} of ref - other over rows matched by (seed slot, id, context type)."""
    n = max(len(ref_group), len(other_group))
    pairs = {}
    for slot in range(n):
        a_rows = ref_group[slot if len(ref_group) > 1 else 0][0]
        b_rows = other_group[slot if len(other_group) > 1 else 0][0]
        b = {(r["id"], r["context_type"]): r["score"] for r in b_rows}
        for r in a_rows:
            key = (r["id"], r["context_type"])
            if key in b:
                pairs.setdefault(r["context_type"], []).append((r["score"], b[key], r["id"]))
    return {t: stats.paired_diff([p[0] for p in ps], [p[1] for p in ps], [p[2] for p in ps], seed=seed)
            for t, ps in pairs.items()}


def compare_markdown(result, bins_method):
    e = result["edges"]
    ms = result["models"]
    metrics = sorted({m["metric"] for m in ms if m["metric"]})
    types = list(dict.fromkeys(t for m in ms for t in m["by_context_type"]))
    lines = [f"Metric: {', '.join(metrics)} (percent); mean [95% CI clustered by test input] (n rows).", "",
             "### 1. By context type", "", "| model | " + " | ".join(types) + " |", "|---" * (1 + len(types)) + "|"]
    for m in ms:
        cells = [f"{stats.fmt(m['by_context_type'][t])} ({m['by_context_type'][t]['n']})"
                 if t in m["by_context_type"] else "—" for t in types]
        lines.append(f"| {m['label']} (×{m['n_folders']}) | " + " | ".join(cells) + " |")
    if result["diffs"]:
        lines += ["", f"### 2. Paired differences {result['diffs'][0]['ref']} − other "
                  "(same test input, context and seed; CI: cluster bootstrap over test inputs; wins/losses)", "",
                  "| other | " + " | ".join(types) + " |", "|---" * (1 + len(types)) + "|"]
        for d in result["diffs"]:
            cells = []
            for t in types:
                s = d["by_context_type"].get(t)
                cells.append(f"{stats.fmt(s)} ({s['wins']}/{s['losses']})" if s else "—")
            lines.append(f"| {d['other']} | " + " | ".join(cells) + " |")
    lines += ["", f"### 3. By max_nsim bin ({bins_method}: low [0, {e[1]:.3f}), medium [{e[1]:.3f}, {e[2]:.3f}), "
              f"high [{e[2]:.3f}, 1]; CI: bootstrap over instances, not clustered)", "", "| model | all: low | all: medium | all: high | "
              "random+nearest: low | random+nearest: medium | random+nearest: high |", "|---" * 7 + "|"]
    for m in ms:
        cells = [f"{stats.fmt(b)} ({b['n']})" for b in m["bins"] + m["bins_nearest"]]
        lines.append(f"| {m['label']} | " + " | ".join(cells) + " |")
    if not result["same_instances"]:
        lines += ["", "Warning: the folders were not evaluated on the same (id, context type) instances."]
    return "\n".join(lines) + "\n"


METRIC_LABELS = {"chrf": "chrF (0–100)", "bleu": "BLEU (0–100)", "exact_match": "exact match (%)",
                 "execution_accuracy": "execution accuracy (%)", "chunk_acceptance": "chunks accepted (%)"}
CAPTION = ("Bars: mean score over the test instances (several folders of one label, e.g. seeds, pooled; ×n = folders). "
           "Error bars: 95 % CI; by context type: bootstrap clustered by test input; by bin: bootstrap over "
           "instances. Neither CI includes seed-to-seed variation. nsim: BM25 similarity of a context example to the "
           "test input, normalised to [0, 1]; bins: tertiles of the max over the context, all non-zero context types.")


def metric_label(result):
    """The y-axis label of the figure: the metric with its unit (e.g. 'chrF (0–100)')."""
    metrics = sorted({m["metric"] for m in result["models"] if m["metric"]})
    return ", ".join(METRIC_LABELS.get(m, f"{m} (percent)") for m in metrics) or "score (percent)"


def _bars(ax, ms, groups, stats_of, colors):
    """Grouped bars with 95 % CI error bars: one group per x position, one bar per model."""
    width = 0.84 / max(len(ms), 1)
    for j, m in enumerate(ms):
        xs, means, lo, hi = [], [], [], []
        for g, key in enumerate(groups):
            s = stats_of(m, key)
            if not s or s.get("mean") is None:
                continue
            xs.append(g + (j - (len(ms) - 1) / 2) * width)
            means.append(s["mean"])
            lo.append(max(0.0, s["mean"] - s["ci"][0]) if s.get("ci") else 0.0)
            hi.append(max(0.0, s["ci"][1] - s["mean"]) if s.get("ci") else 0.0)
        copier = m["label"] == ev.COPIER
        ax.bar(xs, means, width, yerr=[lo, hi], capsize=2, color=colors[j], edgecolor="k" if copier else "none",
               linewidth=0.5, hatch="//" if copier else None, error_kw={"elinewidth": 0.8},
               label=f"{m['label']}" + (" (no weights)" if copier else "") + f" ×{m['n_folders']}")
        for x, v in zip(xs, means):
            if v < 0.5:   # a bar of height 0 is invisible: say that it is there, and 0
                ax.text(x, 0.8, "0", ha="center", va="bottom", fontsize=6, color=colors[j])
    ax.set_xticks(range(len(groups)))
    ax.set_xlim(-0.5, len(groups) - 0.5)
    ax.set_ylim(0, 105)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def draw_compare(result, title=None):
    """The figure (returned, not saved): (a) mean score per context type and label, (b) per max_nsim bin
    (all non-zero context types), one shared y axis (the metric, 0–100), a legend above, the caption below."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ms = result["models"]
    types = list(dict.fromkeys(t for m in ms for t in m["by_context_type"]))
    n_bins = len(ev.BIN_NAMES)
    cmap = plt.get_cmap("tab10" if len(ms) <= 10 else "tab20")
    colors = [cmap(j % cmap.N) for j in range(len(ms))]
    width = max(10.0, 3.8 + 0.16 * len(ms) * (len(types) + n_bins))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(width, 5.6), sharey=True, layout="constrained",
                                   gridspec_kw={"width_ratios": [max(len(types), 1), n_bins]})
    _bars(ax1, ms, types, lambda m, t: m["by_context_type"].get(t), colors)
    ax1.set_xticklabels([t.replace("+", "+\n") for t in types])
    ax1.set_xlabel("context type at test time")
    ax1.set_ylabel(metric_label(result))
    ax1.set_title("(a) By context type\n(zero = no examples in the prompt)")
    _bars(ax2, ms, range(n_bins), lambda m, b: m["bins"][b], colors)
    e = result["edges"]
    ax2.set_xticklabels([f"low\n< {e[1]:.2f}", f"medium\n{e[1]:.2f}–{e[2]:.2f}", f"high\n≥ {e[2]:.2f}"])
    ax2.set_xlabel("max nsim of the context to the test input (bins)")
    ax2.set_title("(b) By similarity bin\n(all non-zero context types)")
    ax2.tick_params(labelleft=True)
    task = f"{result['task']}: " if result.get("task") else ""
    fig.suptitle(title or f"{task}{metric_label(result)} by context type and by context similarity "
                 f"({result.get('n_inputs', '?')} test inputs)")
    handles, labels = ax1.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8, title="label ×folders", title_fontsize=8)
    fig.supxlabel(textwrap.fill(CAPTION, width=int(width * 15)), fontsize=7.5, x=0.01, ha="left", color="0.25")
    return fig


def plot_compare(result, path, title=None):
    import matplotlib.pyplot as plt
    fig = draw_compare(result, title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=150)
    plt.close(fig)


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("dirs", nargs="+", help="evaluation folders (evaluate.py --out)")
    p.add_argument("--labels", nargs="+", default=None, help="one label per folder (default: folder names); "
                   "repeat a label for several seeds of one model")
    p.add_argument("--ref", default=None, help="label whose paired differences to every other label are reported")
    p.add_argument("--out", required=True, help="PNG figure")
    p.add_argument("--table", default=None, help="markdown table (default: next to the figure, .md)")
    p.add_argument("--bins", default="tertiles", help="'tertiles' over the union of all folders, or 'a,b'")
    p.add_argument("--title", default=None)
    p.add_argument("--seed", type=SEED, default=0, help="bootstrap seed")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    labels = args.labels or [os.path.basename(os.path.normpath(d)) for d in args.dirs]
    if len(labels) != len(args.dirs):
        raise UserError(f"--labels: got {len(labels)} labels for {len(args.dirs)} folders")
    fixed = ev.parse_bins(args.bins)
    table = args.table or os.path.splitext(args.out)[0] + ".md"
    if os.path.realpath(table) == os.path.realpath(args.out):  # the figure would replace its own table
        raise UserError(f"--table and --out are the same file ({args.out}); give the figure a .png name"
                        + ("" if args.table else " (the table goes next to it, .md)"))
    for path in (args.out, table):
        check_output_path(path)
        check_out_not_input(path, args.dirs, what="--out" if path == args.out else "--table")
    print_config(args, "figure3")
    result = compare(args.dirs, labels, fixed, args.seed, args.ref)
    if not result["same_instances"]:
        print("warning: the folders were not evaluated on the same instances; bins are still shared", file=sys.stderr)
    md = compare_markdown(result, "fixed edges" if fixed else "tertiles of the union")
    write_text_atomic(table, md)   # the table first: a figure never stands without its table
    plot_compare(result, args.out, args.title)
    print(md, flush=True)
    print(f"wrote {args.out} and {table}", flush=True)


if __name__ == "__main__":
    run_main(main)
