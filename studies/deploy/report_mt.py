"""The MT new-domain deployment study's report: per model, the stream score with P_0 only and with feedback,
G1 and G2 with paired CIs clustered by stream item, score vs feedback seen, and the verdicts by the rule below.

    python studies/deploy/report_mt.py --root results/deploy/chat_ende --zero zero-zero \\
        --labels contrastive-cf1 contrastive random zero base copier --out results/deploy/chat_ende.md

--root holds the folders `studies/deploy/run_mt.sh` writes. --start train (P_0 = the set's train split):
`<model>-nearest` (nearest policy, feedback on) and `<model>-p0` (nearest policy, --feedback off: P_0 only).
--start empty (P_0 empty, every context comes from feedback): `<model>-empty` (nearest, --pool none) and
`<model>-zeroprompt` (policy zero: with an empty P_0, "P_0 only" is the zero prompt; for the zero-regime
model it is the --zero folder). Both starts: the --zero folder is the zero-regime model under a zero prompt
(policy zero). A model whose two folders are not both finished is listed as missing.

The rule, fixed before the numbers: a model **meets goal (1)** when G1 (feedback − P_0 only, on the items whose
best neighbour in P_t is in the high nsim bin) has a 95 % CI above 0; it **meets goal (2)** when G2 (its score
on the low-bin items − the zero-regime model's zero-prompt score on the same items) has a 95 % CI whose lower
end is above −MARGIN (--margin; non-inferiority, default 2.0 chrF points); "both" needs both. The copier and the base
model are scored by the same rule as references, not as candidates.
"""
import argparse
import os

from contrastive_context import deployment as dp
from contrastive_context import evaluation as ev
from contrastive_context.common import UserError, print_config, run_main, write_json_atomic, write_text_atomic
from contrastive_context.stats import fmt, paired_diff

MARGIN = 2.0


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="folder holding <model>-nearest, <model>-p0 and the --zero folder")
    p.add_argument("--zero", default="zero-zero", help="the zero-regime model's zero-policy folder (under --root)")
    p.add_argument("--labels", dest="models", nargs="+", required=True,
                   help="model labels (folder prefixes), in table order")
    p.add_argument("--start", choices=["train", "empty"], default="train",
                   help="train: <model>-nearest vs <model>-p0; empty: <model>-empty vs <model>-zeroprompt")
    p.add_argument("--margin", type=float, default=MARGIN,
                   help=f"goal (2)'s non-inferiority margin in metric points (default {MARGIN}, chrF)")
    p.add_argument("--source", default=None,
                   help="the source copier's folder under --root (deploy.py --model source-copier, same start): adds each "
                        "model's feedback run - the untranslated source, by bin, and the source copier's own G2")
    p.add_argument("--out", required=True, help="markdown report (and OUT.json)")
    return p


def _read(folder):
    st, rows, summary = dp.read_folder(folder)
    return folder, st, rows, summary


def _intent_accuracy(rows):
    """Percent of rows with intent_correct (MTOP's task extra), or None when the rows have none."""
    if not rows or "intent_correct" not in rows[0]:
        return None
    return 100.0 * sum(bool(r["intent_correct"]) for r in rows) / len(rows)


def _placeholder_counts(rows):
    """{"items": n with a placeholder in the reference, "intact", "dropped", "mangled"} (deployment.placeholder_check)."""
    out = {"items": 0, "intact": 0, "dropped": 0, "mangled": 0}
    for r in rows:
        c = dp.placeholder_check(r["prediction"], r["reference"])
        if c != "none":
            out["items"] += 1
            out[c] += 1
    return out


def _fmt_holders(c):
    n = max(c["items"], 1)
    return " / ".join(f"{100 * c[k] / n:.1f}" for k in ("intact", "dropped", "mangled"))


def _done(folder):
    return os.path.isfile(os.path.join(folder, "summary.json"))


def _window_diffs(fb_rows, p0_rows, width):
    p0 = {r["id"]: r["score"] for r in p0_rows}
    out = []
    for lo in range(0, len(fb_rows), width):
        chunk = [r for r in fb_rows if lo <= r["t"] < lo + width]
        out.append(sum(r["score"] - p0[r["id"]] for r in chunk) / len(chunk))
    return out


def _verdict(d, threshold):
    """'**yes**' when the CI's lower end is above threshold; 'n/a' when there are too few items for a CI."""
    if d.get("ci") is None:
        return f"n/a (n {d['n']})"
    return "**yes**" if d["ci"][0] > threshold else "no"


