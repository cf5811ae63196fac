"""Evaluate a model (optionally with a LoRA adapter) under the four context types of the paper.

    python evaluate.py --task alignment --model smollm2-135m --adapter runs/RUN --out evals/RUN
    python evaluate.py compare evals/base evals/zero evals/contrastive --labels base zero contr. \
        --out figure3.png --table figure3.md

For each test input x (first --limit of --split), evaluation contexts (k pool examples):
  zero               no context (the reference);
  random             k random pool examples;
  similar            the top-k BM25 pool examples, the most similar placed last;
  random+nearest     k-1 random examples + the single most similar pool example, at a random position;
  random+paraphrase  k-1 random examples + one paraphrase (x', y') of x itself, at a random position:
                     from --paraphrases FILE, else made on the fly with the task's perturbation under
                     the seed stream "eval-paraphrase|..." (not the one paraphrase.py uses for training).
Contexts depend only on (task, split, seed, k, paraphrase file), never on the model
(`build_eval_contexts`), so every model is scored on the very same instances.

Each instance records max_nsim, the largest normalised BM25 similarity between x and a context
input. summary.json reports the mean score per context type and per similarity bin (Low / Medium /
High: tertiles of max_nsim over the non-zero context types, or fixed edges with --bins) with 95%
bootstrap confidence intervals (1,000 resamples). Scores are percent (0-100) of the task metric
(chrF for MT by default, --metric bleu, or COMET-22 with --comet), named in the output.

Outputs (atomic): DIR/predictions.jsonl, DIR/summary.json, DIR/summary.md.
`compare` re-bins several evaluation folders with shared edges and draws the Figure-3-style chart.
"""
import argparse
import os
import random
import sys
import time

import numpy as np

import tasks
from stats import bootstrap_ci, summarize  # noqa: F401  (re-exported for callers)
from common import (UserError, atomic_path, print_config, read_json, read_jsonl, run_main, set_seed,
                    write_json_atomic, write_jsonl_atomic, write_text_atomic)

CONTEXT_TYPES = ("zero", "random", "similar", "random+nearest", "random+paraphrase")
BIN_NAMES = ("low", "medium", "high")
TASK_KEYS = ("task", "data", "src", "tgt", "lang", "task_seed", "align_m", "align_len", "n_train", "n_test",
             "max_pool", "metric", "sql_schema")


# ============================================================================ bins
def parse_bins(spec):
    """'tertiles' -> None; 'a,b' -> [a, b] (two inner edges in (0, 1), increasing)."""
    if spec in (None, "", "tertiles"):
        return None
    try:
        edges = [float(v) for v in spec.split(",")]
    except ValueError:
        raise UserError(f"--bins must be 'tertiles' or two numbers 'a,b' (got {spec!r})") from None
    if len(edges) != 2 or not 0.0 < edges[0] < edges[1] < 1.0:
        raise UserError(f"--bins needs two increasing edges strictly between 0 and 1 (got {spec!r})")
    return edges


def bin_edges(values, fixed=None):
    """[0, e1, e2, 1]: the inner edges are the 1/3 and 2/3 quantiles of `values` (tertiles) or `fixed`."""
    if fixed is not None:
        inner = list(fixed)
    elif len(values) == 0:
        inner = [1 / 3, 2 / 3]
    else:
        inner = [float(q) for q in np.quantile(np.asarray(values, dtype=np.float64), [1 / 3, 2 / 3])]
    return [0.0, inner[0], inner[1], 1.0]


def assign_bin(value, edges):
    """0 (low) if value < e1, 1 (medium) if e1 <= value < e2, 2 (high) otherwise."""
    if value < edges[1]:
        return 0
    if value < edges[2]:
        return 1
    return 2


def bin_summary(rows, edges, seed=0):
    """Per-bin mean/CI/n of rows' scores (rows of non-zero context types)."""
    groups = [[] for _ in BIN_NAMES]
    for r in rows:
        groups[assign_bin(r["max_nsim"], edges)].append(r["score"])
    return [dict(name=name, lo=edges[b], hi=edges[b + 1], **summarize(groups[b], seed=seed))
            for b, name in enumerate(BIN_NAMES)]


