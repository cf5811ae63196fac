"""The regimes are defined once (regimes.py): the real-LM contexts, the synthetic stream and the minimal
model give the same kind fractions for the same flags; --counterfactual (gamma) works in both tracks."""
import dataclasses

import numpy as np
import pytest

from contrastive_context import config
from contrastive_context import contexts
from contrastive_context.synthetic import minimal_model
from contrastive_context import regimes
from contrastive_context.synthetic import data as synthetic
from contrastive_context import tasks
from contrastive_context.common import UserError

FLAGS = [("random", 0.3, 0.2, 0.0), ("random", 0.3, 0.2, 0.1), ("contrastive", 0.3, 0.2, 0.0),
         ("contrastive", 0.4, 0.1, 0.1), ("random+similar", 0.5, 0.0, 0.2), ("similar", 0.3, 0.2, 0.0)]


def test_kind_probs_sum_to_one_and_refuse_impossible_mixes():
    for regime, a, b, z in FLAGS:
        p = regimes.kind_probs(regime, a, b, z)
        assert abs(sum(p) - 1) < 1e-12 and min(p) >= 0
    assert regimes.kind_probs("random", zero_frac=0.1) == pytest.approx((0.1, 0.9, 0, 0))
    with pytest.raises(UserError, match="alpha \\+ --beta"):
        regimes.kind_probs("contrastive", 0.7, 0.5)
    with pytest.raises(UserError, match="cannot exceed"):
        regimes.kind_probs("contrastive", 0.1, 0.2, zero_frac=0.2)
    with pytest.raises(UserError, match="not to similar"):
        regimes.kind_probs("similar", zero_frac=0.1)


def _sampler_fractions(task, regime, a, b, z, gamma=0.0):
    cfg = dataclasses.replace(config.ContextConfig(), regime=regime, k=2, alpha=a, beta=b, zero_frac=z, rho=0.0,
                              counterfactual=gamma)
    rows = contexts.Sampler(task, cfg, 0, show_progress=False).epoch(0)
    return rows, np.array([sum(r["kind"] == k for r in rows) / len(rows) for k in regimes.KINDS])


@pytest.mark.parametrize("regime,a,b,z", FLAGS)
def test_real_lm_and_synthetic_tracks_give_the_same_kind_fractions(regime, a, b, z):
    task = tasks.load_task("alignment", n_train=3000, n_test=10)
    _, real = _sampler_fractions(task, regime, a, b, z)
    data = synthetic.AlignmentData(task, k=2)
    counts = {}
    data.train_batch(np.random.default_rng(0), 3000, synthetic.regime_probs(regime, a, b, z), counts=counts)
    synth = np.array([counts.get(k, 0) / 3000 for k in regimes.KINDS])
    expected = np.array(regimes.kind_probs(regime, a, b, z))
    assert np.abs(real - expected).max() < 0.03 and np.abs(synth - expected).max() < 0.03


def test_minimal_model_uses_the_shared_definition():
    # §3's Contrastive: Random + One-Near (no Similar share); random+similar: alpha random, the rest similar
    assert minimal_model.regime_probs("contrastive", 0.3) == pytest.approx([0.3, 0, 0.7, 0])
    assert minimal_model.regime_probs("random+similar", 0.3) == pytest.approx([0.3, 0.7, 0, 0])
    assert minimal_model.regime_probs("random", 0.3) == pytest.approx([1, 0, 0, 0])


def test_counterfactual_gamma_in_the_real_lm_contexts():
    task = tasks.load_task("alignment", n_train=2000, n_test=10)
    rows, _ = _sampler_fractions(task, "contrastive", 0.3, 0.2, 0.0, gamma=0.5)
    one = [r for r in rows if r["kind"] == "one_near"]
    cf = [r for r in one if r["counterfactual"]]
    assert 0.4 < len(cf) / len(one) < 0.6            # gamma (1 - R)(1 - rho) with R = rho = 0
    pool = contexts.pool_by_id(task)
    for r in cf[:50]:
        target = pool[r["target"]]
        near = [contexts.resolve_id(c, task) for c in r["context"] if c.endswith("#cf")]
        assert len(near) == 1 and near[0]["id"] == r["target"] + "#cf"
        assert near[0]["y"] != target["y"] and sum(u != v for u, v in zip(near[0]["x"], target["x"])) == 1
    # gamma = 0 keeps the paper's stream: no counterfactual field, the same rows as before the knob existed
    rows0, _ = _sampler_fractions(task, "contrastive", 0.3, 0.2, 0.0, gamma=0.0)
    assert all("counterfactual" not in r for r in rows0)
    with pytest.raises(UserError, match="contrastive only"):
        _sampler_fractions(task, "random", 0.3, 0.2, 0.0, gamma=0.5)


def test_counterfactual_gamma_in_the_synthetic_stream():
    task = tasks.load_task("alignment", n_train=2000, n_test=10)
    data = synthetic.AlignmentData(task, k=2)
    probs = synthetic.regime_probs("contrastive", 0.3, 0.2)
    a, b = {}, {}
    rows0 = data.train_batch(np.random.default_rng(1), 500, probs, rho=0.5)
    rows_g0 = data.train_batch(np.random.default_rng(1), 500, probs, rho=0.5, gamma=0.0)
    assert (rows0 == rows_g0).all()                   # gamma = 0 is the old stream, token for token
    info = {}
    data.train_batch(np.random.default_rng(2), 4000, probs, rho=0.5, gamma=0.6, counts=a, info=info)
    share = a["near_counterfactual"] / a["one_near"]
    expected = regimes.near_probs(rho=0.5, gamma=0.6)["counterfactual"]
    assert abs(share - expected) < 0.04 and b == {}


def test_synthetic_counterfactual_scores_and_split_drift_score():
    task = tasks.load_task("alignment", n_train=500, n_test=80)
    data = synthetic.AlignmentData(task, k=2)
    sets = data.eval_sets(0)
    gold = {n: data.label(s["c"])[None] for n, s in sets.items()}        # a perfect in-weights model
    sc = synthetic.score_predictions(data, sets, gold)
    assert sc["edit_ok"].mean() == 100.0 and sc["cf_copy"].mean() < 10
    s = sets["random+counterfactual"]
    copied = dict(gold)
    cf_c = s["c"].copy()
    rows = np.arange(len(s["x"]))
    cf_c[rows, s["edit_pos"]] = s["cf_c"][rows, s["edit_pos"]]
    copied["random+counterfactual"] = data.label(cf_c)[None]            # a copier of the counterfactual
    sc2 = synthetic.score_predictions(data, sets, copied)
    assert sc2["cf_copy"].mean() == 100.0 and sc2["edit_ok"].mean() < sc["edit_ok"].mean()
    # drifted chunks: shown + unseen partition the drifted ones (a perfect model gets 100 on both)
    assert np.nanmean(sc["drift_random_drifted_shown"]) == 100.0 and np.nanmean(sc["drift_random_drifted_unseen"]) == 100.0


def test_split_run_label_is_the_one_parser_probes_and_reproduce_use():
    import probes
    import reproduce
    from contrastive_context.regimes import split_run_label
    assert split_run_label("contrastive+zero0.1@s12") == ("contrastive+zero0.1", 12)
    assert split_run_label("random") == ("random", 0)
    assert split_run_label("random@sx") == ("random@sx", 0)
    for label in ("contrastive@s1", "random+similar", "contrastive-rho0@s3"):
        assert probes.regime_of(label) == reproduce.parse_label_name(label) == split_run_label(label)[0]
    assert reproduce.parse_label("contrastive-rho0@s3") == ("contrastive", 3)
