"""train.py --report-to none|tensorboard|wandb (Accelerate's trackers get what train_log.jsonl gets)
and train.py --config RUN/config.json (a run re-run exactly; flags given on the command line win)."""
import json
import os
import sys
import types

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import train
from conftest import TINY_RUN_ARGS
from contrastive_context import config
from contrastive_context.common import UserError

torch.set_num_threads(1)
TINY4 = [*TINY_RUN_ARGS, "--max-steps", "4"]  # (the last --max-steps wins)


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ----------------------------------------------------------------------------- --report-to
def test_report_to_tensorboard_logs_what_train_log_gets(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    run = str(tmp_path / "run")
    train.main([*TINY4, "--eval-limit", "2", "--report-to", "tensorboard", "--out", run])
    assert "\n  report_to        tensorboard\n" in capsys.readouterr().out
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(os.path.join(run, "tb")))
    log = read_jsonl(os.path.join(run, "train_log.jsonl"))
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    events = EventAccumulator(os.path.join(run, "tb"))
    events.Reload()
    for key in ("loss", "lr", "tokens_per_s"):  # the very values of train_log.jsonl (stored as float32)
        got = events.Scalars(f"train/{key}")
        assert [e.step for e in got] == [r["step"] for r in log], key
        assert [e.value for e in got] == [float(np.float32(r[key])) for r in log], key
    checks = [t for t in events.Tags()["scalars"] if t.startswith("check/")]
    assert "check/random" in checks and "check/zero" in checks
    assert all([e.step for e in events.Scalars(t)] == [0, 4] for t in checks)  # before and after training
    assert read_json(os.path.join(run, "config.json"))["report_to"] == "tensorboard"


def test_report_to_none_writes_nothing_else(tiny_run):
    """The default: no tracker folder, the config printout does not mention it (config.json records it)."""
    assert read_json(os.path.join(tiny_run, "config.json"))["report_to"] == "none"
    assert not {"tb", "wandb"} & set(os.listdir(tiny_run))
    assert "report_to" not in config.applicable(train.get_args(["--model", "tiny"]))
    assert config.applicable(train.get_args(["--report-to", "tensorboard"]))["report_to"] == "tensorboard"


@pytest.mark.parametrize("tracker", ["tensorboard", "wandb"])
def test_missing_tracker_package_is_one_error_before_the_run_folder(tracker, tmp_path, monkeypatch):
    import accelerate.utils
    monkeypatch.setattr(accelerate.utils, f"is_{tracker}_available", lambda: False)
    out = tmp_path / "run"
    with pytest.raises(UserError, match=f"--report-to {tracker} needs the {tracker} package: pip install {tracker}"):
        train.main([*TINY4, "--report-to", tracker, "--out", str(out)])
    assert not out.exists()


def test_report_to_wandb_goes_through_accelerate(tmp_path, monkeypatch):
    """wandb is not installed here: a stand-in module records what Accelerate's WandBTracker hands it."""
    import accelerate.tracking
    import accelerate.utils
    calls = {"init": [], "config": {}, "log": [], "finish": 0}

    class Run:
        def log(self, values, step=None):
            calls["log"].append((step, dict(values)))

        def finish(self):
            calls["finish"] += 1

    def init(**kw):
        calls["init"].append(kw)
        return Run()
    fake = types.ModuleType("wandb")
    fake.init, fake.config = init, types.SimpleNamespace(update=lambda v, allow_val_change: calls["config"].update(v))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setattr(accelerate.utils, "is_wandb_available", lambda: True)
    monkeypatch.setattr(accelerate.tracking, "_available_trackers",
                        [*accelerate.tracking._available_trackers, accelerate.utils.LoggerType.WANDB])
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    run = str(tmp_path / "w")
    train.main([*TINY4, "--max-steps", "2", "--eval-limit", "0", "--report-to", "wandb", "--out", run])
    assert calls["init"] == [{"project": "contrastive-context", "name": "w", "dir": run}]
    assert calls["config"]["lr"] == 5e-3 and calls["config"]["lora_modules"] and calls["finish"] == 1
    log = read_jsonl(os.path.join(run, "train_log.jsonl"))
    assert calls["log"] == [(r["step"], {f"train/{k}": r[k] for k in ("loss", "lr", "tokens_per_s")}) for r in log]


