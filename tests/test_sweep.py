"""The alignment task's synthetic-track knobs (pi, rule sets, drift), the sweep's data stream
(synthetic/data.py: kinds, --repeats, paraphrases, fresh rules), and sweep.py end to end."""
import json
import re

import numpy as np
import pytest

from contrastive_context import regimes
from contrastive_context.synthetic import scratch
import sweep
from contrastive_context.synthetic import data as synthetic
from contrastive_context.synthetic import runs as synthetic_runs
from contrastive_context import tasks
from contrastive_context.common import UserError


@pytest.fixture(scope="module")
def task():
    return tasks.AlignmentTask(seed=2, n_train=3000, n_test=200, n_rule_sets=6)


@pytest.fixture(scope="module")
def data(task):
    return synthetic.AlignmentData(task)


def decode(data, row):
    """A token row -> [(x, y)] examples (None for a <pad> example) + the target."""
    E, out = data.ex_len, []
    for i in range(data.k + 1):
        seg = row[i * E:(i + 1) * E]
        if seg[0] == scratch.PAD:
            out.append(None)
            continue
        x = "".join(scratch.SYMBOLS[t - scratch.SYM0] for t in seg[:data.m])
        y = scratch.decode_letters(seg[data.m + 1:data.m + 1 + data.n_target])
        out.append((x, y))
    return out[:-1], out[-1]


# ----------------------------------------------------------------------------- the task
def test_pi_is_never_the_identity():
    for m in (2, 3, 4, 6):
        for seed in range(150):
            t = tasks.AlignmentTask(seed=seed, m=m, n_train=2, n_test=1)
            assert t.pi != list(range(m)) and sorted(t.pi) == list(range(m)), (seed, m, t.pi)


def test_old_defaults_keep_ids_and_inputs():
    t = tasks.AlignmentTask(seed=0)
    assert [e["id"] for e in t.pool[:3]] == ["train-0", "train-1", "train-2"]
    assert t.pool[0]["x"] == "CSM" and len(t.pool) == 200 and len(t.tests["test"]) == 300
    # every label is accepted chunk by chunk under the task's own PFAs
    assert all(t.score(e["y"], e) == 100.0 for e in t.pool)


def test_unknown_kwargs_raise_type_error():
    with pytest.raises(TypeError):
        tasks.AlignmentTask(seed=0, n_trian=10)
    with pytest.raises(UserError):
        tasks.AlignmentTask(fresh_rules=1.5)


def test_drifted_symbols_get_new_pfas(task):
    syms, table = task.drift_rules()
    assert len(syms) == task.drift == 12
    for s in task.SYMBOLS:
        same = task._language(table[s]) == task._language(task.pfas[s])
        assert same == (s not in syms), s
    # fresh rule sets differ from the task's and from each other
    r0, r1 = task.rule_set(0), task.rule_set(1)
    assert sum(task._language(r0[s]) != task._language(task.pfas[s]) for s in task.SYMBOLS) > 20
    assert sum(task._language(r0[s]) != task._language(r1[s]) for s in task.SYMBOLS) > 20


