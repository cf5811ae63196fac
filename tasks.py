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

Tasks: alignment (synthetic, default), mt (local parallel text or hub loaders), semparse
(MTOP, XSemPLR layout), sql (BIRD layout, execution accuracy on SQLite).
"""
import hashlib
import json
import os
import random
import re
import sqlite3
import string
import time

from common import UserError, read_json, read_jsonl
from similarity import word_tokenize

HERE = os.path.dirname(os.path.abspath(__file__))
TASKS = ("alignment", "mt", "semparse", "sql")
LANG_NAMES = {"en": "English", "de": "German", "fr": "French", "es": "Spanish", "lt": "Lithuanian",
              "ta": "Tamil", "hi": "Hindi", "cs": "Czech", "th": "Thai", "it": "Italian"}
def load_template(name):
    with open(os.path.join(HERE, "prompts", f"{name}.json"), encoding="utf-8") as f:
        return json.load(f)


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

    def corpus_metrics(self, predictions, examples):
        return {}

    def perturb(self, example, rng, n):
        raise NotImplementedError

    def test_split(self, name=None):
        name = name or next(iter(self.tests))
        if name not in self.tests:
            raise UserError(f"task {self.name}: no test split '{name}' (have: {', '.join(self.tests)})")
        return self.tests[name]

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

    Synthetic-track knobs (SPEC "Synthetic-track extensions"), constructor kwargs:
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
HUB_SOURCES = {  # the paper's data (Appendix C.2); only usable online with `datasets` installed
    "europarl": ("Helsinki-NLP/europarl", "{a}-{b}"),
    "samanantar": ("ai4bharat/samanantar", "{tgt}"),
    "flores_plus": ("openlanguagedata/flores_plus", None),
    "emea": ("Helsinki-NLP/emea", "{a}-{b}"),
    "tanzil": ("Helsinki-NLP/tanzil", "{a}-{b}"),
    "iitb": ("cfilt/iitb-english-hindi", None),
}


def _read_lines(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").rstrip("\r") for line in f]


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
            if "x" in row and "y" in row:
                pairs.append((row["x"], row["y"]))
            elif src in row and tgt in row:
                pairs.append((row[src], row[tgt]))
            else:
                raise UserError(f"{path}:{n}: need fields x/y or {src}/{tgt}")
    else:
        return None
    return [{"id": f"{split}-{i}", "x": x.strip(), "y": y.strip()} for i, (x, y) in enumerate(pairs)
            if x.strip() and y.strip()]


def load_hub(name, src, tgt, split):  # pragma: no cover - needs network
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        raise UserError(f"hub data set '{name}' needs the network (HF_HUB_OFFLINE=1 is set); "
                        f"use local files with --data DIR")
    try:
        import datasets
    except ImportError:
        raise UserError(f"hub data set '{name}' needs `pip install datasets` and network access") from None
    repo, cfg = HUB_SOURCES[name]
    a, b = sorted((src, tgt))
    try:
        if name == "flores_plus":
            code = {"en": "eng_Latn", "de": "deu_Latn", "hi": "hin_Deva", "ta": "tam_Taml", "lt": "lit_Latn"}
            xs = datasets.load_dataset(repo, code[src], split=split)["text"]
            ys = datasets.load_dataset(repo, code[tgt], split=split)["text"]
            pairs = list(zip(xs, ys))
        else:
            ds = datasets.load_dataset(repo, cfg.format(a=a, b=b, tgt=tgt) if cfg else None, split=split)
            pairs = [(r["translation"][src], r["translation"][tgt]) if "translation" in r else (r[src], r[tgt])
                     for r in ds]
    except Exception as e:
        raise UserError(f"could not load hub data set {repo}: {type(e).__name__}: {e}") from None
    return [{"id": f"{split}-{i}", "x": x, "y": y} for i, (x, y) in enumerate(pairs)]


class MTTask(Task):
    name, stop = "mt", "\n"

    def __init__(self, data=None, src="en", tgt="de", test_splits=None, max_pool=None, metric="chrf", **_):
        if not data:
            raise UserError("task mt needs --data DIR (parallel files) or --data hub:<name>")
        if data.startswith("hub:"):
            hub = data[4:]
            if hub not in HUB_SOURCES:
                raise UserError(f"unknown hub data set '{hub}' (known: {', '.join(HUB_SOURCES)})")
            pool, tests = load_hub(hub, src, tgt, "train"), {"test": load_hub(hub, src, tgt, "test")}
        else:
            if not os.path.isdir(data):
                raise UserError(f"data folder not found: {data}")
            pool = load_parallel(data, "train", src, tgt)
            if pool is None:
                raise UserError(f"no training split in {data} (need train.{src}/train.{tgt}, train.tsv or train.jsonl)")
            tests = {}
            for split in test_splits or ("test", "val", "dev", "ood"):
                ex = load_parallel(data, split, src, tgt)
                if ex is not None:
                    tests[split] = ex
            if not tests:
                raise UserError(f"no test split in {data} (looked for test/val/dev/ood)")
        if max_pool:
            pool = pool[:max_pool]
        if metric not in ("chrf", "bleu"):
            raise UserError(f"mt metric must be chrf or bleu (COMET is added by evaluate.py --comet), got {metric}")
        self.metric_name = metric
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
class SemParseTask(Task):
    """MTOP in the XSemPLR layout: [{"id", "question": {lang: text}, "mr": {"slot_intent": {lang: lf}}}]."""
    name, metric_name = "semparse", "exact_match"

    def __init__(self, data=None, lang="en", max_pool=None, **_):
        if not data or not os.path.isdir(data):
            raise UserError(f"task semparse needs --data DIR with dev.json/test.json (got {data})")
        files = {s: os.path.join(data, f"{s}.json") for s in ("train", "dev", "test")}
        pool_split = "train" if os.path.isfile(files["train"]) else "dev"
        splits = {s: self._load(p, lang) for s, p in files.items() if os.path.isfile(p)}
        if pool_split not in splits:
            raise UserError(f"no train.json or dev.json in {data}")
        pool = splits.pop(pool_split)[:max_pool or None]
        if pool_split == "train" and "test" in splits:
            splits.pop("dev", None)
        if not splits:
            raise UserError(f"no test split in {data} (need test.json)")
        super().__init__(pool, splits, load_template("semparse"), {"lang_name": LANG_NAMES.get(lang, lang)})

    @staticmethod
    def _load(path, lang):
        items = read_json(path, "MTOP")
        if not isinstance(items, list):
            raise UserError(f"{path}: expected a JSON list of items")
        out = []
        for i, it in enumerate(items):
            try:
                x, y = it["question"][lang], it["mr"]["slot_intent"][lang]
            except (KeyError, TypeError):
                raise UserError(f"{path}: item {i} has no question/slot_intent for language '{lang}'") from None
            out.append({"id": str(it.get("id", i)), "x": x.strip(), "y": " ".join(y.split())})
        return out

    def score(self, prediction, example):
        return 100.0 * ("".join(prediction.split()) == "".join(example["y"].split()))

    def perturb(self, example, rng, n):
        slots = re.findall(r"\[SL:\S+ ([^\[\]]+?) \]", example["y"])
        return [(x2, example["y"]) for x2 in perturb_text(example["x"], rng, n, protected=slots)]


# ===================================================================================== sql
def sqlite_ro(path):
    """Open an SQLite database read-only (a DELETE in a prediction cannot change it)."""
    if not os.path.isfile(path):
        raise UserError(f"SQLite database not found: {path}")
    return sqlite3.connect(f"file:{os.path.abspath(path)}?mode=ro", uri=True, check_same_thread=False)


def execute_sql(db_path, sql, timeout=5.0):
    """Rows of `sql` on a read-only connection, or None on error / timeout."""
    conn = sqlite_ro(db_path)
    deadline = time.monotonic() + timeout
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    try:
        return conn.execute(sql).fetchall()
    except (sqlite3.Error, sqlite3.Warning, ValueError, OverflowError):
        return None
    finally:
        conn.close()


def _rows_key(rows):
    return set(tuple(map(repr, r)) for r in rows)


class SQLTask(Task):
    """BIRD layout: train.json/dev.json with db_id, question, evidence, SQL; databases/<db>/<db>.sqlite."""
    name, metric_name = "sql", "execution_accuracy"

    def __init__(self, data=None, max_pool=None, sql_schema="full", sql_timeout=5.0, **_):
        if not data or not os.path.isdir(data):
            raise UserError(f"task sql needs --data DIR in the BIRD layout (got {data})")
        self.data, self.sql_schema, self.timeout = data, sql_schema, sql_timeout
        splits = {s: self._load(os.path.join(data, f"{s}.json"), s) for s in ("train", "dev", "test")
                  if os.path.isfile(os.path.join(data, f"{s}.json"))}
        if "train" not in splits:
            raise UserError(f"no train.json in {data}")
        pool = splits.pop("train")[:max_pool or None]
        if not splits:
            raise UserError(f"no dev.json or test.json in {data}")
        self._schemas, self._gold = {}, {}
        super().__init__(pool, splits, load_template("sql"))

    def _load(self, path, split):
        items = read_json(path, "BIRD")
        out = []
        for i, it in enumerate(items):
            missing = [k for k in ("db_id", "question", "SQL") if k not in it]
            if missing:
                raise UserError(f"{path}: item {i} lacks {', '.join(missing)}")
            q = it["question"].strip()
            if it.get("evidence"):
                q += f" (hint: {it['evidence'].strip()})"
            out.append({"id": f"{split}-{i}", "x": q, "y": " ".join(it["SQL"].split()),
                        "meta": {"db_id": it["db_id"], "question": it["question"].strip(),
                                 "evidence": it.get("evidence", "")}})
        return out

    def db_path(self, db_id):
        return os.path.join(self.data, "databases", db_id, f"{db_id}.sqlite")

    def schema(self, db_id, sql=None):
        if db_id not in self._schemas:
            conn = sqlite_ro(self.db_path(db_id))
            self._schemas[db_id] = conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type='table' AND sql IS NOT NULL").fetchall()
            conn.close()
        tables = self._schemas[db_id]
        if self.sql_schema == "used" and sql:
            used = [t for t in tables if re.search(r"\b" + re.escape(t[0]) + r"\b", sql, re.I)]
            tables = used or tables
        return "\n".join(s for _, s in tables)

    def prompt_fields(self, meta):
        if not meta:
            return {"schema": ""}
        return {"schema": self.schema(meta["db_id"], meta.get("sql"))}

    def score(self, prediction, example):
        db = self.db_path(example["meta"]["db_id"])
        key = (db, example["y"])
        if key not in self._gold:
            gold = execute_sql(db, example["y"], self.timeout)
            self._gold[key] = None if gold is None else _rows_key(gold)
        pred = execute_sql(db, prediction, self.timeout)
        return 100.0 * (pred is not None and self._gold[key] is not None and _rows_key(pred) == self._gold[key])

    def perturb(self, example, rng, n):
        """Swap a literal that occurs in both question and SQL for another value of its column."""
        sql, q = example["y"], example["x"]
        db = self.db_path(example["meta"]["db_id"])
        out, seen = [], {q}
        for m in re.finditer(r"([\w.`\"]+)\s*=\s*'([^']+)'", sql):
            col, lit = m.group(1).split(".")[-1].strip('`"'), m.group(2)
            if lit.lower() not in q.lower():
                continue
            values, conn = set(), sqlite_ro(db)
            for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
                try:
                    rows = conn.execute(f'SELECT DISTINCT "{col}" FROM "{table}" LIMIT 200').fetchall()
                except sqlite3.Error:
                    continue  # this table has no such column
                values |= {r[0] for r in rows if isinstance(r[0], str) and r[0] and "'" not in r[0]}
            conn.close()
            values.discard(lit)
            for v in rng.sample(sorted(values), min(len(values), n)):
                q2 = re.sub(re.escape(lit), v, q, count=1, flags=re.I)
                sql2 = sql[:m.start(2)] + v + sql[m.end(2):]
                if q2 not in seen and len(out) < n:
                    seen.add(q2)
                    out.append((q2, sql2))
        return out


# ===================================================================================== registry
def load_task(name, **opts):
    classes = {"alignment": AlignmentTask, "mt": MTTask, "semparse": SemParseTask, "sql": SQLTask}
    if name not in classes:
        raise UserError(f"unknown task '{name}' (choose from {', '.join(TASKS)})")
    return classes[name](**opts)


def add_task_args(p):
    g = p.add_argument_group("task")
    g.add_argument("--task", default="alignment", help=f"one of {', '.join(TASKS)} (default: alignment)")
    g.add_argument("--data", default=None, help="data folder (mt: DIR/{split}.{src,tgt}, .tsv or .jsonl, "
                   "or hub:<europarl|samanantar|flores_plus|emea|tanzil|iitb>; semparse: XSemPLR MTOP folder; "
                   "sql: BIRD folder)")
    g.add_argument("--src", default="en", help="mt source language code")
    g.add_argument("--tgt", default="de", help="mt target language code")
    g.add_argument("--lang", default="en", help="semparse language (en, de, fr, es)")
    g.add_argument("--task-seed", type=int, default=0, help="alignment: seed of the PFAs and data")
    g.add_argument("--align-m", type=int, default=3, help="alignment: input symbols per instance")
    g.add_argument("--align-len", type=int, default=2, help="alignment: output letters per symbol")
    g.add_argument("--n-train", type=int, default=200, help="alignment: training instances")
    g.add_argument("--n-test", type=int, default=300, help="alignment: test instances")
    g.add_argument("--max-pool", type=int, default=None, help="use only the first N pool examples")
    g.add_argument("--metric", default="chrf", help="mt: chrf (default) or bleu")
    g.add_argument("--sql-schema", default="full", choices=("full", "used"),
                   help="sql: schema in the prompt: all tables, or tables named in the gold SQL")
    return g


def task_from_args(args):
    return load_task(args.task, data=args.data, src=args.src, tgt=args.tgt, lang=args.lang,
                     seed=args.task_seed, m=args.align_m, length=args.align_len, n_train=args.n_train,
                     n_test=args.n_test, max_pool=args.max_pool, metric=args.metric,
                     sql_schema=args.sql_schema)


def task_config(args):
    """The task flags as a dict (saved in run folders so later scripts rebuild the same task)."""
    keys = ("task", "data", "src", "tgt", "lang", "task_seed", "align_m", "align_len", "n_train", "n_test",
            "max_pool", "metric", "sql_schema")
    return {k: getattr(args, k) for k in keys}


# ===================================================================================== paraphrases
def load_paraphrases(path, task=None):
    """{original id: [{"id": "<id>#p<j>", "x": x', "y": y'}]} from a paraphrase JSONL.

    The label of a paraphrase is the row's `labels[j]` when given (e.g. SQL literal swaps),
    else the original example's y (looked up in the task's pool and test splits)."""
    rows = read_jsonl(path, "paraphrase", required=("id", "x", "paraphrases"))
    by_id = {}
    if task is not None:
        for ex in task.pool + [e for t in task.tests.values() for e in t]:
            by_id[ex["id"]] = ex
    out = {}
    for n, row in enumerate(rows, 1):
        paras, labels = row["paraphrases"], row.get("labels")
        if not isinstance(paras, list) or (labels is not None and len(labels) != len(paras)):
            raise UserError(f"{path}:{n}: 'paraphrases' must be a list (and 'labels' as long)")
        base = by_id.get(row["id"])
        if labels is None and base is None:
            continue  # an input of another split / task: nothing to attach a label to
        exs = []
        for j, p in enumerate(paras):
            ex = {"id": f"{row['id']}#p{j}", "x": p, "y": labels[j] if labels is not None else base["y"]}
            if base is not None and "meta" in base:
                ex["meta"] = base["meta"]
            exs.append(ex)
        out[row["id"]] = exs
    return out
