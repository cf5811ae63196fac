"""Committed results re-render byte-identically from their committed inputs with today's code (a
refactor must not change behaviour). Tables and JSONL are compared; figures are re-drawn, not compared."""
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MT_E = "results/mt/eval"
MT_LABELS = ["base", "copier", "random", "random@s1", "similar", "similar@s1", "contrastive", "contrastive@s1",
             "random+similar", "zero", "contrastive-rho0", "contrastive-beta0", "contrastive+zero0.1"]


def _run(*cmd):
    env = dict(os.environ, CC_NO_PROGRESS="1", OMP_NUM_THREADS="1", PYTHONPATH=REPO)  # this checkout's library
    proc = subprocess.run([sys.executable, *cmd], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def _same(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


@pytest.mark.slow
def test_synthetic_default_sweep_rerenders_identically(tmp_path):
    src = os.path.join(REPO, "results", "synthetic", "default")
    dst = tmp_path / "default"
    shutil.copytree(src, dst)
    os.remove(dst / "results.md")
    os.remove(dst / "sweep.jsonl")
    _run("sweep.py", "--out", str(dst), "--jobs", "2", "--no-plot")
    for name in ("results.md", "sweep.jsonl", "sweep.jsonl.meta.json", "minimal_model.json"):
        assert _same(os.path.join(src, name), dst / name), name


@pytest.mark.slow
def test_mt_figure3_and_relevance_tables_rerender_identically(tmp_path):
    labels = [l.split("@")[0] for l in MT_LABELS]
    _run("figure3.py", *[f"{MT_E}/{l}" for l in MT_LABELS], "--labels", *labels, "--ref", "contrastive",
         "--out", str(tmp_path / "figure3.png"), "--table", str(tmp_path / "figure3.md"))
    assert _same(os.path.join(REPO, "results/mt/figure3.md"), tmp_path / "figure3.md")
    _run("studies/tools/relevance.py", "results/mt/eval_cf", "--eval-root", MT_E, "--out", str(tmp_path / "relevance.md"))
    old, new = (open(p, encoding="utf-8").read().split("\n", 1) for p in
                (os.path.join(REPO, "results/mt/relevance.md"), tmp_path / "relevance.md"))
    # line 1 is the command, with its --out and the script's path (the committed file names the script where it
    # was when it ran: studies/relevance.py, now studies/tools/relevance.py)
    assert old[1] == new[1] and old[0].replace("results/mt/relevance.md", "").replace(
        "studies/relevance.py", "studies/tools/relevance.py") == new[0].replace(str(tmp_path / "relevance.md"), "")
