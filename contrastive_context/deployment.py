"""Deployment with feedback (deploy.py), the one owner of its contract: stream and pool, policies, the
row schema, the output folder, summaries and the G1 / G2 reports.

A stream S = (x_0, y_0) ... (x_{T-1}, y_{T-1}) of one task (the task's test split in file order, or a
--stream JSONL file of {"id", "x", "y", "meta"?} rows; --shuffle: a seeded shuffle), an initial pool P_0
(the task's pool, a --pool file, or none), a delay d >= 1. At step t the pool is

    P_t = P_0 + [(x_s, y_s) : s <= t - d]        (feedback on; feedback off: P_t = P_0)

in that order (doc index = position), indexed by similarity.GrowingPoolIndex (exact BM25, never
rebuilt). The policy builds x_t's context from P_t (k examples; fewer while P_t holds fewer):
  zero        no context;
  random      k random examples of P_t (seeded per item: "deploy|task|seed|k|id|random");
  nearest     the top-k BM25 examples of P_t, most similar last (evaluation's `similar`; a query with no
              BM25 token gets random examples, as in evaluation);
  gated:TAU   nearest when the best neighbour's nsim >= TAU, else no context.
The model predicts, the prediction is scored against y_t; the feedback (x_t, y_t) joins the pool d steps
later. Items t .. t+B-1 of an aligned block of B = min(batch size, d) never need each other's feedback,
so each block is one generation batch.

OUT/ (outputs.py ownership, kind "deploy"):
  deploy.json        the settings (and their hash); a re-run must match them ("resume with other settings")
  steps.jsonl        one row per step, appended and fsync'ed per batch:
                     {"t", "id", "pool_size", "best_nsim", "best_id", "kind", "context": [ids], "nsim": [..],
                      "prediction", "reference", "score", + task extras: alignment "exact", semparse
                      "intent_correct"}
                     (+ .meta.json when complete: kind "deploy-steps", task, rows, sha256)
  summary.json/.md   overall, score vs t windows, score by best-neighbour nsim bin (evaluation's bins)
  cc_output.json     LAST: the files of the finished run and their sha256
A run killed at any point (even kill -9) resumes from the last whole batch to identical rows.
"""
import json
import math
import os
import random
import re

from . import contexts
from . import evaluation as ev
from .common import (UserError, check_meta, dumps_row, file_sha256, meta_path, read_json, read_jsonl, read_meta,
                     write_json_atomic)
from .stats import fmt, paired_diff, summarize

DEPLOY_KIND = "deploy"
SETTINGS, STEPS = "deploy.json", "steps.jsonl"
POLICIES = ("zero", "random", "nearest", "gated")
STEP_KEYS = ("t", "id", "pool_size", "best_nsim", "best_id", "kind", "context", "nsim", "prediction", "reference",
            "score")


# ============================================================================ policies
def parse_policy(spec):
    """'zero' | 'random' | 'nearest' | 'gated:TAU' (TAU in [0, 1]) -> (name, tau or None)."""
    name, _, arg = str(spec).partition(":")
    if name not in POLICIES:
        raise UserError(f"unknown policy {spec!r} (choose from zero, random, nearest, gated:TAU)")
    if name != "gated":
        if arg:
            raise UserError(f"policy {name} takes no parameter (got {spec!r})")
        return name, None
    try:
        tau = float(arg)
    except ValueError:
        raise UserError(f"policy gated needs a threshold gated:TAU with TAU in [0, 1] (got {spec!r})") from None
    if not math.isfinite(tau) or not 0.0 <= tau <= 1.0:
        raise UserError(f"policy gated: TAU must be in [0, 1] (got {arg})")
    return name, tau


# ============================================================================ stream and pool
def read_examples(path, what, task):
    """Examples {"id", "x", "y", "meta"?} of a JSONL file: every problem is ONE UserError naming the file and
    line (missing file, malformed JSON, missing or mistyped fields, duplicate id, a label over several
    lines, a sidecar naming another task)."""
    from .tasks import check_example_id
    meta = read_meta(path) if os.path.isfile(path) else None
    if meta and meta.get("task") not in (None, task.name):
        raise UserError(f"{what} {path} was made for task '{meta.get('task')}', not '{task.name}'")
    rows = read_jsonl(path, what, required=("id", "x", "y"))
    out, seen = [], {}
    with open(path, encoding="utf-8") as f:
        lines = [n for n, line in enumerate(f, 1) if line.strip()]
    for n, r in zip(lines, rows):
        where = f"{path}:{n}"
        for key in ("x", "y"):
            if not isinstance(r[key], str):
                raise UserError(f"{where}: field '{key}' must be a string, got {json.dumps(r[key])[:60]}")
        check_example_id(r["id"], where)
        if "\n" in r["y"]:
            raise UserError(f"{where}: the label spans several lines")
        if r["id"] in seen:
            raise UserError(f"{where}: duplicate id '{r['id']}' (also line {seen[r['id']]})")
        seen[r["id"]] = n
        ex = {"id": r["id"], "x": r["x"], "y": r["y"]}
        if "meta" in r:
            ex["meta"] = r["meta"]
        bad = foreign(task, ex)
        if bad:
            raise UserError(f"{where}: not an example of this {task.name} task ({bad}): a {what} of another "
                            f"task or data set?")
        out.append(ex)
    return out


