"""Counterfactual near-duplicates (counterfactual.py), the random+counterfactual context type and the
copier baseline (evaluate.py --model copier)."""
import json
import os
import random

import pytest

from contrastive_context import counterfactual as cf
from contrastive_context import evaluation as ev
from contrastive_context import tasks


# ------------------------------------------------------------------------------------- MT
def test_mt_edit_swaps_word_and_its_german_form_keeping_the_ending():
    x2, y2, edit = cf.mt_edit("A man in a red shirt.", "Ein Mann in einem roten Hemd.", "red", "blue")
    assert x2 == "A man in a blue shirt."
    assert y2 == "Ein Mann in einem blauen Hemd."
    assert edit["orig_de"] == "rot" and edit["new_de"] == "blau"


def test_mt_edit_refuses_a_span_absent_from_y():
    # x says "red", but the German sentence has no form of "rot": the new label cannot be known
    with pytest.raises(ValueError, match="occurs 0 times"):
        cf.mt_edit("A man in a red shirt.", "Ein Mann in einem Hemd.", "red", "blue")


def test_mt_edit_refuses_repeated_spans_same_german_and_other_classes():
    with pytest.raises(ValueError, match="occurs 2 times"):
        cf.mt_edit("A red car and a red boat.", "Ein rotes Auto und ein rotes Boot.", "red", "blue")
    with pytest.raises(ValueError, match="same German"):
        cf.mt_edit("A gray dog.", "Ein grauer Hund.", "gray", "grey")
    with pytest.raises(ValueError, match="same class"):
        cf.mt_edit("A red dog.", "Ein roter Hund.", "red", "two")
    with pytest.raises(ValueError, match="already occurs"):
        cf.mt_edit("A red and blue car.", "Ein rotes und blaues Auto.", "red", "blue")


def test_mt_compounds_are_not_matched():
    # "saftig-grünes" is a compound: "grün" is not a whole word there
    with pytest.raises(ValueError):
        cf.mt_edit("A green lawn.", "Ein saftig-grünes Gras.", "green", "red")


def test_mt_make_on_fixture_data_never_keeps_y(mt_dir):
    task = tasks.load_task("mt", data=mt_dir)
    made = [cf.make(task, ex, random.Random(i)) for i, ex in enumerate(task.pool)]
    made = [(ex, c) for ex, c in zip(task.pool, made) if c]
    assert made, "the fixture has red balls, two dogs, three men: some edits must exist"
    for ex, c in made:
        assert c["y"] != ex["y"] and c["x"] != ex["x"] and c["id"] == ex["id"] + "#cf"


def test_mt_judge_tells_copy_from_use():
    ex = {"id": "t", "x": "A man in a red shirt.", "y": "Ein Mann in einem roten Hemd."}
    x2, y2, edit = cf.mt_edit(ex["x"], ex["y"], "red", "blue")
    c = {"x": x2, "y": y2, "edit": edit}
    task = None
    assert cf.judge(task, y2, ex, c) == {"cf_copy": 1, "edit_ok": 0}                    # the copier
    assert cf.judge(task, ex["y"], ex, c) == {"cf_copy": 0, "edit_ok": 1}              # uses x
    assert cf.judge(task, "Ein Mann mit einem rotem Hemd", ex, c) == {"cf_copy": 0, "edit_ok": 1}
    assert cf.judge(task, "Ein Mann.", ex, c) == {"cf_copy": 0, "edit_ok": 0}          # ignores both
    assert cf.judge(task, "Rote und blaue Hemden", ex, c) == {"cf_copy": 1, "edit_ok": 0}


# ------------------------------------------------------------------------------------- MTOP
def test_semparse_edit_replaces_the_slot_in_both_and_refuses_missing_spans():
    x, y = "call Camilla on skype", "[IN:CREATE_CALL [SL:CONTACT Camilla ] [SL:NAME_APP skype ] ]"
    x2, y2, edit = cf.semparse_edit(x, y, "CONTACT", "Camilla", "Bob")
    assert x2 == "call Bob on skype" and y2 == "[IN:CREATE_CALL [SL:CONTACT Bob ] [SL:NAME_APP skype ] ]"
    with pytest.raises(ValueError, match="occurs 0 times"):          # value not in the utterance
        cf.semparse_edit("call her on skype", y, "CONTACT", "Camilla", "Bob")
    with pytest.raises(ValueError, match="occurs 0 times"):          # value not in the logical form
        cf.semparse_edit(x, "[IN:CREATE_CALL [SL:NAME_APP skype ] ]", "CONTACT", "Camilla", "Bob")
    with pytest.raises(ValueError, match="overlap"):
        cf.semparse_edit(x, y, "CONTACT", "Camilla", "Camilla Smith")


def test_semparse_make_uses_pool_values_of_the_same_type(mtop_dir):
    task = tasks.load_task("semparse", data=mtop_dir)
    values = cf.pool_slot_values(task)
    for i, ex in enumerate(task.tests["test"]):
        c = cf.make(task, ex, random.Random(i))
        assert c is not None and c["y"] != ex["y"]
        e = c["edit"]
        assert e["new"] in values[e["slot"]] and e["new"] != e["orig"]
        assert cf.judge(task, c["y"], ex, c) == {"cf_copy": 1, "edit_ok": 0}
        assert cf.judge(task, ex["y"], ex, c) == {"cf_copy": 0, "edit_ok": 1}


