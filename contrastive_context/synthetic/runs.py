"""Runs of the synthetic track (sweep.py): a run is (cell, seed); a group of runs is trained as ONE
batched ensemble (scratch.Ensemble), evaluated on the way and checkpointed so an interrupted group
resumes exactly; finished runs are stored in the sweep folder and read back from it.

    cell(...)                    a cell's parameters and its name (run id = <cell>-s<seed>)
    setup_data(args) / DATA      the task, its training data and evaluation sets (shared by forked workers)
    train_group(job)             train, evaluate and checkpoint one ensemble
    run_jobs(fn, jobs, ...)      a job pool: forked workers (1 thread each) or in-process
    save_runs / read_runs        runs/<run>.jsonl (rows per evaluation step) + runs/<run>.inputs.json
                                 (per-input final scores); run_done: a run finished with this configuration
    run_examples(...)            --show: a finished run's training stream and predictions
"""
import hashlib
import os
import time

import numpy as np
import torch

from . import scratch
from . import data as synthetic
from .. import tasks
from ..common import (UserError, atomic_path, check_meta, config_hash, is_complete, progress, read_json,
                     read_jsonl, write_json_atomic, write_jsonl_atomic)

METRICS = (*(f"acc_{t}" for t in synthetic.ACC_TYPES),
           "drift_random_drifted", "drift_random_kept", "drift_copy_drifted", "drift_copy_kept",
           "drift_paraphrase_drifted", "drift_paraphrase_kept", "iwl", "icl", "copy",
           # relevance vs copying (training with counterfactuals): the counterfactual context type, and the drift test's drifted
           # chunks split by whether their symbol appears in a context example (per-symbol ICL possible)
           "acc_random+counterfactual", "edit_ok", "cf_copy", "drift_random_drifted_shown",
           "drift_random_drifted_unseen")
ROW_KEYS = ("cell", "regime", "alpha", "beta", "rho", "repeat", "zero_frac", "fresh_rules", "seed")


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


def generate_letters(model, prompt, n_target):
    """Greedy decoding over letters: letter ids [E, N, n_target] of every ensemble member."""
    out = model.generate(torch.from_numpy(prompt), n_target, allowed=(scratch.LET0, scratch.LET0 + 26))
    return out.numpy() - scratch.LET0


def evaluate_group(model, sets):
    data = DATA["data"]
    preds = {}
    for name, s in sets.items():
        preds[name] = generate_letters(model, s["prompt"], data.n_target)
    return synthetic.score_predictions(data, sets, preds)


def train_group(job):
    """Train one ensemble (a list of runs) to the end, evaluating and checkpointing on the way.
    Returns ({run id: (rows, per-input scores)}, seconds in the training loop, model-steps trained)."""
    ids, runs, args, ckpt_path, worker = job
    torch.set_num_threads(1)
    data = DATA["data"]
    E = len(ids)
    model = scratch.Ensemble([1000 + runs[i]["seed"] for i in ids], args.layers, args.width, args.heads,
                             max_len=data.seq_len)
    opt = scratch.make_optimizer(model, args.lr)
    rngs = [np.random.default_rng(data_seed(i)) for i in ids]
    probs = [run_probs(runs[i]) for i in ids]
    counts, rows, start = _resume(ckpt_path, ids, model, opt, rngs) or ([dict() for _ in ids], {i: [] for i in ids}, 0)
    loss_acc, n_acc = torch.zeros(E), 0
    evals = sorted(set(range(args.eval_every, args.steps + 1, args.eval_every)) | {args.steps})
    bar = progress(range(start, args.steps), desc=f"ensemble of {E}", unit="step", position=worker, leave=False,
                   initial=start, total=args.steps)
    t_train = 0.0
    # one loop: the data streams, context counts, optimiser and evaluations advance together, and a
    # checkpoint captures them all at the same step (exact resume)
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
                rows[i].append(_eval_row(runs[i], step + 1, loss_acc[e], n_acc, sets, sc, e, counts[e]))
            loss_acc, n_acc = torch.zeros(E), 0
            if not final:
                _checkpoint(ckpt_path, ids, model, opt, rngs, counts, rows, step + 1)
            bar.set_postfix(loss=f"{rows[ids[0]][-1]['loss']:.3f}", refresh=False)
    bar.close()
    with atomic_path(ckpt_path) as tmp:      # the final weights (no optimiser state)
        torch.save({"ids": ids, "model": model.state_dict(), "step": args.steps, "final": True}, tmp)
    per_input = {i: _per_input(sc, e) for e, i in enumerate(ids)}
    return {i: (rows[i], per_input[i]) for i in ids}, t_train, E * (args.steps - start)


def _resume(ckpt_path, ids, model, opt, rngs):
    """Load the group's latest checkpoint into model, opt and rngs: (counts, rows, step), or None
    when there is none to resume from."""
    if not os.path.isfile(ckpt_path):
        return None
    ck = torch.load(ckpt_path, weights_only=False)
    if not (ck["ids"] == ids and "opt" in ck):    # a final checkpoint (weights only) is not resumable
        return None
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["opt"])
    for r, st in zip(rngs, ck["rng"]):
        r.bit_generator.state = st
    return ck["counts"], ck["rows"], ck["step"]


