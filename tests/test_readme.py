"""The README: the by-hand study block, run exactly as written (each line in a fresh process); the front
door's commands, links and findings table; the study READMEs' scripts."""
import glob
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from conftest import REPO


def by_hand_block():
    """The commands of README.md's "A typical study by hand" block (continuations joined, comments dropped)."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        m = re.search(r"A typical study by hand.*?```bash\n(.*?)```", f.read(), re.S)
    assert m, "README.md has no by-hand block"
    lines = m.group(1).replace("\\\n", " ").splitlines()
    return [cmd for cmd in (shlex.split(line, comments=True) for line in lines) if cmd]


def test_by_hand_block_is_python_scripts_of_this_repo():
    cmds = by_hand_block()
    assert len(cmds) >= 8 and all(c[0] == "python" and os.path.isfile(os.path.join(REPO, c[1])) for c in cmds)


@pytest.mark.slow
def test_readme_by_hand_block_runs_as_written(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO)
    for cmd in by_hand_block():
        proc = subprocess.run([sys.executable, os.path.join(REPO, cmd[1]), *cmd[2:]], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    summary = {n: json.loads((tmp_path / "evals" / n / "summary.json").read_text()) for n in ("base", "contrastive")}
    assert summary["base"]["model"] == "scratch" and summary["contrastive"]["model"].endswith("final")
    # probes.py scores every checkpoint of the from-scratch (full-weight) run, not only step 0
    rows = [json.loads(line) for line in (tmp_path / "probes.jsonl").read_text().splitlines()]
    steps = sorted({r["step"] for r in rows})
    assert steps[0] == 0 and len(steps) >= 3 and {r["checkpoint"] for r in rows} >= {"base", "final"}
    for f in ("figure3.png", "probes.png", "sim/results.json"):
        assert (tmp_path / f).stat().st_size > 0, f


def _git_ignored(paths):
    """The paths git would ignore by the repository's .gitignore (whether tracked or not)."""
    proc = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=REPO, input="\n".join(paths) + "\n",
                          capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        pytest.skip(f"git check-ignore unavailable: {proc.stderr.strip()[:200]}")
    return set(proc.stdout.split())


def test_gitignore_covers_by_hand_outputs_but_never_results():
    """What the README's commands write into the repository root is ignored by git;
    nothing under results/ (the committed studies) and no source file is."""
    outs = []
    for cmd in by_hand_block():
        for flag in ("--out", "--plot", "--table"):
            if flag in cmd:
                outs.append(cmd[cmd.index(flag) + 1])
    outs += [o + ".meta.json" for o in outs if o.endswith(".jsonl")]
    outs += ["figure3.md", "probes.jsonl.partial.jsonl", "sweep/sweep.jsonl", "runs/alignment-contrastive/config.json"]
    made = [o.rstrip("/") + ("/x" if not os.path.splitext(o)[1] else "") for o in outs]  # a folder: a file in it
    assert len(made) >= 10 and {"para.jsonl", "ctx.jsonl", "evals/base/x", "sim/x"} <= set(made)
    assert _git_ignored(made) == set(made)
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.split()
    keep = [f for f in tracked if f.startswith("results/") or f.endswith((".py", ".md", ".json", ".sh"))]
    keep += ["results/mt/new_table.md", "results/x/eval/base/summary.json", "results/x/probes.jsonl",
             "results/synthetic/sweep/sweep.jsonl", "figure3.py", "probes.py", "sweep.py"]
    assert len(keep) > 50 and not _git_ignored(keep)


def _read(path):
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        return f.read()


def test_readme_is_the_front_door():
    """README.md: at most 250 lines; its first block holds the set-up + main-job and set-up + test commands,
    with files and scripts that exist; every relative link resolves."""
    text = _read("README.md")
    assert len(text.splitlines()) <= 250
    first = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    for line in ("pip install -r requirements.txt", 'pytest -m "not slow"', "python train.py --regime contrastive"):
        assert line in first, line
    for f in re.findall(r"(?:-r |python )([\w./-]+\.(?:txt|py))", first):
        assert os.path.isfile(os.path.join(REPO, f)), f
    for link in re.findall(r"\]\(([^)#:]+)\)", text):
        assert os.path.exists(os.path.join(REPO, link)), link


def test_findings_table_points_at_study_folders_that_exist():
    """One row per claim: a verdict, and the study folders (or RESULTS.md) that show it; a row whose study is
    still running says "in progress"."""
    text = _read("README.md")
    table = re.search(r"## Findings\n.*?(\| claim \| verdict \| where \|\n.*?)\n\n", text, re.S).group(1)
    rows = [r for r in table.splitlines()[2:] if r.startswith("|")]
    assert len(rows) >= 10
    for row in rows:
        claim, verdict, where = [c.strip() for c in row.strip("|").split("|")]
        if "in progress" in verdict:
            continue
        assert re.search(r"\*\*(holds|does not hold|partly)\*\*", verdict), row
        folders = re.findall(r"`(studies/\w+/)`", where)
        assert folders or "RESULTS.md" in where, row
        for d in folders:
            assert os.path.isfile(os.path.join(REPO, d, "README.md")), d
    assert any("second counterfactual family" in r for r in rows) and any("new domain" in r for r in rows)


def test_study_readmes_name_scripts_that_exist():
    """Every `python X.py` / `studies/.../*.sh` a study README (or RESULTS.md) names is a file of this repo."""
    docs = ["RESULTS.md", "CONTRIBUTING.md"] + sorted(
        os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "studies", "*", "README.md")))
    named = 0
    for doc in docs:
        text = _read(doc)
        for script in set(re.findall(r"python ([\w./-]+\.py)", text) + re.findall(r"(studies/[\w/]+\.(?:py|sh))", text)):
            assert os.path.isfile(os.path.join(REPO, script)), f"{doc}: {script}"
            named += 1
    assert named >= 15
