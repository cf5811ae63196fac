"""The synthetic track's report (sweep.py's counterpart of figure3.py): from the rows of a sweep
(sweep.jsonl), its per-input scores (runs/*.inputs.json) and the minimal model's grid it writes

    results.md                  the regimes, drift test, paired differences, the grid, the minimal model
    phase_<F,R,zeta>.png        phase diagram over (alpha, rho): transformer beside the minimal model
    transience.png              probe curves over training steps
    examples.md (--show N)      raw training sequences and predictions with per-chunk verdicts
"""
import os
from types import SimpleNamespace

import numpy as np

from . import scratch
from .. import stats
from . import data as synthetic
from ..common import atomic_path, check_meta, config_hash, read_json, read_jsonl, write_text_atomic
from ..regimes import KINDS, NEAR_KINDS
from .data import ACC_TYPES, take
from .runs import cell

PHASE = [("acc_random", "IWL: acceptance, random ctx", "% of chunks accepted"),      # all on 0–100
         ("icl", "ICL probe", "probe score (%)"), ("copy", "copy probe", "probe score (%)"),
         ("drift_paraphrase_drifted", "drift: paraphrase in ctx, drifted chunks", "% of drifted chunks accepted")]
COLS = [*(f"acc_{t}" for t in ACC_TYPES),
        "drift_copy_drifted", "drift_paraphrase_drifted", "drift_random_drifted", "drift_paraphrase_kept",
        "iwl", "icl", "copy"]                      # the metrics of the results.md tables, and their headers:
SHORT = ["zero", "rand", "sim", "r+near", "r+para", "drift copy", "drift para", "drift rand", "kept",
         "IWL", "ICL", "copy"]
PAIRED = ("acc_random", "acc_random+nearest", "acc_random+paraphrase", "acc_similar",
          "drift_paraphrase_drifted", "drift_copy_drifted", "icl")   # contrastive − each baseline, these metrics


def write_report(args, rows, per_input, runs, regime_cells, mm, cfg):
    """results.md, then the figures (none with --no-plot); returns the figures' file names."""
    md = render_md(args, rows, per_input, runs, regime_cells, mm, cfg)
    write_text_atomic(os.path.join(args.out, "results.md"), md)
    return [] if args.no_plot else plot(args, rows, regime_cells, mm)


# ============================================================================ results.md
def final_rows(rows):
    last = {}
    for r in rows:
        k = (r["cell"], r["seed"])
        if k not in last or r["step"] > last[k]["step"]:
            last[k] = r
    return list(last.values())


def verdict(d):
    if not d or d.get("ci") is None:
        return "—"
    lo, hi = d["ci"]
    return "contrastive higher" if lo > 0 else ("baseline higher" if hi < 0 else "not resolved")


def paired_scores(per_input, cell_a, cell_b, key_a, key_b, seeds):
    """Per-input scores of two (cell, metric) pairs matched by (seed, test input), with the input and
    seed of every pair (the clusters of the bootstrap): (a, b, input ids, seeds)."""
    a, b, inputs, seed_of = [], [], [], []
    for s in range(seeds):
        pa, pb = per_input.get(f"{cell_a}-s{s}"), per_input.get(f"{cell_b}-s{s}")
        if not pa or not pb:
            continue
        for j, (x, y) in enumerate(zip(pa[key_a], pb[key_b])):
            if x is not None and y is not None:
                a.append(x)
                b.append(y)
                inputs.append(j)
                seed_of.append(s)
    return a, b, inputs, seed_of


def render_md(args, rows, per_input, runs, regime_cells, mm, cfg):
    fin = final_rows(rows)
    L = _intro_md(args)
    if regime_cells:
        L += _regimes_md(fin, regime_cells)
        L += _drift_md(args, per_input, regime_cells)
        if "contrastive" in regime_cells:
            L += _paired_md(args, per_input, regime_cells)
    L += ["", "Reading guide: acceptance under random contexts measures in-weights learning of the task's fixed "
          "PFAs. The ICL probe on the task's own test inputs is confounded by it (a PFA accepts few strings, so the "
          "model's in-weights chunk often equals the paraphrase's); the drift test is the clean measure of using "
          "the context over the weights: only a model that reads the new rules off its context scores on drifted "
          "chunks, and `drift rand` is its random-context control.", ""]
    L += _grid_md(fin, runs)
    L += _minimal_md(mm)
    L += ["", f"Config hash {config_hash(cfg)}; rows in sweep.jsonl: {len(rows)}.", ""]
    return "\n".join(L)