def _checkpoint(ckpt_path, ids, model, opt, rngs, counts, rows, step):
    with atomic_path(ckpt_path) as tmp:
        torch.save({"ids": ids, "model": model.state_dict(), "opt": opt.state_dict(),
                    "rng": [r.bit_generator.state for r in rngs], "counts": counts, "rows": rows,
                    "step": step}, tmp)


def _eval_row(run, step, loss_sum, n_acc, sets, sc, e, counts):
    """The sweep.jsonl row of one run (member e) at an evaluation step."""
    row = {k: run[k] for k in ROW_KEYS}
    if run.get("gamma"):
        row["gamma"] = run["gamma"]
    row.update(step=step, loss=round(float(loss_sum / n_acc), 5),
               n_eval=int(len(sets["random"]["x"])), n_drift=int(len(sets["drift_copy"]["x"])))
    for k in METRICS:
        v = float(np.nanmean(sc[k][e]))
        row[k] = round(v, 3)
    row["counts"] = dict(sorted(counts.items()))
    return row


def _per_input(sc, e):
    return {k: [None if np.isnan(v) else round(float(v), 3) for v in sc[k][e]] for k in METRICS}


# ============================================================================ the job pool
def run_jobs(fn, jobs, workers, on_result):
    """on_result(fn(job)) for every job: with workers > 1 and more than one job in a pool of forked
    processes (results in the order they finish), else one after another in this process."""
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp
        with mp.get_context("fork").Pool(min(workers, len(jobs)), initializer=_worker_init) as pool:
            for result in pool.imap_unordered(_worker, [(fn, job) for job in jobs]):
                on_result(result)
    else:
        for job in jobs:
            on_result(fn(job))


def _worker_init():
    """In each worker: Ctrl-C is the main process's business (it stops the pool); SIGTERM (sent by the
    pool when the main process stops, or to the whole process group) unwinds the job like in the main process,
    so temporary files are removed, and then ends the worker quietly (_worker): no traceback per worker."""
    import signal
    from ..common import Terminated

    def on_term(signum, frame):
        if _IN_JOB:
            raise Terminated(f"terminated by signal {signum}")
        os._exit(143)  # idle, between jobs: nothing to clean up
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, on_term)


_IN_JOB = []  # non-empty while a worker runs a job


def _worker(fn_job):
    from ..common import Terminated
    fn, job = fn_job
    _IN_JOB.append(1)
    try:
        return fn(job)
    except Terminated:
        os._exit(143)  # cleanups (finally blocks, atomic writes) have run; the main process reports the signal
    finally:
        _IN_JOB.clear()


# ============================================================================ finished runs on disk
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


def save_runs(out, res, cfg, cfg_hash):
    """Store the runs of a trained group (train_group's first result)."""
    for rid, (rows, per_input) in res.items():
        path, inputs = run_paths(out, rid)
        write_json_atomic(inputs, per_input)
        write_jsonl_atomic(path, rows, meta={"kind": "sweep-run", "config_hash": cfg_hash, "config": cfg,
                                             "run": rid})


def read_runs(out, runs):
    """All rows of the runs (sorted by cell, seed, step) and {run id: per-input scores}."""
    rows, per_input = [], {}
    for rid in sorted(runs):
        path, inputs = run_paths(out, rid)
        rows += read_jsonl(path, "sweep run")
        per_input[rid] = read_json(inputs, "per-input scores")
    rows.sort(key=lambda r: (r["cell"], r["seed"], r["step"]))
    return rows, per_input


# ============================================================================ --show: a finished run
def final_checkpoints(out, cfg):
    """{run id: (final checkpoint path, index in its ensemble)} over out/ckpt."""
    where = {}
    for name in sorted(os.listdir(os.path.join(out, "ckpt"))):
        path = os.path.join(out, "ckpt", name)
        ck = torch.load(path, weights_only=False)
        if ck.get("final") and name == f"group-{config_hash([cfg, ck['ids']])}.pt":
            for e, rid in enumerate(ck["ids"]):
                where[rid] = (path, e)
    return where


def run_examples(args, runs, rid, where, shown, n):
    """A finished run (its final checkpoint in `where`): the first n sequences of its seeded training
    stream, its predictions on the `shown` evaluation sets, its stored per-input scores and the leak
    check of its stream."""
    if rid not in where:
        raise UserError(f"no final checkpoint of {rid} in {args.out}/ckpt")
    data = DATA["data"]
    path, e = where[rid]
    sd = torch.load(path, weights_only=False)["model"]
    model = scratch.Ensemble([1000], args.layers, args.width, args.heads, max_len=data.seq_len)
    model.load_state_dict({key: v[e:e + 1] for key, v in sd.items()})
    model.eval()
    preds = {s: generate_letters(model, v["prompt"], data.n_target)[0] for s, v in shown.items()}
    r = runs[rid]
    kw = dict(rho=r["rho"] or 0.0, repeat=r["repeat"], fresh=r["fresh_rules"], gamma=r.get("gamma", 0.0))
    rows, info = synthetic.stream_examples(data, np.random.default_rng(data_seed(rid)), n, args.batch,
                                           run_probs(r), **kw)
    lrows, linfo = synthetic.stream_examples(data, np.random.default_rng(data_seed(rid)),
                                             min(100, args.steps) * args.batch, args.batch, run_probs(r), **kw)
    return {"run": rid, "train": (rows, info), "preds": preds,
            "stored": read_json(run_paths(args.out, rid)[1], "per-input scores"),
            "leaks": synthetic.leak_stats(data, lrows, linfo)}
