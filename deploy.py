"""Deployment with feedback: run a model over a stream whose labelled items join the pool (no weight update).

    python deploy.py --model tiny --policy nearest                       # synthetic task, seconds
    python deploy.py --task mt --data DIR --adapter runs/RUN --policy gated:0.5 --out deploy/mt-c
    python deploy.py --model copier --stream s.jsonl --pool none --policy nearest --delay 1

At step t the pool is P_t = P_0 + {(x_s, y_s) : s <= t - d} (--feedback off: P_0 only). The policy
(zero | random | nearest | gated:TAU) builds x_t's context from P_t with exact incremental BM25; the
model answers; the row is scored. Stream: --stream FILE (JSONL {"id", "x", "y"}) or the task's test
split in file order (--shuffle: seeded); P_0: --pool FILE, --pool none, or the task's pool.
contrastive_context/deployment.py owns the contract (row schema, folder, summaries, G1 / G2).

Outputs in --out (default deploy/<task>-<model>-<policy>-k<k>-s<seed>): deploy.json (settings),
steps.jsonl (+ .meta.json), summary.json, summary.md, LAST cc_output.json. Rows are appended and
fsync'ed per batch: re-running the same command after a crash (even kill -9) resumes from the last
whole batch with identical rows; other settings are refused ("resume with other settings") unless
--overwrite.
"""
import argparse
import os
import sys
import time

from contrastive_context import config
from contrastive_context import deployment as dp
from contrastive_context import evaluation as ev
from contrastive_context import runs
from contrastive_context import tasks
from contrastive_context.common import (UserError, check_output_path, config_hash, output_digest, print_config,
                                        progress, read_json, run_main, set_seed, write_json_atomic,
                                        write_text_atomic)
from contrastive_context.config import set_threads
from contrastive_context.outputs import check_complete, check_out_not_input, claim_output_dir


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    tasks.add_task_args(p)
    p.add_argument("--model", default=None, help="model name or path, a train.py run folder or an adapter folder "
                   "(as evaluate.py --adapter), or 'copier' (answers with the label of the most similar context "
                   "example; nothing under a zero prompt), or 'source-copier' (answers with x itself: the untranslated source)")
    p.add_argument("--adapter", default=None, help="LoRA adapter folder or train.py run folder (as evaluate.py)")
    p.add_argument("--stream", default=None, help="stream JSONL of {id, x, y} rows (default: the task's test split)")
    p.add_argument("--pool", default=None, help="initial pool P_0: a JSONL file, or 'none' (default: the task's pool)")
    p.add_argument("--shuffle", action="store_true", help="shuffle the stream with --seed (default: file order)")
    p.add_argument("--policy", default="nearest", help="zero | random | nearest | gated:TAU (default nearest)")
    p.add_argument("--delay", type=config.number(int, 1, 10_000_000), default=None,
                   help="feedback delay d >= 1 (default: the generation batch size)")
    p.add_argument("--feedback", choices=("on", "off"), default="on", help="off: P_t = P_0 (default on)")
    p.add_argument("--window", type=config.number(int, 1, 10_000_000), default=None,
                   help="items per window of score vs t (default: T/10)")
    p.add_argument("--bins", default="tertiles", help="'tertiles' of the best-neighbour nsim (default) or 'a,b'")
    p.add_argument("--out", default=None, help="output folder (default deploy/<task>-<model>-<policy>-k<k>-s<seed>)")
    p.add_argument("--overwrite", action="store_true", help="replace a deploy folder of other settings")
    for name in ("split", "k", "seed"):
        config.add_eval_arg(p, name)
    config.add_eval_arg(p, "limit", help="the first N stream items only")
    for name in ("batch_size", "max_new_tokens", "device"):
        config.add_eval_arg(p, name)
    config.add_threads_arg(p)
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    policy, tau = dp.parse_policy(args.policy)
    adapter_dir, taken = _model_and_adapter(args, config.explicit_dests(parser, argv))
    if args.out is None:
        name = os.path.basename(os.path.normpath(args.adapter or args.model)) or "model"
        args.out = os.path.join("deploy", f"{args.task}-{name}-{args.policy.replace(':', '-')}-k{args.k}-s{args.seed}")
    check_output_path(args.out, is_dir=True)
    check_out_not_input(args.out, [args.data, args.adapter, args.model, args.stream, args.pool], is_dir=True)
    fixed_bins = ev.parse_bins(args.bins)
    with claim_output_dir(args.out, dp.DEPLOY_KIND, "deploy.py", overwrite=args.overwrite, reuse=True) as out:
        return _deploy(args, out, policy, tau, adapter_dir, taken, fixed_bins)


def _model_and_adapter(args, given):
    """--model / --adapter as evaluate.py takes them (a run or adapter folder given as --model is the
    --adapter); the task flags and model of a run fill what the command line did not set."""
    if args.model and args.model not in ev.BASELINES and args.adapter is None and os.path.isdir(args.model) and (
            runs.is_run(args.model) or os.path.isfile(os.path.join(args.model, runs.ADAPTER_CONFIG))):
        args.adapter, args.model = args.model, None
    if args.model in ev.BASELINES and args.adapter:
        raise UserError(f"--model {args.model} has no weights: it takes no --adapter")
    weights = runs.resolve_weights(args.adapter) if args.adapter else None
    adapter_dir = weights.folder if weights else None
    taken = runs.apply_config(args, weights.config if weights else None, given)
    if weights and weights.kind == "full":
        args.model, adapter_dir = adapter_dir, None
    if args.model is None and adapter_dir:
        args.model = runs.adapter_base(adapter_dir)
    if args.model is None:
        raise UserError("--model is required (or give --adapter with a run folder or adapter that names it)")
    return adapter_dir, taken


