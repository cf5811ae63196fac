"""How often a model's answer copies a label from its context, per context type.

    python studies/tools/context_use.py EVAL_DIR... --labels base random contrastive \\
        --task mt --data DIR --max-pool 1000 --paraphrases PARA.jsonl --out context_use.md

For every prediction of evaluate.py (EVAL/predictions.jsonl) the script finds the context
example whose label is closest to the prediction (sentence chrF) and counts a *copy* when that
chrF is >= --threshold (default 90). Under `random` contexts a copy is a misuse of an irrelevant
example; under `random+paraphrase` the paraphrase carries the test input's own reference, so a
copy of it is the intended use of a relevant example. The table also gives the share of
predictions that reproduce the reference itself (chrF >= threshold) for comparison, and a second
table, over every context type including zero, of answers that are no answer: empty, or the test
input copied back (paraphrases.is_no_answer, as the IWL probe's zero_fail) -- the format collapse that
makes a zero-prompt score (and the IWL probe) low for reasons unrelated to what the weights know.
For a task with a checkable output format (semparse: a bracketed logical form) a third table gives
the share of answers in that format, whatever their content.
"""
import argparse

from contrastive_context import evaluation
from contrastive_context.common import (UserError, check_output_path, print_config, run_main,
                                        write_text_atomic)
from contrastive_context.config import finite_float
from contrastive_context.outputs import check_out_not_input
from contrastive_context.paraphrases import is_no_answer, load_paraphrases
from contrastive_context.tasks import add_task_args, task_from_args

TYPES = [t for t in evaluation.CONTEXT_TYPES if t not in ("zero", "random+counterfactual")]  # a context of k examples
PREDICTION_FIELDS = {"id": str, "context_type": str, "prediction": str, "context": list, "score": float}


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_task_args(p)
    p.add_argument("evals", nargs="+", help="evaluate.py output folders")
    p.add_argument("--labels", nargs="+", required=True)
    p.add_argument("--paraphrases", default=None, help="the paraphrase file the evaluation used")
    p.add_argument("--threshold", type=finite_float(0, 100, lo_open=True), default=90.0,
                   help="chrF (0-100] from which an answer counts as a copy of a label (default 90)")
    p.add_argument("--out", required=True)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if len(args.labels) != len(args.evals):
        raise UserError(f"{len(args.evals)} folders but {len(args.labels)} labels")
    check_output_path(args.out)
    check_out_not_input(args.out, [*args.evals, args.data, args.paraphrases])
    # a folder evaluate.py did not finish (or that changed since), predictions that no longer match their
    # sidecar, rows without an id, a string prediction, a list of context ids or a finite score: one error line
    evals = [evaluation.read_eval_folder(d, types=PREDICTION_FIELDS, need_summary=False) for d in args.evals]
    for d, (rows, _, _) in zip(args.evals, evals):
        for n, r in enumerate(rows, 1):
            if not all(isinstance(c, str) for c in r["context"]):
                raise UserError(f"{d}/predictions.jsonl:{n}: 'context' must be a list of example ids")
    print_config(args, "context_use")
    import sacrebleu
    task = task_from_args(args)
    by_id = {e["id"]: e for e in task.pool + [e for t in task.tests.values() for e in t]}
    if args.paraphrases:
        for exs in load_paraphrases(args.paraphrases, task).values():
            by_id.update({e["id"]: e for e in exs})
    acc, fail, form = {}, {}, {}
    for label, d, (rows, _, _) in zip(args.labels, args.evals, evals):
        for r in rows:
            if r["id"] not in by_id:
                raise UserError(f"{d}: test input {r['id']} not found (wrong task flags?)")
            f = fail.setdefault((label, r["context_type"]), [0, 0])
            f[0] += 1
            f[1] += is_no_answer(r["prediction"], by_id[r["id"]]["x"])
            ok = task.well_formed(r["prediction"])
            if ok is not None:
                w = form.setdefault((label, r["context_type"]), [0, 0])
                w[0], w[1] = w[0] + 1, w[1] + ok
            if r["context_type"] not in TYPES:
                continue
            missing = [c for c in r["context"] if c not in by_id]
            if missing:
                raise UserError(f"{d}: context id {missing[0]} not found (wrong --paraphrases or task flags?)")
            best = max(sacrebleu.sentence_chrf(r["prediction"], [by_id[c]["y"]]).score for c in r["context"])
            a = acc.setdefault((label, r["context_type"]), [0, 0, 0])
            a[0] += 1
            a[1] += best >= args.threshold
            a[2] += r["score"] >= args.threshold
    labels = list(dict.fromkeys(args.labels))
    lines = [f"% of predictions that copy a context label (chrF >= {args.threshold:g} to some context example's "
             "label) / that reproduce the reference (chrF >= the same threshold); n instances per cell", "",
             "| model | " + " | ".join(TYPES) + " |", "|---" * (len(TYPES) + 1) + "|"]
    for label in labels:
        cells = []
        for t in TYPES:
            n, c, ref = acc.get((label, t), [0, 0, 0])
            cells.append(f"{100 * c / n:.1f} / {100 * ref / n:.1f} ({n})" if n else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    types = ["zero", *TYPES]
    tables = [("no answer: empty, or the test input copied back (equal up to casing and punctuation)", fail)]
    if form:
        tables.append((f"in the output format of task {task.name} (well-formed, right or wrong)", form))
    for what, counts in tables:
        lines += ["", f"% of predictions that are {what}; n instances per cell", "",
                  "| model | " + " | ".join(types) + " |", "|---" * (len(types) + 1) + "|"]
        for label in labels:
            cells = []
            for t in types:
                n, c = counts.get((label, t), [0, 0])
                cells.append(f"{100 * c / n:.1f} ({n})" if n else "-")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    write_text_atomic(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    run_main(main)
