"""The three learning probes of the paper (§4.1, Figure 4), per saved checkpoint of training runs.

    python probes.py --run runs/contrastive --run runs/random --run runs/similar \
        --limit 100 --out probes.jsonl --plot probes.png

For every run folder (train.py --out) and every checkpoint it saved (checkpoint-<step>/, final/:
a LoRA adapter, or the whole model of a --full / --model scratch run; step 0 = the base model;
a run with no saved weights is an error), on a fixed probe set (the first --limit inputs of
the test split) with ŷ(S) the greedy prediction under context S and ŷ(∅) the zero-context one:
  IWL   mean sim_y(ŷ(random), ŷ(∅)): does the model answer the same without and with k random
        examples (the task lives in its weights)?
  ICL   with S = one paraphrase (x', y') of x among k-1 random examples (position p):
        Σ_i w_i · sim_y(ŷ(S), y_i), w_i ∝ nsim(x, x_i) summing to 1 (uniform if all are 0):
        does the prediction follow the labels of the similar examples?
  Copy  the same context with its labels deranged (no input keeps its own label, seeded):
        max over i ≠ p of BLEU(ŷ, ỹ_i): does the model copy labels regardless of which input
        they belong to?
sim_y is sentence chrF (sacreBLEU); scores are percent. The contexts are the evaluation contexts
of evaluate.py (`build_eval_contexts`: random and random+paraphrase), so they never depend on the
model. Scoring is a pure function of predictions (`probe_scores(task, instances, predict_fn)`).

Outputs: --out JSONL rows {"run", "step", "probe": "iwl|icl|copy", "score", "n", "checkpoint", "adapter_sha256",
"setting"} ("setting": a hash of the model, task flags, data fingerprint and probe inputs); iwl rows
also carry "zero_fail", the % of zero-context answers that are empty or copy the input back
with its sidecar --out.meta.json ({"kind": "probes", "config": hash, "rows", "sha256"}); --plot PNG
(one panel per probe plus the zero-prompt failures, score 0-100 against training step; one colour per
regime: runs labelled `x`, `x@s1`, ... are seeds of regime `x`, drawn as their mean (line) and min-max
(band)); `--plot-only --out probes.jsonl --plot probes.png` re-draws it from a finished file. Both are
written atomically and ONLY when every checkpoint of every run is scored: --out never holds a partial result.
Progress is kept in `<out>.partial.jsonl` (+ its .meta.json, "kind": "probes-partial"), rewritten
after each checkpoint; a re-run with the same configuration reuses the rows of checkpoints whose
adapter is unchanged (sha256 of the adapter folder) and whose setting is the same (so step 0 of a
run folder retrained on another task or data set is scored again), and removes the partial file at the end. A
checkpoint that cannot be loaded (corrupted) stops the run with one error line: --out is not
written (an older complete --out stays as it was, with its own sidecar), and the partial file
keeps the finished checkpoints for the next run. Scores are also reused from an existing complete
--out of the same configuration, whatever runs it listed: probe a few finished runs early, then
the full list with the same --out scores only what is new.
"""
import argparse
import os
import random
import sys

import numpy as np

from contrastive_context import config
from contrastive_context.paraphrases import load_paraphrases
from contrastive_context import evaluation as evaluate
from contrastive_context import regimes
from contrastive_context import runs
from contrastive_context import tasks
from contrastive_context.common import (UserError, atomic_path, check_meta, check_output_path, config_hash,
                                        meta_path, output_digest, print_config, read_jsonl, read_progress, run_main,
                                        set_seed, write_jsonl_atomic)
from contrastive_context.config import set_threads
from contrastive_context.outputs import check_out_not_input

PROBES = ("iwl", "icl", "copy")


# ============================================================================ similarities (percent)
def chrf(hyp, ref):
    import sacrebleu
    if hyp == ref:
        return 100.0
    return float(sacrebleu.sentence_chrf(hyp, [ref]).score)


