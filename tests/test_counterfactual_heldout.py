"""The held-out family of counterfactual near-duplicates (counterfactual_heldout.py), never used in
training, and evaluate.py --cf-family heldout (the random+counterfactual context type with it)."""
import json
import os
import random

import pytest

from contrastive_context import counterfactual as cf
from contrastive_context import counterfactual_heldout as ho
from contrastive_context import evaluation as ev
from contrastive_context import tasks

edit = ho.mt_heldout_edit


# ------------------------------------------------------------------------------------- MT
def test_mt_verb_swap_keeps_the_slot_number_agrees():
    # English 3sg -> German 3sg; English -ing meets whichever German number y has
    x2, y2, e = edit("A man sits on a bench.", "Ein Mann sitzt auf einer Bank.", "verb_posture", "sit", "stand")
    assert (x2, y2) == ("A man stands on a bench.", "Ein Mann steht auf einer Bank.")
    assert (e["family"], e["orig_de"], e["new_de"], e["slot"], e["de_slot"]) == ("heldout", "sitzt", "steht", "3sg", "3sg")
    x2, y2, e = edit("Two men are sitting on a bench.", "Zwei Männer sitzen auf einer Bank.", "verb_posture", "sit",
                     "kneel")
    assert (x2, y2) == ("Two men are kneeling on a bench.", "Zwei Männer knien auf einer Bank.")
    # English singular but the German has only the plural form: the number does not agree -> refused
    with pytest.raises(ValueError, match="does not agree"):
        edit("A man sits with friends.", "Ein Mann und Freunde sitzen.", "verb_posture", "sit", "stand")


def test_mt_refuses_absent_and_repeated_spans():
    with pytest.raises(ValueError, match="occur 0 times"):     # "man" is translated "Typ": y~ not known
        edit("A man sits on a bench.", "Ein Typ sitzt auf einer Bank.", "person_masc", "man", "singer")
    with pytest.raises(ValueError, match="occur 2 times"):     # English span twice
        edit("A man talks to a man.", "Ein Mann spricht mit einem Mann.", "person_masc", "man", "singer")
    with pytest.raises(ValueError, match="occur 2 times"):     # German span twice, English once
        edit("A man sits.", "Ein Mann sitzt, der Mann lacht.", "person_masc", "man", "singer")
    with pytest.raises(ValueError, match="occur 2 times"):     # two forms of one verb in x
        edit("A man sits while a boy is sitting.", "Ein Mann sitzt.", "verb_posture", "sit", "stand")


def test_mt_refuses_a_new_form_already_present_or_shared():
    with pytest.raises(ValueError, match="already occurs in x"):
        edit("A man sits next to a woman who stands.", "Ein Mann sitzt neben einer Frau.", "verb_posture", "sit", "stand")
    with pytest.raises(ValueError, match="already occur in y"):  # only the German has the new word
        edit("A man sits.", "Ein Mann sitzt und steht.", "verb_posture", "sit", "stand")
    with pytest.raises(ValueError, match="German forms are"):    # walk and run share "läuft"
        edit("A dog walks in the park.", "Ein Hund läuft im Park.", "verb_motion", "walk", "run")
    with pytest.raises(ValueError, match="German forms are"):    # beside / next to: both "neben"
        edit("A dog sits beside a tree.", "Ein Hund sitzt neben einem Baum.", "prep_place", "beside", "next to")


def test_mt_preposition_only_before_a_determiner_and_articles_agree():
    x2, y2, _ = edit("A man on a ladder.", "Ein Mann auf einer Leiter.", "prep_place", "on", "under")
    assert (x2, y2) == ("A man under a ladder.", "Ein Mann unter einer Leiter.")
    with pytest.raises(ValueError, match="not followed by a determiner"):   # only a verb particle "auf"
        edit("A man picks up a box on the street.", "Ein Mann hebt eine Kiste auf.", "prep_place", "on", "under")
    with pytest.raises(ValueError, match="occur 2 times"):   # "auf" twice: which one translates "on" is unknown
        edit("Fish on ice at a market.", "Auf Eis gelegter Fisch auf einem Markt.", "prep_place", "on", "under")
    with pytest.raises(ValueError, match="not a prep_place use"):
        edit("A cat on top of a car.", "Eine Katze auf einem Auto.", "prep_place", "on", "under")
    # English a/an follow the new noun; German articles agree (one gender per class)
    x2, y2, _ = edit("A man is working.", "Ein Mann arbeitet.", "person_masc", "man", "artist")
    assert (x2, y2) == ("An artist is working.", "Ein Künstler arbeitet.")
    x2, y2, _ = edit("A woman in an apron.", "Eine Frau in einer Schürze.", "clothing_fem", "apron", "vest")
    assert (x2, y2) == ("A woman in a vest.", "Eine Frau in einer Weste.")


