"""The minimal model of paper §3 (METHOD.md "The minimal model") as a library: the task (inputs on
the unit sphere, a fixed random tanh network f*), context sampling, the three-scalar attention
read-out with a linear in-weights estimator, batched training of many independent models, and
evaluation. `theory_sim.py` is the script on top; `sweep.py` trains it over the same (alpha, rho)
grid as the from-scratch transformers (`train_grid`).

A near example of a One-Near context is, with probability `rho` (the sweep's paraphrase share),
a "paraphrase": a point within `para_deg` degrees of the query (label f* there), else a pool-like
neighbour within `near_deg` degrees.
"""
import math
import types

import torch

from .. import regimes

from ..common import UserError, progress

TRAIN_REGIMES = ["random", "similar", "one_near", "random+similar", "contrastive"]
TEST_CONTEXTS = ["random", "similar", "one_near"]     # the output contract names
EXTRA_TESTS = ["one_mid"]                             # extra probe, reported separately
MIXTURE_KINDS = ["random", "similar", "one_near", "one_para"]  # context types a training mixture draws from
# (the minimal model's own; regimes.KINDS are the kinds of the transformer tracks)


# ----------------------------------------------------------------------------- the task
def sphere(shape, dim, gen):
    """Uniform points on the unit sphere in R^dim, shape (*shape, dim)."""
    z = torch.randn(*shape, dim, generator=gen)
    return z / z.norm(dim=-1, keepdim=True)


def at_angle(x, deg_lo, deg_hi, gen):
    """For each x (..., d): a unit vector at an angle uniform in [deg_lo, deg_hi] degrees from x,
    in a uniformly random direction."""
    phi = torch.deg2rad(deg_lo + (deg_hi - deg_lo) * torch.rand(x.shape[:-1], generator=gen))
    u = torch.randn(x.shape, generator=gen)
    u = u - (u * x).sum(-1, keepdim=True) * x                    # tangent direction at x
    u = u / u.norm(dim=-1, keepdim=True)
    return torch.cos(phi)[..., None] * x + torch.sin(phi)[..., None] * u


class Target:
    """y = f*(x): a fixed random two-layer tanh network, standardised on a large sphere sample."""

    def __init__(self, dim, hidden, scale, gen):
        self.W = scale * torch.randn(hidden, dim, generator=gen)
        self.a = torch.randn(hidden, generator=gen) / math.sqrt(hidden)
        y = self.raw(sphere((100_000,), dim, gen))
        self.mu, self.sd = y.mean(), y.std()

    def raw(self, x):
        return torch.tanh(x @ self.W.T) @ self.a

    def __call__(self, x):
        return (self.raw(x) - self.mu) / self.sd


def sample_contexts(x, kind, k, near_deg, gen, mid=(30.0, 60.0), para_deg=2.0):
    """Context inputs (..., k, d) of one type for queries x (..., d). A per-instance `kind` tensor
    of indices into MIXTURE_KINDS mixes types (for the training mixtures); a string gives one type for all.
    The near example of one_near / one_mid sits in slot 0: the model is permutation invariant."""
    shape, d = x.shape[:-1], x.shape[-1]
    rand = sphere((*shape, k), d, gen)
    if kind == "random":
        return rand
    xk = x[..., None, :].expand(*shape, k, d)
    if kind == "one_mid":
        return torch.cat([at_angle(x, *mid, gen)[..., None, :], rand[..., 1:, :]], dim=-2)
    near = at_angle(xk, 0.0, near_deg, gen)
    if isinstance(kind, torch.Tensor) and (kind == MIXTURE_KINDS.index("one_para")).any():
        para = kind[..., None] == MIXTURE_KINDS.index("one_para")
        near = torch.where(para[..., None], at_angle(xk, 0.0, para_deg, gen), near)
    if kind == "similar":
        return near
    if kind == "one_near":
        return torch.cat([near[..., :1, :], rand[..., 1:, :]], dim=-2)
    # mixture: kind is a (...) tensor of MIXTURE_KINDS indices
    slot0 = torch.zeros(k, dtype=torch.bool)
    slot0[0] = True
    one = (kind[..., None] == MIXTURE_KINDS.index("one_near")) | (kind[..., None] == MIXTURE_KINDS.index("one_para"))
    use_near = (kind[..., None] == MIXTURE_KINDS.index("similar")) | (one & slot0)
    return torch.where(use_near[..., None], near, rand)


