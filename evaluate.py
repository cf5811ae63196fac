"""Evaluate a model (optionally with a LoRA adapter) under each context type of evaluation.CONTEXT_TYPES.

    python evaluate.py --task alignment --model smollm2-135m --adapter runs/RUN --out evals/RUN
    python evaluate.py --task mt --data DIR --adapter results/mt/adapters/contrastive --out evals/c
    python figure3.py evals/base evals/contrastive ... --out figure3.png     # compare folders

--adapter takes a train.py run folder (its config.json gives the model and task flags) or a bare
adapter folder such as a published OUT/adapters/<regime>/: its base model is the one recorded in
its adapter_config.json (checked against the signature in its cc_base.json), no --model needed;
a bare adapter carries no task flags, so give --task / --data. A run that trained all weights (--full,
--model scratch) holds a whole model: --model then does not apply (another --model is an error).

For each test input x (first --limit of --split), the evaluation contexts are: zero (no
context), random, similar (top-k BM25, most similar last), random+nearest (k-1 random + the
single most similar pool example) and random+paraphrase (k-1 random + a paraphrase of x itself).
With random+counterfactual (k-1 random + a counterfactual near-duplicate of x), --cf-family picks
the family of edits: train (default; the one train.py --counterfactual trains on) or heldout
(counterfactual_heldout.py: other edit kinds, never trained on).
They depend only on (task, split, seed, k, paraphrase file, cf family), never on the model
(evaluation.build_eval_contexts), so every model is scored on the very same instances.

Each instance records max_nsim, the largest normalised BM25 similarity between x and a context
input. summary.json reports the mean score per context type, then per similarity bin (Low /
Medium / High: tertiles of max_nsim over the non-zero context types, or fixed edges with --bins),
overall and within each context type, with 95% bootstrap CIs. Scores are percent of the task
metric (chrF for MT by default, --metric bleu, or COMET-22 with --comet), named in the output.

Outputs (atomic): OUT/predictions.jsonl, OUT/summary.json, OUT/summary.md, and LAST OUT/cc_output.json
recording their sha256: the folder is a finished evaluation only then (figure3.py checks it).
OUT must be missing, empty or a folder evaluate.py wrote (its cc_output.json); it is locked
(OUT/.cc_lock) while evaluate.py runs. Re-running the same command on a finished OUT does nothing;
a finished OUT of another configuration (model, adapter, task, prompts, settings) is refused
unless --overwrite, which empties it (a folder without cc_output.json is never emptied).
Resumable: progress is saved every 8 batches in OUT/predictions.partial.jsonl (+ .meta.json), for
the same model, adapter (sha256), prompts and generation settings; re-running the same command
after a crash or Ctrl-C generates only what is missing, with the very same batches, so the
predictions are identical to an uninterrupted run. The file is removed when OUT is complete.
"""
import argparse
import os
import sys
import time

from contrastive_context import config
from contrastive_context import evaluation as ev
from contrastive_context import runs
from contrastive_context import tasks
from contrastive_context.common import (UserError, check_output_path, config_hash, meta_path, output_digest,
                                        print_config, read_progress, run_main, set_seed, write_json_atomic,
                                        write_jsonl_atomic, write_text_atomic)
from contrastive_context.config import set_threads
from contrastive_context.outputs import check_complete, check_out_not_input, claim_output_dir  # ownership, lock


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    tasks.add_task_args(p)
    p.add_argument("--model", default=None, help="model name or path (default with --adapter: the run's model, or "
                   "the base model a bare adapter folder records, e.g. a published one); "
                   "'copier' = the baseline with no weights that answers with the label of the context example "
                   "most similar to x (nothing under a zero prompt); 'source-copier' = the baseline that answers with x itself "
                   "(MT: the untranslated source)")
    p.add_argument("--adapter", default=None, help="LoRA adapter folder, or a train.py run folder (uses final/; "
                   "its config.json supplies the task flags and model unless given here)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace a complete evaluation of another configuration "
                   "in --out (only a folder evaluate.py wrote: its cc_output.json)")
    for name in ("split", "k", "seed"):  # the flags reproduce.py and probes.py share: config.EvalConfig
        config.add_eval_arg(p, name)
    config.add_eval_arg(p, "limit", "--limit", "--eval-limit", help="evaluate the first N test inputs only "
                        "(--eval-limit: the same, the name train.py and reproduce.py use)")
    p.add_argument("--context-types", default=",".join(ev.CONTEXT_TYPES), help="comma-separated subset of "
                   + ", ".join(ev.CONTEXT_TYPES))
    for name in ("paraphrases", "batch_size", "max_new_tokens", "cf_family"):
        config.add_eval_arg(p, name)
    p.add_argument("--bins", default="tertiles", help="'tertiles' of max_nsim (default) or fixed edges 'a,b'")
    p.add_argument("--comet", default=None, help="COMET checkpoint path or name (e.g. Unbabel/wmt22-comet-da): "
                   "MT scores become COMET-22 (task metric kept as task_score)")
    config.add_eval_arg(p, "device")
    config.add_threads_arg(p)
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    check_output_path(args.out, is_dir=True)
    check_out_not_input(args.out, [args.data, args.adapter, args.paraphrases, args.model, args.comet], is_dir=True)
    # missing, empty or an evaluation folder of ours (cc_output.json), and locked while we run
    with claim_output_dir(args.out, "evaluation", "evaluate.py", overwrite=args.overwrite, reuse=True) as out:
        return _evaluate(argv, parser, args, out)


