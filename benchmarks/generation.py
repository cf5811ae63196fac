"""Speed of batched greedy generation (generation.generate) against batch size 1, same prompts.

    python benchmarks/generation.py --models tiny,smollm2-135m --limit 32 --batch-size 16 --threads 1

Prompts are real evaluation prompts: alignment-task inputs with k=4 random pool examples
(evaluation.build_eval_contexts), so lengths vary like in evaluate.py. For each model: one warm-up
call, then batched and batch-size-1 runs, each timed end to end (tokenisation, prefill, decoding,
stop detection), in two modes: `stop` (as evaluate.py: each answer ends at the newline) and
`fixed` (no stop string: every prompt decodes --max-new-tokens unless it emits EOS). Reports
generated tokens/s, the speed-up and the fraction of identical answers
(left padding changes float sums slightly, so a near-tie can in rare cases flip).
"""
import argparse
import json
import os
import platform
import time

import torch

from contrastive_context import evaluation
from contrastive_context import generation
from contrastive_context import models
from contrastive_context import tasks
from contrastive_context.common import print_config, run_main, write_json_atomic


def timed(model, tok, prompts, max_new, batch_size, stop):
    t0 = time.perf_counter()
    out, stats = generation.generate(model, tok, prompts, max_new, stop=stop, batch_size=batch_size,
                                     progress=False, return_stats=True)
    return out, stats["new_tokens"], time.perf_counter() - t0


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="tiny,smollm2-135m")
    p.add_argument("--limit", dest="n", type=int, default=32, help="prompts: the first N test inputs")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="optional JSON with the figures")
    return p


def main():
    args = build_parser().parse_args()
    print_config(args, "benchmark generation")
    torch.set_num_threads(args.threads)
    task = tasks.load_task("alignment")
    inst = evaluation.build_eval_contexts(task, task.tests["test"][:args.n], args.k, 0, None, ("random",))
    prompts = [task.prompt(i["context"], i["example"]["x"]) for i in inst]

    results = []
    for name in args.models.split(","):
        model, tok = models.load(name, device=args.device)
        lens = [len(ids) for ids in tok(prompts)["input_ids"]]
        timed(model, tok, prompts[:2], 4, 2, task.stop)  # warm-up
        # two modes: as in evaluate.py (stop at "\n"), and fixed work (no stop string: every
        # prompt decodes max_new_tokens unless it emits EOS)
        for mode, stop in (("stop", task.stop), ("fixed", "")):
            out_b, n_b, s_b = timed(model, tok, prompts, args.max_new_tokens, args.batch_size, stop)
            out_1, n_1, s_1 = timed(model, tok, prompts, args.max_new_tokens, 1, stop)
            r = {"model": name, "mode": mode, "prompts": len(prompts), "prompt_tokens_mean": sum(lens) / len(lens),
                 "prompt_tokens_max": max(lens), "max_new_tokens": args.max_new_tokens,
                 "batched": {"batch_size": args.batch_size, "seconds": s_b, "new_tokens": n_b,
                             "tok_per_s": n_b / s_b},
                 "bs1": {"batch_size": 1, "seconds": s_1, "new_tokens": n_1, "tok_per_s": n_1 / s_1},
                 "speedup_wall": s_1 / s_b, "agreement": sum(a == b for a, b in zip(out_b, out_1)) / len(prompts)}
            results.append(r)
            print(json.dumps(r), flush=True)
        del model

    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, " \
              f"{args.threads} thread(s), device {args.device}"
    print(f"\n{machine}; load average {os.getloadavg()[0]:.1f}\n")
    print("| model | mode | prompts (mean/max tokens) | new tokens | batch 1: s, tok/s | batch {}: s, tok/s "
          "| speed-up | same answers |".format(args.batch_size))
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        b, o = r["batched"], r["bs1"]
        print(f"| {r['model']} | {r['mode']} | {r['prompts']} ({r['prompt_tokens_mean']:.0f}/{r['prompt_tokens_max']}) "
              f"| {b['new_tokens']} | {o['seconds']:.2f}, {o['tok_per_s']:.1f} | {b['seconds']:.2f}, "
              f"{b['tok_per_s']:.1f} | {r['speedup_wall']:.2f}x | {100 * r['agreement']:.0f}% |")
    if args.out:
        write_json_atomic(args.out, {"machine": machine, "results": results})


if __name__ == "__main__":
    run_main(main)
