"""IC-Train: LoRA fine-tuning with in-context examples in the prompt, loss on y only.

    python train.py --regime contrastive --alpha 0.3        # alignment, SmolLM2-135M, 2 epochs: ~3.5 min on 2 CPU cores
    python train.py --contexts ctx.jsonl --model gemma3-270m --epochs 3 --out runs/gemma-ctx
    python train.py ... --resume                             # continue a killed run from its last checkpoint
    accelerate launch --num_processes 4 train.py ...         # several GPUs, same script

Each training instance is prompt(context, x) followed by answer(y) = " y\\n": both are
tokenised separately and concatenated, and the labels are -100 on every prompt token, so
the loss is log p(y | context, x) only. The context of every (epoch, target) comes from
--contexts FILE (sample_contexts.py) or is sampled here with the regime flags and written to
RUN/contexts.jsonl; epoch e uses the rows with "epoch" = e (cycled if the file has fewer).
A prompt longer than --max-len loses its earliest context examples first.

The whole run is planned up front (deterministic given --seed): length-grouped batches per
epoch, grouped into optimizer steps. A checkpoint (adapter + optimizer, scheduler, RNG
states and the step reached) is written every --save-every steps; --resume restarts from the
last one and ends with the same adapter as an uninterrupted run.

Run folder: config.json, contexts.jsonl, train_log.jsonl ({step, loss, lr, tokens_per_s}),
checkpoint-<step>/ and final/ (peft adapters: models.load_with_adapter reads them).
"""
import argparse
import contextlib
import glob
import inspect
import math
import os
import random
import re
import shutil
import sys
import time

import numpy as np
import torch

import models
from common import (UserError, print_config, progress, read_json, read_jsonl, run_main, set_seed,
                    write_json_atomic, write_jsonl_atomic)
from sample_contexts import add_regime_args, contexts_from_args, resolve_context
from tasks import add_task_args, load_paraphrases, task_config, task_from_args

LORA_TARGETS = {  # module names shared by Llama, Gemma3, Mistral, Qwen2 ...
    "attn": ["q_proj", "k_proj", "v_proj"],  # the paper: q, k, v (not o)
    "attn+mlp": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}
# flags that do not change the trained adapter (may differ between a run and its --resume)
NON_SEMANTIC = {"resume", "overwrite", "stop_after", "save_every", "log_every", "threads", "cpu_threads", "out"}


def get_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_task_args(p)
    add_regime_args(p)
    p.add_argument("--contexts", default=None, help="context assignments (sample_contexts.py output); "
                   "default: sample them here with the regime flags")
    p.add_argument("--model", default="smollm2-135m", help=f"{', '.join(models.MODEL_CHOICES)}, a local HF "
                   "folder or .gguf file, or a hub name (online only)")
    p.add_argument("--out", default=None, help="run folder (default runs/<task>-<regime>-<model>-s<seed>)")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=2, help="passes over the pool (default 2: ~3.5 min for "
                   "SmolLM2-135M on the alignment task on 2 CPU cores)")
    g.add_argument("--max-steps", type=int, default=None, help="optimizer steps; overrides --epochs "
                   "(more epochs of contexts are used/cycled if needed)")
    g.add_argument("--batch-size", type=int, default=2, help="sequences per device and micro-batch")
    g.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    g.add_argument("--lr", type=float, default=2e-4)
    g.add_argument("--warmup-steps", type=int, default=0, help="linear warm-up, then linear decay to 0")
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--max-grad-norm", type=float, default=1.0, help="0 = no clipping")
    g.add_argument("--max-len", type=int, default=1024, help="tokens per sequence; longer prompts lose "
                   "their earliest context examples")
    g.add_argument("--lora-r", type=int, default=16)
    g.add_argument("--lora-alpha", type=float, default=32)
    g.add_argument("--lora-dropout", type=float, default=0.05)
    g.add_argument("--lora-targets", default="attn", choices=sorted(LORA_TARGETS),
                   help="attn = q,k,v (paper); attn+mlp = q,k,v,o + gate,up,down (ablation)")
    g.add_argument("--precision", default="auto", choices=("auto", "no", "bf16", "fp16"),
                   help="auto = bf16 on a GPU that has it, fp32 on CPU")
    g.add_argument("--seed", type=int, default=0, help="contexts, batches, LoRA init, dropout")
    g.add_argument("--save-every", type=int, default=50, help="checkpoint every N steps (0 = final only)")
    g.add_argument("--log-every", type=int, default=1, help="train_log.jsonl row every N steps")
    g.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    g.add_argument("--overwrite", action="store_true", help="delete an existing run in --out first")
    g.add_argument("--threads", type=int, default=0, help="torch CPU threads (default 0 = auto: the cores "
                   "not already busy by the load average, at least 1)")
    g.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)  # tests: 'kill' after N steps
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size", "grad_accum", "max_len", "lora_r"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1")
    if args.max_steps is not None and args.max_steps < 1:
        raise UserError("--max-steps must be >= 1")
    if args.out is None:
        if args.contexts:
            tag = os.path.splitext(os.path.basename(args.contexts))[0]
        else:
            tag = args.regime + (f"-a{args.alpha:g}-b{args.beta:g}-r{args.rho:g}" if args.regime == "contrastive"
                                 else f"-a{args.alpha:g}" if args.regime == "random+similar" else "")
        model_tag = os.path.basename(os.path.normpath(args.model))
        args.out = os.path.join("runs", f"{args.task}-{tag}-{model_tag}-s{args.seed}")
    return args


