"""Evaluation as a library: the evaluation contexts, similarity bins, scoring and reports shared by
evaluate.py, probes.py, figure3.py and train.py's before/after check.

Context types (for each test input x; k pool examples):
  zero               no context (the reference);
  random             k random pool examples;
  similar            the top-k BM25 pool examples, the most similar placed last;
  random+nearest     k-1 random examples + the single most similar pool example, at a random position;
  random+paraphrase  k-1 random examples + one paraphrase (x', y') of x itself, at a random position:
                     from a paraphrase file, else made with the task's perturbation under the seed
                     stream "eval-paraphrase|..." (not the one paraphrase.py uses for training).
  random+counterfactual  k-1 random examples + a counterfactual near-duplicate (x~, y~) of x whose
                     answer differs from y in one known span (counterfactual.py, the family train.py
                     trains on; cf_family="heldout": counterfactual_heldout.py), at a random position; rows also get cf_copy (the answer copies y~'s span) and edit_ok (the
                     span is right for x). Inputs with no valid edit are left out.
The model "copier" (no weights) answers with the label of the context example most similar to x; the model
"source-copier" (no weights) answers with x itself (MT: the untranslated source; the floor a model that
leaves its input untranslated reaches, e.g. on software messages whose names and placeholders recur in y).
Contexts depend only on (task, split, seed, k, paraphrase file), never on the model, so every
model is scored on the very same instances. A test input with no BM25 token (e.g. ".") has no
neighbours: its similar / nearest examples are random pool examples (max_nsim says so: 0).
"""
import os
import random

import numpy as np

from . import contexts
from .common import UserError, read_json
from .config import CF_FAMILIES
from .common import progress as progress_bar
from .stats import fmt, summarize

CONTEXT_TYPES = ("zero", "random", "similar", "random+nearest", "random+paraphrase", "random+counterfactual")
COPIER = "copier"
SOURCE_COPIER = "source-copier"
BASELINES = (COPIER, SOURCE_COPIER)  # the weightless models: no --adapter, no generation
BIN_NAMES = ("low", "medium", "high")


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
    from .similarity import PoolIndex
    return PoolIndex(task.pool, task.tokenize)


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


def eval_counterfactual(task, ex, seed, split="test", family="train"):
    """The counterfactual near-duplicate of a test input, or None: of the training family (counterfactual.py,
    seeded by the stream "eval-counterfactual|task|split|seed|id") or of the held-out family
    (counterfactual_heldout.py, stream "eval-counterfactual-heldout|task|split|seed|id"); independent of k
    and of the model."""
    if family == "train":
        from . import counterfactual
        return counterfactual.make(task, ex, random.Random(f"eval-counterfactual|{task.name}|{split}|{seed}|{ex['id']}"))
    if family == "heldout":
        from . import counterfactual_heldout
        return counterfactual_heldout.make(
            task, ex, random.Random(f"eval-counterfactual-heldout|{task.name}|{split}|{seed}|{ex['id']}"))
    raise UserError(f"unknown counterfactual family {family!r} (choose from {', '.join(CF_FAMILIES)})")


def build_eval_contexts(task, split_examples, k, seed, paraphrases=None, context_types=CONTEXT_TYPES,
                        split="test", index=None, cf_family="train"):
    """The evaluation instances: [{"example", "context_type", "context": [examples], "nsim": [floats],
    "max_nsim", "position": int|None}] (type-major order; an instance whose paraphrase is missing
    is left out; zero-context instances get max_nsim 0.0). Every draw is seeded per (task, split, seed, k, example id, context type), so the
    result never depends on the model, the --limit, or which other context types are asked for.
    random+counterfactual holds a counterfactual of `cf_family` (eval_counterfactual: its own seed stream per
    family); its k - 1 random examples and position come from the context type's stream, so the two families
    put their counterfactuals among the same random examples at the same position."""
    if cf_family not in CF_FAMILIES:
        raise UserError(f"unknown counterfactual family {cf_family!r} (choose from {', '.join(CF_FAMILIES)})")
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
    top = contexts.neighbours(index, task.tokenize, xs, k)[0] if need_top else None

    out = []
    for t in context_types:
        for j, ex in enumerate(split_examples):
            rng = random.Random(f"eval|{task.name}|{split}|{seed}|{k}|{ex['id']}|{t}")
            position = None
            if t == "zero":
                context = []
            elif t == "random":
                context = [pool[i] for i in contexts.random_ids(rng, len(pool), (), k)]
            elif t == "similar":
                near_k = top[j][:k] or contexts.random_ids(rng, len(pool), (), k)  # no BM25 token: random
                context = [pool[int(i)] for i in reversed(near_k)]             # most similar last
            elif t == "random+nearest":
                near = int(top[j][0]) if top[j] else contexts.random_ids(rng, len(pool), (), 1)[0]
                context = [pool[i] for i in contexts.random_ids(rng, len(pool), (near,), k - 1)]
                position = rng.randrange(k)
                context.insert(position, pool[near])
            else:  # random+paraphrase, random+counterfactual
                para = (eval_paraphrase(task, ex, seed, paraphrases, split) if t == "random+paraphrase"
                        else eval_counterfactual(task, ex, seed, split, cf_family))
                if para is None:
                    continue
                context = [pool[i] for i in contexts.random_ids(rng, len(pool), (), k - 1)]
                position = rng.randrange(k)
                context.insert(position, para)
            nsim = [float(v) for v in index.nsim(ex["x"], [c["x"] for c in context])] if context else []
            inst = {"example": ex, "context_type": t, "context": context, "nsim": nsim,
                    "max_nsim": max(nsim) if nsim else 0.0, "position": position}
            if t == "random+counterfactual":
                inst["cf"] = para
            out.append(inst)
    return out


