"""IC-Train: fine-tuning with in-context examples in the prompt, loss on the answer y only.

    python train.py --regime contrastive --alpha 0.3          # the headline run (alignment task, from scratch)
    python train.py --regime contrastive --alpha 0.3 --model smollm2-135m --task mt --data DIR --paraphrases P
    python train.py --contexts ctx.jsonl --paraphrases para.jsonl --model gemma3-270m --out runs/g
    python train.py ... --resume                               # continue a killed run from its last checkpoint
    python train.py --config runs/a/config.json --out runs/b   # re-run runs/a exactly (flags given here win)
    python train.py ... --report-to tensorboard                # also log to RUN/tb/: tensorboard --logdir RUN/tb
    python train.py --model tiny --full --lr 1e-3 ...          # all weights of a small model (from scratch)
    torchrun --nproc_per_node 2 train.py ...                   # data-parallel: 2 processes (CPU or GPUs)
    accelerate launch --multi_gpu --num_processes 2 train.py ...   # the same through Accelerate

Several processes: `torchrun --nproc_per_node N` (or `accelerate launch --multi_gpu --num_processes N`)
runs N data-parallel processes, on CPU too; a step takes batch x grad-accum x N sequences (with
full weights, 2 processes give the losses of 1 process with --grad-accum 2; LoRA dropout draws
other masks). Plain `accelerate launch --num_processes N train.py` WITHOUT --multi_gpu on a
machine without GPUs starts ONE process (Accelerate's CPU launcher ignores N, silently): the
"optimizer steps of AxBxC sequences" line printed at the start names the processes (C).

The context of every (epoch, target) comes from --contexts FILE (sample_contexts.py) or is
sampled here with the regime flags, exactly for the epochs the run uses (written to
RUN/contexts.jsonl); either way the rows pass the same validation (contexts.py). A checkpoint
(weights + optimizer, scheduler, RNG states and the step reached) is written every
--save-every steps; --resume ends with the same weights as an uninterrupted run. At the end
the run prints a short before/after evaluation (--eval-limit test inputs per context type).

Defaults: the headline command trains a small decoder from scratch (--model scratch: all
weights, lr 1e-3, batch 8, 20 epochs of the 200-instance alignment pool = 500 steps) because
that visibly learns in a few CPU minutes, where LoRA on a 135M model does not move on this task
in that time. With a pretrained model the defaults are the paper's: LoRA, lr 2e-4, batch 2,
2 epochs. For the alignment task, Contrastive's rho > 0 without --paraphrases makes the pool's
paraphrases on the fly (the task's exact perturbation, written to RUN/paraphrases.jsonl).

Re-running a run: --config RUN/config.json (or RUN) takes the value of every flag from the run's
config.json (the resolved values: the --lr, --epochs, --batch-size the run used) except --out,
--resume and --overwrite; flags given on the command line win (`--config runs/a/config.json --lr
0.01 --out runs/c`). The paths in it (--data, --contexts, --paraphrases) are used as written, i.e.
relative to the current directory when they were relative; paraphrases the run made on the fly are
made again; a --contexts file must still have the content the run used. A file that is not a
run's config.json, or names a flag train.py no longer has, is refused with one error line.
Without --out the run folder is the default one of those flags (often the first run's: then
give --out, or --resume / --overwrite).

Tracking: --report-to tensorboard|wandb also sends what train_log.jsonl gets (loss, lr,
tokens_per_s at every logged step) and the closing before/after scores to an experiment tracker
through Accelerate (tensorboard: event files in RUN/tb/); --report-to none, the default, writes
nothing else. A tracker whose package is not installed is refused before the run folder is made.

Run folder: cc_output.json (the marker that makes it a run of this program), config.json (the flags, and
under "training_contexts" the sampling config and seed the training contexts were made with: the regime
flags for sampled contexts, a --contexts file's own sidecar config otherwise; the regime flags, which a
--contexts run does not use, are then left out), contexts.jsonl
(+ .meta.json; sampled runs only), train_log.jsonl ({step, loss, lr, tokens_per_s}), checkpoint-<step>/
and final/ (a peft adapter, or with --full a whole model; only the newest --keep-checkpoints N, default 1,
keep the optimizer/scheduler/RNG state --resume needs, older ones keep the weights probes.py scores).
--out must be missing, empty or a run (its cc_output.json; a folder without it is never written into
or deleted, not even with --overwrite, which empties only a run, and only after every input was
validated); it is locked (.cc_lock) while train.py runs, so a second train.py on it stops with one
error line; a run that fails before training starts leaves nothing behind in a new folder.
"""
import argparse
import contextlib
import dataclasses
import math
import os
import sys
import tempfile
import time

