"""Assign an in-context-example context to every training target, per regime and epoch.

    python sample_contexts.py --regime contrastive --alpha 0.3 --beta 0.2 --rho 0.5 \\
        --paraphrases paraphrases.jsonl --epochs 5 --out contexts.jsonl

Regimes: zero | random | similar | contrastive | random+similar (METHOD.md).
Contrastive-Context: with prob. alpha a Random-Context, with prob. beta a Similar-Context
(top-k BM25, most similar last), otherwise a One-Near-Context: one near example plus k-1
random ones, positions shuffled. The near example is an exact copy of the target with prob.
--repeat (default 0), else a synthetic paraphrase of the target with prob. rho, else a pool
example drawn from the top-M BM25 candidates with probability proportional to its score.

One JSONL row per (epoch, target) (the contract lives in contexts.py):
  {"epoch", "target", "regime", "kind", "context": [ids], "nsim": [floats], "paraphrase", "copy"}
plus OUT.meta.json naming the task, its data fingerprint and this configuration. The same
command writes a byte-identical file. --out must not be an input (--paraphrases) nor lie inside --data.
"""
import argparse

from contrastive_context import config
from contrastive_context import contexts
from contrastive_context.common import print_config, run_main
from contrastive_context.paraphrases import load_paraphrases
from contrastive_context.tasks import add_task_args, task_from_args


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_task_args(p)
    config.add_args(p, config.ContextConfig, "contexts")
    p.add_argument("--epochs", type=config.number(int, 1, 100_000), default=1,
                   help="contexts are re-drawn for every epoch (default 1)")
    p.add_argument("--seed", type=config.SEED, default=0, help="sampling seed (default 0)")
    p.add_argument("--out", required=True, help="output JSONL")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    print_config(config.applicable(args), "sample_contexts")
    from contrastive_context.common import check_output_path
    from contrastive_context.outputs import check_out_not_input
    check_output_path(args.out)
    check_out_not_input(args.out, [args.data, args.paraphrases])  # e.g. --out DATA/train.en, --out PARA.jsonl
    task = task_from_args(args)
    print(task.describe(), flush=True)
    cfg = config.from_args(config.ContextConfig, args)
    paraphrases = load_paraphrases(cfg.paraphrases, task) if cfg.paraphrases else None
    contexts.note_unused_rho(cfg, paraphrases)
    rows = contexts.sample_rows(task, cfg, args.epochs, args.seed, paraphrases)
    contexts.write_rows(args.out, rows, task, cfg, args.seed, epochs=args.epochs)
    print(contexts.kind_table(rows))
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    run_main(main)
