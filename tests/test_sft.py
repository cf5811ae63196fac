"""export_sft.py + contrastive_context.sft: IC-Train data as prompt/completion JSONL that TRL's SFTTrainer
trains on with train.py's exact tokens, answer-only mask and first-step loss (TRL is an optional extra:
requirements-extras.txt; CI installs it)."""
import json
import os

import pytest
import torch

from contrastive_context import contexts, models, sft, tasks, training
from contrastive_context.common import UserError


def _export(run_script, tmp_path, mt_dir, *extra):
    ctx, out = tmp_path / "contexts.jsonl", tmp_path / "sft.jsonl"
    run_script("sample_contexts.py", "--task", "mt", "--data", mt_dir, "--regime", "contrastive", "--epochs", "2",
               "--out", ctx, check=True)
    proc = run_script("export_sft.py", "--task", "mt", "--data", mt_dir, "--contexts", ctx, "--model", "tiny",
                      "--out", out, *extra, check=True)
    return ctx, out, proc


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """TRL's Trainer initialises Accelerate's process-wide state; later in-process train.py runs (other test
    files) must start from a clean one, as a new process would."""
    yield
    from accelerate.state import AcceleratorState
    AcceleratorState._reset_state(reset_partial_state=True)


def _encoded(mt_dir, ctx, max_len=1024):
    """train.py's sequences of the contexts file (training.encode), in the file's order."""
    task = tasks.load_task("mt", data=str(mt_dir))
    tok = models.load("tiny")[1]
    rows, pool = contexts.read_rows(str(ctx), task), contexts.pool_by_id(task)
    return [training.encode(tok, task, contexts.resolve(r, task), pool[r["target"]], max_len) for r in rows], tok


@pytest.mark.slow
def test_export_rows_are_train_py_sequences(run_script, tmp_path, mt_dir):
    ctx, out, proc = _export(run_script, tmp_path, mt_dir)
    rows = [json.loads(line) for line in open(out, encoding="utf-8")]
    seqs, tok = _encoded(mt_dir, ctx)
    assert len(rows) == len(seqs) == 2 * 48 and os.path.isfile(str(out) + ".meta.json")
    assert {r["epoch"] for r in rows} == {0, 1} and all(r["completion"].endswith("\n") for r in rows)
    for r, s in zip(rows, seqs):
        t = sft.tokenize(r, tok)
        assert t["input_ids"] == s["input_ids"]
        assert t["completion_mask"] == [int(l != -100) for l in s["labels"]]
    # same command, same bytes
    again = tmp_path / "again.jsonl"
    run_script("export_sft.py", "--task", "mt", "--data", mt_dir, "--contexts", ctx, "--model", "tiny",
               "--out", again, check=True)
    assert open(again, "rb").read() == open(out, "rb").read()


@pytest.mark.slow
def test_export_shortens_like_train_py_and_refuses_what_no_string_can_say(run_script, tmp_path, mt_dir):
    ctx, out, _ = _export(run_script, tmp_path, mt_dir, "--max-len", "300")
    rows = [json.loads(line) for line in open(out, encoding="utf-8")]
    seqs, tok = _encoded(mt_dir, ctx, max_len=300)
    assert any(s["dropped"] for s in seqs)  # the bound bites: context examples were dropped
    for r, s in zip(rows, seqs):
        assert sft.tokenize(r, tok)["input_ids"] == s["input_ids"] and len(s["input_ids"]) <= 300
    proc = run_script("export_sft.py", "--task", "mt", "--data", mt_dir, "--contexts", ctx, "--model", "tiny",
                      "--max-len", "100", "--out", tmp_path / "short.jsonl")
    assert proc.returncode == 2 and "raise --max-len" in proc.stderr and not (tmp_path / "short.jsonl").exists()


