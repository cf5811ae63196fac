"""The training regimes, defined ONCE (METHOD.md "Training regimes"): which kind of context a
training target gets, and what the near example of a One-Near context is. Used by the real-LM
contexts (contexts.Sampler), the synthetic stream (synthetic/data.py / sweep.py) and the minimal model
(synthetic/minimal_model.py), so the three tracks cannot drift apart.

Kinds of context (probabilities from `kind_probs`):
  zero       no context                       share zeta (--zero-frac), taken out of the Random share
  random     k random pool examples           alpha - zeta (contrastive, random+similar); 1 - zeta (random)
  similar    the top-k BM25 neighbours        beta (contrastive); 1 - alpha (random+similar); 1 (similar)
  one_near   one near example + k-1 random    1 - alpha - beta (contrastive only)

The near example of a One-Near context (`near_probs`), drawn in this order:
  copy            the target itself (x, y)                      probability R (--repeat)
  paraphrase      a synthetic paraphrase (x', y) of the target  rho, of what is left
  counterfactual  a counterfactual near-duplicate (x~, y~) of   gamma (--counterfactual), of what is left
                  the target with its own label (counterfactual.py)
  pool            a pool neighbour (top-M BM25, prop. to score) the rest
so P(paraphrase) = rho (1 - R), P(counterfactual) = gamma (1 - R)(1 - rho). A target without a
paraphrase (or a counterfactual) falls through to the next option. R = rho = gamma = 0 and zeta = 0
is the paper's method with its defaults alpha 0.3, beta 0.2 (rho 0.5 in the paper).
"""
from .common import UserError

REGIMES = ("zero", "random", "similar", "contrastive", "random+similar")
KINDS = ("zero", "random", "similar", "one_near")
NEAR_KINDS = ("pool", "paraphrase", "copy", "counterfactual")


def kind_probs(regime, alpha=0.3, beta=0.2, zero_frac=0.0):
    """(p_zero, p_random, p_similar, p_one_near) of a regime; a UserError names an impossible mix."""
    if regime not in REGIMES:
        raise UserError(f"unknown regime '{regime}' (choose from {', '.join(REGIMES)})")
    if regime == "contrastive" and alpha + beta > 1 + 1e-12:
        raise UserError(f"--alpha + --beta must be <= 1, got {alpha} + {beta} = {alpha + beta:g}")
    if zero_frac > 0 and regime in ("zero", "similar"):
        raise UserError(f"--zero-frac applies to the regimes with Random-Contexts (random, contrastive, "
                        f"random+similar), not to {regime}")
    if regime in ("contrastive", "random+similar") and zero_frac > alpha + 1e-12:
        raise UserError(f"--zero-frac ({zero_frac}) is taken out of the Random share and cannot exceed "
                        f"--alpha ({alpha})")
    p = {"zero": (1.0, 0.0, 0.0, 0.0),
         "random": (zero_frac, 1.0 - zero_frac, 0.0, 0.0),
         "similar": (0.0, 0.0, 1.0, 0.0),
         "random+similar": (zero_frac, alpha - zero_frac, 1.0 - alpha, 0.0),
         "contrastive": (zero_frac, alpha - zero_frac, beta, 1.0 - alpha - beta)}[regime]
    return tuple(max(0.0, v) for v in p)


def thresholds(probs):
    """Cumulative thresholds of a probability tuple (the last one is 1)."""
    out, acc = [], 0.0
    for v in probs:
        acc += v
        out.append(acc)
    out[-1] = 1.0
    return out


def pick_kind(probs, u):
    """The kind of context for a uniform draw u in [0, 1): the first kind whose cumulative share
    exceeds u (kinds with share 0 are never picked)."""
    for kind, t, p in zip(KINDS, thresholds(probs), probs):
        if u < t and p > 0:
            return kind
    return next(k for k, p in zip(reversed(KINDS), reversed(probs)) if p > 0)


def near_probs(rho=0.0, repeat=0.0, gamma=0.0):
    """{near kind: probability} within One-Near contexts (targets that have a paraphrase and a
    counterfactual; others fall through to the next option)."""
    p_copy = repeat
    p_para = rho * (1 - repeat)
    p_cf = gamma * (1 - repeat) * (1 - rho)
    return {"copy": p_copy, "paraphrase": p_para, "counterfactual": p_cf, "pool": 1 - p_copy - p_para - p_cf}


# ----------------------------------------------------------------------------- run labels
SEED_SUFFIX = "@s"  # 'contrastive@s1': regime label 'contrastive', another training seed (seed + 1)


def split_run_label(label):
    """A run label -> (its name, training-seed offset): 'contrastive+zero0.1@s1' -> ('contrastive+zero0.1', 1),
    'random' -> ('random', 0). The one parser of run labels (reproduce.py writes them, probes.py and
    figure3 tables read them). A suffix that is not a number is part of the name."""
    name, sep, sfx = label.partition(SEED_SUFFIX)
    return (name, int(sfx)) if sep and sfx.isdigit() else (label, 0)