# ----------------------------------------------------------------------------- data
def encode(tok, task, context, ex, max_len):
    """One training sequence: {"input_ids", "labels", "dropped"}; labels are -100 on the prompt.

    Prompt and answer are tokenised separately (the prompt as generation sees it, with the
    tokenizer's BOS if it adds one; the answer without specials) and concatenated. If too long,
    the earliest context examples are dropped; as a last resort the prompt is cut on the left."""
    ans = tok(task.answer(ex["y"]), add_special_tokens=False)["input_ids"]
    dropped = 0
    while True:
        prompt = tok(task.prompt(context[dropped:], ex["x"], ex.get("meta")))["input_ids"]
        if len(prompt) + len(ans) <= max_len or dropped == len(context):
            break
        dropped += 1
    room = max_len - len(ans)
    if len(prompt) > room:  # even the zero-context prompt is too long: keep BOS + its end
        if room < 2:
            raise UserError(f"--max-len {max_len} leaves no room for the prompt of {ex['id']}")
        has_bos = tok.bos_token_id is not None and prompt[0] == tok.bos_token_id
        prompt = prompt[:1] + prompt[len(prompt) - room + 1:] if has_bos else prompt[len(prompt) - room:]
    return {"input_ids": prompt + ans, "labels": [-100] * len(prompt) + ans, "dropped": dropped}


def load_context_rows(args, task, epochs_needed, run_dir, is_main):
    """Rows of the context contract: from --contexts (validated), or sampled here."""
    path = args.contexts
    if path is None and args.resume and os.path.isfile(os.path.join(run_dir, "contexts.jsonl")):
        path = os.path.join(run_dir, "contexts.jsonl")  # a resumed run reuses its own contexts
    if path is None:
        rows = contexts_from_args(args, task, epochs_needed, show_progress=is_main)
    else:
        rows = read_jsonl(path, "contexts", required=("epoch", "target", "context"))
        if not rows:
            raise UserError(f"contexts file {path} is empty")
        pool_ids = {ex["id"] for ex in task.pool}
        for n, r in enumerate(rows, 1):
            if r["target"] not in pool_ids:
                raise UserError(f"{path}:{n}: target '{r['target']}' is not in the {task.name} pool "
                                f"(a contexts file made for another task or data set?)")
        covered = len({r["target"] for r in rows})
        if covered < len(pool_ids) and is_main:
            print(f"note: {path} has contexts for {covered} of the {len(pool_ids)} pool targets", flush=True)
    return rows


def build_sequences(rows, task, tok, para_by_id, max_len, n_epochs, show):
    """Token sequences per training epoch; epoch e uses the file's epoch e (cycled)."""
    pool_by_id = {ex["id"]: ex for ex in task.pool}
    by_epoch = {}
    for r in rows:
        by_epoch.setdefault(int(r["epoch"]), []).append(r)
    src_epochs = sorted(by_epoch)
    encoded, dropped = {}, 0
    for e in sorted({src_epochs[e % len(src_epochs)] for e in range(n_epochs)}):
        seqs = []
        for r in progress(by_epoch[e], desc=f"tokenise epoch {e}", **({} if show else {"disable": True})):
            ctx = resolve_context(r, pool_by_id, para_by_id)
            s = encode(tok, task, ctx, pool_by_id[r["target"]], max_len)
            dropped += s.pop("dropped") > 0
            seqs.append(s)
        encoded[e] = seqs
    return [encoded[src_epochs[e % len(src_epochs)]] for e in range(n_epochs)], dropped