def test_the_heldout_table_shares_nothing_with_the_training_table():
    words, _ = cf.mt_table()
    train_de = {de.lower() for _, de in words.values()}
    for name, c in ho.mt_heldout_table().items():
        for w, e in c["words"].items():
            assert w not in words, f"{w} is in the training family's table"
            assert not {f.lower() for forms in e["de"].values() for f in forms} & train_de, name


def test_mt_make_is_deterministic_never_keeps_y_and_is_judged(mt_dir):
    task = tasks.load_task("mt", data=mt_dir)
    made = [(ex, ho.make(task, ex, random.Random(f"s{i}"))) for i, ex in enumerate(task.pool)]
    made = [(ex, c) for ex, c in made if c]
    assert len(made) > len(task.pool) // 2  # the fixture sits, runs, walks: edits exist
    for i, (ex, c) in enumerate(made):
        again = ho.make(task, ex, random.Random(f"s{task.pool.index(ex)}"))
        assert again == c and c["y"] != ex["y"] and c["x"] != ex["x"] and c["id"] == ex["id"] + "#cf"
        assert c["edit"]["family"] == "heldout"
        # counterfactual.judge (what evaluation.score_rows calls) hands the edit to the held-out judge
        assert cf.judge(task, c["y"], ex, c) == {"cf_copy": 1, "edit_ok": 0}
        assert cf.judge(task, ex["y"], ex, c) == {"cf_copy": 0, "edit_ok": 1}
    assert len({c["edit"]["kind"] for _, c in made}) >= 2


# ------------------------------------------------------------------------------------- MTOP
def _item(i, x, y):
    return {"id": str(i), "question": {"en": x}, "mr": {"slot_intent": {"en": y}}}


@pytest.fixture
def mtop_heldout_dir(tmp_path):
    pool = [("set an alarm for 7 am", "[IN:CREATE_ALARM [SL:DATE_TIME for 7 am ] ]"),
            ("delete the alarm", "[IN:DELETE_ALARM ]"),
            ("remind me to call mom", "[IN:CREATE_REMINDER [SL:PERSON_REMINDED me ] [SL:TODO call mom ] ]"),
            ("set a reminder for 5 pm", "[IN:CREATE_REMINDER [SL:DATE_TIME for 5 pm ] ]"),
            ("call Nick", "[IN:CREATE_CALL [SL:CONTACT Nick ] ]"),
            ("call my sister", "[IN:CREATE_CALL [SL:CONTACT [IN:GET_CONTACT [SL:CONTACT_RELATED my ] "
                               "[SL:TYPE_RELATION sister ] ] ] ]"),
            ("answer Bob", "[IN:ANSWER_CALL [SL:CONTACT Bob ] ]"),
            ("what is the weather in Paris", "[IN:GET_WEATHER [SL:LOCATION Paris ] ]"),
            ("weather tomorrow", "[IN:GET_WEATHER [SL:DATE_TIME tomorrow ] ]")]
    test = [("Set an alarm for 6 am", "[IN:CREATE_ALARM [SL:DATE_TIME for 6 am ] ]"),
            ("call Camilla now", "[IN:CREATE_CALL [SL:CONTACT Camilla ] ]"),
            ("is it cold this week", "[IN:GET_WEATHER [SL:WEATHER_ATTRIBUTE cold ] [SL:DATE_TIME this week ] ]")]
    d = tmp_path / "mtop_h"
    d.mkdir()
    (d / "dev.json").write_text(json.dumps([_item(i, *p) for i, p in enumerate(pool)]), encoding="utf-8")
    (d / "test.json").write_text(json.dumps([_item(100 + i, *p) for i, p in enumerate(test)]), encoding="utf-8")
    return str(d)


