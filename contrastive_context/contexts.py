"""The contexts contract: which examples stand before each training target, one module for all of it.

A contexts file (sample_contexts.py, or RUN/contexts.jsonl written by train.py) holds one JSONL
row per (epoch, target):
    {"epoch": int, "target": pool id, "regime": str, "kind": "zero|random|similar|one_near",
     "context": [example ids], "nsim": [floats], "paraphrase": bool, "copy": bool}
with a sidecar `<file>.meta.json` naming the task, its data fingerprint and the sampling config,
so a file made for another task or data set is refused (`read_rows`).

Example ids in a context:
    <pool id>         a pool example, e.g. "train-41"
    <id>#p<j>         the j-th synthetic paraphrase (x', y') of pool example <id> (a paraphrase file,
                      read by paraphrases.load_paraphrases)
    <id>#copy         an exact copy (x, y) of pool example <id> (the --repeat knob)
    <id>#cf           the counterfactual near-duplicate (x~, y~) of pool example <id> (--counterfactual;
                      rebuilt exactly by counterfactual.make from the stream "train-counterfactual|task|id")

Regimes: defined once in regimes.py (zero | random | similar | contrastive (alpha, beta, rho, repeat,
counterfactual, zero_frac) | random+similar). Each (epoch, target) draws from its own RNG stream seeded by
(seed, regime, epoch, target id), so a file is byte-identical for a given command, and sampling
epochs one at a time gives the same rows as sampling them all at once.
"""
import json
import random
from collections import defaultdict

from . import regimes
from .common import UserError, check_meta, meta_path, read_jsonl, write_jsonl_atomic
from .counterfactual import CF_SUFFIX

CF_NOUN_SUFFIX = "#cfn"  # a held-out-family noun swap as a training near-duplicate (--cf-train-family)
from .regimes import KINDS

PARA_SEP, COPY_SUFFIX = "#p", "#copy"


# ------------------------------------------------------------------------------------- ids
def para_id(base, j):
    return f"{base}{PARA_SEP}{j}"


def copy_id(base):
    return base + COPY_SUFFIX


# ------------------------------------------------------------------------------------- shared draws
def random_ids(rng, n, exclude, count):
    """`count` distinct indices of range(n), none in `exclude`, uniformly at random (seeded rng)."""
    excl = set(exclude)
    if n - len(excl) < count:
        raise UserError(f"the pool has too few examples ({n}, {len(excl)} excluded) for a context of {count}")
    picked = []
    while len(picked) < count:
        for j in rng.sample(range(n), min(n, count + len(excl))):
            if j not in excl:
                excl.add(j)
                picked.append(j)
                if len(picked) == count:
                    break
    return picked


def neighbours(index, tokenize, xs, m, exclude=None):
    """Top-m BM25 pool neighbours ([indices], [scores]) of each query string. A query with no BM25
    token (e.g. "." or an emoji) has no neighbours: empty lists. m is capped by what is available."""
    n = len(index.xs)
    exclude = exclude or [()] * len(xs)
    idx, score = [[] for _ in xs], [[] for _ in xs]
    live = [i for i, x in enumerate(xs) if tokenize(x)]
    if not live:
        return idx, score
    m = min(m, n - max((len(exclude[i]) for i in live), default=0))
    if m < 1:
        return idx, score
    ti, ts = index.topk([xs[i] for i in live], m, exclude=[exclude[i] for i in live])
    for r, i in enumerate(live):
        idx[i], score[i] = [int(j) for j in ti[r]], [float(s) for s in ts[r]]
    return idx, score


