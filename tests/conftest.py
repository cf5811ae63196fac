"""Shared fixtures: tiny generated data sets (no ../shared needed), offline env, script runner."""
import json
import os
import sqlite3
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("CC_NO_PROGRESS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_SUBJ = ["A man", "A woman", "Two dogs", "A child", "The girl", "Three men", "A boy", "An old lady"]
_SUBJ_DE = ["Ein Mann", "Eine Frau", "Zwei Hunde", "Ein Kind", "Das Mädchen", "Drei Männer", "Ein Junge",
            "Eine alte Dame"]
_VERB = ["is running in the park", "plays with a red ball", "is sitting on a bench", "walks down the street",
         "is eating an apple", "looks at the camera"]
_VERB_DE = ["läuft im Park", "spielt mit einem roten Ball", "sitzt auf einer Bank", "geht die Straße entlang",
            "isst einen Apfel", "schaut in die Kamera"]


def _pairs(n, offset=0):
    out = []
    for i in range(n):
        s, v = (i + offset) % len(_SUBJ), (i * 5 + offset) % len(_VERB)
        out.append((f"{_SUBJ[s]} {_VERB[v]}.", f"{_SUBJ_DE[s]} {_VERB_DE[v]}."))
    return out


@pytest.fixture
def mt_dir(tmp_path):
    """DIR/{train,test}.{en,de}: 48 training and 12 test sentence pairs."""
    return write_mt_dir(tmp_path / "mt", train=_pairs(48), test=_pairs(12, offset=3))


def write_mt_dir(d, **splits):
    """Write DIR/<split>.{en,de} from {split: [(en, de), ...]}; returns str(DIR)."""
    d.mkdir()
    for split, pairs in splits.items():
        (d / f"{split}.en").write_text("".join(p[0] + "\n" for p in pairs), encoding="utf-8")
        (d / f"{split}.de").write_text("".join(p[1] + "\n" for p in pairs), encoding="utf-8")
    return str(d)


@pytest.fixture
def mtop_dir(tmp_path):
    """An XSemPLR-layout MTOP folder with dev.json (pool) and test.json."""
    d = tmp_path / "mtop"
    d.mkdir()
    names = ["Camilla", "Bob", "Anna", "Paul", "Maria", "John"]
    apps = ["whatsapp", "skype", "messenger"]

    def item(i):
        n, a = names[i % len(names)], apps[i % len(apps)]
        return {"id": f"{1000 + i}",
                "question": {"en": f"call {n} on {a}", "de": f"Rufe {n} per {a} an"},
                "mr": {"slot_intent": {lang: f"[IN:CREATE_CALL [SL:CONTACT {n} ] [SL:NAME_APP {a} ] ]"
                                       for lang in ("en", "de")}}}
    (d / "dev.json").write_text(json.dumps([item(i) for i in range(30)]), encoding="utf-8")
    (d / "test.json").write_text(json.dumps([item(i) for i in range(30, 38)]), encoding="utf-8")
    return str(d)


@pytest.fixture
def bird_dir(tmp_path):
    """A BIRD-layout folder with one real SQLite database `shop`."""
    d = tmp_path / "bird"
    (d / "databases" / "shop").mkdir(parents=True)
    db = d / "databases" / "shop" / "shop.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE customer (id INTEGER PRIMARY KEY, name TEXT, city TEXT)")
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, amount REAL)")
    cities = ["Paris", "Berlin", "Madrid", "Rome"]
    conn.executemany("INSERT INTO customer VALUES (?, ?, ?)",
                     [(i, f"name{i}", cities[i % 4]) for i in range(1, 21)])
    conn.executemany("INSERT INTO orders VALUES (?, ?, ?)", [(i, i % 20 + 1, 10.0 * i) for i in range(1, 41)])
    conn.commit()
    conn.close()

    def q(i, city):
        return {"db_id": "shop", "question": f"How many customers live in {city}?", "evidence": "",
                "SQL": f"SELECT COUNT(*) FROM customer WHERE city = '{city}'"}
    train = [q(i, cities[i % 4]) for i in range(12)] + [
        {"db_id": "shop", "question": "What is the total amount of all orders?", "evidence": "",
         "SQL": "SELECT SUM(amount) FROM orders"}]
    dev = [q(0, "Rome"), {"db_id": "shop", "question": "List the names of customers in Paris.",
                          "evidence": "", "SQL": "SELECT name FROM customer WHERE city = 'Paris'"}]
    (d / "train.json").write_text(json.dumps(train), encoding="utf-8")
    (d / "dev.json").write_text(json.dumps(dev), encoding="utf-8")
    return str(d)


@pytest.fixture
def run_script(tmp_path):
    """run_script("train.py", "--model", "tiny", ...) -> CompletedProcess (cwd = a temp folder)."""
    def run(script, *args, timeout=600, check=False):
        env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="2")
        proc = subprocess.run([sys.executable, os.path.join(REPO, script), *map(str, args)], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc
    return run


# One tiny training run for the whole session (train, evaluate and probes tests all read it).
TINY_RUN_ARGS = ["--model", "tiny", "--threads", "1", "--task", "alignment", "--n-train", "60", "--regime",
                 "contrastive", "--alpha", "0.3", "--max-steps", "8", "--save-every", "4", "--lr", "5e-3",
                 "--grad-accum", "2", "--eval-limit", "6"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """RUN folder of train.py with TINY_RUN_ARGS (checkpoint-4/, final/, config.json, contexts.jsonl)."""
    import train
    out = str(tmp_path_factory.mktemp("tiny_run") / "run")
    train.main([*TINY_RUN_ARGS, "--out", out])
    return out
