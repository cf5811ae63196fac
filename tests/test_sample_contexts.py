import json
import os
import random
from collections import Counter

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

import tasks
from common import UserError
from sample_contexts import resolve_context, sample_contexts


@pytest.fixture(scope="module")
def mt_task(tmp_path_factory):
    """A pool of 600 generated sentences with exact duplicates (to test their exclusion)."""
    rng = random.Random(0)
    words = [f"w{i}" for i in range(300)]
    d = tmp_path_factory.mktemp("pool")
    xs = [" ".join(rng.choices(words, k=rng.randint(4, 10))) for _ in range(590)]
    xs += xs[:10]  # exact duplicates of the first 10 inputs
    (d / "train.en").write_text("\n".join(xs) + "\n")
    (d / "train.de").write_text("\n".join(f"y{i}" for i in range(len(xs))) + "\n")
    (d / "test.en").write_text("a\n")
    (d / "test.de").write_text("b\n")
    return tasks.load_task("mt", data=str(d))


def test_similar_is_true_topk_excluding_target_and_duplicates(mt_task):
    pool = mt_task.pool
    rows = sample_contexts(mt_task, "similar", k=4, seed=0, show_progress=False)
    assert len(rows) == len(pool)
    bm25 = BM25Okapi([mt_task.tokenize(e["x"]) for e in pool])
    idx = {e["id"]: i for i, e in enumerate(pool)}
    for row in rows[:40] + rows[-10:]:
        i = idx[row["target"]]
        scores = bm25.get_scores(mt_task.tokenize(pool[i]["x"]))
        dup = {j for j, e in enumerate(pool) if e["x"] == pool[i]["x"]}
        order = [j for j in np.argsort(-scores, kind="stable") if j not in dup][:4]
        ctx = [idx[c] for c in row["context"]]
        assert ctx == order[::-1], row  # top-4, most similar last
        assert not dup & set(ctx)
        assert row["kind"] == "similar" and row["nsim"][-1] >= row["nsim"][0]
    # duplicated targets (train-0 and train-590) never see each other
    r0 = next(r for r in rows if r["target"] == "train-0")
    assert "train-590" not in r0["context"] and "train-0" not in r0["context"]


def test_contrastive_kind_fractions_and_structure(mt_task):
    rows = sample_contexts(mt_task, "contrastive", k=4, epochs=5, seed=1, alpha=0.3, beta=0.2, rho=0.0,
                           show_progress=False)
    assert len(rows) == 5 * len(mt_task.pool)
    frac = {k: v / len(rows) for k, v in Counter(r["kind"] for r in rows).items()}
    assert frac["random"] == pytest.approx(0.3, abs=0.03)
    assert frac["similar"] == pytest.approx(0.2, abs=0.03)
    assert frac["one_near"] == pytest.approx(0.5, abs=0.03)
    for r in rows:
        assert len(r["context"]) == 4 == len(r["nsim"]) and len(set(r["context"])) == 4
        assert r["target"] not in r["context"] and not r["paraphrase"]
        assert all(0.0 <= s <= 1.0 for s in r["nsim"])
    # One-Near contexts hold a near example: their max nsim is far above Random's
    mean_max = {k: np.mean([max(r["nsim"]) for r in rows if r["kind"] == k]) for k in ("random", "one_near")}
    assert mean_max["one_near"] > mean_max["random"] + 0.1
    # contexts are re-drawn every epoch
    by_epoch = {e: [r["context"] for r in rows if r["epoch"] == e] for e in range(2)}
    assert by_epoch[0] != by_epoch[1]


