"""The evaluation contexts of both tracks follow one definition. The LM track builds them with
evaluation.build_eval_contexts (one seeded stream per instance, BM25 neighbours); the from-scratch
sweep with synthetic.data.AlignmentData.eval_sets (vectorised over the test set, one numpy stream,
shared-symbol neighbours), whose committed results depend on its own stream. For the same test inputs,
k and seed, both must give every context type of evaluation.CONTEXT_TYPES, each as that type is defined:
no context; k pool examples other than the input; the k most similar pool examples (most similar last);
k - 1 random + the nearest, a paraphrase or a counterfactual near-duplicate of the input at one position."""
import pytest

from contrastive_context import evaluation as ev
from contrastive_context.synthetic import scratch
from contrastive_context.synthetic.data import AlignmentData
from contrastive_context.tasks import load_task

K, SEED, N = 4, 0, 40


def _overlap(a, b):
    return len(set(a) & set(b))


def _chunks(task, x, y):
    """{input symbol: its chunk of y} (chunk j of y belongs to input position pi[j])."""
    return {x[p]: y[j * task.length:(j + 1) * task.length] for j, p in enumerate(task.pi)}


def _from_lm_track(task, tests):
    out = {t: [] for t in ev.CONTEXT_TYPES}
    for inst in ev.build_eval_contexts(task, tests, K, SEED):
        ex = inst["example"]
        out[inst["context_type"]].append((ex["x"], ex["y"], [(c["x"], c["y"]) for c in inst["context"]],
                                          inst["position"]))
    return out


def _from_synthetic_track(task, tests):
    data = AlignmentData(task, k=K)
    sets = data.eval_sets(SEED, n_test=len(tests))
    sym = lambda row: "".join(scratch.SYMBOLS[s] for s in row)
    letters = lambda c: "".join(chr(97 + v) for v in data.label(c))
    out = {}
    for t in ev.CONTEXT_TYPES:
        s = sets[t]
        out[t] = [(sym(s["x"][n]), letters(s["c"][n]),
                   [] if (s["ctx_x"][n] < 0).all() else
                   [(sym(s["ctx_x"][n][i]), letters(s["ctx_c"][n][i])) for i in range(K)],
                   int(s["position"][n]) if "position" in s else None) for n in range(len(s["x"]))]
    return out


def _check(task, t, x, y, context, position, pool):
    """One instance of context type t for input (x, y), as the type is defined."""
    best = max(_overlap(x, p[0]) for p in pool)
    if t == "zero":
        assert context == [] and position is None
        return
    assert len(context) == K
    if t in ("random", "similar"):
        assert position is None and all(c in pool and c[0] != x for c in context)
        if t == "similar":  # most similar last: the best overlap the pool offers
            assert _overlap(x, context[-1][0]) == best
        return
    others = [c for i, c in enumerate(context) if i != position]
    assert 0 <= position < K and all(c in pool and c[0] != x for c in others)
    nx, ny = context[position]
    if t == "random+nearest":
        assert (nx, ny) in pool and _overlap(x, nx) == best
    elif t == "random+paraphrase":  # the input's symbols reordered, each with its own chunk
        assert nx != x and sorted(nx) == sorted(x) and _chunks(task, nx, ny) == _chunks(task, x, y)
    else:  # random+counterfactual: one symbol replaced by one not in x; the other chunks kept
        edited = [i for i in range(len(x)) if nx[i] != x[i]]
        assert len(edited) == 1 and nx[edited[0]] not in x
        cx, cf = _chunks(task, x, y), _chunks(task, nx, ny)
        assert all(cf[s] == cx[s] for s in nx if s in x)


@pytest.fixture(scope="module")
def both():
    task = load_task("alignment")
    tests = task.test_split()[:N]
    return task, tests, _from_lm_track(task, tests), _from_synthetic_track(task, tests)


@pytest.mark.parametrize("t", ev.CONTEXT_TYPES)
def test_both_tracks_build_each_context_type_by_its_definition(both, t):
    task, tests, lm, synthetic = both
    pool = [(ex["x"], ex["y"]) for ex in task.pool]
    for track in (lm, synthetic):
        assert [(x, y) for x, y, _, _ in track[t]] == [(ex["x"], ex["y"]) for ex in tests]
        for x, y, context, position in track[t]:
            _check(task, t, x, y, context, position, pool)


def test_both_tracks_pick_equally_similar_neighbours(both):
    """The k most similar pool examples of an input are the same up to ties: the same shared-symbol
    counts, in both tracks."""
    _, _, lm, synthetic = both
    profile = lambda track: [sorted(_overlap(x, c[0]) for c in ctx) for x, _, ctx, _ in track["similar"]]
    assert profile(lm) == profile(synthetic)
