"""Simulate the minimal model of paper §3 (METHOD.md "The minimal model").

Task. Inputs x are uniform on the unit sphere in R^d, labels y = f*(x) with f* a fixed random
two-layer tanh network (standardised to mean 0, variance 1 over the sphere). A context holds k
pairs (x_i, y_i).

Model. One attention read-out at the query position with three learned scalars w, b, c and a
linear in-weights estimator f_theta(x) = theta.x + theta_0 (limited capacity: it cannot fit f*):

    token             logit                    value
    context i         a_i = w<x_i, x> + b      y_i          (in-context learning / copying)
    end of context    a_E = w<x_bar, x> + c    y_bar        (blind averaging of context labels)
    query itself      0                        f_theta(x)   (in-weights learning)

    y_hat = softmax(a_1..a_k, a_E, 0) . (y_1..y_k, y_bar, f_theta(x))

Context types. random: x_i uniform on the sphere; similar: every x_i at an angle drawn uniformly
from [0, --near-deg] from x; one_near: one such near x_i plus k-1 random ones. The extra test
context one_mid has one example at a medium angle ([--mid-deg-lo, --mid-deg-hi]) plus k-1 random
ones: there the "closest" example is not near enough for copying to beat f_theta.

Training regimes (mixtures of context types, drawn independently per training instance):
random, similar, one_near, random+similar and contrastive (random + one_near), the mixtures with
an --alpha share of random contexts (the same alpha as sample_contexts.py / sweep.py). w, b, c, theta are trained jointly with Adam (cosine learning-rate
decay) on the squared loss, with fresh contexts every step. We also sweep the share of random vs
one_near contexts (the contrastive mixture) and record the learned threshold -b/w, the similarity
at which a context example's logit equals the query's own logit 0.

All models (5 regimes + the sweep) are trained in one loop as a batch of independent models: they
share no parameters, Adam is per-parameter, so this is the same as training them one by one.

Defaults (chosen once for an informative task, not tuned per claim): d=16, k=4, f* with 32 tanh
units and input scale 4. Then the best linear f_theta has test MSE ~0.27, copying an example
within 15 degrees costs ~0.06, copying one at 30-60 degrees ~0.9, copying a random label ~2 and
averaging k random labels ~1.25 (seed 0); a random example's similarity <x_i, x> is ~N(0, 1/d), so the
closest of k=4 random examples has similarity ~0.26 (99th percentile 0.65), a near one >= 0.966.
Some effects depend on the training budget (--steps): One-Near's copying from random contexts and
Random+Similar's under-use of a single near example shrink with longer training (see the notes).

Outputs in --out: results.json (output contract: mse / params / attention, plus extra keys),
results.md (tables), theory_sim.png (MSE heat map + attention mass), theory_sim_sweep.png.

    python theory_sim.py --out runs/theory_sim
"""
import argparse
import math
import os
import time

import numpy as np
import torch

from contrastive_context import cli
from contrastive_context import common
from contrastive_context import config
from contrastive_context.common import UserError, atomic_path, print_config, run_main, set_seed
from contrastive_context.common import write_json_atomic, write_text_atomic
from contrastive_context.synthetic.minimal_model import (  # noqa: F401  (names the tests use through this script)
    EXTRA_TESTS, MIXTURE_KINDS, TEST_CONTEXTS, TRAIN_REGIMES, Target, at_angle, baselines, evaluate, forward,
    init_params, make_test_set, mixture_probs, regime_probs, sample_contexts, similarity_reference, sphere, threshold,
    train)

SHORT = {"random": "R", "similar": "S", "one_near": "N", "one_mid": "M"}   # figure labels
LIMITS = {"dim": 4096, "k": 4096, "hidden": 4096, "steps": 10_000_000, "n_train": 1_000_000, "n_test": 1_000_000}
FLAG_OF = {"n_train": "batch_size"}  # the flag of a LIMITS key (n_train: the library's name of the batch size)