def _intro_md(args):
    return ["# Synthetic track: from-scratch transformers on alignment", "",
            f"Model {args.layers} layers × width {args.width} × {args.heads} heads, {args.steps} Adam steps "
            f"(lr {args.lr:g}, batch {args.batch}), task seed {args.task_seed}, m = {args.align_m}, "
            f"ℓ = {args.align_len}, k = {args.k}, pool {args.n_train}, {args.n_test} test inputs (drift test: inputs "
            f"with ≥ 1 of the {args.drift} drifted symbols), {args.n_rule_sets} fresh rule sets. Scores: % of chunks "
            "accepted.", "",
            "Columns: acceptance under zero / random / similar / random+nearest / random+paraphrase contexts; "
            "drift = drifted chunks with an exact copy / a paraphrase / random examples (all under the new rules) in "
            "context, kept = undrifted chunks with a paraphrase in context; probes IWL / ICL / copy.", ""]


def _regimes_md(fin, regime_cells):
    L = ["## The five regimes (mean over seeds, final step)", "",
         "| regime | seeds | " + " | ".join(SHORT) + " |", "|---" * (len(COLS) + 2) + "|"]
    for reg, c in regime_cells.items():
        rs = [r for r in fin if r["cell"] == c]
        L.append(f"| {reg} | {len(rs)} | " + " | ".join(f"{np.mean([r[k] for r in rs]):.1f}" for k in COLS) + " |")
    L += ["", "Training contexts per kind (final counts of seed 0, sequences):", ""]
    for reg, c in regime_cells.items():
        rs = [r for r in fin if r["cell"] == c and r["seed"] == 0]
        if rs:
            L.append(f"- {reg}: " + ", ".join(f"{k} {v}" for k, v in rs[0]["counts"].items()))
    return L


def _drift_md(args, per_input, regime_cells):
    L = ["", "## Context over weights: drift test, relevant example vs random control (paired per input)", "",
         "Drifted chunks (only the context can tell their new PFA): score with an exact copy / a paraphrase "
         "of the target (made under the new rules) among k − 1 random examples, minus the score with k random "
         "examples under the new rules, on the same inputs. 95 % CI clustered by test input (all seeds).", "",
         "| regime | copy − random | paraphrase − random | kept chunks: paraphrase − random |", "|---|---|---|---|"]
    for reg, c in regime_cells.items():
        cells_ = []
        for k_a, k_b in (("drift_copy_drifted", "drift_random_drifted"),
                         ("drift_paraphrase_drifted", "drift_random_drifted"),
                         ("drift_paraphrase_kept", "drift_random_kept")):
            a, b, cl, _ = paired_scores(per_input, c, c, k_a, k_b, args.regime_seeds)
            cells_.append(stats.fmt(stats.paired_diff(a, b, cl)) if a else "—")
        L.append(f"| {reg} | " + " | ".join(cells_) + " |")
    return L


def _paired_md(args, per_input, regime_cells):
    L = ["", "## Paired differences: contrastive − each baseline", "",
         "Rows paired by (seed, test input); 95 % CIs by cluster bootstrap, clusters = test input "
         "(all seeds of an input drawn together) and, second, clusters = seed. "
         "Verdict on the input-clustered CI.", "",
         "| baseline | metric | diff [CI by input] | CI by seed | n | verdict |", "|---|---|---|---|---|---|"]
    con = regime_cells["contrastive"]
    for reg, c in regime_cells.items():
        if reg == "contrastive":
            continue
        for k in PAIRED:
            a, b, cl_in, cl_seed = paired_scores(per_input, con, c, k, k, args.regime_seeds)
            if not a:
                continue
            d = stats.paired_diff(a, b, cl_in)
            ds = stats.paired_diff(a, b, cl_seed)
            L.append(f"| {reg} | {k} | {stats.fmt(d)} | {stats.fmt(ds)} | {d['n']} | {verdict(d)} |")
    return L


def _grid_md(fin, runs):
    """The grid table; with a --counterfactuals axis (some gamma > 0) also a gamma column and the
    random+counterfactual scores edit-ok / cf-copy (a grid without one renders as before)."""
    grid = [r for r in fin if runs.get(f"{r['cell']}-s{r['seed']}", {}).get("grid")]
    with_g = any(r.get("gamma", 0) for r in grid)
    cols, short = COLS + (["edit_ok", "cf_copy"] if with_g else []), SHORT + (["edit-ok", "cf-copy"] if with_g else [])
    axes = ["F", "R"] + (["γ"] if with_g else []) + ["ζ", "α", "ρ"]
    L = ["", "## Contrastive grid (mean over seeds, final step)", "",
         "| " + " | ".join(axes) + " | seeds | " + " | ".join(short) + " |", "|---" * (len(cols) + len(axes) + 1) + "|"]
    grid_cells = sorted({(r["fresh_rules"], r["repeat"], r.get("gamma", 0), r["zero_frac"], r["alpha"], r["rho"],
                          r["cell"]) for r in grid})
    for F, R, g, z, a, rho, c in grid_cells:
        rs = [r for r in fin if r["cell"] == c]
        vals = [F, R] + ([g] if with_g else []) + [z, a, rho]
        L.append("| " + " | ".join(f"{v:g}" for v in vals) + f" | {len(rs)} | "
                 + " | ".join(f"{np.mean([r[k] for r in rs]):.1f}" for k in cols) + " |")
    return L