def test_semparse_intent_edit_changes_verb_and_intent_only_where_the_slots_fit(mtop_heldout_dir):
    task = tasks.load_task("semparse", data=mtop_heldout_dir)
    facts = ho.pool_facts(task)
    rules = {(r["from"], r["to"]): r for r in ho.semparse_rules()["intent_rules"]}
    r = rules[("CREATE_ALARM", "CREATE_REMINDER")]
    x2, y2, e = ho.intent_edit("Set an alarm for 6 am", "[IN:CREATE_ALARM [SL:DATE_TIME for 6 am ] ]", r, "an alarm",
                               "a reminder", facts)
    assert (x2, y2) == ("Set a reminder for 6 am", "[IN:CREATE_REMINDER [SL:DATE_TIME for 6 am ] ]")
    assert tasks.is_logical_form(y2) and e["new_span"] == "[IN:CREATE_REMINDER"
    with pytest.raises(ValueError, match="part of the trigger"):   # "alarm" inside the longer "an alarm"
        ho.intent_edit("Set an alarm for 6 am", "[IN:CREATE_ALARM [SL:DATE_TIME for 6 am ] ]", r, "alarm", "reminder",
                       facts)
    with pytest.raises(ValueError, match="refuses"):               # "my": a reminder's owner slot would appear
        ho.intent_edit("Set my alarm for 6 am", "[IN:CREATE_ALARM [SL:DATE_TIME for 6 am ] ]", r, "alarm", "reminder",
                       facts)
    d = rules[("CREATE_ALARM", "DELETE_ALARM")]                    # the pool never shows DATE_TIME under DELETE_ALARM
    with pytest.raises(ValueError, match="never shows"):
        ho.intent_edit("set an alarm for 6 am", "[IN:CREATE_ALARM [SL:DATE_TIME for 6 am ] ]", d, "set", "delete", facts)
    with pytest.raises(ValueError, match="inside a slot"):         # the trigger lies in a slot value
        ho.intent_edit("Ring Lardner", "[IN:CREATE_CALL [SL:CONTACT Ring Lardner ] ]",
                       rules[("CREATE_CALL", "ANSWER_CALL")], "ring", "answer", facts)


def test_semparse_heldout_edits_are_valid_parses_of_other_kinds(mtop_heldout_dir):
    task = tasks.load_task("semparse", data=mtop_heldout_dir)
    facts = ho.pool_facts(task)
    kinds = set()
    for ex in task.tests["test"]:
        for seed in range(8):
            c = ho.make(task, ex, random.Random(seed))
            assert c is not None and c["y"] != ex["y"] and tasks.is_logical_form(c["y"])
            e = c["edit"]
            kinds.add(e["kind"])
            top = c["y"].split()[0][4:]
            # every slot type the edit puts under the (new) intent is one the pool shows there
            new_types = set(ho.top_slots(c["y"])) - (set() if e["kind"] == "intent" else set(ho.top_slots(ex["y"])))
            assert top in facts["under"] and new_types <= set(facts["under"][top])
            assert cf.judge(task, c["y"], ex, c) == {"cf_copy": 1, "edit_ok": 0}
            assert cf.judge(task, ex["y"], ex, c) == {"cf_copy": 0, "edit_ok": 1}
            if e["kind"] != "intent":  # never a value swap within one slot type (the training family's edit)
                old = dict(ho._top_leaves(ex["y"])[0])
                assert old.get(e["slot"]) is None or e["orig_span"] != f"[SL:{e['slot']} {old[e['slot']]} ]" or \
                    e["new_span"].startswith(f"[SL:{e['slot']} [IN:")
    assert kinds >= {"intent", "contact", "time_place"}
    ex = task.tests["test"][1]   # call Camilla now -> call my sister now
    x2, y2, _ = next(o for o in ho.contact_edits(ex["x"], ex["y"], facts) if "sister" in o[0])
    assert x2 == "call my sister now" and y2 == ("[IN:CREATE_CALL [SL:CONTACT [IN:GET_CONTACT [SL:CONTACT_RELATED my ] "
                                                 "[SL:TYPE_RELATION sister ] ] ] ]")


def test_semparse_intent_copy_is_judged_on_the_whole_label():
    ex = {"y": "[IN:GET_REMINDER [SL:TODO x ] ]"}
    c = {"y": "[IN:DELETE_REMINDER [SL:TODO x ] ]", "edit": {"task": "semparse", "family": "heldout", "kind": "intent",
                                                             "new_span": "[IN:GET_REMINDER"}}
    # "[IN:GET_REMINDER_DATE_TIME" is another intent: not a copy of "[IN:GET_REMINDER"
    assert ho.judge(None, "[IN:GET_REMINDER_DATE_TIME ]", ex, c)["cf_copy"] == 0
    assert ho.judge(None, "[IN:GET_REMINDER [SL:TODO y ] ]", ex, c)["cf_copy"] == 1