def build_parser():
    p = cli.ArgumentParser(description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=config.SEED, default=0, help="seeds f*, the training stream and the test set")
    p.add_argument("--dim", type=int, default=16, help="input dimension d (x on the unit sphere in R^d)")
    p.add_argument("--k", type=int, default=4, help="context examples per query")
    p.add_argument("--hidden", type=int, default=32, help="tanh units of the target network f*")
    p.add_argument("--f-scale", type=float, default=4.0,
                   help="input weight scale of f* (larger = less linear, more ICL value)")
    p.add_argument("--near-deg", type=float, default=15.0,
                   help="near examples lie at an angle uniform in [0, near-deg] degrees from x")
    p.add_argument("--mid-deg-lo", type=float, default=30.0, help="one_mid test: lowest angle (degrees)")
    p.add_argument("--mid-deg-hi", type=float, default=60.0, help="one_mid test: highest angle (degrees)")
    p.add_argument("--alpha", "--mix", dest="alpha", type=float, default=0.5,
                   help="share of random contexts (alpha) in the random+similar and contrastive regimes "
                        "(--mix is an old alias)")
    p.add_argument("--sweep", default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1",
                   help="comma-separated shares of random (vs one_near) contexts to sweep; 'none' to skip")
    p.add_argument("--steps", "--max-steps", dest="steps", type=int, default=2000,
                   help="gradient steps per model (--max-steps: the same, train.py's name)")
    p.add_argument("--batch-size", dest="n_train", type=int, default=256,
                   help="fresh training contexts per step (the batch size, as in train.py)")
    p.add_argument("--lr", type=float, default=0.05, help="Adam peak learning rate (cosine decay to 0)")
    p.add_argument("--n-test", type=int, default=4000, help="fixed test queries per test context")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG figures")
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def check_args(args):
    if args.dim < 2:
        raise UserError(f"--dim must be >= 2, got {args.dim}")
    for name, hi in LIMITS.items():
        if not 1 <= getattr(args, name) <= hi:
            flag = FLAG_OF.get(name, name).replace("_", "-")
            raise UserError(f"--{flag} must be in [1, {hi}], got {getattr(args, name)}")
    if args.n_train * args.k * args.dim > 50_000_000 or args.n_test * args.k * args.dim > 50_000_000:
        raise UserError(f"--batch-size/--n-test x --k x --dim is too large for memory "
                        f"({args.n_train} / {args.n_test} x {args.k} x {args.dim}; limit 5e7 floats)")
    if not (args.lr > 0 and math.isfinite(args.lr)):
        raise UserError(f"--lr must be a positive number, got {args.lr}")
    if not (args.f_scale > 0 and math.isfinite(args.f_scale)):
        raise UserError(f"--f-scale must be a positive number, got {args.f_scale}")
    if not 0 < args.near_deg <= 90:
        raise UserError(f"--near-deg must be in (0, 90], got {args.near_deg}")
    if not 0 <= args.mid_deg_lo <= args.mid_deg_hi <= 180:
        raise UserError(f"need 0 <= --mid-deg-lo <= --mid-deg-hi <= 180, got {args.mid_deg_lo}, {args.mid_deg_hi}")
    if not 0 <= args.alpha <= 1:
        raise UserError(f"--alpha must be in [0, 1], got {args.alpha}")
    args.sweep_fracs = parse_sweep(args.sweep)
    for name in ("near_deg", "mid_deg_lo", "mid_deg_hi", "alpha"):
        if not math.isfinite(getattr(args, name)):
            raise UserError(f"--{name.replace('_', '-')} must be a finite number, got {getattr(args, name)}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UserError(f"--out exists and is not a folder: {args.out}")


def parse_sweep(text):
    if text.strip().lower() in ("", "none"):
        return []
    try:
        fracs = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UserError(f"--sweep must be comma-separated numbers in [0, 1] or 'none', got {text!r}") from None
    if not all(0 <= f <= 1 for f in fracs):
        raise UserError(f"--sweep values must be in [0, 1], got {text!r}")
    if len({f"{f:g}" for f in fracs}) != len(fracs):  # one model per value (named by f"{f:g}"): no duplicate rows
        raise UserError(f"--sweep has repeated values: {text!r}")
    return fracs


DIVERGED = 100.0  # a test MSE this many times that of predicting 0 means training diverged


def check_converged(res, args):
    """UserError when some model's training diverged: a test MSE (of the model, or of its in-weights
    estimator f_theta alone) above DIVERGED x the MSE of always predicting 0, or not finite. Such numbers
    (e.g. --lr 1e6: MSE 3.5e9) are no result; nothing is written."""
    zero = min(b["zero"] for b in res["baselines"].values())
    found = [(r, t, v) for r, row in res["mse"].items() for t, v in row.items()]
    found += [(r, "f_theta alone", d["f_theta_mse"]) for r, d in res["derived"].items()]
    found += [(f"sweep p_random={s['p_random']:g}", t, v) for s in res["sweep"] for t, v in s["mse"].items()]
    found += [(f"sweep p_random={s['p_random']:g}", "f_theta alone", s["f_theta_mse"]) for s in res["sweep"]]
    for r, t, v in found:
        if not math.isfinite(v) or v > DIVERGED * zero:
            raise UserError(f"training diverged: model {r} has test MSE {v:.3g} on {t} (predicting 0 gives "
                            f"{zero:.3g}); lower --lr (now {args.lr:g}); nothing written")


def simulate(args):
    """Train every regime (and the sweep), evaluate, and return the results dict."""
    set_seed(args.seed)
    g_target, g_test, g_train = (torch.Generator().manual_seed(args.seed * 1000 + i) for i in range(3))
    target = Target(args.dim, args.hidden, args.f_scale, g_target)
    tests = make_test_set(target, args, g_test)

    models = {r: regime_probs(r, args.alpha) for r in TRAIN_REGIMES}
    models.update({f"sweep:{f:g}": regime_probs(f"sweep:{f:g}", args.alpha) for f in args.sweep_fracs})
    t0 = time.time()
    trained = train(models, target, args, g_train)
    train_s = time.time() - t0

    evals = {name: {kind: evaluate(p, t) for kind, t in tests.items()} for name, p in trained.items()}
    iwl_only = lambda p: (tests["random"]["x"] @ p["theta"] + p["theta0"] - tests["random"]["y"]).pow(2).mean().item()
    res = {
        "mse": {r: {t: evals[r][t]["mse"] for t in TEST_CONTEXTS} for r in TRAIN_REGIMES},
        "params": {r: {key: trained[r][key].item() for key in "wbc"} for r in TRAIN_REGIMES},
        "attention": {r: {t: evals[r][t]["attention"] for t in TEST_CONTEXTS} for r in TRAIN_REGIMES},
        # ---- extra keys (not part of the output contract)
        "extra_tests": {"mse": {r: {t: evals[r][t]["mse"] for t in EXTRA_TESTS} for r in TRAIN_REGIMES},
                        "attention": {r: {t: evals[r][t]["attention"] for t in EXTRA_TESTS} for r in TRAIN_REGIMES}},
        "derived": {r: {"threshold": threshold(trained[r]),            # -b/w
                        "f_theta_mse": iwl_only(trained[r])}             # the in-weights estimator alone
                    for r in TRAIN_REGIMES},
        "baselines": baselines(tests, target, args, g_test),
        "sweep": [{"p_random": f, **{key: trained[f"sweep:{f:g}"][key].item() for key in "wbc"},
                   "threshold": threshold(trained[f"sweep:{f:g}"]),
                   "f_theta_mse": iwl_only(trained[f"sweep:{f:g}"]),
                   "mse": {t: evals[f"sweep:{f:g}"][t]["mse"] for t in TEST_CONTEXTS + EXTRA_TESTS}}
                  for f in args.sweep_fracs],
        "similarity_reference": similarity_reference(tests, args),
        "config": {k: v for k, v in vars(args).items() if k != "sweep_fracs"},
        "train_seconds": round(train_s, 2),
    }
    return res


# ----------------------------------------------------------------------------- reporting
def fmt(v, nd=3):
    return "—" if v is None else f"{v:.{nd}f}"


def render_md(res):
    cols = TEST_CONTEXTS + EXTRA_TESTS
    L = ["# Minimal model (paper §3): test MSE by training regime × test context", "",
         "Rows: training regime; columns: test context (`mean` = mean of the three test contexts of the paper; "
         "`one_mid` = one example at a medium angle + k−1 random, an extra probe). Lower is better; "
         "**bold** = best in column.", "",
         "| train \\ test | " + " | ".join(cols) + " | mean |", "|---" * (len(cols) + 2) + "|"]
    table = {r: {**res["mse"][r], **res["extra_tests"]["mse"][r]} for r in TRAIN_REGIMES}
    for r in TRAIN_REGIMES:
        table[r]["mean"] = float(np.mean([res["mse"][r][t] for t in TEST_CONTEXTS]))
    best = {c: min(table[r][c] for r in TRAIN_REGIMES) for c in cols + ["mean"]}
    for r in TRAIN_REGIMES:
        cells = [f"**{table[r][c]:.3f}**" if table[r][c] == best[c] else f"{table[r][c]:.3f}" for c in cols + ["mean"]]
        L.append(f"| {r} | " + " | ".join(cells) + " |")
    base = res["baselines"]
    for name, label in [("iwl_best_linear", "ref: best linear f_θ alone"), ("copy_nearest", "ref: copy nearest label"),
                        ("average_context", "ref: average context labels")]:
        vals = [base[c][name] for c in cols]
        L.append(f"| *{label}* | " + " | ".join(f"*{v:.3f}*" for v in vals) + f" | *{np.mean(vals[:3]):.3f}* |")
    L += ["", "## Learned parameters", "",
          "threshold = −b/w: a context example gets more attention than the query itself when ⟨x_i, x⟩ > −b/w. "
          "f_θ MSE = the in-weights estimator alone on test queries.", "",
          "| train regime | w | b | c | −b/w | f_θ MSE |", "|---|---|---|---|---|---|"]
    for r in TRAIN_REGIMES:
        p, d = res["params"][r], res["derived"][r]
        L.append(f"| {r} | {p['w']:.2f} | {p['b']:.2f} | {p['c']:.2f} | {fmt(d['threshold'])} | "
                 f"{d['f_theta_mse']:.3f} |")
    L += ["", "## Attention mass (context / EOC / self), mean over test queries", "",
          "| train \\ test | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in TRAIN_REGIMES:
        att = {**res["attention"][r], **res["extra_tests"]["attention"][r]}
        L.append(f"| {r} | " + " | ".join(
            f"{att[c]['context']:.2f} / {att[c]['eoc']:.2f} / {att[c]['self']:.2f}" for c in cols) + " |")
    ref = res["similarity_reference"]
    L += ["", f"For reference: a near example has ⟨x_i, x⟩ ≥ {ref['near_min']:.3f}; the closest of k random examples "
          f"has median {ref['random_closest_q50']:.3f} and 99th percentile {ref['random_closest_q99']:.3f}."]
    if res["sweep"]:
        L += ["", "## Sweep: share of random (vs one_near) training contexts", "",
              "| p_random | w | b | c | −b/w | f_θ MSE | " + " | ".join(cols) + " |", "|---" * (6 + len(cols)) + "|"]
        for s in res["sweep"]:
            L.append(f"| {s['p_random']:g} | {s['w']:.2f} | {s['b']:.2f} | {s['c']:.2f} | {fmt(s['threshold'])} | "
                     f"{s['f_theta_mse']:.3f} | " + " | ".join(f"{s['mse'][c]:.3f}" for c in cols) + " |")
    cfg = res["config"]
    L += ["", f"Config: d={cfg['dim']}, k={cfg['k']}, f* = {cfg['hidden']} tanh units × scale {cfg['f_scale']}, "
          f"near ≤ {cfg['near_deg']}°, one_mid {cfg['mid_deg_lo']}–{cfg['mid_deg_hi']}°, alpha={cfg['alpha']}, "
          f"steps={cfg['steps']}, batch={cfg['n_train']}, lr={cfg['lr']}, n_test={cfg['n_test']}, seed={cfg['seed']}.", ""]
    return "\n".join(L)


PARTS = {"context": "context examples", "eoc": "end of context (label mean)", "self": "query itself (f_θ)"}


def _plot_title(res, what):
    cfg = res["config"]
    return (f"Minimal model (paper §3): {what}\nd = {cfg['dim']}, k = {cfg['k']}, {cfg['steps']} steps, "
            f"{cfg['n_test']} test queries per context, seed {cfg['seed']}")


def plot(res, out_dir):
    """theory_sim.png (test MSE heat map + attention mass per training regime), then theory_sim_sweep.png."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = TEST_CONTEXTS + EXTRA_TESTS
    mse = np.array([[{**res["mse"][r], **res["extra_tests"]["mse"][r]}[c] for c in cols] for r in TRAIN_REGIMES])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5.6), gridspec_kw={"width_ratios": [1, 1.6]})
    im = ax1.imshow(np.log10(mse), cmap="viridis_r", aspect="auto")
    dark = np.log10(mse) > np.log10(mse).mean()            # viridis_r: high MSE is dark
    for i in range(mse.shape[0]):
        for j in range(mse.shape[1]):
            ax1.text(j, i, f"{mse[i, j]:.3f}", ha="center", va="center", color="w" if dark[i, j] else "k")
    ax1.set_xticks(range(len(cols)), cols)
    ax1.set_yticks(range(len(TRAIN_REGIMES)), TRAIN_REGIMES)
    ax1.set_xlabel("test context")
    ax1.set_ylabel("training regime")
    ax1.set_title("(a) test MSE (lower is better; printed values, colour log10)", fontsize=10)
    fig.colorbar(im, ax=ax1, fraction=0.046, label="log10 test MSE")

    width, colors = 0.8 / len(cols), {"context": "tab:orange", "eoc": "tab:green", "self": "tab:blue"}
    for j, c in enumerate(cols):
        xpos = np.arange(len(TRAIN_REGIMES)) + (j - (len(cols) - 1) / 2) * width
        bottom = np.zeros(len(TRAIN_REGIMES))
        for part in ("context", "eoc", "self"):
            vals = np.array([{**res["attention"][r], **res["extra_tests"]["attention"][r]}[c][part]
                             for r in TRAIN_REGIMES])
            ax2.bar(xpos, vals, width * 0.92, bottom=bottom, color=colors[part], edgecolor="k", linewidth=0.3,
                    label=PARTS[part] if j == 0 else None)
            bottom += vals
        for xp in xpos:
            ax2.text(xp, 1.01, SHORT[c], ha="center", va="bottom", fontsize=7)
    ax2.set_xticks(range(len(TRAIN_REGIMES)), TRAIN_REGIMES)
    ax2.set_ylim(0, 1.22)
    ax2.set_ylabel("mean attention mass (share of the softmax, 0–1)")
    ax2.set_title("(b) where the read-out attends, per training regime\nbars: test context "
                  + ", ".join(f"{SHORT[c]}={c}" for c in cols), fontsize=10)
    ax2.set_xlabel("training regime")
    ax2.legend(loc="upper right", fontsize=8, ncol=3, bbox_to_anchor=(1, 0.98))
    fig.suptitle(_plot_title(res, "test error and attention by training regime × test context"))
    fig.tight_layout()
    with atomic_path(os.path.join(out_dir, "theory_sim.png")) as tmp:
        fig.savefig(tmp, dpi=130, format="png")
    plt.close(fig)

    if res["sweep"]:
        _plot_sweep(res, out_dir, plt, cols)


def _plot_sweep(res, out_dir, plt, cols):
    """theory_sim_sweep.png: the learned parameters and the test MSE over the contrastive mixture sweep."""
    import matplotlib.ticker
    sw = res["sweep"]
    ps = [s["p_random"] for s in sw]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5.0))
    thr = np.array([np.nan if s["threshold"] is None else s["threshold"] for s in sw])
    lo, hi = -0.2, 1.2                                     # similarities live in [-1, 1]; w ~ 0 sends -b/w off-scale
    ax1.plot(ps, np.where((thr >= lo) & (thr <= hi), thr, np.nan), "o-", label="threshold −b/w")
    off = ~((thr >= lo) & (thr <= hi))
    ax1.plot(np.array(ps)[off], np.full(off.sum(), hi - 0.03), "^", c="tab:blue", mfc="none",
             label="off-scale (w ≈ 0)")
    ref = res["similarity_reference"]
    ax1.axhline(ref["near_min"], ls="--", c="gray", lw=0.8, label="lowest near similarity")
    ax1.axhline(ref["random_closest_q99"], ls=":", c="gray", lw=0.8, label="closest random example, 99th pct")
    ax1.set_ylim(lo, hi)
    ax1.set_xlabel("share of random contexts in training (rest one_near)")
    ax1.set_ylabel("learned threshold −b/w (similarity)")
    ax1b = ax1.twinx()
    ax1b.plot(ps, [s["w"] for s in sw], "s:", c="tab:red", label="w")
    ax1b.set_ylabel("w (logit per unit of similarity)", color="tab:red")
    h1, l1 = ax1.get_legend_handles_labels()
    h2, l2 = ax1b.get_legend_handles_labels()
    ax1.legend(h1 + h2, l1 + l2, loc="lower center", fontsize=7)
    ax1.set_title("(a) learned parameters", fontsize=10)
    for c in cols:
        ax2.plot(ps, [s["mse"][c] for s in sw], "o-", label=c)
    ax2.set_yscale("log")
    ax2.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax2.yaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(
        lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
    ax2.set_xlabel("share of random contexts in training (rest one_near)")
    ax2.set_ylabel("test MSE (log scale; lower is better)")
    ax2.legend(title="test context", fontsize=8, title_fontsize=8)
    ax2.grid(alpha=0.3, which="both")
    ax2.set_title("(b) test MSE per test context", fontsize=10)
    fig.suptitle(_plot_title(res, "sweep of the contrastive mixture (random vs one_near training contexts)"))
    fig.tight_layout()
    with atomic_path(os.path.join(out_dir, "theory_sim_sweep.png")) as tmp:
        fig.savefig(tmp, dpi=130, format="png")
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    check_args(args)
    print_config({k: v for k, v in vars(args).items() if k != "sweep_fracs"}, "theory_sim")
    common.check_output_path(args.out, is_dir=True)
    torch.set_num_threads(1)   # tiny tensors: one thread is fastest and never oversubscribes shared cores
    t0 = time.time()
    res = simulate(args)
    check_converged(res, args)  # diverged training publishes nothing
    os.makedirs(args.out, exist_ok=True)
    write_json_atomic(os.path.join(args.out, "results.json"), res)
    md = render_md(res)
    write_text_atomic(os.path.join(args.out, "results.md"), md)
    if not args.no_plot:
        plot(res, args.out)
    print(md)
    figs = "" if args.no_plot else ", theory_sim.png" + (", theory_sim_sweep.png" if res["sweep"] else "")
    print(f"wrote {args.out}/results.json, results.md{figs} in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    run_main(main)