# ------------------------------------------------------------------------------------- sampling
def validate(cfg, pool_size):
    regimes.kind_probs(cfg.regime, cfg.alpha, cfg.beta, cfg.zero_frac)   # the regime's checks
    if cfg.alpha + cfg.beta > 1 + 1e-12:
        raise UserError(f"--alpha + --beta must be <= 1, got {cfg.alpha} + {cfg.beta} = {cfg.alpha + cfg.beta:g}")
    if cfg.counterfactual > 0 and cfg.regime != "contrastive":
        raise UserError("--counterfactual applies to --regime contrastive only (its One-Near-Contexts)")
    if pool_size == 0:
        raise UserError("the pool is empty")
    if cfg.regime != "zero" and cfg.k > pool_size - 1:
        raise UserError(f"--k {cfg.k} is larger than the pool minus the target ({pool_size - 1} examples)")
    if cfg.min_avg_sim is not None and cfg.regime != "similar":
        raise UserError("--min-avg-sim applies to --regime similar only")
    if cfg.cf_train_family != "train" and cfg.counterfactual == 0:
        raise UserError(f"--cf-train-family {cfg.cf_train_family} applies with --counterfactual > 0 only")


def train_counterfactual(task, ex, family="train"):
    """The counterfactual near-duplicate of pool example ex used in training (or None): the same for
    every epoch and seed, so its id names it exactly -- `<id>#cf` (counterfactual.py's edit) or, with
    family 'train+heldout-noun', `<id>#cfn` (counterfactual_heldout.py's noun swap) for about half the
    targets that have both (a fair coin per target), whichever exists for the others."""
    from . import counterfactual
    cf = counterfactual.make(task, ex, random.Random(f"train-counterfactual|{task.name}|{ex['id']}"))
    if family == "train":
        return cf
    noun = heldout_noun_counterfactual(task, ex)
    if cf is None or noun is None:
        return cf or noun
    return noun if random.Random(f"train-counterfactual-family|{task.name}|{ex['id']}").random() < 0.5 else cf


def heldout_noun_counterfactual(task, ex):
    """The held-out family's noun swap of pool example ex as a training near-duplicate `<id>#cfn` (or None)."""
    from . import counterfactual_heldout
    row = counterfactual_heldout.make(task, ex, random.Random(f"train-counterfactual-noun|{task.name}|{ex['id']}"),
                                      kinds=("noun",))
    if row is not None:
        row["id"] = ex["id"] + CF_NOUN_SUFFIX
    return row