import numpy as np
import torch

from contrastive_context import config
from contrastive_context import contexts
from contrastive_context import evaluation
from contrastive_context.paraphrases import load_paraphrases, write_perturb_paraphrases
from contrastive_context import models
from contrastive_context import runs
from contrastive_context import training
from contrastive_context.common import UserError, file_sha256, print_config, progress, run_main, set_seed
from contrastive_context.config import REPORT_TO, add_threads_arg, set_threads
from contrastive_context.evaluation import format_by_type
from contrastive_context.tasks import add_task_args, task_config, task_from_args

# flags that do not change the trained weights (may differ between a run and its --resume; config.NOT_OF_THE_RUN)
NON_SEMANTIC = config.RESUME_IGNORES


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_task_args(p)
    config.add_args(p, config.ContextConfig, "contexts (ignored with --contexts)")
    p.add_argument("--contexts", default=None, help="context assignments (sample_contexts.py output); "
                   "default: sample them here with the regime flags")
    config.add_args(p, config.TrainConfig, "training")
    g = p.add_argument_group("run")
    g.add_argument("--out", default=None, help="run folder (default runs/<task>-<regime>-<model>-s<seed>)")
    g.add_argument("--save-every", type=config.number(int, 0), default=50, help="checkpoint every N steps "
                   "(0 = final only; default 50)")
    g.add_argument("--keep-checkpoints", type=config.number(int, 0, 1_000_000), default=1,
                   help="keep the resumable state (optimizer, scheduler, RNG: 2/3 of a full-weight checkpoint) "
                        "in the newest N checkpoints only; older checkpoint-<step>/ folders keep their weights, "
                        "which probes.py scores (0 = keep everything; default 1)")
    g.add_argument("--log-every", type=config.number(int, 1), default=1, help="train_log.jsonl row every N steps")
    g.add_argument("--eval-limit", type=config.number(int, 0, 100_000), default=24, help="test inputs of the "
                   "before/after check printed at the end (0 = none; default 24)")
    g.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    g.add_argument("--overwrite", action="store_true", help="replace an existing run in --out (only a run folder)")
    add_threads_arg(g)
    g.add_argument("--config", default=None, metavar="RUN/config.json",
                   help="re-run a run: its config.json (or its folder) gives every flag but --out, --resume and "
                        "--overwrite; flags given here win. Paths in it (--data, --contexts, --paraphrases) are "
                        "used as written, relative to the current directory (default: none)")
    g.add_argument("--stop-after", type=config.number(int, 1), default=None, help=argparse.SUPPRESS)  # tests
    return p


