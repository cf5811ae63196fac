"""The task registry: one place that knows how to load, prompt, tokenise, score and perturb.

A task gives
  pool                   labelled examples D (the training split), [{"id", "x", "y", "meta"?}]
  tests                  {split name: [examples]} (ID and, where the data has it, OOD)
  prompt(context, x)     the text up to where the answer starts (templates in prompts/*.json)
  answer(y)              what the model must write after the prompt, ending with `stop`
  tokenize(text)         the tokens BM25 sees
  score(pred, ex)        per-instance score in percent (0-100)
  corpus_metrics(...)    extra corpus-level figures (e.g. corpus chrF/BLEU with signatures)
  perturb(ex, rng, n)    deterministic paraphrases [(x', y')] that keep the label valid

Tasks: alignment (synthetic, default), mt (local parallel text, or the hub loaders of hub.py),
semparse (MTOP, XSemPLR layout), sql (BIRD layout, execution accuracy on SQLite through the
sandbox of sql_sandbox.py).
"""
import hashlib
import json
import os
import random
import re
import string
import time

from . import config
from . import sql_sandbox
from .common import UserError, read_json, read_jsonl, require_types
from .config import TASKS
from .hub import load_hub_task_data
from .similarity import word_tokenize

HERE = os.path.dirname(os.path.abspath(__file__))
LANG_NAMES = {"en": "English", "de": "German", "fr": "French", "es": "Spanish", "lt": "Lithuanian",
              "ta": "Tamil", "hi": "Hindi", "cs": "Czech", "th": "Thai", "it": "Italian"}
def load_template(name):
    with open(os.path.join(HERE, "prompts", f"{name}.json"), encoding="utf-8") as f:
        return json.load(f)



PROMPT_CARD = "prompt_template.json"   # next to a published adapter: how to prompt the model it was trained for


def prompt_card(run_config, k):
    """What a user of a published adapter needs to prompt it as it was trained (a run's config.json and
    the k of its training contexts -> JSON): the task's template with its fixed fields filled in, k, the
    answer format and the stop string. (k is given apart: runs written before config.json had "training_contexts"
    recorded train.py's own --k for a --contexts file, while the file's k is in the file's sidecar.)"""
    task = run_config["task"]
    fields = {"mt": {"src_lang": LANG_NAMES.get(run_config.get("src"), run_config.get("src")),
                     "tgt_lang": LANG_NAMES.get(run_config.get("tgt"), run_config.get("tgt"))},
              "semparse": {"lang_name": LANG_NAMES.get(run_config.get("lang"), run_config.get("lang"))}}.get(task, {})
    template = {k: v for k, v in load_template(task).items() if not k.startswith("_")}
    return {"task": task, "k": k, "fields": fields, "template": template, "stop": "\n",
            "how": "with k context examples: header_context + example (i = 1..k, most similar last for a "
                   "Similar context) + query_header_context + query; without: header_zero + query. Fill {k}, "
                   "{i}, {x}, {y} and the fields (the SQL task's {schema} comes from the example's database). "
                   "The model answers after the query: greedy decoding up to the first newline ('stop'); "
                   "'answer' is the format it was trained to produce. Same as contrastive_context.tasks.Task.prompt.",
            "base_model": run_config.get("model")}


# '#' separates the synthetic example ids of contexts from their pool id: <id>#copy, <id>#cf, <id>#p<j>
# (contexts.py). A data id holding it could name another example's synthetic copy: refused at load.
ID_RESERVED = "#"


def check_example_id(ex_id, where):
    if not isinstance(ex_id, str) or not ex_id:
        raise UserError(f"{where}: example id must be a non-empty string, got {ex_id!r}")
    if ID_RESERVED in ex_id:
        raise UserError(f"{where}: example id '{ex_id}' contains '{ID_RESERVED}', which is reserved for the "
                        f"synthetic context ids (<id>#copy, <id>#cf, <id>#p<j>); rename the id in the data")


