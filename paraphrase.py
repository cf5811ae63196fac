"""Paraphrases (x', y') of task inputs, for One-Near contexts and the random+paraphrase evaluation.

Back-ends (METHOD.md); --backend auto (default) = rules for mt/semparse, perturb otherwise:
  rules    meaning-preserving rewrites from hand-written data (prompts/paraphrase_rules.json),
           offline and fast: for mt (Multi30k captions) progressive <-> simple
           present, participle <-> relative clause, "in a red shirt" -> "wearing a red shirt",
           fronting of a final locative phrase, and phrase synonyms; for semparse (MTOP) phrase
           synonyms and command rewrites that never touch a slot value and never reorder, so
           the logical form stays the label. --rule-candidates random combinations are tried per
           input, validated (below), and up to --n kept, in a seeded order.
  llm      an instruction-tuned causal LM (default: the packaged SmolLM2-135M-Instruct) prompted
           with prompts/paraphrase.json (our wording of the paper's Appendix B.2 prompt; an
           optional "demo": {"sentence", "paraphrases"} key is rendered as one worked chat
           exchange before the input); greedy, or with --temperature > 0 --samples answers per
           input (top-p, seeded per input id) whose candidates are pooled. The answer is parsed
           with a tolerant JSON parser. An input with no valid candidate is retried once greedily
           with the answer pre-filled as `Original sentence: "<x>"\nParaphrases: ["`; if that
           fails too, the row comes from the rules back-end ("fallback": true). The label of an
           LLM/rule paraphrase is the original y, so only the text tasks (mt, semparse) use
           them: for alignment and sql these back-ends print a note and use perturb.
  perturb  the task's deterministic, label-preserving perturbation (tasks.Task.perturb), seeded
           per example with random.Random(f"{seed}-{id}"). For alignment/sql it changes symbols /
           literals; for mt/semparse it only edits casing/punctuation/contractions, i.e. makes
           copies, which are dropped (see below), so its mt/semparse rows are empty.

Validation (every candidate of rules and llm): rejected when empty or several lines, a copy of x
(paraphrases.is_copy: equal after lower-casing, removing punctuation, collapsing spaces, expanding
contractions and dropping a "please" frame), a copy of another input of the task, x with words only
added, a repeat, too long (> 3x + 20 chars) or too short (< half of x), nsim(x, x') < --min-nsim or
>= --max-nsim (default 0.95: near-copies), or (semparse) no longer quoting every slot value.
Whatever the back-end, a copy of x is never written (make_row drops it).

Output JSONL, one row per input (paraphrases.load_paraphrases reads it), written with a sidecar
<out>.meta.json {"kind": "paraphrases", "task", "task_fp", "backend", "split", "n", "seed",
"min_nsim", "max_nsim", ... , "complete", "inputs", "rows", "sha256"}; "complete": false marks the
periodic saves of a run still going (or interrupted): consumers refuse such a file, this script
continues it. --out must not lie inside --data.
  {"id", "x", "paraphrases": [str], "labels": [str] (alignment/sql, or whenever a label
   differs from y), "backend": "rules"|"llm"|"perturb", "fallback": true (only on llm fallbacks)}
A row may hold an empty list when no paraphrase could be made; consumers treat it as "no paraphrase".

Cache: rows already in --out for the same (id, x) are kept and never generated again,
whatever the back-end or --n was, so a re-run is free and an interrupted run continues
(the file is rewritten atomically every --save-seconds seconds and at the end). A file whose
sidecar names another task or data set (fingerprint) is refused. Delete the file (or use
another --out) to regenerate.

  python paraphrase.py --task mt --data $DATA/multi30k --max-pool 1000 --split train --out mt.train.jsonl
  python paraphrase.py --task mt --data $DATA/multi30k --max-pool 1000 --split test --test-split test --test-limit 200 --out t.jsonl
  python paraphrase.py --task semparse --data $DATA/mtop --backend llm --temperature 0.8 --samples 4 --out p.jsonl
  python paraphrase.py --task alignment --out para.jsonl
"""

