"""Alignment data for the from-scratch sweep: vectorised PFA tables, the training stream by
regime (with rule diversity and repetition), the fixed evaluation sets (four context types +
zero, the deployment-drift test, the probe contexts) and their scoring.

Rule tables (numpy, index r): 0 = the task's PFAs, 1..B = the fresh rule sets of
`AlignmentTask.rule_set(b)`, B + 1 = the drifted table of `AlignmentTask.drift_rules()`.

An instance is an input x [m] (symbol ids 0..24, distinct) and its chunks c [m, l] (letter ids,
one chunk per INPUT position); the label is y = c[pi] flattened. A paraphrase permutes the input
positions and each chunk moves with its symbol, so it stays a valid example of the same rules.

Training stream (METHOD.md "Training regimes" + "Synthetic track"), per sequence:
  rules   with probability F (`fresh_rules`) a fresh rule set b ~ U{1..B}: the target AND every
          context example get chunks sampled under b (inputs still come from the pool);
  kind    zero | random | similar | one_near by the regime's probabilities (see `regime_probs`);
  near    in a One-Near context: u < R -> an exact copy of (x, y); u < R + rho (1 - R) -> a
          paraphrase of the target; u < R + rho (1 - R) + gamma (1 - R)(1 - rho) -> a counterfactual
          near-duplicate (x~, y~): x with one symbol replaced by a symbol not in x, its chunk drawn
          under the sequence's rules, the other chunks kept (regimes.near_probs); else a pool
          neighbour drawn from the top-M (M = 50) pool
          inputs by symbol overlap (BM25 with equal idf ~ shared symbols), probability ∝ score;
          the near example sits at a uniformly random position among the k.
  Random examples are pool examples other than the target and its duplicates (same x).
Sequences are token rows of equal length: a zero context is k examples of <pad>.
"""
import numpy as np
import torch

from .. import regimes
from . import scratch

from ..evaluation import CONTEXT_TYPES
from ..regimes import KINDS, NEAR_KINDS  # the kinds of context and of near examples (indices in `info`)
TOP_M = 50
# the context types of evaluation.CONTEXT_TYPES scored as acc_<type> in every run (random+counterfactual,
# added later, has its own scores too: edit_ok, cf_copy)
ACC_TYPES = tuple(t for t in CONTEXT_TYPES if t != "random+counterfactual")


def regime_probs(regime, alpha=0.3, beta=0.2, zero_frac=0.0):
    """Probabilities over KINDS for a regime: regimes.kind_probs, the one definition shared with the
    real-LM contexts (a ValueError here, for the synthetic library's callers)."""
    from ..common import UserError
    try:
        return np.array(regimes.kind_probs(regime, alpha, beta, zero_frac), dtype=np.float64)
    except UserError as e:
        raise ValueError(str(e)) from None


