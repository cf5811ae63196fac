"""runs.py, the run folder contract: the checkpoint lister, the weights resolver, the resume check, a run's config."""
import json
import os

import pytest

import evaluate
from contrastive_context import config
from contrastive_context import runs
from contrastive_context.common import UserError


def test_list_checkpoints(tmp_path):
    run = tmp_path / "run"
    for name in ("checkpoint-2", "checkpoint-10", "checkpoint-4", "final"):
        (run / name).mkdir(parents=True)
        (run / name / "adapter_config.json").write_text("{}")
    (run / "final" / "trainer_state.json").write_text(json.dumps({"step": 12}))
    (run / "checkpoint-x").mkdir()
    got = runs.list_checkpoints(str(run), with_base=True)
    assert [(s, n) for s, n, _, _ in got] == [(0, "base"), (2, "checkpoint-2"), (4, "checkpoint-4"),
                                              (10, "checkpoint-10"), (12, "final")]
    assert got[0][2] is None and {k for *_, k in got[1:]} == {"lora"}
    assert runs.list_checkpoints(str(run)) == got[1:]
    (run / "final" / "trainer_state.json").write_text(json.dumps({"step": 10}))  # final == last checkpoint
    assert [c[0] for c in runs.list_checkpoints(str(run), with_base=True)] == [0, 2, 4, 10]
    (run / "final" / "trainer_state.json").write_text(json.dumps({"step": "abc"}))
    with pytest.raises(UserError, match="must be an integer"):
        runs.list_checkpoints(str(run))


def test_list_checkpoints_of_a_full_weight_run(tmp_path):
    """--full / --model scratch runs save whole models (model.safetensors, no adapter_config.json):
    the same lister finds them; a folder without weights (no checkpoint yet) lists only step 0."""
    run = tmp_path / "run"
    for name in ("checkpoint-3", "final", "checkpoint-5"):
        (run / name).mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"full": True, "total_steps": 6}))
    assert runs.list_checkpoints(str(run), with_base=True) == [(0, "base", None, None)]  # no weights anywhere yet
    for name in ("checkpoint-3", "final"):
        (run / name / "model.safetensors").write_bytes(b"x")
    got = runs.list_checkpoints(str(run), with_base=True)
    assert [(s, n, k) for s, n, _, k in got] == [(0, "base", None), (3, "checkpoint-3", "full"), (6, "final", "full")]


def test_last_checkpoint_and_slimming(tmp_path):
    """--resume takes the newest checkpoint that holds trainer_state.pt; --keep-checkpoints N strips the
    resumable state from all but the newest N, which then no longer count as resumable."""
    run = tmp_path / "run"
    assert runs.last_checkpoint(str(run)) is None
    for step in (2, 4, 6):
        d = run / f"checkpoint-{step}"
        d.mkdir(parents=True)
        for f in ("model.safetensors", "trainer_state.json", runs.RESUME_STATE, "rng_state_0.pt"):
            (d / f).write_bytes(b"x")
    assert runs.last_checkpoint(str(run)) == str(run / "checkpoint-6")
    runs.slim_checkpoints(str(run), 2)
    assert sorted(os.listdir(run / "checkpoint-2")) == ["model.safetensors", "trainer_state.json"]
    assert runs.RESUME_STATE in os.listdir(run / "checkpoint-4")
    os.remove(run / "checkpoint-6" / runs.RESUME_STATE)
    assert runs.last_checkpoint(str(run)) == str(run / "checkpoint-4")


def test_check_resume_refuses_a_changed_setting_only(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    runs.check_resume(str(run), {"lr": 1.0}, ())  # no config.json yet: nothing to compare
    runs.write_config(str(run), {"lr": 1.0, "threads": 1, "seed": 0})
    runs.check_resume(str(run), {"lr": 1.0, "threads": 2, "new_key": 3}, {"threads"})
    with pytest.raises(UserError, match=r"--resume: .* was trained with lr=1.0, now lr=2.0"):
        runs.check_resume(str(run), {"lr": 2.0, "threads": 2}, {"threads"})


def test_run_config_supplies_task_flags(tmp_path):
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    (run / "final" / "adapter_config.json").write_text("{}")
    (run / "config.json").write_text(json.dumps({"model": "tiny", "task": "alignment",
                                                 "task_config": {"task": "alignment", "n_train": 30,
                                                                 "align_len": 3}}))
    weights = runs.resolve_weights(str(run))
    assert weights.folder.endswith("final") and weights.kind == "lora" and weights.config["model"] == "tiny"
    parser = evaluate.build_parser()
    argv = ["--out", "x", "--n-train", "40", "--adapter", str(run)]
    args = parser.parse_args(argv)
    taken = runs.apply_config(args, weights.config, config.explicit_dests(parser, argv))
    assert args.model == "tiny" and args.align_len == 3 and args.n_train == 40  # explicit flag wins
    assert set(taken) == {"align_len", "model"}
    assert runs.resolve_weights(str(run / "final")).config["model"] == "tiny"
    with pytest.raises(UserError):
        runs.resolve_weights(str(tmp_path))


def test_resolve_weights_of_a_full_run_and_a_bare_adapter(tmp_path):
    """A --full run's weights are whole models (RUN -> RUN/final, RUN/checkpoint-N); a bare adapter folder
    (a published one) has no run config; a run config with a bad field is one error naming it."""
    run = tmp_path / "run"
    for name in ("final", "checkpoint-2"):
        (run / name).mkdir(parents=True)
        (run / name / "model.safetensors").write_bytes(b"x")
    (run / "config.json").write_text(json.dumps({"model": "scratch", "full": True}))
    for path, folder in ((run, run / "final"), (run / "checkpoint-2", run / "checkpoint-2")):
        w = runs.resolve_weights(str(path))
        assert (w.folder, w.kind, w.config["model"]) == (str(folder), "full", "scratch")
    ada = tmp_path / "adapters" / "x"
    ada.mkdir(parents=True)
    (ada / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "tiny"}))
    assert runs.resolve_weights(str(ada)) == runs.Weights(str(ada), "lora", None)
    assert runs.adapter_base(str(ada)) == "tiny"
    (run / "config.json").write_text(json.dumps({"model": 123, "full": True}))
    with pytest.raises(UserError, match=r"its run config.json: \"model\" must be a model name"):
        runs.resolve_weights(str(run))
    with pytest.raises(UserError, match="adapter folder not found"):
        runs.resolve_weights(str(tmp_path / "missing"))