def _evaluate(argv, parser, args, out):
    adapter_dir, taken = _model_and_adapter(args, config.explicit_dests(parser, argv))
    context_types = [t.strip() for t in args.context_types.split(",") if t.strip()]
    twice = sorted({t for t in context_types if context_types.count(t) > 1})
    if twice or not context_types:
        raise UserError(f"--context-types names {', '.join(twice)} more than once (each type is evaluated once)"
                        if twice else "--context-types is empty")
    fixed_bins = ev.parse_bins(args.bins)
    if args.comet and args.task != "mt":
        raise UserError("--comet applies to the mt task only")
    print_config(config.applicable(args), "evaluate")  # only the flags that apply (config.applicable)
    if taken:
        print(f"from --adapter {args.adapter}: {', '.join(f'{k}={getattr(args, k)}' for k in taken)}", flush=True)
    set_seed(args.seed)
    print(f"torch CPU threads: {set_threads(args.threads)}", flush=True)
    task, split, examples, instances, para_source = _instances(args, context_types)

    # --- model, generation, scores --------------------------------------------------------
    from contrastive_context import models
    comet_model = ev.load_comet(args.comet) if args.comet else None   # fail early, before generating
    if args.model in ev.BASELINES:
        model, tok, max_new = args.model, None, 0
    else:
        model, tok = models.load_with_adapter(args.model, adapter_dir, device=args.device)
        max_new = args.max_new_tokens or ev.default_max_new_tokens(task, tok)
    counts = {t: sum(it["context_type"] == t for it in instances) for t in context_types}
    print(f"{len(instances)} instances ({', '.join(f'{t}={n}' for t, n in counts.items())}); "
          f"max_new_tokens={max_new}", flush=True)
    partial = os.path.join(args.out, "predictions.partial.jsonl")
    check_output_path(partial, what="progress file")
    conf = config_hash({"model": args.model, "adapter": output_digest(adapter_dir) if adapter_dir else None,
                        "max_new": max_new, "batch_size": args.batch_size,
                        "prompts": config_hash(ev.instance_prompts(task, instances), 64)}, 64)
    result = {"predictions": conf, "comet": args.comet, "bins": args.bins, "seed": args.seed,
              "task_config": tasks.task_config(args), "split": split, "types": context_types}
    if args.cf_family != "train":  # recorded only off the default: earlier evaluations keep their config hash
        result["cf_family"] = args.cf_family
    result_conf = config_hash(result, 64)
    if already_complete(out, result_conf, args.overwrite, task.name):
        print(f"{args.out} already holds this evaluation, complete: nothing to do (--overwrite redoes it)", flush=True)
        return
    out.start()  # from here OUT is ours and marked unfinished until the very end
    out.keep()   # the progress file survives an interruption
    done = load_progress(partial, conf, len(instances))

    def save_progress(preds, new_tokens):
        write_jsonl_atomic(partial, [{"i": i, "prediction": p} for i, p in sorted(preds.items())],
                           meta={"kind": "predictions-partial", "config": conf})
    t0 = time.time()
    rows, stats = ev.predict(model, tok, task, instances, max_new, args.batch_size, done=done, on_chunk=save_progress)
    gen_s = time.time() - t0
    print(f"generated {stats['new_tokens']} tokens in {gen_s:.1f}s"
          + (f" ({stats['reused']} predictions reused from {partial})" if stats["reused"] else ""), flush=True)
    metric = _comet_rescore(comet_model, args, rows, instances) if comet_model is not None else task.metric_name

    # --- summary ----------------------------------------------------------------------------
    summary = ev.build_summary(task, rows, instances, context_types, args.seed, fixed_bins, args.bins,
                               comet=comet_model is not None)
    summary.update(metric=metric, model=args.model, adapter=adapter_dir, split=split, k=args.k,
                   n_inputs=len(examples), paraphrases=para_source, max_new_tokens=max_new,
                   generation={"seconds": gen_s, "new_tokens": stats["new_tokens"], "batch_size": args.batch_size,
                               "reused": stats["reused"]},
                   task_config=tasks.task_config(args),
                   test_fp=ev.test_fingerprint(task.test_split(split)))  # figure3.py: same test set?
    if args.cf_family != "train":  # only off the default, so the summaries of earlier commands stay byte-identical
        summary["cf_family"] = args.cf_family
    _write_outputs(args, out, task, rows, summary, result_conf, adapter_dir, partial)