def _g1_vs_zero_prompt(fb, zp, edges):
    """G1 with an empty P_0: the feedback run's score - the same model's zero-prompt score, high-bin items."""
    if fb[1]["pool0_size"] != 0 or zp[1]["policy"] != "zero":
        raise UserError(f"{fb[0]} must start from an empty pool and {zp[0]} be a zero-policy run")
    if (fb[1]["model"], fb[1]["adapter_sha256"]) != (zp[1]["model"], zp[1]["adapter_sha256"]):
        raise UserError(f"{zp[0]} is of another model than {fb[0]} (G1 compares one model)")
    pairs = [(a, b, i) for a, b, i in dp._pairs([fb[:3]], [zp[:3]], "G1") if ev.assign_bin(a["best_nsim"], edges) == 2]
    return paired_diff([a["score"] for a, _, _ in pairs], [b["score"] for _, b, _ in pairs], [i for _, _, i in pairs])


def _bin_diff(a_run, b_run, edges, b):
    """a - b on the items whose best neighbour (in a's P_t) is in bin b (0 low, 2 high); paired by item."""
    pairs = [(x, y, i) for x, y, i in dp._pairs([a_run], [b_run], "source") if ev.assign_bin(x["best_nsim"], edges) == b]
    return paired_diff([x["score"] for x, _, _ in pairs], [y["score"] for _, y, _ in pairs], [i for _, _, i in pairs])


def _source_lines(args, fbs, zero_run, result):
    """The trivial floor of a translation: each model's feedback run against the source copier (x itself) on the
    same items, and the source copier's G2 by the same rule (a test it passes cannot show a model translates)."""
    sdir = os.path.join(args.root, args.source)
    if not _done(sdir):
        raise UserError(f"the --source folder is not finished: {sdir}")
    src = _read(sdir)
    if src[1]["model"] != ev.SOURCE_COPIER:
        raise UserError(f"--source {sdir} is a run of {src[1]['model']}, not of {ev.SOURCE_COPIER}")
    lines = ["", f"Against the untranslated source (`{args.source}`: deploy.py --model {ev.SOURCE_COPIER}, x itself, "
             f"{fmt(src[3]['overall'])} overall): feedback run − source copy, paired by item", "",
             "| model | low bin (n) | high bin (n) |", "|---|---|---|"]
    for (m, fb, edges), r in zip(fbs, result):
        lo, hi = _bin_diff(fb[:3], src[:3], edges, 0), _bin_diff(fb[:3], src[:3], edges, 2)
        lines.append(f"| {m} | {fmt(lo)} ({lo['n']}) | {fmt(hi)} ({hi['n']}) |")
        r["minus_source"] = {"low": lo, "high": hi}
    g2 = dp.g2([src[:3]], [zero_run], fbs[0][2])
    lines += ["", f"The source copier's own G2 (low bin of `{fbs[0][0]}`'s P_t, vs the zero regime's zero prompt): "
              f"{fmt(g2)} (n {g2['n']}); goal (2) by the rule: {_verdict(g2, -args.margin)}."]
    return lines, {"folder": sdir, "overall": src[3]["overall"], "g2": g2}


