import hashlib
import json
import os
import random
import time

import pytest

from contrastive_context import hub
from contrastive_context import sql_sandbox
from contrastive_context import tasks
from contrastive_context.common import UserError


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
        assert sql_sandbox.execute_sql(f"{bird_dir}/databases/shop/shop.sqlite", sql2) is not None


@pytest.mark.parametrize("name", ["x#my", "q?mode=rwc", "p%23c", "sp ace"])
def test_sql_data_path_with_uri_characters_is_read_in_place(bird_dir, tmp_path, name):
    """A --data path holding '#' (or '?', '%') was pasted into SQLite's `file:` URI
    unescaped: SQLite opened and CREATED, read-write, a database at the truncated path outside --data,
    and every score was 0. The path is percent-encoded now: the real database is read, read-only."""
    import os
    import shutil
    import sqlite3
    data = tmp_path / "where" / name
    shutil.copytree(bird_dir, data)
    shutil.rmtree(bird_dir)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    t = tasks.load_task("sql", data=str(data))
    ex = t.tests["dev"][0]
    assert "CREATE TABLE customer" in t.schema("shop")
    assert t.score(ex["y"], ex) == 100.0
    assert sql_sandbox.execute_sql(t.db_path("shop"), "SELECT COUNT(*) FROM customer WHERE city = 'Rome'") == [(5,)]
    with pytest.raises(sqlite3.OperationalError):  # still read-only
        sql_sandbox.sqlite_ro(t.db_path("shop")).execute("CREATE TABLE t (a)")
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing created anywhere
    assert os.listdir(tmp_path / "where") == [name]


# ----------------------------------------------------------------------------- SQL sandbox
def _db(bird_dir):
    return f"{bird_dir}/databases/shop/shop.sqlite"


def _snapshot(folder):
    import os
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            out[p] = open(p, "rb").read()
    return out


@pytest.mark.parametrize("sql", [
    "VACUUM INTO '{tmp}/copy.db'",
    "VACUUM",
    "ATTACH '{tmp}/x.db' AS e",
    "ATTACH DATABASE ':memory:' AS m",
    "DELETE FROM customer",
    "DROP TABLE customer",
    "UPDATE customer SET city = 'X'",
    "INSERT INTO customer VALUES (99, 'a', 'b')",
    "CREATE TABLE t (x)",
    "CREATE TEMP TABLE t (x)",
    "PRAGMA journal_mode = WAL",
    "PRAGMA user_version = 3",
    "PRAGMA user_version",
    "SELECT 1; DELETE FROM customer",
    "BEGIN IMMEDIATE",
    "SELECT load_extension('/tmp/evil')",
    "REINDEX",
    "ANALYZE",
], ids=lambda s: s.split()[0].lower() + "-" + hashlib.sha256(s.encode()).hexdigest()[:6])  # stable across runs
def test_sql_sandbox_refuses_writes_and_attach(bird_dir, tmp_path, sql):
    import os
    before = _snapshot(bird_dir)
    outside = tmp_path / "outside"
    outside.mkdir()
    assert sql_sandbox.execute_sql(_db(bird_dir), sql.format(tmp=outside)) is None
    assert os.listdir(outside) == []
    assert _snapshot(bird_dir) == before


def test_sql_sandbox_memory_bombs_fail_fast(bird_dir):
    import resource
    import time
    for sql in ("SELECT length(replace(hex(zeroblob(400000000)), '0', 'ab'))",
                "SELECT length(zeroblob(400000000))",
                "SELECT length(printf('%.*c', 400000000, 'x'))",
                "SELECT length(format('%.*c', 2000000000, 'x'))",
                "SELECT length(printf('%2000000000d', 1))",
                "SELECT length(group_concat(hex(randomblob(100000)))) FROM customer a, customer b, orders c"):
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.monotonic()
        assert sql_sandbox.execute_sql(_db(bird_dir), sql, timeout=2.0) is None
        assert time.monotonic() - t0 < 3.0
        assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 200_000  # KiB: < 200 MB growth


def test_sql_sandbox_timeout_and_reads_still_work(bird_dir):
    import time
    t0 = time.monotonic()
    slow = ("WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) "
            "SELECT count(*) FROM r")
    assert sql_sandbox.execute_sql(_db(bird_dir), slow, timeout=0.5) is None
    assert time.monotonic() - t0 < 2.0
    assert sql_sandbox.execute_sql(_db(bird_dir), "SELECT COUNT(*) FROM customer WHERE city = 'Rome'") == [(5,)]
    assert sql_sandbox.execute_sql(_db(bird_dir), "SELECT name FROM sqlite_master WHERE type='table' ORDER BY 1") == \
        [("customer",), ("orders",)]
    assert sql_sandbox.execute_sql(_db(bird_dir), "SELECT id FROM orders", max_rows=10) is None  # 40 rows > cap
    assert sql_sandbox.execute_sql(_db(bird_dir), "") is None


