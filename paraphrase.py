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
(similarity.is_copy: equal after lower-casing, removing punctuation, collapsing spaces, expanding
contractions and dropping a "please" frame), a copy of another input of the task, x with words only
added, a repeat, too long (> 3x + 20 chars) or too short (< half of x), nsim(x, x') < --min-nsim or
>= --max-nsim (default 0.95: near-copies), or (semparse) no longer quoting every slot value.
Whatever the back-end, a copy of x is never written (make_row drops it).

Output JSONL, one row per input (contexts.load_paraphrases reads it), written with a sidecar
<out>.meta.json {"kind": "paraphrases", "task", "task_fp", "backend", "split", "n", "seed",
"min_nsim", "max_nsim", ... , "complete", "inputs", "rows", "sha256"}; "complete": false marks the
periodic saves of a run still going (or interrupted): consumers refuse such a file, this script
continues it. --out must not lie inside --data.
  {"id", "x", "paraphrases": [str], "labels": [str] (alignment/sql, or whenever a label
   differs from y), "backend": "rules"|"llm"|"perturb", "fallback": true (only on llm fallbacks)}
A row may hold an empty list when no paraphrase could be made; consumers treat it as "no paraphrase".

Cache: rows already in --out for the same (id, x) are kept and never generated again,
whatever the back-end or --n was, so a re-run is free and an interrupted run continues
(the file is rewritten atomically every --save-every seconds and at the end). A file whose
sidecar names another task or data set (fingerprint) is refused. Delete the file (or use
another --out) to regenerate.

  python paraphrase.py --task mt --data $DATA/multi30k --max-pool 1000 --split train --out mt.train.jsonl
  python paraphrase.py --task mt --data $DATA/multi30k --max-pool 1000 --split test --test-split test --test-limit 200 --out t.jsonl
  python paraphrase.py --task semparse --data $DATA/mtop --backend llm --temperature 0.8 --samples 4 --out p.jsonl
  python paraphrase.py --task alignment --out para.jsonl
"""
import argparse
import ast
import json
import os
import random
import re
import time
from collections import Counter

from contrastive_context import common
from contrastive_context import config
from contrastive_context import tasks
from contrastive_context.contexts import make_row, perturb_row
from contrastive_context.common import UserError

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
def slot_values(task, ex):
    """Text spans the label quotes and a paraphrase must keep (semparse slot values)."""
    if task.name == "semparse":
        return re.findall(r"\[SL:\S+ ([^\[\]]+?) \]", ex["y"])
    return []


def _is_subsequence(a, b):
    """Every token of a appears in b, in order (b = a with words added: no real rewrite)."""
    it = iter(b)
    return all(tok in it for tok in a)


class Validator:
    """Checks candidates for one task; counts rejections by reason. A candidate is rejected when it
    is empty or several lines, a copy of x (similarity.is_copy: equal up to casing, punctuation,
    spacing, contractions, "please") or of another input of the task, x with words only added
    ("only_additions": every word of x kept in order), a repeat, too long (> 3x
    + 20 chars) or too short (< half of x: content dropped), has nsim(x, x') < min_nsim (meaning
    drift) or >= max_nsim (too close to a copy), or (semparse) no longer quotes a slot value."""

    def __init__(self, task, index, min_nsim, max_nsim=0.95):
        from contrastive_context.similarity import normalize_for_copy
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
                      "lost_slot" if any(v.lower() not in c.lower() for v in slot_values(self.task, ex)) else
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
        cands = self.rewriter.candidates(ex["x"], rng, self.k, slot_values(self.task, ex))
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


# ===================================================================================== back-ends
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
        from contrastive_context import models
        self.model, self.tok = models.load(model_name)
        self.task, self.language, self.validator = task, language, validator
        self.n, self.batch_size, self.max_new_tokens = n, batch_size, max_new_tokens
        self.temperature, self.top_p, self.samples = temperature, top_p, samples
        self.fallback = fallback
        self.template = tasks.load_template("paraphrase")
        self.stats = Counter()

    def _ask(self, exs, retry, seed):
        from contrastive_context import generation
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


# ===================================================================================== main
def language_of(args):
    code = args.src if args.task == "mt" else args.lang
    return tasks.LANG_NAMES.get(code, code)


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
    p.add_argument("--seed", type=common.SEED, default=0)
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
    p.add_argument("--save-every", type=float, default=60.0, help="rewrite --out at most every N seconds (and at the end)")
    p.add_argument("--out", required=True, help="output JSONL (also the cache)")
    return p


def select_inputs(task, split, test_limit=None, test_split=None):
    """The inputs to paraphrase: the pool and/or (the first test_limit of) each or one test split."""
    exs = []
    if split in ("train", "all"):
        exs += task.pool
    if split in ("test", "all"):
        names = [test_split] if test_split else list(task.tests)
        exs += [e for name in names for e in task.test_split(name)[:test_limit]]
    return exs


def main(argv=None):
    args = build_parser().parse_args(argv)
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
    common.check_out_not_input(args.out, [args.data])
    common.print_config(config.applicable(args), "paraphrase.py")
    common.set_seed(args.seed)
    task = tasks.task_from_args(args)
    print(task.describe(), flush=True)
    backend = args.backend
    if backend == "auto":
        backend = "rules" if task.name in LLM_TASKS else "perturb"
    if backend in ("llm", "rules") and task.name not in LLM_TASKS:
        print(f"note: --backend {backend} keeps the original label, which is wrong for task '{task.name}' "
              f"(its label depends on the input's symbols/literals); using the perturb back-end", flush=True)
        backend = "perturb"

    inputs = select_inputs(task, args.split, args.test_limit, args.test_split)[:args.limit]
    if not inputs:
        raise UserError(f"no inputs to paraphrase (--split {args.split}): nothing would be written")
    dup = [k for k, c in Counter(e["id"] for e in inputs).items() if c > 1]
    if dup:
        raise UserError(f"duplicate example ids in the selected inputs (e.g. {dup[0]}): rows would clash")
    meta = {"kind": "paraphrases", "task": task.name, "task_fp": task.fingerprint(), "backend": backend,
            "split": args.split, "test_split": args.test_split, "test_limit": args.test_limit, "n": args.n,
            "seed": args.seed, "min_nsim": args.min_nsim, "max_nsim": args.max_nsim}
    if backend == "llm":
        meta.update(model=args.model, temperature=args.temperature, top_p=args.top_p,
                    samples=args.samples if args.temperature > 0 else 1, fallback="rules")
    if backend == "rules":
        meta.update(rule_candidates=args.rule_candidates)
    rows, cache_partial = [], False
    if os.path.exists(args.out):
        if common.read_meta(args.out) is not None and not common.is_complete(args.out):
            print(f"note: {args.out} changed since it was written (an interrupted or edited file): "
                  f"not used as a cache; starting over", flush=True)
        else:
            if os.path.exists(args.out + ".meta.json"):
                cache_partial = common.check_meta(args.out, "paraphrases", task=task.name, task_fp=task.fingerprint(),
                                                  partial_ok=True).get("complete") is False
            rows = common.read_jsonl(args.out, "paraphrase", required=("id", "x", "paraphrases"))
    done = {(r["id"], r["x"]) for r in rows}
    todo = [e for e in inputs if (e["id"], e["x"]) not in done]
    print(f"{len(inputs)} inputs ({args.split}): {len(inputs) - len(todo)} cached in {args.out}, "
          f"{len(todo)} to do with the {backend} back-end", flush=True)

    from contrastive_context import similarity
    index = similarity.PoolIndex(task.pool, task.tokenize)
    validator = Validator(task, index, args.min_nsim, args.max_nsim)
    maker = None
    if backend == "rules" or (backend == "llm" and todo):
        maker = RuleBackend(task, validator, args.n, args.rule_candidates)
    if backend == "llm" and todo:
        maker = LLMBackend(args.model, task, language_of(args), validator, args.n, args.batch_size,
                           args.max_new_tokens, args.temperature or None, args.top_p, args.samples, fallback=maker)

    new_rows, last_save, t0 = [], time.monotonic(), time.monotonic()
    chunk = args.batch_size if backend == "llm" else 200
    finished = False
    # saves before the end say "complete": false (sample_contexts/train/evaluate refuse such a file;
    # this script continues it); the last one, once every input is done, "complete": true
    partial_meta = {**meta, "complete": False, "inputs": len(inputs)}
    try:
        bar = common.progress(total=len(todo), desc=f"paraphrase ({backend})", unit="input")
        for i in range(0, len(todo), chunk):
            exs = todo[i:i + chunk]
            new_rows += maker.rows(exs, args.seed) if maker else [perturb_row(task, e, args.n, args.seed) for e in exs]
            bar.update(len(exs))
            if time.monotonic() - last_save > args.save_every:
                common.write_jsonl_atomic(args.out, rows + new_rows, meta=partial_meta)
                last_save = time.monotonic()
        bar.close()
        finished = True
    finally:  # keep what was made, also on an interruption or an error
        if new_rows or not os.path.exists(args.out) or (finished and cache_partial):
            common.write_jsonl_atomic(args.out, rows + new_rows,
                                      meta={**meta, "complete": True, "inputs": len(inputs)} if finished
                                      else partial_meta)
    print_summary(task, index, new_rows, len(inputs) - len(todo), validator, maker, args.out,
                  time.monotonic() - t0)


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
    if stats.get("generated") and isinstance(maker, LLMBackend):
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


if __name__ == "__main__":
    common.run_main(main)