def foreign(task, ex):
    """Why `ex` cannot be an example of `task` (its format), or None."""
    from .tasks import is_logical_form
    if task.name == "alignment":
        if len(ex["x"]) != task.m or any(c not in task.SYMBOLS for c in ex["x"]):
            return f"x must be {task.m} symbols of {task.SYMBOLS[0]}-{task.SYMBOLS[-1]}, got {ex['x'][:40]!r}"
        if len(ex["y"].replace(" ", "")) != task.m * task.length:
            return f"y must be {task.m * task.length} letters, got {ex['y'][:40]!r}"
    elif task.name == "semparse" and not is_logical_form(ex["y"]):
        return f"y is not an MTOP logical form: {ex['y'][:40]!r}"
    elif task.name == "sql":
        db = (ex.get("meta") or {}).get("db_id") if isinstance(ex.get("meta"), dict) else None
        if not db or not os.path.isfile(task.db_path(db)):
            return f"no database for meta.db_id {db!r}"
    return None


def same_ids_other_content(task, examples, what):
    """A file whose ids are the task's own (pool or test) ids with other inputs or labels is of another
    data set: ONE UserError."""
    known = {ex["id"]: ex for ex in task.pool + [e for t in task.tests.values() for e in t]}
    for ex in examples:
        k = known.get(ex["id"])
        if k is not None and (k["x"], k["y"]) != (ex["x"], ex["y"]):
            raise UserError(f"{what}: id '{ex['id']}' is an example of this {task.name} data set with another "
                            f"input or label: a {what} of another task or data set?")


def load_stream_and_pool(task, stream_path, pool_path, split, shuffle, seed, limit):
    """(stream, P_0, description of their sources), checked: non-empty stream, no id in both."""
    if stream_path:
        stream = read_examples(stream_path, "stream", task)
        same_ids_other_content(task, stream, f"stream {stream_path}")
        src = f"file {stream_path}"
    else:
        split = split or next(iter(task.tests))
        stream, src = list(task.test_split(split)), f"test split '{split}'"
    if shuffle:
        stream = list(stream)
        random.Random(f"deploy-stream|{task.name}|{seed}").shuffle(stream)
        src += f", shuffled (seed {seed})"
    stream = stream[:limit] if limit else stream
    if not stream:
        raise UserError("the stream is empty")
    if pool_path == "none":
        pool, psrc = [], "none (empty)"
    elif pool_path:
        pool = read_examples(pool_path, "pool", task)
        same_ids_other_content(task, pool, f"pool {pool_path}")
        psrc = f"file {pool_path}"
    else:
        pool, psrc = list(task.pool), "the task's labelled pool"
    ids = {ex["id"] for ex in pool}
    shared = [ex["id"] for ex in stream if ex["id"] in ids]
    if shared:
        raise UserError(f"the pool and the stream share {len(shared)} id(s) (e.g. '{shared[0]}'): P_0 must not hold "
                        f"stream items (they join the pool as feedback)")
    return stream, pool, src, psrc


def check_k(policy, k, pool, stream, delay, feedback):
    if policy == "zero":
        return
    most = len(pool) + (max(0, len(stream) - delay) if feedback else 0)
    if most < k:
        raise UserError(f"--k {k} is larger than the pool can ever hold (|P_0| {len(pool)} + feedback "
                        f"{most - len(pool)} = {most})")


# ============================================================================ the steps
def batch_size_for(batch_size, delay, feedback):
    """B: the generation batch = an aligned block of items none of which needs another's feedback."""
    return min(batch_size, delay) if feedback else batch_size


def _rng(task, seed, k, ex, policy):
    return random.Random(f"deploy|{task.name}|{seed}|{k}|{ex['id']}|{policy}")