def test_sql_perturbation_never_uses_quoted_column_names_as_values(bird_dir):
    t = tasks.load_task("sql", data=bird_dir)
    cities = {"Paris", "Berlin", "Madrid", "Rome"}
    for quoting in ("city", "\"city\"", "`city`", "T1.city", "T1.\"city\"", "[city]"):
        sql = f"SELECT COUNT(*) FROM customer AS T1 WHERE {quoting} = 'Rome'"
        ex = {"id": "q", "x": "How many customers live in Rome?", "y": sql, "meta": {"db_id": "shop"}}
        outs = t.perturb(ex, random.Random(0), 10)
        assert len(outs) == 3, (quoting, outs)
        for q2, sql2 in outs:
            new = q2[len("How many customers live in "):-1]
            assert new in cities - {"Rome"}, q2
            assert sql_sandbox.execute_sql(_db(bird_dir), sql2) is not None
    # a double-quoted literal is swapped too; "a" = "b" between two columns is not a literal
    ex = {"id": "q", "x": "How many customers live in Rome?", "meta": {"db_id": "shop"},
          "y": 'SELECT COUNT(*) FROM customer WHERE city = "Rome"'}
    assert all(q2.split()[-1][:-1] in cities for q2, _ in t.perturb(ex, random.Random(1), 5))
    ex = {"id": "q", "x": "Customers whose name is their city", "meta": {"db_id": "shop"},
          "y": 'SELECT COUNT(*) FROM customer WHERE name = "city"'}
    assert t.perturb(ex, random.Random(1), 5) == []


def test_sql_bad_data_files(bird_dir):
    import json
    import os
    with open(os.path.join(bird_dir, "dev.json"), "w") as f:
        json.dump([{"db_id": "shop", "question": 3, "SQL": "SELECT 1"}], f)
    with pytest.raises(UserError, match="field 'question' must be a string"):
        tasks.load_task("sql", data=bird_dir)
    with open(os.path.join(bird_dir, "dev.json"), "w") as f:
        json.dump([{"db_id": "../../etc", "question": "q", "SQL": "SELECT 1"}], f)
    with pytest.raises(UserError, match="invalid db_id"):
        tasks.load_task("sql", data=bird_dir)
    with open(os.path.join(bird_dir, "dev.json"), "w") as f:
        json.dump({"not": "a list"}, f)
    with pytest.raises(UserError, match="expected a JSON list"):
        tasks.load_task("sql", data=bird_dir)


# ----------------------------------------------------------------------------- constructors, MTOP ids
@pytest.mark.parametrize("name,opts", [("mt", {"test_splits": ["test"]}), ("mt", {"seed": 1}),
                                       ("semparse", {"metric": "bleu"}), ("sql", {"lang": "de"})])
def test_constructors_take_explicit_kwargs_only(mt_dir, mtop_dir, bird_dir, name, opts):
    data = {"mt": mt_dir, "semparse": mtop_dir, "sql": bird_dir}[name]
    with pytest.raises(UserError, match="unexpected keyword argument"):
        tasks.load_task(name, data=data, **opts)


def test_task_from_args_passes_each_task_its_own_options(mt_dir):
    import argparse
    p = argparse.ArgumentParser()
    tasks.add_task_args(p)
    t = tasks.task_from_args(p.parse_args(["--task", "mt", "--data", mt_dir, "--max-pool", "5"]))
    assert len(t.pool) == 5
    t = tasks.task_from_args(p.parse_args(["--n-train", "7"]))
    assert len(t.pool) == 7
    with pytest.raises(UserError, match="max-pool"):
        tasks.load_task("mt", data=mt_dir, max_pool=-3)


def test_mtop_duplicate_ids_are_an_error(mtop_dir):
    import json
    import os
    path = os.path.join(mtop_dir, "dev.json")
    items = json.load(open(path))
    items[5]["id"] = items[2]["id"]
    json.dump(items, open(path, "w"))
    with pytest.raises(UserError, match=r"duplicate id '1002' \(items 2 and 5\)"):
        tasks.load_task("semparse", data=mtop_dir)
    items[5]["id"] = "1030"  # the id of the first test item
    json.dump(items, open(path, "w"))
    with pytest.raises(UserError, match="duplicate id '1030'"):
        tasks.load_task("semparse", data=mtop_dir)


def test_non_utf8_parallel_file(mt_dir):
    import os
    with open(os.path.join(mt_dir, "train.de"), "ab") as f:
        f.write(b"caf\xe9\n")
    with pytest.raises(UserError, match=r"train.de:49: not UTF-8"):
        tasks.load_task("mt", data=mt_dir)