def get_args(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    if args.config:  # the run's flags, where the command line gave none
        runs.apply_config_file(args, p, config.explicit_dests(p, sys.argv[1:] if argv is None else argv))
    scratch = args.model.startswith("scratch")
    if scratch:
        args.full = True  # a randomly initialised decoder: every weight is trained
    for k, v in (config.SCRATCH_DEFAULTS if scratch else config.PRETRAINED_DEFAULTS).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.lr is None:
        args.lr = config.default_lr(args.full)
    if args.out is None:
        c = args
        tag = (os.path.splitext(os.path.basename(c.contexts))[0] if c.contexts else c.regime +
               (f"-a{c.alpha:g}-b{c.beta:g}-r{c.rho:g}" if c.regime == "contrastive" else
                f"-a{c.alpha:g}" if c.regime == "random+similar" else ""))
        args.out = os.path.join("runs", f"{c.task}-{tag}-{os.path.basename(os.path.normpath(c.model))}-s{c.seed}")
    return args


def main(argv=None):
    args = get_args(argv)
    tc, cc = config.from_args(config.TrainConfig, args), config.from_args(config.ContextConfig, args)
    acc, precision = accelerator(tc.precision, args.threads, tc.report_to, args.out)
    if not acc.is_main_process:  # the main process owns (checks, locks, writes) the run folder
        return train(args, tc, cc, acc, precision, None)
    with runs.claim(args.out, [args.data, args.contexts, args.paraphrases, args.model], overwrite=args.overwrite,
                    resume=args.resume) as claimed:
        return train(args, tc, cc, acc, precision, claimed)


def train(args, tc, cc, acc, precision, claimed):
    import transformers  # (here, not at the top: train.py -h stays fast)
    show = acc.is_main_process
    if show:  # only the flags that apply (config.applicable)
        print_config({k: v for k, v in config.applicable(args).items() if k != "config" or v}, "train")
        if args.config:
            print(f"the flags are those of {args.config} but for the ones given on the command line", flush=True)
    set_seed(tc.seed)

    # --- data: task, contexts, token sequences, the plan of optimizer steps ------------------
    task, cc, paraphrases, epoch_rows, on_the_fly = task_and_contexts(args, tc, cc, show)
    with acc.main_process_first():  # a first use converts a packaged GGUF once, not once per GPU
        model, tok = models.load(tc.model, device=acc.device, dtype=torch.bfloat16 if precision == "bf16"
                                 else torch.float32)
    rows, epoch_seqs, plan, dropped = training.plan_run(epoch_rows, task, tok, paraphrases, tc, acc.num_processes, show)
    n_tokens = sum(len(epoch_seqs[e][i]["input_ids"]) for step in plan for e, b in step for i in b)
    if show:
        print(f"{len(rows)} context rows over {len(epoch_seqs)} epoch(s) -> {len(plan)} optimizer steps of "
              f"{tc.batch_size}x{tc.grad_accum}x{acc.num_processes} sequences (batch x grad-accum x processes); "
              f"{n_tokens} tokens; {dropped} prompts shortened to fit --max-len {tc.max_len}", flush=True)

    # --- model, optimizer, run folder --------------------------------------------------------
    model, lora_modules = make_trainable(model, tc)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=tc.lr,
                                  weight_decay=tc.weight_decay)
    scheduler = transformers.get_linear_schedule_with_warmup(optimizer, tc.warmup_steps, len(plan))
    run_config = record(args, cc, tc, acc, precision, len(plan), len(epoch_seqs), lora_modules, n_train)
    run = runs.RunWriter(args.out, acc, claimed, tc.full, args.keep_checkpoints, tc.report_to)
    start, rng = run.resume(run_config, NON_SEMANTIC, model, optimizer, scheduler) if args.resume else (0, None)
    if show:  # everything is validated: only now is the folder emptied (--overwrite) and written
        run.start(run_config, contexts=None if args.contexts else (rows, task, cc, tc.seed),
                  paraphrases=(lambda path: write_perturb_paraphrases(path, task, n=3, seed=tc.seed))
                  if on_the_fly else None)
        print(f"model {tc.model}: {n_train / 1e6:.2f}M trainable parameters ("
              f"{'all weights' if tc.full else 'LoRA on ' + ', '.join(lora_modules)}); device {acc.device}, "
              f"precision {precision}", flush=True)
    before = quick_eval(model, tok, task, args.eval_limit, tc.seed, cc.k, desc="check before") \
        if show and args.eval_limit and not start else None
    model, optimizer = acc.prepare(model, optimizer)
    if rng is not None:  # last, so that nothing above changes the restored random streams
        runs.set_rng_state(rng)

    # --- train, save, report -----------------------------------------------------------------
    with run.training(run_config):  # from here a failure leaves the run for --resume / --overwrite
        run.log_scores(before, 0)
        if not train_loop(args, acc, model, tok, optimizer, scheduler, plan, epoch_seqs, start, run):
            return  # --stop-after
        run.finish(model, tok, len(plan))
        if show:
            after = report(args, tc, cc, task, acc.unwrap_model(model), tok, len(plan), run.log_rows, before)
            run.log_scores(after, len(plan))


