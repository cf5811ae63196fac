"""Committed results hold repository-relative paths only: no file under results/ names a
folder of the machine that produced it. A model's own answer may hold any text (a model that translates a
git message can hallucinate a home folder of its own): the prediction field of a JSONL row is not a path we wrote."""
import json
import os
import re

from conftest import REPO

ABSOLUTE = re.compile(r"(?<![\w.])/(work|home|root|tmp|Users|mnt|scratch)/")


def absolute_paths(root):
    """`file:line` of every line under root that names an absolute machine folder (JSONL: outside "prediction")."""
    bad = []
    for dp, _, files in os.walk(root):
        for f in sorted(files):
            if f.endswith((".png", ".safetensors")):
                continue
            p = os.path.join(dp, f)
            with open(p, encoding="utf-8", errors="ignore") as fh:
                for n, line in enumerate(fh, 1):
                    if ABSOLUTE.search(line) and f.endswith(".jsonl"):
                        row = json.loads(line)
                        if isinstance(row, dict):
                            line = json.dumps({k: v for k, v in row.items() if k != "prediction"})
                    if ABSOLUTE.search(line):
                        bad.append(f"{os.path.relpath(p, root)}:{n}")
                        break
    return bad


def test_no_committed_result_file_holds_an_absolute_path():
    bad = absolute_paths(os.path.join(REPO, "results"))
    assert not bad, f"{len(bad)} result files hold absolute paths, e.g. {bad[:5]}"


def test_only_a_prediction_may_hold_an_absolute_path(tmp_path):
    users, work, tmp = ("/" + d + "/" for d in ("Users", "work", "tmp"))  # built here: this file names no machine path
    rows = [{"prediction": f"see {users}x/y", "data": "../shared/data"}, {"prediction": "ok", "data": f"{work}shared/x"}]
    (tmp_path / "steps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "quiet.jsonl").write_text(json.dumps(rows[0]) + "\n", encoding="utf-8")
    (tmp_path / "notes.md").write_text(f"made in {tmp}run\n", encoding="utf-8")
    assert sorted(absolute_paths(tmp_path)) == ["notes.md:1", "steps.jsonl:2"]
