"""evaluation.py + evaluate.py + figure3.py: binning, evaluation contexts, the CLIs (run configs: test_runs.py)."""
import json
import os

import pytest

from contrastive_context import paraphrases
import evaluate
from contrastive_context import evaluation as ev
import figure3
from contrastive_context import runs
from contrastive_context import tasks
from contrastive_context.common import UserError


# ----------------------------------------------------------------------------- bins
def test_tertile_binning_puts_instances_in_the_right_bin():
    values = [i / 10 for i in range(9)]  # 0.0 .. 0.8
    edges = ev.bin_edges(values)
    assert edges[0] == 0.0 and edges[3] == 1.0
    assert [ev.assign_bin(v, edges) for v in values] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    rows = [{"max_nsim": v, "score": 100.0 * (v > 0.45)} for v in values]
    bins = ev.bin_summary(rows, edges)
    assert [b["name"] for b in bins] == ["low", "medium", "high"]
    assert [b["n"] for b in bins] == [3, 3, 3]
    assert [b["mean"] for b in bins] == [0.0, pytest.approx(100 / 3), 100.0]


def test_fixed_bins():
    edges = ev.bin_edges([0.9, 0.95], ev.parse_bins("0.3,0.6"))
    assert edges == [0.0, 0.3, 0.6, 1.0]
    assert [ev.assign_bin(v, edges) for v in (0.0, 0.29, 0.3, 0.59, 0.6, 1.0)] == [0, 0, 1, 1, 2, 2]
    assert ev.parse_bins("tertiles") is None
    for bad in ("0.6,0.3", "x", "0.2", "0,0.5", "0.2,0.4,0.6"):
        with pytest.raises(UserError):
            ev.parse_bins(bad)


# ----------------------------------------------------------------------------- evaluation contexts
@pytest.fixture(scope="module")
def align():
    return tasks.load_task("alignment", n_train=60, n_test=20)


def _ids(instances):
    return [(i["example"]["id"], i["context_type"], [c["id"] for c in i["context"]], i["position"])
            for i in instances]


def test_contexts_deterministic_and_well_formed(align):
    exs = align.tests["test"][:8]
    a = ev.build_eval_contexts(align, exs, 4, 0, None)
    b = ev.build_eval_contexts(align, exs, 4, 0, None)
    assert _ids(a) == _ids(b) and [i["max_nsim"] for i in a] == [i["max_nsim"] for i in b]
    assert _ids(a) != _ids(ev.build_eval_contexts(align, exs, 4, 1, None))
    types = {t: [i for i in a if i["context_type"] == t] for t in ev.CONTEXT_TYPES}
    assert all(len(v) == len(exs) for v in types.values())
    pool_ids = {e["id"] for e in align.pool}
    index = ev.pool_index(align)
    for it in a:
        ctx, t = it["context"], it["context_type"]
        assert len(ctx) == (0 if t == "zero" else 4)
        assert it["max_nsim"] == (max(it["nsim"]) if ctx else 0.0) and 0.0 <= it["max_nsim"] <= 1.0
        if t in ("random", "similar", "random+nearest"):
            assert {c["id"] for c in ctx} <= pool_ids and len({c["id"] for c in ctx}) == 4
        if t == "similar":  # most similar last
            assert it["nsim"] == sorted(it["nsim"])
        if t == "random+nearest":
            top = index.topk([it["example"]["x"]], 1)[0][0][0]
            assert ctx[it["position"]]["id"] == align.pool[int(top)]["id"]
            assert it["max_nsim"] == pytest.approx(max(index.nsim(it["example"]["x"], [e["x"] for e in align.pool])))
        if t == "random+paraphrase":
            para = ctx[it["position"]]
            assert para["id"].startswith(it["example"]["id"] + "#")
            assert para["x"] != it["example"]["x"] and sorted(para["x"]) == sorted(it["example"]["x"])
            assert align.score(para["y"], dict(it["example"], x=para["x"])) == 100.0  # a valid label of x'


def test_contexts_independent_of_limit_types_and_model(align):
    exs = align.tests["test"]
    full = ev.build_eval_contexts(align, exs[:8], 4, 0, None)
    part = ev.build_eval_contexts(align, exs[:3], 4, 0, None, ("random+nearest", "random"))
    sel = [i for i in _ids(full) if i[0] in {e["id"] for e in exs[:3]} and i[1] in ("random", "random+nearest")]
    assert sorted(_ids(part)) == sorted(sel)
    # the builder takes no model; a second identical call after loading one gives the same contexts
    from contrastive_context import models
    models.load("tiny", device="cpu")
    assert _ids(ev.build_eval_contexts(align, exs[:8], 4, 0, None)) == _ids(full)


def test_paraphrases_from_file(align, tmp_path):
    exs = align.tests["test"][:4]
    path = tmp_path / "para.jsonl"
    rows = [{"id": exs[0]["id"], "x": exs[0]["x"], "paraphrases": [exs[0]["x"][::-1]], "backend": "perturb"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    paras = paraphrases.load_paraphrases(str(path), align)
    inst = ev.build_eval_contexts(align, exs, 4, 0, paras, ("random+paraphrase",))
    assert [i["example"]["id"] for i in inst] == [exs[0]["id"]]  # inputs without a paraphrase are left out
    assert inst[0]["context"][inst[0]["position"]]["id"] == f"{exs[0]['id']}#p0"


# ----------------------------------------------------------------------------- CLI
def _read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.mark.slow
def test_evaluate_cli_smoke_tiny(run_script, tmp_path):
    out = tmp_path / "ev"
    proc = run_script("evaluate.py", "--task", "alignment", "--model", "tiny", "--limit", "6", "--out", out,
                      "--threads", "1", "--max-new-tokens", "8", "--n-train", "50")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = _read_jsonl(out / "predictions.jsonl")
    assert len(rows) == 6 * len(ev.CONTEXT_TYPES)       # alignment: every input has a counterfactual
    for r in rows:
        assert set(r) >= {"id", "context_type", "context", "max_nsim", "prediction", "reference", "score"}
        assert 0.0 <= r["score"] <= 100.0
    s = json.loads((out / "summary.json").read_text())
    assert s["metric"] == "chunk_acceptance" and s["model"] == "tiny" and s["adapter"] is None
    assert set(s["by_context_type"]) == set(ev.CONTEXT_TYPES)
    assert all(v["n"] == 6 for v in s["by_context_type"].values())
    assert [b["name"] for b in s["bins"]] == ["low", "medium", "high"]
    assert sum(b["n"] for b in s["bins"]) == 6 * (len(ev.CONTEXT_TYPES) - 1)
    assert "exact" in s["corpus"]["random"]
    assert "chunk_acceptance" in (out / "summary.md").read_text()


@pytest.mark.parametrize("kind", ["mt", "sql"])
def test_evaluate_other_tasks(tmp_path, mt_dir, bird_dir, kind):
    out = tmp_path / "ev"
    data = mt_dir if kind == "mt" else bird_dir
    evaluate.main(["--task", kind, "--data", data, "--model", "tiny", "--limit", "2", "--out", str(out),
                   "--threads", "1", "--max-new-tokens", "6", "--context-types", "zero,similar,random+paraphrase"])
    s = json.loads((out / "summary.json").read_text())
    assert s["metric"] == {"mt": "chrf", "sql": "execution_accuracy"}[kind]
    assert s["by_context_type"]["zero"]["n"] == 2 and s["by_context_type"]["similar"]["n"] == 2
    if kind == "mt":
        assert "chrf_signature" in s["corpus"]["similar"]
    rows = _read_jsonl(out / "predictions.jsonl")
    assert all(0.0 <= r["score"] <= 100.0 for r in rows)


@pytest.mark.slow
def test_evaluate_cli_bad_input(run_script, tmp_path):
    out = tmp_path / "ev"
    proc = run_script("evaluate.py", "--model", "tiny", "--out", out, "--bins", "0.7,0.2")
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()
    proc = run_script("evaluate.py", "--model", "tiny", "--out", out, "--context-types", "random,bogus")
    assert proc.returncode == 2 and "bogus" in proc.stderr and not out.exists()


def test_evaluate_with_adapter_shares_contexts(tiny_run, tmp_path):
    """The session's tiny run: evaluate.py reads its config; the contexts equal the base model's."""
    common = ["--limit", "4", "--threads", "1", "--max-new-tokens", "6", "--context-types", "random,similar"]
    evaluate.main(["--adapter", tiny_run, "--out", str(tmp_path / "a"), *common])
    evaluate.main(["--model", "tiny", "--n-train", "60", "--out", str(tmp_path / "b"), *common])
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert s["model"] == "tiny" and s["adapter"].endswith("final") and s["task_config"]["n_train"] == 60
    a, b = _read_jsonl(tmp_path / "a" / "predictions.jsonl"), _read_jsonl(tmp_path / "b" / "predictions.jsonl")
    key = lambda rows: [(r["id"], r["context_type"], r["context"], r["max_nsim"]) for r in rows]  # noqa: E731
    assert key(a) == key(b)


def test_evaluate_a_published_adapter_alone(tiny_run, tmp_path):
    """A bare adapter folder (as reproduce.py publishes under OUT/adapters/<regime>/, no run config
    beside it) needs no --model: its recorded base is used, with the same predictions as naming it."""
    ada = runs.export_adapter(tiny_run, str(tmp_path / "adapters" / "contrastive"))
    assert not os.path.exists(tmp_path / "adapters" / "config.json")
    common = ["--adapter", ada, "--limit", "3", "--threads", "1", "--max-new-tokens", "6", "--context-types",
              "zero,random"]
    evaluate.main([*common, "--out", str(tmp_path / "alone")])
    evaluate.main([*common, "--model", "tiny", "--out", str(tmp_path / "named")])
    s = json.loads((tmp_path / "alone" / "summary.json").read_text())
    assert s["model"] == "tiny" and s["adapter"] == ada
    assert _read_jsonl(tmp_path / "alone" / "predictions.jsonl") == _read_jsonl(tmp_path / "named" / "predictions.jsonl")
    # an adapter that records no base model: one clear error, nothing written
    cfg = json.loads(open(os.path.join(ada, "adapter_config.json")).read())
    with open(os.path.join(ada, "adapter_config.json"), "w") as f:
        json.dump(dict(cfg, base_model_name_or_path=None), f)
    with pytest.raises(UserError, match="--model is required"):
        evaluate.main([*common, "--out", str(tmp_path / "none")])
    assert not (tmp_path / "none").exists()


# ----------------------------------------------------------------------------- compare (Figure 3)
def _fake_eval(d, scores_fn, metric="chrf"):
    os.makedirs(d)
    rows = []
    for i in range(30):
        for t in ("zero", "random", "similar"):
            v = 0.0 if t == "zero" else (i % 10) / 10
            rows.append({"id": f"test-{i}", "context_type": t, "context": [], "max_nsim": v,
                         "prediction": "", "reference": "", "score": scores_fn(v)})
    with open(os.path.join(d, "predictions.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    with open(os.path.join(d, "summary.json"), "w") as f:
        json.dump({"metric": metric, "model": "m", "adapter": None}, f)


def test_compare_writes_figure_and_table_with_shared_bins(tmp_path):
    _fake_eval(tmp_path / "base", lambda v: 40.0)
    _fake_eval(tmp_path / "contr", lambda v: 100.0 * v)
    fig, table = tmp_path / "fig.png", tmp_path / "fig.md"
    figure3.main([str(tmp_path / "base"), str(tmp_path / "contr"), "--labels", "base", "contrastive",
                  "--ref", "contrastive", "--out", str(fig), "--table", str(table)])
    assert fig.stat().st_size > 1000 and fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = table.read_text()
    assert "| base (×1) |" in md and "| contrastive (×1) |" in md and "low" in md
    assert "Paired differences contrastive − other" in md
    res = figure3.compare([str(tmp_path / "base"), str(tmp_path / "contr")], ["b", "c"])
    assert res["same_instances"]
    assert [b["mean"] for b in res["models"][0]["bins"]] == [40.0, 40.0, 40.0]
    lo, mid, hi = (b["mean"] for b in res["models"][1]["bins"])
    assert lo < mid < hi
    assert [b["n"] for b in res["models"][0]["bins"]] == [b["n"] for b in res["models"][1]["bins"]]


def test_compare_label_mismatch_is_user_error(tmp_path):
    _fake_eval(tmp_path / "a", lambda v: 1.0)
    with pytest.raises(UserError):
        figure3.main([str(tmp_path / "a"), "--labels", "x", "y", "--out", str(tmp_path / "f.png")])


def test_comet_offline_without_checkpoint_is_one_line_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as e:
        ev.load_comet("Unbabel/wmt22-comet-da")
    assert "offline" in str(e.value) and "\n" not in str(e.value)


def test_figure3_paired_differences_pair_inputs_and_seeds(tmp_path):
    # two seeds of "c" (+10 and +20 over base on every row) against one base folder
    _fake_eval(tmp_path / "base", lambda v: 40.0)
    _fake_eval(tmp_path / "c0", lambda v: 50.0)
    _fake_eval(tmp_path / "c1", lambda v: 60.0)
    res = figure3.compare([str(tmp_path / d) for d in ("base", "c0", "c1")], ["base", "c", "c"], ref="c")
    d = res["diffs"][0]["by_context_type"]["random"]
    assert d["mean"] == pytest.approx(15.0) and d["n"] == 60 and d["n_clusters"] == 30 and d["wins"] == 60
    assert res["models"][1]["n_folders"] == 2 and res["models"][1]["by_context_type"]["random"]["n"] == 60
    with pytest.raises(UserError, match="--ref x is not one of the labels"):
        figure3.compare([str(tmp_path / "base")], ["base"], ref="x")


def test_figure3_bad_folders(tmp_path):
    _fake_eval(tmp_path / "a", lambda v: 1.0)
    rows = (tmp_path / "a" / "predictions.jsonl").read_text().splitlines()
    rows[2] = rows[2].replace('"score": 1.0', '"score": "high"')
    (tmp_path / "a" / "predictions.jsonl").write_text("\n".join(rows) + "\n")
    with pytest.raises(UserError, match=r"predictions.jsonl:3: 'score' must be a finite number"):
        figure3.compare([str(tmp_path / "a")], ["a"])
    _fake_eval(tmp_path / "b", lambda v: 1.0)
    (tmp_path / "b" / "summary.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="expected a JSON object"):
        figure3.compare([str(tmp_path / "b")], ["b"])
    with pytest.raises(UserError, match="is a directory"):
        figure3.main([str(tmp_path / "b"), "--out", str(tmp_path)])


def test_no_token_test_input_is_evaluated_with_random_neighbours(align):
    ex = {"id": "test-dot", "x": ".", "y": "aa"}
    inst = ev.build_eval_contexts(align, [ex], 4, 0, None, ("similar", "random+nearest"))
    assert [len(i["context"]) for i in inst] == [4, 4] and all(i["max_nsim"] == 0.0 for i in inst)


# ----------------------------------------------------------------------------- resumable generation
def test_predict_in_chunks_and_resumed_equals_one_call(align):
    """predict() generates in chunks of whole batches, longest prompt first: the predictions equal
    one generate() call over all prompts (the same batches), and a resumed call reuses whole
    chunks only and ends with the same predictions."""
    from contrastive_context import generation
    from contrastive_context import models
    model, tok = models.load_with_adapter("tiny", None)
    five = [t for t in ev.CONTEXT_TYPES if t != "random+counterfactual"]
    instances = ev.build_eval_contexts(align, align.tests["test"][:5], 2, 0, None, five, "test")
    assert len(instances) == 25
    expected = generation.generate(model, tok, ev.instance_prompts(align, instances), 6, stop=align.stop,
                                   batch_size=2, progress=False)
    seen = []
    rows, st = ev.predict(model, tok, align, instances, 6, batch_size=2, chunk_batches=2,
                          on_chunk=lambda preds, n: seen.append(dict(preds)))
    assert [r["prediction"] for r in rows] == expected
    assert [len(s) for s in seen] == [4, 8, 12, 16, 20, 24, 25] and st["reused"] == 0

    class Crash(Exception):
        pass

    def crash_after_two(preds, n):
        if len(preds) >= 8:
            raise Crash
    with pytest.raises(Crash):
        ev.predict(model, tok, align, instances, 6, batch_size=2, chunk_batches=2, on_chunk=crash_after_two)
    saved = seen[1]                                   # what a crash after two chunks leaves
    rows2, st2 = ev.predict(model, tok, align, instances, 6, batch_size=2, chunk_batches=2, done=saved)
    assert [r["prediction"] for r in rows2] == expected
    assert st2["reused"] == 8 and 0 < st2["new_tokens"] < st["new_tokens"]
    broken = {i: p for i, p in saved.items() if i != min(saved)}   # a chunk with a hole is generated again
    _, st3 = ev.predict(model, tok, align, instances, 6, batch_size=2, chunk_batches=2, done=broken)
    assert st3["reused"] == 4
    _, st4 = ev.predict(model, tok, align, instances, 6, batch_size=2, chunk_batches=2, done=seen[-1])
    assert st4 == {"new_tokens": 0, "reused": 25}


@pytest.mark.slow
def test_evaluate_resumes_after_sigterm_with_identical_predictions(run_script, tmp_path):
    """SIGTERM mid-generation: exit 143, no predictions.jsonl, a progress file; the same command
    again reuses it and writes the predictions of an uninterrupted run, then removes it."""
    import signal
    import subprocess
    import sys
    import time
    args = ["--task", "alignment", "--model", "tiny", "--n-train", "50", "--limit", "30", "--threads", "1",
            "--max-new-tokens", "24", "--batch-size", "1"]
    assert run_script("evaluate.py", *args, "--out", tmp_path / "full").returncode == 0
    out = tmp_path / "resumed"
    partial = out / "predictions.partial.jsonl"
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
               OMP_NUM_THREADS="1")
    cmd = [sys.executable, os.path.join(env["PYTHONPATH"], "evaluate.py"), *args, "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while not (out / "predictions.partial.jsonl.meta.json").exists() and proc.poll() is None \
            and time.monotonic() - t0 < 300:
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 143, err[-2000:]
    assert not (out / "predictions.jsonl").exists() and partial.exists()
    n_saved = len(_read_jsonl(partial))
    assert 0 < n_saved < 180
    (tmp_path / "other").mkdir()
    for f in ("predictions.partial.jsonl", "predictions.partial.jsonl.meta.json", "cc_output.json"):
        (tmp_path / "other" / f).write_bytes((out / f).read_bytes())   # (the marker: an evaluation folder of ours)
    proc = run_script("evaluate.py", *args, "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"resuming: {n_saved} of 180 predictions" in proc.stdout
    assert _read_jsonl(out / "predictions.jsonl") == _read_jsonl(tmp_path / "full" / "predictions.jsonl")
    assert not partial.exists() and not (out / "predictions.partial.jsonl.meta.json").exists()
    assert json.loads((out / "summary.json").read_text())["generation"]["reused"] == n_saved
    # the same progress file under other generation settings is ignored, not trusted
    proc = run_script("evaluate.py", *args, "--max-new-tokens", "20", "--out", tmp_path / "other")
    assert proc.returncode == 0 and "not reusing" in proc.stdout and "resuming" not in proc.stdout, proc.stderr[-2000:]
    assert len(_read_jsonl(tmp_path / "other" / "predictions.jsonl")) == 180


def test_flag_aliases_share_one_name_across_scripts():
    """The canonical names work everywhere: --eval-limit (train.py, reproduce.py) in
    evaluate.py beside its --limit; --max-steps / --batch-size (train.py) in theory_sim.py and sweep.py
    beside their --steps / --batch (kept: committed commands use them)."""
    import sweep
    import theory_sim
    p = evaluate.build_parser()
    assert p.parse_args(["--out", "e", "--eval-limit", "3"]).limit == p.parse_args(["--out", "e", "--limit", "3"]).limit == 3
    a = theory_sim.parse_args(["--out", "s", "--max-steps", "5", "--batch-size", "7"])
    assert (a.steps, a.n_train) == (5, 7)
    a = sweep.parse_args(["--out", "s", "--max-steps", "5", "--batch-size", "7"])
    assert (a.steps, a.batch) == (5, 7)