class Task:
    """Base class: a prompt template + pool/test data. Subclasses set tokenize/score/perturb."""
    name = "?"
    metric_name = "?"
    stop = "\n"

    def __init__(self, pool, tests, template, fields=None):
        if not pool:
            raise UserError(f"task {self.name}: the labelled pool is empty")
        self.pool, self.tests, self.template = pool, tests, template
        self.fields = dict(fields or {})
        for ex in pool + [e for t in tests.values() for e in t]:
            if "\n" in ex["y"]:
                raise UserError(f"task {self.name}: label of {ex['id']} spans several lines")
            check_example_id(ex["id"], f"task {self.name}")

    # -- prompting ---------------------------------------------------------------------
    def prompt_fields(self, meta):
        return self.fields

    def prompt(self, context, x, meta=None):
        t, f = self.template, self.prompt_fields(meta)
        if not context:
            return t["header_zero"].format(**f) + t["query"].format(x=x, **f)
        parts = [t["header_context"].format(k=len(context), **f)]
        for i, ex in enumerate(context, 1):
            parts.append(t["example"].format(i=i, x=ex["x"], y=ex["y"], **f))
        parts.append(t["query_header_context"].format(**f))
        parts.append(t["query"].format(x=x, **f))
        return "".join(parts)

    def answer(self, y):
        return self.template["answer"].format(y=y)

    # -- similarity, metric, perturbation ------------------------------------------------
    def tokenize(self, text):
        return word_tokenize(text)

    def score(self, prediction, example):
        raise NotImplementedError

    def well_formed(self, prediction):
        """True/False when the task has a checkable output format (is the answer in it?), None otherwise."""
        return None

    def corpus_metrics(self, predictions, examples):
        return {}

    def perturb(self, example, rng, n):
        raise NotImplementedError

    def test_split(self, name=None):
        name = name or next(iter(self.tests))
        if name not in self.tests:
            raise UserError(f"task {self.name}: no test split '{name}' (have: {', '.join(self.tests)})")
        return self.tests[name]

    def heldout_stream(self, include_pool=False):
        """The held-out domains' items for a deployment stream (only MTOP has domains: SemParseTask)."""
        raise UserError(f"task {self.name} has no domains to hold out (--holdout-domains: semparse, MTOP, only)")

    def fingerprint(self):
        """Short hash of the task name and its pool (ids, inputs, labels): files made for another
        task or data set (contexts, paraphrases) carry another fingerprint."""
        h = hashlib.sha256(self.name.encode("utf-8"))
        for ex in self.pool:
            h.update(("\x00" + ex["id"] + "\x01" + ex["x"] + "\x02" + ex["y"]).encode("utf-8"))
        return h.hexdigest()[:12]

    def describe(self):
        tests = ", ".join(f"{k}={len(v)}" for k, v in self.tests.items())
        return f"task {self.name}: pool={len(self.pool)} tests: {tests} metric={self.metric_name}"