@pytest.mark.slow
def test_trl_sft_trainer_trains_on_train_py_tokens_mask_and_loss(run_script, tmp_path, mt_dir):
    datasets = pytest.importorskip("datasets")
    trl = pytest.importorskip("trl")
    ctx, out, _ = _export(run_script, tmp_path, mt_dir)
    seqs, tok = _encoded(mt_dir, ctx)
    # two rows, batch 2: TRL's first step sees exactly these two sequences, whatever its sampler's order
    two = tmp_path / "two.jsonl"
    two.write_text("".join(open(out, encoding="utf-8").readlines()[:2]), encoding="utf-8")
    raw = datasets.load_dataset("json", data_files=str(two), split="train")
    ds = raw.map(lambda r: sft.tokenize(r, tok), remove_columns=raw.column_names)

    torch.manual_seed(0)
    model = models.load("tiny")[0]
    ref = training.loss_fn(model, training.collate(seqs[:2], tok.pad_token_id, "cpu"), last_only=False).item()
    args = trl.SFTConfig(output_dir=str(tmp_path / "trl"), max_steps=2, per_device_train_batch_size=2,
                         learning_rate=1e-3, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
                         completion_only_loss=True, max_length=1024, seed=0, lr_scheduler_type="constant",
                         bf16=False, fp16=False)  # fp32, as train.py on CPU (TRL defaults to bf16)
    trainer = trl.SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    for i, s in enumerate(seqs[:2]):  # TRL pads on the right; the real tokens and the loss mask are train.py's
        n = int(batch["attention_mask"][i].sum())
        assert batch["input_ids"][i, :n].tolist() == s["input_ids"]
        assert batch["labels"][i, :n].tolist() == s["labels"] and (batch["labels"][i, n:] == -100).all()
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 2
    assert losses[0] == pytest.approx(ref, rel=1e-4)  # the first step's loss is train.py's loss on the batch

    # raw strings: TRL tokenises prompt + completion itself and appends EOS to each completion
    plain = trl.SFTTrainer(model=models.load("tiny")[0], args=args, train_dataset=raw, processing_class=tok)
    for i, s in enumerate(seqs[:2]):
        row = plain.train_dataset[i]
        assert row["input_ids"] == s["input_ids"] + [tok.eos_token_id]
        assert row["completion_mask"] == [int(l != -100) for l in s["labels"]] + [1]


def test_render_refuses_a_prompt_cut_inside_its_text(mt_dir):
    task = tasks.load_task("mt", data=str(mt_dir))
    tok = models.load("tiny")[1]
    ex = task.pool[0]
    prompt, completion = sft.render(task, task.pool[1:3], ex, tok, 1024)
    assert prompt == task.prompt(task.pool[1:3], ex["x"]) and completion == task.answer(ex["y"])
    with pytest.raises(UserError, match="raise --max-len"):
        sft.render(task, [], ex, tok, 100)


@pytest.mark.slow
def test_examples_trl_sft_trains_a_lora_adapter(run_script, tmp_path, mt_dir):
    pytest.importorskip("trl")
    _, out, _ = _export(run_script, tmp_path, mt_dir)
    proc = run_script("examples/trl_sft.py", "--data", out, "--model", "tiny", "--max-steps", "2",
                      "--out", tmp_path / "adapter", check=True)
    assert "wrote the adapter" in proc.stdout
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()


def test_accelerate_configs_load():
    from accelerate.commands.config.config_args import load_config_from_file
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "accelerate")
    kinds = {load_config_from_file(os.path.join(here, f)).distributed_type.value for f in sorted(os.listdir(here))}
    assert kinds == {"MULTI_GPU", "FSDP", "DEEPSPEED"}


def test_examples_trl_sft_defaults_are_train_py_s_lr_and_lora_settings():
    import dataclasses
    import importlib.util
    from contrastive_context import config
    from contrastive_context.training import LORA_TARGETS
    ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("trl_sft", os.path.join(ROOT, "examples", "trl_sft.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    d = vars(mod.build_parser().parse_args(["--data", "x", "--model", "tiny", "--out", "y"]))
    tc = config.TrainConfig()
    assert d["lr"] == config.default_lr(full=False) == 2e-4
    assert (d["lora_r"], d["lora_alpha"], d["lora_dropout"], d["lora_targets"]) == \
        (tc.lora_r, tc.lora_alpha, tc.lora_dropout, tc.lora_targets)
    assert LORA_TARGETS[d["lora_targets"]] == ["q_proj", "k_proj", "v_proj"]
    src = open(os.path.join(ROOT, "train.py")).read()
    assert "config.default_lr(args.full)" in src and "2e-4" not in src.split("def main")[-1]
    assert "default: 2e-4" in {f.name: f.metadata["help"] for f in dataclasses.fields(tc)}["lr"]