def test_resume_of_a_run_folder_from_before_report_to(tiny_run, tmp_path):
    """A run folder whose config.json has no "report_to" (written before the flag existed) resumes, and ends
    with the weights of an uninterrupted run."""
    b = str(tmp_path / "b")
    train.main([*TINY_RUN_ARGS, "--out", b, "--stop-after", "5"])
    cfg = read_json(os.path.join(b, "config.json"))
    del cfg["report_to"]
    with open(os.path.join(b, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f)
    train.main([*TINY_RUN_ARGS, "--out", b, "--resume"])
    wa, wb = (load_file(os.path.join(r, "final", "adapter_model.safetensors")) for r in (tiny_run, b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


# ----------------------------------------------------------------------------- --config
def _without_timing(path):
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in read_jsonl(path)]


def test_config_reruns_a_run_exactly_and_flags_given_win(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, b, c = (str(tmp_path / n) for n in "abc")
    train.main([*TINY4, "--eval-limit", "0", "--out", a])
    train.main(["--config", os.path.join(a, "config.json"), "--out", b])
    assert _without_timing(os.path.join(a, "train_log.jsonl")) == _without_timing(os.path.join(b, "train_log.jsonl"))
    wa, wb = (load_file(os.path.join(r, "final", "adapter_model.safetensors")) for r in (a, b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    for f in ("contexts.jsonl", "paraphrases.jsonl"):  # paraphrases made on the fly are made again, the same
        assert open(os.path.join(a, f), "rb").read() == open(os.path.join(b, f), "rb").read()
    ca, cb = read_json(os.path.join(a, "config.json")), read_json(os.path.join(b, "config.json"))
    assert cb["paraphrases"] == os.path.join(b, "paraphrases.jsonl") and "config" not in cb
    assert {k for k in ca.keys() | cb.keys() if ca.get(k) != cb.get(k)} == {"out", "paraphrases", "training_contexts"}
    assert {**ca["training_contexts"], "paraphrases": None} == {**cb["training_contexts"], "paraphrases": None}
    assert cb["training_contexts"]["paraphrases"] == cb["paraphrases"]  # each run's own on-the-fly file
    train.main(["--config", a, "--lr", "0.01", "--stop-after", "1", "--out", c])  # a run folder does too
    cc = read_json(os.path.join(c, "config.json"))
    assert cc["lr"] == 0.01 and cc["grad_accum"] == 2 and cc["n_train"] == 60
    # a flag typed with its default value still wins; so do --flag=value and an abbreviation
    got = train.get_args(["--config", a, "--grad-accum", "1", "--max-st", "3", "--seed=0", "--report-to=none"])
    assert (got.grad_accum, got.max_steps, got.lr, got.model) == (1, 3, 5e-3, "tiny")
    assert got.out == os.path.join("runs", "alignment-contrastive-a0.3-b0.2-r0.5-tiny-s0")  # --out is not taken


def test_config_refuses_what_is_not_a_run_config(tiny_run, tmp_path):
    (tmp_path / "hf.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "bad.json").write_text("{\"model\": ")
    ctx = tmp_path / "ctx.jsonl"
    ctx.write_text("changed\n")
    run_cfg = read_json(os.path.join(tiny_run, "config.json"))
    for i, (change, match) in enumerate((
            ({"cpu_threads": 2}, r"\"cpu_threads\" is not a flag of train\.py"),
            ({"lr": "fast"}, r"\"lr\" = 'fast' is not a valid --lr"),
            ({"lr": -1}, r"\"lr\" = '-1' is not a valid --lr"),
            ({"regime": "bogus"}, r"\"regime\" = 'bogus' is not a valid --regime"),
            ({"full": "yes"}, r"\"full\" must be true or false"),
            ({"report_to": "mlflow"}, r"\"report_to\" = 'mlflow' is not a valid --report-to"),
            ({"contexts": str(ctx), "contexts_sha256": "0" * 64}, r"the contexts file .*ctx\.jsonl changed since"))):
        (tmp_path / f"e{i}.json").write_text(json.dumps(dict(run_cfg, **change)))
        with pytest.raises(UserError, match=rf"^--config .*/e{i}\.json: {match}") as e:
            train.get_args(["--config", str(tmp_path / f"e{i}.json"), "--out", str(tmp_path / "x")])
        assert "\n" not in str(e.value)
    for name, match in (("missing.json", "file not found"),
                        ("hf.json", r"not a run config of train\.py \(it has no \"model\"\)"),
                        ("list.json", r"not a run config of train\.py \(expected a JSON object"),
                        ("bad.json", "malformed JSON")):
        with pytest.raises(UserError, match=rf"{name}:(\d+:)? {match}"):
            train.get_args(["--config", str(tmp_path / name), "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()