def main(argv=None):
    args = build_parser().parse_args(argv)
    print_config(args, "deploy MT report")
    zdir = os.path.join(args.root, args.zero)
    if not _done(zdir):
        raise UserError(f"the zero-regime folder is not finished: {zdir}")
    _, zst, zrows, zsum = _read(zdir)
    lines = [f"# Deployment with feedback: `{zst['task_config'].get('data', '').rstrip('/').split('/')[-1]}` stream", "",
             f"Stream: {zst['stream']}, {zst['T']} items in file order; "
             + (("P_0 = the set's train split" if zst["task_config"].get("task") == "mt" else "P_0 = the task's training pool")
                if args.start == "train" else "P_0 empty (every context is feedback)")
             + "; "
             f"k = {zst['k']}, delay d = {zst['delay']}, seed {zst['seed']}; metric {zst['metric']} (0-100). "
             "Mean [95 % CI]; differences are paired by stream item, CIs a bootstrap over items.", "",
             f"Rule (fixed before the numbers): goal (1) met when G1's CI is above 0; goal (2) met when G2's CI lower "
             f"end is above −{args.margin} (non-inferiority to the zero-regime model under a zero prompt: "
             f"{fmt(zsum['overall'])} overall).", "",
             "| model | " + ("P_0 only" if args.start == "train" else "zero prompt") + " | with feedback | feedback − P_0 (all items) | G1: high bin (n) | G2: low bin (n) "
             "| goal (1) | goal (2) |",
             "|---|---|---|---|---|---|---|---|"]
    result, windows, missing, intents, holders, fbs = [], [], [], [], [], []
    for m in args.models:
        if args.start == "train":
            fb_dir, p0_dir = os.path.join(args.root, f"{m}-nearest"), os.path.join(args.root, f"{m}-p0")
        else:
            fb_dir = os.path.join(args.root, f"{m}-empty")
            p0_dir = zdir if m == args.zero.split("-")[0] else os.path.join(args.root, f"{m}-zeroprompt")
        if not (_done(fb_dir) and _done(p0_dir)):
            missing.append(m)
            continue
        fb, p0 = _read(fb_dir), _read(p0_dir)
        edges = fb[3]["bin_edges"]
        g1 = dp.g1([fb[:3]], [p0[:3]], edges) if args.start == "train" else _g1_vs_zero_prompt(fb, p0, edges)
        g2 = dp.g2([fb[:3]], [(zdir, zst, zrows)], edges)
        p0s = {r["id"]: r["score"] for r in p0[2]}
        ids = [r["id"] for r in fb[2]]
        alld = paired_diff([r["score"] for r in fb[2]], [p0s[i] for i in ids], ids)
        v1, v2 = _verdict(g1, 0.0), _verdict(g2, -args.margin)
        ref = m in ("copier", "base")
        lines.append(f"| {m} | {fmt(p0[3]['overall'])} | {fmt(fb[3]['overall'])} | {fmt(alld)} | {fmt(g1)} ({g1['n']}) "
                     f"| {fmt(g2)} ({g2['n']}) | {v1}{' (reference)' * ref} | {v2}{' (reference)' * ref} |")
        fbs.append((m, fb, edges))
        w = fb[3]["window"]
        windows.append((m, _window_diffs(fb[2], p0[2], w), w))
        intents.append((m, _intent_accuracy(p0[2]), _intent_accuracy(fb[2])))
        holders.append((m, _placeholder_counts(p0[2]), _placeholder_counts(fb[2])))
        result.append({"model": m, "p0": p0[3]["overall"], "feedback": fb[3]["overall"], "feedback_minus_p0": alld,
                       "g1": g1, "g2": g2, "goal1": v1 == "**yes**", "goal2": v2 == "**yes**", "bin_edges": edges})
    if not result:
        raise UserError(f"no model of {args.models} has both its -nearest and -p0 folders finished in {args.root}")
    e = result[0]["bin_edges"]
    lines += ["", f"Bins: tertiles of the best neighbour's nsim in P_t (low < {e[1]:.3f} ≤ medium < {e[2]:.3f} ≤ high).",
              "Not run (compute): " + (", ".join(missing) if missing else "none") + ".", "",
              "Score vs feedback seen: mean (feedback − " + ("P_0 only" if args.start == "train" else "zero prompt") + ") per window of the stream (t = items seen so far)", ""]
    w = windows[0][2]
    n_win = max(len(d) for _, d, _ in windows)
    lines += ["| model | " + " | ".join(f"{i * w}–{(i + 1) * w - 1}" for i in range(n_win)) + " |",
              "|---|" + "---|" * n_win]
    for m, diffs, _ in windows:
        lines.append(f"| {m} | " + " | ".join(f"{d:+.1f}" for d in diffs) + " |")
    if all(a is not None for _, a, b in intents):
        lines += ["", "Intent accuracy (% of stream items whose predicted top intent is right)", "",
                  "| model | " + ("P_0 only" if args.start == "train" else "zero prompt") + " | with feedback |", "|---|---|---|"]
        lines += [f"| {m} | {a:.1f} | {b:.1f} |" for m, a, b in intents]
    if holders and holders[0][1]["items"]:
        ref_name = "P_0 only" if args.start == "train" else "zero prompt"
        lines += ["", f"Placeholders (`%s`-style, {holders[0][1]['items']} stream items whose reference has one): "
                  "intact / dropped / mangled, % of those items", "",
                  f"| model | {ref_name} | with feedback |", "|---|---|---|"]
        lines += [f"| {m} | {_fmt_holders(a)} | {_fmt_holders(b)} |" for m, a, b in holders]
        for r, (_, a, b) in zip(result, holders):
            r["placeholders"] = {"p0": a, "feedback": b}
    more, source = _source_lines(args, fbs, (zdir, zst, zrows), result) if args.source else ([], None)
    write_json_atomic(args.out + ".json", {"zero": zdir, "margin": args.margin, "models": result, "missing": missing,
                                           "source": source})
    lines += more
    write_text_atomic(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    run_main(main)