# ===================================================================================== alignment
class AlignmentTask(Task):
    """Agarwal & Sarawagi (2025)'s synthetic alignment task, with PFAs fixed by the seed.

    25 input symbols A..Y, each with its own probabilistic finite automaton (4-12 states,
    4-18 output letters, 1-4 labelled transitions per state). An input is m distinct
    symbols; its output is, for each position j of a fixed permutation pi of the m input
    positions, a length-l string sampled from the PFA of the symbol at pi[j].

    pi is never the identity when m >= 2 (the shuffle is redrawn from the same seeded stream
    until it moves a position): with the identity the task would have no alignment to learn.
    For seeds whose first shuffle was not the identity nothing changes (same PFAs, ids, x, y);
    for the others (e.g. seed 0 at m = 3) only the order of the chunks in y changes.

    Synthetic-track knobs (METHOD.md "Synthetic track"), constructor kwargs:
      fresh_rules   share F of training sequences drawn under a fresh rule set (0 = the paper)
      n_rule_sets   B, the number of alternative PFA tables those come from (seeds disjoint
                    from the task seed); `rule_set(b)` gives table b
      drift         number D of the 25 symbols that get new PFAs at test time
      drift_seed    seed of the drifted symbols and their new PFAs (held out from all others);
                    `drift_rules()` gives (drifted symbols, PFA table)
    Unknown kwargs raise TypeError (no catch-all): a misspelt option never passes silently.
    """
    name, metric_name = "alignment", "chunk_acceptance"
    SYMBOLS = string.ascii_uppercase[:25]

    def __init__(self, seed=0, m=3, length=2, n_train=200, n_test=300, max_pool=None,
                 fresh_rules=0.0, n_rule_sets=200, drift=12, drift_seed=0):
        if m < 1 or m > 25 or length < 1:
            raise UserError(f"alignment: need 1 <= m <= 25 and length >= 1 (got m={m}, length={length})")
        if n_train < 1 or n_test < 1:
            raise UserError(f"alignment: need n_train >= 1 and n_test >= 1 (got {n_train}, {n_test})")
        if not 0.0 <= fresh_rules <= 1.0:
            raise UserError(f"alignment: fresh_rules must be in [0, 1], got {fresh_rules}")
        if n_rule_sets < 1 or not 0 <= drift <= 25:
            raise UserError(f"alignment: need n_rule_sets >= 1 and 0 <= drift <= 25 "
                            f"(got {n_rule_sets}, {drift})")
        rng = random.Random(f"alignment-pfa-{seed}")
        self.seed, self.m, self.length = seed, m, length
        self.fresh_rules, self.n_rule_sets = float(fresh_rules), int(n_rule_sets)
        self.drift, self.drift_seed = int(drift), int(drift_seed)
        self.pfas = {s: self._make_pfa(rng) for s in self.SYMBOLS}
        self.pi = list(range(m))
        rng.shuffle(self.pi)
        while m >= 2 and self.pi == sorted(self.pi):
            rng.shuffle(self.pi)
        data_rng = random.Random(f"alignment-data-{seed}-{m}-{length}")
        pool = [self._instance(data_rng, f"train-{i}") for i in range(n_train)]
        test = [self._instance(data_rng, f"test-{i}") for i in range(n_test)]
        if max_pool:
            pool = pool[:max_pool]
        super().__init__(pool, {"test": test}, load_template("alignment"))

    # -- rule sets: the task's own, the fresh ones (rule diversity) and the drifted one -----
    def rule_set(self, b):
        """Alternative PFA table b (0 <= b < n_rule_sets): same symbols, same pi, PFAs drawn from a
        seed stream disjoint from the task's and from the drift stream."""
        if not 0 <= b < self.n_rule_sets:
            raise ValueError(f"rule set {b} not in [0, {self.n_rule_sets})")
        rng = random.Random(f"alignment-rules-{self.seed}-{b}")
        return {s: self._make_pfa(rng) for s in self.SYMBOLS}

    def drift_rules(self, n=None, seed=None):
        """(drifted symbols, PFA table): `n` symbols (default self.drift) chosen by the drift seed
        get new PFAs from a held-out stream; the other symbols keep the task's PFAs. A new PFA
        that happens to accept exactly the same strings as the old one is redrawn."""
        n = self.drift if n is None else n
        seed = self.drift_seed if seed is None else seed
        rng = random.Random(f"alignment-drift-{self.seed}-{seed}")
        syms = sorted(rng.sample(self.SYMBOLS, n))
        table = dict(self.pfas)
        for s in syms:
            while True:
                p = self._make_pfa(rng)
                if self._language(p) != self._language(self.pfas[s]):
                    break
            table[s] = p
        return syms, table

    def _language(self, pfa):
        """The set of length-l strings a PFA accepts (for comparing two PFAs)."""
        paths = {("", 0)}
        for _ in range(self.length):
            paths = {(s + letter, nxt) for s, st in paths for letter, nxt, _ in pfa[st]}
        return frozenset(s for s, _ in paths)

    @staticmethod
    def _make_pfa(rng):
        n_states = rng.randint(4, 12)
        letters = rng.sample(string.ascii_lowercase, rng.randint(4, 18))
        trans = []  # per state: [(letter, next_state, prob)]
        for _ in range(n_states):
            n_out = rng.randint(1, 4)
            ws = [rng.random() + 0.05 for _ in range(n_out)]
            tot = sum(ws)
            trans.append([(rng.choice(letters), rng.randrange(n_states), w / tot) for w in ws])
        return trans

    def _sample_string(self, sym, rng, pfas=None):
        pfa = (pfas or self.pfas)[sym]
        state, out = 0, []
        for _ in range(self.length):
            r, acc = rng.random(), 0.0
            for letter, nxt, p in pfa[state]:
                acc += p
                if r <= acc:
                    break
            out.append(letter)
            state = nxt
        return "".join(out)

    def accepts(self, sym, s, pfas=None):
        """True when some path of `sym`'s PFA (of the table `pfas`, default the task's) from the
        start state reads exactly `s`."""
        if len(s) != self.length:
            return False
        pfa = (pfas or self.pfas)[sym]
        states = {0}
        for ch in s:
            states = {nxt for st in states for letter, nxt, _ in pfa[st] if letter == ch}
            if not states:
                return False
        return True

    def _output(self, x, chunks_by_symbol):
        return "".join(chunks_by_symbol[x[self.pi[j]]] for j in range(self.m))

    def _instance(self, rng, ex_id, pfas=None):
        x = "".join(rng.sample(self.SYMBOLS, self.m))
        chunks = {s: self._sample_string(s, rng, pfas) for s in x}
        return {"id": ex_id, "x": x, "y": self._output(x, chunks)}

    def label(self, x, rng, pfas=None):
        """A fresh label of input x under the table `pfas` (default the task's)."""
        return self._output(x, {s: self._sample_string(s, rng, pfas) for s in x})

    def chunks(self, x, y):
        """Split an output into its m chunks, keyed by the input symbol each is aligned to."""
        L = self.length
        return {x[self.pi[j]]: y[j * L:(j + 1) * L] for j in range(self.m)}

    def tokenize(self, text):
        return [c for c in text.upper() if c in self.SYMBOLS]

    def chunk_scores(self, prediction, x, pfas=None):
        pred = prediction.replace(" ", "")
        L = self.length
        return [self.accepts(x[self.pi[j]], pred[j * L:(j + 1) * L], pfas) for j in range(self.m)]

    def score(self, prediction, example):
        ok = self.chunk_scores(prediction, example["x"])
        return 100.0 * sum(ok) / len(ok)

    def exact(self, prediction, example):
        pred = prediction.replace(" ", "")
        return float(len(pred) == self.m * self.length and all(self.chunk_scores(pred, example["x"])))

    def corpus_metrics(self, predictions, examples):
        n = max(len(examples), 1)
        return {"exact": 100.0 * sum(self.exact(p, e) for p, e in zip(predictions, examples)) / n}

    def perturb(self, example, rng, n):
        """Shuffle the input symbols (the paper's choice); each chunk moves with its symbol,
        so the new output is accepted under the new input's alignment."""
        x, y = example["x"], example["y"]
        chunks = self.chunks(x, y)
        out, seen = [], {x}
        for _ in range(20 * n):
            if len(out) >= n:
                break
            syms = list(x)
            rng.shuffle(syms)
            x2 = "".join(syms)
            if x2 not in seen:
                seen.add(x2)
                out.append((x2, self._output(x2, chunks)))
        return out


