"""Paraphrases (x', y') of task inputs: the paraphrase-file contract, the copy test, and the
library of paraphrase.py (its back-ends and checks).

The file (paraphrase.py writes it; `load_paraphrases` reads it for sample_contexts/train/evaluate/probes):
JSONL, one row per input (`make_row`)
  {"id", "x", "paraphrases": [str], "labels": [str] (alignment/sql, or whenever a label differs from y),
   "backend": "rules"|"llm"|"perturb", "fallback": true (only on llm fallbacks)}
with a sidecar <file>.meta.json (`paraphrase_meta` + "complete", "inputs", "rows", "sha256"):
{"kind": "paraphrases", "task", "task_fp", "backend", "split", ...}; "complete": false marks the
periodic saves of a run still going (or interrupted): readers refuse such a file, paraphrase.py
continues it (`read_cache`). A row may hold an empty list: "no paraphrase" for that input.

Copies: a "paraphrase" equal to its input up to casing, punctuation, spacing, contractions or a
"please" frame (`is_copy`) gives the answer away; it is never written (`make_row`) and dropped
when read (`load_paraphrases`). `is_no_answer` applies the same test to a model's prediction.

Back-ends (paraphrase.py picks one; METHOD.md):
  RuleBackend    RuleRewriter's hand-written, meaning-preserving rewrites (prompts/paraphrase_rules.json)
  LLMBackend     an instruction-tuned LM prompted with prompts/paraphrase.json, answers read by
                 `parse_paraphrases`, retried once, then handed to a fallback back-end
  perturb_row    the task's deterministic, label-preserving perturbation (tasks.Task.perturb)
Every rules/llm candidate passes `Validator` (its docstring lists the checks).
"""
import ast
import json
import os
import random
import re
from collections import Counter

from . import tasks
from .common import UserError, check_meta, is_complete, meta_path, read_jsonl, read_meta, write_jsonl_atomic
from .contexts import para_id

LLM_TASKS = ("mt", "semparse")  # tasks whose label survives a free-form rewording of x
ROW_FIELDS = ("id", "x", "paraphrases")  # every row has them


# ===================================================================================== copies
_CONTRACTION_FORMS = [(r"\b(\w+) ?n't\b", r"\1 not"), (r"\bcan not\b", "cannot"), (r"\bcannot\b", "can not"),
                      (r"\bwon not\b", "will not"), (r"\bca not\b", "can not"), (r"\bsha not\b", "shall not"),
                      (r"\b(\w+) ?'re\b", r"\1 are"), (r"\b(i) ?'m\b", r"\1 am"), (r"\b(\w+) ?'ve\b", r"\1 have"),
                      (r"\b(\w+) ?'ll\b", r"\1 will"), (r"\b(\w+) ?'d\b", r"\1 would"),
                      (r"\b(it|that|there|what|he|she|who|where|here|how|when) ?'s\b", r"\1 is")]
_PUNCT = re.compile(r"[^\w\s]+")


def normalize_for_copy(text):
    """The text as a copy test sees it: lower-cased, contractions expanded (what's -> what is,
    don't -> do not, also MTOP's tokenised "what 's"), punctuation removed, whitespace collapsed.
    Two texts with the same normal form differ only in casing, punctuation, spacing or contractions."""
    s = " ".join(str(text).lower().replace("\u2019", "'").split())
    for pat, rep in _CONTRACTION_FORMS:
        s = re.sub(pat, rep, s)
    s = re.sub(r"^(please|kindly) |,? please$", "", s.strip(" .!?"))  # a polite frame is no rewrite
    return " ".join(_PUNCT.sub(" ", s).split())


def is_copy(a, b):
    """True when b is a (casing / punctuation / spacing / contraction / 'please') edit of a."""
    return normalize_for_copy(a) == normalize_for_copy(b)


def is_no_answer(prediction, x):
    """An answer that is no answer: empty, or the input x copied back (up to casing/punctuation)."""
    return not normalize_for_copy(prediction) or is_copy(prediction, x)


# ===================================================================================== the file
def read_paraphrase_file(path, task, task_fp=None, partial_ok=False):
    """(sidecar meta or None, rows) of a paraphrase file: refused when its sidecar names another kind
    of file or task, another data set (when `task_fp` is given), content changed since it was written,
    or (unless `partial_ok`) an interrupted run's progress; every row has ROW_FIELDS."""
    meta = check_meta(path, "paraphrases", task=task.name, task_fp=task_fp, partial_ok=partial_ok)
    return meta, read_jsonl(path, "paraphrase", required=ROW_FIELDS)