# ============================================================================ generation settings
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


def summary_markdown(summary):
    lines = [f"# Evaluation: {summary['model']}" + (f" + {summary['adapter']}" if summary["adapter"] else ""),
             "", f"task `{summary['task']}`, split `{summary['split']}`, k={summary['k']}, seed={summary['seed']}, "
             f"metric **{summary['metric']}** (percent), mean [95% bootstrap CI], n instances.",
             f"Paraphrases for random+paraphrase: {summary['paraphrases']}.", "",
             "| context type | score | n |", "|---|---|---|"]
    for t, s in summary["by_context_type"].items():
        lines.append(f"| {t} | {fmt(s)} | {s['n']} |")
    cf = summary.get("counterfactual")
    if cf:
        family = f", held-out family (`--cf-family {summary['cf_family']}`)" if summary.get("cf_family") else ""
        lines += ["", f"random+counterfactual ({cf['n']} instances{family}): edit-ok {fmt(cf['edit_ok'])} % (the edited span "
                  f"is right for x), cf-copy {fmt(cf['cf_copy'])} % (the answer copies the counterfactual's span)."]
    e = summary["bin_edges"]
    lines += ["", f"Bins of max_nsim ({summary['bins_method']}: low [0, {e[1]:.3f}), medium [{e[1]:.3f}, "
              f"{e[2]:.3f}), high [{e[2]:.3f}, 1]), over all non-zero context types and within each:", "",
              "| context type | low | medium | high |", "|---|---|---|---|"]
    groups = [("all", summary["bins"])] + list(summary.get("bins_by_context_type", {}).items())
    for name, bins in groups:
        lines.append(f"| {name} | " + " | ".join(f"{fmt(b)} ({b['n']})" for b in bins) + " |")
    return "\n".join(lines) + "\n"


# ============================================================================ generation + scoring
def baseline_answer(model, context, nsim, example):
    """A weightless baseline's answer: the copier's (the label of the most similar context example) or
    the source copier's (the input x itself)."""
    if model == SOURCE_COPIER:
        return example["x"]
    from . import counterfactual
    return counterfactual.copier_answer(context, nsim)


def instance_prompts(task, instances):
    return [task.prompt(it["context"], it["example"]["x"], it["example"].get("meta")) for it in instances]


def predict(model, tok, task, instances, max_new, batch_size=16, done=None, on_chunk=None, chunk_batches=8,
            desc="generate"):
    """Greedy predictions for the instances' prompts -> (rows, generation stats).

    Resumable: the prompts are generated in chunks of `chunk_batches` batches, taken in the order
    generation.generate batches them (longest prompt first), so every batch holds the same
    prompts whether the work runs in one go or is resumed: the predictions are identical.
    `done` = {instance index: prediction} of whole chunks from an interrupted run (skipped);
    `on_chunk(predictions, new_tokens)` is called after each chunk generated here (evaluate.py
    saves its progress file there). stats = {"new_tokens": generated here, "reused": len(done)}.
    The progress bar (`desc`) moves after every batch, not every chunk."""
    if model in BASELINES:  # the weightless baselines: no generation
        preds = {i: baseline_answer(model, it["context"], it["nsim"], it["example"]) for i, it in enumerate(instances)}
        return score_rows(task, instances, preds), {"new_tokens": 0, "reused": 0}
    from . import generation
    prompts = instance_prompts(task, instances)
    lengths = [len(ids) for ids in tok(prompts, add_special_tokens=True)["input_ids"]]
    order = sorted(range(len(prompts)), key=lambda i: (-lengths[i], i))
    size = batch_size * chunk_batches
    preds = {i: p for i, p in (done or {}).items() if 0 <= i < len(prompts)}
    todo = [c for c in (order[s:s + size] for s in range(0, len(order), size)) if any(i not in preds for i in c)]
    reused = len(prompts) - sum(len(c) for c in todo)
    new_tokens = 0
    bar = progress_bar(total=len(prompts), initial=reused, desc=desc, unit="prompt")
    try:
        for chunk in todo:
            out, st = generation.generate(model, tok, [prompts[i] for i in chunk], max_new, stop=task.stop,
                                          batch_size=batch_size, return_stats=True, progress=False,
                                          on_batch=bar.update)
            preds.update(zip(chunk, out))
            new_tokens += st["new_tokens"]
            if on_chunk is not None:
                on_chunk(preds, new_tokens)
    finally:
        bar.close()
    return score_rows(task, instances, preds), {"new_tokens": new_tokens, "reused": reused}