# Hand-written, kept: this loop with runs.RunWriter's checkpoints (optimizer, scheduler, per-process RNG state)
# resumes exactly (tests/test_training.py), which HF Trainer does not guarantee.
def train_loop(args, acc, model, tok, optimizer, scheduler, plan, epoch_seqs, start, run):
    """Optimizer steps start+1 .. len(plan), a checkpoint every --save-every; True when all are done.
    (--stop-after N, for tests, returns False after step N, as if the process were killed then.)"""
    show, total = acc.is_main_process, len(plan)
    last_only = training.base_forward_takes_logits_to_keep(acc.unwrap_model(model))
    model.train()
    bar = progress(total=total, initial=start, desc="train", **({} if show else {"disable": True}))
    t_start = time.time()
    for step in range(start + 1, total + 1):
        t0 = time.time()
        micro = plan[step - 1][acc.process_index::acc.num_processes]  # this process's micro-batches
        loss_sum = torch.zeros((), device=acc.device)
        tokens = torch.zeros((), device=acc.device)
        for j, (e, b) in enumerate(micro):
            batch = training.collate([epoch_seqs[e][i] for i in b], tok.pad_token_id, acc.device)
            sync = contextlib.nullcontext() if j == len(micro) - 1 else acc.no_sync(model)  # sync at the last
            with sync:
                with acc.autocast():
                    loss = training.loss_fn(model, batch, last_only)  # on the answer tokens only
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
        if not math.isfinite(loss_mean):
            raise UserError(f"the loss became {loss_mean} at step {step} (learning rate too high?)")
        tokens = acc.reduce(tokens, "sum").item()
        dt = time.time() - t0
        if step % args.log_every == 0 or step == total:
            run.log({"step": step, "loss": round(loss_mean, 6), "lr": lr,
                     "tokens_per_s": round(tokens / max(dt, 1e-9), 1)})
        bar.update(1)
        bar.set_postfix(loss=f"{loss_mean:.4f}", tok_s=f"{tokens / max(dt, 1e-9):.0f}", refresh=False)
        if step == start + 3 and show and total - step > 0:
            per = (time.time() - t_start) / 3
            print(f"\nestimated time: {per * (total - step) / 60:.1f} min for the remaining {total - step} steps "
                  f"({per:.2f} s/step)", file=sys.stderr, flush=True)
        if args.save_every and step % args.save_every == 0 and step < total:
            run.checkpoint(step, model, tok, optimizer, scheduler)
        elif step % 25 == 0:
            run.write_log()
        if args.stop_after and step >= args.stop_after and step < total:
            bar.close()
            run.write_log()
            if show:
                print(f"stopped after step {step} (--stop-after)", flush=True)
            return False
    bar.close()
    run.write_log()
    return True