class Stepper:
    """The model-independent part of every step: P_t (incremental index), best neighbour, context."""

    def __init__(self, task, stream, pool, policy, tau, k, delay, feedback, seed):
        from .similarity import GrowingPoolIndex
        self.task, self.stream, self.pool0 = task, stream, pool
        self.policy, self.tau, self.k, self.delay, self.feedback, self.seed = policy, tau, k, delay, feedback, seed
        self.index = GrowingPoolIndex(pool, task.tokenize)
        self.fed = 0  # stream items in the pool

    def advance_to(self, t):
        """Make the index hold P_t (feedback appended one item at a time)."""
        want = max(0, t - self.delay + 1) if self.feedback else 0
        while self.fed < want:
            self.index.add(self.stream[self.fed])
            self.fed += 1

    def step(self, t):
        self.advance_to(t)
        ex, ix, k = self.stream[t], self.index, self.k
        n = len(ix)
        q, scores, self_s = ix.query(ex["x"])
        m = min(k, n)
        hint = ix.bm25.rare_docs(q, max(m, 1)) if q and n else None  # >= m docs: a hint for top 1 and top m alike
        best_idx = ix.bm25.top_of(scores, 1, hint).tolist() if q and n else []
        best_nsim = ix.nsim_of(scores[best_idx], self_s)[0] if best_idx else 0.0
        kind, ctx = self.policy, []
        if self.policy == "gated":
            kind = "nearest" if best_nsim >= self.tau else "zero"
        if kind == "random" and m:
            ctx = contexts.random_ids(_rng(self.task, self.seed, k, ex, self.policy), n, (), m)
        elif kind == "nearest" and m:
            if q:
                ctx = ix.bm25.top_of(scores, m, hint).tolist()[::-1]  # most similar last
            else:  # no BM25 token: random examples (as evaluation's similar context)
                ctx = contexts.random_ids(_rng(self.task, self.seed, k, ex, self.policy), n, (), m)
        if not ctx:
            kind = "zero"
        return {"t": t, "example": ex, "pool_size": n, "best_nsim": float(best_nsim),
                "best_id": ix.examples[best_idx[0]]["id"] if best_idx else None, "kind": kind,
                "context": [ix.examples[i] for i in ctx],
                "nsim": [float(v) for v in ix.nsim_of(scores[ctx], self_s)] if ctx else []}


def task_extras(task, prediction, ex):
    """Per-row extras of a task: alignment exact (all chunks accepted), semparse intent_correct."""
    if task.name == "alignment":
        return {"exact": bool(task.exact(prediction, ex))}
    if task.name == "semparse":
        return {"intent_correct": top_intent(prediction) is not None and top_intent(prediction) == top_intent(ex["y"])}
    return {}


def top_intent(lf):
    """The top intent of an MTOP logical form ('[IN:CREATE_CALL ...' -> 'CREATE_CALL'), or None."""
    s = lf.strip()
    if not s.startswith("[IN:"):
        return None
    return s[4:].split(None, 1)[0].rstrip("]") or None


# printf-style placeholders of software messages (gitpo_ende): %s, %d, %.*s, %2.2u, %1$s, %<PRIuMAX>, %%
PLACEHOLDER = re.compile(r"%%|%<[A-Za-z0-9_]+>|%(?:\d+\$)?[-#0 +']*(?:\d+|\*)?(?:\.(?:\d+|\*))?"
                         r"(?:hh|h|ll|l|L|q|j|z|t)?[diouxXeEfFgGaAcspn]")
_LOOSE = re.compile(r"%\s*[A-Za-z<.*\d]")  # something that looks like a placeholder (incl. broken ones)


def placeholders(text):
    """The sorted multiset of the printf-style placeholders in text ('%%' is one)."""
    return sorted(PLACEHOLDER.findall(text))


def placeholder_check(prediction, reference):
    """'none' (the reference has no placeholder), 'intact' (the prediction has exactly the reference's
    multiset), 'dropped' (a placeholder missing and nothing placeholder-like instead) or 'mangled' (the
    multisets differ otherwise: a broken, extra or altered placeholder such as '% s' or '%S')."""
    want = placeholders(reference)
    if not want:
        return "none"
    got = placeholders(prediction)
    if got == want:
        return "intact"
    extra = len(_LOOSE.findall(prediction)) - len(got)  # placeholder-like text that is not a placeholder
    rest = list(want)
    for g in got:
        if g not in rest:
            return "mangled"
        rest.remove(g)
    return "mangled" if extra > 0 else "dropped"


def make_row(task, step, prediction):
    ex = step["example"]
    row = {"t": step["t"], "id": ex["id"], "pool_size": step["pool_size"], "best_nsim": step["best_nsim"],
           "best_id": step["best_id"], "kind": step["kind"], "context": [c["id"] for c in step["context"]],
           "nsim": step["nsim"], "prediction": prediction, "reference": ex["y"],
           "score": float(task.score(prediction, ex))}
    row.update(task_extras(task, prediction, ex))
    return row


