"""Paraphrases (x', y') of task inputs, for One-Near contexts and the random+paraphrase evaluation.

Two back-ends (SPEC "Paraphrases"):
  llm      an instruction-tuned causal LM (default: the packaged SmolLM2-135M-Instruct) prompted
           with prompts/paraphrase.json (our wording of the paper's Appendix B.2 prompt; an
           optional "demo": {"sentence", "paraphrases"} key is rendered as one worked chat
           exchange before the input). The answer is parsed with a tolerant JSON parser and
           every candidate is validated: non-empty, one line, not identical to x, between half
           and 3x (+20 chars) as long as x, nsim(x, x') >= --min-nsim, not a copy of another
           input of the task, and (semparse) still quoting every slot value of the label.
           An input with no valid candidate is retried once with the answer pre-filled as
           `Original sentence: "<x>"\nParaphrases: ["` (the prompt's own example format;
           greedy, so deterministic); if that fails too, the row falls back to the task's
           perturbation and says so ("backend": "perturb", "fallback": true). The label of an
           LLM paraphrase is the original y, so only the text tasks (mt, semparse) use it: for
           alignment (symbol strings) and sql (the label depends on the literals)
           `--backend llm` prints a note and uses the perturb back-end.
  perturb  the task's deterministic, label-preserving perturbation (tasks.Task.perturb), seeded
           per example with random.Random(f"{seed}-{id}"): offline and fast.

Output JSONL, one row per input (tasks.load_paraphrases reads it):
  {"id", "x", "paraphrases": [str], "labels": [str] (alignment/sql, or whenever a label
   differs from y), "backend": "llm"|"perturb", "fallback": true (only on llm fallbacks)}
A row may hold an empty list when no paraphrase could be made (e.g. an SQL example with no
literal shared by question and query); consumers treat it as "no paraphrase".

Cache: rows already in --out for the same (id, x) are kept and never generated again,
whatever the back-end or --n was, so a re-run is free and an interrupted run continues
(the file is rewritten atomically every --save-every seconds and at the end). Delete the
file (or use another --out) to regenerate.

  python paraphrase.py --task mt --data ../shared/data/multi30k --split train --backend llm --out para.jsonl
  python paraphrase.py --task alignment --backend perturb --out para.jsonl
"""
import argparse
import ast
import json
import os
import random
import re
import time
from collections import Counter

import common
import tasks
from common import UserError

LLM_TASKS = ("mt", "semparse")  # tasks whose label survives a free-form rewording of x


# ===================================================================================== parsing
_FENCE = re.compile(r"```[a-zA-Z]*")
_QUOTED = re.compile(r'"((?:[^"\\\n]|\\.)*)"')
_ITEM_LINE = re.compile(r"^\s*(?:\d+\s*[.):]|[-*\u2022])\s*(.+?)\s*$")


def _close_json(text):
    """Make a truncated JSON-ish text loadable: drop an unterminated last string, drop
    trailing commas, close open brackets."""
    stack, in_str, str_start, esc = [], None, 0, False
    for i, ch in enumerate(text):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == in_str:
                in_str = None
        elif ch in "\"'" and (ch == '"' or not text[i - 1:i].isalnum()):
            in_str, str_start = ch, i
        elif ch in "[{":
            stack.append("]" if ch == "[" else "}")
        elif ch in "]}" and stack:
            stack.pop()
    if in_str:  # a string cut off mid-way: drop it (it would be a partial sentence)
        text = text[:str_start]
        text = re.sub(r'[\s,]*("[^"]*"\s*:\s*)?$', "", text)  # and a dangling `"key":`
    text = text.rstrip().rstrip(",").rstrip()
    if text.endswith(":"):
        text += " null"
    return text + "".join(reversed(stack))


def _strings(obj):
    """All strings in a parsed answer, in order: a list, a dict of lists
    ({"Sentence 1": [...]}, {"paraphrases": [...]}) or a dict of strings ({"1": "..."})."""
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return [s for o in obj for s in _strings(o)]
    return []


def _load_any(text):
    fixed = re.sub(r",\s*([\]}])", r"\1", text)  # trailing commas
    fixed = re.sub(r'(?<!\\)"\s+"', '", "', fixed)  # missing commas between strings
    raw = json.JSONDecoder().raw_decode  # ignores text after the JSON value
    for loader, t in ((raw, text), (raw, fixed), (ast.literal_eval, fixed)):
        try:  # literal_eval: single quotes, True/None
            obj = loader(t)
            return obj[0] if loader is raw else obj
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
    return None