# ----------------------------------------------------------------------------- hub loaders (offline)
class FakeDatasets:
    """A stand-in for the `datasets` module: serves only the splits the data cards list and
    records every (repo, config, split) asked for."""
    CARDS = {"Helsinki-NLP/europarl": ("train",), "ai4bharat/samanantar": ("train",),
             "openlanguagedata/flores_plus": ("dev", "devtest"), "Helsinki-NLP/emea": ("train",),
             "Helsinki-NLP/tanzil": ("train",), "cfilt/iitb-english-hindi": ("train", "validation", "test")}

    def __init__(self):
        self.calls = []

    def load_dataset(self, repo, config=None, split=None):
        import re as _re
        self.calls.append((repo, config, split))
        m = _re.fullmatch(r"(\w+)(?:\[(\d*):(\d*)\])?", split)
        if m.group(1) not in self.CARDS[repo]:
            raise ValueError(f'Unknown split "{m.group(1)}". Should be one of {list(self.CARDS[repo])}.')
        n = 600
        lo, hi = int(m.group(2) or 0), min(int(m.group(3) or n), n)
        if repo.endswith("flores_plus"):
            return [{"text": f"{config} {m.group(1)} {i}"} for i in range(lo, hi)]
        if repo.endswith("samanantar"):
            return [{"idx": i, "src": f"en {i}", "tgt": f"{config} {i}"} for i in range(lo, hi)]
        a, b = (config or "en-hi").split("-")
        return [{"translation": {a: f"{repo} {a} {i}", b: f"{repo} {b} {i}"}} for i in range(lo, hi)]


@pytest.fixture
def fake_datasets(monkeypatch):
    import sys
    fake = FakeDatasets()
    monkeypatch.setitem(sys.modules, "datasets", fake)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    return fake


@pytest.mark.parametrize("name,tgt,expect", [
    ("paper", "de", [("Helsinki-NLP/europarl", "de-en", "train[:50000]"),
                     ("openlanguagedata/flores_plus", "eng_Latn", "devtest"),
                     ("openlanguagedata/flores_plus", "deu_Latn", "devtest"),
                     ("Helsinki-NLP/emea", "de-en", "train[:500]")]),
    ("paper", "lt", [("Helsinki-NLP/europarl", "en-lt", "train[:50000]"),
                     ("openlanguagedata/flores_plus", "eng_Latn", "devtest"),
                     ("openlanguagedata/flores_plus", "lit_Latn", "devtest"),
                     ("Helsinki-NLP/emea", "en-lt", "train[:500]")]),
    ("paper", "hi", [("ai4bharat/samanantar", "hi", "train[:50000]"),
                     ("openlanguagedata/flores_plus", "eng_Latn", "devtest"),
                     ("openlanguagedata/flores_plus", "hin_Deva", "devtest"),
                     ("cfilt/iitb-english-hindi", None, "test[:500]")]),
    ("paper", "ta", [("ai4bharat/samanantar", "ta", "train[:50000]"),
                     ("openlanguagedata/flores_plus", "eng_Latn", "devtest"),
                     ("openlanguagedata/flores_plus", "tam_Taml", "devtest"),
                     ("Helsinki-NLP/tanzil", "en-ta", "train[:500]")]),
    ("flores_plus", "de", [("openlanguagedata/flores_plus", "eng_Latn", "dev"),
                           ("openlanguagedata/flores_plus", "deu_Latn", "dev"),
                           ("openlanguagedata/flores_plus", "eng_Latn", "devtest"),
                           ("openlanguagedata/flores_plus", "deu_Latn", "devtest")]),
    ("emea", "de", [("Helsinki-NLP/emea", "de-en", "train[500:50500]"),
                    ("openlanguagedata/flores_plus", "eng_Latn", "devtest"),
                    ("openlanguagedata/flores_plus", "deu_Latn", "devtest"),
                    ("Helsinki-NLP/emea", "de-en", "train[:500]")]),
    ("tanzil", "ta", [("Helsinki-NLP/tanzil", "en-ta", "train[500:50500]"),
                      ("openlanguagedata/flores_plus", "eng_Latn", "devtest"),
                      ("openlanguagedata/flores_plus", "tam_Taml", "devtest"),
                      ("Helsinki-NLP/tanzil", "en-ta", "train[:500]")]),
    ("iitb", "hi", [("cfilt/iitb-english-hindi", None, "train[:50000]"),
                    ("openlanguagedata/flores_plus", "eng_Latn", "devtest"),
                    ("openlanguagedata/flores_plus", "hin_Deva", "devtest"),
                    ("cfilt/iitb-english-hindi", None, "test[:500]")]),
    ("europarl", "de", [("Helsinki-NLP/europarl", "de-en", "train[:50000]"),
                        ("openlanguagedata/flores_plus", "eng_Latn", "devtest"),
                        ("openlanguagedata/flores_plus", "deu_Latn", "devtest"),
                        ("Helsinki-NLP/emea", "de-en", "train[:500]")]),
])
def test_hub_loaders_ask_only_for_existing_splits(fake_datasets, name, tgt, expect):
    t = tasks.load_task("mt", data=f"hub:{name}", src="en", tgt=tgt)
    assert fake_datasets.calls == expect
    for repo, _, split in fake_datasets.calls:
        assert split.split("[")[0] in FakeDatasets.CARDS[repo]
    assert t.pool and "test" in t.tests
    ids = [e["id"] for e in t.pool] + [e["id"] for v in t.tests.values() for e in v]
    assert len(ids) == len(set(ids))
    # deterministic: the same call gives the same task
    again = tasks.load_task("mt", data=f"hub:{name}", src="en", tgt=tgt)
    assert again.fingerprint() == t.fingerprint() and again.tests == t.tests


