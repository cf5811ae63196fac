"""One meaning per flag: every script's parser (the top-level scripts, studies/**, benchmarks/, examples/; each
exposes `build_parser()`) is walked, and an option name must have the same value kind (int, float, text, a flag,
a custom type), the same action and nargs, and the same default in every script that has it. A default of None
means "not fixed here" (the script resolves it, or passes it on) and matches any default. ALLOWED lists the few
options whose default differs on purpose; their kind, action and nargs must still agree."""
import argparse
import glob
import importlib.util
import os
from collections import defaultdict

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "*.py")) + glob.glob(
    os.path.join(REPO, "studies", "**", "*.py"), recursive=True) + glob.glob(os.path.join(REPO, "benchmarks", "*.py"))
    + glob.glob(os.path.join(REPO, "examples", "*.py")))

# option -> why its default may differ between scripts (the meaning is the same)
ALLOWED = {
    "--batch-size": "a batch of the script's own work (generation, training, BM25 queries), sized for that work",
    "--budget": "each script's own presets (their choices differ)",
    "--device": "benchmarks time the CPU; the other scripts take a GPU when there is one",
    "--k": "context size; the neighbour-count study measures k=2 contexts",
    "--limit": "test inputs scored; probes.py and neighbours.py score each of many checkpoints or pools",
    "--lr": "peak learning rate of each script's own model and optimiser",
    "--max-new-tokens": "generation length of the script's own outputs (paraphrases, benchmark prompts)",
    "--model": "the model a script runs: the trained one, or paraphrase.py's generator",
    "--models": "the models each benchmark compares",
    "--n-test": "test inputs: the alignment task's instances, or the minimal model's test queries",
    "--split": "paraphrase.py paraphrases the pool (train), the evaluators read a test split",
    "--targets": "training targets; the neighbour study fixes 1000 to compare pool sizes",
    "--threads": "benchmarks pin their thread count so that timings compare; the others default to 0 = auto",
    "--warmup-steps": "warm-up of each script's own optimiser (sweep.py's small transformers need one)",
    "--alpha": "share of random contexts; the minimal model's own operating point",
}


def _load(rel):
    spec = importlib.util.spec_from_file_location("flags_" + rel[:-3].replace(os.sep, "_"), os.path.join(REPO, rel))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _builds_a_parser(rel):
    with open(os.path.join(REPO, rel), encoding="utf-8") as f:
        return "ArgumentParser(" in f.read()


def _kind(action):
    if action.nargs == 0:
        return "flag"
    t = action.type
    if t is None:
        return "text"
    name = getattr(t, "__name__", repr(t))
    return {"int_range": "int", "finite_float": "float"}.get(name, name)


def options(parser):
    """option string -> (dest, default, kind, action class, nargs) of every optional argument of `parser`."""
    return {o: (a.dest, a.default, _kind(a), type(a).__name__, a.nargs)
            for a in parser._actions if not isinstance(a, argparse._HelpAction) for o in a.option_strings}


def clashes(parsers, allowed=()):
    """`parsers`: {script: parser}. One line per option whose kind/action/nargs differ between scripts, or whose
    defaults differ (None matches anything) when the option is not in `allowed`."""
    seen = defaultdict(dict)
    for script, parser in parsers.items():
        for opt, sig in options(parser).items():
            seen[opt][script] = sig
    out = []
    for opt, by_script in sorted(seen.items()):
        shapes = {sig[2:] for sig in by_script.values()}
        defaults = {repr(sig[1]) for sig in by_script.values() if sig[1] is not None}
        if len(shapes) > 1 or (len(defaults) > 1 and opt not in allowed):
            out.append(f"{opt}: " + "; ".join(f"{s} default={sig[1]!r} kind={sig[2]} action={sig[3]} nargs={sig[4]}"
                                              for s, sig in sorted(by_script.items())))
    return out


@pytest.fixture(scope="module")
def parsers():
    return {rel: _load(rel).build_parser() for rel in SCRIPTS if _builds_a_parser(rel)}


def test_every_script_with_a_parser_exposes_build_parser(parsers):
    assert len(parsers) >= 25, sorted(parsers)
    assert {"train.py", "sweep.py", "theory_sim.py", "examples/trl_sft.py", "benchmarks/bm25.py",
            "studies/tools/relevance.py"} <= set(parsers)
    for rel, p in parsers.items():
        assert isinstance(p, argparse.ArgumentParser), rel


def test_one_meaning_per_flag(parsers):
    found = clashes(parsers, ALLOWED)
    assert not found, "\n".join(found)


def test_the_allow_list_is_short_and_every_entry_is_used(parsers):
    assert len(ALLOWED) <= 16
    found = set()
    for p in parsers.values():
        found |= set(options(p))
    assert set(ALLOWED) <= found, set(ALLOWED) - found
    assert all(reason.strip() for reason in ALLOWED.values())


def test_a_clash_is_reported():
    a, b, c = (argparse.ArgumentParser() for _ in range(3))
    a.add_argument("--n-train", type=int, default=200)
    b.add_argument("--n-train", type=int, default=256)       # other default
    c.add_argument("--n-train", default="200,400")           # other kind
    a.add_argument("--out", default=None)
    b.add_argument("--out", default="x")                     # None matches anything
    assert clashes({"a.py": a}) == []
    assert clashes({"a.py": a, "b.py": b}) == [
        "--n-train: a.py default=200 kind=int action=_StoreAction nargs=None; "
        "b.py default=256 kind=int action=_StoreAction nargs=None"]
    assert clashes({"a.py": a, "b.py": b}, allowed={"--n-train"}) == []
    found = clashes({"a.py": a, "c.py": c}, allowed={"--n-train"})  # an allowed default, never another kind
    assert len(found) == 1 and "kind=text" in found[0]
    d = argparse.ArgumentParser()
    d.add_argument("--n-train", action="store_true")
    assert len(clashes({"a.py": a, "d.py": d})) == 1