def _minimal_md(mm):
    L = ["", "## Minimal model (paper §3) over the same (α, ρ) grid", "",
         f"β = {mm['beta']}, {mm['steps']} steps; ρ = share of One-Near contexts whose near example is within 2° "
         "(a paraphrase) instead of within 15°. Test MSE (lower is better), learned threshold −b/w.", "",
         "| α | ρ | MSE random | MSE one_near | MSE similar | ctx attention (random) | −b/w |",
         "|---|---|---|---|---|---|---|"]
    for r in mm["rows"]:
        thr = "—" if r["threshold"] is None else f"{r['threshold']:.2f}"
        L.append(f"| {r['alpha']:g} | {r['rho']:g} | {r['mse']['random']:.3f} | {r['mse']['one_near']:.3f} | "
                 f"{r['mse']['similar']:.3f} | {r['attention_random']['context']:.2f} | {thr} |")
    return L


# ============================================================================ figures
def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot(args, rows, regime_cells, mm):
    """A phase diagram per (F, R, zeta) of the grid, then transience.png; returns the file names."""
    out = []
    fin = final_rows(rows)
    for F in args.fresh_list:
        for R in args.repeat_list:
            for z in args.zero_list:
                out.append(phase_diagram(args, fin, mm, F, R, z))
    transience(args, rows, regime_cells)
    return out + ["transience.png"]


def replot(folder):
    """Re-draw the figures of a finished sweep folder from what it keeps: sweep.jsonl (checked against its
    sidecar, which records the grid and the configuration) and minimal_model.json. Trains nothing, needs no
    runs/ (e.g. a folder committed without its per-run files) and writes only the PNGs; returns their names.
    The same figures sweep.py draws for that folder (with the default --transience-cells)."""
    path = os.path.join(folder, "sweep.jsonl")
    meta = check_meta(path, "sweep", required=True)
    rows = read_jsonl(path, "sweep rows", required=("cell", "seed", "step"))
    mm = read_json(os.path.join(folder, "minimal_model.json"), "minimal model")
    g, c = meta["grid"], meta["config"]
    args = SimpleNamespace(out=folder, alpha_list=g["alphas"], rho_list=g["rhos"], beta=g["beta"],
                           fresh_list=g["fresh_rules"], repeat_list=g["repeat"], zero_list=g["zero_frac"],
                           gamma_list=sorted({r.get("gamma", 0) for r in rows}), seeds=g["seeds"], steps=c["steps"],
                           n_eval_mid=c["n_eval_mid"], n_test=c["n_test"], transience_cells="regimes")
    return plot(args, rows, meta["regime_cells"], mm)


# the minimal model's panels: title, value, colour-bar label, scale group (panels of one group share one scale;
# a fixed (lo, hi) is the scale itself)
MM_PANELS = [("MSE, random ctx (IWL)", lambda r: r["mse"]["random"], "test MSE (lower is better)", "mse"),
             ("MSE, one_near ctx (ICL)", lambda r: r["mse"]["one_near"], "test MSE (lower is better)", "mse"),
             ("attention on random ctx (copy)", lambda r: r["attention_random"]["context"],
              "attention mass on the context (0–1)", (0.0, 1.0)),
             ("threshold −b/w", lambda r: np.nan if r["threshold"] is None else r["threshold"],
              "similarity ⟨x_i, x⟩ (cosine)", (0.0, 1.0))]