import argparse
import os
import time
from collections import Counter

from contrastive_context import common
from contrastive_context import config
from contrastive_context import outputs
from contrastive_context import paraphrases
from contrastive_context import tasks
from contrastive_context.common import UserError


# ===================================================================================== arguments
def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    tasks.add_task_args(p)
    p.add_argument("--split", default="train", choices=("train", "test", "all"),
                   help="inputs to paraphrase: the pool, all test splits, or both (default: train)")
    p.add_argument("--test-limit", type=int, default=None,
                   help="with --split test/all: only the first N inputs of each test split")
    p.add_argument("--test-split", default=None,
                   help="with --split test/all: only this test split (e.g. test; default: all of the task's)")
    p.add_argument("--backend", default="auto", choices=("auto", "rules", "llm", "perturb"),
                   help="auto (default): rules for mt/semparse, perturb for alignment/sql")
    p.add_argument("--model", default="smollm2-135m", help="llm back-end: tiny, smollm2-135m, gemma3-270m or a local HF folder")
    p.add_argument("--n", type=int, default=5, help="paraphrases per input, at most (default: 5)")
    p.add_argument("--seed", type=config.SEED, default=0)
    p.add_argument("--limit", type=int, default=None, help="only the first N inputs (N >= 1; default: all)")
    p.add_argument("--batch-size", type=int, default=16, help="llm generation batch size")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="llm: answer length cap (default: room for n paraphrases of the longest input)")
    p.add_argument("--temperature", type=float, default=0.0,
                   help="llm: 0 = greedy (default); > 0 samples --samples answers per input (seeded)")
    p.add_argument("--top-p", type=float, default=0.95, help="llm sampling: nucleus mass (default 0.95)")
    p.add_argument("--samples", type=int, default=4, help="llm sampling: answers per input (default 4)")
    p.add_argument("--rule-candidates", type=int, default=24,
                   help="rules: random rewrite combinations tried per input (default 24)")
    p.add_argument("--min-nsim", type=float, default=0.2, help="reject candidates with nsim(x, x') below this")
    p.add_argument("--max-nsim", type=float, default=0.95,
                   help="reject candidates with nsim(x, x') at or above this: near-copies (default 0.95)")
    p.add_argument("--save-seconds", type=float, default=60.0,
                   help="rewrite --out at most every N seconds (and at the end); train.py's --save-every counts steps")
    p.add_argument("--out", required=True, help="output JSONL (also the cache)")
    return p


def check_args(args):
    """Ranges and paths of the flags: one UserError before anything is loaded."""
    common.check_range("n", args.n, 1, 100)
    common.check_range("batch-size", args.batch_size, 1)
    common.check_range("limit", args.limit, 1)  # --limit 0 would certify an empty file as complete
    common.check_range("test-limit", args.test_limit, 1)
    common.check_range("max-new-tokens", args.max_new_tokens, 1)
    common.check_range("min-nsim", args.min_nsim, 0.0, 1.0)
    common.check_range("max-nsim", args.max_nsim, 0.0, 1.0)
    common.check_range("temperature", args.temperature, 0.0)
    common.check_range("samples", args.samples, 1, 64)
    common.check_range("rule-candidates", args.rule_candidates, 1, 1000)
    if not 0.0 < args.top_p <= 1.0:
        raise UserError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.min_nsim >= args.max_nsim:
        raise UserError(f"--min-nsim {args.min_nsim} must be below --max-nsim {args.max_nsim}")
    common.check_output_path(args.out)
    outputs.check_out_not_input(args.out, [args.data])


def language_of(args):
    code = args.src if args.task == "mt" else args.lang
    return tasks.LANG_NAMES.get(code, code)


