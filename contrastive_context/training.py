"""Training as a library: what train.py does, in the order it does it.

    (train.py)          checks, locks and claims the run folder (runs.claim; runs.py owns its contract)
    plan_run            contexts -> token sequences -> the whole run as a list of optimizer steps,
                        sampling exactly the epochs the run will use
    make_trainable      LoRA (q,k,v by default) or all weights (--full)
    train_steps         the loop (checkpoints with optimizer/scheduler/RNG state; exact --resume)
    resume_state        the last resumable checkpoint restored (runs.last_checkpoint)
    accelerator, start_tracking, log_scores, end_tracking
                        the Accelerator, and --report-to: Accelerate's trackers (tensorboard: RUN/tb/, wandb)
                        get what train_log.jsonl gets and the closing before/after scores

Each training instance is prompt(context, x) followed by answer(y): both are tokenised separately
and concatenated, and the labels are -100 on every prompt token, so the loss is log p(y | context, x)
only. A prompt longer than --max-len loses its earliest context examples first.
"""
import contextlib
import math
import os
import random
import shutil
import sys
import time

import numpy as np
import torch

from . import contexts
from . import models
from . import runs
from .common import UserError, progress, write_json_atomic, write_jsonl_atomic
from .config import REPORT_TO, set_threads

LORA_TARGETS = {  # module names shared by Llama, Gemma3, Mistral, Qwen2 ...
    "attn": ["q_proj", "k_proj", "v_proj"],  # the paper: q, k, v (not o)
    "attn+mlp": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}
MAX_SEQUENCES = 2_000_000  # epochs x targets held in memory by one run


# ----------------------------------------------------------------------------- data
# Hand-written, kept: answer-only masking is 6 lines here, the prompt is tokenised exactly as generation sees it,
# and TRL's completion_only_loss reproduces it token for token (sft.py, tests/test_sft.py).
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


# Hand-written, kept: left padding puts every answer in the last positions, so loss_fn runs the LM head on
# n_ans + 1 positions only (logits_to_keep; Gemma's 262k vocabulary); HF's collators pad on the right.
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


def encode_rows(rows, task, tok, paraphrases, max_len, desc, show, bar=None):
    """Token sequences of one epoch's rows; and how many prompts were shortened. `bar`: a progress
    bar advanced per row (plan_run's one bar for every epoch); without it, a bar of its own if `show`."""
    seqs, dropped = [], 0
    pool = contexts.pool_by_id(task)
    own = None
    if bar is None:
        bar = own = progress(total=len(rows), desc=desc, **({} if show else {"disable": True}))
    for r in rows:
        s = encode(tok, task, contexts.resolve(r, task, paraphrases), pool[r["target"]], max_len)
        dropped += s.pop("dropped") > 0
        seqs.append(s)
        bar.update(1)
    if own is not None:
        own.close()
    return seqs, dropped


# Hand-written, kept: length grouping and the per-process split come from one seeded plan per (seed, epoch),
# so N processes train on exactly the sequences of 1 process with --grad-accum N (tests/test_training.py) and
# a resumed run sees the same batches; transformers' LengthGroupedSampler/DistributedSampler do not promise that.
def plan_epoch(seqs, e, batch_size, grad_accum, world, seed):
    """Epoch e as optimizer steps; a step = [(epoch, [seq indices]), ...] micro-batches.

    Length-grouped batching: shuffle, cut into chunks of 16 batches, sort each chunk by length
    (so a batch holds similar lengths, little padding), then shuffle the batches. The batch count
    is rounded up to a multiple of the number of processes (repeating its first batches) so every
    process takes the same number of micro-batches."""
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
    return [[(e, b) for b in batches[i:i + per_step]] for i in range(0, len(batches), per_step)]