class Sampler:
    """Draws the context of any (epoch, target) of task.pool under a ContextConfig."""

    def __init__(self, task, cfg, seed, paraphrases=None, index=None, show_progress=True):
        from .similarity import PoolIndex
        validate(cfg, len(task.pool))
        if cfg.cf_train_family != "train" and task.name != "mt":
            raise UserError(f"--cf-train-family {cfg.cf_train_family} is for --task mt (the held-out family's noun "
                            f"swaps), not {task.name}")
        self.task, self.cfg, self.seed, self.show = task, cfg, seed, show_progress
        self.pool = task.pool
        self.paraphrases = paraphrases or {}
        self.index = index or PoolIndex(self.pool, task.tokenize)
        self._cf = {}
        n = len(self.pool)
        if cfg.targets is not None and cfg.targets > n:
            raise UserError(f"--targets {cfg.targets} is larger than the pool ({n} examples)")
        self.n_targets = cfg.targets or n   # targets: the first N pool examples; contexts: the whole pool
        # excluded per target: itself and exact duplicates of its input
        self.exclude = [sorted(set(self.index.duplicates_of(ex["x"])) | {i})
                        for i, ex in enumerate(self.pool[:self.n_targets])]
        if cfg.k > n - max(len(e) for e in self.exclude) and cfg.regime != "zero":
            worst = max(range(self.n_targets), key=lambda i: len(self.exclude[i]))
            raise UserError(f"--k {cfg.k} is larger than the pool minus target {self.pool[worst]['id']} and its "
                            f"{len(self.exclude[worst]) - 1} duplicate(s)")
        self.top_idx = self.top_score = [[] for _ in range(self.n_targets)]
        if cfg.regime in ("similar", "contrastive", "random+similar"):
            # targets without a BM25 token have no neighbours: their Similar/One-Near contexts
            # fall back to random examples
            m = min(max(cfg.top_m, cfg.k), n - 1)
            self.top_idx, self.top_score = neighbours(self.index, task.tokenize,
                                                      [ex["x"] for ex in self.pool[:self.n_targets]], m, self.exclude)
        c = cfg
        self.probs = regimes.kind_probs(c.regime, c.alpha, c.beta, c.zero_frac)
        self.near = (c.rho, c.repeat, c.counterfactual) if c.regime == "contrastive" else (0.0, 0.0, 0.0)

    def row(self, epoch, i):
        ex, k, n = self.pool[i], self.cfg.k, len(self.pool)
        rho, repeat, gamma = self.near
        rng = random.Random(f"{self.seed}:{self.cfg.regime}:{epoch}:{ex['id']}")
        kind = regimes.pick_kind(self.probs, rng.random())
        is_para = is_copy = is_cf = False
        ctx = []
        if kind == "random":
            ctx = random_ids(rng, n, self.exclude[i], k)
        elif kind == "similar":
            cand = [j for j in self.top_idx[i] if j >= 0][:k]
            if len(cand) < k:  # fewer scored neighbours than k: fill with random ones
                cand += random_ids(rng, n, list(self.exclude[i]) + cand, k - len(cand))
            ctx = cand[::-1]  # most similar last, nearest the target
        elif kind == "one_near":
            if repeat > 0 and rng.random() < repeat:
                near, is_copy = dict(ex, id=copy_id(ex["id"])), True
            elif rho > 0 and self.paraphrases.get(ex["id"]) and rng.random() < rho:
                near, is_para = rng.choice(self.paraphrases[ex["id"]]), True
            elif gamma > 0 and rng.random() < gamma and self.counterfactual(i) is not None:
                near, is_cf = self.counterfactual(i), True
            elif self.top_idx[i]:
                cand, w = self.top_idx[i], [max(s, 0.0) for s in self.top_score[i]]
                w = w if sum(w) > 0 else [1.0] * len(w)
                near = rng.choices(cand, weights=w, k=1)[0]
            else:
                near = random_ids(rng, n, self.exclude[i], 1)[0]
            synthetic = is_para or is_copy or is_cf
            others = random_ids(rng, n, list(self.exclude[i]) + ([] if synthetic else [near]), k - 1)
            ctx = others + [near]
            rng.shuffle(ctx)
        ctx_ex = [c if isinstance(c, dict) else self.pool[c] for c in ctx]
        nsim = [round(s, 6) for s in self.index.nsim(ex["x"], [c["x"] for c in ctx_ex])] if ctx_ex else []
        row = {"epoch": epoch, "target": ex["id"], "regime": self.cfg.regime, "kind": kind,
               "context": [c["id"] for c in ctx_ex], "nsim": nsim, "paraphrase": is_para, "copy": is_copy}
        if gamma > 0:
            row["counterfactual"] = is_cf
        return row

    def counterfactual(self, i):
        if i not in self._cf:
            self._cf[i] = train_counterfactual(self.task, self.pool[i], self.cfg.cf_train_family)
        return self._cf[i]

    def epoch(self, e, bar=None):
        """Rows of one epoch (after the App. C.1 filter when --min-avg-sim is set). `bar`: a progress bar
        advanced per target (one bar for all epochs); without it, a bar of this epoch if show_progress."""
        from .common import progress
        own = None
        if bar is None:
            bar = own = progress(total=self.n_targets, desc=f"contexts[{self.cfg.regime}] epoch {e}",
                                 **({} if self.show else {"disable": True}))
        rows = []
        for i in range(self.n_targets):
            rows.append(self.row(e, i))
            bar.update(1)
        if own is not None:
            own.close()
        if self.cfg.min_avg_sim is not None:
            rows = [r for r in rows if r["kind"] != "similar" or sum(r["nsim"]) / len(r["nsim"]) > self.cfg.min_avg_sim]
        return rows