# ============================================================================ evaluation contexts
def pool_index(task):
    from similarity import PoolIndex
    return PoolIndex(task.pool, task.tokenize)


def _random_ids(rng, n_pool, m, exclude=()):
    """m distinct pool indices, none in `exclude`, uniformly at random."""
    if n_pool - len(exclude) < m:
        raise UserError(f"the pool has too few examples ({n_pool}) for a context of this size")
    ids = rng.sample(range(n_pool), min(n_pool, m + len(exclude)))
    return [i for i in ids if i not in exclude][:m]


def eval_paraphrase(task, ex, seed, paraphrases=None, split="test"):
    """One paraphrase (x', y') of a test input as an example dict, or None when there is none.

    From the paraphrase file when given (a seeded choice among its paraphrases), else the task's
    perturbation seeded with the evaluation stream "eval-paraphrase|task|split|seed|id" (distinct
    from paraphrase.py's training stream, so these differ from training paraphrases)."""
    rng = random.Random(f"eval-paraphrase|{task.name}|{split}|{seed}|{ex['id']}")
    if paraphrases is not None:
        cands = paraphrases.get(ex["id"], [])
        return dict(rng.choice(cands)) if cands else None
    pairs = task.perturb(ex, rng, 1)
    if not pairs:
        return None
    p = {"id": f"{ex['id']}#e0", "x": pairs[0][0], "y": pairs[0][1]}
    if "meta" in ex:
        p["meta"] = ex["meta"]
    return p


def build_eval_contexts(task, split_examples, k, seed, paraphrases=None, context_types=CONTEXT_TYPES,
                        split="test", index=None):
    """The evaluation instances: [{"example", "context_type", "context": [examples], "nsim": [floats],
    "max_nsim", "position": int|None}] (type-major order; an instance whose paraphrase is missing
    is left out; zero-context instances get max_nsim 0.0). Every draw is seeded per (task, split, seed, k, example id, context type), so the
    result never depends on the model, the --limit, or which other context types are asked for."""
    if k < 1:
        raise UserError(f"--k must be >= 1 (got {k})")
    bad = [t for t in context_types if t not in CONTEXT_TYPES]
    if bad:
        raise UserError(f"unknown context type(s) {', '.join(bad)} (choose from {', '.join(CONTEXT_TYPES)})")
    pool = task.pool
    if len(pool) < k:
        raise UserError(f"the pool has {len(pool)} examples, fewer than k={k}")
    index = index if index is not None else pool_index(task)
    xs = [ex["x"] for ex in split_examples]
    need_top = any(t in context_types for t in ("similar", "random+nearest"))
    top = index.topk(xs, k)[0] if need_top and xs else None

    out = []
    for t in context_types:
        for j, ex in enumerate(split_examples):
            rng = random.Random(f"eval|{task.name}|{split}|{seed}|{k}|{ex['id']}|{t}")
            position = None
            if t == "zero":
                context = []
            elif t == "random":
                context = [pool[i] for i in _random_ids(rng, len(pool), k)]
            elif t == "similar":
                context = [pool[int(i)] for i in reversed(top[j][:k])]         # most similar last
            elif t == "random+nearest":
                near = int(top[j][0])
                context = [pool[i] for i in _random_ids(rng, len(pool), k - 1, exclude=(near,))]
                position = rng.randrange(k)
                context.insert(position, pool[near])
            else:  # random+paraphrase
                para = eval_paraphrase(task, ex, seed, paraphrases, split)
                if para is None:
                    continue
                context = [pool[i] for i in _random_ids(rng, len(pool), k - 1)]
                position = rng.randrange(k)
                context.insert(position, para)
            nsim = [float(v) for v in index.nsim(ex["x"], [c["x"] for c in context])] if context else []
            out.append({"example": ex, "context_type": t, "context": context, "nsim": nsim,
                        "max_nsim": max(nsim) if nsim else 0.0, "position": position})
    return out


# ============================================================================ run folders / flags
def explicit_dests(parser, argv):
    """Destinations of the options actually typed on the command line."""
    by_opt = {o: a.dest for a in parser._actions for o in a.option_strings}
    return {by_opt[tok.split("=", 1)[0]] for tok in argv if tok.startswith("--") and tok.split("=", 1)[0] in by_opt}


