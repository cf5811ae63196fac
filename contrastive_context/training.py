"""The IC-Train recipe, shared by train.py, sft.py (export_sft.py, TRL) and benchmarks/train_speed.py.

    encode, encode_rows   a context row -> token ids + labels (-100 on the prompt: the loss mask)
    collate, loss_fn      a left-padded micro-batch; the mean cross-entropy on its answer tokens only
    plan_epoch, plan_run  the epoch plan: length-grouped, seeded batches -> the run's optimizer steps
    LORA_TARGETS, lora_config
                          the LoRA modules (q,k,v by default) and settings

Each training instance is prompt(context, x) followed by answer(y): both are tokenised separately
and concatenated, and the labels are -100 on every prompt token, so the loss is log p(y | context, x)
only. A prompt longer than --max-len loses its earliest context examples first. The loop, the
optimizer and the run folder are train.py's (runs.RunWriter writes the folder).
"""
import math
import random

import torch

from . import contexts
from .common import UserError, progress

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


# ----------------------------------------------------------------------------- model
def lora_config(model, targets, r, alpha, dropout, name="the model"):
    """(peft's LoraConfig of IC-Train, the modules it adapts): rank r, scale alpha / r, dropout, on the
    modules of LORA_TARGETS[targets] that `model` has, in that order (none of them: a UserError naming `name`)."""
    from peft import LoraConfig
    wanted = LORA_TARGETS[targets]
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    present = [t for t in wanted if t in names]
    if not present:
        raise UserError(f"model {name} has none of the LoRA target modules {wanted}")
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none", task_type="CAUSAL_LM",
                      target_modules=present), present


def base_forward_takes_logits_to_keep(model):
    """Whether loss_fn may run the LM head on the answer positions only (the base model's forward
    takes logits_to_keep)."""
    import inspect
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters
