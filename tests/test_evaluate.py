"""evaluate.py: bootstrap CIs, binning, metrics, evaluation contexts, the CLI and compare mode."""
import hashlib
import json
import os
import time

import numpy as np
import pytest

import evaluate
import tasks


# ----------------------------------------------------------------------------- statistics
def test_bootstrap_ci_covers_true_mean_at_nominal_rate():
    rng = np.random.default_rng(123)
    hits = 0
    for rep in range(200):
        x = rng.normal(loc=5.0, scale=2.0, size=50)
        lo, hi = evaluate.bootstrap_ci(x, seed=rep)
        assert lo <= x.mean() <= hi
        hits += lo <= 5.0 <= hi
    assert 0.88 <= hits / 200 <= 0.99


def test_bootstrap_ci_seeded_and_edge_cases():
    x = [0, 100, 100, 0, 100, 50]
    assert evaluate.bootstrap_ci(x, seed=3) == evaluate.bootstrap_ci(x, seed=3)
    assert evaluate.bootstrap_ci([], seed=0) is None
    assert evaluate.bootstrap_ci([42.0]) == [42.0, 42.0]
    s = evaluate.summarize([10, 20, 30])
    assert s["mean"] == pytest.approx(20) and s["n"] == 3 and s["ci"][0] <= 20 <= s["ci"][1]


def test_tertile_binning_puts_instances_in_the_right_bin():
    values = [i / 10 for i in range(9)]  # 0.0 .. 0.8
    edges = evaluate.bin_edges(values)
    assert edges[0] == 0.0 and edges[3] == 1.0
    assert [evaluate.assign_bin(v, edges) for v in values] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    rows = [{"max_nsim": v, "score": 100.0 * (v > 0.45)} for v in values]
    bins = evaluate.bin_summary(rows, edges)
    assert [b["name"] for b in bins] == ["low", "medium", "high"]
    assert [b["n"] for b in bins] == [3, 3, 3]
    assert [b["mean"] for b in bins] == [0.0, pytest.approx(100 / 3), 100.0]


def test_fixed_bins():
    edges = evaluate.bin_edges([0.9, 0.95], evaluate.parse_bins("0.3,0.6"))
    assert edges == [0.0, 0.3, 0.6, 1.0]
    assert [evaluate.assign_bin(v, edges) for v in (0.0, 0.29, 0.3, 0.59, 0.6, 1.0)] == [0, 0, 1, 1, 2, 2]
    assert evaluate.parse_bins("tertiles") is None
    for bad in ("0.6,0.3", "x", "0.2", "0,0.5", "0.2,0.4,0.6"):
        with pytest.raises(evaluate.UserError):
            evaluate.parse_bins(bad)


# ----------------------------------------------------------------------------- metrics (percent)
def test_alignment_metric():
    task = tasks.load_task("alignment", n_train=20, n_test=10)
    ex = task.tests["test"][0]
    assert task.score(ex["y"], ex) == 100.0 and task.exact(ex["y"], ex) == 1.0
    assert task.score("", ex) == 0.0
    # break exactly one chunk: a letter no PFA emits
    L, y = task.length, ex["y"]
    bad = y[:L - 1] + "9" + y[L:]
    assert task.score(bad, ex) == pytest.approx(100.0 * (task.m - 1) / task.m)
    assert task.corpus_metrics([y, bad], [ex, ex])["exact"] == pytest.approx(50.0)


def test_mt_chrf_and_bleu(mt_dir):
    task = tasks.load_task("mt", data=mt_dir)
    ex = task.tests["test"][0]
    assert task.metric_name == "chrf"
    assert task.score(ex["y"], ex) == pytest.approx(100.0)
    part = task.score(ex["y"].split()[0], ex)
    assert 0.0 < part < 100.0 and task.score("zzz qqq", ex) < part
    bleu_task = tasks.load_task("mt", data=mt_dir, metric="bleu")
    assert bleu_task.score(ex["y"], ex) == pytest.approx(100.0)
    cm = task.corpus_metrics([ex["y"]], [ex])
    assert cm["chrf"] == pytest.approx(100.0) and "nc:6" in cm["chrf_signature"] and "bleu_signature" in cm


def test_semparse_exact_match_ignores_spaces(mtop_dir):
    task = tasks.load_task("semparse", data=mtop_dir, lang="en")
    ex = task.tests["test"][0]
    assert task.score(ex["y"], ex) == 100.0
    assert task.score(ex["y"].replace(" ", ""), ex) == 100.0
    assert task.score(ex["y"].replace("CONTACT", "CONTACT_X"), ex) == 0.0


