"""Does a model switch by relevance? Scores of the random+counterfactual evaluation (evaluate.py,
counterfactual.py) per model, paired differences, the seed-noise rule and a verdict per claim.

    python studies/tools/relevance.py results/mt/eval_cf --eval-root results/mt/eval --ref contrastive \\
        --out results/mt/relevance.md

CF_ROOT holds one evaluation folder per label (`<regime>` and `<regime>@s1` for a second seed, `base`,
`copier`). Per instance: edit-ok (the edited span is right for x), cf-copy (the answer carries the
counterfactual's span), and the task score against y. With --eval-root (the study's evaluation of
the other context types), "shared-part gain" = score under random+counterfactual − score under
random contexts for the same input and model: positive when the model reuses what x and x~ share.

Rules (stated before reading the numbers, the same as the studies' results.md):
  * seed noise of a column = the largest |seed 0 − seed 1| over the regimes with two seeds;
  * a difference "holds" when its 95 % CI (cluster bootstrap over test inputs; seeds paired by slot)
    excludes 0 AND |mean| exceeds that column's seed noise;
  * a model "switches by relevance" when, on the same instances, (1) it uses the near-duplicate: its
    shared-part gain is > 0 (CI excluding 0), and (2) it checks it: edit-ok − cf-copy > 0 (paired per
    instance, CI excluding 0) -- it fixes the edit more often than it copies the counterfactual's
    span. The copier passes (1) and fails (2) by construction; a model that ignores every context
    fails (1).
"""
import argparse
import os
import sys
from collections import OrderedDict

from contrastive_context import stats
from contrastive_context.counterfactual import judge
from contrastive_context.common import UserError, print_config, run_main, write_text_atomic
from contrastive_context.evaluation import read_eval_folder

COLS = ("edit_ok", "cf_copy", "edit_ok_random", "harm", "score", "gain")
NAMES = {"edit_ok": "edit-ok %", "cf_copy": "cf-copy %", "edit_ok_random": "span right under random %",
         "harm": "edit-ok − span right under random", "score": "task score", "gain": "shared-part gain"}


def load(root, eval_root=None, kinds=None):
    """OrderedDict label -> [per-seed {(id): row}] with edit_ok/cf_copy in percent and `gain` when the
    random-context score of the same input is known; kinds: keep only instances whose edit is of one of
    these kinds (the edit's "kind": e.g. verb, preposition, noun of the held-out MT family)."""
    if not os.path.isdir(root):
        raise UserError(f"folder not found: {root}")
    groups = OrderedDict()
    for name in sorted(os.listdir(root)):
        d = os.path.join(root, name)
        if not os.path.isfile(os.path.join(d, "summary.json")):
            continue
        rows = [r for r in read_eval_folder(d)[0] if r["context_type"] == "random+counterfactual"]
        if not rows or any("edit_ok" not in r for r in rows):
            raise UserError(f"{d}: no scored random+counterfactual rows")
        if kinds:
            rows = [r for r in rows if r["edit"].get("kind") in kinds]
            if not rows:
                raise UserError(f"{d}: no random+counterfactual instance with an edit of kind {', '.join(kinds)}")
        rnd = {}
        if eval_root and os.path.isfile(os.path.join(eval_root, name, "predictions.jsonl")):
            rnd = {r["id"]: r for r in read_eval_folder(os.path.join(eval_root, name))[0]
                   if r["context_type"] == "random"}
        by_id = {}
        for r in rows:
            cf = {"x": r.get("cf_x"), "y": r["cf_reference"], "edit": r["edit"]}
            known = None
            if r["id"] in rnd:   # is the span right when no near-duplicate is in the prompt?
                known = 100.0 * judge(None, rnd[r["id"]]["prediction"], {"y": r["reference"]}, cf)["edit_ok"]
            by_id[r["id"]] = {"edit_ok": 100.0 * r["edit_ok"], "cf_copy": 100.0 * r["cf_copy"], "score": r["score"],
                              "gain": r["score"] - rnd[r["id"]]["score"] if r["id"] in rnd else None,
                              "edit_ok_random": known, "harm": None if known is None else 100.0 * r["edit_ok"] - known,
                              "prediction": r["prediction"], "reference": r["reference"],
                              "cf_reference": r["cf_reference"], "cf_x": r.get("cf_x")}
        groups.setdefault(name.split("@s")[0], []).append((name, by_id))
    if not groups:
        raise UserError(f"{root}: no evaluation folders with summary.json")
    return groups


def column(seeds, col):
    vals, ids = [], []
    for _, by_id in seeds:
        for i, r in by_id.items():
            if r[col] is not None:
                vals.append(r[col])
                ids.append(i)
    return vals, ids


def summary(seeds, col, seed=0):
    vals, ids = column(seeds, col)
    if not vals:
        return None
    return {"mean": sum(vals) / len(vals), "ci": stats.cluster_bootstrap_ci(vals, ids, seed=seed), "n": len(vals)}


