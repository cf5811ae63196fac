"""IC-Train data for other trainers: the exact (prompt, completion) strings train.py trains on.

    render_rows(rows, task, tok, paraphrases, max_len) -> [{"id", "epoch", "target", "kind", "prompt", "completion"}]
    tokenize(row, tok) -> {"input_ids", "completion_mask"}   train.py's tokens for one row

A row's prompt is task.prompt(context, x) after train.py's shortening (the earliest context
examples dropped until prompt + answer fit --max-len), its completion task.answer(y) (" y\\n"): the
strings training.encode tokenises. train.py tokenises them separately (the prompt with the
tokenizer's specials, the answer without) and trains on the answer tokens only; `tokenize` does the
same, so a dataset mapped through it is one TRL's SFTTrainer takes as already processed (input_ids +
completion_mask) and trains on train.py's tokens exactly. Given the raw strings instead, TRL
tokenises prompt + completion jointly and appends the tokenizer's EOS to every completion: the same
tokens plus one EOS token per sequence (tests/test_sft.py checks both).
"""
from . import contexts
from .common import UserError
from .training import encode


def render(task, context, ex, tok, max_len):
    """(prompt, completion) strings of one training sequence, exactly as training.encode shortens it."""
    seq = encode(tok, task, context, ex, max_len)
    prompt = task.prompt(context[seq["dropped"]:], ex["x"], ex.get("meta"))
    completion = task.answer(ex["y"])
    # only a prompt with every context example dropped can have been cut further (training.encode's last resort)
    if seq["dropped"] == len(context) and \
            seq["input_ids"] != tokenize({"prompt": prompt, "completion": completion}, tok)["input_ids"]:
        # the prompt was cut inside its text (even without context it does not fit): no string says that
        raise UserError(f"the prompt of {ex['id']} does not fit --max-len {max_len} even without context "
                        "examples; raise --max-len")
    return prompt, completion


def render_rows(rows, task, tok, paraphrases, max_len, bar=None):
    """One {"id", "epoch", "target", "kind", "prompt", "completion"} per contexts row, in the file's order."""
    pool = contexts.pool_by_id(task)
    out = []
    for r in rows:
        ex = pool[r["target"]]
        prompt, completion = render(task, contexts.resolve(r, task, paraphrases), ex, tok, max_len)
        out.append({"id": f"{r['epoch']}:{r['target']}", "epoch": r["epoch"], "target": r["target"],
                    "kind": r.get("kind"), "prompt": prompt, "completion": completion})
        if bar is not None:
            bar.update(1)
    return out


def tokenize(row, tok):
    """train.py's tokens of one prompt/completion row: {"input_ids", "completion_mask"} (1 = trained on)."""
    prompt = tok(row["prompt"])["input_ids"]
    answer = tok(row["completion"], add_special_tokens=False)["input_ids"]
    return {"input_ids": prompt + answer, "completion_mask": [0] * len(prompt) + [1] * len(answer)}