def phase_diagram(args, fin, mm, F, R, z):
    """phase_F<F>_R<R>_z<z>.png: the transformer's metrics (top, every panel on the fixed 0–100 % scale) beside
    the minimal model's (bottom; its two MSE panels share one scale from 0, attention and threshold 0–1)."""
    plt = _pyplot()
    A, Rh = args.alpha_list, args.rho_list
    fig, axes = plt.subplots(2, 4, figsize=(17, 8.2), layout="constrained")
    for j, (key, title, unit) in enumerate(PHASE):
        M = np.full((len(A), len(Rh)), np.nan)
        for ia, a in enumerate(A):
            for ir, r in enumerate(Rh):
                c = cell("contrastive", a, args.beta, r, R, z, F)["cell"]
                v = [x[key] for x in fin if x["cell"] == c and x["seed"] < args.seeds]  # same n per cell
                if v:
                    M[ia, ir] = np.mean(v)
        heat(axes[0, j], M, A, Rh, f"transformer: {title}", unit, (0.0, 100.0), "{:.1f}")
    mmr = {(r["alpha"], r["rho"]): r for r in mm["rows"]}
    mats = [np.array([[f(mmr[(a, r)]) if (a, r) in mmr else np.nan for r in Rh] for a in A], float)
            for _, f, _, _ in MM_PANELS]
    for j, ((title, _, unit, group), M) in enumerate(zip(MM_PANELS, mats)):
        if isinstance(group, tuple):
            lim = group
        else:   # one scale for the panels of this metric, from 0 to their largest value
            same = [m for m, p in zip(mats, MM_PANELS) if p[3] == group]
            lim = (0.0, float(np.nanmax([np.nanmax(m) if np.isfinite(m).any() else 0.0 for m in same])) or 1.0)
        heat(axes[1, j], M, A, Rh, f"minimal model: {title}", unit, lim, "{:.2f}" if group != "mse" else "{:.3f}")
    gammas = " (γ = 0 cells; γ > 0 in results.md)" if any(getattr(args, "gamma_list", [0])) else ""
    one = "a single (α, ρ) cell: the values, not a diagram" if len(A) * len(Rh) == 1 else "over (α, ρ)"
    fig.suptitle(f"Phase diagram {one}: β = {args.beta}, fresh rules F = {F:g}, repeat R = {R:g}, "
                 f"zero-frac = {z:g}{gammas}; {args.steps} steps, mean over {args.seeds} seed(s) per cell\n"
                 "top: transformer, final step (colour scale fixed at 0–100 % for every panel); bottom: the minimal "
                 "model (paper §3) on the same (α, ρ) grid (its two MSE panels share one scale)")
    name = f"phase_F{F:g}_R{R:g}_z{z:g}.png"
    with atomic_path(os.path.join(args.out, name)) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return name


TRANSIENCE = [("acc_random", "IWL: acceptance, random ctx", "% of chunks accepted"),
              ("iwl", "IWL probe", "probe score (%)"), ("icl", "ICL probe", "probe score (%)"),
              ("copy", "copy probe", "probe score (%)"),
              ("drift_copy_drifted", "drift: exact copy in ctx, drifted chunks", "% of drifted chunks accepted"),
              ("drift_paraphrase_drifted", "drift: paraphrase in ctx, drifted chunks", "% of drifted chunks accepted"),
              ("drift_random_drifted", "drift: random ctx, drifted chunks", "% of drifted chunks accepted"),
              ("drift_paraphrase_kept", "drift: paraphrase in ctx, kept chunks", "% of kept chunks accepted")]
MAX_CURVES = 10   # transience.png draws the grid cells beside the regimes when all of them fit


def transience_cells(args, rows, regime_cells):
    """The cells transience.png draws: --transience-cells, or ('regimes') the regime cells, then the grid's
    cells when regimes and grid together are at most MAX_CURVES (a small study's grid cell, e.g. the
    contrastive cell of emergence/, is what its text is about)."""
    present = list(dict.fromkeys(r["cell"] for r in rows))
    if args.transience_cells == "regimes":
        cells = list(regime_cells.values())
        grid = [c for c in present if c not in cells]
        if len(cells) + len(grid) <= MAX_CURVES:
            cells += grid
    else:
        cells = [c.strip() for c in args.transience_cells.split(",") if c.strip()]
    return [c for c in cells if c in present] or sorted(present)[:5]