def test_drift_contexts_follow_the_new_rules(task, data):
    sets = data.eval_sets(0)
    syms, table = task.drift_rules()
    drifted = {scratch.SYMBOLS.index(s) for s in syms}
    for name in ("drift_copy", "drift_paraphrase", "drift_random"):
        s = sets[name]
        assert len(s["x"]) > 0 and all(set(x) & drifted for x in s["x"].tolist())
        rule = np.full(s["ctx_x"].shape, data.drift_table)
        assert data.tables.accepts(rule, s["ctx_x"], s["ctx_c"]).all()          # every context chunk: new rules
        old = data.tables.accepts(np.zeros_like(rule), s["ctx_x"], s["ctx_c"])
        is_drifted = np.isin(s["ctx_x"], list(drifted))
        assert old[~is_drifted].all() and old[is_drifted].mean() < 0.7        # ... which differ from the old ones
        # the gold labels of the test inputs are drawn under the new rules too
        assert data.tables.accepts(np.full(s["x"].shape, data.drift_table), s["x"], s["c"]).all()
    # copy context: the exact target; paraphrase: the target's symbols reordered, chunks moved along
    c, p = sets["drift_copy"], sets["drift_paraphrase"]
    n = np.arange(len(c["x"]))
    assert (c["ctx_x"][n, c["position"]] == c["x"]).all() and (c["ctx_c"][n, c["position"]] == c["c"]).all()
    px, pc = p["ctx_x"][n, p["position"]], p["ctx_c"][n, p["position"]]
    assert (np.sort(px, 1) == np.sort(p["x"], 1)).all() and (px != p["x"]).any(1).all()
    for i in range(len(px)):
        for j in range(data.m):
            assert (pc[i, j] == p["c"][i, list(p["x"][i]).index(px[i, j])]).all()
    # scoring: the gold label scores 100 on drifted and kept chunks alike
    gold = {k: data.label(v["c"])[None] for k, v in sets.items()}
    sc = synthetic.score_predictions(data, sets, gold)
    assert np.nanmean(sc["drift_copy_drifted"]) == 100 and np.nanmean(sc["drift_copy_kept"]) == 100


# ----------------------------------------------------------------------------- the training stream
def test_repeat_fractions_and_exact_copy_rows(data):
    rng = np.random.default_rng(0)
    probs = synthetic.regime_probs("contrastive", alpha=0.2, beta=0.1)
    counts = {}
    rows = data.train_batch(rng, 4000, probs, rho=0.4, repeat=0.5, counts=counts)
    n = 4000
    assert sum(counts[k] for k in synthetic.KINDS) == n
    assert counts["random"] / n == pytest.approx(0.2, abs=0.03)
    assert counts["similar"] / n == pytest.approx(0.1, abs=0.03)
    one = counts["one_near"]
    assert one / n == pytest.approx(0.7, abs=0.03)
    assert counts["near_copy"] / one == pytest.approx(0.5, abs=0.03)                 # R
    assert counts["near_paraphrase"] / one == pytest.approx(0.4 * 0.5, abs=0.03)     # rho (1 - R)
    assert counts["near_pool"] / one == pytest.approx(0.3, abs=0.03)
    assert counts["near_copy"] + counts["near_paraphrase"] + counts["near_pool"] == one
    copies = paras = 0
    for row in rows:
        ctx, (x, y) = decode(data, row)
        copies += sum(ex == (x, y) for ex in ctx)
        paras += sum(ex is not None and ex[0] != x and sorted(ex[0]) == sorted(x) for ex in ctx)
        assert sum(ex is not None and ex[0] == x for ex in ctx) <= 1          # no pool duplicate of x
    assert copies == counts["near_copy"]                                      # exact-copy rows, exactly
    assert paras >= counts["near_paraphrase"]                                 # (+ rare pool permutations)


def test_regimes_zero_frac_and_fresh_rules(data):
    rng = np.random.default_rng(1)
    counts = {}
    rows = data.train_batch(rng, 600, synthetic.regime_probs("contrastive", 0.3, 0.2, zero_frac=0.1),
                            counts=counts)
    zero_rows = sum(all(ex is None for ex in decode(data, r)[0]) for r in rows)
    assert zero_rows == counts["zero"] and counts["zero"] / 600 == pytest.approx(0.1, abs=0.04)
    with pytest.raises(ValueError):
        synthetic.regime_probs("contrastive", 0.1, 0.2, zero_frac=0.2)
    # F = 0: every label under the task's rules; F = 1: mostly not
    acc = {}
    for F in (0.0, 1.0):
        c = {}
        rows = data.train_batch(np.random.default_rng(2), 300, synthetic.regime_probs("random"), fresh=F, counts=c)
        ok = [data.task.score(decode(data, r)[1][1], {"x": decode(data, r)[1][0]}) for r in rows]
        acc[F] = np.mean(ok)
        assert c["fresh_rules"] == (0 if F == 0 else 300)
    assert acc[0.0] == 100.0 and acc[1.0] < 60