# ----------------------------------------------------------------------------- the model
def init_params(n_models, dim):
    """Parameters of n_models independent minimal models, all starting at uniform attention."""
    z = lambda *s: torch.zeros(*s, requires_grad=True)
    return {"w": z(n_models), "b": z(n_models), "c": z(n_models), "theta": z(n_models, dim), "theta0": z(n_models)}


def forward(params, x, xs, ys):
    """y_hat and attention (context tokens..., EOC, self) for models m on queries n.
    x (M, n, d), xs (M, n, k, d), ys (M, n, k) -> y_hat (M, n), att (M, n, k + 2)."""
    w, b, c = (params[key][:, None] for key in "wbc")               # (M, 1)
    sims = torch.einsum("mnkd,mnd->mnk", xs, x)                     # <x_i, x>
    sim_eoc = (xs.mean(dim=2) * x).sum(-1)                          # <x_bar, x>
    logits = torch.cat([w[..., None] * sims + b[..., None],          # a_i
                        (w * sim_eoc + c)[..., None],                # a_E
                        torch.zeros_like(sim_eoc)[..., None]], -1)   # the query's own logit 0
    f_theta = torch.einsum("mnd,md->mn", x, params["theta"]) + params["theta0"][:, None]
    values = torch.cat([ys, ys.mean(-1, keepdim=True), f_theta[..., None]], -1)
    att = torch.softmax(logits, dim=-1)
    return (att * values).sum(-1), att


# ----------------------------------------------------------------------------- training
def regime_probs(regime, alpha):
    """Probabilities over MIXTURE_KINDS (random, similar, one_near, one_para) of a training regime;
    alpha = the share of random contexts in the mixtures."""
    if regime.startswith("sweep:"):                               # sweep:<share of random>
        p = float(regime.split(":", 1)[1])
        return [p, 0, 1 - p, 0]
    if regime == "one_near":                                      # the §3 model's extra pure regime
        return [0, 0, 1, 0]
    # the shared definition (regimes.kind_probs); §3's Contrastive has no Similar share (beta = 0)
    _, p_random, p_similar, p_one = regimes.kind_probs(regime, alpha, beta=0.0)
    return [p_random, p_similar, p_one, 0]


def mixture_probs(alpha, beta=0.0, rho=0.0):
    """The sweep's contrastive mixture: alpha random, beta similar, the rest One-Near whose near
    example is a paraphrase with probability rho."""
    one = max(0.0, 1.0 - alpha - beta)
    return [alpha, beta, one * (1 - rho), one * rho]


def train(models, target, args, gen):
    """Train one minimal model per entry of `models` (name -> probabilities over MIXTURE_KINDS)."""
    names = list(models)
    probs = torch.tensor([models[n] for n in names], dtype=torch.float32)  # (M, 4)
    M = len(names)
    params = init_params(M, args.dim)
    opt = torch.optim.Adam(params.values(), lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / args.steps)))
    bar = progress(range(args.steps), desc=f"training {M} minimal models", unit="step",
                   disable=None if getattr(args, "progress", True) else True)
    for step in bar:
        x = sphere((M, args.n_train), args.dim, gen)
        kind = torch.multinomial(probs, args.n_train, replacement=True, generator=gen)  # (M, n)
        xs = sample_contexts(x, kind, args.k, args.near_deg, gen, para_deg=getattr(args, "para_deg", 2.0))
        y_hat, _ = forward(params, x, xs, target(xs))
        loss_per_model = (y_hat - target(x)).pow(2).mean(dim=1)
        opt.zero_grad(set_to_none=True)
        loss_per_model.sum().backward()       # models are independent: the sum keeps their gradients apart
        opt.step()
        sched.step()
        if step % 100 == 0 or step == args.steps - 1:
            bar.set_postfix(mean_loss=f"{loss_per_model.mean().item():.4f}", refresh=False)
    if not all(torch.isfinite(v).all() for v in params.values()):
        raise UserError(f"training diverged (non-finite parameters); lower --lr (now {args.lr})")
    return {n: {key: v[i].detach().clone() for key, v in params.items()} for i, n in enumerate(names)}


# ----------------------------------------------------------------------------- evaluation
def make_test_set(target, args, gen):
    """A fixed test set per test context: the same queries x for every context type."""
    x = sphere((args.n_test,), args.dim, gen)
    tests = {}
    for kind in TEST_CONTEXTS + EXTRA_TESTS:
        xs = sample_contexts(x, kind, args.k, args.near_deg, gen, mid=(args.mid_deg_lo, args.mid_deg_hi))
        tests[kind] = {"x": x, "y": target(x), "xs": xs, "ys": target(xs)}
    return tests