def _clean(s):
    s = " ".join(str(s).split())
    while len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        s = s[1:-1].strip()
    return s


def parse_paraphrases(text, n=None):
    """Paraphrases found in an LLM answer, tolerant to messy output: code fences, text before
    or after the JSON, trailing commas, single quotes, a truncated list, the dict form
    {"Sentence 1": [...]}, numbered or bulleted lines. Fewer than n items is fine; empty and
    repeated items are dropped; at most n are returned."""
    text = _FENCE.sub("", text or "").strip()
    found = []
    start = min([i for i in (text.find("["), text.find("{")) if i >= 0], default=-1)
    if start >= 0:
        obj = _load_any(_close_json(text[start:]))
        found = _strings(obj) if obj is not None else []
        if not found:  # not loadable: take the double-quoted strings that are not dict keys
            found = [m.group(1) for m in _QUOTED.finditer(text[start:])
                     if not text[start + m.end():].lstrip().startswith(":")]
            found = [_load_any(f'"{s}"') or s for s in found]
    if not found:
        found = [m.group(1) for line in text.splitlines() if (m := _ITEM_LINE.match(line))]
    out = []
    for s in map(_clean, found):
        if s and s not in out:
            out.append(s)
    return out[:n] if n else out


# ===================================================================================== validation
def _norm(s):
    return " ".join(s.lower().split())


def slot_values(task, ex):
    """Text spans the label quotes and a paraphrase must keep (semparse slot values)."""
    if task.name == "semparse":
        return re.findall(r"\[SL:\S+ ([^\[\]]+?) \]", ex["y"])
    return []


class Validator:
    """Checks LLM candidates for one task; counts rejections by reason."""

    def __init__(self, task, index, min_nsim):
        self.task, self.index, self.min_nsim = task, index, min_nsim
        self.inputs = {_norm(e["x"]) for e in task.pool + [e for t in task.tests.values() for e in t]}
        self.rejected = Counter()
        self.candidates = 0

    def __call__(self, ex, cands, n):
        x, ok, seen = ex["x"], [], {_norm(ex["x"])}
        sims = self.index.nsim(x, cands) if cands else []
        for c, sim in zip(cands, sims):
            self.candidates += 1
            key = _norm(c)
            reason = ("empty" if not c.strip() else
                      "multiline" if "\n" in c else
                      "same_as_x" if key == _norm(x) else
                      "duplicate" if key in seen else
                      "too_long" if len(c) > 3 * len(x) + 20 else
                      "too_short" if len(c) < len(x) / 2 else  # most likely dropped content
                      "copy_of_input" if key in self.inputs else
                      "low_nsim" if sim < self.min_nsim else
                      "lost_slot" if any(v.lower() not in c.lower() for v in slot_values(self.task, ex)) else
                      None)
            if reason:
                self.rejected[reason] += 1
            elif len(ok) < n:
                seen.add(key)
                ok.append((c, float(sim)))
        return ok


# ===================================================================================== back-ends
def perturb_row(task, ex, n, seed):
    """The row of the perturb back-end for one example (deterministic given seed and id)."""
    pairs = task.perturb(ex, random.Random(f"{seed}-{ex['id']}"), n)
    return make_row(task, ex, [p for p, _ in pairs], [y for _, y in pairs], "perturb")


def make_row(task, ex, paras, labels, backend):
    row = {"id": ex["id"], "x": ex["x"], "paraphrases": list(paras)}
    if task.name in ("alignment", "sql") or any(y != ex["y"] for y in labels):
        row["labels"] = list(labels)
    row["backend"] = backend
    return row


def render_prompt(tok, template, n, language, sentence, prefill=""):
    """The paraphrase prompt, through the tokenizer's chat template when it has one."""
    turns = []
    demo = template.get("demo")  # optional {"sentence", "paraphrases"}: one worked exchange first
    if demo:
        turns += [("user", template["user"].format(n=len(demo["paraphrases"]), language=language,
                                                   sentence=demo["sentence"])),
                  ("assistant", json.dumps(demo["paraphrases"], ensure_ascii=False))]
    turns.append(("user", template["user"].format(n=n, language=language, sentence=sentence)))
    if getattr(tok, "chat_template", None):
        msgs = [{"role": "system", "content": template["system"]}] + [{"role": r, "content": c} for r, c in turns]
        text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    else:
        text = template["system"] + "".join(f"\n\n{c}" for _, c in turns) + "\n"
    return text + prefill


