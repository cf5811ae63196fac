"""Synthetic track: small decoders trained FROM SCRATCH on the alignment task, over a grid of
training distributions, as batched ensembles (synthetic/scratch.py), with the minimal model beside them.

    python sweep.py --out results/synthetic/default --jobs 2               # the default sweep (timings: BENCHMARKS.md)
    python sweep.py --out /tmp/smoke --budget smoke                 # < 60 s
    python sweep.py --out runs/long --budget long --jobs 2          # emergence / transience study
    python sweep.py --out results/synthetic/default --jobs 2 --show 20      # a finished sweep: examples.md, no training

Cells. (a) the contrastive grid: alpha (--alphas) x rho (--rhos) x --fresh-rules x --repeats x
--zero-fracs, beta fixed (--beta), --seeds seeds each; (b) the five regimes (zero, random, similar,
random+similar at --rs-alpha, contrastive at the paper's alpha 0.3, beta, rho 0.5) at
--regime-seeds seeds, with the first --fresh-rules / --repeats / --zero-fracs value. A run is
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
of each regime (with --regimes none: of each grid cell; its own seeded stream) and N drift / random /
random+counterfactual predictions with per-chunk verdicts.
"""
import argparse
import math
import os
import time

import torch

from contrastive_context import cli
from contrastive_context import regimes
from contrastive_context.synthetic import minimal_model
from contrastive_context.synthetic import report as sweep_report
from contrastive_context.synthetic import data as synthetic
from contrastive_context.synthetic import runs as synthetic_runs
from contrastive_context.common import (UserError, config_hash, is_complete, print_config, read_json, read_meta,
                                        run_main, write_json_atomic, write_jsonl_atomic)
from contrastive_context.config import SEED  # the --seed type of every script: an integer in [0, 2**32-1]
from contrastive_context.outputs import claim_output_dir  # output folder: ownership marker, lock
from contrastive_context.synthetic.runs import DATA, cell, run_done

# the regimes (regimes.REGIMES) in the order sweep.py trains and reports them by default (--regimes): the rows of
# results.md's regime tables, the keys of sweep.jsonl.meta.json's regime_cells, the curves of transience.png
REPORT_ORDER = tuple(r for r in regimes.REGIMES if r != "contrastive") + ("contrastive",)


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


def _bud(key):
    """Help text: a default that comes from --budget."""
    return " (default per --budget: " + ", ".join(f"{b} {v[key]}" for b, v in BUDGETS.items()) + ")"