def _check_row(row, path, n):
    """Types of one row, and every paraphrase and label one non-empty line: UserError naming path:n."""
    paras, labels = row["paraphrases"], row.get("labels")
    if not isinstance(row["id"], str) or not isinstance(row["x"], str) or not isinstance(paras, list) \
            or not all(isinstance(p, str) for p in paras) \
            or (labels is not None and (not isinstance(labels, list) or len(labels) != len(paras)
                                        or not all(isinstance(y, str) for y in labels))):
        raise UserError(f"{path}:{n}: 'id' and 'x' must be strings, 'paraphrases' a list of strings "
                        f"(and 'labels' a list of strings as long)")
    for what, texts in (("paraphrase", paras), ("label", labels or [])):
        for j, text in enumerate(texts):
            if not text.strip() or "\n" in text or "\r" in text:
                raise UserError(f"{path}:{n}: {what} {j} of '{row['id']}' is "
                                f"{'empty' if not text.strip() else 'several lines'} ({json.dumps(text)[:60]}); "
                                f"every paraphrase and label is one non-empty line (it goes into a prompt)")


def load_paraphrases(path, task):
    """{original id: [{"id": "<id>#p<j>", "x": x', "y": y'}]} from a paraphrase JSONL (paraphrase.py).

    The label of a paraphrase is the row's `labels[j]` when given (alignment, SQL literal swaps),
    else the original example's y (from the task's pool and test splits). A "paraphrase" identical
    to its input up to casing, punctuation and spacing is a copy of the answer, not a paraphrase:
    it is dropped (and counted in the note printed)."""
    _, rows = read_paraphrase_file(path, task)
    by_id = {ex["id"]: ex for ex in task.pool + [e for t in task.tests.values() for e in t]}
    out, copies = {}, 0
    for n, row in enumerate(rows, 1):
        _check_row(row, path, n)
        paras, labels = row["paraphrases"], row.get("labels")
        base = by_id.get(row["id"])
        if base is not None and row["x"] != base["x"]:
            raise UserError(f"{path}:{n}: input of '{row['id']}' differs from the {task.name} data "
                            f"(a paraphrase file made for another task or data set?)")
        if labels is None and base is None:
            continue  # an input of another split: nothing to attach a label to
        exs = []
        for j, p in enumerate(paras):
            if labels is None and is_copy(p, row["x"]):
                copies += 1
                continue
            ex = {"id": para_id(row["id"], j), "x": p, "y": labels[j] if labels is not None else base["y"]}
            if base is not None and "meta" in base:
                ex["meta"] = base["meta"]
            exs.append(ex)
        if exs:
            out[row["id"]] = exs
    if copies:
        print(f"note: {path}: dropped {copies} 'paraphrase(s)' identical to their input up to casing/punctuation",
              flush=True)
    return out


def read_cache(path, task):
    """(rows, partial) of paraphrase.py's own output file, read back as its cache: ([], False) when
    there is none, or when it changed since it was written (a note says so; it is started over);
    `partial` when its sidecar says it is an interrupted run's progress ("complete": false). A file
    made for another task or data set is refused."""
    rows, partial = [], False
    if os.path.exists(path):
        if read_meta(path) is not None and not is_complete(path):
            print(f"note: {path} changed since it was written (an interrupted or edited file): "
                  f"not used as a cache; starting over", flush=True)
        else:
            if os.path.exists(meta_path(path)):
                partial = check_meta(path, "paraphrases", task=task.name, task_fp=task.fingerprint(),
                                     partial_ok=True).get("complete") is False
            rows = read_jsonl(path, "paraphrase", required=ROW_FIELDS)
    return rows, partial


def paraphrase_meta(task, backend, split, **fields):
    """The sidecar of a paraphrase file: kind, task, its data fingerprint, back-end, split, then `fields`."""
    return {"kind": "paraphrases", "task": task.name, "task_fp": task.fingerprint(), "backend": backend,
            "split": split, **fields}


def write_paraphrase_file(path, rows, meta):
    """Write rows and their sidecar (meta + "rows", "sha256") atomically."""
    write_jsonl_atomic(path, rows, meta=meta)


