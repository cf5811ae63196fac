"""studies/tools/relocate.py: rewrites the old path prefix in what it copies (and the checksums over it), never
touches a file it did not copy, never replaces an existing destination, and leaves no partial file or folder
when it fails half way."""
import importlib.util
import json
import os

import pytest

from contrastive_context.common import UserError, file_sha256

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def relocate():
    spec = importlib.util.spec_from_file_location("relocate_under_test",
                                                  os.path.join(REPO, "studies", "tools", "relocate.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _study(tmp_path):
    """OUT/eval/<label>/ for two finished labels (their files name OUT by its absolute path) and one unfinished."""
    out = tmp_path / "OUT"
    for label in ("copier", "contrastive", "unfinished"):
        d = out / "eval" / label
        d.mkdir(parents=True)
        rows = "".join(json.dumps({"id": i, "data": f"{out}/data/x.{i}"}) + "\n" for i in range(3))
        (d / "predictions.jsonl").write_text(rows, encoding="utf-8")
        (d / "predictions.jsonl.meta.json").write_text(json.dumps({"sha256": file_sha256(d / "predictions.jsonl")}))
        (d / "report.md").write_text(f"made from {out}/runs/{label}\n", encoding="utf-8")
        (d / "cc_output.json").write_text(json.dumps({"complete": {"files": {"predictions.jsonl": "stale"}}}))
        if label != "unfinished":
            (d / "summary.json").write_text(json.dumps({"run": f"{out}/runs/{label}", "score": 0.5}))
    return out


def _snapshot(folder):
    return {os.path.relpath(os.path.join(r, f), folder): open(os.path.join(r, f), "rb").read()
            for r, _, fs in os.walk(folder) for f in fs}


def test_relocate_rewrites_what_it_copies_and_nothing_else(relocate, tmp_path, monkeypatch):
    out = _study(tmp_path)
    before = _snapshot(out)
    monkeypatch.chdir(tmp_path)
    new = tmp_path / "results" / "study"
    new.mkdir(parents=True)
    unrelated = new / "notes.md"
    unrelated.write_text(f"written by hand, names {out}/eval/copier\n", encoding="utf-8")
    relocate.main([str(out), "results/study", "--labels", "copier", "contrastive", "unfinished"])
    for label in ("copier", "contrastive"):
        d = new / "eval" / label
        assert json.loads((d / "summary.json").read_text()) == {"run": f"results/study/runs/{label}", "score": 0.5}
        assert (d / "report.md").read_text() == f"made from results/study/runs/{label}\n"
        assert str(out) not in (d / "predictions.jsonl").read_text()
        assert json.loads((d / "predictions.jsonl.meta.json").read_text())["sha256"] == file_sha256(
            d / "predictions.jsonl")
        listed = json.loads((d / "cc_output.json").read_text())["complete"]["files"]
        assert listed == {"predictions.jsonl": file_sha256(d / "predictions.jsonl")}
    assert not (new / "eval" / "unfinished").exists()
    assert unrelated.read_text() == f"written by hand, names {out}/eval/copier\n"  # not copied: untouched
    assert _snapshot(out) == before  # the study's own folder is only read
    assert not [f for r, ds, fs in os.walk(new) for f in ds + fs if f.startswith(".")]  # no temporary left

    # a destination that exists is refused before anything is written; nothing is deleted
    (new / "eval" / "copier" / "mine.txt").write_text("kept")
    after = _snapshot(new)
    with pytest.raises(UserError, match="exists already"):
        relocate.main([str(out), "results/study", "--labels", "copier"])
    assert _snapshot(new) == after


def test_relocate_failing_half_way_leaves_no_partial_file(relocate, tmp_path, monkeypatch):
    out = _study(tmp_path)
    before = _snapshot(out)
    monkeypatch.chdir(tmp_path)
    calls = []
    real = relocate.write_text_atomic

    def fail_on_the_second(path, text):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device", path)
        real(path, text)
    monkeypatch.setattr(relocate, "write_text_atomic", fail_on_the_second)
    with pytest.raises(OSError):
        relocate.main([str(out), "results/study", "--labels", "copier"])
    assert len(calls) == 2
    assert _snapshot(out) == before  # the originals are intact
    new = tmp_path / "results" / "study"
    assert not (new / "eval" / "copier").exists()  # no half-rewritten folder was published
    assert not [f for r, ds, fs in os.walk(new) for f in ds + fs if f.startswith(".")] if new.exists() else True
    # and once the disk is fine again, the same command completes
    monkeypatch.setattr(relocate, "write_text_atomic", real)
    relocate.main([str(out), "results/study", "--labels", "copier"])
    assert json.loads((new / "eval" / "copier" / "summary.json").read_text())["run"] == "results/study/runs/copier"