# ----------------------------------------------------------------------------- set-up
def accelerator(precision, threads, report_to="none", run=None):
    """An Accelerator (one GPU, several under accelerate/torchrun, or the CPU) and the precision used.
    report_to (--report-to): its tracker, logging under the run folder `run`; a tracker whose package is
    not installed is a UserError here, before the run folder is touched (Accelerate would skip it silently)."""
    from accelerate import Accelerator
    from accelerate.utils import is_tensorboard_available, is_wandb_available
    if report_to not in REPORT_TO:
        raise UserError(f"--report-to must be one of {', '.join(REPORT_TO)}, got {report_to!r}")
    if report_to != "none" and not {"tensorboard": is_tensorboard_available, "wandb": is_wandb_available}[report_to]():
        raise UserError(f"--report-to {report_to} needs the {report_to} package: pip install {report_to}"
                        + (" (or -r requirements-extras.txt)" if report_to == "tensorboard" else ""))
    on_gpu = torch.cuda.is_available()
    if not on_gpu:
        set_threads(threads)  # 0 = auto (config.auto_threads), as in every script
    if precision == "auto":
        precision = "bf16" if on_gpu and torch.cuda.is_bf16_supported() else "no"
    if precision != "no" and not on_gpu:
        raise UserError(f"--precision {precision} needs a GPU; use --precision no on CPU")
    tracking = {} if report_to == "none" else {"log_with": report_to, "project_dir": run}
    return Accelerator(mixed_precision=precision, cpu=not on_gpu, **tracking), precision


def task_and_contexts(args, tc, cc, show):
    """(task, context config, paraphrases, epoch_rows(e), on_the_fly): the task, and where each epoch's
    contexts come from: a --contexts file (refused here if bad, before the run folder is written) or
    sampled epoch by epoch with the regime flags. Alignment paraphrases for --rho are made on the fly
    (deterministically, by every process) outside the run folder, and written into it by run.start."""
    task = task_from_args(args)
    if show:
        print(task.describe(), flush=True)
    paraphrases = load_paraphrases(cc.paraphrases, task) if cc.paraphrases else None
    if args.contexts:  # a bad contexts file is refused before the run folder is written
        rows = contexts.read_rows(args.contexts, task, paraphrases)
        covered = len({r["target"] for r in rows})
        if covered < len(task.pool) and show:
            print(f"note: {args.contexts} has contexts for {covered} of the {len(task.pool)} pool targets", flush=True)
        epoch_rows = file_epochs(rows, args.contexts, show)
        if not tc.max_steps and epoch_rows.n_epochs < tc.epochs:  # --max-steps runs cycle the file (a note)
            raise UserError(f"{args.contexts} holds contexts for {epoch_rows.n_epochs} epoch(s) but this run trains "
                            f"{tc.epochs} epochs: sample them with sample_contexts.py --epochs {tc.epochs} (or "
                            f"train.py --epochs {epoch_rows.n_epochs})")
        return task, cc, paraphrases, epoch_rows, False
    on_the_fly = not cc.paraphrases and cc.regime == "contrastive" and cc.rho > 0 \
        and task.name == "alignment"  # exact, label-preserving paraphrases made on the fly
    if on_the_fly:
        args.paraphrases = runs.paraphrases_path(args.out)
        with tempfile.TemporaryDirectory(prefix="cc-paraphrases-") as tmp:
            paraphrases = load_paraphrases(write_perturb_paraphrases(
                os.path.join(tmp, "paraphrases.jsonl"), task, n=3, seed=tc.seed), task)
        if show:
            print(f"paraphrases for --rho {cc.rho:g}: made on the fly with the task's perturbation -> "
                  f"{args.paraphrases}", flush=True)
        cc = config.from_args(config.ContextConfig, args)
    if show:
        contexts.note_unused_rho(cc, paraphrases)
    sampler = contexts.Sampler(task, cc, tc.seed, paraphrases, show_progress=False)  # plan_run's bar covers it
    return task, cc, paraphrases, sampler.epoch, on_the_fly