# ===================================================================================== text edits
_CONTRACTIONS = [("do not", "don't"), ("does not", "doesn't"), ("is not", "isn't"), ("are not", "aren't"),
                 ("can not", "can't"), ("cannot", "can't"), ("it is", "it's"), ("there is", "there's"),
                 ("i am", "i'm"), ("we are", "we're"), ("they are", "they're"), ("what is", "what's"),
                 ("will not", "won't"), ("that is", "that's")]


def text_edits(x, protected=()):
    """All small meaning-preserving single edits of x (punctuation, casing, contractions,
    spacing, a polite prefix). Words in `protected` (e.g. slot values of a logical form) are
    never touched, so a label that quotes them stays valid."""
    edits = []
    s = x.rstrip()
    if s and s[-1] in ".!?":
        edits.append(s[:-1].rstrip())
    elif s:
        edits.append(s + ".")
    if s and s[0].isalpha():
        first = s[0].lower() if s[0].isupper() else s[0].upper()
        if not any(s.split()[0] in p.split() for p in protected):
            edits.append(first + s[1:])
    low = s.lower()
    for a, b in _CONTRACTIONS:
        for src, dst in ((a, b), (b, a)):
            m = re.search(r"\b" + re.escape(src) + r"\b", low)
            if m and not any(src in p.lower() for p in protected):
                rep = dst if not s[m.start()].isupper() else dst[0].upper() + dst[1:]
                edits.append(s[:m.start()] + rep + s[m.end():])
    if "," in s:
        edits.append(s.replace(",", "", 1).replace("  ", " "))
    for pre in ("please ", "Please "):
        if low.startswith(pre.lower()):
            rest = s[len(pre):]
            edits.append(rest[:1].upper() + rest[1:] if s[0].isupper() else rest)
            break
    return [e for e in dict.fromkeys(edits) if e and e != x]


def perturb_text(x, rng, n, protected=()):
    """Up to n distinct perturbations: random combinations of 1-2 single edits."""
    out, seen = [], {x}
    for _ in range(10 * n):
        if len(out) >= n:
            break
        cur = x
        for _ in range(rng.choice((1, 1, 2))):
            opts = text_edits(cur, protected)
            if not opts:
                break
            cur = rng.choice(opts)
        if cur not in seen:
            seen.add(cur)
            out.append(cur)
    return out


# ===================================================================================== mt
def _read_lines(path):
    """Lines of a UTF-8 text file without their line ends; non-UTF-8 -> UserError naming the line."""
    if os.path.isdir(path):
        raise UserError(f"{path} is a folder, not a text file")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def load_parallel(data, split, src, tgt):
    """Examples of one split from DIR/{split}.{src}+{split}.{tgt}, DIR/{split}.tsv or
    DIR/{split}.jsonl ({"x","y"}, {src, tgt} or {"translation": {src, tgt}}). None if absent."""
    a, b = os.path.join(data, f"{split}.{src}"), os.path.join(data, f"{split}.{tgt}")
    if os.path.isfile(a) or os.path.isfile(b):
        for p in (a, b):
            if not os.path.isfile(p):
                raise UserError(f"missing parallel file {p}")
        xs, ys = _read_lines(a), _read_lines(b)
        if len(xs) != len(ys):
            raise UserError(f"line counts differ: {a} has {len(xs)} lines, {b} has {len(ys)}")
        pairs = list(zip(xs, ys))
    elif os.path.isfile(os.path.join(data, f"{split}.tsv")):
        path, pairs = os.path.join(data, f"{split}.tsv"), []
        for n, line in enumerate(_read_lines(path), 1):
            cols = line.split("\t")
            if len(cols) != 2:
                raise UserError(f"{path}:{n}: expected 2 tab-separated columns, got {len(cols)}")
            pairs.append(tuple(cols))
    elif os.path.isfile(os.path.join(data, f"{split}.jsonl")):
        path, pairs = os.path.join(data, f"{split}.jsonl"), []
        for n, row in enumerate(read_jsonl(path, "parallel data"), 1):
            row = row.get("translation", row)
            if not isinstance(row, dict):
                raise UserError(f"{path}:{n}: 'translation' must be an object")
            if "x" in row and "y" in row:
                pair = (row["x"], row["y"])
            elif src in row and tgt in row:
                pair = (row[src], row[tgt])
            else:
                raise UserError(f"{path}:{n}: need fields x/y or {src}/{tgt}")
            if not all(isinstance(v, str) for v in pair):
                raise UserError(f"{path}:{n}: source and target must be strings")
            pairs.append(pair)
    else:
        return None
    return [{"id": f"{split}-{i}", "x": x.strip(), "y": y.strip()} for i, (x, y) in enumerate(pairs)
            if x.strip() and y.strip()]


def _check_max_pool(max_pool):
    if max_pool is not None and (not isinstance(max_pool, int) or isinstance(max_pool, bool) or max_pool < 1):
        raise UserError(f"--max-pool must be an integer >= 1, got {max_pool!r}")


