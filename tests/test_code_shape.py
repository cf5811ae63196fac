"""The design card's shape, checked: scripts at the top level never import each other, the library
(contrastive_context/) never imports a script, no function is longer than 80 lines, no file edits sys.path
(the library is installed) and no two library modules define the same public constant (one name per idea)."""
import ast
import glob
import os
import subprocess
import sys
from collections import defaultdict

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, "*.py")))
LIBRARY = sorted(glob.glob(os.path.join(REPO, "contrastive_context", "**", "*.py"), recursive=True))  # + synthetic/
ALL = [os.path.join(REPO, f"{s}.py") for s in SCRIPTS] + LIBRARY + sorted(
    p for d in ("studies", "benchmarks", "examples") for p in glob.glob(os.path.join(REPO, d, "**", "*.py"), recursive=True))
MAX_LINES = 80


def _tree(path):
    with open(path, encoding="utf-8") as f:
        return ast.parse(f.read(), path)


def _imported(tree):
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            yield from (a.name.split(".")[0] for a in n.names)
        elif isinstance(n, ast.ImportFrom) and n.level == 0 and n.module:
            yield n.module.split(".")[0]


def test_the_card_scripts_are_at_the_top_level():
    card = {"sample_contexts", "paraphrase", "train", "evaluate", "probes", "theory_sim", "figure3", "sweep",
            "reproduce"}
    assert card <= set(SCRIPTS)


def test_the_checks_reach_the_synthetic_sub_package_and_the_study_folders():
    rel = {os.path.relpath(p, REPO) for p in ALL}
    assert os.path.join("contrastive_context", "synthetic", "runs.py") in rel
    assert any(r.startswith("studies" + os.sep) and r.count(os.sep) >= 2 for r in rel), "no studies/<name>/*.py"


def test_no_script_imports_a_script_and_the_library_imports_none():
    for path in ALL:
        bad = set(_imported(_tree(path))) & set(SCRIPTS)
        assert not bad, f"{os.path.relpath(path, REPO)} imports the script(s) {sorted(bad)}"


def test_no_function_over_80_lines():
    long = []
    for path in ALL:
        for n in ast.walk(_tree(path)):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > MAX_LINES:
                long.append(f"{os.path.relpath(path, REPO)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1})")
    assert not long, long


def _sys_path_edits(tree):
    """Lines that call sys.path.insert / sys.path.append (or extend) -- code, not text in a string."""
    for n in ast.walk(tree):
        f = n.func if isinstance(n, ast.Call) else None
        if isinstance(f, ast.Attribute) and f.attr in ("insert", "append", "extend") and \
                isinstance(f.value, ast.Attribute) and f.value.attr == "path" and \
                isinstance(f.value.value, ast.Name) and f.value.value.id == "sys":
            yield n.lineno


def test_no_file_edits_sys_path():
    """The library is installed (requirements.txt: -e .); the tests import the scripts through pytest.ini's
    pythonpath. Every tracked .py file, the tests included (a child process's code in a string may)."""
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=True)
    paths = [os.path.join(REPO, p) for p in tracked.stdout.split()] or ALL
    assert len(paths) >= len(ALL)
    bad = [f"{os.path.relpath(p, REPO)}:{line}" for p in paths if os.path.isfile(p)
           for line in _sys_path_edits(_tree(p))]
    assert not bad, bad
    fake = ast.parse("import sys\nsys.path.insert(0, '..')\ncode = 'sys.path.insert(0, x)'\n")
    assert list(_sys_path_edits(fake)) == [2]  # the check finds a call, and not the text of one


def test_one_definition_per_public_constant_in_the_library():
    where = defaultdict(list)
    for path in LIBRARY:
        for n in _tree(path).body:
            targets = n.targets if isinstance(n, ast.Assign) else [n.target] if isinstance(n, ast.AnnAssign) else []
            for t in targets:
                if isinstance(t, ast.Name) and t.id.isupper() and t.id not in ("HERE",):
                    where[t.id].append(os.path.relpath(path, REPO))
    dup = {k: v for k, v in where.items() if len(v) > 1}
    assert not dup, dup


@pytest.mark.slow  # builds and installs a wheel (~10 s)
def test_the_package_installs_with_its_prompts(tmp_path):
    """pyproject.toml: `pip install .` gives an importable library with its prompt templates (package data),
    usable from a user's own code outside this folder."""
    import shutil
    src, wheel_dir, target = tmp_path / "src", tmp_path / "wheel", tmp_path / "site"
    src.mkdir()  # built from a copy: the build writes build/ and *.egg-info next to pyproject.toml
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(REPO, f), src / f)
    shutil.copytree(os.path.join(REPO, "contrastive_context"), src / "contrastive_context",
                    ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheel_dir)], check=True, capture_output=True, cwd=tmp_path)
    wheel = next(wheel_dir.glob("*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, cwd=tmp_path)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import contrastive_context as c; "
            "from contrastive_context import tasks; from contrastive_context.contexts import Sampler; "
            "from contrastive_context.synthetic import scratch; "
            "assert c.__file__.startswith(sys.argv[1]), c.__file__; print(tasks.load_template('mt')['query'])")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code, str(target)], check=True, capture_output=True, text=True,
                         cwd=tmp_path, env=env)
    assert out.stdout.startswith("Source: {x}")