def build_parser():
    """sweep.py's flags: each with its help and its default (fixed, or per --budget)."""
    p = cli.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--budget", default="default", choices=list(BUDGETS), help="preset sizes (flags below override; "
                   "default %(default)s)")
    g = p.add_argument_group("grid")
    g.add_argument("--alphas", help="comma-separated shares of Random contexts (alpha)" + _bud("alphas"))
    g.add_argument("--rhos", help="comma-separated paraphrase shares rho of the One-Near near example" + _bud("rhos"))
    g.add_argument("--beta", type=float, default=0.2, help="share of Similar contexts in the contrastive grid "
                   "(default %(default)s)")
    g.add_argument("--fresh-rules", default="0.3", help="comma-separated rule-diversity shares F (default %(default)s)")
    g.add_argument("--repeats", dest="repeat", default="0",
                   help="comma-separated exact-copy shares R of the near example "
                   "(default %(default)s)")
    g.add_argument("--counterfactuals", dest="counterfactual", default="0",
                   help="comma-separated shares gamma of counterfactual near "
                   "examples (one symbol swapped, its chunk under the sequence's rules; regimes.near_probs; "
                   "default %(default)s)")
    g.add_argument("--zero-fracs", dest="zero_frac", default="0",
                   help="comma-separated zero-context shares (out of alpha; "
                   "default %(default)s)")
    g.add_argument("--rs-alpha", type=float, default=0.5, help="alpha of the random+similar regime "
                   "(default %(default)s)")
    g.add_argument("--regimes", default=",".join(REPORT_ORDER), help="regimes trained beside the grid ('none': grid "
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
    t.add_argument("--alignment-seed", dest="task_seed", type=SEED, default=2,
                   help="seed of the alignment task's automata (PFAs), alignment and data, an integer in [0, 2**32-1] "
                        "(what train.py calls --task-seed, whose default is 0; default here %(default)s)")
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
                        "sequences and N drift / random / random+counterfactual predictions of seed 0 of each regime "
                        "(--regimes none: of each grid cell), train nothing "
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
    args.repeat_list = floats(args.repeat, "repeats")
    args.gamma_list = floats(args.counterfactual, "counterfactuals")
    args.zero_list = floats(args.zero_frac, "zero-fracs")
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
                raise UserError(f"--zero-fracs {z} exceeds alpha {a} (it is taken out of the Random share)")
    regimes = [] if args.regimes.strip().lower() == "none" else [r.strip() for r in args.regimes.split(",") if r.strip()]
    bad = [r for r in regimes if r not in REPORT_ORDER]
    if bad:
        raise UserError(f"unknown regime(s) {', '.join(bad)} (choose from {', '.join(REPORT_ORDER)})")
    if len(set(regimes)) != len(regimes):
        raise UserError(f"--regimes names a regime more than once: {args.regimes!r}")
    args.regime_list = regimes if args.regime_seeds > 0 else []
    if args.zero_list[0] > min(args.rs_alpha, 0.3) + 1e-9 and regimes:
        raise UserError(f"--zero-fracs {args.zero_list[0]} exceeds the regimes' alpha")
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


def groups_of(pending, args):
    n = len(pending)
    size = args.group_size or max(1, math.ceil(n / args.jobs))
    if not args.group_size and size > 16:          # keep memory and checkpoint sizes modest
        size = math.ceil(n / (args.jobs * math.ceil(size / 16)))
    return [pending[i:i + size] for i in range(0, n, size)]


# ============================================================================ the sweep
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
        synthetic_runs.setup_data(args)
        print(DATA["task"].describe(), f"| sequence {DATA['data'].seq_len} tokens, drift test "
              f"{len(DATA['full']['drift_copy']['x'])} inputs", flush=True)
    out.keep()  # from here on, finished runs and group checkpoints are reused by the next call
    train_pending(args, runs, pending, cfg, cfg_hash, t0)
    rows, per_input = synthetic_runs.read_runs(args.out, runs)
    meta = {"kind": "sweep", "task": "alignment", "config_hash": cfg_hash, "config": cfg,
            "grid": {"alphas": args.alpha_list, "rhos": args.rho_list, "beta": args.beta,
                     "fresh_rules": args.fresh_list, "repeat": args.repeat_list, "zero_frac": args.zero_list,
                     "seeds": args.seeds}, "regime_cells": regime_cells, "regime_seeds": args.regime_seeds}
    write_jsonl_atomic(os.path.join(args.out, "sweep.jsonl"), rows, meta=meta)
    mm = minimal_grid(args)
    figs = sweep_report.write_report(args, rows, per_input, runs, regime_cells, mm, cfg)
    print(f"wrote {args.out}/sweep.jsonl ({len(rows)} rows), results.md" + "".join(f", {f}" for f in figs)
          + f" in {time.time() - t0:.0f}s")


def train_pending(args, runs, pending, cfg, cfg_hash, t0):
    """Train the pending runs in groups (one ensemble each, --jobs workers); each group's runs are
    stored as soon as it finishes."""
    jobs = [(g, runs, args, os.path.join(args.out, "ckpt", f"group-{config_hash([cfg, g])}.pt"), w % args.jobs)
            for w, g in enumerate(groups_of(pending, args))]
    speed = []

    def save(result):
        res, t_train, msteps = result
        speed.append((t_train, msteps))
        synthetic_runs.save_runs(args.out, res, cfg, cfg_hash)

    synthetic_runs.run_jobs(synthetic_runs.train_group, jobs, args.jobs, save)
    train_s = time.time() - t0
    if speed:
        ts, ms = sum(s[0] for s in speed), sum(s[1] for s in speed)
        print(f"trained {ms} model-steps in {train_s:.0f}s wall ({ms / max(ts, 1e-9):.1f} model-steps/s per worker "
              f"in the training loop)", flush=True)


def show_examples(args, runs, regime_cells, cfg, cfg_hash):
    """--show N: raw training sequences and predictions of seed 0 of each regime (a sweep without regimes:
    of each grid cell) -> examples.md."""
    shown_cells = regime_cells or {r["cell"]: r["cell"] for r in runs.values() if r.get("grid") and r["seed"] == 0}
    pending = [rid for rid in runs if not (os.path.isdir(args.out) and run_done(args.out, rid, cfg_hash))]
    if pending or not is_complete(os.path.join(args.out, "sweep.jsonl")):
        raise UserError(f"--show needs a finished sweep in {args.out} with the same flags ({len(pending)} of "
                        f"{len(runs)} runs not finished); run it without --show first")
    where = synthetic_runs.final_checkpoints(args.out, cfg)   # run id -> (checkpoint, index in its ensemble)
    synthetic_runs.setup_data(args)
    data, full = DATA["data"], DATA["full"]
    shown = {s: synthetic.take(full[s], args.show) for s in synthetic.SHOW_SETS}
    regimes = {reg: synthetic_runs.run_examples(args, runs, f"{c}-s0", where, shown, args.show)
               for reg, c in shown_cells.items()}
    path = sweep_report.write_examples(args, cfg_hash, data, full, regimes)
    print(f"wrote {path} ({args.show} examples per section, {', '.join(shown_cells)})")


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


if __name__ == "__main__":
    run_main(main)
