"""Tests for theory_sim.py: the forward pass by hand, context sampling, the qualitative orderings
at a reduced budget, and the CLI (subprocess smoke run, one-line errors)."""
import json
import math
import os

import pytest
import torch

import theory_sim as ts


def test_forward_matches_hand_computation():
    # d = 2, k = 2. Query x = (1, 0); context x_1 = (1, 0) (similarity 1), x_2 = (0, 1) (similarity 0),
    # labels y = (1, 3), so y_bar = 2 and <x_bar, x> = 0.5.
    # w = ln 2, b = 0, c = 0.5 ln 2, theta = (4, 0), theta0 = 1  =>  f_theta(x) = 5.
    # logits: a_1 = ln 2, a_2 = 0, a_E = 0.5 ln 2 + 0.5 ln 2 = ln 2, self = 0
    # exp:    2, 1, 2, 1 (sum 6)  =>  attention (1/3, 1/6, 1/3, 1/6)
    # y_hat = (2*1 + 1*3 + 2*2 + 1*5) / 6 = 14/6 = 7/3
    ln2 = math.log(2.0)
    params = {"w": torch.tensor([ln2]), "b": torch.tensor([0.0]), "c": torch.tensor([0.5 * ln2]),
              "theta": torch.tensor([[4.0, 0.0]]), "theta0": torch.tensor([1.0])}
    x = torch.tensor([[[1.0, 0.0]]])                       # (M=1, n=1, d=2)
    xs = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])        # (1, 1, k=2, 2)
    ys = torch.tensor([[[1.0, 3.0]]])                      # (1, 1, 2)
    y_hat, att = ts.forward(params, x, xs, ys)
    assert y_hat.shape == (1, 1)
    assert y_hat.item() == pytest.approx(7 / 3, abs=1e-6)
    assert att[0, 0].tolist() == pytest.approx([1 / 3, 1 / 6, 1 / 3, 1 / 6], abs=1e-6)

    # evaluate() reports the masses summed over context tokens / EOC / self, and the MSE
    test = {"x": x[0], "y": torch.tensor([2.0]), "xs": xs[0], "ys": ys[0]}
    ev = ts.evaluate({k: v[0] for k, v in params.items()}, test)
    assert ev["attention"] == pytest.approx({"context": 0.5, "eoc": 1 / 3, "self": 1 / 6}, abs=1e-6)
    assert ev["mse"] == pytest.approx((7 / 3 - 2) ** 2, abs=1e-6)


def test_zero_params_give_uniform_attention():
    params = ts.init_params(3, 5)
    gen = torch.Generator().manual_seed(0)
    x = ts.sphere((3, 7), 5, gen)
    xs = ts.sample_contexts(x, "random", 4, 15.0, gen)
    _, att = ts.forward(params, x, xs, torch.randn(3, 7, 4, generator=gen))
    assert torch.allclose(att, torch.full_like(att, 1 / 6))


def test_context_sampling_geometry():
    gen = torch.Generator().manual_seed(1)
    x = ts.sphere((500,), 8, gen)
    cos_near = math.cos(math.radians(15.0))
    sims = lambda xs: (xs @ x[:, :, None]).squeeze(-1)
    similar = ts.sample_contexts(x, "similar", 4, 15.0, gen)
    assert torch.allclose(similar.norm(dim=-1), torch.ones(500, 4), atol=1e-5)
    assert (sims(similar) >= cos_near - 1e-5).all()
    one_near = sims(ts.sample_contexts(x, "one_near", 4, 15.0, gen))
    assert (one_near[:, 0] >= cos_near - 1e-5).all() and one_near[:, 1:].abs().mean() < 0.5
    mid = sims(ts.sample_contexts(x, "one_mid", 4, 15.0, gen, mid=(30.0, 60.0)))[:, 0]
    assert (mid <= math.cos(math.radians(30)) + 1e-5).all() and (mid >= 0.5 - 1e-5).all()
    # a per-instance mixture: kind 0 = random, 1 = similar, 2 = one_near
    kind = torch.tensor([0, 1, 2] * 100 + [0] * 200)
    mixed = sims(ts.sample_contexts(x, kind, 4, 15.0, gen))
    assert (mixed[kind == 1] >= cos_near - 1e-5).all()
    assert (mixed[kind == 2][:, 0] >= cos_near - 1e-5).all()
    assert (mixed[kind == 0].max(-1).values < cos_near).all()


def test_regime_probs():
    assert ts.regime_probs("contrastive", 0.3) == [0.3, 0, 0.7, 0]
    assert ts.regime_probs("random+similar", 0.3) == [0.3, 0.7, 0, 0]
    assert ts.regime_probs("sweep:0.2", 0.5) == [0.2, 0, 0.8, 0]