# ============================================================================ PFA tables
class RuleTables:
    """PFA tables as arrays [R, 25, Q, 4] (letter, next state, cumulative prob, valid)."""

    def __init__(self, tables, length):
        R, Q, K = len(tables), 12, 4
        self.length = length
        self.letter = np.zeros((R, 25, Q, K), np.int64)
        self.nxt = np.zeros((R, 25, Q, K), np.int64)
        self.cum = np.full((R, 25, Q, K), 2.0)
        self.valid = np.zeros((R, 25, Q, K), bool)
        for r, table in enumerate(tables):
            for s, sym in enumerate(scratch.SYMBOLS):
                for q, trans in enumerate(table[sym]):
                    acc = 0.0
                    for t, (letter, nxt, p) in enumerate(trans):
                        acc += p
                        self.letter[r, s, q, t] = ord(letter) - 97
                        self.nxt[r, s, q, t] = nxt
                        self.cum[r, s, q, t] = acc
                        self.valid[r, s, q, t] = True
                    self.cum[r, s, q, len(trans) - 1] = 1.0 + 1e-9   # guard against rounding
        self.next_onehot = np.zeros((R, 25, Q, K, Q), bool)
        idx = np.nonzero(self.valid)
        self.next_onehot[idx + (self.nxt[idx],)] = True

    def sample(self, r, s, rng):
        """One chunk per (rule table r [N], symbol s [N]) -> letters [N, l]."""
        r, s = np.broadcast_arrays(np.asarray(r), np.asarray(s))
        state = np.zeros(r.shape, np.int64)
        out = np.empty(r.shape + (self.length,), np.int64)
        for t in range(self.length):
            u = rng.random(r.shape)
            cum = self.cum[r, s, state]                          # [..., 4]
            j = np.minimum((u[..., None] > cum).sum(-1), 3)
            out[..., t] = self.letter[r, s, state, j]
            state = self.nxt[r, s, state, j]
        return out

    def accepts(self, r, s, chunk):
        """Does the PFA of symbol s [N] in table r [N] read chunk [N, l] (letter ids; anything
        outside 0..25 is rejected) along some path from state 0?"""
        r, s = np.broadcast_arrays(np.asarray(r), np.asarray(s))
        cur = np.zeros(r.shape + (12,), bool)
        cur[..., 0] = True
        for t in range(chunk.shape[-1]):
            ch = chunk[..., t]
            m = self.valid[r, s] & (self.letter[r, s] == ch[..., None, None]) & cur[..., :, None]   # [..., Q, 4]
            cur = (m[..., None] & self.next_onehot[r, s]).any(axis=(-3, -2))
        return cur.any(-1)


def build_tables(task):
    """RuleTables for [task PFAs, rule_set(0..B-1), drifted table] and the drifted symbol ids."""
    drifted, dtable = task.drift_rules()
    tables = [task.pfas] + [task.rule_set(b) for b in range(task.n_rule_sets)] + [dtable]
    return RuleTables(tables, task.length), np.array([scratch.SYMBOLS.index(c) for c in drifted], np.int64)


