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
    three others (calling, weather, alarm); slots repeat values of one type, for the counterfactual swaps, and
    calls name a person or "my <relation>", for the held-out counterfactual family."""
    names, apps = ["Camilla", "Bob", "Anna", "Paul", "Maria", "John"], ["whatsapp", "skype", "messenger"]
    places, times = ["Paris", "Berlin", "Rome", "Oslo"], ["7 am", "noon", "9 pm", "midnight"]
    relations = ["sister", "brother", "uncle", "aunt"]  # "call my sister": the held-out family's name <-> relation swap

    def call_x(i):
        return f"call my {relations[i % 4]}" if i % 2 else f"call {names[i % 6]} on {apps[i % 3]}"

    def call_y(i):
        if i % 2:
            return f"[IN:CREATE_CALL [SL:CONTACT [IN:GET_CONTACT [SL:CONTACT_RELATED my ] [SL:TYPE_RELATION {relations[i % 4]} ] ] ] ]"
        return f"[IN:CREATE_CALL [SL:CONTACT {names[i % 6]} ] [SL:NAME_APP {apps[i % 3]} ] ]"
    kinds = [
        (call_x, call_y),
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


def _chat_set(root, name="chat_ende", n_train=40, n_test=40):
    """A tiny customer-service MT set in the deployment studies' layout (ROOT/<set>/{train,test}.{en,de})."""
    d = root / name
    d.mkdir(parents=True)
    items = ["order", "parcel", "invoice", "booking", "refund", "password", "account", "delivery"]
    german = ["Bestellung", "Paket", "Rechnung", "Buchung", "Rückerstattung", "Passwort", "Konto", "Lieferung"]
    for split, n, off in (("train", n_train, 0), ("test", n_test, 3)):
        en = [f"Where is my {items[(i + off) % 8]} number {i}?" for i in range(n)]
        de = [f"Wo ist meine {german[(i + off) % 8]} Nummer {i}?" for i in range(n)]
        (d / f"{split}.en").write_text("".join(s + "\n" for s in en), encoding="utf-8")
        (d / f"{split}.de").write_text("".join(s + "\n" for s in de), encoding="utf-8")
    return d


@pytest.mark.slow
def test_deploy_mt_driver_runs_every_command_shape_at_its_smoke_budget(tmp_path):
    """studies/deploy/run_mt.sh ROOT OUT chat_ende 36 smoke: its first six runs (zero prompt, nearest, P_0 only, an
    adapter's slot, the copier on an empty pool, an LM on an empty pool) each write a finished deployment; a rerun
    skips all six. 36 items: feedback is due after the delay (32), so an empty pool fills."""
    root = tmp_path / "data"
    _chat_set(root)
    out = tmp_path / "out"
    proc = _driver("studies/deploy/run_mt.sh", root, out, "chat_ende", "36", "smoke")
    assert proc.stdout.rstrip().endswith("done")
    first = ["zero-zero", "zero-nearest", "zero-p0", "contrastive-cf1-nearest", "copier-empty", "zero-empty"]
    assert sorted(os.listdir(out / "chat_ende")) == sorted(first)
    for name in first:
        with open(out / "chat_ende" / name / "steps.jsonl", encoding="utf-8") as f:
            assert len(f.readlines()) == 36, name
        assert os.path.isfile(out / "chat_ende" / name / "summary.json")
    again = _driver("studies/deploy/run_mt.sh", root, out, "chat_ende", "36", "smoke")
    assert "deploy " not in again.stdout and again.stdout.count("skip ") == 6
    empty = _driver("studies/deploy/run_mt.sh", root, tmp_path / "empty", "chat_ende", "36", "smoke", "empty")
    made = ["zero-zero", "copier-empty", "zero-empty", "contrastive-cf1-empty", "contrastive-cf1-zeroprompt",
            "contrastive-empty"]  # the empty start's first six runs
    assert sorted(os.listdir(tmp_path / "empty" / "chat_ende")) == sorted(made) and "done" in empty.stdout


@pytest.mark.slow
def test_gamma_mt_driver_at_its_smoke_budget(tmp_path):
    """studies/mt/gamma_mt.sh DATA 1 OUT smoke: gamma-1 contexts (counterfactual near-duplicates `#cf` among
    them), a trained run and both evaluations under the seed-1 label; a rerun does nothing but report."""
    data, out = _multi30k_from_committed_paraphrases(tmp_path), tmp_path / "out"
    proc = _driver("studies/mt/gamma_mt.sh", data, "1", out, "smoke")
    label = "contrastive-cf1@s1"
    assert proc.stdout.rstrip().endswith(f"{label} done")
    assert _summaries(out) == [f"eval/{label}/summary.json", f"eval_cf/{label}/summary.json"]
    with open(out / "contexts" / f"{label}.jsonl", encoding="utf-8") as f:
        ids = [c for line in f for c in json.loads(line)["context"]]
    assert any(c.endswith("#cf") for c in ids)
    with open(out / "runs" / label / "config.json", encoding="utf-8") as f:
        assert json.load(f)["seed"] == 1
    again = _driver("studies/mt/gamma_mt.sh", data, "1", out, "smoke")
    assert again.stdout.strip().endswith(f"{label} done") and "== train ==" not in again.stdout