# ------------------------------------------------------------------------------------- alignment
def test_alignment_counterfactual_changes_one_symbol_and_its_chunk_only():
    task = tasks.load_task("alignment")
    for i, ex in enumerate(task.tests["test"][:100]):
        c = cf.make(task, ex, random.Random(i))
        assert c is not None
        e = c["edit"]
        assert sum(a != b for a, b in zip(ex["x"], c["x"])) == 1 and e["new"] not in ex["x"]
        assert c["y"] != ex["y"]
        old, new = task.chunks(ex["x"], ex["y"]), task.chunks(c["x"], c["y"])
        assert all(old[s] == new[s] for s in ex["x"] if s != e["orig"])       # other chunks kept
        assert task.accepts(e["new"], new[e["new"]]) and not task.accepts(e["orig"], new[e["new"]])
        assert cf.judge(task, c["y"], ex, c) == {"cf_copy": 1, "edit_ok": 0}
        assert cf.judge(task, ex["y"], ex, c) == {"cf_copy": 0, "edit_ok": 1}


def test_alignment_edit_refuses_a_symbol_already_in_x():
    task = tasks.load_task("alignment")
    ex = task.tests["test"][0]
    with pytest.raises(ValueError):
        cf.alignment_edit(task, ex["x"], ex["y"], 0, ex["x"][1], random.Random(0))


# ------------------------------------------------------------------------------------- evaluation + copier
def test_copier_answers_the_label_of_the_closest_example_ties_last():
    ctx = [{"y": "a"}, {"y": "b"}, {"y": "c"}]
    assert cf.copier_answer(ctx, [0.2, 0.9, 0.1]) == "b"
    assert cf.copier_answer(ctx, [0.5, 0.1, 0.5]) == "c"
    assert cf.copier_answer([], []) == ""


def test_counterfactual_instances_are_model_independent_and_scored(mt_dir):
    task = tasks.load_task("mt", data=mt_dir)
    exs = task.tests["test"]
    a = ev.build_eval_contexts(task, exs, 2, 0, context_types=["random+counterfactual"])
    b = ev.build_eval_contexts(task, exs[:6], 2, 0, context_types=["random", "random+counterfactual"])
    assert a and [i["cf"]["x"] for i in a if i["example"]["id"] in {e["id"] for e in exs[:6]}] == \
        [i["cf"]["x"] for i in b if i["context_type"] == "random+counterfactual"]
    for it in a:
        assert len(it["context"]) == 2 and it["context"][it["position"]]["id"].endswith("#cf")
    rows, _ = ev.predict(ev.COPIER, None, task, a, 0)
    # where the counterfactual is the closest example the copier copies it; where a random pool example
    # is closer (the fixture repeats its sentences) it answers that example's label instead
    closest = [it["nsim"][it["position"]] >= max(it["nsim"]) for it in a]
    assert any(closest)
    for r, it, c in zip(rows, a, closest):
        assert r["edit_ok"] == 0 or not c
        if c:
            assert r["cf_copy"] == 1 and r["prediction"] == it["cf"]["y"] == r["cf_reference"]


def test_evaluate_copier_cli(run_script, tmp_path, mt_dir):
    out = tmp_path / "ev"
    run_script("evaluate.py", "--task", "mt", "--data", mt_dir, "--model", "copier", "--k", "2", "--out", out,
               check=True)
    s = json.loads((out / "summary.json").read_text())
    assert s["model"] == "copier" and s["by_context_type"]["zero"]["mean"] == 0.0
    rows = [json.loads(l) for l in (out / "predictions.jsonl").read_text().splitlines()]
    cf_rows = [r for r in rows if r["context_type"] == "random+counterfactual"]
    assert cf_rows and s["counterfactual"]["n"] == len(cf_rows)
    assert s["counterfactual"]["cf_copy"]["mean"] == 100.0 * sum(r["cf_copy"] for r in cf_rows) / len(cf_rows) > 50
    assert s["counterfactual"]["edit_ok"]["mean"] == 100.0 * sum(r["edit_ok"] for r in cf_rows) / len(cf_rows)
    assert all(r["edit_ok"] == 0 for r in cf_rows if r["prediction"] == r["cf_reference"])
    (tmp_path / "adapter").mkdir()
    bad = run_script("evaluate.py", "--task", "mt", "--data", mt_dir, "--model", "copier", "--adapter", tmp_path / "adapter",
                     "--out", tmp_path / "ev2")
    assert bad.returncode == 2 and "copier has no weights" in bad.stderr and not os.path.exists(tmp_path / "ev2")


def test_evaluate_source_copier_cli(run_script, tmp_path, mt_dir):
    """evaluate.py --model source-copier: every context type's prediction is the untranslated source x."""
    out = tmp_path / "src"
    run_script("evaluate.py", "--task", "mt", "--data", mt_dir, "--model", "source-copier", "--k", "2",
               "--context-types", "zero,random,similar", "--out", out, check=True)
    s = json.loads((out / "summary.json").read_text())
    assert s["model"] == "source-copier"
    rows = [json.loads(l) for l in (out / "predictions.jsonl").read_text().splitlines()]
    test_x = dict(zip((f"test-{i}" for i in range(1000)), open(os.path.join(mt_dir, "test.en"), encoding="utf-8").read().splitlines()))
    assert rows and all(r["prediction"] == test_x[r["id"]] for r in rows)
    by_type = {t: [r["score"] for r in rows if r["context_type"] == t] for t in ("zero", "random", "similar")}
    assert by_type["zero"] == by_type["random"] == by_type["similar"] and max(by_type["zero"]) > 0
