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
import dataclasses
import os
import sys
import tempfile

import numpy as np
import torch

from contrastive_context import config
from contrastive_context import contexts
from contrastive_context.paraphrases import load_paraphrases, write_perturb_paraphrases
from contrastive_context import models
from contrastive_context import runs
from contrastive_context import training
from contrastive_context.common import UserError, file_sha256, print_config, run_main, set_seed
from contrastive_context.config import add_threads_arg
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
    acc, precision = training.accelerator(tc.precision, args.threads, tc.report_to, args.out)
    if not acc.is_main_process:  # the main process owns (checks, locks, writes) the run folder
        return _train(args, tc, cc, acc, precision, None)
    with runs.claim(args.out, [args.data, args.contexts, args.paraphrases, args.model], overwrite=args.overwrite,
                    resume=args.resume) as out:
        return _train(args, tc, cc, acc, precision, out)


def _train(args, tc, cc, acc, precision, out):
    show = acc.is_main_process
    if show:  # only the flags that apply (config.applicable)
        print_config({k: v for k, v in config.applicable(args).items() if k != "config" or v}, "train")
        if args.config:
            print(f"the flags are those of {args.config} but for the ones given on the command line", flush=True)
    set_seed(tc.seed)

    # --- data: task, contexts, token sequences, the plan of optimizer steps ------------------
    task, cc, paraphrases, epoch_rows, on_the_fly = _task_and_contexts(args, tc, cc, show)
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
    model, lora_modules = training.make_trainable(model, tc, tc.model)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer, scheduler = training.optimizer_for(model, tc, len(plan))
    flags = {k: v for k, v in vars(args).items() if k != "config"}  # where the flags came from is no flag
    if args.contexts:  # the regime flags were not used: the file's own sampling config is the record
        flags = {k: v for k, v in flags.items() if k not in config.SAMPLING_FLAGS}
    sampled_with = contexts.sampling_record(args.contexts) if args.contexts else \
        {**dataclasses.asdict(cc), "seed": tc.seed}
    run_config = dict(flags, training_contexts=sampled_with, task_config=task_config(args), total_steps=len(plan),
                      epochs_planned=len(epoch_seqs),
                      contexts_source=args.contexts or "sampled", precision=precision, lora_modules=lora_modules,
                      contexts_sha256=file_sha256(args.contexts) if args.contexts else None,
                      trainable_params=n_train, world_size=acc.num_processes, torch=torch.__version__)
    if args.resume and show:
        runs.check_resume(args.out, run_config, NON_SEMANTIC)
    start, log_rows, ckpt = training.resume_state(acc, args.out, model, optimizer, scheduler, tc.full) \
        if args.resume else (0, [], None)
    rng = training.load_state_file(runs.rng_state_path(ckpt, acc.process_index), "RNG state") \
        if ckpt else None  # read (and checked) now, applied last
    if show:  # everything is validated: only now is the folder emptied (--overwrite) and written
        _write_run(out, args, task, cc, tc, rows, run_config, on_the_fly)
        print(f"model {tc.model}: {n_train / 1e6:.2f}M trainable parameters ("
              f"{'all weights' if tc.full else 'LoRA on ' + ', '.join(lora_modules)}); device {acc.device}, "
              f"precision {precision}", flush=True)
    before = training.quick_eval(model, tok, task, args.eval_limit, tc.seed, cc.k, desc="check before") \
        if show and args.eval_limit and not start else None
    model, optimizer = acc.prepare(model, optimizer)
    if ckpt:  # last, so that nothing above changes the restored random streams
        training.set_rng_state(rng)

    # --- train, save, report -----------------------------------------------------------------
    if out is not None:  # from here a failure leaves the run (with its marker) for --resume / --overwrite
        out.keep()
    training.start_tracking(acc, args.out, tc.report_to, run_config)  # --report-to (main process only)
    try:
        training.log_scores(acc, before, 0)
        log_rows, finished = training.train_steps(acc, model, tok, optimizer, scheduler, plan, epoch_seqs, start,
                                                  log_rows, args, tc.full)
        if not finished:
            return
        training.save_checkpoint(acc, runs.final_dir(args.out), model, tok, tc.full, None, None, len(plan), log_rows)
        if show:
            after = _report(args, tc, cc, task, acc.unwrap_model(model), tok, len(plan), log_rows, before)
            training.log_scores(acc, after, len(plan))
    finally:
        training.end_tracking(acc, tc.report_to)


def _task_and_contexts(args, tc, cc, show):
    """(task, context config, paraphrases, epoch_rows(e), on_the_fly): the task, and where each epoch's
    contexts come from. A bad contexts file is refused here, before the run folder is written; alignment
    paraphrases for --rho are made on the fly (deterministically, by every process) outside the run
    folder, and copied into it with config.json (_write_run)."""
    task = task_from_args(args)
    if show:
        print(task.describe(), flush=True)
    paraphrases = load_paraphrases(cc.paraphrases, task) if cc.paraphrases else None
    if args.contexts:  # a bad contexts file is refused before the run folder is written
        epoch_rows = training.context_source(args.contexts, task, cc, tc.seed, paraphrases, show)
        if not tc.max_steps and epoch_rows.n_epochs < tc.epochs:  # --max-steps runs cycle the file (a note)
            raise UserError(f"{args.contexts} holds contexts for {epoch_rows.n_epochs} epoch(s) but this run trains "
                            f"{tc.epochs} epochs: sample them with sample_contexts.py --epochs {tc.epochs} (or "
                            f"train.py --epochs {epoch_rows.n_epochs})")
    on_the_fly = not cc.paraphrases and not args.contexts and cc.regime == "contrastive" and cc.rho > 0 \
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
    if not args.contexts:
        epoch_rows = training.context_source(None, task, cc, tc.seed, paraphrases, show)
    return task, cc, paraphrases, epoch_rows, on_the_fly


def _write_run(out, args, task, cc, tc, rows, run_config, on_the_fly):
    """Empty the run folder (--overwrite) and write what the run is: its paraphrases (made on the fly),
    config.json and the sampled contexts."""
    out.start()
    if on_the_fly:
        write_perturb_paraphrases(args.paraphrases, task, n=3, seed=tc.seed)
    runs.write_config(args.out, run_config)
    if not args.contexts:  # a --contexts file is recorded by path and sha256 in config.json, not copied
        contexts.write_rows(runs.contexts_path(args.out), rows, task, cc, tc.seed, source="sampled")


def _report(args, tc, cc, task, model, tok, steps, log_rows, before):
    """The closing lines: the loss at the start and the end, and the before/after check (returns the
    after column, or None with --eval-limit 0)."""
    first, last = [r["loss"] for r in log_rows[:10]], [r["loss"] for r in log_rows[-10:]]
    print(f"done: {steps} steps; loss {np.mean(first):.4f} (first 10 steps) -> {np.mean(last):.4f} "
          f"(last 10); weights in {runs.final_dir(args.out)}", flush=True)
    if args.eval_limit:
        after = training.quick_eval(model, tok, task, args.eval_limit, tc.seed, cc.k, desc="check after")
        cols = ([before] if before else []) + [after]
        print(f"\nmean {task.metric_name} on the first {args.eval_limit} test inputs, by evaluation context:")
        print(format_by_type(cols, (["before"] if before else []) + ["after"]), flush=True)
        return after
    return None


if __name__ == "__main__":
    run_main(main)
