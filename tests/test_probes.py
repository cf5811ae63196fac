import pathlib
"""probes.py: derangements, probe instances, the three scores with known fake predictors, the CLI."""
import json
import os
import random

import pytest

import probes
from contrastive_context import runs
from contrastive_context import tasks
from contrastive_context.common import UserError

K = 4


@pytest.fixture(scope="module")
def align():
    return tasks.load_task("alignment", n_train=60, n_test=30)


@pytest.fixture(scope="module")
def instances(align):
    return probes.build_probe_instances(align, align.tests["test"][:20], K, 0)


def parse(prompt):
    """An alignment prompt -> ([(x_i, y_i)], query x)."""
    lines = prompt.split("\n")
    ctx = [tuple(line.split(": ", 1)) for line in lines[:-1]]
    return ctx, lines[-1].rstrip(":")


def ignores_context(prompts):  # pure IWL: the answer depends on the query only
    return ["".join(reversed(parse(p)[1])).lower() * 2 for p in prompts]


def copies_first_label(prompts):  # blind copying
    return [parse(p)[0][0][1] if parse(p)[0] else "zz" for p in prompts]


def copies_most_similar(prompts):  # ideal ICL: the label of the context input sharing most symbols
    out = []
    for p in prompts:
        ctx, x = parse(p)
        if not ctx:
            out.append("zz")
            continue
        best = max(range(len(ctx)), key=lambda i: (len(set(ctx[i][0]) & set(x)), -i))
        out.append(ctx[best][1])
    return out


def test_derangement():
    rng = random.Random(0)
    for n in (2, 3, 4, 7):
        for _ in range(50):
            perm = probes.derangement(n, rng)
            assert sorted(perm) == list(range(n)) and all(perm[i] != i for i in range(n))
    assert probes.derangement(5, random.Random(1)) == probes.derangement(5, random.Random(1))
    with pytest.raises(probes.UserError):
        probes.derangement(1, rng)


def test_probe_instances(align, instances):
    again = probes.build_probe_instances(align, align.tests["test"][:20], K, 0)
    assert [[c["id"] + c["y"] for c in i["copy"]] for i in again] == [[c["id"] + c["y"] for c in i["copy"]]
                                                                        for i in instances]
    for inst in instances:
        assert len(inst["random"]) == K and "icl" in inst  # alignment always has a paraphrase
        assert sum(inst["weights"]) == pytest.approx(1.0) and min(inst["weights"]) >= 0
        p = inst["position"]
        assert inst["icl"][p]["id"].startswith(inst["example"]["id"] + "#")
        assert inst["weights"][p] == max(inst["weights"])  # the paraphrase is the most similar input
        assert [c["x"] for c in inst["copy"]] == [c["x"] for c in inst["icl"]]
        labels = [c["y"] for c in inst["icl"]]
        assert sorted(c["y"] for c in inst["copy"]) == sorted(labels)
        assert all(inst["copy"][i]["y"] != labels[i] or labels.count(labels[i]) > 1 for i in range(K))


def test_ignoring_context_gives_iwl_100(align, instances):
    s = probes.probe_scores(align, instances, ignores_context)
    assert s["iwl"] == {"score": 100.0, "n": len(instances), "zero_fail": 0.0}
    assert s["copy"]["score"] < 10


def test_blind_copier_has_high_copy_score(align, instances):
    s = probes.probe_scores(align, instances, copies_first_label)
    # the first label is "another" label whenever the paraphrase is not first: ~ (K-1)/K of inputs
    n_not_first = sum(i["position"] != 0 for i in instances)
    assert s["copy"]["score"] >= 100.0 * n_not_first / len(instances) - 1e-9 and s["copy"]["score"] > 50
    assert s["iwl"]["score"] < 60  # its answers change with the context


