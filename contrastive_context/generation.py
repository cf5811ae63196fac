"""Batched greedy decoding (or seeded sampling) with the KV cache, for evaluation, probes and paraphrases.

    generate(model, tokenizer, prompts, max_new_tokens, stop="\n") -> [answer, ...]
    generate(..., temperature=0.8, top_p=0.95, num_samples=4, seed=0) -> [[candidate] * 4, ...]

How it works (one plain loop, no `model.generate`, so it behaves the same on
transformers 4.57 and 5.x and every step is visible):
  1. tokenize every prompt once; sort prompts by length (longest first, so the peak
     memory shows up in the first batch) and cut them into batches;
  2. left-pad each batch (pad token on the left, attention mask 0 there, position ids
     counted from the first real token), run the prompt once to fill the KV cache;
  3. decode greedily one token at a time, feeding only the new token and the cache;
  4. after each step, decode the new text of every still-running sequence and mark it
     done when it contains `stop` (or emitted EOS); finished rows are dropped from the
     batch and the KV cache (Cache.batch_select_indices), and the loop ends when all are done;
  5. cut each text at `stop`, strip it, and put the answers back in the prompts' order.
Greedy decoding with a fixed order is deterministic for a given batch size (padding
can change the floating-point sums slightly, so a different batch size may, rarely,
flip a near-tie; benchmarks/generation.py reports the agreement).
"""
import inspect

import torch

from .common import progress as progress_bar


def _eos_ids(model, tokenizer):
    ids = set()
    for src in (getattr(model, "generation_config", None), tokenizer):
        eos = getattr(src, "eos_token_id", None) if src is not None else None
        if eos is None:
            continue
        ids.update(eos if isinstance(eos, (list, tuple)) else [eos])
    return sorted(int(i) for i in ids)