def _deploy(args, out, policy, tau, adapter_dir, taken, fixed_bins):
    print_config(config.applicable(args), "deploy")
    if taken:
        print(f"from --adapter {args.adapter}: {', '.join(taken)}", flush=True)
    set_seed(args.seed)
    print(f"torch CPU threads: {set_threads(args.threads)}", flush=True)
    task = tasks.task_from_args(args)
    stream, pool, src, psrc = dp.load_stream_and_pool(task, args.stream, args.pool, args.split, args.shuffle,
                                                      args.seed, args.limit)
    delay = args.delay or args.batch_size
    feedback = args.feedback == "on"
    dp.check_k(policy, args.k, pool, stream, delay, feedback)
    B = dp.batch_size_for(args.batch_size, delay, feedback)
    print(task.describe(), f"| stream {src}: {len(stream)} items; P_0 {psrc}: {len(pool)}; policy {args.policy}, "
          f"k={args.k}, d={delay}, feedback {args.feedback}, batch {B}", flush=True)

    if args.model in ev.BASELINES:
        model, tok, max_new = args.model, None, 0
    else:
        from contrastive_context import models
        model, tok = models.load_with_adapter(args.model, adapter_dir, device=args.device)
        max_new = args.max_new_tokens or ev.default_max_new_tokens(task, tok)
    settings = {"task": task.name, "task_config": tasks.task_config(args), "task_fp": task.fingerprint(),
                "stream": src, "stream_fp": ev.test_fingerprint(stream), "pool": psrc,
                "pool_fp": ev.test_fingerprint(pool), "T": len(stream), "pool0_size": len(pool),
                "model": args.model, "adapter": adapter_dir,
                "adapter_sha256": output_digest(adapter_dir) if adapter_dir else None,
                "policy": args.policy, "k": args.k, "delay": delay, "feedback": feedback, "seed": args.seed,
                "batch_size": B, "max_new_tokens": max_new, "metric": task.metric_name}
    conf = config_hash(settings, 64)
    settings["config"] = conf
    spath, rpath = os.path.join(args.out, dp.SETTINGS), os.path.join(args.out, dp.STEPS)
    old = read_json(spath, "deploy settings") if os.path.isfile(spath) and not args.overwrite else None
    if old is not None and old.get("config") != conf:
        diff = [k for k in settings if k != "config" and old.get(k) != settings[k]]
        raise UserError(f"{args.out} holds a deploy run of other settings ({', '.join(diff[:3]) or 'config'} "
                        f"differ): refusing to resume with other settings; use another --out or --overwrite")
    if old is not None and _complete(out):
        print(f"{args.out} already holds this run, complete: nothing to do", flush=True)
        return
    out.start()
    out.keep()
    if old is None:
        write_json_atomic(spath, settings)
    done = dp.resume_rows(rpath, stream, B)
    if done:
        print(f"resuming: {len(done)} of {len(stream)} steps from {rpath}", flush=True)
    stepper = dp.Stepper(task, stream, pool, policy, tau, args.k, delay, feedback, args.seed)
    t0, T = time.time(), len(stream)
    bar = progress(total=T, initial=len(done), desc="deploy", unit="item")
    try:
        for s in range(len(done), T, B):
            steps = [stepper.step(t) for t in range(s, min(T, s + B))]
            preds = dp.predict_batch(model, tok, task, steps, max_new, B)
            dp.append_rows(rpath, [dp.make_row(task, st, p) for st, p in zip(steps, preds)])
            bar.update(len(steps))
    finally:
        bar.close()
    print(f"{T - len(done)} steps in {time.time() - t0:.1f}s", flush=True)

    from contrastive_context.common import read_jsonl
    rows = read_jsonl(rpath, "deploy steps")
    edges = ev.bin_edges([r["best_nsim"] for r in rows], fixed_bins)
    summary = dict(settings, **dp.summarize_rows(rows, edges, dp.window_size(T, args.window), args.seed,
                                                 extras=("exact", "intent_correct")),
                   bins_method="fixed edges " + args.bins if fixed_bins else "tertiles of best_nsim")
    dp.write_steps_meta(rpath, task, conf, len(rows))
    write_json_atomic(os.path.join(args.out, "summary.json"), summary)
    write_text_atomic(os.path.join(args.out, "summary.md"), dp.summary_markdown(summary))
    out.complete([dp.SETTINGS, dp.STEPS, dp.STEPS + ".meta.json", "summary.json", "summary.md"], config=conf,
                 task=task.name, model=args.model, adapter=adapter_dir)
    print(dp.summary_markdown(summary), flush=True)
    print(f"wrote {args.out}/steps.jsonl, summary.json, summary.md", flush=True)


def _complete(out):
    try:
        return check_complete(out.path, dp.DEPLOY_KIND) is not None
    except UserError:
        return False


if __name__ == "__main__":
    run_main(main)