def _db_hash(bird_dir):
    with open(os.path.join(bird_dir, "databases", "shop", "shop.sqlite"), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_sql_execution_accuracy(bird_dir):
    task = tasks.load_task("sql", data=bird_dir, sql_timeout=0.5)
    ex = task.tests["dev"][1]  # SELECT name FROM customer WHERE city = 'Paris'
    assert task.score(ex["y"], ex) == 100.0
    # same rows, other order and other spelling
    assert task.score("select c.name from customer c where c.city='Paris' order by c.id desc", ex) == 100.0
    assert task.score("SELECT name FROM customer WHERE city = 'Rome'", ex) == 0.0
    assert task.score("SELECT nonsense FROM", ex) == 0.0
    # a DELETE fails on the read-only connection and leaves the database untouched
    before = _db_hash(bird_dir)
    assert task.score("DELETE FROM customer", ex) == 0.0
    assert task.score("DROP TABLE customer", ex) == 0.0
    assert _db_hash(bird_dir) == before
    assert task.score(ex["y"], ex) == 100.0
    # a slow query times out quickly and scores 0
    slow = ("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000000000) "
            "SELECT name FROM customer WHERE city = 'Paris' AND (SELECT COUNT(*) FROM c) > 0")
    t0 = time.monotonic()
    assert task.score(slow, ex) == 0.0
    assert time.monotonic() - t0 < 5.0


# ----------------------------------------------------------------------------- evaluation contexts
@pytest.fixture(scope="module")
def align():
    return tasks.load_task("alignment", n_train=60, n_test=20)


def _ids(instances):
    return [(i["example"]["id"], i["context_type"], [c["id"] for c in i["context"]], i["position"])
            for i in instances]


def test_contexts_deterministic_and_well_formed(align):
    exs = align.tests["test"][:8]
    a = evaluate.build_eval_contexts(align, exs, 4, 0, None)
    b = evaluate.build_eval_contexts(align, exs, 4, 0, None)
    assert _ids(a) == _ids(b) and [i["max_nsim"] for i in a] == [i["max_nsim"] for i in b]
    assert _ids(a) != _ids(evaluate.build_eval_contexts(align, exs, 4, 1, None))
    types = {t: [i for i in a if i["context_type"] == t] for t in evaluate.CONTEXT_TYPES}
    assert all(len(v) == len(exs) for v in types.values())
    pool_ids = {e["id"] for e in align.pool}
    index = evaluate.pool_index(align)
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
    full = evaluate.build_eval_contexts(align, exs[:8], 4, 0, None)
    part = evaluate.build_eval_contexts(align, exs[:3], 4, 0, None, ("random+nearest", "random"))
    sel = [i for i in _ids(full) if i[0] in {e["id"] for e in exs[:3]} and i[1] in ("random", "random+nearest")]
    assert sorted(_ids(part)) == sorted(sel)
    # the builder takes no model; a second identical call after loading one gives the same contexts
    import models
    models.load("tiny", device="cpu")
    assert _ids(evaluate.build_eval_contexts(align, exs[:8], 4, 0, None)) == _ids(full)


def test_paraphrases_from_file(align, tmp_path):
    exs = align.tests["test"][:4]
    path = tmp_path / "para.jsonl"
    rows = [{"id": exs[0]["id"], "x": exs[0]["x"], "paraphrases": [exs[0]["x"][::-1]], "backend": "perturb"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    paras = tasks.load_paraphrases(str(path), align)
    inst = evaluate.build_eval_contexts(align, exs, 4, 0, paras, ("random+paraphrase",))
    assert [i["example"]["id"] for i in inst] == [exs[0]["id"]]  # inputs without a paraphrase are left out
    assert inst[0]["context"][inst[0]["position"]]["id"] == f"{exs[0]['id']}#p0"


# ----------------------------------------------------------------------------- run config handling
def test_run_config_supplies_task_flags(tmp_path):
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    (run / "final" / "adapter_config.json").write_text("{}")
    (run / "config.json").write_text(json.dumps({"model": "tiny", "task": "alignment",
                                                 "task_config": {"task": "alignment", "n_train": 30,
                                                                 "align_len": 3}}))
    adapter, cfg = evaluate.resolve_adapter(str(run))
    assert adapter.endswith("final") and cfg["model"] == "tiny"
    parser = evaluate.build_parser()
    argv = ["--out", "x", "--n-train", "40", "--adapter", str(run)]
    args = parser.parse_args(argv)
    taken = evaluate.apply_run_config(args, cfg, evaluate.explicit_dests(parser, argv))
    assert args.model == "tiny" and args.align_len == 3 and args.n_train == 40  # explicit flag wins
    assert set(taken) == {"align_len", "model"}
    assert evaluate.resolve_adapter(str(run / "final"))[1]["model"] == "tiny"
    with pytest.raises(evaluate.UserError):
        evaluate.resolve_adapter(str(tmp_path))


# ----------------------------------------------------------------------------- CLI
def _read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_evaluate_cli_smoke_tiny(run_script, tmp_path):
    out = tmp_path / "ev"
    proc = run_script("evaluate.py", "--task", "alignment", "--model", "tiny", "--limit", "6", "--out", out,
                      "--threads", "1", "--max-new-tokens", "8", "--n-train", "50")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = _read_jsonl(out / "predictions.jsonl")
    assert len(rows) == 6 * 5
    for r in rows:
        assert set(r) >= {"id", "context_type", "context", "max_nsim", "prediction", "reference", "score"}
        assert 0.0 <= r["score"] <= 100.0
    s = json.loads((out / "summary.json").read_text())
    assert s["metric"] == "chunk_acceptance" and s["model"] == "tiny" and s["adapter"] is None
    assert set(s["by_context_type"]) == set(evaluate.CONTEXT_TYPES)
    assert all(v["n"] == 6 for v in s["by_context_type"].values())
    assert [b["name"] for b in s["bins"]] == ["low", "medium", "high"]
    assert sum(b["n"] for b in s["bins"]) == 6 * 4
    assert "exact" in s["corpus"]["random"]
    assert "chunk_acceptance" in (out / "summary.md").read_text()


@pytest.mark.parametrize("kind", ["mt", "sql"])
def test_evaluate_cli_other_tasks(run_script, tmp_path, mt_dir, bird_dir, kind):
    out = tmp_path / "ev"
    data = mt_dir if kind == "mt" else bird_dir
    proc = run_script("evaluate.py", "--task", kind, "--data", data, "--model", "tiny", "--limit", "2", "--out", out,
                      "--threads", "1", "--max-new-tokens", "6", "--context-types", "zero,similar,random+paraphrase")
    assert proc.returncode == 0, proc.stderr[-2000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["metric"] == {"mt": "chrf", "sql": "execution_accuracy"}[kind]
    assert s["by_context_type"]["zero"]["n"] == 2 and s["by_context_type"]["similar"]["n"] == 2
    if kind == "mt":
        assert "chrf_signature" in s["corpus"]["similar"]
    rows = _read_jsonl(out / "predictions.jsonl")
    assert all(0.0 <= r["score"] <= 100.0 for r in rows)


def test_evaluate_cli_bad_input(run_script, tmp_path):
    out = tmp_path / "ev"
    proc = run_script("evaluate.py", "--model", "tiny", "--out", out, "--bins", "0.7,0.2")
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()
    proc = run_script("evaluate.py", "--model", "tiny", "--out", out, "--context-types", "random,bogus")
    assert proc.returncode == 2 and "bogus" in proc.stderr and not out.exists()


def test_evaluate_with_adapter_shares_contexts(run_script, tmp_path):
    """A tiny run from train.py: evaluate.py reads its config; the contexts equal the base model's."""
    run = tmp_path / "run"
    proc = run_script("train.py", "--task", "alignment", "--regime", "contrastive", "--model", "tiny",
                      "--max-steps", "2", "--save-every", "2", "--out", run, "--n-train", "50", "--threads", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    common = ["--limit", "4", "--threads", "1", "--max-new-tokens", "6", "--context-types", "random,similar"]
    p1 = run_script("evaluate.py", "--adapter", run, "--out", tmp_path / "a", *common)
    assert p1.returncode == 0, p1.stderr[-2000:]
    p2 = run_script("evaluate.py", "--model", "tiny", "--n-train", "50", "--out", tmp_path / "b", *common)
    assert p2.returncode == 0, p2.stderr[-2000:]
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert s["model"] == "tiny" and s["adapter"].endswith("final") and s["task_config"]["n_train"] == 50
    a, b = _read_jsonl(tmp_path / "a" / "predictions.jsonl"), _read_jsonl(tmp_path / "b" / "predictions.jsonl")
    key = lambda rows: [(r["id"], r["context_type"], r["context"], r["max_nsim"]) for r in rows]  # noqa: E731
    assert key(a) == key(b)


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
    evaluate.main(["compare", str(tmp_path / "base"), str(tmp_path / "contr"), "--labels", "base", "contrastive",
                   "--out", str(fig), "--table", str(table)])
    assert fig.stat().st_size > 1000 and fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = table.read_text()
    assert "| base |" in md and "| contrastive |" in md and "low" in md
    res = evaluate.compare([str(tmp_path / "base"), str(tmp_path / "contr")], ["b", "c"])
    assert res["same_instances"]
    assert [b["mean"] for b in res["models"][0]["bins"]] == [40.0, 40.0, 40.0]
    lo, mid, hi = (b["mean"] for b in res["models"][1]["bins"])
    assert lo < mid < hi
    assert [b["n"] for b in res["models"][0]["bins"]] == [b["n"] for b in res["models"][1]["bins"]]


def test_compare_label_mismatch_is_user_error(tmp_path):
    _fake_eval(tmp_path / "a", lambda v: 1.0)
    with pytest.raises(evaluate.UserError):
        evaluate.main(["compare", str(tmp_path / "a"), "--labels", "x", "y", "--out", str(tmp_path / "f.png")])


def test_comet_offline_without_checkpoint_is_one_line_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(evaluate.UserError) as e:
        evaluate.load_comet("Unbabel/wmt22-comet-da")
    assert "offline" in str(e.value) and "\n" not in str(e.value)
