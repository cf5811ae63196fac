"""MTOP held-out domains: the intent -> domain map, --holdout-domains in the task and the scripts, the stream.

The unit tests use small MTOP-like folders written here; one test reads the real data (CC_MTOP_DATA, or
../shared/data/mtop beside the repository) and is skipped when it is absent."""
import json
import os
import re

import pytest

from contrastive_context import tasks
from contrastive_context.common import UserError, read_jsonl

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_MTOP = os.environ.get("CC_MTOP_DATA") or os.path.join(REPO, "..", "shared", "data", "mtop")

# (intent, domain, utterance pattern, logical form pattern): four domains of the small folders below
_KINDS = [("CREATE_CALL", "calling", "call {n} on skype", "[IN:CREATE_CALL [SL:CONTACT {n} ] [SL:NAME_APP skype ] ]"),
          ("GET_WEATHER", "weather", "weather in {c} today",
           "[IN:GET_WEATHER [SL:LOCATION {c} ] [SL:DATE_TIME today ] ]"),
          ("PLAY_MUSIC", "music", "play songs by {n}", "[IN:PLAY_MUSIC [SL:MUSIC_ARTIST_NAME {n} ] ]"),
          ("CREATE_ALARM", "alarm", "set an alarm for {h} am", "[IN:CREATE_ALARM [SL:DATE_TIME for {h} am ] ]")]
_NAMES = ["Camilla", "Bob", "Anna", "Paul", "Maria", "John", "Lena", "Omar"]
_CITIES = ["Paris", "Rome", "Oslo", "Lima", "Kyiv", "Quito", "Doha", "Riga"]


def _items(n, offset, kinds=_KINDS):
    out = []
    for i in range(offset, offset + n):
        _, _, x, y = kinds[i % len(kinds)]
        f = dict(n=_NAMES[i % 8], c=_CITIES[(i * 3) % 8], h=1 + i % 12)
        out.append({"id": f"{1000 + i}", "question": {"en": x.format(**f)},
                    "mr": {"slot_intent": {"en": y.format(**f)}}})
    return out


def write_mtop(d, dev, test):
    os.makedirs(d, exist_ok=True)
    for name, items in (("dev", dev), ("test", test)):
        with open(os.path.join(d, f"{name}.json"), "w", encoding="utf-8") as f:
            json.dump(items, f)
    return str(d)


@pytest.fixture
def domains_dir(tmp_path):
    """dev.json 40 items, test.json 16, cycling through calling, weather, music, alarm."""
    return write_mtop(tmp_path / "mtop4", _items(40, 0), _items(16, 40))


def domain(ex):
    return tasks.mtop_domain(ex["y"])


# ----------------------------------------------------------------------------------- the map
def test_the_map_covers_exactly_the_listed_intents_once_each():
    m = tasks.load_template("mtop_domains")
    assert list(m["domains"]) == ["alarm", "calling", "event", "messaging", "music", "news", "people", "recipes",
                                  "reminder", "timer", "weather"]
    mapped = [i for intents in m["domains"].values() for i in intents]
    assert len(mapped) == len(set(mapped)), "an intent is in two domains"
    assert sorted(mapped) == sorted(m["intents"]) == list(m["intents"])  # listed sorted, no more, no fewer
    assert len(m["intents"]) == 90 and all(re.fullmatch(r"[A-Z_]+", i) for i in m["intents"])


@pytest.mark.parametrize("lf, want", [
    ("[IN:GET_WEATHER [SL:LOCATION Paris ] ]", "weather"),
    ("[IN:CREATE_CALL [SL:CONTACT [IN:GET_CONTACT [SL:TYPE_RELATION mom ] ] ] ]", "calling"),  # top, not nested
    ("[IN:GET_CONTACT [SL:TYPE_RELATION friends ] ]", "people"),
    ("[IN:SET_UNAVAILABLE ]", "calling"),
    ("[IN:GET_SUNSET [SL:LOCATION Philly ] ]", "weather"),
    ("[IN:CREATE_REMINDER [SL:TODO [IN:GET_TODO [SL:TODO pay rent ] ] ] ]", "reminder"),
    ("[IN:PLAY_MUSIC [SL:MUSIC_TYPE songs ] ]", "music"),
    ("[IN:IS_TRUE_RECIPES [SL:RECIPES_DISH pie ] ]", "recipes"),
    ("[IN:SET_RSVP_YES [SL:ORDINAL first ] ]", "event"),
    ("[IN:SUBTRACT_TIME_TIMER ]", "timer"),
])
def test_domain_of_hand_written_parses(lf, want):
    assert tasks.mtop_domain(lf) == want