def file_epochs(rows, path, show):
    """epoch_rows(e) for a contexts file: epoch e uses the file's e-th epoch, cycled (with a note)."""
    by_epoch = {}
    for r in rows:
        by_epoch.setdefault(r["epoch"], []).append(r)
    src = sorted(by_epoch)

    def epoch_rows(e):
        if e == len(src) and show:
            print(f"note: {path} holds {len(src)} epoch(s) of contexts; later epochs reuse them in turn", flush=True)
        return by_epoch[src[e % len(src)]]
    epoch_rows.n_epochs = len(src)  # a file with fewer epochs than --epochs is refused
    return epoch_rows


def make_trainable(model, tc):
    """LoRA on the configured modules (or every weight with --full). Returns (model, lora modules)."""
    if tc.full:
        for p in model.parameters():
            p.requires_grad_(True)
        return model, []
    from peft import get_peft_model
    lora, modules = training.lora_config(model, tc.lora_targets, tc.lora_r, tc.lora_alpha, tc.lora_dropout, tc.model)
    model.config.use_cache = False
    return get_peft_model(model, lora), modules


def record(args, cc, tc, acc, precision, total_steps, epochs, lora_modules, n_train):
    """config.json: every flag, and under "training_contexts" the sampling config and seed of the training
    contexts (the regime flags for sampled contexts; a --contexts file's own sidecar config, the regime
    flags then left out), and what the run planned and runs with."""
    flags = {k: v for k, v in vars(args).items() if k != "config"}  # where the flags came from is no flag
    if args.contexts:  # the regime flags were not used: the file's own sampling config is the record
        flags = {k: v for k, v in flags.items() if k not in config.SAMPLING_FLAGS}
    sampled_with = contexts.sampling_record(args.contexts) if args.contexts else \
        {**dataclasses.asdict(cc), "seed": tc.seed}
    return dict(flags, training_contexts=sampled_with, task_config=task_config(args), total_steps=total_steps,
                epochs_planned=epochs, contexts_source=args.contexts or "sampled", precision=precision,
                lora_modules=lora_modules, contexts_sha256=file_sha256(args.contexts) if args.contexts else None,
                trainable_params=n_train, world_size=acc.num_processes, torch=torch.__version__)


# ----------------------------------------------------------------------------- the before/after check
def quick_eval(model, tok, task, limit, seed=0, k=4, desc="generate"):
    """Mean score per context type on the first `limit` test inputs (evaluation.py's contexts)."""
    examples = next(iter(task.tests.values()))[:limit]
    instances = evaluation.build_eval_contexts(task, examples, min(k, len(task.pool)), seed)
    was_training = model.training
    model.eval()
    use_cache = getattr(model.config, "use_cache", None)
    model.config.use_cache = True
    try:
        rows, _ = evaluation.predict(model, tok, task, instances, evaluation.default_max_new_tokens(task, tok),
                                     batch_size=16, desc=desc)
    finally:
        model.config.use_cache = use_cache
        model.train(was_training)
    return evaluation.by_context_type(rows, evaluation.CONTEXT_TYPES, seed)


def report(args, tc, cc, task, model, tok, steps, log_rows, before):
    """The closing lines: the loss at the start and the end, and the before/after check (returns the
    after column, or None with --eval-limit 0)."""
    first, last = [r["loss"] for r in log_rows[:10]], [r["loss"] for r in log_rows[-10:]]
    print(f"done: {steps} steps; loss {np.mean(first):.4f} (first 10 steps) -> {np.mean(last):.4f} "
          f"(last 10); weights in {runs.final_dir(args.out)}", flush=True)
    if args.eval_limit:
        after = quick_eval(model, tok, task, args.eval_limit, tc.seed, cc.k, desc="check after")
        cols = ([before] if before else []) + [after]
        print(f"\nmean {task.metric_name} on the first {args.eval_limit} test inputs, by evaluation context:")
        print(format_by_type(cols, (["before"] if before else []) + ["after"]), flush=True)
        return after
    return None


if __name__ == "__main__":
    run_main(main)