@torch.no_grad()
def evaluate(p, test):
    """Test MSE and mean attention mass (context / eoc / self) of one trained model on one test set."""
    params = {key: v[None] for key, v in p.items()}
    y_hat, att = forward(params, test["x"][None], test["xs"][None], test["ys"][None])
    att = att[0].mean(0)
    return {"mse": (y_hat[0] - test["y"]).pow(2).mean().item(),
            "attention": {"context": att[:-2].sum().item(), "eoc": att[-2].item(), "self": att[-1].item()}}


@torch.no_grad()
def baselines(tests, target, args, gen):
    """Reference MSEs per test context: the best linear f_theta (IWL alone, least squares on a
    large fresh sample), copying the label of the most similar example, averaging all labels,
    and predicting 0 (= Var y = 1)."""
    xf = sphere((50_000,), args.dim, gen)
    X = torch.cat([xf, torch.ones(len(xf), 1)], 1)
    coef = torch.linalg.lstsq(X.double(), target(xf).double()[:, None]).solution.float()[:, 0]
    out = {}
    for kind, t in tests.items():
        iwl = t["x"] @ coef[:-1] + coef[-1]
        nearest = t["ys"].gather(-1, (t["xs"] @ t["x"][:, :, None]).squeeze(-1).argmax(-1, keepdim=True))[:, 0]
        mse = lambda pred: (pred - t["y"]).pow(2).mean().item()
        out[kind] = {"iwl_best_linear": mse(iwl), "copy_nearest": mse(nearest),
                     "average_context": mse(t["ys"].mean(-1)), "zero": mse(torch.zeros_like(t["y"]))}
    return out


def similarity_reference(tests, args):
    """Where a threshold -b/w should sit: the lowest similarity of a near example, and quantiles of
    the similarity of the closest of k random examples (on the random test set)."""
    t = tests["random"]
    closest = (t["xs"] @ t["x"][:, :, None]).squeeze(-1).max(-1).values
    return {"near_min": math.cos(math.radians(args.near_deg)),
            "random_closest_q50": closest.quantile(0.5).item(), "random_closest_q99": closest.quantile(0.99).item()}


def threshold(p):
    """Similarity at which a context token's logit w*s + b equals the query's own logit 0."""
    w, b = p["w"].item(), p["b"].item()
    return -b / w if abs(w) > 1e-6 else None


def train_grid(alphas, rhos, beta=0.2, seed=0, steps=1500, dim=16, k=4, hidden=32, f_scale=4.0, near_deg=15.0,
               para_deg=2.0, batch=256, lr=0.05, n_test=2000):
    """Minimal models over an (alpha, rho) grid of contrastive mixtures (alpha random, beta similar,
    the rest One-Near with a paraphrase share rho), trained as one batch. Returns rows
    {"alpha", "rho", "w", "b", "c", "threshold", "mse": {test: float}, "attention_random": {...}}."""
    args = types.SimpleNamespace(dim=dim, k=k, hidden=hidden, f_scale=f_scale, near_deg=near_deg, para_deg=para_deg,
                                 n_train=batch, steps=steps, lr=lr, n_test=n_test, mid_deg_lo=30.0, mid_deg_hi=60.0,
                                 progress=False)
    g_target, g_test, g_train = (torch.Generator().manual_seed(seed * 1000 + i) for i in range(3))
    target = Target(dim, hidden, f_scale, g_target)
    tests = make_test_set(target, args, g_test)
    models = {}
    for a in alphas:
        for r in rhos:
            if a + beta <= 1 + 1e-9:
                models[(a, r)] = mixture_probs(a, beta, r)
    trained = train({f"{a}|{r}": p for (a, r), p in models.items()}, target, args, g_train)
    rows = []
    for (a, r) in models:
        p = trained[f"{a}|{r}"]
        ev = {kind: evaluate(p, t) for kind, t in tests.items()}
        rows.append({"alpha": a, "rho": r, **{key: p[key].item() for key in "wbc"}, "threshold": threshold(p),
                     "mse": {kind: e["mse"] for kind, e in ev.items()},
                     "attention_random": ev["random"]["attention"]})
    return rows