def _accepts_logits_to_keep(model):
    """Recent causal LMs can return the logits of the last position only (saves memory)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return "logits_to_keep" in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False


def _model_device(model):
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


@torch.inference_mode()
def _pick(logits, sampling, gens):
    """Next token per row: argmax (greedy), or a draw from the temperature / top-p filtered
    distribution with that row's own torch.Generator (so a row's draw does not depend on the
    other rows of the batch)."""
    if sampling is None:
        return logits.argmax(dim=-1)
    temperature, top_p = sampling
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sp, si = probs.sort(dim=-1, descending=True)
        keep = sp.cumsum(-1) - sp < top_p          # the smallest prefix with mass >= top_p
        sp = sp * keep
        probs = torch.zeros_like(probs).scatter_(-1, si, sp)
    return torch.stack([torch.multinomial(probs[j], 1, generator=g)[0] for j, g in enumerate(gens)])


def _generate_batch(model, batch_ids, max_new_tokens, stop, pad_id, eos_ids, tokenizer, last_only,
                    sampling=None, seeds=None):
    device = _model_device(model)
    B, T = len(batch_ids), max(len(ids) for ids in batch_ids)
    # left padding: [pad ... pad, prompt tokens]
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    for i, ids in enumerate(batch_ids):
        input_ids[i, T - len(ids):] = torch.tensor(ids, dtype=torch.long)
        mask[i, T - len(ids):] = 1
    input_ids, mask = input_ids.to(device), mask.to(device)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    extra = {"logits_to_keep": 1} if last_only else {}

    generated = [[] for _ in range(B)]
    done = [False] * B
    rows = list(range(B))               # the prompt of each row of the tensors (shrinks as rows finish)
    past = None
    gens = None
    if sampling is not None:
        gens = [torch.Generator(device="cpu").manual_seed(int(sd)) for sd in seeds]
    eos = torch.tensor(eos_ids, device=device) if eos_ids else None
    for step in range(max_new_tokens):
        out = model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids,
                    past_key_values=past, use_cache=True, **extra)
        past = out.past_key_values
        next_tok = _pick(out.logits[:, -1, :], sampling, [gens[i] for i in rows] if gens else None)
        hit_eos = torch.isin(next_tok, eos) if eos is not None else torch.zeros_like(next_tok, dtype=torch.bool)
        next_cpu, eos_cpu = next_tok.tolist(), hit_eos.tolist()
        for j, i in enumerate(rows):
            if done[i]:
                continue
            if eos_cpu[j]:
                done[i] = True
                continue
            generated[i].append(next_cpu[j])
            if stop and stop in tokenizer.decode(generated[i], skip_special_tokens=True):
                done[i] = True
        live = [j for j, i in enumerate(rows) if not done[i]]
        if not live or step == max_new_tokens - 1:
            break                       # early exit: every sequence has stopped
        if len(live) < len(rows) and hasattr(past, "batch_select_indices"):
            # drop finished rows from the batch and the KV cache: later steps cost less
            sel = torch.tensor(live, dtype=torch.long, device=device)
            past.batch_select_indices(sel)
            mask, position_ids = mask[sel], position_ids[sel]
            feed = [next_cpu[j] for j in live]
            rows = [rows[j] for j in live]
        else:  # (a cache that cannot shrink: finished rows are fed padding, their outputs ignored)
            feed = [pad_id if done[i] else next_cpu[j] for j, i in enumerate(rows)]
        input_ids = torch.tensor(feed, dtype=torch.long, device=device).unsqueeze(1)
        mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=mask.dtype, device=device)], dim=1)
        position_ids = position_ids[:, -1:] + 1
    texts = []
    for ids in generated:
        text = tokenizer.decode(ids, skip_special_tokens=True)
        if stop:
            text = text.split(stop, 1)[0]
        texts.append(text.strip())
    return texts, sum(len(g) for g in generated)


@torch.no_grad()  # without it the KV cache keeps every step's autograd graph alive: memory grows per token
# Hand-written, kept (see the module docstring): per-row stop strings with finished rows dropped from the batch
# and the KV cache, identical on transformers 4.57 and 5.x; model.generate's stop_strings keeps finished rows.
def generate(model, tokenizer, prompts, max_new_tokens, stop="\n", batch_size=32, progress=True,
             return_stats=False, temperature=None, top_p=1.0, num_samples=1, seed=0, on_batch=None):
    """Answers for `prompts` (text before `stop`, stripped), in the prompts' order.

    Greedy by default. With temperature > 0: sampling (temperature, then nucleus top_p), and
    num_samples candidates per prompt; the result is then a list of num_samples-lists. Every
    candidate (prompt i, sample j) draws from its own generator seeded with
    sample_seed(seed, i, j) (or sample_seed(seed[i], 0, j) when seed is a list, one per prompt),
    so the same call gives the same candidates whatever the batch size (up to the rare float
    near-tie that padding can flip, as for greedy decoding).
    With return_stats=True, also returns {"new_tokens": int} (tokens generated, stop included).
    on_batch(n): called after each batch with the number of prompts it answered (e.g. a caller's
    progress bar, so that it moves per batch).
    """
    if batch_size < 1 or max_new_tokens < 1 or num_samples < 1:
        raise ValueError("batch_size, max_new_tokens and num_samples must be >= 1")
    sampling = None
    if temperature is not None and temperature > 0:
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        sampling = (float(temperature), float(top_p))
    elif num_samples > 1:
        raise ValueError("num_samples > 1 needs sampling (temperature > 0)")
    n_prompts = len(prompts)
    prompts = [p for p in prompts for _ in range(num_samples)]  # candidate j of prompt i at i*n + j
    if not prompts:
        return ([], {"new_tokens": 0}) if return_stats else []
    if isinstance(seed, (list, tuple)):  # one seed per prompt: candidates independent of the call's other prompts
        if len(seed) != n_prompts:
            raise ValueError(f"{len(seed)} seeds for {n_prompts} prompts")
        seeds = [sample_seed(seed[k // num_samples], 0, k % num_samples) for k in range(len(prompts))]
    else:
        seeds = [sample_seed(seed, k // num_samples, k % num_samples) for k in range(len(prompts))]
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    eos_ids = _eos_ids(model, tokenizer)
    last_only = _accepts_logits_to_keep(model)
    was_training = model.training
    model.eval()

    encoded = tokenizer(prompts, add_special_tokens=True)["input_ids"]
    order = sorted(range(len(prompts)), key=lambda i: (-len(encoded[i]), i))
    answers, n_new = [None] * len(prompts), 0
    kw = {} if progress else {"disable": True}
    bar = progress_bar(total=len(prompts), desc="generate", unit="prompt", **kw)
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            texts, n = _generate_batch(model, [encoded[i] for i in idx], max_new_tokens, stop, pad_id,
                                       eos_ids, tokenizer, last_only, sampling, [seeds[i] for i in idx])
            n_new += n
            for i, t in zip(idx, texts):
                answers[i] = t
            bar.update(len(idx))
            if on_batch is not None:
                on_batch(len(idx))
    finally:
        bar.close()
        if was_training:
            model.train()
    if sampling is not None:
        answers = [answers[i * num_samples:(i + 1) * num_samples] for i in range(n_prompts)]
    return (answers, {"new_tokens": n_new}) if return_stats else answers


def sample_seed(seed, i, j):
    """Seed of candidate j of prompt i (a stable 63-bit hash, independent of batching)."""
    import hashlib
    h = hashlib.sha256(f"{seed}-{i}-{j}".encode()).digest()
    return int.from_bytes(h[:8], "big") & ((1 << 63) - 1)