def sample_rows(task, cfg, epochs, seed=0, paraphrases=None, index=None, show_progress=True):
    """Rows of the contract for epochs 0..epochs-1 of task.pool."""
    if epochs < 1:
        raise UserError(f"--epochs must be >= 1, got {epochs}")
    from .common import progress
    s = Sampler(task, cfg, seed, paraphrases, index, show_progress)
    bar = progress(total=epochs * s.n_targets, desc=f"contexts[{cfg.regime}] x {epochs} epoch(s)", unit="row",
                   **({} if show_progress else {"disable": True}))  # one bar for every epoch
    try:
        return [r for e in range(epochs) for r in s.epoch(e, bar)]
    finally:
        bar.close()


def note_unused_rho(cfg, paraphrases):
    if cfg.regime == "contrastive" and cfg.rho > 0 and not paraphrases:
        print(f"note: no --paraphrases given, so --rho {cfg.rho} has nothing to draw from: "
              "every One-Near example without a copy comes from the pool", flush=True)


# ------------------------------------------------------------------------------------- files
def file_meta(task, cfg=None, seed=None, **extra):
    import dataclasses
    meta = {"kind": "contexts", "task": task.name, "task_fp": task.fingerprint()}
    if cfg is not None:
        meta["config"] = dataclasses.asdict(cfg)
    if seed is not None:
        meta["seed"] = seed
    return {**meta, **extra}


def write_rows(path, rows, task, cfg=None, seed=None, **extra):
    write_jsonl_atomic(path, rows, meta=file_meta(task, cfg, seed, **extra))


def validate_rows(rows, task, path, paraphrases=None):
    """Types, targets in the pool, and every context id resolvable: one error naming path:line."""
    pool_ids = {ex["id"] for ex in task.pool}
    seen = {}  # (epoch, target) -> line
    for n, r in enumerate(rows, 1):
        where = f"{path}:{n}"
        if not isinstance(r.get("epoch"), int) or isinstance(r.get("epoch"), bool) or r["epoch"] < 0:
            raise UserError(f"{where}: 'epoch' must be a non-negative integer, got {r.get('epoch')!r}")
        if not isinstance(r.get("target"), str):
            raise UserError(f"{where}: 'target' must be a string, got {r.get('target')!r}")
        if r["target"] not in pool_ids:
            raise UserError(f"{where}: target '{r['target']}' is not in the {task.name} pool "
                            f"(a contexts file made for another task or data set?)")
        key = (r["epoch"], r["target"])
        if key in seen:
            raise UserError(f"{where}: a second row for target '{r['target']}' in epoch {r['epoch']} (the first is "
                            f"line {seen[key]}); a contexts file has one row per (epoch, target)")
        seen[key] = n
        ctx = r.get("context")
        if not isinstance(ctx, list) or not all(isinstance(c, str) for c in ctx):
            raise UserError(f"{where}: 'context' must be a list of example ids, got {ctx!r}")
        if r["target"] in ctx:
            raise UserError(f"{where}: target '{r['target']}' is in its own context (its label would be given away; "
                            f"an exact copy, if wanted, is '{copy_id(r['target'])}')")
        for cid in ctx:
            try:
                resolve_id(cid, task, paraphrases)
            except UserError as e:
                raise UserError(f"{where}: {e}") from None


def read_rows(path, task, paraphrases=None):
    """Rows of a contexts file, checked against the task (sidecar) and validated row by row.

    The sidecar must name the task and its data fingerprint: rows hold only ids ("train-41"), which
    another data set of the same task has too, so a file without them (hand-made, its sidecar lost, or
    "task_fp" removed) would silently train on other examples. Such a file is refused after its rows
    were checked, with the one-line sidecar that declares it made for this data set."""
    meta = check_meta(path, "contexts", task=task.name, task_fp=task.fingerprint())
    rows = read_jsonl(path, "contexts", required=("epoch", "target", "context"))
    if not rows:
        raise UserError(f"contexts file {path} is empty")
    validate_rows(rows, task, path, paraphrases)
    if not meta or not meta.get("task") or not meta.get("task_fp"):
        want = json.dumps({"kind": "contexts", "task": task.name, "task_fp": task.fingerprint()})
        raise UserError(f"{path} does not say which data set it was made for ("
                        f"{'its sidecar names no task or task_fp' if meta else 'no ' + meta_path(path) + ' beside it'}"
                        f"): its ids could be another data set's. If it was made for this one ({task.describe()}), "
                        f"write {meta_path(path)} containing {want}")
    return rows