def transience(args, rows, regime_cells):
    """transience.png: probe curves over steps (transience_cells): the mean over seeds as a line, their min–max
    as a band; every panel on 0–100 %."""
    plt = _pyplot()
    cells = transience_cells(args, rows, regime_cells)
    names = {c: reg for reg, c in regime_cells.items()}
    fig, axes = plt.subplots(2, 4, figsize=(19, 8.4), layout="constrained")
    colors = plt.get_cmap("tab10")
    for ax, (key, title, unit) in zip(axes.flat, TRANSIENCE):
        for i, c in enumerate(cells):
            steps = sorted({r["step"] for r in rows if r["cell"] == c and r.get(key) is not None})
            per = [[r[key] for r in rows if r["cell"] == c and r["step"] == s and r.get(key) is not None]
                   for s in steps]
            n_seeds = max((len(v) for v in per), default=0)
            ax.plot(steps, [np.mean(v) for v in per], "o-", ms=3, color=colors(i % 10),
                    label=(f"{names[c]}: {c}" if c in names else c) + f" ({n_seeds} seed{'s' * (n_seeds > 1)})")
            if n_seeds > 1:
                ax.fill_between(steps, [min(v) for v in per], [max(v) for v in per], color=colors(i % 10),
                                alpha=0.15 if len(cells) <= 5 else 0.07, lw=0)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylabel(unit)
        ax.set_ylim(0, 101)
        ax.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(3, len(labels)), fontsize=8)
    fig.suptitle("Probe curves over training: line = mean over seeds, band = min–max over seeds; y axes 0–100 %\n"
                 f"(intermediate steps on the first {args.n_eval_mid} test inputs, the last step on {args.n_test})")
    with atomic_path(os.path.join(args.out, "transience.png")) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def heat(ax, M, A, Rh, title, unit, lim=None, fmt="{:.2f}"):
    """One (α, ρ) heat map: colour scale `lim` (lo, hi) when given (shared with the panels of the same metric),
    each cell's value printed in a colour that reads on it, the colour bar labelled with `unit`."""
    lo, hi = lim if lim is not None else (np.nanmin(M), np.nanmax(M))
    im = ax.imshow(M, cmap="viridis", aspect="auto", origin="lower", vmin=lo, vmax=hi)
    for i in range(M.shape[0]):
        for j in range(M.shape[1]):
            if np.isfinite(M[i, j]):
                r, g, b, _ = im.cmap(im.norm(M[i, j]))
                ax.text(j, i, fmt.format(M[i, j]), ha="center", va="center", fontsize=9,
                        color="k" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "w")
    ax.set_xticks(range(len(Rh)), [f"{r:g}" for r in Rh])
    ax.set_yticks(range(len(A)), [f"{a:g}" for a in A])
    ax.set_xlabel("ρ (paraphrase share of near examples)")
    ax.set_ylabel("α (share of Random contexts)")
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, label=unit)


# ============================================================================ examples.md (sweep.py --show)
def write_examples(args, cfg_hash, data, full, regimes):
    """examples.md of a finished sweep: regimes = {name: synthetic_runs.run_examples(...)}; returns its path."""
    n = args.show
    el = synthetic.eval_leak_stats(data, full)
    header = [f"Sweep `{args.out}` (config {cfg_hash}): {args.layers} layers × width {args.width}, {args.steps} "
              f"steps; seed 0 of each regime (or grid cell), its final checkpoint; the first {n} sequences of its seeded training "
              f"stream (step 1 onwards) and the first {n} drift-test / test inputs of the evaluation sets "
              f"(--eval-seed {args.eval_seed}). Greedy decoding over letters, as in the sweep's evaluation.", "",
              "Leak check over all evaluation inputs: " + "; ".join(
                  f"{k}: {v['inputs']} inputs, paraphrase input = target input in {v['same_x']}, paraphrase label "
                  f"string = target label string in {v['same_y']}" for k, v in el.items()) + ".", ""]
    md = examples_markdown(data, full, n, regimes, header=header)
    path = os.path.join(args.out, "examples.md")
    write_text_atomic(path, md)
    return path


def examples_markdown(data, sets, n, regimes, header=()):
    """Markdown with raw training sequences and predictions. sets: the FULL evaluation sets;
    regimes: {name: {"run": id, "train": (rows, info), "preds": {set: [n, m*l] letter ids},
    "stored": per-input scores of the run or None}}."""
    pi_txt = ", ".join(f"chunk {t + 1} ↔ input symbol {data.pi[t] + 1}" for t in range(data.m))
    L = ["# Raw examples: training sequences and predictions", "", *header,
         f"Notation: an example `ABC:ab cd ef` = input symbols : label letters in chunks of ℓ = {data.l} (output "
         f"order; the alignment π: {pi_txt}). Verdict per chunk (listed by INPUT symbol): ✓ / ✗ = accepted or not "
         "by that symbol's PFA under the set's rules (the drift test: the NEW rules); `=ref` = equals the reference "
         "chunk; `old✓` = also accepted by the task's OLD PFA; `=ctxE` = equals the chunk that context example E "
         "gives the same symbol (a copy from the context). `*` marks the near example.", ""]
    L += _training_examples(data, n, regimes)
    drift_sets = tuple(take(sets[s], n) for s in ("drift_copy", "drift_paraphrase", "drift_random"))
    L += _drift_examples(data, regimes, *drift_sets)
    rs = take(sets["random"], n)
    L += _random_examples(data, regimes, rs)
    cs = take(sets["random+counterfactual"], n)
    L += _counterfactual_examples(data, regimes, cs)
    L += _examples_summary(data, regimes, rs, drift_sets, cs)
    L.append("")
    return "\n".join(L)


