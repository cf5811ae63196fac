"""Export IC-Train data for other trainers: the prompt/completion strings train.py trains on.

    python sample_contexts.py --task mt --data DIR --regime contrastive --epochs 2 --out contexts.jsonl
    python export_sft.py --task mt --data DIR --contexts contexts.jsonl --model smollm2-135m --out sft.jsonl

One JSONL row per (epoch, target) of the contexts file, in its order:
  {"id": "EPOCH:TARGET", "epoch", "target", "kind", "prompt", "completion"}
prompt = the task's prompt with the row's context examples (shortened to fit --max-len exactly as
train.py does, which is why the tokenizer of --model is needed), completion = " y\\n" (loss on it only).
Loadable with datasets.load_dataset("json", data_files=OUT); trainable with TRL's SFTTrainer
(README "At scale": map the rows through contrastive_context.sft.tokenize for train.py's exact tokens;
raw strings make TRL append an EOS token to each completion). Writes OUT + OUT.meta.json atomically.
"""
import argparse

from contrastive_context import config, contexts, models, sft
from contrastive_context.common import check_output_path, print_config, progress, run_main, write_jsonl_atomic
from contrastive_context.outputs import check_out_not_input
from contrastive_context.paraphrases import load_paraphrases
from contrastive_context.tasks import add_task_args, task_from_args


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_task_args(p)
    p.add_argument("--contexts", required=True, help="contexts file (sample_contexts.py output or RUN/contexts.jsonl)")
    p.add_argument("--paraphrases", help="paraphrases the contexts file names (paraphrase.py output), if any")
    p.add_argument("--model", default="scratch", help="model whose tokenizer decides the --max-len shortening "
                   "(as train.py --model; default %(default)s)")
    p.add_argument("--max-len", type=config.number(int, 8, 1_000_000), default=1024,
                   help="tokens per sequence, as train.py --max-len (default %(default)s)")
    p.add_argument("--out", required=True, help="output JSONL (prompt/completion rows)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    print_config(args, "export_sft")
    check_output_path(args.out)
    check_out_not_input(args.out, [args.data, args.contexts, args.paraphrases])

    task = task_from_args(args)
    print(task.describe(), flush=True)
    paraphrases = load_paraphrases(args.paraphrases, task) if args.paraphrases else None
    rows = contexts.read_rows(args.contexts, task, paraphrases)
    _, tok = models.load(args.model, device="cpu")
    bar = progress(total=len(rows), desc="render", unit="row")
    out = sft.render_rows(rows, task, tok, paraphrases, args.max_len, bar=bar)
    bar.close()
    meta = {"kind": "sft", "task": task.name, "task_fp": task.fingerprint(), "contexts": args.contexts,
            "model": args.model, "max_len": args.max_len, "format": "prompt/completion"}
    write_jsonl_atomic(args.out, out, meta=meta)
    print(f"wrote {len(out)} prompt/completion rows to {args.out}")


if __name__ == "__main__":
    run_main(main)