def test_zero_frac_and_random_similar(mt_task):
    rows = sample_contexts(mt_task, "contrastive", k=2, epochs=4, seed=0, alpha=0.3, beta=0.2, rho=0.0,
                           zero_frac=0.1, show_progress=False)
    c = Counter(r["kind"] for r in rows)
    assert c["zero"] / len(rows) == pytest.approx(0.1, abs=0.03)
    assert c["random"] / len(rows) == pytest.approx(0.2, abs=0.03)
    assert all(r["context"] == [] for r in rows if r["kind"] == "zero")
    rs = sample_contexts(mt_task, "random+similar", k=2, epochs=4, seed=0, alpha=0.4, show_progress=False)
    c = Counter(r["kind"] for r in rs)
    assert set(c) == {"random", "similar"} and c["random"] / len(rs) == pytest.approx(0.4, abs=0.03)


def test_paraphrases_are_used_with_rho():
    t = tasks.load_task("alignment", seed=0)
    paras = {ex["id"]: [{"id": f"{ex['id']}#p0", "x": x2, "y": y2}
                        for x2, y2 in t.perturb(ex, random.Random(ex["id"]), 1)] for ex in t.pool}
    rows = sample_contexts(t, "contrastive", k=4, epochs=10, seed=0, alpha=0.0, beta=0.0, rho=0.5,
                           paraphrases=paras, show_progress=False)
    para_rows = [r for r in rows if r["paraphrase"]]
    assert len(para_rows) / len(rows) == pytest.approx(0.5, abs=0.05)
    pool_by_id = {e["id"]: e for e in t.pool}
    for r in para_rows[:50]:
        ctx = resolve_context(r, pool_by_id, paras)
        synth = [c for c in ctx if "#p" in c["id"]]
        assert len(synth) == 1 and synth[0]["id"].startswith(r["target"] + "#p")
        assert max(r["nsim"]) == pytest.approx(1.0)  # a shuffle has the same symbols
    with pytest.raises(UserError, match="paraphrase"):
        resolve_context(para_rows[0], pool_by_id, None)


def test_determinism_and_cli(run_script, tmp_path):
    a = run_script("sample_contexts.py", "--regime", "contrastive", "--epochs", "2", "--seed", "7",
                   "--out", tmp_path / "a.jsonl", check=True)
    run_script("sample_contexts.py", "--regime", "contrastive", "--epochs", "2", "--seed", "7",
               "--out", tmp_path / "b.jsonl", check=True)
    run_script("sample_contexts.py", "--regime", "contrastive", "--epochs", "2", "--seed", "8",
               "--out", tmp_path / "c.jsonl", check=True)
    A, B, C = ((tmp_path / f"{n}.jsonl").read_bytes() for n in "abc")
    assert A == B and A != C
    rows = [json.loads(line) for line in A.decode().splitlines()]
    assert len(rows) == 400 and set(rows[0]) == {"epoch", "target", "regime", "kind", "context", "nsim", "paraphrase"}
    assert "one_near" in a.stdout and "mean nsim" in a.stdout  # summary printed


@pytest.mark.parametrize("args,msg", [
    (["--alpha", "0.7", "--beta", "0.5"], "alpha \\+ --beta must be <= 1"),
    (["--alpha", "-0.1"], "--alpha must be in"),
    (["--regime", "random", "--k", "500"], "larger than the pool"),
    (["--regime", "weird"], "unknown regime"),
    (["--task", "nope"], "unknown task"),
    (["--paraphrases", "/nonexistent.jsonl"], "paraphrase file not found"),
    (["--task", "mt", "--data", "/nonexistent"], "data folder not found"),
    (["--zero-frac", "0.5"], "cannot exceed --alpha"),
])
def test_bad_input_one_line_error_and_no_output(run_script, tmp_path, args, msg):
    out = tmp_path / "x.jsonl"
    proc = run_script("sample_contexts.py", *args, "--out", out)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    import re
    assert re.search(msg, err[0]), err[0]
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".x.jsonl")]


def test_empty_pool_is_an_error(tmp_path):
    (tmp_path / "train.en").write_text("")
    (tmp_path / "train.de").write_text("")
    (tmp_path / "test.en").write_text("a\n")
    (tmp_path / "test.de").write_text("b\n")
    with pytest.raises(UserError, match="pool is empty"):
        tasks.load_task("mt", data=str(tmp_path))