# ----------------------------------------------------------------------------- sweep.py
BAD = [
    (["--alphas", "0.3,1.5"], "--alphas values must be in [0, 1]"),
    (["--rhos", "x"], "--rhos must be comma-separated numbers"),
    (["--alphas", "0.9"], "alpha 0.9 + beta 0.2 > 1"),
    (["--fresh-rules", "nan"], "--fresh-rules values must be in [0, 1]"),
    (["--zero-fracs", "0.5", "--alphas", "0.3"], "--zero-fracs 0.5 exceeds alpha 0.3"),
    (["--repeats", "-0.1"], "--repeats values must be in [0, 1]"),
    (["--regimes", "random,foo"], "unknown regime(s) foo"),
    (["--steps", "0"], "--steps must be in [1,"),
    (["--width", "30", "--heads", "4"], "not divisible"),
    (["--seeds", "1e3"], "argument --seeds: invalid int value"),
]


@pytest.mark.parametrize("bad, msg", BAD)
def test_bad_grid_values_write_nothing(tmp_path, bad, msg):
    out = tmp_path / "out"
    with pytest.raises(UserError, match=re.escape(msg)):
        sweep.main(["--out", str(out), "--budget", "smoke", *bad])
    assert not out.exists()


@pytest.mark.slow
def test_bad_grid_cli_one_error_line(run_script, tmp_path):
    p = run_script("sweep.py", "--out", "o", "--budget", "smoke", "--alphas", "0.3,2")
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == ["error: --alphas values must be in [0, 1], got 2.0"], p.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_smoke_sweep_writes_outputs_and_resumes(run_script, tmp_path):
    p = run_script("sweep.py", "--out", "s", "--budget", "smoke", check=True, timeout=120)
    out = tmp_path / "s"
    rows = [json.loads(line) for line in open(out / "sweep.jsonl")]
    meta = json.load(open(out / "sweep.jsonl.meta.json"))
    assert meta["kind"] == "sweep" and meta["rows"] == len(rows)
    runs = {(r["cell"], r["seed"]) for r in rows}
    assert len(runs) == 9                      # 2x2 grid + 5 regimes, the contrastive regime = a grid cell
    assert {r["step"] for r in rows} == {20, 40} and len(rows) == 18
    assert all(set(synthetic_runs.METRICS) <= set(r) and r["counts"] for r in rows)
    for f in ("phase_F0.3_R0_z0.png", "transience.png", "results.md", "minimal_model.json"):
        assert (out / f).stat().st_size > 0, f
    md = (out / "results.md").read_text()
    assert "Paired differences" in md and "Minimal model" in md
    before = (out / "sweep.jsonl").read_bytes()
    p2 = run_script("sweep.py", "--out", "s", "--budget", "smoke", check=True, timeout=120)
    assert "9 runs finished already, 0 to train" in p2.stdout
    assert (out / "sweep.jsonl").read_bytes() == before
    # flags that change the runs' configuration are refused, not mixed in
    p3 = run_script("sweep.py", "--out", "s", "--budget", "smoke", "--steps", "50")
    assert p3.returncode == 2 and "another configuration" in p3.stderr


