"""Data loss: output folders are owned (cc_output.json), locked (.cc_lock), never an input,
left clean by early failures; interrupted writers never leave a file that reads as a whole one
(outputs.py, and the scripts that use it).

The one-line refusals are cases of tests/test_bad_inputs.py (its data-loss section); here are the scenarios
that need several processes, a signal at a chosen moment, or a retry after a failure.
"""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from contrastive_context import common
from contrastive_context import outputs
from contrastive_context.common import UserError
from conftest import REPO, TINY_RUN_ARGS

ENV = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", CC_NO_PROGRESS="1", HF_HUB_OFFLINE="1",
           TRANSFORMERS_OFFLINE="1")
AL = ["--task", "alignment", "--n-train", "50", "--n-test", "20", "--threads", "1"]


def _start(script, *args, cwd):
    return subprocess.Popen([sys.executable, os.path.join(REPO, script), *map(str, args)], cwd=cwd, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_line(proc, pattern, timeout=120):
    t0, seen = time.monotonic(), []
    while time.monotonic() - t0 < timeout:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if re.search(pattern, line):
            return
    raise AssertionError(f"no line matching {pattern!r}:\n{''.join(seen)[-2000:]}")


def _run(script, *args, cwd):
    return subprocess.run([sys.executable, os.path.join(REPO, script), *map(str, args)], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=300)


def _one_error(proc):
    lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return lines[0]


@pytest.mark.slow
def test_two_trainings_on_one_folder_the_second_is_refused(tmp_path):
    """Two `train.py --out run` at once (seeds 1 and 2): the second stops with one error
    line naming the lock, whatever its flags; the first one's run is untouched."""
    args = [*AL, "--model", "tiny", "--regime", "random", "--max-steps", "20000", "--save-every", "0",
            "--eval-limit", "0", "--out", "run"]
    first = _start("train.py", *args, "--seed", "1", cwd=tmp_path)
    try:
        _wait_line(first, r"^model tiny")  # config.json written, training under way
        for flags in ([], ["--overwrite"], ["--resume"]):
            second = _run("train.py", *args, "--seed", "2", *flags, cwd=tmp_path)
            assert re.search(r"in use by another process \(lock \S*run/\.cc_lock held by pid "
                             f"{first.pid} ", _one_error(second))
        assert json.loads((tmp_path / "run" / "config.json").read_text())["seed"] == 1
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 143
    assert not (tmp_path / "run" / outputs.LOCK_FILE).exists()  # released on exit
    assert outputs.read_owner(tmp_path / "run")["kind"] == "train-run"


@pytest.mark.slow
def test_a_run_killed_before_training_is_retried_without_flags(tmp_path):
    """An early failure leaves nothing; even a SIGKILL during the model load leaves a folder
    that counts as empty (only the lock file): a plain retry is accepted. A failed --overwrite leaves
    the old run as it was (deletion happens only once the new run's inputs were all validated)."""
    args = [*AL, "--regime", "contrastive", "--max-steps", "2", "--eval-limit", "0", "--out", "r"]
    failed = _run("train.py", *args, "--model", "nosuchmodel", cwd=tmp_path)
    assert "unknown model" in _one_error(failed) and not (tmp_path / "r").exists()
    killed = _start("train.py", *args, "--model", "tiny", cwd=tmp_path)
    _wait_line(killed, r"^paraphrases for --rho")  # made in a temporary folder, not in r/
    killed.kill()
    killed.communicate(timeout=60)
    assert os.listdir(tmp_path / "r") in ([], [outputs.LOCK_FILE])
    retry = _run("train.py", *args, "--model", "tiny", cwd=tmp_path)
    assert retry.returncode == 0, retry.stderr[-2000:]
    before = {p: (tmp_path / "r" / p).read_bytes() for p in ("config.json", "final/adapter_model.safetensors")}
    for flags in (["--overwrite"], ["--resume"]):
        bad = _run("train.py", *args, "--model", "tiny", "--max-len", "8", *flags, cwd=tmp_path)
        assert "--max-len 8" in _one_error(bad)
        assert {p: (tmp_path / "r" / p).read_bytes() for p in before} == before
    again = _run("train.py", *args, "--model", "tiny", "--overwrite", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]


def test_resume_restores_log_rows_lost_between_checkpoint_and_log(tiny_run, tmp_path):
    """The log rows up to a checkpoint travel inside it (trainer_state.pt), so losing the
    train_log.jsonl write after a checkpoint's rename (SIGKILL) loses nothing after --resume."""
    import train
    b = str(tmp_path / "b")
    train.main([*TINY_RUN_ARGS, "--out", b, "--stop-after", "5"])  # killed after step 5: checkpoint-4 survives
    log = os.path.join(b, "train_log.jsonl")
    rows = common.read_jsonl(log)
    common.write_jsonl_atomic(log, [r for r in rows if r["step"] <= 2])  # the rows 3-4 write never happened
    train.main([*TINY_RUN_ARGS, "--out", b, "--resume"])
    want = [(r["step"], r["loss"], r["lr"]) for r in common.read_jsonl(os.path.join(tiny_run, "train_log.jsonl"))]
    assert [(r["step"], r["loss"], r["lr"]) for r in common.read_jsonl(log)] == want


@pytest.mark.slow
def test_sigterm_during_paraphrase_leaves_a_certified_partial_file(tmp_path, mt_dir):
    """SIGTERM while paraphrase.py rewrites --out all the time (--save-seconds 0): --out keeps
    a sidecar that matches it and says "complete": false; consumers refuse it, the same command
    finishes it, and then it is accepted."""
    out = tmp_path / "p.jsonl"
    args = ["--task", "mt", "--data", mt_dir, "--split", "all", "--backend", "llm", "--model", "tiny", "--n", "2",
            "--batch-size", "2", "--max-new-tokens", "16", "--save-seconds", "0", "--out", out]
    proc = _start("paraphrase.py", *args, cwd=tmp_path)
    t0 = time.monotonic()
    while not os.path.exists(str(out) + ".meta.json") and proc.poll() is None and time.monotonic() - t0 < 120:
        time.sleep(0.02)
    time.sleep(0.3)  # a few saves later, in the middle of one
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and err.count("error:") == 1 and "Traceback" not in err, err[-2000:]
    meta = common.read_meta(out)
    assert meta is not None and common.is_complete(out) and meta["complete"] is False
    assert meta["rows"] < meta["inputs"] == 60
    sc = ["--task", "mt", "--data", mt_dir, "--regime", "contrastive", "--rho", "0.5", "--paraphrases", out,
          "--out", tmp_path / "c.jsonl"]
    assert "interrupted run" in _one_error(_run("sample_contexts.py", *sc, cwd=tmp_path))
    assert not (tmp_path / "c.jsonl").exists()
    done = _run("paraphrase.py", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert common.read_meta(out)["complete"] is True and common.read_meta(out)["rows"] == 60
    assert _run("sample_contexts.py", *sc, cwd=tmp_path).returncode == 0


def test_evaluate_same_command_is_a_no_op_and_completion_is_recorded_last(tmp_path):
    """A finished --out of the same configuration is left as it is; of another one it is
    replaced only with --overwrite, and cc_output.json records the files of ONE evaluation."""
    import evaluate
    args = ["--model", "tiny", *AL, "--limit", "3", "--max-new-tokens", "4", "--out", str(tmp_path / "ev")]
    evaluate.main(args)
    files = {p.name: p.read_bytes() for p in (tmp_path / "ev").iterdir()}
    rec = outputs.check_complete(tmp_path / "ev", "evaluation")
    assert set(rec["files"]) == {"predictions.jsonl", "predictions.jsonl.meta.json", "summary.json", "summary.md"}
    evaluate.main(args)  # nothing to do
    assert {p.name: p.read_bytes() for p in (tmp_path / "ev").iterdir()} == files
    with pytest.raises(common.UserError, match="another configuration"):
        evaluate.main(args + ["--k", "2"])
    assert {p.name: p.read_bytes() for p in (tmp_path / "ev").iterdir()} == files
    evaluate.main(args + ["--k", "2", "--overwrite"])
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["k"] == 2 and outputs.check_complete(tmp_path / "ev", "evaluation")["config"] != rec["config"]


def test_older_studies_and_sweeps_are_recognised_by_their_own_manifests(tmp_path):
    """Folders written before cc_output.json existed: a reproduce.py study (stage manifests) and a
    sweep (sidecars) are still continued, and get the marker; a folder of look-alike names is not."""
    import reproduce
    import sweep
    study, fake = tmp_path / "study", tmp_path / "fake"
    study.mkdir()
    fake.mkdir()
    (study / "paraphrases.train.jsonl.done").write_text(json.dumps({"stage": "paraphrase-train", "cmd": ["x"],
                                                                    "digest": "0"}))
    (fake / "paraphrases.train.jsonl.done").write_text("{}")
    assert reproduce.made_by_reproduce(str(study)) and not reproduce.made_by_reproduce(str(fake))
    outputs.claim_output_dir(study, "study", "reproduce.py", reuse=True, lock=False,
                            legacy=reproduce.made_by_reproduce).start()
    assert outputs.read_owner(study)["kind"] == "study"
    with pytest.raises(common.UserError, match="not a reproduce.py study"):
        outputs.claim_output_dir(fake, "study", "reproduce.py", reuse=True, lock=False,
                                legacy=reproduce.made_by_reproduce)
    old = tmp_path / "sweep"
    common.write_jsonl_atomic(str(old / "runs" / "r.jsonl"), [{"a": 1}], meta={"kind": "sweep-run"})
    assert sweep.made_by_sweep(str(old)) and not sweep.made_by_sweep(str(fake))


# ----------------------------------------------------------------------------- ownership, lock, outputs != inputs
def _hf_model_folder(path):
    """A Hugging Face model folder (config.json + weights) with a user's file beside them."""
    path.mkdir()
    (path / "config.json").write_text('{"model_type": "llama", "architectures": ["LlamaForCausalLM"]}')
    (path / "model.safetensors").write_bytes(b"weights" * 100)
    (path / "thesis.tex").write_text("years of work")
    return {p.name: p.read_bytes() for p in path.iterdir()}


def _ours(path, kind="train-run", files=("config.json",)):
    with outputs.claim_output_dir(path, kind, "test") as out:
        out.start()
        out.keep()
        for f in files:
            (path / f).write_text("{}")
    return path


def test_claim_output_dir_never_deletes_or_writes_a_folder_that_is_not_ours(tmp_path):
    """config.json proves nothing; only cc_output.json (written by this code) does."""
    hf = tmp_path / "hf"
    before = _hf_model_folder(hf)
    for flags in ({"overwrite": True}, {"resume": True}, {"reuse": True}, {}):
        with pytest.raises(UserError, match="not a run of this program"):
            outputs.claim_output_dir(hf, "train-run", "test", **flags)
        assert {p.name: p.read_bytes() for p in hf.iterdir()} == before  # not even a lock file
    ev = _ours(tmp_path / "ev", kind="evaluation")  # ours, but another kind
    with pytest.raises(UserError, match="evaluation folder.*not a run"):
        outputs.claim_output_dir(ev, "train-run", "test", overwrite=True)
    assert (ev / "config.json").exists()


def test_claim_output_dir_ours_resume_overwrite_and_early_failure(tmp_path):
    run = _ours(tmp_path / "run", files=("config.json", "train_log.jsonl"))
    assert outputs.read_owner(run)["kind"] == "train-run" and not (run / outputs.LOCK_FILE).exists()
    with pytest.raises(UserError, match="--resume"):  # ours, but neither --resume nor --overwrite
        outputs.claim_output_dir(run, "train-run", "test")
    with outputs.claim_output_dir(run, "train-run", "test", resume=True) as out:
        out.start()
        assert (run / "train_log.jsonl").exists()  # kept
    with outputs.claim_output_dir(run, "train-run", "test", overwrite=True) as out:
        assert (run / "train_log.jsonl").exists()  # nothing is deleted before start()
        out.start()
        assert sorted(os.listdir(run)) == [outputs.LOCK_FILE, outputs.OWNER_FILE]  # emptied, still locked
    # a missing folder: an early failure leaves nothing, not even the parent folders made for it
    with pytest.raises(RuntimeError):
        with outputs.claim_output_dir(tmp_path / "a" / "b" / "new", "train-run", "test") as out:
            out.start()
            (tmp_path / "a" / "b" / "new" / "paraphrases.jsonl").write_text("{}\n")
            raise RuntimeError("model not found")
    assert not (tmp_path / "a").exists()
    # an empty folder stays, empty; after keep() a failure leaves the folder, which a retry accepts
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError):
        with outputs.claim_output_dir(tmp_path / "empty", "train-run", "test") as out:
            out.start()
            raise RuntimeError("boom")
    assert os.listdir(tmp_path / "empty") == []
    with pytest.raises(RuntimeError):
        with outputs.claim_output_dir(tmp_path / "kept", "train-run", "test") as out:
            out.start()
            out.keep()
            raise RuntimeError("boom")
    assert os.listdir(tmp_path / "kept") == [outputs.OWNER_FILE]
    for flags in ({"resume": True}, {"overwrite": True}):
        with outputs.claim_output_dir(tmp_path / "kept", "train-run", "test", **flags):
            pass
    # a folder holding only a lock file left by a killed process counts as empty
    (tmp_path / "stale").mkdir()
    (tmp_path / "stale" / outputs.LOCK_FILE).write_text("pid 1 on elsewhere\n")
    with outputs.claim_output_dir(tmp_path / "stale", "train-run", "test") as out:
        out.start()
    assert os.listdir(tmp_path / "stale") == [outputs.OWNER_FILE]


def test_output_lock_refuses_a_second_process_and_dies_with_its_holder(tmp_path):
    """One process per output folder; the kernel frees the lock of a killed holder."""
    run = _ours(tmp_path / "run")
    with outputs.claim_output_dir(run, "train-run", "test", resume=True):
        with pytest.raises(UserError, match=r"in use by another process \(lock .*\.cc_lock held by pid "
                                            + str(os.getpid())):
            outputs.claim_output_dir(run, "train-run", "test", resume=True)
    assert not (run / outputs.LOCK_FILE).exists()  # released and removed
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))!r})
        from contrastive_context import outputs
        out = outputs.claim_output_dir({str(run)!r}, "train-run", "holder", resume=True)
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=f"pid {holder.pid} "):
            outputs.claim_output_dir(run, "train-run", "test", resume=True)
    finally:
        holder.kill()  # SIGKILL: no cleanup code runs, the lock file stays
        holder.wait()
    assert (run / outputs.LOCK_FILE).exists()
    with outputs.claim_output_dir(run, "train-run", "test", resume=True):  # not stale: free again
        pass


