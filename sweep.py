"""Synthetic track: small decoders trained FROM SCRATCH on the alignment task, over a grid of
training distributions, as batched ensembles (scratch.py), with the minimal model beside them.

    python sweep.py --out results/synthetic/default --jobs 2               # the default sweep (timings: BENCHMARKS.md)
    python sweep.py --out /tmp/smoke --budget smoke                 # < 60 s
    python sweep.py --out runs/long --budget long --jobs 2          # emergence / transience study
    python sweep.py --out results/synthetic/default --jobs 2 --show 20      # a finished sweep: examples.md, no training

Cells. (a) the contrastive grid: alpha (--alphas) x rho (--rhos) x --fresh-rules x --repeat x
--zero-frac, beta fixed (--beta), --seeds seeds each; (b) the five regimes (zero, random, similar,
random+similar at --rs-alpha, contrastive at the paper's alpha 0.3, beta, rho 0.5) at
--regime-seeds seeds, with the first --fresh-rules / --repeat / --zero-frac value. A run is
(cell, seed); a regime cell equal to a grid cell is the same run. Model init depends on the seed
only (paired runs share it); the data stream on (cell, seed).

Per run, at each evaluation step (--eval-every; the final step on all --n-test inputs, earlier
ones on the first --n-eval-mid): chunk acceptance (%) under zero / random / similar /
random+nearest / random+paraphrase contexts, the drift test (D symbols with new PFAs at test
time; contexts made under the new rules with an exact copy / a paraphrase / random examples;
drifted and kept chunks scored separately), and the probes IWL / ICL / copy adapted to
alignment (see synthetic.score_predictions). Training-context counts per kind are kept.

Outputs in --out: sweep.jsonl (+ .meta.json; one row per cell x seed x step, sorted),
runs/<run>.jsonl + runs/<run>.inputs.json (per-input final scores, for paired differences),
ckpt/<group>.pt (latest checkpoint of each ensemble: interrupted groups resume from it),
minimal_model.json, phase_<F,R,zeta>.png (phase diagram + minimal model side by side),
transience.png (probe curves over steps), results.md. Resumable: finished runs are skipped.
--out must be missing, empty or a sweep folder (its cc_output.json, or for a sweep made before those
markers its sidecars); it is locked (.cc_lock) while sweep.py runs.
--show N (same flags as the finished sweep) writes only examples.md: N raw training sequences of seed 0
of each regime (its own seeded stream) and N drift / random-context predictions with per-chunk verdicts.
"""
import argparse
import hashlib
import math
import os
import time

import numpy as np
import torch

from contrastive_context import minimal_model
from contrastive_context import scratch
from contrastive_context import stats
from contrastive_context import synthetic
from contrastive_context import tasks
from contrastive_context.common import claim_output_dir, read_meta  # output folder: ownership marker, lock
from contrastive_context.common import SEED  # noqa: E402  (the --seed type of every script: an integer in [0, 2**32-1])
from contrastive_context.common import (UserError, atomic_path, check_meta, config_hash, is_complete, print_config, progress,
                    read_json, read_jsonl, run_main, write_json_atomic, write_jsonl_atomic, write_text_atomic)

REGIMES = ("zero", "random", "similar", "random+similar", "contrastive")
BUDGETS = {   # what --budget sets (explicit flags win)
    "smoke": dict(alphas="0.3,0.7", rhos="0,1", seeds=1, regime_seeds=1, steps=40, eval_every=20, layers=1,
                  width=32, heads=2, n_train=3000, n_test=60, n_eval_mid=30, n_rule_sets=8, mm_steps=100,
                  mm_n_test=300),
    "default": dict(alphas="0.1,0.3,0.5,0.7", rhos="0,0.5,1", seeds=3, regime_seeds=5, steps=1200,
                    eval_every=400, layers=2, width=64, heads=2, n_train=20000, n_test=600, n_eval_mid=200,
                    n_rule_sets=200, mm_steps=1500, mm_n_test=2000),
    "long": dict(alphas="0.1,0.3,0.5,0.7", rhos="0,0.5,1", seeds=3, regime_seeds=5, steps=8000,
                 eval_every=500, layers=2, width=64, heads=2, n_train=50000, n_test=600, n_eval_mid=300,
                 n_rule_sets=200, mm_steps=3000, mm_n_test=4000),
}
METRICS = ("acc_zero", "acc_random", "acc_similar", "acc_random+nearest", "acc_random+paraphrase",
           "drift_random_drifted", "drift_random_kept", "drift_copy_drifted", "drift_copy_kept",
           "drift_paraphrase_drifted", "drift_paraphrase_kept", "iwl", "icl", "copy",
           # relevance vs copying (issue 21): the counterfactual context type, and the drift test's drifted
           # chunks split by whether their symbol appears in a context example (per-symbol ICL possible)
           "acc_random+counterfactual", "edit_ok", "cf_copy", "drift_random_drifted_shown",
           "drift_random_drifted_unseen")
PHASE = [("acc_random", "IWL: acceptance, random ctx"), ("icl", "ICL probe"), ("copy", "copy probe"),
         ("drift_paraphrase_drifted", "drift: paraphrase in ctx, drifted chunks")]


def _bud(key):
    """Help text: a default that comes from --budget."""
    return " (default per --budget: " + ", ".join(f"{b} {v[key]}" for b, v in BUDGETS.items()) + ")"


class Parser(argparse.ArgumentParser):
    def error(self, message):               # bad flag values: ONE `error:` line, exit 2
        raise UserError(message)