def run_task_flags(cfg):
    """Task flags saved in a train.py run config (`task_config` dict, or top-level keys)."""
    flags = cfg.get("task_config") if isinstance(cfg.get("task_config"), dict) else cfg
    return {k: flags[k] for k in TASK_KEYS if k in flags}


def resolve_adapter(path):
    """--adapter RUN, RUN/final or RUN/checkpoint-N -> (adapter dir, run config or None)."""
    from models import resolve_adapter_dir
    if not os.path.isdir(path):
        raise UserError(f"adapter folder not found: {path}")
    adapter = resolve_adapter_dir(path)
    cfg = os.path.join(os.path.dirname(os.path.abspath(adapter)), "config.json")
    return adapter, (read_json(cfg, "run config") if os.path.isfile(cfg) else None)


def apply_run_config(args, cfg, given):
    """Fill task flags and --model from a run config where the command line did not set them."""
    if not cfg:
        return []
    taken = []
    for k, v in run_task_flags(cfg).items():
        if k not in given and getattr(args, k, None) != v:
            setattr(args, k, v)
            taken.append(k)
    if args.model is None and cfg.get("model"):
        args.model = cfg["model"]
        taken.append("model")
    return taken


def default_max_new_tokens(task, tokenizer):
    """Longest pool answer in tokens (stop included), plus a margin of 25% (at least 8)."""
    answers = [task.answer(ex["y"]) for ex in task.pool]
    longest = max(len(ids) for ids in tokenizer(answers, add_special_tokens=False)["input_ids"])
    return min(1024, longest + max(8, longest // 4))


# ============================================================================ COMET
def load_comet(spec):
    """A COMET model from a checkpoint file, a downloaded model folder, or a name (hub; offline: cache)."""
    try:
        import warnings
        with warnings.catch_warnings():  # comet's imports warn about pkg_resources etc.
            warnings.simplefilter("ignore")
            from comet import download_model, load_from_checkpoint
    except ImportError:
        raise UserError("--comet needs the unbabel-comet package (pip install unbabel-comet)") from None
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"
    try:
        if os.path.isfile(spec):
            ckpt = spec
        elif os.path.isdir(spec):
            ckpt = os.path.join(spec, "checkpoints", "model.ckpt")
            if not os.path.isfile(ckpt):
                raise UserError(f"--comet {spec}: no checkpoints/model.ckpt inside")
        else:
            ckpt = download_model(spec, local_files_only=offline)
        return load_from_checkpoint(ckpt, local_files_only=offline)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001  (network, missing cache, bad checkpoint: one line for the user)
        msg = " ".join(str(e).split())[:200]
        hint = " (offline and no local checkpoint: pass --comet PATH/checkpoints/model.ckpt)" if offline else ""
        raise UserError(f"cannot load COMET model '{spec}'{hint}: {type(e).__name__}: {msg}") from None


def comet_scores(comet_model, rows, batch_size):
    import torch
    data = [{"src": r["x"], "mt": r["prediction"], "ref": r["reference"]} for r in rows]
    out = comet_model.predict(data, batch_size=batch_size, gpus=1 if torch.cuda.is_available() else 0,
                              progress_bar=False)
    return [100.0 * float(s) for s in out.scores]


# ============================================================================ reports
def fmt(s):
    if s["mean"] is None:
        return "—"
    return f"{s['mean']:.1f} [{s['ci'][0]:.1f}, {s['ci'][1]:.1f}]"


def summary_markdown(summary):
    lines = [f"# Evaluation: {summary['model']}" + (f" + {summary['adapter']}" if summary["adapter"] else ""),
             "", f"task `{summary['task']}`, split `{summary['split']}`, k={summary['k']}, seed={summary['seed']}, "
             f"metric **{summary['metric']}** (percent), mean [95% bootstrap CI], n instances.",
             f"Paraphrases for random+paraphrase: {summary['paraphrases']}.", "",
             "| context type | score | n |", "|---|---|---|"]
    for t, s in summary["by_context_type"].items():
        lines.append(f"| {t} | {fmt(s)} | {s['n']} |")
    lines += ["", "Bins of max_nsim over the non-zero context types "
              f"({summary['bins_method']}):", "", "| bin | max_nsim range | score | n |", "|---|---|---|---|"]
    for b in summary["bins"]:
        close = "]" if b["name"] == BIN_NAMES[-1] else ")"
        lines.append(f"| {b['name']} | [{b['lo']:.3f}, {b['hi']:.3f}{close} | {fmt(b)} | {b['n']} |")
    return "\n".join(lines) + "\n"


# ============================================================================ evaluate
def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    tasks.add_task_args(p)
    p.add_argument("--model", default=None, help="model name or path (default: the run's model with --adapter)")
    p.add_argument("--adapter", default=None, help="LoRA adapter folder, or a train.py run folder (uses final/; "
                   "its config.json supplies the task flags and model unless given here)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--split", default=None, help="test split (default: the task's first)")
    p.add_argument("--k", type=int, default=4, help="context size (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the evaluation contexts and bootstrap")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N test inputs only")
    p.add_argument("--context-types", default=",".join(CONTEXT_TYPES), help="comma-separated subset of "
                   + ", ".join(CONTEXT_TYPES))
    p.add_argument("--paraphrases", default=None, help="paraphrase JSONL (paraphrase.py) for random+paraphrase; "
                   "default: the task's perturbation with an evaluation seed stream")
    p.add_argument("--batch-size", type=int, default=32, help="generation batch size")
    p.add_argument("--max-new-tokens", type=int, default=None, help="default: longest pool answer + 25%%")
    p.add_argument("--bins", default="tertiles", help="'tertiles' of max_nsim (default) or fixed edges 'a,b'")
    p.add_argument("--comet", default=None, help="COMET checkpoint path or name (e.g. Unbabel/wmt22-comet-da): "
                   "MT scores become COMET-22 (task metric kept as task_score)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "compare":
        return compare_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    adapter_dir, run_cfg = resolve_adapter(args.adapter) if args.adapter else (None, None)
    taken = apply_run_config(args, run_cfg, explicit_dests(parser, argv))
    if args.model is None:
        raise UserError("--model is required (or give --adapter with a run folder whose config.json names it)")
    context_types = [t.strip() for t in args.context_types.split(",") if t.strip()]
    fixed_bins = parse_bins(args.bins)
    for name in ("k", "batch_size", "max_new_tokens", "limit"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1 (got {v})")
    if args.comet and args.task != "mt":
        raise UserError("--comet applies to the mt task only")
    print_config(args, "evaluate")
    if taken:
        print(f"from the run config: {', '.join(f'{k}={getattr(args, k)}' for k in taken)}", flush=True)
    set_seed(args.seed)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)

    # --- task, test inputs, contexts (model-independent) ---------------------------------
    task = tasks.task_from_args(args)
    split = args.split or getattr(args, "test_split", None) or next(iter(task.tests))
    examples = task.test_split(split)[:args.limit]
    print(task.describe(), f"| evaluating {len(examples)} inputs of '{split}'", flush=True)
    paraphrases = tasks.load_paraphrases(args.paraphrases, task) if args.paraphrases else None
    para_source = (f"file {args.paraphrases}" if args.paraphrases else
                   "generated by the task's perturbation (seed stream 'eval-paraphrase', distinct from training)")
    instances = build_eval_contexts(task, examples, args.k, args.seed, paraphrases, context_types, split)
    if not instances:
        raise UserError("no evaluation instances (empty split, or no paraphrases for any input)")

    # --- model + generation ----------------------------------------------------------------
    import generation
    import models
    comet_model = load_comet(args.comet) if args.comet else None   # fail early, before generating
    model, tok = models.load_with_adapter(args.model, adapter_dir, device=args.device)
    max_new = args.max_new_tokens or default_max_new_tokens(task, tok)
    prompts = [task.prompt(it["context"], it["example"]["x"], it["example"].get("meta")) for it in instances]
    counts = {t: sum(it["context_type"] == t for it in instances) for t in context_types}
    print(f"{len(instances)} instances ({', '.join(f'{t}={n}' for t, n in counts.items())}); "
          f"max_new_tokens={max_new}", flush=True)
    t0 = time.time()
    preds, stats = generation.generate(model, tok, prompts, max_new, stop=task.stop, batch_size=args.batch_size,
                                       return_stats=True)
    gen_s = time.time() - t0
    print(f"generated {stats['new_tokens']} tokens in {gen_s:.1f}s ({stats['new_tokens'] / max(gen_s, 1e-9):.1f} tok/s)",
          flush=True)

    # --- scoring -----------------------------------------------------------------------------
    rows = []
    for it, pred in zip(instances, preds):
        ex = it["example"]
        rows.append({"id": ex["id"], "context_type": it["context_type"], "context": [c["id"] for c in it["context"]],
                     "max_nsim": it["max_nsim"], "prediction": pred, "reference": ex["y"],
                     "score": float(task.score(pred, ex)), "nsim": it["nsim"], "position": it["position"]})
    metric = task.metric_name
    if comet_model is not None:
        for r, it in zip(rows, instances):
            r["x"] = it["example"]["x"]
        for r, s in zip(rows, comet_scores(comet_model, rows, args.batch_size)):
            r["task_score"], r["score"] = r["score"], s
        for r in rows:
            del r["x"]
        metric = f"comet:{args.comet}"

    # --- summary -----------------------------------------------------------------------------
    by_type, corpus = {}, {}
    for t in context_types:
        sel = [(r, it) for r, it in zip(rows, instances) if r["context_type"] == t]
        by_type[t] = summarize([r["score"] for r, _ in sel], seed=args.seed)
        if comet_model is not None:
            by_type[t]["task_metric"] = summarize([r["task_score"] for r, _ in sel], seed=args.seed)
        corpus[t] = task.corpus_metrics([r["prediction"] for r, _ in sel], [it["example"] for _, it in sel])
    ctx_rows = [r for r in rows if r["context_type"] != "zero"]
    edges = bin_edges([r["max_nsim"] for r in ctx_rows], fixed_bins)
    summary = {"metric": metric, "model": args.model, "adapter": adapter_dir, "task": task.name, "split": split,
               "k": args.k, "seed": args.seed, "n_inputs": len(examples), "context_types": context_types,
               "paraphrases": para_source, "task_metric": task.metric_name,
               "by_context_type": by_type,
               "bins_method": "fixed edges " + args.bins if fixed_bins else "tertiles of max_nsim",
               "bin_edges": edges, "bins": bin_summary(ctx_rows, edges, seed=args.seed), "corpus": corpus,
               "max_new_tokens": max_new, "generation": {"seconds": gen_s, "new_tokens": stats["new_tokens"],
                                                         "batch_size": args.batch_size},
               "task_config": {k: getattr(args, k) for k in TASK_KEYS}}
    write_jsonl_atomic(os.path.join(args.out, "predictions.jsonl"), rows)
    write_json_atomic(os.path.join(args.out, "summary.json"), summary)
    write_text_atomic(os.path.join(args.out, "summary.md"), summary_markdown(summary))
    print(summary_markdown(summary), flush=True)
    print(f"wrote {args.out}/predictions.jsonl, summary.json, summary.md", flush=True)


# ============================================================================ compare (Figure 3)
def load_eval_dir(d):
    rows = read_jsonl(os.path.join(d, "predictions.jsonl"), "predictions",
                      required=("id", "context_type", "max_nsim", "score"))
    return rows, read_json(os.path.join(d, "summary.json"), "summary")


def compare(dirs, labels, fixed_bins=None, seed=0):
    """Shared bins over the union of all folders' non-zero-context rows; per model bin summaries."""
    loaded = [load_eval_dir(d) for d in dirs]
    ctx = [[r for r in rows if r["context_type"] != "zero"] for rows, _ in loaded]
    keys = [sorted((r["id"], r["context_type"]) for r in rs) for rs in ctx]
    same = all(k == keys[0] for k in keys)
    edges = bin_edges([r["max_nsim"] for rs in ctx for r in rs], fixed_bins)
    models_ = []
    for label, (rows, summ), rs in zip(labels, loaded, ctx):
        models_.append({"label": label, "metric": summ.get("metric"), "bins": bin_summary(rs, edges, seed=seed),
                        "by_context_type": {t: summarize([r["score"] for r in rows if r["context_type"] == t],
                                                         seed=seed)
                                            for t in dict.fromkeys(r["context_type"] for r in rows)}})
    return {"edges": edges, "same_instances": same, "models": models_}


def compare_markdown(result, bins_method):
    e = result["edges"]
    metrics = sorted({m["metric"] for m in result["models"] if m["metric"]})
    lines = [f"Score ({', '.join(metrics)}; percent) by max_nsim bin ({bins_method}: low [0, {e[1]:.3f}), "
             f"medium [{e[1]:.3f}, {e[2]:.3f}), high [{e[2]:.3f}, 1]); mean [95% bootstrap CI] (n).", ""]
    types = list(dict.fromkeys(t for m in result["models"] for t in m["by_context_type"]))
    lines.append("| model | " + " | ".join(BIN_NAMES) + " | " + " | ".join(types) + " |")
    lines.append("|---" * (1 + len(BIN_NAMES) + len(types)) + "|")
    for m in result["models"]:
        cells = [f"{fmt(b)} ({b['n']})" for b in m["bins"]]
        cells += [f"{m['by_context_type'][t]['mean']:.1f}" if t in m["by_context_type"] else "—" for t in types]
        lines.append(f"| {m['label']} | " + " | ".join(cells) + " |")
    if not result["same_instances"]:
        lines += ["", "Warning: the folders were not evaluated on the same (id, context type) instances."]
    return "\n".join(lines) + "\n"


def plot_compare(result, path, title=None):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ms = result["models"]
    width = 0.8 / max(len(ms), 1)
    fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(BIN_NAMES) * max(1, len(ms)) * 0.45, 3.6))
    for j, m in enumerate(ms):
        xs = [b + (j - (len(ms) - 1) / 2) * width for b in range(len(BIN_NAMES))]
        means = [b["mean"] if b["mean"] is not None else 0.0 for b in m["bins"]]
        err = [[max(0.0, b["mean"] - b["ci"][0]) if b["ci"] else 0.0 for b in m["bins"]],
               [max(0.0, b["ci"][1] - b["mean"]) if b["ci"] else 0.0 for b in m["bins"]]]
        ax.bar(xs, means, width, yerr=err, capsize=3, label=m["label"])
    e = result["edges"]
    ax.set_xticks(range(len(BIN_NAMES)))
    ax.set_xticklabels([f"Low\n<{e[1]:.2f}", f"Medium\n{e[1]:.2f}–{e[2]:.2f}", f"High\n≥{e[2]:.2f}"])
    metrics = sorted({m["metric"] for m in ms if m["metric"]})
    ax.set_ylabel(", ".join(metrics) or "score")
    ax.set_xlabel("max target–context similarity (nsim)")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=150)
    plt.close(fig)