def _training_examples(data, n, regimes):
    """(a) the first n training sequences of each regime's run, with the leak check of its stream."""
    m, k, E = data.m, data.k, data.ex_len
    L = ["## (a) Training sequences (the first of each run's seeded training stream, as the model sees them)", ""]
    for name, r in regimes.items():
        rows, info = r["train"]
        L += [f"### {name} — `{r['run']}`", ""]
        st = r.get("leaks")
        if st:
            L += [f"Leak check over the first {st['rows']} training sequences of this stream: "
                  f"{st['paraphrase']} near paraphrases, {st['para_same_x']} with the target's input, "
                  f"{st['para_same_y']} with the target's label string; {st['identical_in_non_copy']} non-copy "
                  f"sequences hold an example identical to the target; {st['pool_near']} pool near examples, "
                  f"{st['pool_near_permutation']} of them a permutation of the target input.", ""]
        L.append("```")
        for i in range(min(n, len(rows))):
            kind = KINDS[info["kind"][i]]
            nk = info["near_kind"][i]
            rule = int(info["rule"][i])
            head = f"#{i + 1} context={kind}"
            if nk >= 0:
                head += f" near={NEAR_KINDS[nk]}@{info['position'][i] + 1}"
            head += f" fresh_rules={'yes (rule set ' + str(rule - 1) + ')' if rule else 'no'}"
            L.append(head)
            row = rows[i]
            for e in range(k):
                mark = "*" if nk >= 0 and e == info["position"][i] else " "
                L.append(f"{mark} {e + 1}  {_tok_text(data, row[e * E:(e + 1) * E])}")
            q = row[k * E:]
            L.append(f"  Q  {_sym(q[:m] - scratch.SYM0)}:  → target "
                     f"{_chunks_text(data, scratch.decode_letters(q[m + 1:]))}")
        L += ["```", ""]
    return L


def _drift_examples(data, regimes, dc, dp, dr):
    """(b) the drift test's first inputs: contexts, reference, old gold, each regime's predictions."""
    old_c = data.test_c[dc["ids"]]
    L = ["## (b) Drift test: drifted symbols have NEW PFAs; the reference and every context example follow them",
         "", "Contexts: `random` = the k examples shown (all relabelled under the new rules); `copy` / `paraphrase` "
         "= the same with example `*` replaced by the exact target / a paraphrase (symbols reordered, chunks move "
         "with their symbol). `old gold` = the input's label under the task's old PFAs (what in-weights learning "
         "predicts).", ""]
    for i in range(len(dc["x"])):
        x = dc["x"][i]
        drifted = [scratch.SYMBOLS[v] for v, d in zip(x, dc["drifted"][i]) if d]
        p = dc["position"][i]
        L += [f"### drift input {i + 1} (test #{int(dc['ids'][i])}): `{_sym(x)}`, drifted: {', '.join(drifted)}", "",
              "```", *_ctx_lines(data, dr, i, near=p),
              f"  * in copy ctx:       {_sym(dc['ctx_x'][i, p])}:{_label_text(data, dc['ctx_c'][i, p])}",
              f"  * in paraphrase ctx: {_sym(dp['ctx_x'][i, p])}:{_label_text(data, dp['ctx_c'][i, p])}",
              f"  Q  {_sym(x)}:  reference {_label_text(data, dc['c'][i])}"
              f"   old gold {_label_text(data, old_c[i])}", "```", "",
              "| regime | context | prediction | " + " | ".join(
                  f"{scratch.SYMBOLS[v]} ({'drifted' if d else 'kept'})" for v, d in zip(x, dc["drifted"][i])) + " |",
              "|---" * (3 + data.m) + "|"]
        for name, r in regimes.items():
            for ctxn, s in (("copy", dc), ("paraphrase", dp), ("random", dr)):
                pred = r["preds"][f"drift_{ctxn}"][i]
                tags = _chunk_tags(data, s, i, _pred_chunks(data, pred))
                L.append(f"| {name} | {ctxn} | `{_chunks_text(data, _letters(pred))}` | "
                         + " | ".join(_tag_text(t) for t in tags) + " |")
        L.append("")
    return L