def build_parser():
    """sweep.py's flags: each with its help and its default (fixed, or per --budget)."""
    p = Parser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
               epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--budget", default="default", choices=list(BUDGETS), help="preset sizes (flags below override; "
                   "default %(default)s)")
    g = p.add_argument_group("grid")
    g.add_argument("--alphas", help="comma-separated shares of Random contexts (alpha)" + _bud("alphas"))
    g.add_argument("--rhos", help="comma-separated paraphrase shares rho of the One-Near near example" + _bud("rhos"))
    g.add_argument("--beta", type=float, default=0.2, help="share of Similar contexts in the contrastive grid "
                   "(default %(default)s)")
    g.add_argument("--fresh-rules", default="0.3", help="comma-separated rule-diversity shares F (default %(default)s)")
    g.add_argument("--repeat", default="0", help="comma-separated exact-copy shares R of the near example "
                   "(default %(default)s)")
    g.add_argument("--counterfactual", default="0", help="comma-separated shares gamma of counterfactual near "
                   "examples (one symbol swapped, its chunk under the sequence's rules; regimes.near_probs; "
                   "default %(default)s)")
    g.add_argument("--zero-frac", default="0", help="comma-separated zero-context shares (out of alpha; "
                   "default %(default)s)")
    g.add_argument("--rs-alpha", type=float, default=0.5, help="alpha of the random+similar regime "
                   "(default %(default)s)")
    g.add_argument("--regimes", default=",".join(REGIMES), help="regimes trained beside the grid ('none': grid "
                   "only; default %(default)s)")
    g.add_argument("--seeds", type=int, help="seeds per grid cell" + _bud("seeds"))
    g.add_argument("--regime-seeds", type=int, help="seeds per regime cell" + _bud("regime_seeds"))
    m = p.add_argument_group("model and training")
    m.add_argument("--layers", type=int, help="transformer blocks of each model" + _bud("layers"))
    m.add_argument("--width", type=int, help="model width (MLP 4x)" + _bud("width"))
    m.add_argument("--heads", type=int, help="attention heads (must divide --width)" + _bud("heads"))
    m.add_argument("--steps", "--max-steps", dest="steps", type=int,
                   help="Adam steps per run (--max-steps: the same, train.py's name)" + _bud("steps"))
    m.add_argument("--batch", "--batch-size", dest="batch", type=int, default=32,
                   help="training sequences per Adam step of each run (--batch-size: the same, train.py's name; "
                        "default %(default)s)")
    m.add_argument("--lr", type=float, default=1e-3, help="Adam lr (linear warm-up, then constant; "
                   "default %(default)s)")
    m.add_argument("--warmup", "--warmup-steps", dest="warmup", type=int, default=100,
                   help="linear warm-up steps (--warmup-steps: the same, train.py's name; default %(default)s)")
    m.add_argument("--eval-every", type=int, help="evaluate every N steps (and at the last step)" + _bud("eval_every"))
    m.add_argument("--jobs", type=int, default=1, help="worker processes (1 thread each; default %(default)s)")
    m.add_argument("--group-size", type=int, default=0, help="runs per ensemble (0: spread evenly over --jobs; "
                   "default %(default)s)")
    t = p.add_argument_group("task and evaluation")
    t.add_argument("--task-seed", type=SEED, default=2, help="seed of the alignment task's automata (PFAs), "
                   "alignment and data, an integer in [0, 2**32-1] (default %(default)s)")
    t.add_argument("--align-m", type=int, default=3, help="input symbols per instance (default %(default)s)")
    t.add_argument("--align-len", type=int, default=2, help="output letters per symbol (default %(default)s)")
    t.add_argument("--k", type=int, default=4, help="context examples (default %(default)s)")
    t.add_argument("--n-train", type=int, help="pool size" + _bud("n_train"))
    t.add_argument("--n-test", type=int, help="test inputs (final evaluation)" + _bud("n_test"))
    t.add_argument("--n-eval-mid", type=int, help="test inputs at intermediate evaluations" + _bud("n_eval_mid"))
    t.add_argument("--n-rule-sets", type=int, help="alternative PFA tables for --fresh-rules" + _bud("n_rule_sets"))
    t.add_argument("--drift", type=int, default=12, help="symbols with new PFAs in the drift test "
                   "(default %(default)s)")
    t.add_argument("--eval-seed", type=SEED, default=0, help="seed of the test inputs and evaluation contexts, an "
                   "integer in [0, 2**32-1] (default %(default)s)")
    t.add_argument("--mm-steps", type=int, help="minimal-model steps" + _bud("mm_steps"))
    t.add_argument("--mm-n-test", type=int, help="minimal-model test queries" + _bud("mm_n_test"))
    t.add_argument("--transience-cells", default="regimes",
                   help="cells drawn in transience.png: 'regimes' or comma-separated cell names (default %(default)s)")
    t.add_argument("--no-plot", action="store_true", help="write no PNG figures")
    t.add_argument("--show", type=int, default=0,
                   help="on a FINISHED sweep (same --out and flags): write examples.md with N raw training "
                        "sequences and N drift / random-context predictions of seed 0 of each regime, train nothing "
                        "(default 0: train)")
    return p


def parse_args(argv=None):
    args = build_parser().parse_args(argv)
    for key, val in BUDGETS[args.budget].items():
        if getattr(args, key) is None:
            setattr(args, key, val)
    return args