def bleu(hyp, ref):
    import sacrebleu
    if hyp == ref:
        return 100.0
    return float(sacrebleu.sentence_bleu(hyp, [ref]).score)


SIMS = {"chrf": chrf, "bleu": bleu}


# ============================================================================ probe instances
def derangement(n, rng):
    """A permutation of range(n) with no fixed point (n >= 2), uniformly by rejection."""
    if n < 2:
        raise UserError("the copy probe needs k >= 2 (a derangement of one label does not exist)")
    while True:
        perm = list(range(n))
        rng.shuffle(perm)
        if all(perm[i] != i for i in range(n)):
            return perm


def build_probe_instances(task, examples, k, seed, paraphrases=None, split="test", index=None):
    """Per test input: {"example", "random": context, and when a paraphrase exists: "icl": the
    one-similar context, "weights": w_i, "position": p, "copy": the same context with deranged labels}."""
    ctx = evaluate.build_eval_contexts(task, examples, k, seed, paraphrases, ("random", "random+paraphrase"),
                                       split, index)
    by_id = {}
    for it in ctx:
        by_id.setdefault(it["example"]["id"], {})[it["context_type"]] = it
    out = []
    for ex in examples:
        got = by_id.get(ex["id"], {})
        inst = {"example": ex, "random": got["random"]["context"]}
        s = got.get("random+paraphrase")
        if s is not None:
            w = np.asarray(s["nsim"], dtype=np.float64)
            w = w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / len(w))
            perm = derangement(len(s["context"]), random.Random(f"probe-copy|{task.name}|{split}|{seed}|{k}|{ex['id']}"))
            labels = [c["y"] for c in s["context"]]
            inst.update(icl=s["context"], weights=w.tolist(), position=s["position"],
                        copy=[dict(c, y=labels[perm[i]]) for i, c in enumerate(s["context"])])
        out.append(inst)
    return out


# ============================================================================ scoring (pure)
def probe_prompts(task, instances):
    """All prompts the probes need, and for each instance the positions of its prompts."""
    prompts, where = [], []
    for inst in instances:
        ex = inst["example"]
        pos = {}
        for key in ("zero", "random", "icl", "copy"):
            if key == "zero" or key in inst:
                pos[key] = len(prompts)
                prompts.append(task.prompt([] if key == "zero" else inst[key], ex["x"], ex.get("meta")))
        where.append(pos)
    return prompts, where


def probe_scores(task, instances, predict_fn, sim_y=chrf, copy_sim=bleu, details=False):
    """{"iwl"|"icl"|"copy": {"score": mean percent or None, "n"}} from predictions of predict_fn(prompts)."""
    prompts, where = probe_prompts(task, instances)
    preds = list(predict_fn(prompts))
    if len(preds) != len(prompts):
        raise ValueError(f"predict_fn returned {len(preds)} predictions for {len(prompts)} prompts")
    per = {p: [] for p in PROBES}
    zero_fail = []
    for inst, pos in zip(instances, where):
        y0, yr = preds[pos["zero"]], preds[pos["random"]]
        per["iwl"].append(sim_y(yr, y0))
        zero_fail.append(zero_prompt_failed(y0, inst["example"]["x"]))
        if "icl" in pos:
            y_s = preds[pos["icl"]]
            per["icl"].append(sum(w * sim_y(y_s, c["y"]) for w, c in zip(inst["weights"], inst["icl"])))
            y_c = preds[pos["copy"]]
            others = [copy_sim(y_c, c["y"]) for i, c in enumerate(inst["copy"]) if i != inst["position"]]
            per["copy"].append(max(others) if others else 0.0)
    out = {p: {"score": float(np.mean(v)) if v else None, "n": len(v)} for p, v in per.items()}
    out["iwl"]["zero_fail"] = 100.0 * float(np.mean(zero_fail)) if zero_fail else None
    return (out, per, preds) if details else out


