"""Training throughput of train.py's inner loop (LoRA q,k,v; forward + backward + AdamW step).

    python benchmarks/train_speed.py                                  # tiny + smollm2-135m, CPU, batch 2 and 8
    python benchmarks/train_speed.py --models smollm2-135m --batch-sizes 2 --thread-counts 1,2 --timed-steps 20
    python benchmarks/train_speed.py --models smollm2-135m,gemma3-270m --batch-sizes 8 --timed-steps 5  # same batch

Uses the IC-Train recipe train.py uses (training.py: encode, plan_epoch, collate, loss_fn, lora_config with
train.py's default LoRA settings) on the alignment task with Contrastive contexts, so the sequences are the
real ones (~40 tokens for SmolLM2).
Reports, per (model, threads, batch size): steps/s, s/step, real (non-pad) tokens/s, and an
MFU-style figure: model FLOPs per second over the measured peak of a large fp32 matmul on the
same threads; and the process's peak RSS since the model's load (Linux VmHWM, reset per model).
Model FLOPs per real token = 2 (forward) x 2 (forward + input-gradient backward;
the base weights are frozen, the LoRA weight-gradients are negligible) x the non-embedding
matmul parameters, plus the LM head for answer tokens only (training.loss_fn skips it elsewhere).
"""
import argparse
import os
import time

import torch

from contrastive_context import models
from contrastive_context import contexts
from contrastive_context import training
from contrastive_context.config import ContextConfig, TrainConfig
from contrastive_context.common import print_config, run_main, write_json_atomic
from contrastive_context.tasks import load_task


def matmul_peak(n=1024, reps=10):
    """Measured fp32 matmul GFLOP/s on the current thread count (the 'peak' for MFU)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def reset_peak_rss():
    """Reset the kernel's peak-RSS mark (VmHWM) of this process, so each model's peak is its own
    (Linux; elsewhere the peak is the process's)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_gb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1e6
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def matmul_params(model):
    """Parameters of the Linear layers inside the decoder (no embeddings, no LM head)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return sum(m.weight.numel() for n, m in base.named_modules()
               if isinstance(m, torch.nn.Linear) and "lm_head" not in n and "lora" not in n)


def bench(name, batch_sizes, steps, warmup, seed):
    from peft import get_peft_model
    import gc
    gc.collect()
    reset_peak_rss()
    model, tok = models.load(name, device="cpu", dtype=torch.float32)
    model.config.use_cache = False
    torch.manual_seed(seed)
    tc = TrainConfig()  # train.py's LoRA settings
    lora, _ = training.lora_config(model, tc.lora_targets, tc.lora_r, tc.lora_alpha, tc.lora_dropout, name)
    model = get_peft_model(model, lora)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    task = load_task("alignment")
    rows = contexts.sample_rows(task, ContextConfig(), 1, seed, show_progress=False)
    pool = {ex["id"]: ex for ex in task.pool}
    seqs = [training.encode(tok, task, contexts.resolve(r, task), pool[r["target"]], 1024) for r in rows]
    # the LM head runs on n_ans + 1 positions only: check that the (peft-wrapped) forward honours it
    last_only = training.base_forward_takes_logits_to_keep(model)
    with torch.no_grad():
        probe = training.collate(seqs[:2], tok.pad_token_id, "cpu")
        kept = model(input_ids=probe["input_ids"], attention_mask=probe["attention_mask"],
                     logits_to_keep=3).logits.shape[1] if last_only else None
    print(f"{name}: logits_to_keep supported {last_only}; a forward with logits_to_keep=3 returns {kept} "
          f"positions of {probe['input_ids'].shape[1]}", flush=True)
    n_mat = matmul_params(model)
    head = model.get_base_model().lm_head.weight.numel()
    out = []
    for bs in batch_sizes:
        need = warmup + steps
        plan = [st for e in range(need * bs // len(seqs) + 1) for st in training.plan_epoch(seqs, e, bs, 1, 1, seed)]
        real = padded = ans = 0
        for i in range(need):
            if i == warmup:
                t0 = time.perf_counter()
            batch = training.collate([seqs[j] for j in plan[i][0][1]], tok.pad_token_id, "cpu")
            loss = training.loss_fn(model, batch, last_only=last_only)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if i >= warmup:
                real += int(batch["attention_mask"].sum())
                padded += batch["input_ids"].numel()
                ans += int((batch["labels"] != -100).sum())
        dt = time.perf_counter() - t0
        flops = 4 * n_mat * real + 4 * head * ans
        out.append({"model": name, "threads": torch.get_num_threads(), "batch_size": bs, "steps": steps,
                    "s_per_step": dt / steps, "steps_per_s": steps / dt, "tokens_per_s": real / dt,
                    "padded_tokens_per_s": padded / dt, "pad_fraction": 1 - real / padded,
                    "model_gflops_per_s": flops / dt / 1e9, "peak_rss_gb": peak_rss_gb(),
                    "vocab": len(tok)})
    return out


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="tiny,smollm2-135m")
    p.add_argument("--batch-sizes", default="2,8")
    p.add_argument("--thread-counts", dest="threads", default="1", help="comma-separated torch thread counts to try")
    p.add_argument("--timed-steps", dest="steps", type=int, default=20, help="timed steps (tiny: 10x as many)")
    p.add_argument("--untimed-steps", dest="warmup", type=int, default=3, help="steps run before the timed ones")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the rows as JSON")
    return p


def main():
    args = build_parser().parse_args()
    print_config(args, "train_speed")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {load:.1f} at start", flush=True)
    rows = []
    for threads in map(int, args.threads.split(",")):
        torch.set_num_threads(threads)
        peak = matmul_peak()
        for name in args.models.split(","):
            steps = args.steps * (10 if name == "tiny" else 1)
            for r in bench(name, [int(b) for b in args.batch_sizes.split(",")], steps, args.warmup, args.seed):
                r["matmul_peak_gflops"] = peak
                r["mfu"] = r["model_gflops_per_s"] / peak
                rows.append(r)
                print(f"{r['model']:<14} threads={threads} batch={r['batch_size']:<2} "
                      f"{r['steps_per_s']:7.2f} steps/s {r['s_per_step']:7.3f} s/step "
                      f"{r['tokens_per_s']:9.0f} tok/s (pad {r['pad_fraction']:.0%})  "
                      f"{r['model_gflops_per_s']:6.1f} GFLOP/s of {peak:.0f} peak = MFU {r['mfu']:.0%}  "
                      f"peak RSS {r['peak_rss_gb']:.1f} GB (since this model's load)", flush=True)
    if args.out:
        write_json_atomic(args.out, {"load_average_at_start": load, "rows": rows})


if __name__ == "__main__":
    run_main(main)