def test_hub_held_out_slice_is_disjoint_from_pool(fake_datasets):
    pool, tests = hub.load_hub_task_data("emea", "en", "de")
    assert not {e["x"] for e in pool} & {e["x"] for e in tests["ood"]}
    t = tasks.load_task("mt", data="hub:paper", src="en", tgt="ta")
    assert t.pool[0] == {"id": "samanantar.train_50000-0", "x": "en 0", "y": "ta 0"}


def test_hub_errors(fake_datasets):
    with pytest.raises(UserError, match="no split 'test'"):
        hub.load_hub("europarl", "en", "de", "test")
    with pytest.raises(UserError, match="unknown hub data set 'nope'"):
        tasks.load_task("mt", data="hub:nope")
    with pytest.raises(UserError, match="hub:paper covers"):
        tasks.load_task("mt", data="hub:paper", src="en", tgt="fr")


def test_sql_schema_used_keeps_only_the_gold_tables(bird_dir):
    full = tasks.load_task("sql", data=bird_dir)
    used = tasks.load_task("sql", data=bird_dir, sql_schema="used")
    ex = next(e for e in used.pool if "orders" in e["y"])
    p_full, p_used = full.prompt([], ex["x"], ex["meta"]), used.prompt([], ex["x"], ex["meta"])
    assert "CREATE TABLE customer" in p_full and "CREATE TABLE orders" in p_full
    assert "CREATE TABLE orders" in p_used and "CREATE TABLE customer" not in p_used


# ----------------------------------------------------------------------------- metrics (percent; every task scores 0-100)
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


def test_semparse_test_size_moves_the_rest_of_test_into_the_pool(mtop_dir):
    """MTOP here has dev (pool) and test only: --test-size N keeps test[:N] for testing and appends
    test[N:] to the pool (before --max-pool), never the same item in both."""
    full = tasks.load_task("semparse", data=mtop_dir)
    t = tasks.load_task("semparse", data=mtop_dir, test_size=3)
    assert [e["id"] for e in t.tests["test"]] == [e["id"] for e in full.tests["test"][:3]]
    assert [e["id"] for e in t.pool] == [e["id"] for e in full.pool + full.tests["test"][3:]]
    assert not {e["id"] for e in t.pool} & {e["id"] for e in t.tests["test"]}
    assert t.fingerprint() != full.fingerprint()
    capped = tasks.load_task("semparse", data=mtop_dir, test_size=3, max_pool=32)
    assert [e["id"] for e in capped.pool] == [e["id"] for e in t.pool[:32]]
    with pytest.raises(UserError, match="the test split has only 8 items"):
        tasks.load_task("semparse", data=mtop_dir, test_size=8)


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


def test_semparse_well_formed_accepts_logical_forms_only(mtop_dir):
    task = tasks.load_task("semparse", data=mtop_dir)
    ok = ["[IN:CREATE_ALARM ]", " [IN:GET_WEATHER [SL:DATE_TIME this week ] ] ",
          "[IN:GET_EVENT [SL:CATEGORY_EVENT music ] [SL:DATE_TIME [IN:GET_TIME now ] ] ]"]
    bad = ["", "Have there been any tornados this week?", "[SL:DATE_TIME now ]", "[IN:GET_WEATHER [SL:DATE_TIME now ]",
           "[IN:A ] ]", "[IN:A ] [IN:B ]", "[IN:A ] and more text"]
    assert [task.well_formed(s) for s in ok] == [True] * 3
    assert [task.well_formed(s) for s in bad] == [False] * len(bad)
    assert all(task.well_formed(ex["y"]) for ex in task.pool)
    assert tasks.load_task("alignment").well_formed("anything") is None  # no checkable format
