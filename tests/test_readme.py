"""The README's by-hand study block, run exactly as written (each line in a fresh process)."""
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