def make_row(task, ex, paras, labels, backend):
    """One paraphrase-file row. Whatever the back-end, a paraphrase that is a copy of x (equal up
    to casing, punctuation, spacing, contractions: is_copy) is never written."""
    keep = [(p, y) for p, y in zip(paras, labels) if not is_copy(ex["x"], p)]
    paras, labels = [p for p, _ in keep], [y for _, y in keep]
    row = {"id": ex["id"], "x": ex["x"], "paraphrases": list(paras)}
    if task.name in ("alignment", "sql") or any(y != ex["y"] for y in labels):
        row["labels"] = list(labels)
    row["backend"] = backend
    return row


def perturb_row(task, ex, n, seed):
    """The row of the perturb back-end for one example (deterministic given seed and id)."""
    pairs = task.perturb(ex, random.Random(f"{seed}-{ex['id']}"), n)
    return make_row(task, ex, [p for p, _ in pairs], [y for _, y in pairs], "perturb")


def write_perturb_paraphrases(path, task, n=3, seed=0):
    """Paraphrases of the whole pool made on the fly with the task's exact, label-preserving
    perturbation (the perturb back-end of paraphrase.py, same rows and sidecar): train.py uses
    this for the alignment task when Contrastive's rho > 0 and no --paraphrases file is given."""
    rows = [perturb_row(task, ex, n, seed) for ex in task.pool]
    write_paraphrase_file(path, rows, paraphrase_meta(task, "perturb", "train", n=n, seed=seed))
    return path


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
def _is_subsequence(a, b):
    """Every token of a appears in b, in order (b = a with words added: no real rewrite)."""
    it = iter(b)
    return all(tok in it for tok in a)


class Validator:
    """Checks candidates for one task; counts rejections by reason. A candidate is rejected when it
    is empty or several lines, a copy of x (is_copy: equal up to casing, punctuation,
    spacing, contractions, "please") or of another input of the task, x with words only added
    ("only_additions": every word of x kept in order), a repeat, too long (> 3x
    + 20 chars) or too short (< half of x: content dropped), has nsim(x, x') < min_nsim (meaning
    drift) or >= max_nsim (too close to a copy), or (semparse) no longer quotes a slot value."""

    def __init__(self, task, index, min_nsim, max_nsim=0.95):
        self.norm = normalize_for_copy
        self.task, self.index, self.min_nsim, self.max_nsim = task, index, min_nsim, max_nsim
        self.inputs = {self.norm(e["x"]) for e in task.pool + [e for t in task.tests.values() for e in t]}
        self.rejected = Counter()
        self.candidates = 0

    def __call__(self, ex, cands, n):
        x, ok = ex["x"], []
        seen = {self.norm(x)}
        sims = self.index.nsim(x, cands) if cands else []
        for c, sim in zip(cands, sims):
            self.candidates += 1
            key = self.norm(c)
            reason = ("empty" if not c.strip() else
                      "multiline" if "\n" in c else
                      "copy_of_x" if key == self.norm(x) else
                      "duplicate" if key in seen else
                      "too_long" if len(c) > 3 * len(x) + 20 else
                      "too_short" if len(c) < len(x) / 2 else  # most likely dropped content
                      "copy_of_input" if key in self.inputs else
                      "only_additions" if _is_subsequence(self.norm(x).split(), key.split()) else
                      "low_nsim" if sim < self.min_nsim else
                      "near_copy" if sim >= self.max_nsim else
                      "lost_slot" if any(v.lower() not in c.lower() for v in tasks.slot_values(self.task, ex)) else
                      None)
            if reason:
                self.rejected[reason] += 1
            elif len(ok) < n:
                seen.add(key)
                ok.append((c, float(sim)))
        return ok


# ===================================================================================== rule back-end
_DETS = {"a", "an", "the", "his", "her", "their", "its", "my", "your", "our", "this", "that", "these", "those",
         "some", "of", "to", "is", "are", "was", "were", "be", "and", "or", "two", "three", "four", "five", "many",
         "several", "in", "on", "at", "with", "for", "from", "by", "into"}
_LOWER_FIRST = {"a", "an", "the", "two", "three", "four", "five", "six", "several", "many", "some", "one", "people",
                "men", "women", "children", "kids", "boys", "girls", "dogs", "this", "these", "an"}
_PLURAL_WORDS = {"men", "women", "people", "children", "kids", "guys", "ladies", "persons", "youngsters", "gentlemen"}
_AN_EXCEPT = ("uni", "use", "usu", "one", "eu", "uti")
_A_EXCEPT = ("hour", "honest", "honor", "heir")