def score_rows(task, instances, preds):
    """The predictions.jsonl rows: prediction, score against the reference, and for counterfactual
    instances the counterfactual's label and edit with cf_copy / edit_ok (counterfactual.judge)."""
    from . import counterfactual
    rows = []
    for i, it in enumerate(instances):
        ex, pred = it["example"], preds[i]
        row = {"id": ex["id"], "context_type": it["context_type"], "context": [c["id"] for c in it["context"]],
               "max_nsim": it["max_nsim"], "prediction": pred, "reference": ex["y"],
               "score": float(task.score(pred, ex)), "nsim": it["nsim"], "position": it["position"]}
        if it.get("cf") is not None:
            row.update(cf_x=it["cf"]["x"], cf_reference=it["cf"]["y"], edit=it["cf"]["edit"],
                       **counterfactual.judge(task, pred, ex, it["cf"]))
        rows.append(row)
    return rows


def by_context_type(rows, context_types, seed=0, key="score"):
    """{context type: summarize(scores)} in the given order."""
    return {t: summarize([r[key] for r in rows if r["context_type"] == t], seed=seed) for t in context_types}


def format_by_type(summaries, labels):
    """A small text table: one line per context type, one column per model (mean only)."""
    types = list(dict.fromkeys(t for s in summaries for t in s))
    w = max([len("context type")] + [len(t) for t in types]) + 2
    lines = [f"{'context type':<{w}}" + "".join(f"{l:>14}" for l in labels)]
    for t in types:
        cells = [f"{s[t]['mean']:>14.1f}" if t in s and s[t]["mean"] is not None else f"{'—':>14}" for s in summaries]
        lines.append(f"{t:<{w}}" + "".join(cells))
    return "\n".join(lines)


def build_summary(task, rows, instances, context_types, seed, fixed_bins=None, bins_spec="tertiles", comet=False):
    """The model-independent part of summary.json: per context type, then per max_nsim bin (overall
    and within each non-zero context type, so bins never just re-sort context types)."""
    by_type, corpus = by_context_type(rows, context_types, seed), {}
    for t in context_types:
        sel = [(r, it) for r, it in zip(rows, instances) if r["context_type"] == t]
        if comet:
            by_type[t]["task_metric"] = summarize([r["task_score"] for r, _ in sel], seed=seed)
        corpus[t] = task.corpus_metrics([r["prediction"] for r, _ in sel], [it["example"] for _, it in sel]) \
            if sel else {}
    ctx_rows = [r for r in rows if r["context_type"] != "zero"]
    edges = bin_edges([r["max_nsim"] for r in ctx_rows], fixed_bins)
    within = {t: bin_summary([r for r in ctx_rows if r["context_type"] == t], edges, seed=seed)
              for t in context_types if t != "zero"}
    cf_rows = [r for r in rows if "edit_ok" in r]
    counterfactual = ({"n": len(cf_rows), "edit_ok": summarize([100.0 * r["edit_ok"] for r in cf_rows], seed=seed),
                       "cf_copy": summarize([100.0 * r["cf_copy"] for r in cf_rows], seed=seed)}
                      if cf_rows else None)
    return {"task": task.name, "seed": seed, "context_types": list(context_types), "task_metric": task.metric_name,
            "by_context_type": by_type, "counterfactual": counterfactual,
            "bins_method": "fixed edges " + bins_spec if fixed_bins else "tertiles of max_nsim",
            "bin_edges": edges, "bins": bin_summary(ctx_rows, edges, seed=seed), "bins_by_context_type": within,
            "corpus": corpus}