def floats(text, name, lo=0.0, hi=1.0):
    try:
        vals = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--{name} must be comma-separated numbers, got {text!r}") from None
    if not vals:
        raise UserError(f"--{name} is empty")
    for v in vals:
        if not (math.isfinite(v) and lo <= v <= hi):
            raise UserError(f"--{name} values must be in [{lo:g}, {hi:g}], got {v}")
    if len(set(vals)) != len(vals):
        raise UserError(f"--{name} has repeated values: {text!r}")
    return vals


def check_args(args):
    """Validate everything before anything is written."""
    args.alpha_list = floats(args.alphas, "alphas")
    args.rho_list = floats(args.rhos, "rhos")
    args.fresh_list = floats(args.fresh_rules, "fresh-rules")
    args.repeat_list = floats(args.repeat, "repeat")
    args.gamma_list = floats(args.counterfactual, "counterfactual")
    args.zero_list = floats(args.zero_frac, "zero-frac")
    for name in ("beta", "rs_alpha", "lr"):
        v = getattr(args, name)
        if not math.isfinite(v) or not (0 <= v <= 1):
            raise UserError(f"--{name.replace('_', '-')} must be in [0, 1], got {v}")
    if args.lr <= 0:
        raise UserError(f"--lr must be > 0, got {args.lr}")
    for a in args.alpha_list:
        if a + args.beta > 1 + 1e-9:
            raise UserError(f"alpha {a} + beta {args.beta} > 1 (no room for One-Near contexts)")
        for z in args.zero_list:
            if z > a + 1e-9:
                raise UserError(f"--zero-frac {z} exceeds alpha {a} (it is taken out of the Random share)")
    regimes = [] if args.regimes.strip().lower() == "none" else [r.strip() for r in args.regimes.split(",") if r.strip()]
    bad = [r for r in regimes if r not in REGIMES]
    if bad:
        raise UserError(f"unknown regime(s) {', '.join(bad)} (choose from {', '.join(REGIMES)})")
    if len(set(regimes)) != len(regimes):
        raise UserError(f"--regimes names a regime more than once: {args.regimes!r}")
    args.regime_list = regimes if args.regime_seeds > 0 else []
    if args.zero_list[0] > min(args.rs_alpha, 0.3) + 1e-9 and regimes:
        raise UserError(f"--zero-frac {args.zero_list[0]} exceeds the regimes' alpha")
    limits = {"seeds": (1, 100), "regime_seeds": (0, 100), "layers": (1, 24), "width": (8, 1024), "heads": (1, 64),
              "steps": (1, 10_000_000), "batch": (1, 4096), "warmup": (0, 10_000_000), "eval_every": (1, 10_000_000),
              "jobs": (1, 64), "group_size": (0, 1000), "align_m": (2, 25), "align_len": (1, 16), "k": (2, 64),
              "n_train": (10, 2_000_000), "n_test": (10, 100_000), "n_eval_mid": (1, 100_000),
              "n_rule_sets": (1, 100_000), "drift": (1, 25), "mm_steps": (1, 1_000_000), "mm_n_test": (10, 1_000_000),
              "show": (0, 1000)}
    for name, (lo, hi) in limits.items():
        v = getattr(args, name)
        if not lo <= v <= hi:
            raise UserError(f"--{name.replace('_', '-')} must be in [{lo}, {hi}], got {v}")
    if args.width % args.heads:
        raise UserError(f"--width {args.width} is not divisible by --heads {args.heads}")
    if args.k > args.n_train:  # a context draws k distinct pool examples
        raise UserError(f"--k {args.k} is larger than the pool (--n-train {args.n_train})")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UserError(f"--out exists and is not a folder: {args.out}")


# ============================================================================ cells and runs
def cell(regime, alpha=None, beta=None, rho=None, repeat=0.0, zero_frac=0.0, fresh=0.0, gamma=0.0):
    c = {"regime": regime, "alpha": alpha, "beta": beta, "rho": rho, "repeat": repeat, "zero_frac": zero_frac,
         "fresh_rules": fresh, "gamma": gamma}
    parts = [regime]
    if alpha is not None:
        parts.append(f"a{alpha:g}")
    if beta is not None:
        parts.append(f"b{beta:g}")
    if rho is not None:
        parts.append(f"r{rho:g}")
    if regime == "contrastive":
        parts.append(f"R{repeat:g}")
        if gamma:                              # (cells without gamma keep their names)
            parts.append(f"g{gamma:g}")
    parts += [f"z{zero_frac:g}", f"F{fresh:g}"]
    c["cell"] = "-".join(parts)
    return c


def make_runs(args):
    runs = {}
    for F in args.fresh_list:
        for R in args.repeat_list:
            for z in args.zero_list:
                for a in args.alpha_list:
                    for r in args.rho_list:
                        for g in args.gamma_list:
                            c = cell("contrastive", a, args.beta, r, R, z, F, g)
                            for s in range(args.seeds):
                                runs[f"{c['cell']}-s{s}"] = dict(c, seed=s, grid=True)
    F, R, z = args.fresh_list[0], args.repeat_list[0], args.zero_list[0]
    regime_cells = {"zero": cell("zero", fresh=F), "random": cell("random", zero_frac=z, fresh=F),
                    "similar": cell("similar", fresh=F),
                    "random+similar": cell("random+similar", args.rs_alpha, zero_frac=z, fresh=F),
                    "contrastive": cell("contrastive", 0.3, args.beta, 0.5, R, z, F)}
    for reg in args.regime_list:
        c = regime_cells[reg]
        for s in range(args.regime_seeds):
            rid = f"{c['cell']}-s{s}"
            runs[rid] = dict(runs.get(rid, dict(c, seed=s, grid=False)), regime_cell=reg)
    return runs, {reg: regime_cells[reg]["cell"] for reg in args.regime_list}