def test_unknown_top_intent_names_the_intent(tmp_path):
    with pytest.raises(UserError, match=r"intent IN:ORDER_PIZZA has no MTOP domain"):
        tasks.mtop_domain("[IN:ORDER_PIZZA [SL:SIZE large ] ]")
    # through the task: only when domains are asked for, naming the file and the item
    d = write_mtop(tmp_path / "pizza", _items(12, 0) + [{"id": "77", "question": {"en": "a large pizza"},
                   "mr": {"slot_intent": {"en": "[IN:ORDER_PIZZA [SL:SIZE large ] ]"}}}], _items(8, 40))
    assert len(tasks.load_task("semparse", data=d).pool) == 13
    with pytest.raises(UserError, match=r"dev\.json: id '77': intent IN:ORDER_PIZZA has no MTOP domain"):
        tasks.load_task("semparse", data=d, holdout_domains="music")


@pytest.mark.skipif(not os.path.isfile(os.path.join(REAL_MTOP, "test.json")),
                    reason="real MTOP data absent (set CC_MTOP_DATA or put it at ../shared/data/mtop)")
def test_every_intent_of_the_real_data_is_mapped():
    seen = set()
    for split in ("dev", "test"):
        with open(os.path.join(REAL_MTOP, f"{split}.json"), encoding="utf-8") as f:
            for it in json.load(f):
                for lf in it["mr"]["slot_intent"].values():
                    seen |= set(re.findall(r"\[IN:([^\s\[\]]+)", lf))
                    tasks.mtop_domain(lf)  # raises on an unknown top intent
    assert seen == set(tasks.MTOP_INTENTS)
    t = tasks.load_task("semparse", data=REAL_MTOP, holdout_domains="event,music,news,recipes")
    assert len(t.test_split("heldout")) == 274 and {domain(e) for e in t.test_split("heldout")} == \
        {"event", "music", "news", "recipes"}


# ----------------------------------------------------------------------------------- the task
def test_held_out_items_leave_pool_and_tests_and_form_the_stream(domains_dir):
    full = tasks.load_task("semparse", data=domains_dir)
    t = tasks.load_task("semparse", data=domains_dir, holdout_domains="music,alarm")
    assert {domain(e) for e in t.pool} == {"calling", "weather"}
    assert [e["id"] for e in t.pool] == [e["id"] for e in full.pool if domain(e) not in ("music", "alarm")]
    assert list(t.tests) == ["test", "heldout"]
    assert {domain(e) for e in t.test_split("test")} == {"calling", "weather"}
    stream = t.heldout_stream()
    assert [e["id"] for e in stream] == [e["id"] for e in t.test_split("heldout")] == \
        [e["id"] for e in full.test_split("test") if domain(e) in ("music", "alarm")]  # file order
    with_pool = t.heldout_stream(include_pool=True)
    assert [e["id"] for e in with_pool] == [e["id"] for e in full.pool if domain(e) in ("music", "alarm")] + \
        [e["id"] for e in stream]
    assert t.fingerprint() != full.fingerprint()
    assert t.domain_sizes() == {"pool": {"calling": 10, "weather": 10}, "test": {"calling": 4, "weather": 4},
                                "heldout": {"alarm": 4, "music": 4}, "heldout-dev": {"alarm": 10, "music": 10}}
    with pytest.raises(UserError, match="no held-out domains"):
        full.heldout_stream()


def test_test_size_and_max_pool_apply_to_what_is_left(domains_dir):
    t = tasks.load_task("semparse", data=domains_dir, holdout_domains="music", test_size=5, max_pool=33)
    assert len(t.test_split("test")) == 5 and len(t.test_split("heldout")) == 4
    assert len(t.pool) == 33 and not any(domain(e) == "music" for e in t.pool)
    assert all(domain(e) != "music" for e in t.test_split("test"))