def max_new_tokens_for(tok, xs, n):
    """Room for n paraphrases of the longest input (about 1.5x its length each), capped."""
    longest = max(len(tok(x, add_special_tokens=False)["input_ids"]) for x in xs)
    return min(768, 24 + n * (int(1.5 * longest) + 8))


def retry_prefill(x):
    """Start of the answer for the retry: restate the input and open the JSON list."""
    return f'Original sentence: "{x}"\nParaphrases: ["'


class LLMBackend:

    def __init__(self, model_name, task, language, validator, n, batch_size, max_new_tokens=None):
        import models
        self.model, self.tok = models.load(model_name)
        self.task, self.language, self.validator = task, language, validator
        self.n, self.batch_size, self.max_new_tokens = n, batch_size, max_new_tokens
        self.template = tasks.load_template("paraphrase")
        self.stats = Counter()

    def _ask(self, exs, retry):
        import generation
        prefills = [retry_prefill(e["x"]) if retry else "" for e in exs]
        prompts = [render_prompt(self.tok, self.template, self.n, self.language, e["x"], pre)
                   for e, pre in zip(exs, prefills)]
        mnt = self.max_new_tokens or max_new_tokens_for(self.tok, [e["x"] for e in exs], self.n)
        # stop at the first "]": the list (or the dict's first list) is closed; the parser copes
        outs = generation.generate(self.model, self.tok, prompts, max_new_tokens=mnt, stop="]",
                                   batch_size=self.batch_size, progress=False)
        self.stats["generated"] += len(exs)
        results = []
        for ex, out in zip(exs, outs):
            cands = parse_paraphrases(('["' if retry else "") + out)
            if not cands:
                self.stats["unparseable"] += 1
            results.append(self.validator(ex, cands, self.n))
        return results

    def rows(self, exs, seed):
        """Rows for a batch of examples (retry, then perturb fallback, for empty results)."""
        results = dict(enumerate(self._ask(exs, retry=False)))
        retry = [i for i, r in results.items() if not r]
        if retry:
            self.stats["retried"] += len(retry)
            for i, r in zip(retry, self._ask([exs[i] for i in retry], retry=True)):
                results[i] = r
        rows = []
        for i, ex in enumerate(exs):
            if results[i]:
                rows.append(make_row(self.task, ex, [p for p, _ in results[i]], [ex["y"]] * len(results[i]), "llm"))
            else:
                self.stats["fallback"] += 1
                rows.append(dict(perturb_row(self.task, ex, self.n, seed), fallback=True))
        return rows


# ===================================================================================== main
def select_inputs(task, split):
    exs = []
    if split in ("train", "all"):
        exs += task.pool
    if split in ("test", "all"):
        exs += [e for t in task.tests.values() for e in t]
    return exs