def plan_run(epoch_rows, task, tok, paraphrases, tc, world, show):
    """Encode epochs one at a time, each as `epoch_rows(e)` gives it, until --epochs are done or
    --max-steps is reached: exactly the epochs the run uses, no guessing.
    Returns (rows used, per-epoch sequences, steps, prompts shortened)."""
    rows_used, epoch_seqs, plan, dropped, e = [], [], [], 0, 0
    # ONE bar for all epochs (sampling + tokenising), not two per epoch: its total is known after epoch 0
    bar = progress(total=None, desc="contexts + tokens", unit="seq", **({} if show else {"disable": True}))
    try:
        while (len(plan) < tc.max_steps) if tc.max_steps else (e < tc.epochs):
            rows = epoch_rows(e)
            if not rows:
                raise UserError(f"epoch {e} has no training rows (did --min-avg-sim filter them all out?)")
            if (len(rows_used) + len(rows)) > MAX_SEQUENCES:
                raise UserError(f"the run would hold more than {MAX_SEQUENCES:,} sequences in memory "
                                f"({e + 1} epochs of {len(rows)}); lower --max-steps / --epochs")
            bar.set_description(f"contexts + tokens, epoch {e}", refresh=False)
            seqs, d = encode_rows(rows, task, tok, paraphrases, tc.max_len, f"tokenise epoch {e}", show, bar=bar)
            rows_used += rows
            epoch_seqs.append(seqs)
            dropped += d
            steps = plan_epoch(seqs, e, tc.batch_size, tc.grad_accum, world, tc.seed)
            plan += steps
            if e == 0:
                epochs = math.ceil(tc.max_steps / max(len(steps), 1)) if tc.max_steps else tc.epochs
                bar.total = len(rows) * epochs
                bar.refresh()
            e += 1
    finally:
        bar.close()
    return rows_used, epoch_seqs, plan[:tc.max_steps] if tc.max_steps else plan, dropped


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
    epoch_rows.n_epochs = len(src)  # train.py refuses a file with fewer epochs than --epochs
    return epoch_rows


# ----------------------------------------------------------------------------- model
def make_trainable(model, tc, name):
    """LoRA on the configured modules (or every weight with --full). Returns (model, lora modules)."""
    if tc.full:
        for p in model.parameters():
            p.requires_grad_(True)
        return model, []
    from peft import LoraConfig, get_peft_model
    targets = LORA_TARGETS[tc.lora_targets]
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    present = [t for t in targets if t in names]
    if not present:
        raise UserError(f"model {name} has none of the LoRA target modules {targets}")
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(r=tc.lora_r, lora_alpha=tc.lora_alpha, lora_dropout=tc.lora_dropout,
                                             bias="none", task_type="CAUSAL_LM", target_modules=present))
    return model, present


def base_forward_takes_logits_to_keep(model):
    import inspect
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


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