# ===================================================================================== steps
def choose_backend(task, backend):
    """--backend resolved: auto = rules for the text tasks, perturb otherwise; rules and llm keep the
    original label, so for the other tasks they give way to perturb (with a note)."""
    if backend == "auto":
        backend = "rules" if task.name in paraphrases.LLM_TASKS else "perturb"
    if backend in ("llm", "rules") and task.name not in paraphrases.LLM_TASKS:
        print(f"note: --backend {backend} keeps the original label, which is wrong for task '{task.name}' "
              f"(its label depends on the input's symbols/literals); using the perturb back-end", flush=True)
        backend = "perturb"
    return backend


def select_inputs(task, split, test_limit=None, test_split=None):
    """The inputs to paraphrase: the pool and/or (the first test_limit of) each or one test split."""
    exs = []
    if split in ("train", "all"):
        exs += task.pool
    if split in ("test", "all"):
        names = [test_split] if test_split else list(task.tests)
        exs += [e for name in names for e in task.test_split(name)[:test_limit]]
    return exs


def run_meta(task, backend, args):
    """The sidecar of this run's file (before "complete" and "inputs")."""
    meta = paraphrases.paraphrase_meta(task, backend, args.split, test_split=args.test_split,
                                       test_limit=args.test_limit, n=args.n, seed=args.seed,
                                       min_nsim=args.min_nsim, max_nsim=args.max_nsim)
    if backend == "llm":
        meta.update(model=args.model, temperature=args.temperature, top_p=args.top_p,
                    samples=args.samples if args.temperature > 0 else 1, fallback="rules")
    if backend == "rules":
        meta.update(rule_candidates=args.rule_candidates)
    return meta


def build_maker(backend, task, validator, args, todo):
    """The back-end object that makes rows (None: the perturb back-end, row by row). The llm back-end
    (with the rules back-end as its fallback) only when there is something to do: no model is loaded
    for a run read entirely from the cache."""
    maker = None
    if backend == "rules" or (backend == "llm" and todo):
        maker = paraphrases.RuleBackend(task, validator, args.n, args.rule_candidates)
    if backend == "llm" and todo:
        maker = paraphrases.LLMBackend(args.model, task, language_of(args), validator, args.n, args.batch_size,
                                       args.max_new_tokens, args.temperature or None, args.top_p, args.samples,
                                       fallback=maker)
    return maker


def paraphrase_inputs(task, maker, todo, rows, args, meta, n_inputs, cache_partial):
    """The new rows of `todo`, chunk by chunk. --out (cached `rows` + new ones) is rewritten every
    --save-seconds seconds with "complete": false, and once more at the end ("complete": true) or on an
    interruption or error (still false). Loop and try/finally stay whole: the finally saves every row made."""
    new_rows, last_save = [], time.monotonic()
    chunk = args.batch_size if meta["backend"] == "llm" else 200
    finished = False
    # saves before the end say "complete": false (sample_contexts/train/evaluate refuse such a file;
    # this script continues it); the last one, once every input is done, "complete": true
    partial_meta = {**meta, "complete": False, "inputs": n_inputs}
    try:
        bar = common.progress(total=len(todo), desc=f"paraphrase ({meta['backend']})", unit="input")
        for i in range(0, len(todo), chunk):
            exs = todo[i:i + chunk]
            new_rows += (maker.rows(exs, args.seed) if maker
                         else [paraphrases.perturb_row(task, e, args.n, args.seed) for e in exs])
            bar.update(len(exs))
            if time.monotonic() - last_save > args.save_seconds:
                paraphrases.write_paraphrase_file(args.out, rows + new_rows, partial_meta)
                last_save = time.monotonic()
        bar.close()
        finished = True
    finally:  # keep what was made, also on an interruption or an error
        if new_rows or not os.path.exists(args.out) or (finished and cache_partial):
            paraphrases.write_paraphrase_file(args.out, rows + new_rows,
                                              {**meta, "complete": True, "inputs": n_inputs} if finished
                                              else partial_meta)
    return new_rows