def _random_examples(data, regimes, rs):
    """(c) the first test inputs with random contexts (the task's rules): each regime's predictions."""
    L = ["## (c) Random-context test predictions (task rules; IWL)", "",
         "`=zero` after the prediction: identical to the same model's prediction with no context.", ""]
    for i in range(len(rs["x"])):
        x = rs["x"][i]
        L += [f"### test input {i + 1}: `{_sym(x)}`", "", "```", *_ctx_lines(data, rs, i),
              f"  Q  {_sym(x)}:  reference {_label_text(data, rs['c'][i])}", "```", "",
              "| regime | prediction | " + " | ".join(scratch.SYMBOLS[v] for v in x) + " |",
              "|---" * (2 + data.m) + "|"]
        for name, r in regimes.items():
            pred = r["preds"]["random"][i]
            tags = _chunk_tags(data, rs, i, _pred_chunks(data, pred))
            same0 = " =zero" if (pred == r["preds"]["zero"][i]).all() else ""
            L.append(f"| {name} | `{_chunks_text(data, _letters(pred))}`{same0} | "
                     + " | ".join(_tag_text(t, old=False) for t in tags) + " |")
        L.append("")
    return L


def _counterfactual_examples(data, regimes, cs):
    """(d) the first random+counterfactual inputs: the near example differs from x in one symbol."""
    L = ["## (d) Random+counterfactual test predictions (relevance vs copying; task rules)", "",
         "Context example `*` is the counterfactual (x~, y~): x~ differs from the query x in ONE symbol (`edit`), "
         "its chunks follow the task's rules. edit-ok = the prediction's chunk for x's edited symbol is accepted; "
         "cf-copy = that chunk equals the one y~ gives x~'s symbol there (what a copier of the near label writes).",
         ""]
    count = {name: [0, 0] for name in regimes}
    for i in range(len(cs["x"])):
        x, p, j = cs["x"][i], cs["position"][i], cs["edit_pos"][i]
        L += [f"### counterfactual input {i + 1}: `{_sym(x)}`, edit: {scratch.SYMBOLS[x[j]]} → "
              f"{scratch.SYMBOLS[cs['ctx_x'][i, p, j]]} in `*`", "", "```", *_ctx_lines(data, cs, i, near=p),
              f"  Q  {_sym(x)}:  reference {_label_text(data, cs['c'][i])}", "```", "",
              "| regime | prediction | " + " | ".join(scratch.SYMBOLS[v] + (" (edit)" if jj == j else "")
                                                    for jj, v in enumerate(x)) + " | edit-ok | cf-copy |",
              "|---" * (4 + data.m) + "|"]
        for name, r in regimes.items():
            pred = r["preds"]["random+counterfactual"][i]
            pc = _pred_chunks(data, pred)
            tags = _chunk_tags(data, cs, i, pc)
            ok, cp = tags[j]["ok"], bool((pc[j] == cs["cf_c"][i, j]).all())
            count[name][0] += ok
            count[name][1] += cp
            L.append(f"| {name} | `{_chunks_text(data, _letters(pred))}` | "
                     + " | ".join(_tag_text(t, old=False) for t in tags) + f" | {'yes' if ok else 'no'} | "
                     f"{'yes' if cp else 'no'} |")
        L.append("")
    n = len(cs["x"])
    L += ["Over these inputs: " + "; ".join(f"{name} edit-ok {a}/{n}, cf-copy {b}/{n}"
                                            for name, (a, b) in count.items()) + ".", ""]
    return L


def _examples_summary(data, regimes, rs, drift_sets, cs):
    """Per regime, counts over the shown inputs, and the check against the run's stored scores."""
    L = ["## Summary over the shown inputs", "",
         "| regime | drifted chunks ✓ (copy / para / random ctx) | drifted chunks old✓ only (para ctx) | "
         "drifted chunks copied from ctx (para ctx) | random ctx ✓ | random ctx =zero | matches stored scores |",
         "|---|---|---|---|---|---|---|"]
    for name, r in regimes.items():
        cnt = {}
        for ctxn, s in zip(("copy", "paraphrase", "random"), drift_sets):
            okd = oldonly = cp = nd = 0
            for i in range(len(s["x"])):
                for t in _chunk_tags(data, s, i, _pred_chunks(data, r["preds"][f"drift_{ctxn}"][i])):
                    if t["drifted"]:
                        nd += 1
                        okd += t["ok"]
                        oldonly += t["old_ok"] and not t["ok"]
                        cp += bool(t["ctx"])
            cnt[ctxn] = (okd, oldonly, cp, nd)
        rok = np.mean([t["ok"] for i in range(len(rs["x"]))
                       for t in _chunk_tags(data, rs, i, _pred_chunks(data, r["preds"]["random"][i]))])
        same0 = (r["preds"]["random"] == r["preds"]["zero"]).all(1).mean()
        L.append(f"| {name} | " + " / ".join(f"{cnt[c][0]}/{cnt[c][3]}" for c in ("copy", "paraphrase", "random"))
                 + f" | {cnt['paraphrase'][1]}/{cnt['paraphrase'][3]} | {cnt['paraphrase'][2]}/{cnt['paraphrase'][3]}"
                 f" | {100 * rok:.0f} % | {100 * same0:.0f} % | {stored_match(data, r, rs, drift_sets, cs)} |")
    return L