def _case_like(src, rep):
    return rep[:1].upper() + rep[1:] if src[:1].isupper() else rep


class RuleRewriter:
    """Meaning-preserving rewrites from hand-written data (prompts/paraphrase_rules.json), offline and fast.

    mt (captions): progressive <-> simple present ("is standing" <-> "stands"), participle <->
    relative clause ("a girl climbing" <-> "a girl that is climbing"), "in a red shirt" ->
    "wearing a red shirt", fronting of a final locative phrase ("..., on the beach." ->
    "On the beach, ..."), and phrase synonyms. semparse (commands): phrase synonyms only, never
    inside a slot value and never reordering, so the logical form (which quotes the slot values
    in utterance order) stays the label. Each candidate applies a random subset of the rewrites
    (rng), so several candidates per input differ; the caller validates them."""

    def __init__(self, task_name, data=None):
        d = data or tasks.load_template("paraphrase_rules")
        self.task_name = task_name
        double, irregular = set(d["double"]), d["irregular_ing"]
        self.ing = {}  # ing form -> (base, 3rd person singular)
        for v in d["verbs"]:
            ing = irregular.get(v) or (v + v[-1] + "ing" if v in double else
                                       v[:-1] + "ing" if v.endswith("e") and not v.endswith(("ee", "ye", "oe"))
                                       else v + "ing")
            s3 = (v + "es" if v.endswith(("s", "sh", "ch", "x", "z", "o")) else
                  v[:-1] + "ies" if v.endswith("y") and v[-2] not in "aeiou" else v + "s")
            self.ing[ing] = (v, s3)
        self.s3 = {s3: ing for ing, (_, s3) in self.ing.items()}
        self.bases = {v for v, _ in self.ing.values()}
        self.syn = {k.lower(): v for k, v in d["synonyms"].get(task_name, {}).items()}
        keys = sorted(self.syn, key=len, reverse=True)
        # a key "^verb" only matches at the start of the input (a command verb, not the noun)
        alts = ["^" + re.escape(k[1:]) if k.startswith("^") else re.escape(k) for k in keys]
        self.syn_re = re.compile(r"(?<![\w'-])(" + "|".join(alts) + r")(?![\w'-])", re.I) if keys else None
        plain = {k.lstrip("^") for k in keys}
        self.prefixes = {k: sorted((p for p in plain if k.startswith(p + " ")), key=len, reverse=True) for k in plain}
        cloth = "|".join(re.escape(c) for c in sorted(d["clothing"], key=len, reverse=True))
        self.cloth_re = re.compile(r"\bin ((?:(?:a|an|his|her|their) )?(?:[\w-]+,? ){0,3}?(?:" + cloth + r")s?)\b")
        preps = "|".join(d["front_preps"])
        self.pp_re = re.compile(r",? \b(" + preps + r") ((?:the|a|an|his|her|their|some) )?([\w' -]+?)([.!?]?)$", re.I)
        self.struct = [self.progressive_to_simple, self.simple_to_progressive, self.participle_to_relative,
                       self.relative_to_participle, self.in_to_wearing, self.front_pp] if task_name == "mt" else []

    # -- structural rewrites (each returns the variants of s, possibly none) --------------------
    def progressive_to_simple(self, s):
        out = []
        for m in re.finditer(r"\b(is|are) (\w+ing)\b", s):
            forms = self.ing.get(m.group(2).lower())
            if forms:
                out.append(s[:m.start()] + (forms[1] if m.group(1) == "is" else forms[0]) + s[m.end():])
        return out

    def simple_to_progressive(self, s):
        out, words = [], list(re.finditer(r"[\w'-]+", s))
        for i, m in enumerate(words):
            w = m.group(0)
            if w in self.s3 and i >= 2 and words[i - 1].group(0).lower() not in _DETS:
                out.append(s[:m.start()] + "is " + self.s3[w] + s[m.end():])
        return out

    def participle_to_relative(self, s):
        if re.search(r"\b(is|are|was|were|who|that)\b", s, re.I):
            return []
        words = list(re.finditer(r"[\w'-]+", s))
        for i, m in enumerate(words[1:6], 1):  # right after a short subject ("A little girl climbing")
            w = m.group(0).lower()
            # a preposition or a verb before it: the participle may not attach to the subject
            if w in _DETS or w in self.bases or w in self.s3 or w.endswith("ed"):
                return []
            if w in self.ing:
                prev = words[i - 1].group(0).lower()
                if prev in _DETS or prev.endswith("ing") or prev in ("while", "not", "also"):
                    return []
                aux = "are" if prev in _PLURAL_WORDS or (prev.endswith("s") and not prev.endswith("ss")) else "is"
                return [s[:m.start()] + f"that {aux} " + s[m.start():]]
        return []

    def relative_to_participle(self, s):
        return [s[:m.start()] + m.group(3) + s[m.end():]
                for m in re.finditer(r"\b(who|that) (is|are) (\w+ing)\b", s) if m.group(3).lower() in self.ing]

    def in_to_wearing(self, s):
        return [s[:m.start()] + "wearing " + m.group(1) + s[m.end():] for m in self.cloth_re.finditer(s)
                if not re.search(r"\b(dressed|clothed|wearing|clad)\s*$", s[:m.start()])]

    def front_pp(self, s):
        m = self.pp_re.search(s)
        if not m:
            return []
        pp = s[m.start():m.end() - len(m.group(4))].lstrip(", ")
        main = s[:m.start()].rstrip(", ")
        finite = re.search(r"\b(is|are) \w+ing\b", main) or any(w in self.s3 for w in main.split())
        if (len(pp.split()) > 6 or re.search(r"\b(and|while|as|who|that|is|are)\b|\w+ing\b", pp)
                or len(main.split()) < 3 or not finite or re.search(r"\b(is|are)$", main) or "," in main):
            return []
        first, rest = (main.split(" ", 1) + [""])[:2]
        if first.lower() in _LOWER_FIRST:
            first = first.lower()
        return [pp[:1].upper() + pp[1:] + ", " + (first + " " + rest).strip() + (m.group(4) or "")]

    # -- synonyms -----------------------------------------------------------------------------
    def substitute(self, s, rng, p, protected=()):
        """Replace each synonym-table phrase of s with probability p (at least one if any),
        skipping phrases that overlap a protected span (a slot value); overlapping phrases:
        the longest that is free wins ("remind me to" when "me" is free, else "remind")."""
        if self.syn_re is None:
            return s
        spans = [(m.start(), m.end()) for v in protected
                 for m in re.finditer(r"(?<!\w)" + re.escape(v) + r"(?!\w)", s, re.I)]
        found = []  # (start, end, key) of every table phrase in s, overlapping ones included
        for start in [0] + [m.end() for m in re.finditer(r"[\s,;:.!?\"()]+", s)]:
            m = self.syn_re.match(s, start)
            if not m:
                continue
            text = m.group(0).lower()
            for k in [text] + self.prefixes.get(text, []):  # the phrase and the table phrases it starts with
                key = k if k in self.syn else "^" + k
                if key in self.syn and (start == 0 or not key.startswith("^")):
                    found.append((start, start + len(k), key))
        free, taken = [], []
        for a, b, key in sorted(found, key=lambda f: (f[0], -(f[1] - f[0]))):
            if any(x < b and a < y for x, y in spans + taken) or key not in self.syn:
                continue
            free.append((a, b, key))
            taken.append((a, b))
        if not free:
            return s
        chosen = [f for f in free if rng.random() < p] or [rng.choice(free)]
        out, last = [], 0
        for a, b, key in chosen:
            out += [s[last:a], _case_like(s[a:b], rng.choice(self.syn[key]))]
            last = b
        return self._fix_articles("".join(out + [s[last:]]), s)

    @staticmethod
    def _fix_articles(s, original):
        """a/an before a word that a substitution put there (pairs already in the original stay)."""
        keep = {(a.lower(), w.lower()) for a, w in re.findall(r"\b(an?) (\w+)", original, re.I)}

        def fix(m):
            art, word = m.group(1), m.group(2)
            if (art.lower(), word.lower()) in keep:
                return m.group(0)
            w = word.lower()
            vowel = (w[0] in "aeiou" and not w.startswith(_AN_EXCEPT)) or w.startswith(_A_EXCEPT)
            new = "an" if vowel else "a"
            return (new.capitalize() if art[0].isupper() else new) + " " + word
        return re.sub(r"\b(an?) (\w+)", fix, s, flags=re.I)

    def candidates(self, x, rng, k=24, protected=()):
        """Up to k distinct rewrites of x (unvalidated), each a random combination of rewrites."""
        out = []
        for _ in range(k):
            s = x
            for op in rng.sample(self.struct, len(self.struct)):
                if rng.random() < 0.5:
                    variants = op(s)
                    if variants:
                        s = rng.choice(variants)
            s = self.substitute(s, rng, rng.choice((0.3, 0.5, 0.8)), protected)
            if s != x and s not in out:
                out.append(s)
        return out


class RuleBackend:
    """Rows from RuleRewriter candidates, validated; seeded per example like the perturb back-end."""

    def __init__(self, task, validator, n, k=24):
        self.task, self.validator, self.n, self.k = task, validator, n, k
        self.rewriter = RuleRewriter(task.name)
        self.stats = Counter()

    def paraphrases(self, ex, seed):
        rng = random.Random(f"{seed}-rules-{ex['id']}")
        cands = self.rewriter.candidates(ex["x"], rng, self.k, tasks.slot_values(self.task, ex))
        ok = self.validator(ex, cands, len(cands))
        rng.shuffle(ok)
        return ok[:self.n]

    def rows(self, exs, seed):
        rows = []
        for ex in exs:
            ok = self.paraphrases(ex, seed)
            self.stats["generated"] += 1
            if not ok:
                self.stats["empty"] += 1
            rows.append(make_row(self.task, ex, [p for p, _ in ok], [ex["y"]] * len(ok), "rules"))
        return rows


# ===================================================================================== llm back-end
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
    """LLM candidates (greedy, or --samples seeded samples per input at --temperature/--top-p),
    validated; an input without a valid candidate is retried once with the answer pre-filled,
    then handed to the fallback back-end (rules for mt/semparse, else perturb)."""

    def __init__(self, model_name, task, language, validator, n, batch_size, max_new_tokens=None,
                 temperature=None, top_p=1.0, samples=1, fallback=None):
        from . import models
        self.model, self.tok = models.load(model_name)
        self.task, self.language, self.validator = task, language, validator
        self.n, self.batch_size, self.max_new_tokens = n, batch_size, max_new_tokens
        self.temperature, self.top_p, self.samples = temperature, top_p, samples
        self.fallback = fallback
        self.template = tasks.load_template("paraphrase")
        self.stats = Counter()

    def _ask(self, exs, retry, seed):
        from . import generation
        prefills = [retry_prefill(e["x"]) if retry else "" for e in exs]
        prompts = [render_prompt(self.tok, self.template, self.n, self.language, e["x"], pre)
                   for e, pre in zip(exs, prefills)]
        mnt = self.max_new_tokens or max_new_tokens_for(self.tok, [e["x"] for e in exs], self.n)
        sampling = {} if retry or not self.temperature else dict(
            temperature=self.temperature, top_p=self.top_p, num_samples=self.samples,
            seed=[f"{seed}-{e['id']}" for e in exs])
        # stop at the first "]": the list (or the dict's first list) is closed; the parser copes
        outs = generation.generate(self.model, self.tok, prompts, max_new_tokens=mnt, stop="]",
                                   batch_size=self.batch_size, progress=False, **sampling)
        self.stats["generated"] += len(exs) * (self.samples if sampling else 1)
        results = []
        for ex, out in zip(exs, outs):
            cands = []
            for o in (out if sampling else [out]):
                parsed = parse_paraphrases(('["' if retry else "") + o)
                if not parsed:
                    self.stats["unparseable"] += 1
                cands += [c for c in parsed if c not in cands]
            results.append(self.validator(ex, cands, self.n))
        return results

    def rows(self, exs, seed):
        """Rows for a batch of examples (retry, then the fallback back-end, for empty results)."""
        results = dict(enumerate(self._ask(exs, retry=False, seed=seed)))
        retry = [i for i, r in results.items() if not r]
        if retry:
            self.stats["retried"] += len(retry)
            for i, r in zip(retry, self._ask([exs[i] for i in retry], retry=True, seed=seed)):
                results[i] = r
        rows = []
        for i, ex in enumerate(exs):
            if results[i]:
                rows.append(make_row(self.task, ex, [p for p, _ in results[i]], [ex["y"]] * len(results[i]), "llm"))
            else:
                self.stats["fallback"] += 1
                row = self.fallback.rows([ex], seed)[0] if self.fallback else perturb_row(self.task, ex, self.n, seed)
                rows.append(dict(row, fallback=True))
        return rows