def common_config(args):
    keys = ("layers", "width", "heads", "steps", "batch", "lr", "warmup", "eval_every", "task_seed", "align_m",
            "align_len", "k", "n_train", "n_test", "n_eval_mid", "n_rule_sets", "drift", "eval_seed")
    return {k: getattr(args, k) for k in keys}


def run_probs(r):
    return synthetic.regime_probs(r["regime"], r["alpha"] if r["alpha"] is not None else 0.0,
                                  r["beta"] if r["beta"] is not None else 0.0, r["zero_frac"])


def data_seed(run_id):
    return int(hashlib.sha256(run_id.encode()).hexdigest()[:12], 16)


# ============================================================================ training a group
DATA = {}


def setup_data(args):
    task = tasks.AlignmentTask(seed=args.task_seed, m=args.align_m, length=args.align_len, n_train=args.n_train,
                               n_test=args.n_test, n_rule_sets=args.n_rule_sets, drift=args.drift)
    data = synthetic.AlignmentData(task, k=args.k)
    full = data.eval_sets(args.eval_seed)
    mid = data.eval_sets(args.eval_seed, n_test=min(args.n_eval_mid, args.n_test))
    DATA.update(task=task, data=data, full=full, mid=mid)


def evaluate_group(model, sets):
    data = DATA["data"]
    preds = {}
    for name, s in sets.items():
        out = model.generate(torch.from_numpy(s["prompt"]), data.n_target, allowed=(scratch.LET0, scratch.LET0 + 26))
        preds[name] = out.numpy() - scratch.LET0
    return synthetic.score_predictions(data, sets, preds)


def train_group(job):
    """Train one ensemble (a list of runs) to the end, evaluating and checkpointing on the way.
    Returns {run id: (rows, per-input scores)}."""
    ids, runs, args, ckpt_path, worker = job
    torch.set_num_threads(1)
    data = DATA["data"]
    E = len(ids)
    model = scratch.Ensemble([1000 + runs[i]["seed"] for i in ids], args.layers, args.width, args.heads,
                             max_len=data.seq_len)
    opt = scratch.make_optimizer(model, args.lr)
    rngs = [np.random.default_rng(data_seed(i)) for i in ids]
    probs = [run_probs(runs[i]) for i in ids]
    counts = [dict() for _ in ids]
    rows = {i: [] for i in ids}
    start, loss_acc, n_acc = 0, torch.zeros(E), 0
    if os.path.isfile(ckpt_path):
        ck = torch.load(ckpt_path, weights_only=False)
        if ck["ids"] == ids and "opt" in ck:          # a final checkpoint (weights only) is not resumable
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["opt"])
            for r, st in zip(rngs, ck["rng"]):
                r.bit_generator.state = st
            counts, rows, start = ck["counts"], ck["rows"], ck["step"]
    evals = sorted(set(range(args.eval_every, args.steps + 1, args.eval_every)) | {args.steps})
    bar = progress(range(start, args.steps), desc=f"ensemble of {E}", unit="step", position=worker, leave=False,
                   initial=start, total=args.steps)
    t_train = 0.0
    for step in bar:
        t0 = time.time()
        batch = np.stack([data.train_batch(rngs[e], args.batch, probs[e], rho=runs[i]["rho"] or 0.0,
                                           repeat=runs[i]["repeat"], fresh=runs[i]["fresh_rules"], counts=counts[e],
                                           gamma=runs[i].get("gamma", 0.0))
                          for e, i in enumerate(ids)])
        losses = scratch.train_step(model, opt, torch.from_numpy(batch), data.n_target,
                                    scratch.lr_at(step, args.lr, args.warmup))
        t_train += time.time() - t0
        if not torch.isfinite(losses).all():
            raise UserError(f"training diverged (non-finite loss) at step {step + 1}; lower --lr")
        loss_acc += losses
        n_acc += 1
        if step + 1 in evals:
            final = step + 1 == args.steps
            sets = DATA["full"] if final else DATA["mid"]
            sc = evaluate_group(model, sets)
            for e, i in enumerate(ids):
                row = {k: runs[i][k] for k in ("cell", "regime", "alpha", "beta", "rho", "repeat", "zero_frac",
                                              "fresh_rules", "seed")}
                if runs[i].get("gamma"):
                    row["gamma"] = runs[i]["gamma"]
                row.update(step=step + 1, loss=round(float(loss_acc[e] / n_acc), 5),
                           n_eval=int(len(sets["random"]["x"])), n_drift=int(len(sets["drift_copy"]["x"])))
                for k in METRICS:
                    v = float(np.nanmean(sc[k][e]))
                    row[k] = round(v, 3)
                row["counts"] = dict(sorted(counts[e].items()))
                rows[i].append(row)
            loss_acc, n_acc = torch.zeros(E), 0
            if not final:
                with atomic_path(ckpt_path) as tmp:
                    torch.save({"ids": ids, "model": model.state_dict(), "opt": opt.state_dict(),
                                "rng": [r.bit_generator.state for r in rngs], "counts": counts, "rows": rows,
                                "step": step + 1}, tmp)
            bar.set_postfix(loss=f"{rows[ids[0]][-1]['loss']:.3f}", refresh=False)
    bar.close()
    with atomic_path(ckpt_path) as tmp:      # the final weights (no optimiser state)
        torch.save({"ids": ids, "model": model.state_dict(), "step": args.steps, "final": True}, tmp)
    per_input = {}
    for e, i in enumerate(ids):
        per_input[i] = {k: [None if np.isnan(v) else round(float(v), 3) for v in sc[k][e]] for k in METRICS}
    return {i: (rows[i], per_input[i]) for i in ids}, t_train, E * (args.steps - start)