def pool_by_id(task):
    """{id: example} of task.pool, built once per task."""
    d = getattr(task, "_pool_by_id", None)
    if d is None:
        d = task._pool_by_id = {ex["id"]: ex for ex in task.pool}
    return d


def resolve_id(cid, task, paraphrases=None):
    """One context id -> its example dict (see the id schemes above)."""
    pool = pool_by_id(task)
    if cid in pool:
        return pool[cid]
    if cid.endswith(COPY_SUFFIX) and cid[:-len(COPY_SUFFIX)] in pool:
        base = pool[cid[:-len(COPY_SUFFIX)]]
        return dict(base, id=cid)
    if cid.endswith(CF_SUFFIX) and cid[:-len(CF_SUFFIX)] in pool:
        cf = train_counterfactual(task, pool[cid[:-len(CF_SUFFIX)]])
        if cf is None:
            raise UserError(f"context id {cid}: pool example {cid[:-len(CF_SUFFIX)]} has no counterfactual")
        return cf
    if cid.endswith(CF_NOUN_SUFFIX) and cid[:-len(CF_NOUN_SUFFIX)] in pool:
        cf = heldout_noun_counterfactual(task, pool[cid[:-len(CF_NOUN_SUFFIX)]])
        if cf is None:
            raise UserError(f"context id {cid}: pool example {cid[:-len(CF_NOUN_SUFFIX)]} has no held-out noun swap")
        return cf
    if PARA_SEP in cid:
        base, j = cid.rsplit(PARA_SEP, 1)
        if not paraphrases:
            raise UserError(f"context id {cid} is a paraphrase: pass the paraphrase file (--paraphrases)")
        try:
            return paraphrases[base][int(j)]
        except (KeyError, IndexError, ValueError):
            raise UserError(f"context id {cid} is not in the paraphrase file") from None
    raise UserError(f"context id {cid} is not in the {task.name} pool")


def resolve(row, task, paraphrases=None):
    """The context examples of a row, in order."""
    return [resolve_id(cid, task, paraphrases) for cid in row["context"]]


# ------------------------------------------------------------------------------------- reports
def sampling_record(path):
    """What a contexts file says it was sampled with (its sidecar's "config" and "seed"), for a run's
    config.json; None for a file whose sidecar has no sampling config (hand-made)."""
    from .common import read_meta
    meta = read_meta(path) or {}
    return {**meta["config"], "seed": meta.get("seed")} if isinstance(meta.get("config"), dict) else None


def kind_table(rows):
    """A small table: rows, share, mean nsim, mean max nsim, paraphrase and copy counts per kind."""
    by = defaultdict(list)
    for r in rows:
        by[r["kind"]].append(r)
    lines = [f"{'kind':<10} {'rows':>7} {'share':>6} {'mean nsim':>9} {'mean max':>9} {'paraphrase':>10} {'copy':>6}"]
    for kind in KINDS:
        rs = by.get(kind, [])
        if not rs:
            continue
        sims = [s for r in rs for s in r["nsim"]]
        mx = [max(r["nsim"]) for r in rs if r["nsim"]]
        mean = f"{sum(sims) / len(sims):.3f}" if sims else "-"
        mmax = f"{sum(mx) / len(mx):.3f}" if mx else "-"
        lines.append(f"{kind:<10} {len(rs):>7} {len(rs) / len(rows):>6.3f} {mean:>9} {mmax:>9} "
                     f"{sum(bool(r.get('paraphrase')) for r in rs):>10} {sum(bool(r.get('copy')) for r in rs):>6}")
    return "\n".join(lines)