def plan_steps(epoch_seqs, batch_size, grad_accum, world, seed):
    """The whole run as a list of optimizer steps; a step = [(epoch, [seq indices]), ...] micro-batches.

    Length-grouped batching: shuffle, cut into chunks of 16 batches, sort each chunk by length
    (so a batch holds similar lengths, little padding), then shuffle the batches. Each epoch's
    batch count is rounded up to a multiple of the number of processes (repeating its first
    batches) so every process takes the same number of micro-batches."""
    steps = []
    for e, seqs in enumerate(epoch_seqs):
        rng = random.Random(f"{seed}:batches:{e}")
        idx = list(range(len(seqs)))
        rng.shuffle(idx)
        chunk, batches = 16 * batch_size, []
        for c in range(0, len(idx), chunk):
            part = sorted(idx[c:c + chunk], key=lambda i: -len(seqs[i]["input_ids"]))
            batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
        rng.shuffle(batches)
        batches += batches[:(-len(batches)) % world]
        per_step = grad_accum * world
        steps += [[(e, b) for b in batches[i:i + per_step]] for i in range(0, len(batches), per_step)]
    return steps


def collate(seqs, pad_id, device):
    """Left-pad a micro-batch: answers end at the same position, so only the logits of the
    last (longest answer + 1) positions are needed. Position ids count from the first real token."""
    T = max(len(s["input_ids"]) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    labels = torch.full((len(seqs), T), -100, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        n = len(s["input_ids"])
        ids[i, T - n:] = torch.tensor(s["input_ids"])
        labels[i, T - n:] = torch.tensor(s["labels"])
        mask[i, T - n:] = 1
    n_ans = max(sum(1 for l in s["labels"] if l != -100) for s in seqs)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device),
            "position_ids": (mask.cumsum(-1) - 1).clamp(min=0).to(device), "n_ans": n_ans}


def loss_fn(model, batch, last_only):
    """Mean cross-entropy over the answer tokens. With left padding every label sits in the last
    n_ans positions, so the LM head runs on n_ans + 1 positions only (Gemma's 262k vocab!)."""
    keep = batch["n_ans"] + 1
    extra = {"logits_to_keep": keep} if last_only else {}
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   position_ids=batch["position_ids"], use_cache=False, **extra).logits
    logits = logits[:, -keep:-1]  # logits at t predict token t + 1
    labels = batch["labels"][:, -(keep - 1):]
    return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1),
                                             ignore_index=-100)


