"""How near are natural neighbours? nsim of the near example of One-Near training contexts and of the
random+nearest evaluation example, for a context pool of the study's size and for a larger one.

    python studies/tools/neighbours.py --task mt --data ../shared/data/multi30k --k 2 --targets 1000 \\
        --pools 1000,29000 --limit 200 --out results/mt/neighbours.md

For each pool size P (the first P pool examples; training targets are always the first --targets):
  One-Near   Contrastive (rho = 0, so every near example is a pool neighbour) contexts of the targets,
             one epoch, seed 0: the nsim of the near example = the largest nsim in the context
             (random examples have median nsim ~0.1);
  nearest    evaluate.py's random+nearest instances of the first --limit test inputs: max_nsim.
Reported: median, quartiles and the share >= 0.5 / >= 0.8, beside the paraphrases' nsim when
--paraphrases is given (the synthetic near-duplicates, for scale).
"""
import argparse
import dataclasses
import sys

import numpy as np

from contrastive_context import config
from contrastive_context import contexts
from contrastive_context import evaluation as ev
from contrastive_context import paraphrases
from contrastive_context.common import UserError, print_config, run_main, write_text_atomic
from contrastive_context.tasks import add_task_args, task_from_args


def describe(values):
    v = np.asarray(values, dtype=np.float64)
    q1, med, q3 = np.quantile(v, [0.25, 0.5, 0.75])
    return f"{med:.2f} | {q1:.2f}–{q3:.2f} | {100 * (v >= 0.5).mean():.0f} % | {100 * (v >= 0.8).mean():.0f} % | {len(v)}"


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_task_args(p)
    p.add_argument("--pools", required=True, help="comma-separated pool sizes, e.g. 1000,29000")
    p.add_argument("--targets", type=config.number(int, 1), default=1000, help="training targets (default 1000)")
    p.add_argument("--k", type=config.number(int, 2, 64), default=2, help="context size (default 2)")
    p.add_argument("--limit", type=config.number(int, 1), default=200, help="test inputs (default 200)")
    p.add_argument("--paraphrases", default=None, help="test paraphrase file, for the scale row")
    p.add_argument("--out", required=True, help="markdown table")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        pools = [int(v) for v in args.pools.split(",")]
    except ValueError:
        raise UserError(f"--pools must be comma-separated integers, got {args.pools!r}") from None
    print_config(args, "neighbours")
    lines = [f"# How near are natural neighbours? ({args.task})", "",
             f"`python studies/tools/neighbours.py {' '.join(argv if argv is not None else sys.argv[1:])}`", "",
             f"k = {args.k}; training targets: the first {args.targets} pool examples; test: the first "
             f"{args.limit} inputs. nsim = BM25 score / self-score.", "",
             "| pool | near example of | median nsim | quartiles | ≥ 0.5 | ≥ 0.8 | n |", "|---|---|---|---|---|---|---|"]
    para_row = None
    for size in pools:
        args.max_pool = size
        task = task_from_args(args)
        if len(task.pool) < size:
            raise UserError(f"--pools {size}: the data has only {len(task.pool)} pool examples")
        cfg = dataclasses.replace(config.ContextConfig(), regime="contrastive", k=args.k, rho=0.0,
                                  targets=min(args.targets, size))
        rows = contexts.Sampler(task, cfg, 0, show_progress=False).epoch(0)
        near = [max(r["nsim"]) for r in rows if r["kind"] == "one_near" and r["nsim"]]
        lines.append(f"| {len(task.pool):,} | One-Near (training) | {describe(near)} |")
        test = task.test_split()[:args.limit]
        inst = ev.build_eval_contexts(task, test, args.k, 0, context_types=["random+nearest"])
        lines.append(f"| {len(task.pool):,} | random+nearest (evaluation) | {describe([i['max_nsim'] for i in inst])} |")
        if args.paraphrases and para_row is None:
            paras = paraphrases.load_paraphrases(args.paraphrases, task)
            inst = ev.build_eval_contexts(task, test, args.k, 0, paras, context_types=["random+paraphrase"])
            para_row = f"| — | random+paraphrase (evaluation, for scale) | {describe([i['max_nsim'] for i in inst])} |"
    if para_row:
        lines.append(para_row)
    write_text_atomic(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    run_main(main)