def _worker_init():
    """In each --jobs worker: Ctrl-C is the main process's business (it stops the pool); SIGTERM (sent by the
    pool when the main process stops, or to the whole process group) unwinds the job like in the main process,
    so temporary files are removed, and then ends the worker quietly (_worker): no traceback per worker."""
    import signal
    from contrastive_context.common import Terminated

    def on_term(signum, frame):
        if _IN_JOB:
            raise Terminated(f"terminated by signal {signum}")
        os._exit(143)  # idle, between jobs: nothing to clean up
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, on_term)


_IN_JOB = []  # non-empty while a worker runs a job


def _worker(job):
    from contrastive_context.common import Terminated
    _IN_JOB.append(1)
    try:
        return train_group(job)
    except Terminated:
        os._exit(143)  # cleanups (finally blocks, atomic writes) have run; the main process reports the signal
    finally:
        _IN_JOB.clear()


# ============================================================================ the sweep
def run_paths(out, rid):
    return os.path.join(out, "runs", f"{rid}.jsonl"), os.path.join(out, "runs", f"{rid}.inputs.json")


def run_done(out, rid, cfg_hash):
    path, inputs = run_paths(out, rid)
    if not (is_complete(path) and os.path.isfile(inputs)):
        return False
    meta = check_meta(path, "sweep-run")
    if meta.get("config_hash") != cfg_hash:
        raise UserError(f"{path} was trained with another configuration (model/steps/task flags differ); "
                        f"use another --out or the same flags")
    return True


def groups_of(pending, args):
    n = len(pending)
    size = args.group_size or max(1, math.ceil(n / args.jobs))
    if not args.group_size and size > 16:          # keep memory and checkpoint sizes modest
        size = math.ceil(n / (args.jobs * math.ceil(size / 16)))
    return [pending[i:i + size] for i in range(0, n, size)]


def main(argv=None):
    args = parse_args(argv)
    check_args(args)
    runs, regime_cells = make_runs(args)
    cfg = common_config(args)
    cfg_hash = config_hash(cfg)
    print_config({k: v for k, v in vars(args).items() if not k.endswith("_list")}, "sweep")
    print(f"{len(runs)} runs ({sum(r['grid'] for r in runs.values())} in the grid), config {cfg_hash}", flush=True)
    torch.set_num_threads(1)
    if args.show:
        return show_examples(args, runs, regime_cells, cfg, cfg_hash)
    # --out: missing, empty or a sweep folder of ours (cc_output.json, or an older sweep: its sidecars); locked
    with claim_output_dir(args.out, "sweep", "sweep.py", reuse=True, legacy=made_by_sweep) as out:
        return _sweep(args, runs, regime_cells, cfg, cfg_hash, out)


def made_by_sweep(folder):
    """A sweep folder written before cc_output.json markers existed: its sweep.jsonl or one of its
    runs/*.jsonl has the sidecar this script writes (kind "sweep" / "sweep-run")."""
    paths = [os.path.join(folder, "sweep.jsonl")]
    if os.path.isdir(os.path.join(folder, "runs")):
        paths += [os.path.join(folder, "runs", n[:-len(".meta.json")]) for n in sorted(os.listdir(
            os.path.join(folder, "runs"))) if n.endswith(".jsonl.meta.json")][:1]
    for path in paths:
        try:
            meta = read_meta(path)
        except UserError:
            continue
        if meta and meta.get("kind") in ("sweep", "sweep-run"):
            return True
    return False


def _sweep(args, runs, regime_cells, cfg, cfg_hash, out):
    out.start()
    os.makedirs(os.path.join(args.out, "runs"), exist_ok=True)
    os.makedirs(os.path.join(args.out, "ckpt"), exist_ok=True)
    t0 = time.time()
    pending = [rid for rid in runs if not run_done(args.out, rid, cfg_hash)]
    print(f"{len(runs) - len(pending)} runs finished already, {len(pending)} to train", flush=True)
    if pending:
        setup_data(args)
        print(DATA["task"].describe(), f"| sequence {DATA['data'].seq_len} tokens, drift test "
              f"{len(DATA['full']['drift_copy']['x'])} inputs", flush=True)
    out.keep()  # from here on, finished runs and group checkpoints are reused by the next call
    groups = groups_of(pending, args)
    jobs = [(g, runs, args, os.path.join(args.out, "ckpt", f"group-{config_hash([cfg, g])}.pt"), w % args.jobs)
            for w, g in enumerate(groups)]
    speed = []

    def save(result):
        res, t_train, msteps = result
        speed.append((t_train, msteps))
        for rid, (rows, per_input) in res.items():
            path, inputs = run_paths(args.out, rid)
            write_json_atomic(inputs, per_input)
            write_jsonl_atomic(path, rows, meta={"kind": "sweep-run", "config_hash": cfg_hash, "config": cfg,
                                                 "run": rid})

    if args.jobs > 1 and len(jobs) > 1:
        import multiprocessing as mp
        with mp.get_context("fork").Pool(min(args.jobs, len(jobs)), initializer=_worker_init) as pool:
            for result in pool.imap_unordered(_worker, jobs):
                save(result)
    else:
        for job in jobs:
            save(train_group(job))
    train_s = time.time() - t0
    if speed:
        ts, ms = sum(s[0] for s in speed), sum(s[1] for s in speed)
        print(f"trained {ms} model-steps in {train_s:.0f}s wall ({ms / max(ts, 1e-9):.1f} model-steps/s per worker "
              f"in the training loop)", flush=True)

    # ---- aggregate
    rows, per_input = [], {}
    for rid in sorted(runs):
        path, inputs = run_paths(args.out, rid)
        rows += read_jsonl(path, "sweep run")
        per_input[rid] = read_json(inputs, "per-input scores")
    rows.sort(key=lambda r: (r["cell"], r["seed"], r["step"]))
    meta = {"kind": "sweep", "task": "alignment", "config_hash": cfg_hash, "config": cfg,
            "grid": {"alphas": args.alpha_list, "rhos": args.rho_list, "beta": args.beta,
                     "fresh_rules": args.fresh_list, "repeat": args.repeat_list, "zero_frac": args.zero_list,
                     "seeds": args.seeds}, "regime_cells": regime_cells, "regime_seeds": args.regime_seeds}
    write_jsonl_atomic(os.path.join(args.out, "sweep.jsonl"), rows, meta=meta)
    mm = minimal_grid(args)
    md = render_md(args, rows, per_input, runs, regime_cells, mm, cfg)
    write_text_atomic(os.path.join(args.out, "results.md"), md)
    figs = [] if args.no_plot else plot(args, rows, runs, regime_cells, mm)
    print(f"wrote {args.out}/sweep.jsonl ({len(rows)} rows), results.md" + "".join(f", {f}" for f in figs)
          + f" in {time.time() - t0:.0f}s")