# ----------------------------------------------------------------------------- checkpoints
def rng_state():
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(acc, path, model, optimizer, scheduler, step, log_rows):
    """Adapter (+ trainer state unless optimizer is None) into a temp folder, renamed into place.
    All processes take part: each saves its own RNG state."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
    acc.wait_for_everyone()
    if optimizer is not None:
        torch.save(rng_state(), os.path.join(tmp, f"rng_state_{acc.process_index}.pt"))
    if acc.is_main_process:
        acc.unwrap_model(model).save_pretrained(tmp, save_embedding_layers=False)
        if optimizer is not None:
            torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
                        "world": acc.num_processes}, os.path.join(tmp, "trainer_state.pt"))
        write_json_atomic(os.path.join(tmp, "trainer_state.json"),
                          {"step": step, "loss": log_rows[-1]["loss"] if log_rows else None})
    acc.wait_for_everyone()
    if acc.is_main_process:
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    acc.wait_for_everyone()


def last_checkpoint(run_dir):
    found = []
    for d in glob.glob(os.path.join(run_dir, "checkpoint-*")):
        m = re.fullmatch(r"checkpoint-(\d+)", os.path.basename(d))
        if m and os.path.isfile(os.path.join(d, "trainer_state.pt")):
            found.append((int(m.group(1)), d))
    return max(found)[1] if found else None


def check_run_folder(args, config):
    """A fresh run needs an empty folder (or --overwrite); --resume needs the same settings."""
    cfg_path = os.path.join(args.out, "config.json")
    if args.overwrite and not args.resume and os.path.isdir(args.out):
        shutil.rmtree(args.out)
    if not os.path.exists(cfg_path):
        return
    if not args.resume:
        raise UserError(f"{args.out} already holds a run; pass --resume to continue it, --overwrite to "
                        f"replace it, or choose another --out")
    old = read_json(cfg_path, "run config")
    diff = [k for k in config if k not in NON_SEMANTIC and k in old and old[k] != config[k]]
    if diff:
        k = diff[0]
        raise UserError(f"--resume: {args.out} was trained with {k}={old[k]!r}, now {k}={config[k]!r}")


# ----------------------------------------------------------------------------- main
def cpu_threads(requested):
    """CPU threads for torch. OpenMP threads that have to share cores with other busy processes
    spin at every barrier: on a loaded 2-core machine, 2 threads ran SmolLM2 steps 30x slower
    than 1. So by default, use only the cores that the 1-minute load average leaves idle."""
    if requested:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    idle = cores - int(round(os.getloadavg()[0])) if hasattr(os, "getloadavg") else cores
    return max(1, min(torch.get_num_threads(), idle))


def main(argv=None):
    args = get_args(argv)
    from accelerate import Accelerator
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import get_linear_schedule_with_warmup

    on_gpu = torch.cuda.is_available()
    if not on_gpu:
        torch.set_num_threads(cpu_threads(args.threads))
    precision = ("bf16" if on_gpu and torch.cuda.is_bf16_supported() else "no") if args.precision == "auto" \
        else args.precision
    if precision != "no" and not on_gpu:
        raise UserError(f"--precision {precision} needs a GPU; use --precision no on CPU")
    acc = Accelerator(mixed_precision=precision, cpu=not on_gpu)
    show = acc.is_main_process
    if show:
        print_config(args, "train")
    set_seed(args.seed)

    # --- task, model, contexts -------------------------------------------------------
    task = task_from_args(args)
    if show:
        print(task.describe(), flush=True)
    para_by_id = load_paraphrases(args.paraphrases, task) if args.paraphrases else None
    per_epoch = math.ceil(math.ceil(len(task.pool) / args.batch_size) / (args.grad_accum * acc.num_processes))
    n_epochs = args.epochs if args.max_steps is None else max(1, math.ceil(args.max_steps / per_epoch))
    rows = load_context_rows(args, task, n_epochs, args.out, show)
    with acc.main_process_first():  # a first use converts the packaged GGUF once, not once per GPU
        model, tok = models.load(args.model, device=acc.device, dtype=torch.bfloat16 if precision == "bf16"
                                 else torch.float32)
    while True:  # --max-steps may need more epochs than estimated (e.g. --min-avg-sim dropped rows)
        epoch_seqs, n_dropped = build_sequences(rows, task, tok, para_by_id, args.max_len, n_epochs, show)
        plan = plan_steps(epoch_seqs, args.batch_size, args.grad_accum, acc.num_processes, args.seed)
        if args.max_steps is None or len(plan) >= args.max_steps:
            break
        n_epochs += math.ceil((args.max_steps - len(plan)) / max(1, len(plan) // n_epochs))
    plan = plan[:args.max_steps] if args.max_steps else plan
    total = len(plan)
    n_tokens = sum(len(epoch_seqs[e][i]["input_ids"]) for step in plan for e, b in step for i in b)
    if show:
        print(f"{len(rows)} context rows -> {sum(map(len, epoch_seqs))} sequences over {n_epochs} epoch(s); "
              f"{total} optimizer steps of {args.batch_size}x{args.grad_accum}x{acc.num_processes} sequences; "
              f"{n_tokens} tokens; {n_dropped} prompts shortened to fit --max-len {args.max_len}", flush=True)

    # --- LoRA ------------------------------------------------------------------------
    targets = LORA_TARGETS[args.lora_targets]
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    if not set(targets) & names:
        raise UserError(f"model {args.model} has none of the LoRA target modules {targets}")
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha,
                                             lora_dropout=args.lora_dropout, bias="none", task_type="CAUSAL_LM",
                                             target_modules=[t for t in targets if t in names]))
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in model.parameters())
    base = model.get_base_model()
    last_only = "logits_to_keep" in inspect.signature(base.forward).parameters
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr,
                                  weight_decay=args.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, args.warmup_steps, total)

    # --- run folder, resume ----------------------------------------------------------
    import transformers
    config = dict(vars(args), task_config=task_config(args), total_steps=total, epochs_planned=n_epochs,
                  contexts_source=args.contexts or "sampled",
                  context_regimes=sorted({str(r.get("regime", "?")) for r in rows}), world_size=acc.num_processes, precision=precision,
                  lora_modules=[t for t in targets if t in names], trainable_params=n_train, total_params=n_all,
                  cpu_threads=None if on_gpu else torch.get_num_threads(), torch=torch.__version__,
                  transformers=transformers.__version__)
    if show:
        check_run_folder(args, config)
    acc.wait_for_everyone()
    start, log_rows, resume_from = 0, [], last_checkpoint(args.out) if args.resume else None
    if resume_from:
        state = torch.load(os.path.join(resume_from, "trainer_state.pt"), map_location="cpu", weights_only=False)
        if state["world"] != acc.num_processes:
            raise UserError(f"{resume_from} was written by {state['world']} processes, now {acc.num_processes}")
        set_peft_model_state_dict(model, load_file(os.path.join(resume_from, "adapter_model.safetensors")))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = state["step"]
        log_path = os.path.join(args.out, "train_log.jsonl")
        log_rows = [r for r in read_jsonl(log_path, "train log") if r["step"] <= start] \
            if os.path.isfile(log_path) else []
        if show:
            print(f"resuming from {resume_from} (step {start} of {total})", flush=True)
    elif args.resume and show:
        print(f"--resume: no checkpoint in {args.out}; starting from scratch", flush=True)
    if show:
        write_json_atomic(os.path.join(args.out, "config.json"), config)
        if args.contexts is None or os.path.abspath(args.contexts) != os.path.abspath(
                os.path.join(args.out, "contexts.jsonl")):
            write_jsonl_atomic(os.path.join(args.out, "contexts.jsonl"), rows)
        print(f"model {args.model}: {n_all / 1e6:.1f}M parameters, {n_train / 1e6:.2f}M trainable (LoRA on "
              f"{', '.join(config['lora_modules'])}); device {acc.device}, precision {precision}" +
              ("" if on_gpu else f", {torch.get_num_threads()} CPU thread(s)"), flush=True)
    model, optimizer = acc.prepare(model, optimizer)
    if resume_from:  # last, so that nothing above changes the restored random streams
        set_rng_state(torch.load(os.path.join(resume_from, f"rng_state_{acc.process_index}.pt"),
                                 map_location="cpu", weights_only=False))

    # --- train -----------------------------------------------------------------------
    model.train()
    bar = progress(total=total, initial=start, desc="train", **({} if show else {"disable": True}))
    t_start, step = time.time(), start
    for step in range(start + 1, total + 1):
        t0 = time.time()
        micro = plan[step - 1][acc.process_index::acc.num_processes]
        loss_sum = torch.zeros((), device=acc.device)
        tokens = torch.zeros((), device=acc.device)
        for j, (e, b) in enumerate(micro):
            batch = collate([epoch_seqs[e][i] for i in b], tok.pad_token_id, acc.device)
            sync = contextlib.nullcontext() if j == len(micro) - 1 else acc.no_sync(model)
            with sync:
                with acc.autocast():
                    loss = loss_fn(model, batch, last_only)
                acc.backward(loss / len(micro))
            loss_sum += loss.detach() / len(micro)
            tokens += batch["attention_mask"].sum()
        if args.max_grad_norm > 0:
            acc.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss_mean = acc.reduce(loss_sum, "mean").item()
        tokens = acc.reduce(tokens, "sum").item()
        dt = time.time() - t0
        if step % args.log_every == 0 or step == total:
            log_rows.append({"step": step, "loss": round(loss_mean, 6), "lr": lr,
                             "tokens_per_s": round(tokens / max(dt, 1e-9), 1)})
        bar.update(1)
        bar.set_postfix(loss=f"{loss_mean:.4f}", tok_s=f"{tokens / max(dt, 1e-9):.0f}")
        if step == start + 3 and show and total - step > 0:
            per = (time.time() - t_start) / 3
            print(f"\nestimated time: {per * (total - step) / 60:.1f} min for the remaining {total - step} steps "
                  f"({per:.2f} s/step)", file=sys.stderr, flush=True)
        if args.save_every and step % args.save_every == 0 and step < total:
            save_checkpoint(acc, os.path.join(args.out, f"checkpoint-{step}"), model, optimizer, scheduler, step,
                            log_rows)
            if show:
                write_jsonl_atomic(os.path.join(args.out, "train_log.jsonl"), log_rows)
        elif show and step % 25 == 0:
            write_jsonl_atomic(os.path.join(args.out, "train_log.jsonl"), log_rows)
        if args.stop_after and step >= args.stop_after and step < total:
            bar.close()
            if show:
                write_jsonl_atomic(os.path.join(args.out, "train_log.jsonl"), log_rows)
                print(f"stopped after step {step} (--stop-after)", flush=True)
            return
    bar.close()

    # --- final adapter -----------------------------------------------------------------
    if show:
        write_jsonl_atomic(os.path.join(args.out, "train_log.jsonl"), log_rows)
    save_checkpoint(acc, os.path.join(args.out, "final"), model, None, None, total, log_rows)
    if show:
        mins = (time.time() - t_start) / 60
        first = [r["loss"] for r in log_rows[:5]]
        last = [r["loss"] for r in log_rows[-5:]]
        print(f"done: {total} steps in {mins:.1f} min; loss {np.mean(first):.4f} (first 5) -> "
              f"{np.mean(last):.4f} (last 5); adapter in {os.path.join(args.out, 'final')}", flush=True)


if __name__ == "__main__":
    run_main(main)