# ------------------------------------------------------------------------------------- evaluation
def test_each_family_has_its_own_stream_and_the_default_is_the_training_family(mt_dir):
    task = tasks.load_task("mt", data=mt_dir)
    exs = task.tests["test"]
    default = ev.build_eval_contexts(task, exs, 2, 0, context_types=["random+counterfactual"])
    train = ev.build_eval_contexts(task, exs, 2, 0, context_types=["random+counterfactual"], cf_family="train")
    held = ev.build_eval_contexts(task, exs, 2, 0, context_types=["random+counterfactual"], cf_family="heldout")
    assert [i["cf"] for i in default] == [i["cf"] for i in train]
    for i in default:   # the training family's stream, as before the held-out family existed
        ex = i["example"]
        assert i["cf"] == cf.make(task, ex, random.Random(f"eval-counterfactual|mt|test|0|{ex['id']}"))
    assert held and all(i["cf"]["edit"]["family"] == "heldout" for i in held)
    assert all("family" not in i["cf"]["edit"] for i in default)
    with pytest.raises(Exception, match="unknown counterfactual family"):
        ev.build_eval_contexts(task, exs, 2, 0, context_types=["random+counterfactual"], cf_family="other")


def _far_mt_dir(tmp_path):
    """A pool that shares words with the test inputs but holds nothing near them: the copier always copies
    the counterfactual."""
    pool = [("A man reads a newspaper.", "Ein Mann liest eine Zeitung."), ("Girls eat ice cream.", "Mädchen essen Eis."),
            ("A child laughs loudly.", "Ein Kind lacht laut."), ("The bench is old.", "Die Bank ist alt."),
            ("A church in the city.", "Eine Kirche in der Stadt."), ("The water is cold.", "Das Wasser ist kalt."),
            ("Girls sing songs.", "Mädchen singen Lieder."), ("A woman paints.", "Eine Frau malt.")]
    test = [("A man sits on a bench.", "Ein Mann sitzt auf einer Bank."),
            ("Two girls are standing in front of a church.", "Zwei Mädchen stehen vor einer Kirche."),
            ("A child jumps into the water.", "Ein Kind springt ins Wasser."),
            ("The quick idea.", "Die schnelle Idee.")]
    from conftest import write_mt_dir
    return write_mt_dir(tmp_path / "mt_far", train=pool, test=test)


def test_evaluate_cf_family_heldout_copier_end_to_end(run_script, tmp_path):
    data = _far_mt_dir(tmp_path)
    common = ["evaluate.py", "--task", "mt", "--data", data, "--model", "copier", "--k", "2", "--context-types",
              "random,random+counterfactual", "--threads", "1"]
    run_script(*common, "--cf-family", "heldout", "--out", tmp_path / "h", check=True)
    run_script(*common, "--out", tmp_path / "t", check=True)
    s = json.loads((tmp_path / "h" / "summary.json").read_text())
    rows = [json.loads(l) for l in (tmp_path / "h" / "predictions.jsonl").read_text().splitlines()]
    cf_rows = [r for r in rows if r["context_type"] == "random+counterfactual"]
    assert s["cf_family"] == "heldout" and len(cf_rows) == s["counterfactual"]["n"] == 3  # "The quick idea." has none
    assert all(r["edit"]["family"] == "heldout" and r["prediction"] == r["cf_reference"] for r in cf_rows)
    assert s["counterfactual"]["cf_copy"]["mean"] == 100.0 and s["counterfactual"]["edit_ok"]["mean"] == 0.0
    assert "held-out family" in (tmp_path / "h" / "summary.md").read_text()
    t = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert "cf_family" not in t          # the default leaves summary.json as it was
    t_rows = [json.loads(l) for l in (tmp_path / "t" / "predictions.jsonl").read_text().splitlines()]
    # the random context type does not depend on the family
    assert [r for r in rows if r["context_type"] == "random"] == [r for r in t_rows if r["context_type"] == "random"]
    assert all("family" not in r["edit"] for r in t_rows if r["context_type"] == "random+counterfactual")
    bad = run_script(*common, "--cf-family", "other", "--out", tmp_path / "b")
    assert bad.returncode == 2 and "--cf-family" in bad.stderr and not os.path.exists(tmp_path / "b")