@pytest.fixture(scope="module")
def small_run():
    """Seed 0 at a reduced budget (600 steps). The orderings asserted below held for seeds 0-5."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)               # as main() does; restored for the other test modules
    args = ts.parse_args(["--out", "unused", "--steps", "600", "--n-test", "2000", "--sweep", "0.1,0.9"])
    ts.check_args(args)
    try:
        yield ts.simulate(args)
    finally:
        torch.set_num_threads(threads)


def test_orderings_at_reduced_budget(small_run):
    mse, att = small_run["mse"], small_run["attention"]
    # Random-trained: pure IWL (attends to itself) and cannot use a near example
    assert min(att["random"][t]["self"] for t in ts.TEST_CONTEXTS) > 0.8
    assert mse["random"]["one_near"] > 2 * mse["contrastive"]["one_near"]
    # Similar-trained: trusts the context, fails on random contexts (worse than pure IWL)
    assert mse["similar"]["random"] > 2 * mse["contrastive"]["random"]
    assert mse["similar"]["random"] > mse["random"]["random"]
    assert att["similar"]["random"]["context"] > 0.5
    # One-Near-trained (at this budget): copies a label from a random context, costing MSE
    assert mse["one_near"]["random"] > 1.2 * mse["contrastive"]["random"]
    # Random+Similar-trained (at this budget): under-uses the single near example
    assert mse["random+similar"]["one_near"] > 1.2 * mse["contrastive"]["one_near"]
    # Contrastive: within 20% of the best training regime in every test column
    for t in ts.TEST_CONTEXTS:
        best = min(mse[r][t] for r in ts.TRAIN_REGIMES)
        assert mse["contrastive"][t] <= 1.2 * best, t


def test_sweep_threshold_rises_with_random_share(small_run):
    lo, hi = small_run["sweep"]
    assert (lo["p_random"], hi["p_random"]) == (0.1, 0.9)
    assert hi["threshold"] > lo["threshold"]
    assert hi["mse"]["random"] < lo["mse"]["random"]


# ----------------------------------------------------------------------------- CLI
def test_smoke_run_writes_contract(run_script, tmp_path):
    # conftest sets HF_HUB_OFFLINE=1 (inherited by the subprocess)
    p = run_script("theory_sim.py", "--out", "tmp", "--steps", "20", "--n-test", "200", "--sweep", "0,0.5,1")
    assert p.returncode == 0, p.stderr
    assert "== theory_sim ==" in p.stdout                  # the configuration is printed
    out = tmp_path / "tmp"
    res = json.loads((out / "results.json").read_text())
    assert set(res["mse"]) == set(res["params"]) == set(res["attention"]) == set(ts.TRAIN_REGIMES)
    assert set(ts.TRAIN_REGIMES) == {"random", "similar", "one_near", "random+similar", "contrastive"}
    for r in ts.TRAIN_REGIMES:
        assert set(res["mse"][r]) == {"random", "similar", "one_near"}
        assert all(isinstance(v, float) and math.isfinite(v) for v in res["mse"][r].values())
        assert set(res["params"][r]) == {"w", "b", "c"}
        for t in ("random", "similar", "one_near"):
            a = res["attention"][r][t]
            assert set(a) == {"context", "eoc", "self"}
            assert sum(a.values()) == pytest.approx(1.0, abs=1e-4)
    assert [s["p_random"] for s in res["sweep"]] == [0, 0.5, 1]
    assert "| train \\ test |" in (out / "results.md").read_text()
    for png in ("theory_sim.png", "theory_sim_sweep.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


def test_deterministic_given_seed():
    args = ts.parse_args(["--out", "unused", "--steps", "15", "--n-test", "100", "--sweep", "0.5", "--seed", "3"])
    ts.check_args(args)
    a, b = ts.simulate(args), ts.simulate(args)
    assert a["mse"] == b["mse"] and a["params"] == b["params"] and a["sweep"] == b["sweep"]


@pytest.mark.parametrize("bad, msg", [
    (["--k", "0"], "--k must be in [1, 4096]"),
    (["--dim", "1"], "--dim must be >= 2"),
    (["--dim", "1e8"], "argument --dim: invalid int value"),
    (["--dim", "100000000"], "--dim must be in [1, 4096]"),
    (["--steps", "0"], "--steps must be in [1,"),
    (["--batch-size", "0"], "--batch-size must be in [1,"),
    (["--n-test", "-5"], "--n-test must be in [1,"),
    (["--batch-size", "1000000", "--dim", "4096"], "too large for memory"),
    (["--f-scale", "nan"], "--f-scale must be a positive number"),
    (["--near-deg", "nan"], "--near-deg must be in (0, 90]"),
    (["--alpha", "nan"], "--alpha must be in [0, 1]"),
    (["--lr", "-1"], "--lr must be a positive number"),
    (["--lr", "nan"], "--lr must be a positive number"),
    (["--sweep", "0,2"], "--sweep values must be in [0, 1]"),
    (["--sweep", "a,b"], "--sweep must be comma-separated"),
    (["--near-deg", "0"], "--near-deg must be in (0, 90]"),
    (["--alpha", "1.5"], "--alpha must be in [0, 1]"),
    (["--mix", "1.5"], "--alpha must be in [0, 1]"),          # the old name is an alias
])
def test_bad_args_raise_user_error(tmp_path, bad, msg):
    with pytest.raises(ts.UserError, match=msg.replace("[", r"\[").replace("(", r"\(").replace("]", r"\]")):
        ts.main(["--out", str(tmp_path / "out"), *bad])
    assert not (tmp_path / "out").exists()


def test_out_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ts.UserError, match="--out exists and is not a folder"):
        ts.main(["--out", str(tmp_path / "f")])


def test_bad_args_cli_one_line_error(run_script, tmp_path):
    for bad, msg in ((["--k", "0"], "error: --k must be in [1, 4096], got 0"),
                     (["--dim", "1e8"], "error: argument --dim: invalid int value: '1e8'")):
        p = run_script("theory_sim.py", "--out", "tmp", *bad)
        assert p.returncode == 2
        lines = p.stderr.strip().splitlines()
        assert lines == [msg], p.stderr
        assert not (tmp_path / "tmp").exists()


def test_help(run_script):
    p = run_script("theory_sim.py", "-h")
    assert p.returncode == 0 and "--batch-size" in p.stdout and "--sweep" in p.stdout