@pytest.mark.slow
def test_relevance_driver_judges_the_copier_base_and_every_adapter_at_its_smoke_budget(tmp_path):
    """studies/tools/relevance.sh mt DATA RES smoke: the copier on the five context types, then copier, base and
    each adapter under RES/adapters (here one tiny run) on random+counterfactual."""
    data, res = _multi30k_from_committed_paraphrases(tmp_path), tmp_path / "res"
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", CC_NO_PROGRESS="1", HF_HUB_OFFLINE="1")
    subprocess.run(["python", os.path.join(REPO, "train.py"), "--task", "mt", "--data", str(data), "--model", "tiny",
                    "--max-steps", "2", "--max-pool", "1000", "--k", "2", "--eval-limit", "0", "--threads", "1",
                    "--out", str(res / "adapters" / "tiny-run")], env=env, check=True, capture_output=True)
    proc = _driver("studies/tools/relevance.sh", "mt", data, res, "smoke")
    assert proc.stdout.rstrip().endswith("done")
    assert _summaries(res) == ["eval/copier/summary.json"] + [f"eval_cf/{l}/summary.json"
                                                                for l in ("base", "copier", "tiny-run")]
    with open(res / "eval_cf" / "tiny-run" / "summary.json", encoding="utf-8") as f:
        assert "random+counterfactual" in json.dumps(json.load(f))


@pytest.mark.slow
def test_rejudge_driver_runs_every_command_shape_at_its_smoke_budget(tmp_path):
    """studies/counterfactuals_heldout/rejudge.sh ROOT OUT smoke: the first label of each list, the copier and
    the base model, for the three studies, judged on the held-out counterfactual family."""
    root = tmp_path / "data"
    root.mkdir()
    _multi30k_from_committed_paraphrases(root)
    _mtop_with_holdout_domains(root)
    out = tmp_path / "out"
    proc = _driver("studies/counterfactuals_heldout/rejudge.sh", root, out, "smoke")
    assert proc.stdout.rstrip().endswith("done")
    want = {"mt_fullpool": ("contrastive-cf1", "copier", "base", "random"),
            "mt": ("contrastive-cf1", "copier", "base", "random"),
            "semparse": ("copier", "base", "contrastive", "contrastive+zero0.1")}
    assert _summaries(out) == sorted(f"{s}/eval_cf_heldout/{l}/summary.json" for s, ls in want.items() for l in ls)
    again = _driver("studies/counterfactuals_heldout/rejudge.sh", root, out, "smoke")
    assert again.stdout.count("skip ") == 12


@pytest.mark.slow
def test_real_lm_driver_two_workers_at_its_smoke_budget(tmp_path):
    """studies/tools/real_lm.sh mt DATA OUT smoke: worker A (contrastive, after the paraphrase files) and worker
    B (random, waiting for them), then the final table and the context-use table."""
    data, out = _multi30k_from_committed_paraphrases(tmp_path), tmp_path / "out"
    _driver("studies/tools/real_lm.sh", "mt", data, out, "smoke")
    for f in ("paraphrases.train.jsonl", "paraphrases.test.jsonl", "context_use.md"):
        assert os.path.isfile(out / f), f
    for f in ("worker_a.log", "worker_b.log", "final.log"):  # beside the study folder, not in it
        assert os.path.isfile(tmp_path / "out-logs" / f), f
    assert {"eval/contrastive/summary.json", "eval/random/summary.json"} <= set(_summaries(out))
    with open(out / "context_use.md", encoding="utf-8") as f:
        table = f.read()
    assert "contrastive" in table and "random" in table


@pytest.mark.parametrize("study,ref,family,files", [
    ("mt_fullpool", "contrastive-cf1", "heldout", ("relevance.md", "relevance_s0.md", "relevance_s1.md",
                                                   "relevance_s2.md")),
    ("mt_fullpool", "contrastive-cf1", "train", ("relevance_train.md", "relevance_train_s0.md",
                                                 "relevance_train_s1.md", "relevance_train_s2.md")),
    ("mt", "contrastive-cf1", "heldout", ("relevance.md", "relevance_s0.md", "relevance_s1.md")),
    ("semparse", "contrastive", "heldout", ("relevance.md", "relevance_s0.md", "relevance_s1.md"))])
def test_verdicts_driver_rerenders_the_committed_verdicts(tmp_path, study, ref, family, files):
    """studies/counterfactuals_heldout/verdicts.sh STUDY REF FAMILY OUT re-renders the committed verdict files from
    the committed evaluations, byte for byte below their first line (the command, which names OUT)."""
    out = tmp_path / "verdicts"
    subprocess.run(["bash", os.path.join(REPO, "studies/counterfactuals_heldout/verdicts.sh"), study, ref, family,
                    str(out)], cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), check=True, capture_output=True)
    made = sorted(f for f in os.listdir(out) if f.endswith(".md"))
    assert made == sorted(files)
    for name in files:
        with open(out / name, encoding="utf-8") as f, \
                open(os.path.join(REPO, "results", "counterfactuals_heldout", study, name), encoding="utf-8") as g:
            assert f.read().split("\n", 1)[1] == g.read().split("\n", 1)[1], name