def save_checkpoint(acc, path, model, tok, full, optimizer, scheduler, step, log_rows):
    """Adapter (with --full: the whole model + tokenizer), plus trainer state unless optimizer is None,
    into a temp folder renamed into place. All processes take part: each saves its own RNG state.
    Interrupted (Ctrl-C, SIGTERM, an error), the temp folder is removed and `path` is left as it was."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    try:
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
        acc.wait_for_everyone()
        if optimizer is not None:
            torch.save(rng_state(), runs.rng_state_path(tmp, acc.process_index))
        if acc.is_main_process:
            if full:
                acc.unwrap_model(model).save_pretrained(tmp, safe_serialization=True)
                tok.save_pretrained(tmp)
            else:
                acc.unwrap_model(model).save_pretrained(tmp, save_embedding_layers=False)
                models.write_base_signature(tmp, acc.unwrap_model(model))
            if optimizer is not None:
                torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
                            "world": acc.num_processes, "log_rows": list(log_rows)},  # the log up to `step`
                           os.path.join(tmp, runs.RESUME_STATE))
            write_json_atomic(os.path.join(tmp, runs.STATE_JSON),
                              {"step": step, "loss": log_rows[-1]["loss"] if log_rows else None})
        acc.wait_for_everyone()
        if acc.is_main_process:
            shutil.rmtree(path, ignore_errors=True)
            os.replace(tmp, path)
    except BaseException:
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    acc.wait_for_everyone()


def load_weights(model, folder, full):
    """Restore the trainable weights saved by save_checkpoint."""
    from safetensors.torch import load_file
    if full:
        state = load_file(os.path.join(folder, runs.FULL_WEIGHTS))
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or [m for m in missing if "lm_head" not in m]:  # a tied head is not saved twice
            raise UserError(f"{folder} does not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    else:
        from peft import set_peft_model_state_dict
        set_peft_model_state_dict(model, load_file(os.path.join(folder, runs.ADAPTER_WEIGHTS)))


# ----------------------------------------------------------------------------- the loop
# Hand-written, kept: the loop (and resume_state / save_checkpoint with per-process RNG state) gives an exact
# kill-and-resume -- the same weights and log as an uninterrupted run (tests/test_training.py) -- which HF Trainer
# does not guarantee; users who want Trainer/TRL take export_sft.py's data (README "At scale"). The loop stays whole.
def train_steps(acc, model, tok, optimizer, scheduler, plan, epoch_seqs, start, log_rows, args, full):
    """Optimizer steps start+1 .. len(plan); checkpoints every --save-every; returns the log rows.
    (--stop-after N, for tests, returns early as if the process were killed after step N.)"""
    show, total = acc.is_main_process, len(plan)
    last_only = base_forward_takes_logits_to_keep(acc.unwrap_model(model))
    log_path = runs.log_path(args.out)
    model.train()
    bar = progress(total=total, initial=start, desc="train", **({} if show else {"disable": True}))
    t_start = time.time()
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
        if not math.isfinite(loss_mean):
            raise UserError(f"the loss became {loss_mean} at step {step} (learning rate too high?)")
        tokens = acc.reduce(tokens, "sum").item()
        dt = time.time() - t0
        if step % args.log_every == 0 or step == total:
            log_rows.append({"step": step, "loss": round(loss_mean, 6), "lr": lr,
                             "tokens_per_s": round(tokens / max(dt, 1e-9), 1)})
            if acc.trackers:  # --report-to: the very values of the train_log.jsonl row
                acc.log({f"train/{k}": v for k, v in log_rows[-1].items() if k != "step"}, step=step)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_mean:.4f}", tok_s=f"{tokens / max(dt, 1e-9):.0f}", refresh=False)
        if step == start + 3 and show and total - step > 0:
            per = (time.time() - t_start) / 3
            print(f"\nestimated time: {per * (total - step) / 60:.1f} min for the remaining {total - step} steps "
                  f"({per:.2f} s/step)", file=sys.stderr, flush=True)
        if args.save_every and step % args.save_every == 0 and step < total:
            if show:  # the log first: a kill before the checkpoint's rename resumes from an earlier one
                write_jsonl_atomic(log_path, log_rows)
            save_checkpoint(acc, runs.checkpoint_dir(args.out, step), model, tok, full, optimizer,
                            scheduler, step, log_rows)
            if show:
                runs.slim_checkpoints(args.out, getattr(args, "keep_checkpoints", 0))
        elif show and step % 25 == 0:
            write_jsonl_atomic(log_path, log_rows)
        if args.stop_after and step >= args.stop_after and step < total:
            bar.close()
            if show:
                write_jsonl_atomic(log_path, log_rows)
                print(f"stopped after step {step} (--stop-after)", flush=True)
            return log_rows, False
    bar.close()
    if show:
        write_jsonl_atomic(log_path, log_rows)
    return log_rows, True


# ----------------------------------------------------------------------------- set-up helpers
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


def start_tracking(acc, run, report_to, run_config):
    """--report-to: start the tracker (main process), with the run's config as its hyperparameters
    (scalars; lists joined by commas; nested objects left out, their fields are top-level keys too).
    TensorBoard logs to RUN/tb/ (the project name is the folder under the Accelerator's project_dir);
    Weights & Biases to the project $WANDB_PROJECT (default contrastive-context), the run named after RUN."""
    if report_to == "none":
        return
    hparams = {k: ",".join(map(str, v)) if isinstance(v, (list, tuple)) else v for k, v in run_config.items()
               if v is None or isinstance(v, (bool, int, float, str, list, tuple))}
    if report_to == "tensorboard":
        acc.init_trackers(runs.TENSORBOARD, config=hparams)
    else:
        acc.init_trackers(os.environ.get("WANDB_PROJECT") or "contrastive-context", config=hparams,
                          init_kwargs={"wandb": {"name": os.path.basename(os.path.normpath(run)), "dir": run}})


def log_scores(acc, scores, step):
    """--report-to: a before/after check (quick_eval's {context type: summary}, or None) as the scalars
    check/<context type> (mean score): the check before training at step 0, the one after at the last step."""
    if acc.trackers and scores:
        acc.log({f"check/{t}": s["mean"] for t, s in scores.items() if s.get("mean") is not None}, step=step)


def end_tracking(acc, report_to):
    """--report-to: close the tracker (every process calls it: Accelerate also ends the process group)."""
    if report_to != "none":
        acc.end_training()


def context_source(contexts_path, task, cc, seed, paraphrases, show):
    """(epoch_rows(e), description): rows from a contexts file (validated against the task), or
    sampled here epoch by epoch with the regime flags."""
    if contexts_path:
        rows = contexts.read_rows(contexts_path, task, paraphrases)
        covered = len({r["target"] for r in rows})
        if covered < len(task.pool) and show:
            print(f"note: {contexts_path} has contexts for {covered} of the {len(task.pool)} pool targets", flush=True)
        return file_epochs(rows, contexts_path, show)
    if show:
        contexts.note_unused_rho(cc, paraphrases)
    sampler = contexts.Sampler(task, cc, seed, paraphrases, show_progress=False)  # plan_run's bar covers it
    return sampler.epoch


def optimizer_for(model, tc, total):
    from transformers import get_linear_schedule_with_warmup
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=tc.lr,
                                  weight_decay=tc.weight_decay)
    return optimizer, get_linear_schedule_with_warmup(optimizer, tc.warmup_steps, total)


def resume_state(acc, out, model, optimizer, scheduler, full):
    """(start step, log rows, checkpoint folder or None) after restoring the last checkpoint of `out`."""
    from .common import read_jsonl
    ckpt = runs.last_checkpoint(out)
    if ckpt is None:
        if acc.is_main_process:
            print(f"--resume: no checkpoint in {out}; starting from scratch", flush=True)
        return 0, [], None
    state_path = os.path.join(ckpt, runs.RESUME_STATE)
    state = load_state_file(state_path, "trainer state")
    if not isinstance(state, dict) or not all(k in state for k in ("optimizer", "scheduler", "step", "world")) \
            or not isinstance(state["step"], int) or isinstance(state["step"], bool) or state["step"] < 0:
        raise UserError(f"{state_path} is not a trainer state of train.py (optimizer, scheduler, step, world); "
                        f"{_DAMAGED.format(ckpt=ckpt)}")
    if state["world"] != acc.num_processes:
        raise UserError(f"{ckpt} was written by {state['world']} processes, now {acc.num_processes}")
    load_weights(model, ckpt, full)
    try:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise UserError(f"{state_path}: the optimizer state does not fit this run ({type(e).__name__}: "
                        f"{str(e)[:120]}); {_DAMAGED.format(ckpt=ckpt)}") from None
    start = state["step"]
    log_path = runs.log_path(out)
    if isinstance(state.get("log_rows"), list):  # the checkpoint's own copy: whatever happened to the log file
        log_rows = [r for r in state["log_rows"] if isinstance(r, dict) and isinstance(r.get("step"), int)
                    and r["step"] <= start]
    else:  # a checkpoint written before checkpoints held the log: every row must say its step
        log_rows = [r for r in read_jsonl(log_path, "train log", types={"step": int}) if r["step"] <= start] \
            if os.path.isfile(log_path) else []
    if acc.is_main_process:
        print(f"resuming from {ckpt} (step {start})", flush=True)
    return start, log_rows, ckpt


_DAMAGED = "remove {ckpt} to resume from an earlier checkpoint, or start again with --overwrite"


def load_state_file(path, what):
    """torch.load of a state file train.py saved (trainer_state.pt, rng_state_<rank>.pt). A truncated or
    otherwise unreadable file (torch raises OSError EINVAL, RuntimeError, EOFError, UnpicklingError...) is
    ONE UserError naming it and the way out; running out of memory is left to run_main."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever a damaged file makes torch or pickle raise
        from .common import environment_error
        if environment_error(e) is not None:
            raise
        raise UserError(f"{path}: unreadable {what}, the file is damaged ({type(e).__name__}: "
                        f"{' '.join(str(e).split())[:100]}); {_DAMAGED.format(ckpt=os.path.dirname(path))}") from None


def quick_eval(model, tok, task, limit, seed=0, k=4, desc="generate"):
    """Mean score per context type on the first `limit` test inputs (evaluation.py's contexts):
    the short before/after check train.py prints."""
    from . import evaluation as ev
    examples = next(iter(task.tests.values()))[:limit]
    instances = ev.build_eval_contexts(task, examples, min(k, len(task.pool)), seed)
    was_training = model.training
    model.eval()
    use_cache = getattr(model.config, "use_cache", None)
    model.config.use_cache = True
    try:
        rows, _ = ev.predict(model, tok, task, instances, ev.default_max_new_tokens(task, tok), batch_size=16,
                             desc=desc)
    finally:
        model.config.use_cache = use_cache
        model.train(was_training)
    return ev.by_context_type(rows, ev.CONTEXT_TYPES, seed)
