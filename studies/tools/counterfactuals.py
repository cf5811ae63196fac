"""Write the counterfactual near-duplicates of a split as a file, with a quality report.

    python studies/tools/counterfactuals.py --task mt --data ../shared/data/multi30k --max-pool 1000 \\
        --limit 340 --out results/mt/counterfactuals.test.jsonl --report results/mt/counterfactuals.md

    python studies/tools/counterfactuals.py --family heldout --task mt --data ../shared/data/multi30k \
        --max-pool 1000 --limit 340 --out mt.heldout.jsonl --report mt.heldout.md

Rows are those evaluate.py builds for random+counterfactual (the same seeded stream
"eval-counterfactual|task|split|seed|id", so the file shows exactly what the models saw; with
--family heldout those of evaluate.py --cf-family heldout, stream "eval-counterfactual-heldout|..."):
    {"id", "x", "y", "x_cf", "y_cf", "edit": {...}}  (+ a .meta.json sidecar: task, fingerprint, sha256)
The report gives the acceptance (share of inputs with a valid edit), the kinds of edits, the
distribution of nsim(x, x~) beside that of the paraphrases (when --paraphrases is given), a leak
check (x~ never equals x, y~ never equals y, up to casing and punctuation) and 20 examples (for the
held-out family taken in turn from each kind of edit, so every kind is shown).
"""
import argparse
import os
import sys
from collections import Counter

import numpy as np

from contrastive_context import evaluation as ev
from contrastive_context import paraphrases
from contrastive_context.common import UserError, print_config, run_main, write_jsonl_atomic, write_text_atomic
from contrastive_context import config
from contrastive_context.config import number
from contrastive_context.paraphrases import is_copy
from contrastive_context.tasks import add_task_args, task_from_args


def quantile_text(v):
    q = np.quantile(np.asarray(v, dtype=np.float64), [0.1, 0.25, 0.5, 0.75, 0.9])
    return " / ".join(f"{x:.2f}" for x in q)


def kind_of(e):
    """The kind of an edit, for the count by kind: MT class, MTOP slot type (held-out: kind:class / kind:slot
    or kind:new intent), or "symbol"."""
    if e.get("family") == "heldout":
        return f"{e['kind']}:{e.get('class') or e.get('slot') or e['new']}"
    return e.get("class") or e.get("slot") or "symbol"


def spread(rows):
    """The rows taken in turn from each kind of edit (first-seen order), so a few examples show every kind."""
    by = {}
    for r in rows:
        by.setdefault(r["edit"]["kind"], []).append(r)
    out, queues = [], list(by.values())
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop(0))
    return out


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_task_args(p)
    p.add_argument("--split", default=None, help="test split (default: the task's first)")
    p.add_argument("--limit", type=number(int, 1), default=None, help="the first N inputs of the split")
    p.add_argument("--seed", type=number(int, 0), default=0, help="evaluation seed (as evaluate.py --seed)")
    p.add_argument("--paraphrases", default=None, help="paraphrase file of the same split, for the nsim comparison")
    config.add_eval_arg(p, "cf_family", "--family")
    p.add_argument("--out", required=True, help="counterfactuals JSONL")
    p.add_argument("--report", required=True, help="markdown quality report")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if os.path.abspath(args.out) == os.path.abspath(args.report):
        raise UserError("--out and --report name the same file")
    print_config(args, "counterfactuals")
    task = task_from_args(args)
    split = args.split or next(iter(task.tests))
    exs = task.test_split(split)[:args.limit]
    index = ev.pool_index(task)
    rows, nsim, kinds = [], [], Counter()
    for ex in exs:
        cf = ev.eval_counterfactual(task, ex, args.seed, split, args.cf_family)
        if cf is None:
            continue
        if cf["y"] == ex["y"] or is_copy(cf["x"], ex["x"]):
            raise AssertionError(f"{ex['id']}: counterfactual equals its input or keeps its label")
        rows.append({"id": ex["id"], "x": ex["x"], "y": ex["y"], "x_cf": cf["x"], "y_cf": cf["y"], "edit": cf["edit"]})
        nsim.append(float(index.nsim(ex["x"], [cf["x"]])[0]))
        kinds[kind_of(cf["edit"])] += 1
    if not rows:
        raise UserError(f"no input of {split} has a counterfactual edit")
    meta = {"kind": "counterfactuals", "task": task.name, "task_fp": task.fingerprint(), "split": split,
            "seed": args.seed}
    heldout = args.cf_family != "train"
    if heldout:  # recorded only off the default: the training family's files stay as they were
        meta["family"] = args.cf_family
    write_jsonl_atomic(args.out, rows, meta=meta)
    title = f"# Counterfactual near-duplicates: {task.name}, {split}" + (f" (family {args.cf_family})" if heldout else "")
    lines = [title, "",
             f"`python studies/tools/counterfactuals.py {' '.join(argv if argv is not None else sys.argv[1:])}`", "",
             f"- acceptance: **{len(rows)} of {len(exs)} inputs** ({100 * len(rows) / len(exs):.0f} %) have a valid "
             "edit (a span found exactly once in x and in y; the rest are left out of random+counterfactual)",
             "- leak check: no x~ equals x up to casing/punctuation, no y~ equals y (checked for every row)",
             f"- nsim(x, x~) quantiles 10/25/50/75/90 %: {quantile_text(nsim)}"]
    if args.paraphrases:
        paras = paraphrases.load_paraphrases(args.paraphrases, task)
        pn = [float(index.nsim(ex["x"], [paras[ex["id"]][0]["x"]])[0]) for ex in exs if ex["id"] in paras]
        lines.append(f"- for scale, nsim(x, paraphrase) quantiles: {quantile_text(pn)} ({len(pn)} inputs)")
    lines += ["- edits by kind: " + ", ".join(f"{k} {n}" for k, n in kinds.most_common()), "",
              "## 20 examples", "", "| x | x~ | y | y~ |", "|---|---|---|---|"]
    for r in (spread(rows) if heldout else rows)[:20]:
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in (r["x"], r["x_cf"], r["y"], r["y_cf"])) + " |")
    write_text_atomic(args.report, "\n".join(lines) + "\n")
    print("\n".join(lines[:9]), flush=True)


if __name__ == "__main__":
    run_main(main)