@pytest.mark.parametrize("value, match", [
    ("musik", r"unknown MTOP domain 'musik' \(valid: alarm, calling, event, messaging, music, news, people, "
              r"recipes, reminder, timer, weather\)"),
    ("music,", r"unknown MTOP domain ''"),
    ("music,music", "named twice"),
    ("news", r"no item of .* is in news"),
    ("calling,weather,music,alarm", "leaves no training data"),
])
def test_bad_holdout_domains(domains_dir, value, match):
    with pytest.raises(UserError, match=match):
        tasks.load_task("semparse", data=domains_dir, holdout_domains=value)


def test_no_held_out_item_in_the_test_file_is_an_error(tmp_path):
    d = write_mtop(tmp_path / "m", _items(40, 0), _items(8, 40, kinds=_KINDS[:2]))
    with pytest.raises(UserError, match="held-out stream would be empty"):
        tasks.load_task("semparse", data=d, holdout_domains="music")


def test_other_tasks_have_no_domains(mt_dir):
    from contrastive_context import config
    with pytest.raises(UserError, match="--holdout-domains does not apply to task mt"):
        config.task_options(config.TaskConfig(task="mt", data=mt_dir, holdout_domains="music"))
    with pytest.raises(UserError, match="has no domains"):
        tasks.load_task("mt", data=mt_dir).heldout_stream()


def test_help_lists_the_domains_of_the_map():
    from contrastive_context import config
    import dataclasses
    text = {f.name: f.metadata["help"] for f in dataclasses.fields(config.TaskConfig)}["holdout_domains"]
    assert ", ".join(tasks.MTOP_DOMAINS) in text


# ----------------------------------------------------------------------------------- the scripts
def test_sample_contexts_never_uses_a_held_out_item(domains_dir, tmp_path):
    import sample_contexts
    held = {e["id"] for e in tasks.load_task("semparse", data=domains_dir, holdout_domains="music")
            .heldout_stream(include_pool=True)}
    assert len(held) == 14
    for regime in ("random", "similar", "contrastive"):
        out = str(tmp_path / f"{regime}.jsonl")
        sample_contexts.main(["--task", "semparse", "--data", domains_dir, "--holdout-domains", "music",
                              "--regime", regime, "--rho", "0", "--k", "2", "--epochs", "2", "--out", out])
        rows = read_jsonl(out)
        assert len(rows) == 2 * 30
        used = {r["target"] for r in rows} | {c.split("#")[0] for r in rows for c in r["context"]}
        assert used and not used & held


def test_train_and_evaluate_with_held_out_domains(domains_dir, tmp_path):
    import evaluate
    import train
    run = str(tmp_path / "run")
    train.main(["--task", "semparse", "--data", domains_dir, "--holdout-domains", "music,alarm", "--model", "tiny",
                "--regime", "similar", "--k", "2", "--max-steps", "2", "--threads", "1", "--eval-limit", "0",
                "--out", run])
    held = {e["id"] for e in tasks.load_task("semparse", data=domains_dir, holdout_domains="music,alarm")
            .heldout_stream(include_pool=True)}
    rows = read_jsonl(os.path.join(run, "contexts.jsonl"))
    assert len({r["target"] for r in rows}) == 20
    assert not ({r["target"] for r in rows} | {c for r in rows for c in r["context"]}) & held
    with open(os.path.join(run, "config.json"), encoding="utf-8") as f:
        assert json.load(f)["task_config"]["holdout_domains"] == "music,alarm"
    # the run's task flags reach evaluate.py: the held-out split, with contexts from the reduced pool only
    ev = str(tmp_path / "ev")
    evaluate.main(["--adapter", run, "--split", "heldout", "--k", "2", "--context-types", "zero,similar",
                   "--threads", "1", "--max-new-tokens", "4", "--out", ev])
    preds = read_jsonl(os.path.join(ev, "predictions.jsonl"))
    assert {p["id"] for p in preds} == {e["id"] for e in tasks.load_task(
        "semparse", data=domains_dir, holdout_domains="music,alarm").test_split("heldout")}
    assert all(not set(p["context"]) & held for p in preds) and any(p["context"] for p in preds)