def compare_main(argv):
    p = argparse.ArgumentParser(prog="evaluate.py compare", allow_abbrev=False,
                                description="Figure-3-style chart: score per shared max_nsim bin, one bar per model.")
    p.add_argument("dirs", nargs="+", help="evaluation folders (evaluate.py --out)")
    p.add_argument("--labels", nargs="+", default=None, help="one label per folder (default: folder names)")
    p.add_argument("--out", required=True, help="PNG figure")
    p.add_argument("--table", default=None, help="markdown table (default: next to the figure, .md)")
    p.add_argument("--bins", default="tertiles", help="'tertiles' over the union of all folders, or 'a,b'")
    p.add_argument("--title", default=None)
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = p.parse_args(argv)
    labels = args.labels or [os.path.basename(os.path.normpath(d)) for d in args.dirs]
    if len(labels) != len(args.dirs):
        raise UserError(f"--labels: got {len(labels)} labels for {len(args.dirs)} folders")
    fixed = parse_bins(args.bins)
    print_config(args, "evaluate compare")
    result = compare(args.dirs, labels, fixed, args.seed)
    if not result["same_instances"]:
        print("warning: the folders were not evaluated on the same instances; bins are still shared", file=sys.stderr)
    md = compare_markdown(result, "fixed edges" if fixed else "tertiles of the union")
    plot_compare(result, args.out, args.title)
    table = args.table or os.path.splitext(args.out)[0] + ".md"
    write_text_atomic(table, md)
    print(md, flush=True)
    print(f"wrote {args.out} and {table}", flush=True)


if __name__ == "__main__":
    run_main(main)