# ============================================================================ reading evaluation folders
def test_fingerprint(examples):
    """Short hash of a test split (ids, inputs, references): evaluations of different test sets that
    happen to share ids carry different fingerprints (summary.json "test_fp"; figure3.py compares them)."""
    import hashlib
    h = hashlib.sha256()
    for ex in examples:
        h.update(("\x00" + str(ex["id"]) + "\x01" + str(ex["x"]) + "\x02" + str(ex["y"])).encode("utf-8"))
    return h.hexdigest()[:12]


PREDICTION_TYPES = {"id": str, "context_type": str, "max_nsim": float, "score": float}


def read_eval_folder(folder, types=None, need_summary=True):
    """(rows, summary, sidecar or None) of an evaluation folder (evaluate.py --out), or ONE UserError
    when it cannot be read honestly:
      * a folder evaluate.py did not finish, or changed since (its cc_output.json: outputs.check_complete);
        folders without that marker (older ones, made by hand) are read as they are;
      * predictions.jsonl whose .meta.json sidecar is of another kind or whose sha256 no longer matches
        its content (common.check_meta; a file without a sidecar is read as it is);
      * no prediction rows; a row without the fields of `types` (default PREDICTION_TYPES: id, context
        type, finite max_nsim and score), with a context type evaluate.py does not write
        (CONTEXT_TYPES), or repeating an (id, context type); summary.json not an object; sidecar and
        summary naming different tasks. With need_summary=False a folder without summary.json gives {}."""
    import math
    from .common import check_meta, read_jsonl
    from .outputs import check_complete
    if not os.path.isdir(folder):
        raise UserError(f"evaluation folder not found: {folder}")
    check_complete(folder, "evaluation", "evaluation (evaluate.py --out)")
    path = os.path.join(folder, "predictions.jsonl")
    meta = check_meta(path, "predictions")
    types = types or PREDICTION_TYPES
    rows = read_jsonl(path, "predictions", required=tuple(types),
                      types={k: t for k, t in types.items() if t is not float})
    if not rows:
        raise UserError(f"{path} holds no predictions (an empty evaluation)")
    seen = {}
    for n, r in enumerate(rows, 1):
        for k in (k for k, t in types.items() if t is float):
            v = r[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise UserError(f"{path}:{n}: '{k}' must be a finite number, got {v!r}")
        if r["context_type"] not in CONTEXT_TYPES:
            raise UserError(f"{path}: row {n}: unknown context type {r['context_type']!r} (evaluate.py writes "
                            f"{', '.join(CONTEXT_TYPES)})")
        key = (r["id"], r["context_type"])
        if key in seen:
            raise UserError(f"{path}: rows {seen[key]} and {n} both hold test input {key[0]} under "
                            f"{key[1]}: a prediction file holds each (id, context type) once")
        seen[key] = n
    summary_path = os.path.join(folder, "summary.json")
    summary = read_json(summary_path, "summary") if need_summary or os.path.lexists(summary_path) else {}
    if not isinstance(summary, dict):
        raise UserError(f"{os.path.join(folder, 'summary.json')}: expected a JSON object")
    if meta and meta.get("task") and summary.get("task") and meta["task"] != summary["task"]:
        raise UserError(f"{folder}: predictions.jsonl is of task {meta['task']}, summary.json of task "
                        f"{summary['task']}")
    return rows, summary, meta


def check_comparable(evals):
    """evals: [(folder, rows, summary, sidecar)] read by read_eval_folder. ONE UserError when they cannot
    share a table: another task, another metric (chrF beside exact match, or COMET), another test split
    or test set (summary "test_fp", or a test id whose reference differs: two test sets with the same
    ids). Fields a folder does not record (hand-made folders) are not compared."""
    def value(summary, meta, key):
        if key == "task":
            return summary.get("task") or (meta or {}).get("task")
        if key == "metric":
            return summary.get("metric") or summary.get("task_metric")
        return summary.get(key)
    for key, what in (("task", "task"), ("metric", "metric"), ("split", "test split"),
                      ("test_fp", "test set (fingerprint of its ids, inputs and references)")):
        first = None
        for d, _, summary, meta in evals:
            v = value(summary, meta, key)
            if v is None:
                continue
            if first is None:
                first = (v, d)
            elif v != first[0]:
                raise UserError(f"{first[1]} and {d} differ in their {what}: {first[0]!r} vs {v!r}; only "
                                f"evaluations of the same task, metric and test set can be compared")
    refs = {}
    for d, rows, _, _ in evals:
        for r in rows:
            if "reference" not in r:
                continue
            prev = refs.setdefault(r["id"], (r["reference"], d))
            if prev[0] != r["reference"]:
                raise UserError(f"test input {r['id']} has another reference in {d} than in {prev[1]}: the "
                                f"folders were evaluated on different test sets that share ids")
