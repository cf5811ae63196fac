"""The committed study pipeline regenerates unchanged: a smoke run of reproduce.py on a small MT
data set must give the very same contexts, predictions and probe scores as the recording in
tests/golden/smoke_mt.json (made before the restructuring of the scripts into one library; refresh deliberately with
CC_UPDATE_GOLDEN=1 when a change of results is intended, and say why in the commit)."""
import hashlib
import json
import os

import pytest

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "smoke_mt.json")
REGIMES = "zero,random,similar,contrastive,random+similar"


def _rows(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


def _digest(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def fingerprint(out):
    fp = {}
    for regime in REGIMES.split(","):
        ctx = _rows(os.path.join(out, "contexts", f"{regime}.jsonl"))
        fp[f"contexts/{regime}"] = _digest([{k: r[k] for k in ("epoch", "target", "kind", "context", "nsim")}
                                            for r in ctx])
    for label in ["base"] + REGIMES.split(","):
        pred = _rows(os.path.join(out, "eval", label, "predictions.jsonl"))
        # the five context types recorded before random+counterfactual existed keep their digest;
        # the counterfactual rows (relevance vs copying) have their own
        fp[f"eval/{label}"] = _digest([{k: r[k] for k in ("id", "context_type", "context", "prediction", "score")}
                                       for r in pred if r["context_type"] != "random+counterfactual"])
        fp[f"eval_cf/{label}"] = _digest([{k: r[k] for k in ("id", "context", "prediction", "score", "cf_copy",
                                                             "edit_ok")}
                                          for r in pred if r["context_type"] == "random+counterfactual"])
    probes = _rows(os.path.join(out, "probes.jsonl"))
    fp["probes"] = _digest(sorted((os.path.basename(r["run"]), r["step"], r["probe"], round(r["score"], 6))
                                  for r in probes))
    return fp


def _distinct_mt_dir(tmp_path):
    """48 distinct training pairs (every subject x verb once) and 10 test pairs."""
    from conftest import _SUBJ, _SUBJ_DE, _VERB, _VERB_DE, write_mt_dir
    pairs = [(f"{_SUBJ[s]} {_VERB[v]}.", f"{_SUBJ_DE[s]} {_VERB_DE[v]}.") for s in range(8) for v in range(6)]
    test = [(f"Today {a[0].lower()}{a[1:]}", f"Heute {b[0].lower()}{b[1:]}") for a, b in pairs[::5]]
    return write_mt_dir(tmp_path / "mt_distinct", train=pairs, test=test)


@pytest.mark.slow
def test_smoke_study_regenerates_unchanged(run_script, tmp_path):
    out = tmp_path / "study"
    run_script("reproduce.py", "--budget", "smoke", "--task", "mt", "--data", _distinct_mt_dir(tmp_path), "--regimes", REGIMES,
               "--extra-zero-frac", "0", "--threads", "1", "--out", out, check=True)
    got = fingerprint(str(out))
    if os.environ.get("CC_UPDATE_GOLDEN") == "1":
        with open(GOLDEN, "w", encoding="utf-8") as f:
            json.dump(got, f, indent=2, sort_keys=True)
            f.write("\n")
    with open(GOLDEN, encoding="utf-8") as f:
        want = json.load(f)
    assert got == want