def zero_prompt_failed(prediction, x):
    """A zero-context answer that is no answer: empty, or the input copied back (up to casing and
    punctuation). IWL compares ŷ(random) with ŷ(∅), so a model that collapses under the zero prompt
    scores low for a reason that has nothing to do with in-weights learning: the rate is reported
    beside the IWL score (`zero_fail`, percent)."""
    from contrastive_context.paraphrases import is_no_answer
    return is_no_answer(prediction, x)


# ============================================================================ runs and checkpoints
def step_list(text):
    """argparse type of --checkpoints: '0,500' -> {0, 500}."""
    try:
        steps = {int(s) for s in text.split(",") if s.strip()}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not steps or min(steps) < 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 0, got {text!r}")
    return steps


def run_label(run_dir, cfg):
    name = os.path.basename(os.path.normpath(run_dir))
    regime = cfg.get("regime")
    return name if not regime or regime in name else f"{name} ({regime})"


SIM_NAMES = {"chrf": "chrF", "bleu": "BLEU"}
PANELS = (("iwl", "IWL probe", "{sim}(ŷ(random), ŷ(∅)) (0–100)"),
          ("icl", "ICL probe", "weighted {sim}(ŷ, context labels) (0–100)"),
          ("copy", "Copy probe (deranged labels)", "max {copy_sim}(ŷ, another input's label) (0–100)"),
          ("zero_fail", "Zero-prompt failures (read with IWL)", "% of zero-context answers: empty or the input"))


def regime_of(label):
    """The regime a run label belongs to: the part before '@' ('contrastive@s1' -> 'contrastive')."""
    return regimes.split_run_label(label)[0]


