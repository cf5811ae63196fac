import json
import os
import random
from collections import Counter

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from contrastive_context import contexts
from contrastive_context import paraphrases
import sample_contexts
from contrastive_context import tasks
from contrastive_context.common import UserError
from contrastive_context.config import ContextConfig


def sample(task, regime, epochs=1, seed=0, paraphrases=None, **kw):
    return contexts.sample_rows(task, ContextConfig(regime=regime, **kw), epochs, seed, paraphrases,
                                show_progress=False)


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
    rows = sample(mt_task, "similar", k=4)
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
    rows = sample(mt_task, "contrastive", k=4, epochs=5, seed=1, alpha=0.3, beta=0.2, rho=0.0)
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
    rows = sample(mt_task, "contrastive", k=2, epochs=4, alpha=0.3, beta=0.2, rho=0.0, zero_frac=0.1)
    c = Counter(r["kind"] for r in rows)
    assert c["zero"] / len(rows) == pytest.approx(0.1, abs=0.03)
    assert c["random"] / len(rows) == pytest.approx(0.2, abs=0.03)
    assert all(r["context"] == [] for r in rows if r["kind"] == "zero")
    rs = sample(mt_task, "random+similar", k=2, epochs=4, alpha=0.4)
    c = Counter(r["kind"] for r in rs)
    assert set(c) == {"random", "similar"} and c["random"] / len(rs) == pytest.approx(0.4, abs=0.03)


def test_paraphrases_are_used_with_rho():
    t = tasks.load_task("alignment", seed=0)
    paras = {ex["id"]: [{"id": f"{ex['id']}#p0", "x": x2, "y": y2}
                        for x2, y2 in t.perturb(ex, random.Random(ex["id"]), 1)] for ex in t.pool}
    rows = sample(t, "contrastive", k=4, epochs=10, alpha=0.0, beta=0.0, rho=0.5, paraphrases=paras)
    para_rows = [r for r in rows if r["paraphrase"]]
    assert len(para_rows) / len(rows) == pytest.approx(0.5, abs=0.05)
    for r in para_rows[:50]:
        ctx = contexts.resolve(r, t, paras)
        synth = [c for c in ctx if "#p" in c["id"]]
        assert len(synth) == 1 and synth[0]["id"].startswith(r["target"] + "#p")
        assert max(r["nsim"]) == pytest.approx(1.0)  # a shuffle has the same symbols
    with pytest.raises(UserError, match="paraphrase"):
        contexts.resolve(para_rows[0], t, None)


@pytest.mark.slow
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
    assert len(rows) == 400 and set(rows[0]) == {"epoch", "target", "regime", "kind", "context", "nsim", "paraphrase",
                                           "copy"}
    assert "one_near" in a.stdout and "mean nsim" in a.stdout  # summary printed


@pytest.mark.parametrize("args,msg", [
    (["--alpha", "0.7", "--beta", "0.5"], "alpha \\+ --beta must be <= 1"),
    (["--alpha", "-0.1"], "--alpha: .*must be in"),
    (["--alpha", "nan"], "--alpha: .*finite"),
    (["--rho", "inf"], "--rho: .*finite"),
    (["--top-m", "0"], "--top-m: .*must be an integer >= 1"),
    (["--regime", "random", "--k", "500"], "larger than the pool"),
    (["--regime", "weird"], "--regime: invalid choice"),
    (["--task", "nope"], "--task: invalid choice"),
    (["--lang", "de"], "--lang does not apply to task alignment"),
    (["--test-size", "3"], "--test-size does not apply to task alignment"),
    (["--regime", "random", "--min-avg-sim", "0.3"], "applies to --regime similar only"),
    (["--paraphrases", "/nonexistent.jsonl"], "paraphrase file not found"),
    (["--task", "mt", "--data", "/nonexistent"], "data folder not found"),
    (["--zero-frac", "0.5"], "cannot exceed --alpha"),
])
def test_bad_input_one_line_error_and_no_output(tmp_path, capsys, args, msg):
    import re
    from contrastive_context.common import run_main
    out = tmp_path / "x.jsonl"
    with pytest.raises(SystemExit) as e:
        run_main(lambda: sample_contexts.main([*args, "--out", str(out)]))
    assert e.value.code == 2
    err = [l for l in capsys.readouterr().err.strip().splitlines() if "error:" in l]
    assert len(err) == 1
    assert re.search(msg, err[0]), err[0]
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".x.jsonl")]


def test_empty_pool_is_an_error(tmp_path):
    (tmp_path / "train.en").write_text("")
    (tmp_path / "train.de").write_text("")
    (tmp_path / "test.en").write_text("a\n")
    (tmp_path / "test.de").write_text("b\n")
    with pytest.raises(UserError, match="pool is empty"):
        tasks.load_task("mt", data=str(tmp_path))


def test_repeat_gives_exact_copies_at_the_asked_rate(mt_task):
    rows = sample(mt_task, "contrastive", k=4, epochs=4, alpha=0.0, beta=0.0, rho=0.0, repeat=0.4)
    assert all(r["kind"] == "one_near" for r in rows)
    copies = [r for r in rows if r["copy"]]
    assert len(copies) / len(rows) == pytest.approx(0.4, abs=0.03)
    for r in copies[:100]:
        ctx = contexts.resolve(r, mt_task)
        near = [c for c in ctx if c["id"] == r["target"] + "#copy"]
        target = next(e for e in mt_task.pool if e["id"] == r["target"])
        assert len(near) == 1 and (near[0]["x"], near[0]["y"]) == (target["x"], target["y"])
        assert max(r["nsim"]) == 1.0 and not r["paraphrase"]
        assert r["target"] not in r["context"]  # the copy is named as a copy, never as the pool id
    # repeat=0 draws nothing extra: the rows equal a run without the knob
    assert sample(mt_task, "contrastive", epochs=2, repeat=0.0) == sample(mt_task, "contrastive", epochs=2)


