"""The study drivers with a smoke budget run end to end as subprocesses (model tiny, a few steps, a few inputs)
on small data the tests make here, and write their summaries. studies/gemma/run.sh reads the committed
Multi30k paraphrase files (results/mt/paraphrases.*.jsonl), so its data is made of their inputs (ids train-<i>,
test-<i>), with word-by-word German from the counterfactual tables so that both counterfactual families find
their words."""
import json
import os
import re
import subprocess

import pytest

from conftest import REPO

PROMPTS = os.path.join(REPO, "contrastive_context", "prompts")


def _driver(script, data, out, *args, timeout=3600):  # minutes of CPU; far longer on a loaded machine
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", CC_NO_PROGRESS="1", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(["bash", os.path.join(REPO, script), str(data), str(out), *args], env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _english_to_german():
    """{English word: German word} of the two counterfactual tables (training and held-out families)."""
    words = {}
    with open(os.path.join(PROMPTS, "counterfactual_mt.json"), encoding="utf-8") as f:
        for cls in json.load(f)["classes"].values():
            words.update(cls["words"])
    with open(os.path.join(PROMPTS, "counterfactual_mt_heldout.json"), encoding="utf-8") as f:
        for cls in json.load(f)["classes"].values():
            for en, de in cls["words"].items():
                if isinstance(de, str):  # nouns, prepositions: one form each
                    words.setdefault(en, de)
                    continue
                for slot, en_forms in de["en"].items():  # verbs: the German of the slot's first person form
                    german = de["de"][cls["slots"][slot][0]][0]
                    for e in en_forms:
                        words.setdefault(e, german)
    return words


def _multi30k_from_committed_paraphrases(tmp_path, n_train=1000, n_test=12):
    de = _english_to_german()
    d = tmp_path / "multi30k"
    d.mkdir()
    for split, n in (("train", n_train), ("test", n_test)):
        with open(os.path.join(REPO, "results", "mt", f"paraphrases.{split}.jsonl"), encoding="utf-8") as f:
            rows = [json.loads(line) for line, _ in zip(f, range(n))]
        assert [r["id"] for r in rows] == [f"{split}-{i}" for i in range(n)]
        (d / f"{split}.en").write_text("".join(r["x"] + "\n" for r in rows), encoding="utf-8")
        german = [re.sub(r"[A-Za-z]+", lambda m: de.get(m.group(0), de.get(m.group(0).lower(), m.group(0))), r["x"])
                  for r in rows]
        (d / f"{split}.de").write_text("".join(g + "\n" for g in german), encoding="utf-8")
    return d


def _mtop_with_holdout_domains(tmp_path):
    """dev.json and test.json with items of the four held-out domains (event, music, news, recipes) and of
    three others (calling, weather, alarm); slots repeat values of one type, for the counterfactual swaps."""
    names, apps = ["Camilla", "Bob", "Anna", "Paul", "Maria", "John"], ["whatsapp", "skype", "messenger"]
    places, times = ["Paris", "Berlin", "Rome", "Oslo"], ["7 am", "noon", "9 pm", "midnight"]
    kinds = [
        (lambda i: f"call {names[i % 6]} on {apps[i % 3]}",
         lambda i: f"[IN:CREATE_CALL [SL:CONTACT {names[i % 6]} ] [SL:NAME_APP {apps[i % 3]} ] ]"),
        (lambda i: f"weather in {places[i % 4]}", lambda i: f"[IN:GET_WEATHER [SL:LOCATION {places[i % 4]} ] ]"),
        (lambda i: f"wake me at {times[i % 4]}", lambda i: f"[IN:CREATE_ALARM [SL:DATE_TIME at {times[i % 4]} ] ]"),
        (lambda i: f"play songs by {names[i % 6]}", lambda i: f"[IN:PLAY_MUSIC [SL:MUSIC_ARTIST_NAME {names[i % 6]} ] ]"),
        (lambda i: f"news from {places[i % 4]}", lambda i: f"[IN:GET_STORIES_NEWS [SL:NEWS_TOPIC {places[i % 4]} ] ]"),
        (lambda i: f"events in {places[i % 4]}", lambda i: f"[IN:GET_EVENT [SL:LOCATION {places[i % 4]} ] ]"),
        (lambda i: f"recipes from {places[i % 4]}", lambda i: f"[IN:GET_RECIPES [SL:RECIPES_CUISINE {places[i % 4]} ] ]"),
    ]

    def item(i, kind):
        x, y = kinds[kind]
        return {"id": f"{1000 + i}", "question": {"en": x(i)}, "mr": {"slot_intent": {"en": y(i)}}}
    d = tmp_path / "mtop"
    d.mkdir()
    (d / "dev.json").write_text(json.dumps([item(i, i % 7) for i in range(70)]), encoding="utf-8")
    # the driver's --test-size 400 keeps 400 test items of the other domains (their rest joins the pool)
    test = [item(i, i % 7) for i in range(70, 98)] + [item(i, i % 3) for i in range(98, 500)]
    (d / "test.json").write_text(json.dumps(test), encoding="utf-8")
    return d