def stored_match(data, r, rs, drift_sets, cs):
    """Recomputed per-input scores of the shown inputs vs the run's stored per-input scores (random
    contexts, drifted chunks, and edit-ok of random+counterfactual where the run stored it)."""
    st = r.get("stored")
    if not st:
        return "—"
    bad = tot = 0
    ok = data.chunk_ok(rs, r["preds"]["random"])
    for i, v in enumerate(100.0 * ok.mean(-1)):
        tot += 1
        bad += abs(v - st["acc_random"][i]) > 1e-2
    for ctxn, s in zip(("copy", "paraphrase", "random"), drift_sets):
        ok = data.chunk_ok(s, r["preds"][f"drift_{ctxn}"])
        for i in range(len(s["x"])):
            d = s["drifted"][i]
            if d.any():
                tot += 1
                bad += abs(100.0 * (ok[i] & d).sum() / d.sum() - st[f"drift_{ctxn}_drifted"][i]) > 1e-2
    if "edit_ok" in st:  # sweeps before the counterfactual set did not store it
        ok = data.chunk_ok(cs, r["preds"]["random+counterfactual"])
        for i in range(len(cs["x"])):
            tot += 1
            bad += abs(100.0 * ok[i, cs["edit_pos"][i]] - st["edit_ok"][i]) > 1e-2
    return f"{tot - bad}/{tot}"


def _tok_text(data, seg):
    """One example's tokens -> 'ABC:ab cd ef' (chunks in output order) or '<pad>'."""
    if seg[0] == scratch.PAD:
        return "<pad>"
    x = "".join(scratch.SYMBOLS[t - scratch.SYM0] for t in seg[:data.m])
    y = scratch.decode_letters(seg[data.m + 1:data.m + 1 + data.n_target])
    return f"{x}:{_chunks_text(data, y)}"


def _chunks_text(data, y):
    return " ".join(y[i:i + data.l] for i in range(0, len(y), data.l))


def _label_text(data, c):
    """Chunks c [m, l] (by input position) -> their label in output order, 'ab cd ef'."""
    return _chunks_text(data, _letters(data.label(c)))


def _letters(ids):
    return "".join(scratch.LETTERS[i] if 0 <= i < 26 else "?" for i in np.asarray(ids).ravel())


def _sym(x):
    return "".join(scratch.SYMBOLS[i] for i in np.asarray(x).ravel())


def _chunk_tags(data, s, i, pc_row, ctx_idx=None):
    """Per input position j of test row i: (symbol, predicted chunk, accepted under the set's rules,
    accepted under the task's (old) rules, equals reference, context examples giving the same chunk
    for the same symbol)."""
    out = []
    x, ref = s["x"][i], s["c"][i]
    acc_new = data.tables.accepts(np.full(data.m, s["rule"]), x, pc_row)
    acc_old = data.tables.accepts(np.zeros(data.m, np.int64), x, pc_row)
    for j in range(data.m):
        ctx = [e + 1 for e in range(data.k) if s["ctx_x"][i, e, 0] >= 0
               for jj in range(data.m) if s["ctx_x"][i, e, jj] == x[j] and (s["ctx_c"][i, e, jj] == pc_row[j]).all()]
        out.append(dict(sym=scratch.SYMBOLS[x[j]], chunk=_letters(pc_row[j]), ok=bool(acc_new[j]),
                        old_ok=bool(acc_old[j]), ref=bool((pc_row[j] == ref[j]).all()), ctx=ctx,
                        drifted=None if "drifted" not in s else bool(s["drifted"][i, j])))
    return out


def _tag_text(t, old=True):
    txt = f"{t['chunk']} {'✓' if t['ok'] else '✗'}"
    if t["ref"]:
        txt += " =ref"
    if old and t["old_ok"]:
        txt += " old✓"
    if t["ctx"]:
        txt += " =ctx" + ",".join(map(str, t["ctx"]))
    return txt


def _ctx_lines(data, s, i, near=None):
    L = []
    for e in range(data.k):
        if s["ctx_x"][i, e, 0] < 0:
            L.append(f"  {e + 1}  <pad>")
            continue
        y = _letters(data.label(s["ctx_c"][i, e]))
        L.append(f"{'*' if near == e else ' '} {e + 1}  {_sym(s['ctx_x'][i, e])}:{_chunks_text(data, y)}")
    return L


def _pred_chunks(data, pred_row):
    """Prediction [m*l] letter ids (output order) -> chunks [m, l] by input position."""
    return pred_row.reshape(data.m, data.l)[data.pi_inv]