# ============================================================================ data
class AlignmentData:
    """Arrays of an AlignmentTask (pool + test), its rule tables, samplers and encoders."""

    def __init__(self, task, k=4):
        self.task, self.k, self.m, self.l = task, k, task.m, task.length
        self.pi = np.array(task.pi)
        self.pi_inv = np.argsort(self.pi)
        self.tables, self.drifted = build_tables(task)
        self.B = task.n_rule_sets
        self.drift_table = self.B + 1
        self.pool_x, self.pool_c = self._arrays(task.pool)
        self.test_x, self.test_c = self._arrays(task.test_split())
        self.P = len(self.pool_x)
        self.pool_code = self.code(self.pool_x)
        self.pool_onehot = torch.zeros(self.P, 25)
        self.pool_onehot[torch.arange(self.P)[:, None], torch.from_numpy(self.pool_x)] = 1.0
        self.ex_len = self.m + 1 + self.m * self.l + 1
        self.seq_len = (k + 1) * self.ex_len - 1             # k examples + the query and its y (no EOL)
        self.n_target = self.m * self.l

    # -- conversions ----------------------------------------------------------------
    def _arrays(self, examples):
        x = np.array([[scratch.SYMBOLS.index(c) for c in e["x"]] for e in examples], np.int64)
        y = np.array([[ord(c) - 97 for c in e["y"]] for e in examples], np.int64).reshape(len(examples), self.m, self.l)
        return x, y[:, self.pi_inv]                          # chunks by input position

    @staticmethod
    def code(x):
        return (x * (25 ** np.arange(x.shape[-1]))).sum(-1)

    def label(self, c):
        """Chunks by input position [..., m, l] -> y letters [..., m*l] in output order."""
        return c[..., self.pi, :].reshape(*c.shape[:-2], self.m * self.l)

    def encode(self, ctx_x, ctx_c, x, c, with_y=True):
        """Token rows: ctx_x [N, k, m], ctx_c [N, k, m, l] (ctx_x < 0 -> a <pad> example), target
        x [N, m], c [N, m, l]. Returns [N, seq_len] (or without the target's y and EOL)."""
        N, k = ctx_x.shape[:2]
        ex = np.empty((N, k, self.ex_len), np.int64)
        ex[..., :self.m] = ctx_x + scratch.SYM0
        ex[..., self.m] = scratch.SEP
        ex[..., self.m + 1:-1] = self.label(ctx_c) + scratch.LET0
        ex[..., -1] = scratch.EOL
        ex[ctx_x[..., 0] < 0] = scratch.PAD
        q = [x + scratch.SYM0, np.full((N, 1), scratch.SEP)]
        if with_y:
            q.append(self.label(c) + scratch.LET0)
        return np.concatenate([ex.reshape(N, -1)] + q, 1)

    # -- neighbours ----------------------------------------------------------------------
    def _scores(self, x, exclude_idx):
        """Shared-symbol counts [N, P] with the target itself and exact duplicates of x at -inf."""
        q = torch.zeros(len(x), 25)
        q[torch.arange(len(x))[:, None], torch.from_numpy(x)] = 1.0
        s = q @ self.pool_onehot.T
        dup = torch.from_numpy(self.code(x)[:, None] == self.pool_code[None, :])
        s[dup] = -np.inf
        if exclude_idx is not None:
            s[torch.arange(len(x)), torch.from_numpy(exclude_idx)] = -np.inf
        return s

    def _tiebreak(self, s, rng):
        return s + torch.from_numpy(rng.random(tuple(s.shape)).astype(np.float32)) * 1e-3

    def top_similar(self, x, k, rng, exclude_idx=None):
        """Top-k pool indices by overlap (random tie-break), most similar LAST."""
        s = self._tiebreak(self._scores(x, exclude_idx), rng)
        return s.topk(k, dim=1).indices.flip(1).numpy()

    def near_neighbour(self, x, rng, exclude_idx=None):
        """One pool index per row from the top-M by overlap, probability ∝ score."""
        s = self._scores(x, exclude_idx)
        top = self._tiebreak(s, rng).topk(min(TOP_M, self.P), dim=1).indices
        w = s.gather(1, top).clamp(min=0).numpy().astype(np.float64) + 1e-9
        w /= w.sum(1, keepdims=True)
        pick = (rng.random((len(x), 1)) > np.cumsum(w, 1)).sum(1).clip(max=w.shape[1] - 1)
        return top.numpy()[np.arange(len(x)), pick]

    def random_others(self, x, n, rng, exclude_idx=None):
        """n random pool indices per row, none equal to the target or a duplicate of its x."""
        idx = rng.integers(self.P, size=(len(x), n))
        code = self.code(x)[:, None]
        for _ in range(50):
            bad = self.pool_code[idx] == code
            if exclude_idx is not None:
                bad |= idx == exclude_idx[:, None]
            if not bad.any():
                break
            idx[bad] = rng.integers(self.P, size=int(bad.sum()))
        return idx

    def paraphrase(self, x, c, rng):
        """Shuffle the input positions (never the identity for m >= 2); chunks move with symbols."""
        N = len(x)
        perm = np.argsort(rng.random((N, self.m)), 1)
        ident = (perm == np.arange(self.m)).all(1)
        while self.m >= 2 and ident.any():
            perm[ident] = np.argsort(rng.random((int(ident.sum()), self.m)), 1)
            ident = (perm == np.arange(self.m)).all(1)
        rows = np.arange(N)[:, None]
        return x[rows, perm], c[rows, perm]

    def resample(self, r, x, rng):
        """Chunks [..., m, l] for inputs x [..., m] under rule tables r (broadcast over m)."""
        return self.tables.sample(np.broadcast_to(np.asarray(r)[..., None], x.shape), x, rng)

    # -- the training stream ------------------------------------------------------------------
    def counterfactual(self, x, c, rule, rng):
        """x~ [N, m], c~ [N, m, l], edited position [N]: one input position gets a symbol not in x and a
        chunk sampled for it under the row's rule table `rule` [N]; every other chunk is kept."""
        N = len(x)
        pos = rng.integers(self.m, size=N)
        new = rng.integers(25, size=N)
        clash = (x == new[:, None]).any(1)
        while clash.any():
            new[clash] = rng.integers(25, size=int(clash.sum()))
            clash = (x == new[:, None]).any(1)
        cx, cc = x.copy(), c.copy()
        cx[np.arange(N), pos] = new
        cc[np.arange(N), pos] = self.tables.sample(np.asarray(rule), new, rng)
        return cx, cc, pos

    def train_batch(self, rng, n, probs, rho=0.0, repeat=0.0, fresh=0.0, counts=None, info=None, gamma=0.0):
        """n training token rows [n, seq_len] and per-kind counts (added to `counts`). `info` (a dict)
        receives per-row arrays kind, near_kind (-1: none), position, rule, target index (no effect on
        the random stream)."""
        k, m = self.k, self.m
        ti = rng.integers(self.P, size=n)
        x = self.pool_x[ti]
        kind = (rng.random(n)[:, None] > np.cumsum(probs)[None, :]).sum(1).clip(max=3)
        rule = np.where(rng.random(n) < fresh, 1 + rng.integers(self.B, size=n), 0)
        ci = self.random_others(x, k, rng, ti)
        sim = kind == 2
        if sim.any():
            ci[sim] = self.top_similar(x[sim], k, rng, ti[sim])
        one = kind == 3
        u = rng.random(n)
        t_para = repeat + rho * (1 - repeat)
        t_cf = t_para + gamma * (1 - repeat) * (1 - rho)            # == t_para when gamma = 0: the same stream
        near_kind = np.where(u < repeat, 2, np.where(u < t_para, 1, np.where(u < t_cf, 3, 0)))
        near_kind[~one] = -1
        pos = rng.integers(k, size=n)
        pooln = near_kind == 0
        if pooln.any():
            ci[pooln, pos[pooln]] = self.near_neighbour(x[pooln], rng, ti[pooln])
        ctx_x = self.pool_x[ci]
        c = self.pool_c[ti].copy()
        ctx_c = self.pool_c[ci].copy()
        fr = rule > 0
        if fr.any():                                          # fresh rules: every example re-labelled
            c[fr] = self.resample(rule[fr], x[fr], rng)
            ctx_c[fr] = self.resample(rule[fr][:, None], ctx_x[fr], rng)
        cp = near_kind == 2
        if cp.any():
            ctx_x[cp, pos[cp]] = x[cp]
            ctx_c[cp, pos[cp]] = c[cp]
        pp = near_kind == 1
        if pp.any():
            px, pc = self.paraphrase(x[pp], c[pp], rng)
            ctx_x[pp, pos[pp]] = px
            ctx_c[pp, pos[pp]] = pc
        cf = near_kind == 3
        if cf.any():
            fx, fc, _ = self.counterfactual(x[cf], c[cf], rule[cf], rng)
            ctx_x[cf, pos[cf]] = fx
            ctx_c[cf, pos[cf]] = fc
        zero = kind == 0
        ctx_x[zero] = -1
        if counts is not None:
            for j, name in enumerate(KINDS):
                counts[name] = counts.get(name, 0) + int((kind == j).sum())
            for j, name in enumerate(NEAR_KINDS):
                counts[f"near_{name}"] = counts.get(f"near_{name}", 0) + int((near_kind == j).sum())
            counts["fresh_rules"] = counts.get("fresh_rules", 0) + int(fr.sum())
        if info is not None:
            info.update(kind=kind, near_kind=near_kind, position=pos, rule=rule, target=ti)
        return self.encode(ctx_x, ctx_c, x, c)

    # -- the fixed evaluation sets --------------------------------------------------------------
    def eval_sets(self, seed, n_test=None):
        """{name: {"prompt": [N, T-ml] tokens, "x", "c" (gold chunks), "rule" (table per chunk),
        ...}} for the context types, the probes and the drift test. Independent of any model."""
        rng = np.random.default_rng([seed, 7])
        x, c = self.test_x[:n_test], self.test_c[:n_test]
        N, k = len(x), self.k
        rnd = self.random_others(x, k, rng)
        sets = {}

        def add(name, ctx_x, ctx_c, tx, tc, rule=0, **extra):
            sets[name] = {"prompt": self.encode(ctx_x, ctx_c, tx, tc, with_y=False), "x": tx, "c": tc,
                          "ctx_x": ctx_x, "ctx_c": ctx_c, "rule": rule, **extra}

        add("zero", np.full((N, k, self.m), -1), np.zeros((N, k, self.m, self.l), np.int64), x, c)
        add("random", self.pool_x[rnd], self.pool_c[rnd], x, c)
        sim = self.top_similar(x, k, rng)
        add("similar", self.pool_x[sim], self.pool_c[sim], x, c)
        pos = rng.integers(k, size=N)
        nearest = self.top_similar(x, 1, rng)[:, 0]
        ci = rnd.copy()
        ci[np.arange(N), pos] = nearest
        add("random+nearest", self.pool_x[ci], self.pool_c[ci], x, c, position=pos)
        px, pc = self.paraphrase(x, c, rng)
        cx, cc = self.pool_x[rnd].copy(), self.pool_c[rnd].copy()
        cx[np.arange(N), pos], cc[np.arange(N), pos] = px, pc
        add("random+paraphrase", cx, cc, x, c, position=pos)
        # copy probe: the same context, labels deranged (no example keeps its own label)
        der = np.array([self._derangement(rng) for _ in range(N)])
        add("probe_copy", cx, cc[np.arange(N)[:, None], der], x, c, position=pos)
        # random+counterfactual: k-1 random + (x~, y~), one symbol swapped (its chunk drawn under the
        # task's rules); drawn from its own stream so the sets above are unchanged
        crng = np.random.default_rng([seed, 11])
        fx, fc, fpos = self.counterfactual(x, c, np.zeros(N, np.int64), crng)
        cx, cc = self.pool_x[rnd].copy(), self.pool_c[rnd].copy()
        cx[np.arange(N), pos], cc[np.arange(N), pos] = fx, fc
        add("random+counterfactual", cx, cc, x, c, position=pos, edit_pos=fpos, cf_c=fc)
        # drift: inputs with >= 1 drifted symbol, labels and contexts under the drifted table
        has = np.isin(x, self.drifted).any(1)
        dx = x[has]
        D = len(dx)
        dr = self.drift_table
        dc = self.resample(dr, dx, rng)
        drnd = self.random_others(dx, k, rng)
        rx = self.pool_x[drnd]
        rc = self.resample(dr, rx, rng)
        dpos = rng.integers(k, size=D)
        drifted_chunk = np.isin(dx, self.drifted)
        common = dict(rule=dr, drifted=drifted_chunk, ids=np.nonzero(has)[0])
        add("drift_random", rx, rc, dx, dc, **common)
        for name, (nx, nc) in (("drift_copy", (dx, dc)), ("drift_paraphrase", self.paraphrase(dx, dc, rng))):
            ex, ec = rx.copy(), rc.copy()
            ex[np.arange(D), dpos], ec[np.arange(D), dpos] = nx, nc
            add(name, ex, ec, dx, dc, position=dpos, **common)
        for s in sets.values():
            s.setdefault("ids", np.arange(N))
        return sets

    def _derangement(self, rng):
        while True:
            p = rng.permutation(self.k)
            if (p != np.arange(self.k)).all():
                return p

    # -- scoring -------------------------------------------------------------------------------
    def chunk_ok(self, s, pred):
        """pred [..., N, m*l] letter ids (output order) -> accepted [..., N, m] per INPUT position
        under the set's rule table."""
        pc = pred.reshape(*pred.shape[:-1], self.m, self.l)[..., self.pi_inv, :]
        x = np.broadcast_to(s["x"], pc.shape[:-1])
        return self.tables.accepts(np.full(x.shape, s["rule"]), x, pc)