def draw_probes(rows, labels, sim="chrf", copy_sim="bleu", task=None):
    """The probe figure (returned, not saved): one panel per probe (and the zero-prompt failure rate when the
    rows carry it), one colour per regime (runs grouped by the part of their label before '@', e.g. the seeds
    contrastive and contrastive@s1): the mean over its runs as a line, their min–max as a band."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    groups = {}
    for run in dict.fromkeys(r["run"] for r in rows):
        groups.setdefault(regime_of(labels.get(run, os.path.basename(os.path.normpath(run)))), []).append(run)
    panels = [p for p in PANELS if p[0] != "zero_fail" or any(r.get("zero_fail") is not None for r in rows)]
    cmap = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")
    ncols = 2 if len(panels) == 4 else len(panels)
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols + 2.4, 3.5 * nrows + 0.9), layout="constrained",
                             squeeze=False)
    axes = axes.ravel()
    for ax, (key, title, unit) in zip(axes, panels):
        for g, (regime, members) in enumerate(groups.items()):
            _regime_curve(ax, rows, key, members, cmap(g % cmap.N), regime)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit.format(sim=SIM_NAMES[sim], copy_sim=SIM_NAMES[copy_sim]), fontsize=8)
        ax.set_xlabel("training step (0 = base model)", fontsize=9)
        top = max([r["score"] for r in rows if r["probe"] == "copy" and r["score"] is not None], default=0)
        ax.set_ylim(0, 100 if key != "copy" else min(100, 10 * (int(top // 10) + 1)))
        ax.grid(alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside right upper", fontsize=8, title="regime (runs)", title_fontsize=8)
    n = max((r["n"] for r in rows if r["probe"] == "iwl"), default="?")
    fig.suptitle((f"{task}: " if task else "") + f"learning probes over training ({n} probe inputs)")
    fig.supxlabel("Lines: mean over the runs of a regime (its training seeds; (n) in the legend); shaded band: "
                  "min–max over those runs.\nScores in percent (0–100); y axes from 0, to 100 except the copy probe "
                  "(to the next 10 above its highest score).", fontsize=7.5, x=0.01, ha="left", color="0.25")
    return fig


def _regime_curve(ax, rows, key, members, color, regime):
    """One regime on one panel: mean over its runs per step (line), min–max (band) when it has several."""
    probe = "iwl" if key == "zero_fail" else key
    by_step = {}
    for r in rows:
        if r["run"] in members and r["probe"] == probe and r.get(key if key == "zero_fail" else "score") is not None:
            by_step.setdefault(r["step"], []).append(r[key if key == "zero_fail" else "score"])
    steps = sorted(by_step)
    if not steps:
        return
    vals = [by_step[s] for s in steps]
    ax.plot(steps, [np.mean(v) for v in vals], marker="o", ms=4, color=color,
            label=f"{regime} ({len(members)})")
    if len(members) > 1:
        ax.fill_between(steps, [min(v) for v in vals], [max(v) for v in vals], color=color, alpha=0.2, lw=0)


def plot_probes(rows, path, labels, sim="chrf", copy_sim="bleu", task=None):
    import matplotlib.pyplot as plt
    fig = draw_probes(rows, labels, sim, copy_sim, task)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=150)
    plt.close(fig)


def plot_only(args):
    """--plot-only: draw --plot from the finished probe file --out (its sidecar checked: complete, unchanged);
    nothing is scored. A run's label is its folder name (with its regime when the folder is there and the name
    does not hold it), as when the file was written."""
    if not args.plot:
        raise UserError("--plot-only needs --plot (the PNG to draw)")
    if check_output_path(args.plot, what="--plot") == os.path.realpath(args.out):
        raise UserError("--plot and --out name the same file")
    check_out_not_input(args.plot, [args.out], what="--plot")
    check_meta(args.out, "probes")
    rows = read_jsonl(args.out, "probe rows", required=("run", "step", "probe", "score", "n"))
    if not rows:
        raise UserError(f"{args.out} holds no probe rows")
    labels, tasks_ = {}, set()
    for run in dict.fromkeys(r["run"] for r in rows):
        cfg = runs.read_config(run) if runs.is_run(run) else {}
        labels[run] = run_label(run, cfg)
        tasks_.add(cfg.get("task"))
    plot_probes(rows, args.plot, labels, args.sim, args.copy_sim, tasks_.pop() if len(tasks_) == 1 else None)
    print(f"wrote {args.plot} from {args.out} ({len(rows)} rows)", flush=True)


# ============================================================================ main
def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--run", action="append", default=None, help="train.py run folder (repeat for several; "
                   "required unless --plot-only)")
    tasks.add_task_args(p)
    p.add_argument("--model", default=None, help="base model (default: each run's config.json)")
    # the flags evaluate.py and reproduce.py share (config.EvalConfig), worded for the probes
    config.add_eval_arg(p, "split")
    config.add_eval_arg(p, "limit", default=100, help="probe set: the first N test inputs (default 100)")
    config.add_eval_arg(p, "k")
    config.add_eval_arg(p, "seed", help="seed of the contexts and derangements")
    config.add_eval_arg(p, "paraphrases", help="paraphrase JSONL for the one-similar context "
                        "(default: the task's perturbation, evaluation seed stream)")
    p.add_argument("--sim", default="chrf", choices=sorted(SIMS), help="sim_y of the IWL and ICL probes")
    p.add_argument("--copy-sim", default="bleu", choices=sorted(SIMS), help="similarity of the copy probe")
    config.add_eval_arg(p, "batch_size", help=None)
    config.add_eval_arg(p, "max_new_tokens")
    p.add_argument("--checkpoints", dest="steps", default=None, type=step_list,
                   help="probe only the checkpoints of these training steps, comma-separated (e.g. 0,500; 0 = the "
                        "base model); "
                        "default: step 0 and every checkpoint")
    p.add_argument("--out", required=True, help="output JSONL")
    p.add_argument("--plot", default=None, help="output PNG (one panel per probe and the zero-prompt failures; "
                   "one colour per regime: runs whose labels differ only after '@' are its seeds)")
    p.add_argument("--plot-only", action="store_true", help="score nothing: draw --plot from the finished "
                   "--out (e.g. after a change to the figure); --run and the scoring flags are ignored")
    config.add_eval_arg(p, "device", help=None)
    config.add_threads_arg(p)
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    given = config.explicit_dests(parser, argv)
    if args.plot_only:
        return plot_only(args)
    if not args.run:
        raise UserError("--run is required (one or more train.py run folders), unless --plot-only")
    if args.k < 2:
        raise UserError("--k must be >= 2 (the copy probe deranges the context labels)")
    checkpoints = {run: checkpoints_to_probe(run, args.steps) for run in args.run}  # listed once
    check_outputs(args)
    print_config(args, "probes")
    set_seed(args.seed)
    print(f"torch CPU threads: {set_threads(args.threads)}", flush=True)

    partial = partial_path(args.out)
    check_output_path(partial, what="progress file")
    # the run list and --checkpoints are not part of the configuration: scores are reused per (run, checkpoint,
    # adapter digest), so probing a few finished runs early saves that work for the full list
    conf = config_hash({k: v for k, v in vars(args).items() if k not in ("out", "plot", "threads", "device",
                                                                           "batch_size", "run", "steps")}
                       | {"paraphrases_sha": output_digest(args.paraphrases) if args.paraphrases else None})
    done = {**load_partial(args.out, conf, kind="probes"), **load_partial(partial, conf)}
    if done:
        print(f"resuming: {len(done)} checkpoint(s) already scored in {args.out} or its progress file", flush=True)

    rows, labels, base_cache = [], {}, {}
    for run in args.run:
        labels[run] = probe_run(run, checkpoints[run], args, given, done, base_cache, rows,
                                lambda: write_jsonl_atomic(partial, rows, meta={"kind": "probes-partial",
                                                                                 "config": conf}))
    final = [{("adapter_sha256" if k == "_adapter" else k): v for k, v in r.items()} for r in rows]
    if args.plot:
        plot_probes(final, args.plot, labels, args.sim, args.copy_sim, runs.read_config(args.run[0]).get("task"))
    write_jsonl_atomic(args.out, final, meta={"kind": "probes", "config": conf, "complete": True})
    for p in (partial, meta_path(partial)):
        if os.path.lexists(p):
            os.remove(p)
    print(f"wrote {args.out}" + (f" and {args.plot}" if args.plot else ""), flush=True)


def checkpoints_to_probe(run, steps):
    """[(step, name, folder, kind)] of a run folder to probe (runs.list_checkpoints with step 0, the base
    model), only those of --checkpoints when given; UserError for a folder that is no run, a step it does not
    have, or a run without saved weights."""
    if not runs.is_run(run):
        raise UserError(f"not a training run folder (no config.json): {run}")
    found = runs.list_checkpoints(run, with_base=True)
    missing = sorted(set(steps or ()) - {c[0] for c in found})
    if missing:
        raise UserError(f"--checkpoints: {run} has no checkpoint at step(s) {', '.join(map(str, missing))}")
    if len(found) == 1 and steps is None:
        raise UserError(f"{run} holds no saved weights (no checkpoint-<step>/ or final/ with an adapter or a "
                        f"model): nothing to probe but the base model (--checkpoints 0 probes only that)")
    return [c for c in found if steps is None or c[0] in steps]


def check_outputs(args):
    """--out and --plot: writable, two different files, neither an input (e.g. --out RUN/config.json, --plot
    inside a run folder)."""
    out_path = check_output_path(args.out, what="--out")
    if args.plot:
        if check_output_path(args.plot, what="--plot") == out_path:
            raise UserError("--plot and --out name the same file")
    for path, flag in ((args.out, "--out"), (args.plot, "--plot")):
        check_out_not_input(path, [*args.run, args.paraphrases, args.data, args.model], what=flag)


def probe_run(run, ckpts, args, given, done, base_cache, rows, save_progress):
    """Score every checkpoint `ckpts` of one run (reusing `done` scores, and the base model's of the same
    setting from `base_cache`), appending the rows; `save_progress()` after each. Returns the run's label."""
    cfg = runs.read_config(run)
    run_args = argparse.Namespace(**vars(args))
    runs.apply_config(run_args, cfg, given)
    if run_args.model is None:
        raise UserError(f"{run}: config.json names no model; pass --model")
    task = tasks.task_from_args(run_args)
    split = args.split or getattr(run_args, "test_split", None) or next(iter(task.tests))
    examples = task.test_split(split)[:args.limit]
    paraphrases = load_paraphrases(args.paraphrases, task) if args.paraphrases else None
    instances = build_probe_instances(task, examples, args.k, args.seed, paraphrases, split)
    # what scores depend on besides the weights: model, task flags, the data (pool fingerprint) and the
    # probe inputs. Part of the reuse key: a run retrained on another task or data set in the same folder
    # has the same step 0 ("base", no weights of its own), whose old scores must not be reused
    setting = config_hash([run_args.model, {k: getattr(run_args, k) for k in config.TASK_KEYS}, split,
                           task.fingerprint(), [(e["id"], e["x"], e["y"]) for e in examples]], 16)
    print(f"{run}: model {run_args.model}, {task.describe()}, {len(instances)} probe inputs "
          f"({sum('icl' in i for i in instances)} with a paraphrase), steps {[c[0] for c in ckpts]}", flush=True)
    for step, name, adapter, kind in ckpts:
        digest = output_digest(adapter) if adapter else "base"
        reused = done.get((run, step, name, digest, setting))
        if reused is not None:
            scores = reused
        elif adapter is None and setting in base_cache:
            scores = base_cache[setting]
        else:
            scores = score_checkpoint(run_args.model, adapter, kind, task, instances, args)
        if adapter is None:
            base_cache[setting] = scores
        for probe in PROBES:
            rows.append({"run": run, "step": step, "probe": probe, "score": scores[probe]["score"],
                         "n": scores[probe]["n"], "checkpoint": name, "_adapter": digest, "setting": setting,
                         **({"zero_fail": scores["iwl"].get("zero_fail")} if probe == "iwl" else {})})
        print(f"  step {step:>6} ({name}): " + "  ".join(
            f"{p}={scores[p]['score']:.1f}" if scores[p]["score"] is not None else f"{p}=n/a" for p in PROBES)
            + (" (reused)" if reused is not None else ""), flush=True)
        save_progress()  # progress only: --out itself is written once everything is scored
    return run_label(run, cfg)