def show_examples(args, runs, regime_cells, cfg, cfg_hash):
    """--show N: raw training sequences and predictions of seed 0 of each regime -> examples.md."""
    if not regime_cells:
        raise UserError("--show needs the regimes (--regimes is 'none' or --regime-seeds 0)")
    pending = [rid for rid in runs if not (os.path.isdir(args.out) and run_done(args.out, rid, cfg_hash))]
    if pending or not is_complete(os.path.join(args.out, "sweep.jsonl")):
        raise UserError(f"--show needs a finished sweep in {args.out} with the same flags ({len(pending)} of "
                        f"{len(runs)} runs not finished); run it without --show first")
    where = {}                                  # run id -> (checkpoint, index in its ensemble)
    for name in sorted(os.listdir(os.path.join(args.out, "ckpt"))):
        path = os.path.join(args.out, "ckpt", name)
        ck = torch.load(path, weights_only=False)
        if ck.get("final") and name == f"group-{config_hash([cfg, ck['ids']])}.pt":
            for e, rid in enumerate(ck["ids"]):
                where[rid] = (path, e)
    setup_data(args)
    data, full = DATA["data"], DATA["full"]
    n = args.show
    shown = {s: synthetic.take(full[s], n) for s in synthetic.SHOW_SETS}
    regimes = {}
    for reg, c in regime_cells.items():
        rid = f"{c}-s0"
        if rid not in where:
            raise UserError(f"no final checkpoint of {rid} in {args.out}/ckpt")
        path, e = where[rid]
        sd = torch.load(path, weights_only=False)["model"]
        model = scratch.Ensemble([1000], args.layers, args.width, args.heads, max_len=data.seq_len)
        model.load_state_dict({key: v[e:e + 1] for key, v in sd.items()})
        model.eval()
        preds = {s: model.generate(torch.from_numpy(v["prompt"]), data.n_target,
                                   allowed=(scratch.LET0, scratch.LET0 + 26))[0].numpy() - scratch.LET0
                 for s, v in shown.items()}
        r = runs[rid]
        kw = dict(rho=r["rho"] or 0.0, repeat=r["repeat"], fresh=r["fresh_rules"], gamma=r.get("gamma", 0.0))
        rows, info = synthetic.stream_examples(data, np.random.default_rng(data_seed(rid)), n, args.batch,
                                               run_probs(r), **kw)
        lrows, linfo = synthetic.stream_examples(data, np.random.default_rng(data_seed(rid)),
                                                 min(100, args.steps) * args.batch, args.batch, run_probs(r), **kw)
        regimes[reg] = {"run": rid, "train": (rows, info), "preds": preds,
                        "stored": read_json(run_paths(args.out, rid)[1], "per-input scores"),
                        "leaks": synthetic.leak_stats(data, lrows, linfo)}
    el = synthetic.eval_leak_stats(data, full)
    header = [f"Sweep `{args.out}` (config {cfg_hash}): {args.layers} layers × width {args.width}, {args.steps} "
              f"steps; seed 0 of each regime, its final checkpoint; the first {n} sequences of its seeded training "
              f"stream (step 1 onwards) and the first {n} drift-test / test inputs of the evaluation sets "
              f"(--eval-seed {args.eval_seed}). Greedy decoding over letters, as in the sweep's evaluation.", "",
              "Leak check over all evaluation inputs: " + "; ".join(
                  f"{k}: {v['inputs']} inputs, paraphrase input = target input in {v['same_x']}, paraphrase label "
                  f"string = target label string in {v['same_y']}" for k, v in el.items()) + ".", ""]
    md = synthetic.examples_markdown(data, full, n, regimes, header=header)
    path = os.path.join(args.out, "examples.md")
    write_text_atomic(path, md)
    print(f"wrote {path} ({n} examples per section, regimes {', '.join(regime_cells)})")