def score_predictions(data, sets, preds):
    """Per-set per-input scores (percent) and the probes, from greedy predictions.
    preds: {set name: [E, N, m*l] letter ids}. Returns {metric: [E, N] array}."""
    out = {}
    m, l = data.m, data.l
    for name in ACC_TYPES:
        out[f"acc_{name}"] = 100.0 * data.chunk_ok(sets[name], preds[name]).mean(-1)
    name = "random+counterfactual"
    if name in sets and name in preds:
        s = sets[name]
        ok = data.chunk_ok(s, preds[name])                                     # [E, N, m] by input position
        rows = np.arange(len(s["x"]))
        out[f"acc_{name}"] = 100.0 * ok.mean(-1)
        out["edit_ok"] = 100.0 * ok[..., rows, s["edit_pos"]]
        pc = preds[name].reshape(*preds[name].shape[:-1], m, l)[..., data.pi_inv, :]
        out["cf_copy"] = 100.0 * (pc[..., rows, s["edit_pos"], :] == s["cf_c"][rows, s["edit_pos"]]).all(-1)
    for name in ("drift_random", "drift_copy", "drift_paraphrase"):
        s = sets[name]
        ok = data.chunk_ok(s, preds[name])
        d = np.broadcast_to(s["drifted"], ok.shape)
        # (a) drifted chunks whose symbol appears in some context example (per-symbol ICL is possible)
        # (b) drifted chunks whose symbol appears nowhere in the context (only the weights can help)
        shown = (s["ctx_x"][:, :, None, :] == s["x"][:, None, :, None]).any(-1).any(1)   # [N, m]
        shown = np.broadcast_to(shown, ok.shape)
        with np.errstate(invalid="ignore"):
            out[f"{name}_drifted"] = 100.0 * (ok & d).sum(-1) / d.sum(-1)          # NaN: no drifted chunk
            out[f"{name}_kept"] = 100.0 * (ok & ~d).sum(-1) / (~d).sum(-1)
            out[f"{name}_drifted_shown"] = 100.0 * (ok & d & shown).sum(-1) / (d & shown).sum(-1)
            out[f"{name}_drifted_unseen"] = 100.0 * (ok & d & ~shown).sum(-1) / (d & ~shown).sum(-1)
    chunks = lambda p: p.reshape(*p.shape[:-1], m, l)[..., data.pi_inv, :]    # by input position
    # IWL: share of chunks of ŷ(random) identical to ŷ(∅) (sim_y -> chunk agreement)
    out["iwl"] = 100.0 * (chunks(preds["random"]) == chunks(preds["zero"])).all(-1).mean(-1)
    # ICL: Σ_i w_i sim(ŷ, y_i), w_i ∝ nsim(x, x_i) = shared symbols / m; sim = share of the target's
    # symbols whose predicted chunk equals the chunk example i gives that symbol
    s = sets["random+paraphrase"]
    pc = chunks(preds["random+paraphrase"])                               # [E, N, m, l]
    same = s["ctx_x"][:, :, None, :] == s["x"][:, None, :, None]          # [N, k, m(target), m(ctx)]
    w = same.any(-1).sum(-1) / m                                          # [N, k]
    w = w / np.where(w.sum(1, keepdims=True) > 0, w.sum(1, keepdims=True), 1)
    ctx_chunk_for = np.einsum("nkij,nkjl->nkil", same.astype(np.int64), s["ctx_c"])   # [N, k, m, l]
    has = same.any(-1)                                                    # [N, k, m]
    match = ((pc[:, :, None] == ctx_chunk_for[None]).all(-1) & has[None]).mean(-1)   # [E, N, k]
    out["icl"] = 100.0 * (match * w[None]).sum(-1)
    # copy: max over i != p of positional chunk agreement with the deranged labels ỹ_i
    s = sets["probe_copy"]
    yd = data.label(s["ctx_c"])                                           # [N, k, m*l]
    pred = preds["probe_copy"]
    agree = (pred.reshape(*pred.shape[:-1], 1, m, l) == yd.reshape(len(yd), data.k, m, l)[None]).all(-1).mean(-1)
    agree[:, np.arange(len(yd)), s["position"]] = -1
    out["copy"] = 100.0 * agree.max(-1)
    return out