class MTTask(Task):
    name, stop = "mt", "\n"

    def __init__(self, data=None, src="en", tgt="de", max_pool=None, metric="chrf"):
        _check_max_pool(max_pool)
        if not data:
            raise UserError("task mt needs --data DIR (parallel files) or --data hub:<name>")
        if metric not in ("chrf", "bleu"):
            raise UserError(f"mt metric must be chrf or bleu (COMET is added by evaluate.py --comet), got {metric}")
        for lang in (src, tgt):
            if not isinstance(lang, str) or not re.fullmatch(r"[A-Za-z][A-Za-z_-]{0,15}", lang):
                raise UserError(f"invalid language code {lang!r}")
        if src == tgt:
            raise UserError(f"source and target language are both '{src}'")
        if data.startswith("hub:"):
            pool, tests = load_hub_task_data(data[4:], src, tgt)
        else:
            if not os.path.isdir(data):
                raise UserError(f"data folder not found: {data}")
            pool = load_parallel(data, "train", src, tgt)
            if pool is None:
                raise UserError(f"no training split in {data} (need train.{src}/train.{tgt}, train.tsv or train.jsonl)")
            tests = {}
            for split in ("test", "val", "dev", "ood"):
                ex = load_parallel(data, split, src, tgt)
                if ex is not None:
                    tests[split] = ex
            if not tests:
                raise UserError(f"no test split in {data} (looked for test/val/dev/ood)")
        if max_pool:
            pool = pool[:max_pool]
        self.metric_name, self.src, self.tgt = metric, src, tgt
        fields = {"src_lang": LANG_NAMES.get(src, src), "tgt_lang": LANG_NAMES.get(tgt, tgt)}
        super().__init__(pool, tests, load_template("mt"), fields)

    def score(self, prediction, example):
        import sacrebleu
        if self.metric_name == "bleu":
            return sacrebleu.sentence_bleu(prediction, [example["y"]]).score
        return sacrebleu.sentence_chrf(prediction, [example["y"]]).score

    def corpus_metrics(self, predictions, examples):
        import sacrebleu
        refs = [[e["y"] for e in examples]]
        chrf, bleu = sacrebleu.metrics.CHRF(), sacrebleu.metrics.BLEU()
        return {"chrf": chrf.corpus_score(predictions, refs).score, "chrf_signature": str(chrf.get_signature()),
                "bleu": bleu.corpus_score(predictions, refs).score, "bleu_signature": str(bleu.get_signature())}

    def perturb(self, example, rng, n):
        return [(x2, example["y"]) for x2 in perturb_text(example["x"], rng, n)]


# ===================================================================================== semparse
LEAF_SLOT = re.compile(r"\[SL:(\S+) ([^\[\]]+?) \]")  # a leaf slot `[SL:TYPE value ]` of an MTOP logical form


def slot_values(task, ex):
    """Text spans the label quotes and a rewrite of x must keep (semparse slot values; none for other tasks)."""
    if task.name == "semparse":
        return [value for _, value in LEAF_SLOT.findall(ex["y"])]
    return []


def is_logical_form(text):
    """An MTOP logical form: starts with an intent "[IN:", brackets balance and close at the very end."""
    s, depth = text.strip(), 0
    if not s.startswith("[IN:"):
        return False
    for i, ch in enumerate(s):
        depth += (ch == "[") - (ch == "]")
        if depth < 0 or (depth == 0 and i < len(s) - 1):
            return False
    return depth == 0


_MTOP_MAP = load_template("mtop_domains")
MTOP_DOMAINS = tuple(_MTOP_MAP["domains"])          # MTOP's 11 domains
MTOP_INTENTS = tuple(_MTOP_MAP["intents"])          # every intent name of the MTOP data here (no "IN:")
DOMAIN_OF_INTENT = {intent: d for d, intents in _MTOP_MAP["domains"].items() for intent in intents}
TOP_INTENT = re.compile(r"\s*\[IN:([^\s\[\]]+)")


def mtop_domain(lf, where="MTOP"):
    """The domain of an MTOP logical form: its top-level intent's (prompts/mtop_domains.json). An intent the
    map does not know -> UserError naming it (`where` says which item)."""
    m = TOP_INTENT.match(lf)
    if not m:
        raise UserError(f"{where}: no top-level intent \"[IN:...\" in {json.dumps(lf)[:80]}")
    if m.group(1) not in DOMAIN_OF_INTENT:
        raise UserError(f"{where}: intent IN:{m.group(1)} has no MTOP domain (contrastive_context/prompts/"
                        f"mtop_domains.json maps {len(DOMAIN_OF_INTENT)} intents); add it to one of "
                        f"{', '.join(MTOP_DOMAINS)}")
    return DOMAIN_OF_INTENT[m.group(1)]


def parse_domains(text):
    """--holdout-domains "music,news" -> ("music", "news"); None or "" -> (). Unknown, repeated or empty names
    -> UserError listing the valid ones."""
    if text is None:
        return ()
    names = [d.strip() for d in str(text).split(",")]
    bad = [d for d in names if d not in MTOP_DOMAINS]
    if bad:
        raise UserError(f"--holdout-domains: unknown MTOP domain{'s' if len(bad) > 1 else ''} "
                        f"{', '.join(repr(d) for d in bad)} (valid: {', '.join(MTOP_DOMAINS)})")
    if len(set(names)) < len(names):
        raise UserError(f"--holdout-domains: a domain is named twice in {text!r}")
    return tuple(names)