def test_interrupted_group_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    """Killed after its first checkpoint, a re-run continues from it and writes the same bytes."""
    flags = ["--budget", "smoke", "--steps", "30", "--eval-every", "10", "--regimes", "random,contrastive",
             "--alphas", "0.3", "--rhos", "0.5", "--n-test", "20", "--no-plot", "--mm-steps", "5"]
    sweep.main(["--out", str(tmp_path / "a"), *flags])
    real, calls = scratch.train_step, []

    def interrupted(*a, **kw):
        calls.append(1)
        if len(calls) == 25:
            raise KeyboardInterrupt
        return real(*a, **kw)
    monkeypatch.setattr(scratch, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sweep.main(["--out", str(tmp_path / "b"), *flags])
    assert not (tmp_path / "b" / "sweep.jsonl").exists()
    assert len(list((tmp_path / "b" / "ckpt").glob("*.pt"))) == 1
    monkeypatch.setattr(scratch, "train_step", real)
    calls.clear()
    monkeypatch.setattr(scratch, "train_step", lambda *a, **kw: (calls.append(1), real(*a, **kw))[1])
    sweep.main(["--out", str(tmp_path / "b"), *flags])
    assert len(calls) == 10                                   # steps 21-30 only
    assert (tmp_path / "a" / "sweep.jsonl").read_bytes() == (tmp_path / "b" / "sweep.jsonl").read_bytes()


def test_show_examples_on_a_finished_sweep(tmp_path):
    """--show N on a finished smoke sweep: examples.md with the three sections for the five regimes,
    the first sequences of each run's own training stream, predictions that reproduce the stored
    per-input scores, and nothing retrained or rewritten."""
    out = tmp_path / "s"
    flags = ["--out", str(out), "--budget", "smoke", "--no-plot"]
    with pytest.raises(UserError, match="needs a finished sweep"):
        sweep.main([*flags, "--show", "3"])
    assert not out.exists()
    sweep.main(flags)
    before = {p: p.read_bytes() for p in [out / "sweep.jsonl", out / "results.md", *(out / "ckpt").glob("*.pt"),
                                          *(out / "runs").glob("*")]}
    sweep.main([*flags, "--show", "3"])
    assert {p: p.read_bytes() for p in before} == before                  # nothing retrained or rewritten
    md = (out / "examples.md").read_text()
    for sec in ("## (a) Training sequences", "## (b) Drift test", "## (c) Random-context test predictions",
                "## (d) Random+counterfactual test predictions", "## Summary over the shown inputs"):
        assert md.count(sec) == 1, sec
    for reg in regimes.REGIMES:
        assert md.count(f"### {reg} — `") == 1, reg
    assert md.count("#3 context=") == 5 and "#4 context=" not in md
    assert md.count("### drift input ") == 3 and md.count("### test input ") == 3
    assert md.count("### counterfactual input ") == 3 and md.count(" (edit) |") == 3
    assert md.count("near=paraphrase@") + md.count("near=pool@") + md.count("near=copy@") >= 1
    # the first sequence shown per regime is the first row of that run's seeded training stream
    args = sweep.parse_args(flags)
    sweep.check_args(args)
    runs, cells = sweep.make_runs(args)
    data = synthetic_runs.DATA["data"]
    for reg, c in cells.items():
        r = runs[f"{c}-s0"]
        row = data.train_batch(np.random.default_rng(synthetic_runs.data_seed(f"{c}-s0")), args.batch,
                               synthetic_runs.run_probs(r),
                               rho=r["rho"] or 0.0, repeat=r["repeat"], fresh=r["fresh_rules"])[0]
        ctx, (x, y) = decode(data, row)
        assert f"Q  {x}:  → target {' '.join(y[i:i + 2] for i in range(0, len(y), 2))}" in md, reg
    # the recomputed predictions score exactly as the sweep stored them (every checked input matches)
    summary = md.split("## Summary over the shown inputs")[1]
    rows = [line for line in summary.splitlines() if line.startswith("| ") and line.count("|") == 8][1:]
    matches = [line.split("|")[-2].strip() for line in rows if not line.startswith("|---")]
    assert len(matches) == 5 and all(a == b for a, b in (m_.split("/") for m_ in matches)), matches


def test_every_flag_has_help_and_says_its_default(capsys):
    """`sweep.py -h` explains every flag and its default (fixed, or per --budget);
    train.py's names --batch-size / --max-steps / --warmup-steps are aliases of --batch / --steps / --warmup."""
    p = sweep.build_parser()
    for a in p._actions:
        if not a.option_strings or a.dest == "help":
            continue
        assert a.help and len(a.help) > 10, a.option_strings
        if a.dest not in ("out", "no_plot"):  # --out is required, --no-plot a switch
            assert "default" in a.help, (a.option_strings, a.help)
            assert "default per --budget" in a.help or a.default is not None, a.option_strings
    with pytest.raises(SystemExit):
        sweep.parse_args(["-h"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default per --budget: smoke 40, default 1200, long 8000" in text
    a = sweep.parse_args(["--out", "x", "--budget", "smoke", "--batch-size", "8", "--max-steps", "7",
                          "--warmup-steps", "3"])
    assert (a.batch, a.steps, a.warmup) == (8, 7, 3)