def predict_batch(model, tok, task, steps, max_new, batch_size):
    if model in ev.BASELINES:
        return [ev.baseline_answer(model, s["context"], s["nsim"], s["example"]) for s in steps]
    from . import generation
    prompts = [task.prompt(s["context"], s["example"]["x"], s["example"].get("meta")) for s in steps]
    return generation.generate(model, tok, prompts, max_new, stop=task.stop, batch_size=batch_size, progress=False)


# ============================================================================ the rows file (durable appends)
def append_rows(path, rows):
    """Append rows as ONE write, flushed and fsync'ed: a batch is on disk when this returns."""
    data = "".join(dumps_row(r) + "\n" for r in rows).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def resume_rows(path, stream, B):
    """The rows of whole batches already on disk (a torn last line or a partial batch is cut off, the
    file truncated to them); rows whose t / id do not follow the stream are an error."""
    if not os.path.isfile(path):
        return []
    with open(path, "rb") as f:
        raw = f.read()
    rows, ends, pos = [], [], 0
    for line in raw.split(b"\n")[:-1]:  # the part after the last newline is torn
        pos += len(line) + 1
        try:
            r = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            break
        rows.append(r)
        ends.append(pos)
    T = len(stream)
    keep = len(rows) if len(rows) == T else (len(rows) // B) * B
    for t, r in enumerate(rows[:keep]):
        if not isinstance(r, dict) or r.get("t") != t or r.get("id") != stream[t]["id"]:
            raise UserError(f"{path}:{t + 1}: row does not belong to this stream (t {r.get('t')!r}, id "
                            f"{r.get('id')!r}); use another --out or --overwrite")
    size = ends[keep - 1] if keep else 0
    if size != len(raw):
        with open(path, "r+b") as f:
            f.truncate(size)
    return rows[:keep]


def write_steps_meta(path, task, conf, n):
    write_json_atomic(meta_path(path), {"kind": "deploy-steps", "task": task.name, "task_fp": task.fingerprint(),
                                        "config": conf, "rows": n, "sha256": file_sha256(path)})


# ============================================================================ summaries
def window_size(T, window=None):
    return window or max(1, math.ceil(T / 10))


def summarize_rows(rows, edges, window, seed=0, extras=()):
    """Overall score, score vs t windows, score by best-neighbour nsim bin (and per bin the share with a
    context), extras' means in percent."""
    by_bin = [[r for r in rows if ev.assign_bin(r["best_nsim"], edges) == b] for b in range(3)]
    out = {"overall": summarize([r["score"] for r in rows], seed=seed), "window": window,
           "windows": [], "bin_edges": edges, "bins": [],
           "with_context": sum(r["kind"] != "zero" for r in rows) / max(1, len(rows))}
    for s in range(0, len(rows), window):
        w = rows[s:s + window]
        out["windows"].append({"t_lo": w[0]["t"], "t_hi": w[-1]["t"], "pool_size": w[-1]["pool_size"],
                               "best_nsim_mean": sum(r["best_nsim"] for r in w) / len(w),
                               **summarize([r["score"] for r in w], seed=seed)})
    for b, name in enumerate(ev.BIN_NAMES):
        g = by_bin[b]
        out["bins"].append({"name": name, "lo": edges[b], "hi": edges[b + 1], **summarize([r["score"] for r in g],
                                                                                         seed=seed),
                            "with_context": sum(r["kind"] != "zero" for r in g) / len(g) if g else None})
    out["extras"] = {e: summarize([100.0 * r[e] for r in rows], seed=seed) for e in extras if rows and e in rows[0]}
    return out


def summary_markdown(s):
    e = s["bin_edges"]
    lines = [f"# Deployment with feedback: {s['model']}" + (f" + {s['adapter']}" if s.get("adapter") else ""), "",
             f"task `{s['task']}`, stream {s['stream']} ({s['T']} items), P_0 {s['pool']} ({s['pool0_size']}), "
             f"policy **{s['policy']}**, k={s['k']}, delay d={s['delay']}, feedback {'on' if s['feedback'] else 'off'}, "
             f"seed {s['seed']}; metric **{s['metric']}** (percent), mean [95% bootstrap CI].", "",
             f"Overall: {fmt(s['overall'])} (n {s['overall']['n']}); items with a context: "
             f"{100 * s['with_context']:.1f} %."]
    for name, x in s.get("extras", {}).items():
        lines.append(f"{name}: {fmt(x)} %.")
    lines += ["", f"Score vs t (windows of {s['window']} items):", "", "| t | pool size at end | mean best nsim | score |",
              "|---|---|---|---|"]
    for w in s["windows"]:
        lines.append(f"| {w['t_lo']}–{w['t_hi']} | {w['pool_size']} | {w['best_nsim_mean']:.3f} | {fmt(w)} |")
    lines += ["", f"Score by the best neighbour's nsim in P_t ({s['bins_method']}: low [0, {e[1]:.3f}), medium "
              f"[{e[1]:.3f}, {e[2]:.3f}), high [{e[2]:.3f}, 1]):", "", "| bin | n | with context | score |",
              "|---|---|---|---|"]
    for b in s["bins"]:
        wc = "—" if b["with_context"] is None else f"{100 * b['with_context']:.0f} %"
        lines.append(f"| {b['name']} | {b['n']} | {wc} | {fmt(b)} |")
    return "\n".join(lines) + "\n"


# ============================================================================ reading folders, G1 / G2
def read_folder(folder):
    """(settings, rows, summary) of a finished deploy folder, or ONE UserError."""
    from .outputs import check_complete
    if not os.path.isdir(folder):
        raise UserError(f"deploy folder not found: {folder}")
    rec = check_complete(folder, DEPLOY_KIND, "deploy run (deploy.py --out)")
    if rec is None:
        raise UserError(f"{folder} is not a finished deploy run (no {DEPLOY_KIND} cc_output.json)")
    path = os.path.join(folder, STEPS)
    check_meta(path, "deploy-steps", required=True)
    rows = read_jsonl(path, "deploy steps", required=STEP_KEYS)
    settings = read_json(os.path.join(folder, SETTINGS), "deploy settings")
    summary = read_json(os.path.join(folder, "summary.json"), "summary")
    return settings, rows, summary


def _pairs(a_runs, b_runs, what):
    """Rows of two sides paired by (seed, stream id): each side a list of (folder, settings, rows)."""
    def index(runs):
        out = {}
        for folder, st, rows in runs:
            for r in rows:
                out[(st["seed"], r["id"])] = r
        return out
    for side in (a_runs, b_runs):
        for folder, st, _ in side:
            first = a_runs[0][1]
            for key in ("task", "stream_fp"):
                if st.get(key) != first.get(key):
                    raise UserError(f"{what}: {folder} has another {key} than {a_runs[0][0]}: only runs on the same "
                                    f"stream can be paired")
    A, Bx = index(a_runs), index(b_runs)
    keys = sorted(set(A) & set(Bx), key=lambda k: (str(k[0]), A[k]["t"]))
    if not keys:
        raise UserError(f"{what}: no (seed, stream item) in common")
    return [(A[k], Bx[k], k[1]) for k in keys]


def g1(feedback_runs, p0_runs, edges):
    """G1: nearest-policy score with feedback - the same model's score with P_0 only, on the items whose best
    feedback neighbour (in the feedback run's P_t) is in the high bin; paired by item, CI clustered by item."""
    for folder, st, _ in feedback_runs:
        if not st["feedback"] or st["policy"] != "nearest":
            raise UserError(f"G1: {folder} is not a nearest-policy run with feedback")
    for folder, st, _ in p0_runs:
        if st["feedback"]:
            raise UserError(f"G1: {folder} is a run with feedback; the P_0-only side needs --feedback off")
        if (st["model"], st["adapter_sha256"]) != (feedback_runs[0][1]["model"], feedback_runs[0][1]["adapter_sha256"]):
            raise UserError(f"G1: {folder} is of another model than {feedback_runs[0][0]} (G1 compares one model)")
    pairs = [(a, b, i) for a, b, i in _pairs(feedback_runs, p0_runs, "G1") if ev.assign_bin(a["best_nsim"], edges) == 2]
    return paired_diff([a["score"] for a, _, _ in pairs], [b["score"] for _, b, _ in pairs], [i for _, _, i in pairs])


def g2(model_runs, zero_runs, edges):
    """G2: the model's score on low-bin items (best neighbour in its P_t) - the zero-regime model's zero-prompt
    score on the same items; paired by item, CI clustered by item."""
    for folder, st, _ in zero_runs:
        if st["policy"] != "zero":
            raise UserError(f"G2: {folder} is not a zero-policy run (the zero-regime model under a zero prompt)")
    pairs = [(a, b, i) for a, b, i in _pairs(model_runs, zero_runs, "G2") if ev.assign_bin(a["best_nsim"], edges) == 0]
    return paired_diff([a["score"] for a, _, _ in pairs], [b["score"] for _, b, _ in pairs], [i for _, _, i in pairs])