def print_summary(task, index, new_rows, n_cached, validator, maker, out, seconds):
    by_backend = Counter(r["backend"] for r in new_rows)
    sims = {b: [] for b in by_backend}
    for r in new_rows:
        if r["paraphrases"]:
            sims[r["backend"]] += index.nsim(r["x"], r["paraphrases"])
    stats = maker.stats if maker else Counter()
    print("== summary ==")
    print(f"  cached rows reused  {n_cached}")
    counts = "".join(f"{b}: {c}; " for b, c in sorted(by_backend.items()))
    with_any = sum(bool(r["paraphrases"]) for r in new_rows)
    print(f"  new rows            {len(new_rows)}  ({counts}llm fallbacks: {stats['fallback']}; "
          f"without any paraphrase: {len(new_rows) - with_any})")
    if new_rows:
        print(f"  acceptance          {with_any / len(new_rows):.3f} of inputs have >= 1 valid paraphrase; "
              f"{sum(len(r['paraphrases']) for r in new_rows) / len(new_rows):.2f} paraphrases per input")
    if stats.get("generated") and isinstance(maker, paraphrases.LLMBackend):
        print(f"  generated (llm)     {stats['generated']} answers ({stats['retried']} retries, "
              f"{stats['unparseable']} unparseable answers)")
    if validator.candidates:
        rej = sum(validator.rejected.values())
        reasons = ", ".join(f"{k}: {v}" for k, v in validator.rejected.most_common())
        print(f"  rejection rate      {rej / validator.candidates:.3f} ({rej}/{validator.candidates} candidates"
              + (f"; {reasons}" if reasons else "") + ")")
    else:
        print("  rejection rate      n/a (no validated candidates)")
    for b, s in sorted(sims.items()):
        mean = f"{sum(s) / len(s):.3f}" if s else "n/a"
        print(f"  mean nsim(x, x')    {b}: {mean} over {len(s)} paraphrases")
    print(f"  time                {seconds:.1f} s for {len(new_rows)} new rows")
    print(f"  wrote {out}", flush=True)


# ===================================================================================== main
def main(argv=None):
    args = build_parser().parse_args(argv)
    check_args(args)
    common.print_config(config.applicable(args), "paraphrase.py")
    common.set_seed(args.seed)
    task = tasks.task_from_args(args)
    print(task.describe(), flush=True)
    backend = choose_backend(task, args.backend)

    inputs = select_inputs(task, args.split, args.test_limit, args.test_split)[:args.limit]
    if not inputs:
        raise UserError(f"no inputs to paraphrase (--split {args.split}): nothing would be written")
    dup = [k for k, c in Counter(e["id"] for e in inputs).items() if c > 1]
    if dup:
        raise UserError(f"duplicate example ids in the selected inputs (e.g. {dup[0]}): rows would clash")
    meta = run_meta(task, backend, args)
    rows, cache_partial = paraphrases.read_cache(args.out, task)
    done = {(r["id"], r["x"]) for r in rows}
    todo = [e for e in inputs if (e["id"], e["x"]) not in done]
    print(f"{len(inputs)} inputs ({args.split}): {len(inputs) - len(todo)} cached in {args.out}, "
          f"{len(todo)} to do with the {backend} back-end", flush=True)

    from contrastive_context.similarity import PoolIndex
    index = PoolIndex(task.pool, task.tokenize)
    validator = paraphrases.Validator(task, index, args.min_nsim, args.max_nsim)
    maker = build_maker(backend, task, validator, args, todo)
    t0 = time.monotonic()
    new_rows = paraphrase_inputs(task, maker, todo, rows, args, meta, len(inputs), cache_partial)
    print_summary(task, index, new_rows, len(inputs) - len(todo), validator, maker, args.out,
                  time.monotonic() - t0)


if __name__ == "__main__":
    common.run_main(main)