def _model_and_adapter(args, given):
    """Resolve --adapter (runs.resolve_weights) and fill --model and the task flags from the run it belongs
    to, where the command line (`given`) did not set them. Returns (adapter folder or None, flags taken)."""
    if args.model in ev.BASELINES and args.adapter:
        raise UserError(f"--model {args.model} has no weights: it takes no --adapter")
    weights = runs.resolve_weights(args.adapter) if args.adapter else None  # e.g. "model": 123: refused here
    run_cfg = weights.config if weights else None
    adapter_dir = weights.folder if weights else None
    taken = runs.apply_config(args, run_cfg, given)
    if weights and weights.kind == "full":  # a --full run saved a whole model, not an adapter
        if "model" not in taken and args.model is not None and args.model != run_cfg.get("model"):
            raise UserError(f"--adapter {args.adapter} is a run that trained all weights (--full): its weights are the "
                            f"whole model (trained from {run_cfg.get('model')!r}), so --model {args.model} cannot "
                            f"apply; leave out --model")
        args.model, adapter_dir = adapter_dir, None
    if args.model is None and adapter_dir:  # a bare adapter folder (e.g. a published one): the base it records
        args.model = runs.adapter_base(adapter_dir)
        taken += ["model"] if args.model else []
    if args.model is None:
        raise UserError("--model is required (or give --adapter with a run folder or adapter that names it)")
    return adapter_dir, taken


def _instances(args, context_types):
    """(task, split, test inputs, evaluation instances, where the paraphrases come from): all
    model-independent (evaluation.build_eval_contexts)."""
    from contrastive_context.paraphrases import load_paraphrases
    task = tasks.task_from_args(args)
    split = args.split or next(iter(task.tests))
    examples = task.test_split(split)[:args.limit]
    print(task.describe(), f"| evaluating {len(examples)} inputs of '{split}'", flush=True)
    paraphrases = load_paraphrases(args.paraphrases, task) if args.paraphrases else None
    para_source = (f"file {args.paraphrases}" if args.paraphrases else
                   "generated by the task's perturbation (seed stream 'eval-paraphrase', distinct from training)")
    instances = ev.build_eval_contexts(task, examples, args.k, args.seed, paraphrases, context_types, split,
                                       cf_family=args.cf_family)
    if not instances:
        raise UserError("no evaluation instances (empty split, or no paraphrases for any input)")
    return task, split, examples, instances, para_source


def _comet_rescore(comet_model, args, rows, instances):
    """--comet: each row's score becomes its COMET-22 score (the task metric kept as task_score); the metric name."""
    for r, it in zip(rows, instances):
        r["x"] = it["example"]["x"]
    for r, s in zip(rows, ev.comet_scores(comet_model, rows, args.batch_size)):
        r["task_score"], r["score"] = r["score"], s
    for r in rows:
        del r["x"]
    return f"comet:{args.comet}"


def _write_outputs(args, out, task, rows, summary, result_conf, adapter_dir, partial):
    """predictions.jsonl, summary.json, summary.md, then LAST the completion record in cc_output.json; the
    progress file goes."""
    write_jsonl_atomic(os.path.join(args.out, "predictions.jsonl"), rows,
                       meta={"kind": "predictions", "task": task.name, "task_fp": task.fingerprint()})
    write_json_atomic(os.path.join(args.out, "summary.json"), summary)
    write_text_atomic(os.path.join(args.out, "summary.md"), ev.summary_markdown(summary))
    # LAST: cc_output.json records that these files are one finished evaluation (figure3.py checks it)
    out.complete(["predictions.jsonl", "predictions.jsonl.meta.json", "summary.json", "summary.md"],
                 config=result_conf, task=task.name, model=args.model, adapter=adapter_dir)
    for p in (partial, meta_path(partial)):  # OUT is complete: the progress file has served
        if os.path.exists(p):
            os.remove(p)
    print(ev.summary_markdown(summary), flush=True)
    print(f"wrote {args.out}/predictions.jsonl, summary.json, summary.md", flush=True)


def already_complete(out, result_conf, overwrite, task_name):
    """True when OUT holds this very evaluation, finished and unchanged (then there is nothing to do).
    A finished evaluation of another configuration is refused unless --overwrite; an unfinished one
    (interrupted: its progress file is reused) or a new folder is (re)done."""
    try:
        rec = check_complete(out.path, "evaluation")
    except UserError:
        return False  # unfinished, or changed since: done again here
    if rec is None or overwrite:
        return False
    if rec.get("config") == result_conf:
        return True
    raise UserError(f"{out.shown} holds a complete evaluation of another configuration (task {rec.get('task')}, "
                    f"model {rec.get('model')}; now task {task_name}); pass --overwrite to replace it or use "
                    f"another --out")


def load_progress(path, conf, n):
    """{instance index: prediction} from a progress file of the SAME configuration (model, adapter,
    prompts, settings) whose content is intact; anything else is ignored with a note."""
    rows = read_progress(path, "predictions-partial", conf, "prediction progress", required=("i", "prediction"))
    if rows is None:
        return {}
    done = {r["i"]: r["prediction"] for r in rows
            if isinstance(r["i"], int) and 0 <= r["i"] < n and isinstance(r["prediction"], str)}
    print(f"resuming: {len(done)} of {n} predictions from {path}", flush=True)
    return done


if __name__ == "__main__":
    run_main(main)