def language_of(args):
    code = args.src if args.task == "mt" else args.lang
    return tasks.LANG_NAMES.get(code, code)


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    tasks.add_task_args(p)
    p.add_argument("--split", default="train", choices=("train", "test", "all"),
                   help="inputs to paraphrase: the pool, all test splits, or both (default: train)")
    p.add_argument("--backend", default="perturb", choices=("llm", "perturb"), help="default: perturb")
    p.add_argument("--model", default="smollm2-135m", help="llm back-end: tiny, smollm2-135m, gemma3-270m or a local HF folder")
    p.add_argument("--n", type=int, default=5, help="paraphrases per input (default: 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="only the first N inputs")
    p.add_argument("--batch-size", type=int, default=16, help="llm generation batch size")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="llm: answer length cap (default: room for n paraphrases of the longest input)")
    p.add_argument("--min-nsim", type=float, default=0.2, help="llm: reject candidates with nsim(x, x') below this")
    p.add_argument("--save-every", type=float, default=60.0, help="rewrite --out at most every N seconds (and at the end)")
    p.add_argument("--out", required=True, help="output JSONL (also the cache)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    common.check_range("n", args.n, 1, 100)
    common.check_range("batch-size", args.batch_size, 1)
    common.check_range("limit", args.limit, 0)
    common.check_range("max-new-tokens", args.max_new_tokens, 1)
    common.check_range("min-nsim", args.min_nsim, 0.0, 1.0)
    common.print_config(args, "paraphrase.py")
    common.set_seed(args.seed)
    task = tasks.task_from_args(args)
    print(task.describe(), flush=True)
    backend = args.backend
    if backend == "llm" and task.name not in LLM_TASKS:
        print(f"note: --backend llm keeps the original label, which is wrong for task '{task.name}' "
              f"(its label depends on the input's symbols/literals); using the perturb back-end", flush=True)
        backend = "perturb"

    inputs = select_inputs(task, args.split)[:args.limit]
    dup = [k for k, c in Counter(e["id"] for e in inputs).items() if c > 1]
    if dup:
        raise UserError(f"duplicate example ids in the selected inputs (e.g. {dup[0]}): rows would clash")
    rows = common.read_jsonl(args.out, "paraphrase", required=("id", "x", "paraphrases")) \
        if os.path.exists(args.out) else []
    done = {(r["id"], r["x"]) for r in rows}
    todo = [e for e in inputs if (e["id"], e["x"]) not in done]
    print(f"{len(inputs)} inputs ({args.split}): {len(inputs) - len(todo)} cached in {args.out}, "
          f"{len(todo)} to do with the {backend} back-end", flush=True)

    import similarity
    index = similarity.PoolIndex(task.pool, task.tokenize)
    validator = Validator(task, index, args.min_nsim)
    llm = None
    if backend == "llm" and todo:
        llm = LLMBackend(args.model, task, language_of(args), validator, args.n, args.batch_size,
                         args.max_new_tokens)

    new_rows, last_save = [], time.monotonic()
    chunk = args.batch_size if llm else 1000
    try:
        bar = common.progress(total=len(todo), desc=f"paraphrase ({backend})", unit="input")
        for i in range(0, len(todo), chunk):
            exs = todo[i:i + chunk]
            new_rows += llm.rows(exs, args.seed) if llm else [perturb_row(task, e, args.n, args.seed) for e in exs]
            bar.update(len(exs))
            if time.monotonic() - last_save > args.save_every:
                common.write_jsonl_atomic(args.out, rows + new_rows)
                last_save = time.monotonic()
        bar.close()
    finally:  # keep what was made, also on an interruption or an error
        if new_rows or not os.path.exists(args.out):
            common.write_jsonl_atomic(args.out, rows + new_rows)
    print_summary(task, index, new_rows, len(inputs) - len(todo), validator, llm, args.out)


def print_summary(task, index, new_rows, n_cached, validator, llm, out):
    by_backend = Counter(r["backend"] for r in new_rows)
    sims = {b: [] for b in by_backend}
    for r in new_rows:
        if r["paraphrases"]:
            sims[r["backend"]] += index.nsim(r["x"], r["paraphrases"])
    stats = llm.stats if llm else Counter()
    print("== summary ==")
    print(f"  cached rows reused  {n_cached}")
    counts = "".join(f"{b}: {c}; " for b, c in sorted(by_backend.items()))
    print(f"  new rows            {len(new_rows)}  ({counts}llm fallbacks to perturb: {stats['fallback']}; "
          f"without any paraphrase: {sum(not r['paraphrases'] for r in new_rows)})")
    print(f"  generated (llm)     {stats['generated']} prompts ({stats['retried']} retries, "
          f"{stats['unparseable']} unparseable answers)")
    if validator.candidates:
        rej = sum(validator.rejected.values())
        reasons = ", ".join(f"{k}: {v}" for k, v in validator.rejected.most_common())
        print(f"  rejection rate      {rej / validator.candidates:.3f} ({rej}/{validator.candidates} candidates"
              + (f"; {reasons}" if reasons else "") + ")")
    else:
        print("  rejection rate      n/a (no llm candidates)")
    for b, s in sorted(sims.items()):
        mean = f"{sum(s) / len(s):.3f}" if s else "n/a"
        print(f"  mean nsim(x, x')    {b}: {mean} over {len(s)} paraphrases")
    print(f"  wrote {out}", flush=True)


if __name__ == "__main__":
    common.run_main(main)