def score_checkpoint(model_name, folder, kind, task, instances, args):
    """The probe scores of one checkpoint: whole weights (kind "full"), a LoRA adapter on `model_name`, or
    (folder None) the base model itself."""
    from contrastive_context import generation
    from contrastive_context import models
    model, tok = models.load(folder, device=args.device) if kind == "full" else \
        models.load_with_adapter(model_name, folder, device=args.device)
    max_new = args.max_new_tokens or evaluate.default_max_new_tokens(task, tok)

    def predict(prompts):
        return generation.generate(model, tok, prompts, max_new, stop=task.stop, batch_size=args.batch_size)
    return probe_scores(task, instances, predict, SIMS[args.sim], SIMS[args.copy_sim])


def partial_path(out):
    return os.fspath(out) + ".partial.jsonl"


def load_partial(path, conf, kind="probes-partial"):
    """{(run, step, checkpoint, adapter digest, setting): scores} from a progress file (or a finished --out,
    kind "probes") of the SAME configuration whose content is intact; anything else is ignored. `setting`
    hashes the model, task flags, data fingerprint and probe inputs the scores were computed on (rows
    without it, from before it existed, are not reused)."""
    digest = "_adapter" if kind == "probes-partial" else "adapter_sha256"
    rows = read_progress(path, kind, conf, "probe progress",
                         required=("run", "step", "probe", "score", "n", "checkpoint", digest, "setting"))
    done = {}
    for r in rows or []:
        done.setdefault((r["run"], r["step"], r["checkpoint"], r[digest], r["setting"]), {})[r["probe"]] = \
            {"score": r["score"], "n": r["n"], **({"zero_fail": r.get("zero_fail")} if r["probe"] == "iwl" else {})}
    return {k: v for k, v in done.items() if set(v) == set(PROBES)}


if __name__ == "__main__":
    run_main(main)