def test_check_out_not_input(tmp_path):
    """An output never replaces an input, nor goes into an input folder."""
    data = tmp_path / "D"
    data.mkdir()
    (data / "train.en").write_text("a\n")
    para = tmp_path / "p.jsonl"
    para.write_text("{}\n")
    os.link(para, tmp_path / "hard.jsonl")
    os.symlink(data, tmp_path / "link")
    bad = [(data / "train.en", False), (data / "new.jsonl", False), (tmp_path / "link" / "x.jsonl", False),
           (para, False), (tmp_path / "hard.jsonl", False), (str(para) + ".meta.json", False),
           (data / "run", True), (tmp_path, True)]
    for out, is_dir in bad:
        with pytest.raises(UserError, match="input"):
            outputs.check_out_not_input(out, [str(data), None, "", "hub:x", "tiny", str(para)], is_dir=is_dir)
    for out, is_dir in ((tmp_path / "c.jsonl", False), (tmp_path / "run", True)):
        outputs.check_out_not_input(out, [str(data), None, str(para)], is_dir=is_dir)
    outputs.check_out_not_input(tmp_path, [str(para)], is_dir=True, may_hold_inputs=True)


def test_check_complete_for_readers(tmp_path):
    legacy = tmp_path / "old"
    legacy.mkdir()
    (legacy / "summary.json").write_text("{}")
    assert outputs.check_complete(legacy, "evaluation") is None  # made before markers: read as before
    with outputs.claim_output_dir(tmp_path / "ev", "evaluation", "test") as out:
        out.start()
        out.keep()
        (tmp_path / "ev" / "summary.json").write_text("{}")
        with pytest.raises(UserError, match="not a complete"):
            outputs.check_complete(out.path, "evaluation")
        out.complete(["summary.json"], config="c")
    assert outputs.check_complete(tmp_path / "ev", "evaluation")["config"] == "c"
    (tmp_path / "ev" / "summary.json").write_text('{"other": 1}')
    with pytest.raises(UserError, match="changed since"):
        outputs.check_complete(tmp_path / "ev", "evaluation")
