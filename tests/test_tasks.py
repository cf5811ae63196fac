import json
import random

import pytest

import tasks
from common import UserError


def test_alignment_is_deterministic_and_valid():
    a, b = tasks.load_task("alignment", seed=3), tasks.load_task("alignment", seed=3)
    assert a.pool == b.pool and a.tests == b.tests
    assert len(a.pool) == 200 and len(a.tests["test"]) == 300
    assert tasks.load_task("alignment", seed=4).pool != a.pool
    for ex in a.pool[:50]:
        assert len(ex["x"]) == 3 and len(set(ex["x"])) == 3 and len(ex["y"]) == 6
        assert a.score(ex["y"], ex) == 100.0 and a.exact(ex["y"], ex) == 1.0
    ids = [e["id"] for e in a.pool]
    assert ids[:2] == ["train-0", "train-1"] and len(set(ids)) == len(ids)


def test_alignment_pfa_structure_and_metric():
    t = tasks.load_task("alignment", seed=0, m=3, length=4, n_train=20, n_test=5)
    for sym, pfa in t.pfas.items():
        assert 4 <= len(pfa) <= 12
        letters = {letter for state in pfa for letter, _, _ in state}
        assert len(letters) <= 18
        for state in pfa:
            assert 1 <= len(state) <= 4 and abs(sum(p for _, _, p in state) - 1) < 1e-9
    ex = t.pool[0]
    assert len(ex["y"]) == 12
    # a chunk made of a letter no PFA of this symbol emits is rejected
    bad_letter = next(c for c in "abcdefghijklmnopqrstuvwxyz"
                      if all(c not in {l for st in t.pfas[s] for l, _, _ in st} for s in ex["x"]))
    broken = bad_letter * 4 + ex["y"][4:]
    assert t.score(broken, ex) == pytest.approx(100 * 2 / 3)
    assert t.score("", ex) == 0.0
    assert t.corpus_metrics([ex["y"], broken], [ex, ex])["exact"] == 50.0


def test_alignment_perturbation_keeps_label_valid():
    t = tasks.load_task("alignment", seed=1)
    rng = random.Random(0)
    for ex in t.pool[:40]:
        for x2, y2 in t.perturb(ex, rng, 3):
            assert sorted(x2) == sorted(ex["x"]) and x2 != ex["x"]
            assert t.score(y2, {"x": x2}) == 100.0
            # each symbol keeps its own chunk
            assert t.chunks(x2, y2) == t.chunks(ex["x"], ex["y"])


def test_prompts_render_for_every_task(mt_dir, mtop_dir, bird_dir):
    al = tasks.load_task("alignment")
    p = al.prompt(al.pool[:2], "ABC")
    assert p == f"{al.pool[0]['x']}: {al.pool[0]['y']}\n{al.pool[1]['x']}: {al.pool[1]['y']}\nABC:"
    assert al.answer("xy") == " xy\n"

    mt = tasks.load_task("mt", data=mt_dir)
    zero = mt.prompt([], "Hello.")
    assert zero == "Translate the source text from English to German.\nSource: Hello.\nTarget:"
    ctx = mt.prompt(mt.pool[:4], "Hello.")
    assert ctx.startswith("Consider the following 4 translations from English to German.\nExample 1:\n")
    assert "Example 4:" in ctx and ctx.endswith("Translate the source text from English to German.\nSource: Hello.\nTarget:")
    assert mt.pool[0]["id"] == "train-0" and mt.tests["test"][3]["id"] == "test-3"

    sp = tasks.load_task("semparse", data=mtop_dir, lang="de")
    assert sp.pool[0]["x"].startswith("Rufe") and "[IN:CREATE_CALL" in sp.prompt(sp.pool[:1], "x")
    assert sp.score("[IN:CREATE_CALL[SL:CONTACT Camilla]]", {"y": "[IN:CREATE_CALL [SL:CONTACT Camilla ] ]"}) == 100

    sql = tasks.load_task("sql", data=bird_dir)
    ex = sql.tests["dev"][0]
    prompt = sql.prompt(sql.pool[:2], ex["x"], ex["meta"])
    assert "CREATE TABLE customer" in prompt and prompt.endswith(f"Question: {ex['x']}\nSQL:")


def test_mt_formats_and_errors(tmp_path, mt_dir):
    d = tmp_path / "tsv"
    d.mkdir()
    (d / "train.tsv").write_text("a b\tc d\ne f\tg h\n", encoding="utf-8")
    (d / "test.jsonl").write_text(json.dumps({"en": "x y", "de": "z"}) + "\n", encoding="utf-8")
    t = tasks.load_task("mt", data=str(d))
    assert [e["x"] for e in t.pool] == ["a b", "e f"] and t.tests["test"][0]["y"] == "z"

    (d / "train.tsv").write_text("only one column\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"train.tsv:1: expected 2"):
        tasks.load_task("mt", data=str(d))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.en").write_text("a\nb\n")
    (bad / "train.de").write_text("a\n")
    with pytest.raises(UserError, match=r"train.en has 2 lines.*train.de has 1"):
        tasks.load_task("mt", data=str(bad))
    with pytest.raises(UserError, match="needs the network"):
        tasks.load_task("mt", data="hub:europarl")
    with pytest.raises(UserError, match="unknown task"):
        tasks.load_task("nope")
    with pytest.raises(UserError, match="data folder not found"):
        tasks.load_task("mt", data=str(tmp_path / "missing"))


def test_mt_metric_is_chrf(mt_dir):
    t = tasks.load_task("mt", data=mt_dir)
    ex = t.pool[0]
    assert t.score(ex["y"], ex) == pytest.approx(100.0)
    assert 0 < t.score(ex["y"][:10], ex) < 100
    cm = t.corpus_metrics([ex["y"]], [ex])
    assert cm["chrf"] == pytest.approx(100.0) and "nc:6" in cm["chrf_signature"]


def test_text_perturbations_keep_slot_values(mtop_dir):
    t = tasks.load_task("semparse", data=mtop_dir, lang="en")
    rng = random.Random(0)
    for ex in t.pool[:10]:
        outs = t.perturb(ex, rng, 3)
        assert outs, ex
        for x2, y2 in outs:
            assert x2 != ex["x"] and y2 == ex["y"]
            for slot in ("Camilla", "Bob", "Anna", "Paul", "Maria", "John"):
                if slot in ex["x"]:
                    assert slot in x2


def test_sql_execution_and_perturbation(bird_dir):
    t = tasks.load_task("sql", data=bird_dir)
    ex = t.tests["dev"][0]
    assert t.score(ex["y"], ex) == 100.0
    assert t.score("SELECT 1 FROM nowhere", ex) == 0.0
    outs = t.perturb(ex, random.Random(0), 2)
    assert outs
    for q2, sql2 in outs:
        lit = sql2.split("'")[1]
        assert lit in q2 and lit != "Rome"
        assert tasks.execute_sql(f"{bird_dir}/databases/shop/shop.sqlite", sql2) is not None