def paired(a_seeds, b_seeds, col, seed=0):
    """a − b over instances matched by (seed slot, input); a single-folder label pairs with every slot; two
    labels with several seeds each pair over the seed slots both have (a third seed of one of them is left out)."""
    a, b, ids = [], [], []
    multi = [len(s) for s in (a_seeds, b_seeds) if len(s) > 1]
    for slot in range(min(multi) if multi else 1):
        ra = a_seeds[slot if len(a_seeds) > 1 else 0][1]
        rb = b_seeds[slot if len(b_seeds) > 1 else 0][1]
        for i, r in ra.items():
            if i in rb and r[col] is not None and rb[i][col] is not None:
                a.append(r[col])
                b.append(rb[i][col])
                ids.append(i)
    return stats.paired_diff(a, b, ids, seed=seed) if a else None


def within(seeds, seed=0):
    """edit_ok − cf_copy per instance (the model's own switch score)."""
    a, b = column(seeds, "edit_ok"), column(seeds, "cf_copy")
    return stats.paired_diff(a[0], b[0], a[1], seed=seed)


def seed_noise(groups):
    out = {}
    for col in COLS:
        gaps = []
        for seeds in groups.values():
            if len(seeds) >= 2:
                m = [summary([s], col) for s in seeds[:2]]
                if all(x is not None for x in m):
                    gaps.append(abs(m[0]["mean"] - m[1]["mean"]))
        out[col] = max(gaps) if gaps else 0.0
    return out


def holds(d, noise):
    if not d or not d["ci"]:
        return False
    return (d["ci"][0] > 0 or d["ci"][1] < 0) and abs(d["mean"]) > noise


def report(groups, ref, noise, cmd, seed=0):
    labels = list(groups)
    lines = [f"`{cmd}`", "", "Per model (seeds pooled): mean [95 % CI clustered by test input], n instances. "
             "edit-ok: the edited span is right for x; cf-copy: the answer carries the counterfactual's span; "
             "task score against y; shared-part gain: score under random+counterfactual − under random contexts "
             "(same input; inputs of the study's evaluation only); span right under random: edit-ok of the same model's "
             "answer under random contexts (the span known in the weights), and the paired change.", "",
             "| model | seeds | n | " + " | ".join(NAMES[c] for c in COLS) + " | edit-ok − cf-copy | switches by relevance |",
             "|---" * (5 + len(COLS)) + "|"]
    for label in labels:
        seeds = groups[label]
        w = within(seeds, seed)
        cells = [stats.fmt(summary(seeds, c, seed)) for c in COLS]
        n = len(column(seeds, "edit_ok")[0])
        g = summary(seeds, "gain", seed)
        uses = bool(g and g["ci"] and g["ci"][0] > 0)
        checks = holds(w, 0.0) and w["mean"] > 0
        verdict = "yes" if uses and checks else "no (" + ", ".join(
            ([] if uses else ["no shared-part gain" if g else "gain unknown"]) + ([] if checks else ["edit-ok not above cf-copy"])) + ")"
        lines.append(f"| {label} | {len(seeds)} | {n} | " + " | ".join(cells) + f" | {stats.fmt(w)} | {verdict} |")
    lines += ["", "Seed noise (largest |seed 0 − seed 1|): "
              + ", ".join(f"{NAMES[c]} {noise[c]:.1f}" for c in COLS) + ".", ""]
    if ref in groups:
        lines += [f"Paired differences {ref} − other (seed slots paired; CI clustered by input). "
                  "**bold** = holds (CI excludes 0 and |mean| > seed noise).", "",
                  "| other | " + " | ".join(NAMES[c] for c in COLS) + " |", "|---" * (1 + len(COLS)) + "|"]
        for label in labels:
            if label == ref:
                continue
            cells = []
            for c in COLS:
                d = paired(groups[ref], groups[label], c, seed)
                s = stats.fmt(d) if d else "—"
                cells.append(f"**{s}**" if holds(d, noise[c]) else s)
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cf_root", help="folder of evaluate.py outputs with random+counterfactual, one per label")
    p.add_argument("--eval-root", default=None, help="the study's evaluation folders (same labels) for the "
                   "shared-part gain")
    p.add_argument("--ref", default="contrastive", help="label whose paired differences are reported")
    p.add_argument("--edit-kinds", default=None, type=lambda v: [k for k in v.split(",") if k],
                   help="comma-separated edit kinds to keep (e.g. verb,preposition: the held-out MT family's kinds "
                        "a --cf-train-family train+heldout-noun model never trained on); default: every instance")
    p.add_argument("--show", type=int, default=0, help="also print N raw predictions of --ref (read them)")
    p.add_argument("--out", required=True, help="markdown report")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    print_config(args, "relevance")
    groups = load(args.cf_root, args.eval_root, args.edit_kinds)
    noise = seed_noise(groups)
    cmd = "python studies/tools/relevance.py " + " ".join(argv if argv is not None else sys.argv[1:])
    md = report(groups, args.ref, noise, cmd)
    write_text_atomic(args.out, md)
    print(md, flush=True)
    if args.show and args.ref in groups:
        name, by_id = groups[args.ref][0]
        for i, (k, r) in enumerate(by_id.items()):
            if i >= args.show:
                break
            print(f"[{name} {k}] edit_ok={r['edit_ok']:.0f} cf_copy={r['cf_copy']:.0f}\n  pred: {r['prediction']}\n"
                  f"  gold: {r['reference']}\n  cf-y: {r['cf_reference']}", flush=True)


if __name__ == "__main__":
    run_main(main)