class SemParseTask(Task):
    """MTOP in the XSemPLR layout: [{"id", "question": {lang: text}, "mr": {"slot_intent": {lang: lf}}}].

    holdout_domains ("music,news"): every item whose top intent is in those domains leaves every file before
    --test-size and --max-pool apply (never a training target, pool example or context); their test.json items
    are the test split "heldout", and heldout_stream() gives them (with the pool file's) for deploy.py."""
    name, metric_name = "semparse", "exact_match"

    def __init__(self, data=None, lang="en", max_pool=None, test_size=None, holdout_domains=None):
        _check_max_pool(max_pool)
        self.holdout_domains = parse_domains(holdout_domains)
        if test_size is not None and (not isinstance(test_size, int) or isinstance(test_size, bool) or test_size < 1):
            raise UserError(f"--test-size must be an integer >= 1, got {test_size!r}")
        if not data or not os.path.isdir(data):
            raise UserError(f"task semparse needs --data DIR with dev.json/test.json (got {data})")
        files = {s: os.path.join(data, f"{s}.json") for s in ("train", "dev", "test")}
        pool_split = "train" if os.path.isfile(files["train"]) else "dev"
        splits = {s: self._load(p, lang) for s, p in files.items() if os.path.isfile(p)}
        if pool_split not in splits:
            raise UserError(f"no train.json or dev.json in {data}")
        self._pool_split, self._heldout = pool_split, {}
        if self.holdout_domains:
            splits, self._heldout = self._hold_out(splits, pool_split, data)
        pool = splits.pop(pool_split)
        if pool_split == "train" and "test" in splits:
            splits.pop("dev", None)
        if not splits:
            raise UserError(f"no test split in {data} (need test.json)")
        if test_size is not None:  # the test items after the first N join the pool (after dev/train)
            if "test" not in splits or len(splits["test"]) <= test_size:
                raise UserError(f"--test-size {test_size}: the test split has only "
                                f"{len(splits.get('test', []))} items (nothing would be left for the pool)")
            pool, splits["test"] = pool + splits["test"][test_size:], splits["test"][:test_size]
        pool = pool[:max_pool or None]
        if self.holdout_domains:
            splits["heldout"] = self._heldout["test"]
        # ids name examples in every file the scripts write (contexts, paraphrases, predictions):
        # a duplicate id is an error here, so every script refuses the same data the same way
        seen = {}
        for split, exs in [(pool_split, pool)] + list(splits.items()):
            for ex in exs:
                if ex["id"] in seen:
                    raise UserError(f"MTOP data in {data}: duplicate id '{ex['id']}' ({seen[ex['id']]} and "
                                    f"{split}.json); ids must be unique across the files used")
                seen[ex["id"]] = "test.json" if split == "heldout" else f"{split}.json"
        super().__init__(pool, splits, load_template("semparse"), {"lang_name": LANG_NAMES.get(lang, lang)})

    def _hold_out(self, splits, pool_split, data):
        """(kept, held out): each split's items outside / inside the held-out domains, file order kept."""
        held = set(self.holdout_domains)
        kept, out, found = {}, {}, set()
        for split, exs in splits.items():
            doms = [mtop_domain(ex["y"], f"{data}/{split}.json: id '{ex['id']}'") for ex in exs]
            found |= set(doms) & held
            kept[split] = [ex for ex, d in zip(exs, doms) if d not in held]
            out[split] = [ex for ex, d in zip(exs, doms) if d in held]
        names = ",".join(self.holdout_domains)
        if held - found:
            raise UserError(f"--holdout-domains {names}: no item of {data} is in {', '.join(sorted(held - found))} "
                            f"(holding it out would change nothing)")
        if not kept[pool_split]:
            raise UserError(f"--holdout-domains {names} leaves no training data: every item of "
                            f"{pool_split}.json is in those domains")
        if "test" not in splits or not out["test"]:
            raise UserError(f"--holdout-domains {names}: no item of {data}/test.json is in those domains "
                            f"(the held-out stream would be empty)")
        if not kept["test"]:
            raise UserError(f"--holdout-domains {names} leaves no test item of the other domains in test.json")
        return kept, out

    def heldout_stream(self, include_pool=False):
        """The held-out domains' items in file order: test.json's (the split "heldout"); with include_pool,
        preceded by those of the pool file (dev.json, or train.json when there is one). Copies."""
        if not self.holdout_domains:
            raise UserError("task semparse: no held-out domains (give --holdout-domains D,...)")
        items = (self._heldout[self._pool_split] if include_pool else []) + self._heldout["test"]
        return [dict(ex) for ex in items]

    def domain_sizes(self):
        """{split: {domain: items}} of the pool, every test split and (with held-out domains) the held-out
        items of the pool file."""
        parts = {"pool": self.pool, **self.tests}
        if self.holdout_domains:
            parts[f"heldout-{self._pool_split}"] = self._heldout[self._pool_split]
        out = {}
        for name, exs in parts.items():
            counts = {}
            for ex in exs:
                d = mtop_domain(ex["y"], f"{name}: id '{ex['id']}'")
                counts[d] = counts.get(d, 0) + 1
            out[name] = {d: counts[d] for d in MTOP_DOMAINS if d in counts}
        return out

    def describe(self):
        text = super().describe()
        if self.holdout_domains:
            text += (f" | held out: {','.join(self.holdout_domains)} ({len(self._heldout['test'])} test.json items "
                     f"in split 'heldout', {len(self._heldout[self._pool_split])} {self._pool_split}.json items "
                     f"in no split)")
        return text

    @staticmethod
    def _load(path, lang):
        items = read_json(path, "MTOP")
        if not isinstance(items, list):
            raise UserError(f"{path}: expected a JSON list of items")
        out, first = [], {}
        for i, it in enumerate(items):
            try:
                x, y = it["question"][lang], it["mr"]["slot_intent"][lang]
            except (KeyError, TypeError, IndexError):
                raise UserError(f"{path}: item {i} has no question/slot_intent for language '{lang}'") from None
            if not isinstance(x, str) or not isinstance(y, str):
                raise UserError(f"{path}: item {i}: question and slot_intent must be strings")
            raw_id = it.get("id", i)
            if not isinstance(raw_id, (str, int)) or isinstance(raw_id, bool):
                raise UserError(f"{path}: item {i}: id must be a string or an integer")
            ex_id = str(raw_id)
            check_example_id(ex_id, f"{path}: item {i}")
            if not x.strip():
                raise UserError(f"{path}: item {i} (id '{ex_id}'): the question is empty")
            if not is_logical_form(y):
                raise UserError(f"{path}: item {i} (id '{ex_id}'): malformed logical form {json.dumps(y)[:80]} "
                                f"(expected one bracketed intent \"[IN:... ]\" with balanced brackets)")
            if ex_id in first:
                raise UserError(f"{path}: duplicate id '{ex_id}' (items {first[ex_id]} and {i})")
            first[ex_id] = i
            out.append({"id": ex_id, "x": x.strip(), "y": " ".join(y.split())})
        return out

    def score(self, prediction, example):
        return 100.0 * ("".join(prediction.split()) == "".join(example["y"].split()))

    def well_formed(self, prediction):
        """A logical form: starts with an intent "[IN:", brackets balance and close at the very end."""
        return is_logical_form(prediction)

    def perturb(self, example, rng, n):
        slots = slot_values(self, example)
        return [(x2, example["y"]) for x2 in perturb_text(example["x"], rng, n, protected=slots)]