def test_epoch_by_epoch_equals_all_at_once(mt_task):
    cfg = ContextConfig(regime="contrastive")
    s = contexts.Sampler(mt_task, cfg, seed=3, show_progress=False)
    assert s.epoch(0) + s.epoch(1) == contexts.sample_rows(mt_task, cfg, 2, 3, show_progress=False)


def test_read_rows_refuses_other_task_and_bad_types(tmp_path, mt_task):
    align = tasks.load_task("alignment", n_train=30)
    rows = sample(align, "random", epochs=1)
    path = tmp_path / "c.jsonl"
    contexts.write_rows(path, rows, align)
    assert contexts.read_rows(path, align) == rows
    with pytest.raises(UserError, match="made for task 'alignment', not 'mt'"):
        contexts.read_rows(path, mt_task)
    other = tasks.load_task("alignment", n_train=30, seed=5)  # same ids, other data
    with pytest.raises(UserError, match="another alignment data set"):
        contexts.read_rows(path, other)
    path.write_text(path.read_text().replace('"epoch": 0', '"epoch": "abc"', 1))
    with pytest.raises(UserError, match="changed since it was written"):
        contexts.read_rows(path, align)
    (tmp_path / "c.jsonl.meta.json").unlink()  # a hand-made file: no sidecar, rows still checked
    with pytest.raises(UserError, match=r"c.jsonl:1: 'epoch' must be a non-negative integer"):
        contexts.read_rows(path, align)
    bad = dict(rows[0], context=5)
    path.write_text(json.dumps(bad) + "\n")
    with pytest.raises(UserError, match="'context' must be a list"):
        contexts.read_rows(path, align)



def test_contexts_file_must_name_its_data_set(tmp_path):
    """A contexts file holds only ids ("train-3"), which another data set of the same task
    has too. Without its sidecar, or with "task_fp" removed from it, train.py trained on the other data set's
    examples. Such a file is refused, naming the one-line sidecar that declares it made for this data set."""
    align = tasks.load_task("alignment", n_train=30)
    other = tasks.load_task("alignment", n_train=30, seed=5)  # the same ids, other data
    rows = sample(align, "random", epochs=1)
    path, side = tmp_path / "c.jsonl", tmp_path / "c.jsonl.meta.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))  # hand-made: no sidecar
    with pytest.raises(UserError, match="does not say which data set it was made for.*no .*c.jsonl.meta.json"):
        contexts.read_rows(path, other)
    contexts.write_rows(path, rows, align)
    meta = json.loads(side.read_text())
    del meta["task_fp"]
    side.write_text(json.dumps(meta))
    with pytest.raises(UserError, match="its sidecar names no task or task_fp"):
        contexts.read_rows(path, other)
    # the sidecar the message asks for, written by hand: accepted for that data set only
    side.write_text(json.dumps({"kind": "contexts", "task": "alignment", "task_fp": align.fingerprint()}))
    assert contexts.read_rows(path, align) == rows
    with pytest.raises(UserError, match="another alignment data set"):
        contexts.read_rows(path, other)

def test_load_paraphrases_drops_copies_and_checks_inputs(tmp_path, mt_task):
    ex = mt_task.pool[0]
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"id": ex["id"], "x": ex["x"], "paraphrases": [ex["x"].upper() + " !", "other words here"]})
                 + "\n")
    got = paraphrases.load_paraphrases(str(f), mt_task)
    assert [p["x"] for p in got[ex["id"]]] == ["other words here"]
    assert got[ex["id"]][0]["id"] == ex["id"] + "#p1" and got[ex["id"]][0]["y"] == ex["y"]
    f.write_text(json.dumps({"id": ex["id"], "x": "something else", "paraphrases": ["a b"]}) + "\n")
    with pytest.raises(UserError, match="differs from the mt data"):
        paraphrases.load_paraphrases(str(f), mt_task)


def test_no_token_targets_and_tiny_pools_do_not_crash(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    xs = [f"word{i} other{i}" for i in range(29)] + ["word0 other0", "..."]  # a duplicate and a no-token line
    (d / "train.en").write_text("\n".join(xs) + "\n")
    (d / "train.de").write_text("\n".join(f"y{i}" for i in range(len(xs))) + "\n")
    (d / "test.en").write_text("a\n")
    (d / "test.de").write_text("b\n")
    t = tasks.load_task("mt", data=str(d))
    for regime in ("similar", "contrastive", "random+similar"):
        rows = sample(t, regime, k=4, top_m=500)
        assert len(rows) == 31 and all(len(r["context"]) == 4 for r in rows)


def test_load_paraphrases_attaches_labels(tmp_path):
    t = tasks.load_task("alignment", seed=0, n_train=10, n_test=4)
    ex = t.pool[0]
    (x2, y2), = t.perturb(ex, random.Random(0), 1)
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"id": ex["id"], "x": ex["x"], "paraphrases": [x2], "labels": [y2],
                             "backend": "perturb"}) + "\n")
    got = paraphrases.load_paraphrases(str(f), t)
    assert got == {ex["id"]: [{"id": f"{ex['id']}#p0", "x": x2, "y": y2}]}
    f.write_text('{"id": "train-0", "x": "A"}\nnot json\n')
    with pytest.raises(UserError, match=r"p.jsonl:1: missing field\(s\) paraphrases"):
        paraphrases.load_paraphrases(str(f), t)