def test_quality_report_of_the_heldout_family(run_script, tmp_path):
    data = _far_mt_dir(tmp_path)
    for family in ("heldout", "train"):
        out, rep = tmp_path / f"{family}.jsonl", tmp_path / f"{family}.md"
        run_script("studies/tools/counterfactuals.py", "--task", "mt", "--data", data, *(["--family", family] * (family != "train")),
                   "--out", out, "--report", rep, check=True)
        rows = [json.loads(l) for l in out.read_text().splitlines()]
        meta = json.loads((tmp_path / f"{family}.jsonl.meta.json").read_text())
        assert all(("family" in r["edit"]) == (family == "heldout") for r in rows)
        assert meta.get("family") == (family if family == "heldout" else None)
    held = [json.loads(l) for l in (tmp_path / "heldout.jsonl").read_text().splitlines()]
    text = (tmp_path / "heldout.md").read_text()
    assert f"**{len(held)} of 4 inputs**" in text and "(family heldout)" in text and len(held) == 3
    assert "(family" not in (tmp_path / "train.md").read_text()


# ------------------------------------------------------------------------------------- training with both families
def test_mt_make_kinds_draws_only_those_kinds_and_refuses_other_tasks(mt_dir, mtop_heldout_dir):
    task = tasks.load_task("mt", data=mt_dir)
    every = [ho.make(task, ex, random.Random(f"s{i}")) for i, ex in enumerate(task.pool)]
    nouns = [ho.make(task, ex, random.Random(f"s{i}"), kinds=("noun",)) for i, ex in enumerate(task.pool)]
    assert {c["edit"]["kind"] for c in every if c} > {"noun"}   # the fixture has other kinds too
    assert nouns.count(None) < len(nouns) and {c["edit"]["kind"] for c in nouns if c} == {"noun"}
    # every draw of all kinds that is a noun swap is one the noun-only generator could draw
    assert all(n is not None for c, n in zip(every, nouns) if c and c["edit"]["kind"] == "noun")
    from contrastive_context.common import UserError
    with pytest.raises(UserError, match="MT kinds only"):
        ho.make(tasks.load_task("semparse", data=mtop_heldout_dir), tasks.load_task(
            "semparse", data=mtop_heldout_dir).pool[0], random.Random(0), kinds=("noun",))
    with pytest.raises(UserError, match="MT kinds only"):
        ho.make(task, task.pool[0], random.Random(0), kinds=("adjective",))


def test_cf_train_family_both_mixes_the_families_and_the_ids_resolve(mt_dir, mtop_heldout_dir):
    from contrastive_context import contexts
    from contrastive_context.common import UserError
    from contrastive_context.config import ContextConfig
    task = tasks.load_task("mt", data=mt_dir)
    kw = dict(regime="contrastive", k=2, alpha=0.0, beta=0.0, rho=0.0, counterfactual=1.0)
    train = contexts.sample_rows(task, ContextConfig(**kw), 1, 0, show_progress=False)
    both = contexts.sample_rows(task, ContextConfig(cf_train_family="train+heldout-noun", **kw), 1, 0,
                                show_progress=False)
    ids = lambda rows: [c for r in rows for c in r["context"]]
    assert not any(c.endswith("#cfn") for c in ids(train))
    cfn = [c for c in ids(both) if c.endswith("#cfn")]
    assert cfn and any(c.endswith("#cf") for c in ids(both))
    for c in cfn:  # a held-out noun swap of its pool example, rebuilt from its id alone
        ex = contexts.resolve_id(c, task)
        base = contexts.pool_by_id(task)[c[:-4]]
        assert ex["id"] == c and ex["edit"]["family"] == "heldout" and ex["edit"]["kind"] == "noun"
        assert ex["y"] != base["y"] and ex["x"] != base["x"]
    # the training family alone is what the committed runs drew: the same #cf example either way
    for c in ids(both):
        if c.endswith("#cf"):
            assert contexts.resolve_id(c, task) == contexts.train_counterfactual(task, contexts.pool_by_id(task)[c[:-3]])
    with pytest.raises(UserError, match="--counterfactual > 0"):
        contexts.sample_rows(task, ContextConfig(**dict(kw, counterfactual=0.0, cf_train_family="train+heldout-noun")),
                             1, 0, show_progress=False)
    sp = tasks.load_task("semparse", data=mtop_heldout_dir)
    with pytest.raises(UserError, match="is for --task mt"):
        contexts.sample_rows(sp, ContextConfig(cf_train_family="train+heldout-noun", **kw), 1, 0, show_progress=False)