def test_ideal_icl_scores_higher_icl_than_copier_and_low_copy(align, instances):
    icl = probes.probe_scores(align, instances, copies_most_similar)
    blind = probes.probe_scores(align, instances, copies_first_label)
    assert icl["icl"]["score"] > blind["icl"]["score"]
    assert icl["copy"]["score"] < blind["copy"]["score"]
    # predicting exactly the paraphrase's label gives ICL = sum_i w_i chrF(y_p, y_i) >= w_p * 100
    s, per, preds = probes.probe_scores(align, instances, copies_most_similar, details=True)
    prompts, where = probes.probe_prompts(align, instances)
    checked = 0
    for inst, pos, v in zip(instances, where, per["icl"]):
        if preds[pos["icl"]] == inst["icl"][inst["position"]]["y"]:
            assert v >= inst["weights"][inst["position"]] * 100.0 - 1e-6
            checked += 1
    assert checked >= len(instances) // 2


def test_predict_fn_length_checked(align, instances):
    with pytest.raises(ValueError):
        probes.probe_scores(align, instances, lambda ps: ps[:-1])


@pytest.mark.slow
def test_probes_cli_on_tiny_run(run_script, tiny_run, tmp_path):
    import shutil
    run = tmp_path / "run"  # a copy: this test corrupts a checkpoint of it
    shutil.copytree(tiny_run, run)
    out, png = tmp_path / "probes.jsonl", tmp_path / "probes.png"
    proc = run_script("probes.py", "--run", run, "--limit", "4", "--out", out, "--plot", png, "--threads", "1",
                      "--max-new-tokens", "8")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted({r["step"] for r in rows}) == [0, 4, 8]
    assert len(rows) == 3 * 3 and {r["probe"] for r in rows} == {"iwl", "icl", "copy"}
    for r in rows:
        assert set(r) >= {"run", "step", "probe", "score", "n"} and r["n"] == 4 and 0 <= r["score"] <= 100
    assert png.stat().st_size > 1000
    meta = json.loads((tmp_path / "probes.jsonl.meta.json").read_text())
    assert meta["kind"] == "probes" and meta["complete"] and meta["rows"] == 9
    assert not (tmp_path / "probes.jsonl.partial.jsonl").exists()

    # a corrupted checkpoint: one error line, NO --out, a partial progress file that says so
    last = runs.list_checkpoints(str(run))[-1]
    assert last[0] == 8
    ada = pathlib.Path(last[2]) / "adapter_model.safetensors"
    good = ada.read_bytes()
    ada.write_bytes(good[: len(good) // 3])
    out2 = tmp_path / "p2.jsonl"
    proc = run_script("probes.py", "--run", run, "--limit", "4", "--out", out2, "--threads", "1",
                      "--max-new-tokens", "8")
    assert proc.returncode == 2 and proc.stderr.count("error:") == 1 and "Traceback" not in proc.stderr
    assert not out2.exists() and not (tmp_path / "p2.jsonl.meta.json").exists()
    part = tmp_path / "p2.jsonl.partial.jsonl"
    assert json.loads((tmp_path / "p2.jsonl.partial.jsonl.meta.json").read_text())["kind"] == "probes-partial"
    assert sorted({json.loads(l)["step"] for l in part.read_text().splitlines()}) == [0, 4]
    # repaired: the re-run reuses the finished checkpoints and gives the same result as a fresh run
    ada.write_bytes(good)
    proc = run_script("probes.py", "--run", run, "--limit", "4", "--out", out2, "--threads", "1",
                      "--max-new-tokens", "8")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("(reused)") == 2
    assert out2.read_bytes() == out.read_bytes() and not part.exists()

    # a longer run list with the same --out reuses the scores of the runs already probed there
    run2 = tmp_path / "run2"
    shutil.copytree(run, run2)
    proc = run_script("probes.py", "--run", run, "--run", run2, "--limit", "4", "--out", out, "--threads", "1",
                      "--max-new-tokens", "8")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("(reused)") == 3  # all of run's checkpoints; run2's are new
    both = [json.loads(line) for line in out.read_text().splitlines()]
    assert both[:9] == rows and len(both) == 18
    assert [r["score"] for r in both[9:]] == [r["score"] for r in rows]  # same adapters, same scores


@pytest.mark.slow
def test_probes_steps_selects_checkpoints(run_script, tiny_run, tmp_path):
    out = tmp_path / "p.jsonl"
    proc = run_script("probes.py", "--run", tiny_run, "--limit", "2", "--checkpoints", "0,8", "--out", out,
                      "--threads", "1", "--max-new-tokens", "4")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted({json.loads(line)["step"] for line in out.read_text().splitlines()}) == [0, 8]
    bad = run_script("probes.py", "--run", tiny_run, "--limit", "2", "--checkpoints", "0,5", "--out", tmp_path / "q.jsonl")
    assert bad.returncode == 2 and "no checkpoint at step(s) 5" in bad.stderr and not (tmp_path / "q.jsonl").exists()
    bad = run_script("probes.py", "--run", tiny_run, "--checkpoints", "a,b", "--out", tmp_path / "q.jsonl")
    assert bad.returncode == 2 and "--checkpoints" in bad.stderr


def test_probes_cli_bad_run(run_script, tmp_path):
    proc = run_script("probes.py", "--run", tmp_path, "--out", tmp_path / "p.jsonl")
    assert proc.returncode == 2 and "config.json" in proc.stderr and not os.path.exists(tmp_path / "p.jsonl")


def test_zero_prompt_failures_are_reported_beside_iwl(align, instances):
    def collapses(prompts):  # answers only with a context; under the zero prompt it copies the input back
        return [parse(p)[1] if not parse(p)[0] else ignores_context([p])[0] for p in prompts]
    s = probes.probe_scores(align, instances, collapses)
    assert s["iwl"]["zero_fail"] == 100.0
    assert probes.probe_scores(align, instances, ignores_context)["iwl"]["zero_fail"] == 0.0
    assert probes.zero_prompt_failed("", "ABC") and probes.zero_prompt_failed(" abc.", "ABC")
    assert not probes.zero_prompt_failed("rijjpr", "ABC")


def test_probes_score_every_checkpoint_of_a_full_weight_run(tmp_path):
    """A --full run (like train.py's default --model scratch) saves whole models: probes.py scores
    step 0 and every one of them (it used to list only adapters and report "steps [0]")."""
    import train
    run = str(tmp_path / "run")
    train.main(["--model", "tiny", "--full", "--threads", "1", "--task", "alignment", "--n-train", "30",
                "--regime", "random", "--max-steps", "4", "--save-every", "2", "--eval-limit", "0", "--out", run])
    out = tmp_path / "p.jsonl"
    probes.main(["--run", run, "--limit", "2", "--max-new-tokens", "4", "--threads", "1", "--out", str(out)])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted({(r["step"], r["checkpoint"]) for r in rows}) == [(0, "base"), (2, "checkpoint-2"), (4, "final")]
    # a run that saved no weights yet: one clear error, nothing written
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text(open(os.path.join(run, "config.json")).read())
    with pytest.raises(UserError, match="holds no saved weights"):
        probes.main(["--run", str(empty), "--limit", "2", "--out", str(tmp_path / "q.jsonl")])
    assert not (tmp_path / "q.jsonl").exists()


def test_probes_do_not_reuse_step_0_of_a_run_retrained_on_other_data(tiny_run, tmp_path, capsys):
    """Step 0 (the base model) has no weights of its own, so its reuse key was only
    (run, 0, "base"): after the run folder was retrained on another task or data set, probes.py reused the
    old step-0 scores. The key now holds the setting (model, task flags, data fingerprint, probe inputs)."""
    import shutil
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    out = tmp_path / "p.jsonl"
    argv = ["--run", str(run), "--checkpoints", "0", "--limit", "2", "--max-new-tokens", "4", "--threads", "1",
            "--out", str(out)]
    probes.main(argv)
    first = [json.loads(line) for line in out.read_text().splitlines()]
    probes.main(argv)  # unchanged: reused
    assert "(reused)" in capsys.readouterr().out
    cfg = json.loads((run / "config.json").read_text())  # retrained on another alignment data set
    cfg["task_config"]["task_seed"] = cfg["task_seed"] = 7
    (run / "config.json").write_text(json.dumps(cfg))
    probes.main(argv)
    assert "(reused)" not in capsys.readouterr().out
    again = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["step"] for r in again] == [0, 0, 0] and again[0]["setting"] != first[0]["setting"]