# ===================================================================================== sql
class SQLTask(Task):
    """BIRD layout: train.json/dev.json with db_id, question, evidence, SQL; databases/<db>/<db>.sqlite."""
    name, metric_name = "sql", "execution_accuracy"

    def __init__(self, data=None, max_pool=None, sql_schema="full", sql_timeout=5.0):
        _check_max_pool(max_pool)
        if not data or not os.path.isdir(data):
            raise UserError(f"task sql needs --data DIR in the BIRD layout (got {data})")
        if sql_schema not in ("full", "used"):
            raise UserError(f"sql schema must be full or used, got {sql_schema!r}")
        if not isinstance(sql_timeout, (int, float)) or not (0 < sql_timeout < float("inf")):
            raise UserError(f"sql timeout must be a positive number of seconds, got {sql_timeout!r}")
        self.data, self.sql_schema, self.timeout = data, sql_schema, float(sql_timeout)
        splits = {s: self._load(os.path.join(data, f"{s}.json"), s) for s in ("train", "dev", "test")
                  if os.path.isfile(os.path.join(data, f"{s}.json"))}
        if "train" not in splits:
            raise UserError(f"no train.json in {data}")
        pool = splits.pop("train")[:max_pool or None]
        if not splits:
            raise UserError(f"no dev.json or test.json in {data}")
        self._schemas, self._gold, self._columns = {}, {}, {}
        super().__init__(pool, splits, load_template("sql"))
        self.check_gold()

    def check_gold(self):
        """Every gold query must be able to run: its database exists, and the query compiles (EXPLAIN:
        nothing runs) in the sandbox as one read-only SELECT. A gold query that cannot run would score
        every prediction 0 (an unwinnable test item) or teach a broken answer: refused at load, naming
        the item. (A query that compiles but fails or times out at run time is only seen when scored.)"""
        by_db = {}
        for ex in self.pool + [e for t in self.tests.values() for e in t]:
            by_db.setdefault(ex["meta"]["db_id"], []).append(ex)
        bad = []
        for db_id, exs in sorted(by_db.items()):
            db = self.db_path(db_id)
            if not os.path.isfile(db):
                bad += [(ex, f"database {db} not found") for ex in exs]
                continue
            reasons = sql_sandbox.unrunnable(db, [ex["y"] for ex in exs],
                                             time.monotonic() + max(60.0, self.timeout * len(exs)))
            bad += [(ex, why) for ex, why in zip(exs, reasons) if why is not None]
        if bad:
            ex, why = bad[0]
            raise UserError(f"task sql: {len(bad)} gold quer{'y' if len(bad) == 1 else 'ies'} in {self.data} cannot "
                            f"run, so those items could never score (first: {ex['id']}, i.e. item "
                            f"{ex['id'].rsplit('-', 1)[1]} of {ex['id'].rsplit('-', 1)[0]}.json, db "
                            f"{ex['meta']['db_id']}: {why}); fix or remove them")

    def _load(self, path, split):
        items = read_json(path, "BIRD")
        if not isinstance(items, list):
            raise UserError(f"{path}: expected a JSON list of items")
        out = []
        for i, it in enumerate(items):
            if not isinstance(it, dict):
                raise UserError(f"{path}: item {i} is not an object")
            missing = [k for k in ("db_id", "question", "SQL") if k not in it]
            if missing:
                raise UserError(f"{path}: item {i} lacks {', '.join(missing)}")
            require_types(it, {"db_id": str, "question": str, "SQL": str, "evidence": (str, type(None))},
                          where=f"{path}: item {i}", optional=("evidence",))
            if not re.fullmatch(r"[\w.-]+", it["db_id"]) or it["db_id"] in (".", ".."):
                raise UserError(f"{path}: item {i} has an invalid db_id {it['db_id']!r}")
            q = it["question"].strip()
            if it.get("evidence"):
                q += f" (hint: {it['evidence'].strip()})"
            out.append({"id": f"{split}-{i}", "x": q, "y": " ".join(it["SQL"].split()),
                        "meta": {"db_id": it["db_id"], "question": it["question"].strip(),
                                 "evidence": it.get("evidence") or "",
                                 "sql": " ".join(it["SQL"].split())}})  # for --sql-schema used
        return out

    def db_path(self, db_id):
        return os.path.join(self.data, "databases", db_id, f"{db_id}.sqlite")

    def schema(self, db_id, sql=None):
        if db_id not in self._schemas:
            self._schemas[db_id] = sql_sandbox.table_definitions(self.db_path(db_id))
        tables = self._schemas[db_id]
        if self.sql_schema == "used" and sql:
            used = [t for t in tables if re.search(r"\b" + re.escape(t[0]) + r"\b", sql, re.I)]
            tables = used or tables
        return "\n".join(s for _, s in tables)

    def columns(self, db_id):
        """{table: [column names]} of a database (our own trusted read)."""
        if db_id not in self._columns:
            self._columns[db_id] = sql_sandbox.table_columns(self.db_path(db_id))
        return self._columns[db_id]

    def prompt_fields(self, meta):
        if not meta:
            return {"schema": ""}
        return {"schema": self.schema(meta["db_id"], meta.get("sql"))}

    def score(self, prediction, example):
        db = self.db_path(example["meta"]["db_id"])
        key = (db, example["y"])
        if key not in self._gold:
            self._gold[key] = sql_sandbox.result_key(db, example["y"], self.timeout)
        pred = sql_sandbox.result_key(db, prediction, self.timeout)
        return 100.0 * (pred is not None and self._gold[key] is not None and pred == self._gold[key])

    _LITERAL = re.compile(r"""([\w.`"\[\]]+)\s*=\s*(?:'([^']+)'|"([^"]+)")""")

    def perturb(self, example, rng, n):
        """Swap a literal that occurs in both question and SQL for another value of its column.

        The column's values are read only from tables that really have that column (a quoted
        name like "city" on a table without it would be read by SQLite as the string 'city').
        A double-quoted right-hand side counts as a literal only when it names no column."""
        sql, q = example["y"], example["x"]
        db_id = example["meta"]["db_id"]
        cols = self.columns(db_id)
        all_cols = {c.lower() for cs in cols.values() for c in cs}
        out, seen = [], {q}
        for m in self._LITERAL.finditer(sql):
            g = 2 if m.group(2) is not None else 3
            col, lit = m.group(1).split(".")[-1].strip('`"[]'), m.group(g)
            if g == 3 and lit.lower() in all_cols:
                continue  # "name" = "other_column": identifiers, not a literal
            if lit.lower() not in q.lower():
                continue
            quote = "'" if g == 2 else '"'
            values = {v for v in sql_sandbox.column_values(self.db_path(db_id), cols, col)
                      if isinstance(v, str) and v.strip() and quote not in v and "\n" not in v}
            values.discard(lit)
            for v in rng.sample(sorted(values), min(len(values), n)):
                q2 = re.sub(re.escape(lit), lambda _m, v=v: v, q, count=1, flags=re.I)
                sql2 = sql[:m.start(g)] + v + sql[m.end(g):]
                if q2 not in seen and len(out) < n:
                    seen.add(q2)
                    out.append((q2, sql2))
        return out


# ===================================================================================== registry
def load_task(name, **opts):
    """A task by name with its constructor options (config.TASK_OPTIONS says which each takes)."""
    classes = {"alignment": AlignmentTask, "mt": MTTask, "semparse": SemParseTask, "sql": SQLTask}
    if name not in classes:
        raise UserError(f"unknown task '{name}' (choose from {', '.join(TASKS)})")
    try:
        return classes[name](**opts)
    except TypeError as e:
        raise UserError(f"task {name}: {e}") from None


def add_task_args(p):
    """The task flags (declared once, in config.TaskConfig)."""
    return config.add_args(p, config.TaskConfig, "task")


def task_from_args(args):
    cfg = config.from_args(config.TaskConfig, args)
    return load_task(cfg.task, **config.task_options(cfg))


def task_config(args):
    """The task flags as a dict (saved in run folders so later scripts rebuild the same task)."""
    return config.task_config_dict(config.from_args(config.TaskConfig, args))