# ============================================================================ raw examples (sweep.py --show;
# their markdown: sweep_report.examples_markdown)
SHOW_SETS = ("zero", "random", "drift_copy", "drift_paraphrase", "drift_random", "random+counterfactual")


def take(s, n):
    """The first n rows of an evaluation set (per-row arrays sliced, scalars kept)."""
    N = len(s["x"])
    return {k: (v[:n] if isinstance(v, np.ndarray) and v.ndim and len(v) == N else v) for k, v in s.items()}


def stream_examples(data, rng, n, batch, probs, rho=0.0, repeat=0.0, fresh=0.0, gamma=0.0):
    """The first n sequences of a training stream drawn exactly as training draws them (batches of
    `batch` rows from `rng`): token rows [n, seq_len] and per-row info (kind, near kind, ...)."""
    rows, info = [], {}
    while sum(len(r) for r in rows) < n:
        inf = {}
        rows.append(data.train_batch(rng, batch, probs, rho=rho, repeat=repeat, fresh=fresh, info=inf, gamma=gamma))
        for k, v in inf.items():
            info.setdefault(k, []).append(v)
    return np.concatenate(rows)[:n], {k: np.concatenate(v)[:n] for k, v in info.items()}


def leak_stats(data, rows, info):
    """Over training rows: near paraphrases whose input or label string equals the target's, rows
    (other than exact-copy rows) with an example identical to the target, and pool near examples
    that are a permutation of the target input."""
    E, m = data.ex_len, data.m
    st = dict(rows=len(rows), paraphrase=0, para_same_x=0, para_same_y=0, identical_in_non_copy=0, pool_near=0,
              pool_near_permutation=0)
    for row, nk, pos in zip(rows, info["near_kind"], info["position"]):
        q = row[data.k * E:]
        tx, ty = tuple(q[:m]), tuple(q[m + 1:])
        exs = [row[i * E:(i + 1) * E] for i in range(data.k)]
        same = [ex[0] != scratch.PAD and tuple(ex[:m]) == tx and tuple(ex[m + 1:m + 1 + data.n_target]) == ty
                for ex in exs]
        if nk != 2 and any(same):
            st["identical_in_non_copy"] += 1
        if nk == 1:
            ex = exs[pos]
            st["paraphrase"] += 1
            st["para_same_x"] += int(tuple(ex[:m]) == tx)
            st["para_same_y"] += int(tuple(ex[m + 1:m + 1 + data.n_target]) == ty)
        elif nk == 0:
            ex = exs[pos]
            st["pool_near"] += 1
            st["pool_near_permutation"] += int(sorted(ex[:m]) == sorted(tx))
    return st


def eval_leak_stats(data, sets):
    """Over the whole evaluation sets: near paraphrases whose input / label string equals the target's."""
    out = {}
    for name in ("random+paraphrase", "drift_paraphrase"):
        s = sets[name]
        n = np.arange(len(s["x"]))
        px, pc = s["ctx_x"][n, s["position"]], s["ctx_c"][n, s["position"]]
        out[name] = dict(inputs=int(len(n)), same_x=int((px == s["x"]).all(1).sum()),
                         same_y=int((data.label(pc) == data.label(s["c"])).all(1).sum()))
    return out