def minimal_grid(args):
    """The minimal model over the same (alpha, rho) grid (cached in minimal_model.json)."""
    path = os.path.join(args.out, "minimal_model.json")
    key = config_hash([args.alpha_list, args.rho_list, args.beta, args.mm_steps, args.mm_n_test])
    if os.path.isfile(path):
        old = read_json(path, "minimal model")
        if old.get("key") == key:
            return old
    rows = minimal_model.train_grid(args.alpha_list, args.rho_list, beta=args.beta, steps=args.mm_steps,
                                    n_test=args.mm_n_test)
    res = {"key": key, "beta": args.beta, "steps": args.mm_steps, "rows": rows}
    write_json_atomic(path, res)
    return res


# ============================================================================ reporting
def final_rows(rows):
    last = {}
    for r in rows:
        k = (r["cell"], r["seed"])
        if k not in last or r["step"] > last[k]["step"]:
            last[k] = r
    return list(last.values())


def cell_means(rows, key):
    by = {}
    for r in final_rows(rows):
        by.setdefault(r["cell"], []).append(r[key])
    return {c: float(np.mean(v)) for c, v in by.items()}


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
    L = ["# Synthetic track: from-scratch transformers on alignment", "",
         f"Model {args.layers} layers × width {args.width} × {args.heads} heads, {args.steps} Adam steps "
         f"(lr {args.lr:g}, batch {args.batch}), task seed {args.task_seed}, m = {args.align_m}, ℓ = {args.align_len}, "
         f"k = {args.k}, pool {args.n_train}, {args.n_test} test inputs (drift test: inputs with ≥ 1 of the "
         f"{args.drift} drifted symbols), {args.n_rule_sets} fresh rule sets. Scores: % of chunks accepted.", "",
         "Columns: acceptance under zero / random / similar / random+nearest / random+paraphrase contexts; "
         "drift = drifted chunks with an exact copy / a paraphrase / random examples (all under the new rules) in "
         "context, kept = undrifted chunks with a paraphrase in context; probes IWL / ICL / copy.", ""]
    cols = ["acc_zero", "acc_random", "acc_similar", "acc_random+nearest", "acc_random+paraphrase",
            "drift_copy_drifted", "drift_paraphrase_drifted", "drift_random_drifted", "drift_paraphrase_kept",
            "iwl", "icl", "copy"]
    short = ["zero", "rand", "sim", "r+near", "r+para", "drift copy", "drift para", "drift rand", "kept",
             "IWL", "ICL", "copy"]
    if regime_cells:
        L += ["## The five regimes (mean over seeds, final step)", "",
              "| regime | seeds | " + " | ".join(short) + " |", "|---" * (len(cols) + 2) + "|"]
        for reg, c in regime_cells.items():
            rs = [r for r in fin if r["cell"] == c]
            L.append(f"| {reg} | {len(rs)} | " + " | ".join(f"{np.mean([r[k] for r in rs]):.1f}" for k in cols) + " |")
        L += ["", "Training contexts per kind (final counts of seed 0, sequences):", ""]
        for reg, c in regime_cells.items():
            rs = [r for r in fin if r["cell"] == c and r["seed"] == 0]
            if rs:
                L.append(f"- {reg}: " + ", ".join(f"{k} {v}" for k, v in rs[0]["counts"].items()))
        L += ["", "## Context over weights: drift test, relevant example vs random control (paired per input)", "",
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
        if "contrastive" in regime_cells:
            L += ["", "## Paired differences: contrastive − each baseline", "",
                  "Rows paired by (seed, test input); 95 % CIs by cluster bootstrap, clusters = test input "
                  "(all seeds of an input drawn together) and, second, clusters = seed. "
                  "Verdict on the input-clustered CI.", "",
                  "| baseline | metric | diff [CI by input] | CI by seed | n | verdict |", "|---|---|---|---|---|---|"]
            con = regime_cells["contrastive"]
            for reg, c in regime_cells.items():
                if reg == "contrastive":
                    continue
                for k in ("acc_random", "acc_random+nearest", "acc_random+paraphrase", "acc_similar",
                          "drift_paraphrase_drifted", "drift_copy_drifted", "icl"):
                    a, b, cl_in, cl_seed = paired_scores(per_input, con, c, k, k, args.regime_seeds)
                    if not a:
                        continue
                    d = stats.paired_diff(a, b, cl_in)
                    ds = stats.paired_diff(a, b, cl_seed)
                    L.append(f"| {reg} | {k} | {stats.fmt(d)} | {stats.fmt(ds)} | {d['n']} | {verdict(d)} |")
    L += ["", "Reading guide: acceptance under random contexts measures in-weights learning of the task's fixed "
          "PFAs. The ICL probe on the task's own test inputs is confounded by it (a PFA accepts few strings, so the "
          "model's in-weights chunk often equals the paraphrase's); the drift test is the clean measure of using "
          "the context over the weights: only a model that reads the new rules off its context scores on drifted "
          "chunks, and `drift rand` is its random-context control.", ""]
    L += ["", "## Contrastive grid (mean over seeds, final step)", "",
          "| F | R | ζ | α | ρ | seeds | " + " | ".join(short) + " |", "|---" * (len(cols) + 6) + "|"]
    grid_cells = sorted({(r["fresh_rules"], r["repeat"], r["zero_frac"], r["alpha"], r["rho"], r["cell"])
                         for r in fin if runs.get(f"{r['cell']}-s{r['seed']}", {}).get("grid")})
    for F, R, z, a, rho, c in grid_cells:
        rs = [r for r in fin if r["cell"] == c]
        L.append(f"| {F:g} | {R:g} | {z:g} | {a:g} | {rho:g} | {len(rs)} | "
                 + " | ".join(f"{np.mean([r[k] for r in rs]):.1f}" for k in cols) + " |")
    L += ["", "## Minimal model (paper §3) over the same (α, ρ) grid", "",
          f"β = {mm['beta']}, {mm['steps']} steps; ρ = share of One-Near contexts whose near example is within 2° "
          "(a paraphrase) instead of within 15°. Test MSE (lower is better), learned threshold −b/w.", "",
          "| α | ρ | MSE random | MSE one_near | MSE similar | ctx attention (random) | −b/w |", "|---|---|---|---|---|---|---|"]
    for r in mm["rows"]:
        thr = "—" if r["threshold"] is None else f"{r['threshold']:.2f}"
        L.append(f"| {r['alpha']:g} | {r['rho']:g} | {r['mse']['random']:.3f} | {r['mse']['one_near']:.3f} | "
                 f"{r['mse']['similar']:.3f} | {r['attention_random']['context']:.2f} | {thr} |")
    L += ["", f"Config hash {config_hash(cfg)}; rows in sweep.jsonl: {len(rows)}.", ""]
    return "\n".join(L)


def plot(args, rows, runs, regime_cells, mm):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out = []
    fin = final_rows(rows)
    A, Rh = args.alpha_list, args.rho_list
    for F in args.fresh_list:
        for R in args.repeat_list:
            for z in args.zero_list:
                fig, axes = plt.subplots(2, 4, figsize=(17, 7.5))
                for j, (key, title) in enumerate(PHASE):
                    M = np.full((len(A), len(Rh)), np.nan)
                    for ia, a in enumerate(A):
                        for ir, r in enumerate(Rh):
                            c = cell("contrastive", a, args.beta, r, R, z, F)["cell"]
                            v = [x[key] for x in fin if x["cell"] == c and x["seed"] < args.seeds]  # same n per cell
                            if v:
                                M[ia, ir] = np.mean(v)
                    heat(axes[0, j], M, A, Rh, f"transformer: {title}", "%")
                mmr = {(r["alpha"], r["rho"]): r for r in mm["rows"]}
                panels = [("MSE random ctx (IWL)", lambda r: r["mse"]["random"]),
                          ("MSE one_near ctx (ICL)", lambda r: r["mse"]["one_near"]),
                          ("ctx attention on random ctx (copy)", lambda r: r["attention_random"]["context"]),
                          ("threshold −b/w", lambda r: np.nan if r["threshold"] is None else r["threshold"])]
                for j, (title, f) in enumerate(panels):
                    M = np.array([[f(mmr[(a, r)]) if (a, r) in mmr else np.nan for r in Rh] for a in A], float)
                    heat(axes[1, j], M, A, Rh, f"minimal model: {title}", "")
                fig.suptitle(f"phase diagram over (α, ρ): β = {args.beta}, fresh rules F = {F:g}, repeat R = {R:g}, "
                             f"zero-frac = {z:g}; {args.steps} steps, mean over {args.seeds} seed(s)")
                fig.tight_layout()
                name = f"phase_F{F:g}_R{R:g}_z{z:g}.png"
                with atomic_path(os.path.join(args.out, name)) as tmp:
                    fig.savefig(tmp, dpi=110, format="png")
                plt.close(fig)
                out.append(name)
    # transience: probe curves over steps
    if args.transience_cells == "regimes":
        cells = list(regime_cells.values())
    else:
        cells = [c.strip() for c in args.transience_cells.split(",") if c.strip()]
    cells = [c for c in cells if any(r["cell"] == c for r in rows)] or sorted({r["cell"] for r in rows})[:5]
    keys = [("acc_random", "IWL: acceptance, random ctx"), ("iwl", "IWL probe"), ("icl", "ICL probe"),
            ("copy", "copy probe"), ("drift_paraphrase_drifted", "drift: paraphrase, drifted chunks"),
            ("drift_random_drifted", "drift: random ctx, drifted chunks")]
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5))
    for ax, (key, title) in zip(axes.flat, keys):
        for c in cells:
            steps = sorted({r["step"] for r in rows if r["cell"] == c})
            ys = [np.mean([r[key] for r in rows if r["cell"] == c and r["step"] == s]) for s in steps]
            ax.plot(steps, ys, "o-", ms=3, label=c)
        ax.set_title(title)
        ax.set_xlabel("training step")
        ax.set_ylabel("%")
    axes.flat[0].legend(fontsize=6)
    fig.suptitle("probe curves over training (mean over seeds; intermediate steps on the first "
                 f"{args.n_eval_mid} test inputs, the last step on {args.n_test})")
    fig.tight_layout()
    with atomic_path(os.path.join(args.out, "transience.png")) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out + ["transience.png"]


def heat(ax, M, A, Rh, title, unit):
    im = ax.imshow(M, cmap="viridis", aspect="auto", origin="lower")
    for i in range(M.shape[0]):
        for j in range(M.shape[1]):
            if np.isfinite(M[i, j]):
                ax.text(j, i, f"{M[i, j]:.2f}" if abs(M[i, j]) < 10 else f"{M[i, j]:.0f}", ha="center", va="center",
                        color="w", fontsize=8)
    ax.set_xticks(range(len(Rh)), [f"{r:g}" for r in Rh])
    ax.set_yticks(range(len(A)), [f"{a:g}" for a in A])
    ax.set_xlabel("ρ (paraphrase share of near examples)")
    ax.set_ylabel("α (share of Random contexts)")
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(im, ax=ax, fraction=0.046)


if __name__ == "__main__":
    run_main(main)