def _summaries(out):
    return sorted(os.path.relpath(os.path.join(r, f), out) for r, _, fs in os.walk(out) for f in fs
                  if f == "summary.json")


@pytest.mark.slow
def test_gemma_driver_pilot_runs_at_its_smoke_budget(tmp_path):
    """studies/gemma/run.sh DATA OUT pilot smoke, as its header documents: train, the three evaluations, base."""
    data, out = _multi30k_from_committed_paraphrases(tmp_path), tmp_path / "out"
    proc = _driver("studies/gemma/run.sh", data, out, "pilot", "smoke")
    assert "pilot done" in proc.stdout
    assert _summaries(out) == sorted(f"{e}/{l}/summary.json" for e in ("eval", "eval_cf", "eval_cf_heldout")
                                     for l in ("base", "contrastive"))
    assert os.path.isdir(out / "runs" / "contrastive" / "final")
    again = _driver("studies/gemma/run.sh", data, out, "pilot", "smoke")  # resumable: a finished stage is skipped
    assert "train contrastive" not in again.stdout and "eval " not in again.stdout


@pytest.mark.slow
def test_semparse_holdout_drivers_pilot_and_deploy_at_their_smoke_budget(tmp_path):
    """studies/semparse_holdout/run.sh DATA OUT pilot smoke, then deploy.sh DATA OUT smoke (the README's smoke
    check): copier and contrastive trained and scored on both test splits, then deployed with and without
    feedback; the untrained zero model is skipped by deploy.sh, the base model is not."""
    data, out = _mtop_with_holdout_domains(tmp_path), tmp_path / "out"
    proc = _driver("studies/semparse_holdout/run.sh", data, out, "pilot", "smoke")
    assert "pilot done" in proc.stdout
    assert _summaries(out) == sorted(f"{e}/{l}/summary.json" for e in ("eval_heldout", "eval_in")
                                     for l in ("contrastive", "copier"))
    dep = _driver("studies/semparse_holdout/deploy.sh", data, out, "smoke")
    assert "deploy done" in dep.stdout and "zero-zero" not in dep.stdout
    made = sorted(os.listdir(out / "deploy"))
    assert made == sorted(f"{m}-{p}" for m in ("base", "contrastive", "copier") for p in ("nearest", "p0"))
    assert all(os.path.isfile(out / "deploy" / d / "summary.json") for d in made)


@pytest.mark.slow
def test_fullpool_driver_both_families_worker_at_its_smoke_budget(tmp_path):
    """studies/mt_fullpool/relevance_train.sh DATA OUT worker-d smoke: the gamma-1 run with counterfactuals of
    both families (train.py --cf-train-family train+heldout-noun) trained and judged on the three evaluations;
    its contexts hold near-duplicates of both families (`#cf` and `#cfn`), and a rerun skips every stage."""
    data, out = _multi30k_from_committed_paraphrases(tmp_path), tmp_path / "out"
    proc = _driver("studies/mt_fullpool/relevance_train.sh", data, out, "worker-d", "smoke")
    assert "worker-d done" in proc.stdout
    label = "contrastive-cf1-both"
    assert _summaries(out) == sorted(f"{e}/{label}/summary.json" for e in ("eval", "eval_cf", "eval_cf_heldout"))
    run = out / "runs" / label
    with open(run / "config.json", encoding="utf-8") as f:
        cfg = json.load(f)
    assert cfg["counterfactual"] == 1.0 and cfg["cf_train_family"] == "train+heldout-noun"
    with open(run / "contexts.jsonl", encoding="utf-8") as f:
        ids = [c for line in f for c in json.loads(line)["context"]]
    assert any(c.endswith("#cf") for c in ids) and any(c.endswith("#cfn") for c in ids)
    again = _driver("studies/mt_fullpool/relevance_train.sh", data, out, "worker-d", "smoke")
    assert "train " not in again.stdout and "eval" not in again.stdout.replace("worker-d done", "")
