"""train.py reads top to bottom: the training loop (forward, backward, optimizer step) is written in the
script itself, the library keeps the recipe other code shares (training.py) and the run folder's writer
(runs.RunWriter), and neither of them holds a loop of train.py's."""
import ast
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tree(rel):
    with open(os.path.join(REPO, rel), encoding="utf-8") as f:
        return ast.parse(f.read(), rel)


def _called(node):
    """Names of the methods/functions called anywhere under `node`."""
    return {c.func.attr if isinstance(c.func, ast.Attribute) else getattr(c.func, "id", None)
            for c in ast.walk(node) if isinstance(c, ast.Call)}


def test_train_py_holds_the_training_loop():
    loops = [n for n in ast.walk(_tree("train.py")) if isinstance(n, ast.For)]
    steps = [n for n in loops if {"backward", "step", "zero_grad", "loss_fn"} <= _called(n)]
    assert steps, "train.py has no `for` loop with loss_fn(...), .backward(...), optimizer.step() and .zero_grad()"


def test_train_py_builds_its_optimizer_and_writes_through_run_writer():
    called = _called(_tree("train.py"))
    assert {"AdamW", "get_linear_schedule_with_warmup", "RunWriter", "checkpoint", "log", "finish"} <= called


def test_the_library_recipe_and_run_writer_hold_no_training_loop():
    for rel in ("contrastive_context/training.py", "contrastive_context/runs.py", "contrastive_context/sft.py"):
        called = _called(_tree(rel))
        assert not called & {"backward", "zero_grad"}, f"{rel} trains: the loop belongs in train.py"
