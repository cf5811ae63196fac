"""deploy.py (deployment with feedback): the README command, exact resume after kill -9, determinism,
the copier on a stream with repeats, P_t = P_0 + feedback with incremental retrieval equal to a fresh
index, G1 / G2, and the bad inputs (one `error:` line, exit 2, nothing written)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from contrastive_context import deployment as dp
from contrastive_context.similarity import PoolIndex
from contrastive_context.tasks import load_task

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1", CC_NO_PROGRESS="1")


def run(args, cwd, **kw):
    return subprocess.run([sys.executable, os.path.join(REPO, "deploy.py"), *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=300, **kw)


def inproc(args):
    from tests.test_bad_inputs import run_inprocess
    return run_inprocess("deploy", args)


def rows_of(folder):
    with open(os.path.join(folder, "steps.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_readme_command_on_the_synthetic_task(tmp_path):
    r = run(["--model", "tiny", "--policy", "nearest"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "deploy" / "alignment-tiny-nearest-k4-s0"
    rows = rows_of(out)
    assert [r["t"] for r in rows] == list(range(300))
    # P_t = P_0 (200) + the items s <= t - d (d = batch size 32)
    assert [r["pool_size"] for r in rows] == [200 + max(0, t - 32 + 1) for t in range(300)]
    assert all(len(r["context"]) == 4 and r["kind"] == "nearest" for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["windows"]) == 10 and [b["name"] for b in summary["bins"]] == ["low", "medium", "high"]
    owner = json.loads((out / "cc_output.json").read_text())
    assert "steps.jsonl" in owner["complete"]["files"]
    again = run(["--model", "tiny", "--policy", "nearest"], cwd=tmp_path)
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_kill9_resume_is_byte_identical(tmp_path):
    args = ["--model", "tiny", "--policy", "random", "--batch-size", "4", "--limit", "160", "--threads", "1"]
    ref = run(args + ["--out", "ref"], cwd=tmp_path)
    assert ref.returncode == 0, ref.stderr
    steps = tmp_path / "cut" / "steps.jsonl"
    p = subprocess.Popen([sys.executable, os.path.join(REPO, "deploy.py"), *args, "--out", "cut"], cwd=tmp_path,
                         env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (not steps.exists() or steps.stat().st_size == 0):
        time.sleep(0.02)
    time.sleep(0.3)
    p.send_signal(signal.SIGKILL)
    p.wait()
    n_cut = len(steps.read_text().splitlines())
    assert 0 < n_cut < 160, n_cut  # killed mid-run
    again = run(args + ["--out", "cut"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stdout
    assert steps.read_bytes() == (tmp_path / "ref" / "steps.jsonl").read_bytes()
    # another setting on the same folder: refused, nothing changed
    before = steps.read_bytes()
    bad = run(args[:-2] + ["--threads", "1", "--k", "3", "--out", "cut"], cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.count("error:") == 1 and "other settings" in bad.stderr
    assert steps.read_bytes() == before


def test_deterministic_for_a_seed(tmp_path):
    a, b, c = (str(tmp_path / n) for n in "abc")
    for out, seed in ((a, "3"), (b, "3"), (c, "4")):
        code, _, err, _ = inproc(["--model", "copier", "--policy", "random", "--k", "3", "--seed", seed, "--delay", "5",
                                  "--limit", "60", "--out", out])
        assert code == 0, err
    read = lambda d: open(os.path.join(d, "steps.jsonl"), "rb").read()  # noqa: E731
    assert read(a) == read(b) and read(a) != read(c)


def _repeat_stream(tmp_path, n=25):
    task = load_task("alignment")
    first = task.test_split()[:n]
    rep = [{"id": f"rep-{i}", "x": ex["x"], "y": ex["y"]} for i, ex in enumerate(first)]
    return write_jsonl(tmp_path / "stream.jsonl", first + rep), first


def test_copier_score_rises_once_repeats_are_in_the_pool(tmp_path):
    stream, first = _repeat_stream(tmp_path)
    out = str(tmp_path / "cop")
    code, _, err, _ = inproc(["--model", "copier", "--stream", stream, "--pool", "none", "--policy", "nearest",
                              "--k", "2", "--delay", "1", "--out", out])
    assert code == 0, err
    rows = rows_of(out)
    assert rows[0]["kind"] == "zero" and rows[0]["prediction"] == "" and rows[0]["pool_size"] == 0
    by_id = {ex["id"]: ex for ex in first}
    for r in rows[len(first):]:
        # the copier answers with the label of the context example of highest nsim (ties: the last one)
        best = max(range(len(r["context"])), key=lambda i: (r["nsim"][i], i))
        src = r["context"][best]
        label = by_id[src]["y"] if src in by_id else None
        assert r["prediction"] == label
        assert r["best_nsim"] == 1.0     # its earlier copy is in the pool
    first_half = sum(r["score"] for r in rows[:len(first)]) / len(first)
    second = sum(r["score"] for r in rows[len(first):]) / len(first)
    assert second > first_half + 30 and second >= 80


def test_steps_equal_a_fresh_index_over_p_t():
    task = load_task("alignment", n_train=30, n_test=80)
    stream, pool = task.test_split(), task.pool
    st = dp.Stepper(task, stream, pool, "nearest", None, 3, 4, True, 0)
    for t in range(len(stream)):
        s = st.step(t)
        p_t = pool + stream[:max(0, t - 4 + 1)]
        assert s["pool_size"] == len(p_t)
        fresh = PoolIndex(p_t, task.tokenize)
        idx, _ = fresh.topk([stream[t]["x"]], 3)
        assert [c["id"] for c in s["context"]] == [p_t[i]["id"] for i in idx[0][::-1]]
        assert s["nsim"] == fresh.nsim_idx(stream[t]["x"], idx[0][::-1].tolist())
        assert s["best_nsim"] == fresh.nsim_idx(stream[t]["x"], idx[0][:1].tolist())[0]


def test_gated_policy_and_g1_g2(tmp_path):
    stream, first = _repeat_stream(tmp_path)
    outs = {}
    for name, extra in (("fb", ["--policy", "nearest"]), ("p0", ["--policy", "nearest", "--feedback", "off"]),
                        ("gate", ["--policy", "gated:0.99"]), ("zero", ["--policy", "zero"])):
        outs[name] = str(tmp_path / name)
        code, _, err, _ = inproc(["--model", "copier", "--stream", stream, "--delay", "1", "--k", "2", "--bins",
                                  "0.5,0.9", *extra, "--out", outs[name]])
        assert code == 0, err
    gate = rows_of(outs["gate"])
    assert all((r["kind"] == "nearest") == (r["best_nsim"] >= 0.99) for r in gate)
    assert any(r["kind"] == "zero" for r in gate) and any(r["kind"] == "nearest" for r in gate)
    fb, p0 = rows_of(outs["fb"]), rows_of(outs["p0"])
    assert all(r["pool_size"] == 200 for r in p0)
    d1 = dp.g1([(outs["fb"], *dp.read_folder(outs["fb"])[:2])], [(outs["p0"], *dp.read_folder(outs["p0"])[:2])],
               [0, 0.5, 0.9, 1])
    high = [(a, b) for a, b in zip(fb, p0) if a["best_nsim"] >= 0.9]
    assert d1["n"] == len(high) and d1["mean"] == pytest.approx(sum(a["score"] - b["score"] for a, b in high)
                                                                / len(high))
    assert d1["mean"] > 0
    rep = os.path.join(tmp_path, "report.md")
    from tests.test_bad_inputs import run_inprocess
    code, out, err, _ = run_inprocess("studies/deploy/deploy_report", ["--g1", outs["fb"], outs["p0"], "--g2", outs["fb"],
                                                                outs["zero"], "--out", rep])
    assert code == 0, err
    text = open(rep).read()
    assert "| G1 |" in text and "| G2 |" in text


# ---------------------------------------------------------------------------- bad inputs (table)
def _bad_cases(tmp_path):
    task = load_task("alignment")
    good = [{"id": f"s-{i}", "x": ex["x"], "y": ex["y"]} for i, ex in enumerate(task.test_split()[:10])]
    mt = write_jsonl(tmp_path / "mt.jsonl", [{"id": "m-0", "x": "A man runs.", "y": "Ein Mann rennt."}])
    other = write_jsonl(tmp_path / "other.jsonl", [{"id": "test-0", "x": "ABC", "y": "aabbcc"}])
    shared = write_jsonl(tmp_path / "shared.jsonl", [dict(good[0], id="train-0")])
    (tmp_path / "broken.jsonl").write_text(json.dumps(good[0]) + "\n{not json\n")
    (tmp_path / "noy.jsonl").write_text(json.dumps(good[0]) + "\n" + json.dumps({"id": "s-9", "x": "ABC"}) + "\n")
    s = write_jsonl(tmp_path / "s.jsonl", good)
    return [
        ("other-task-stream", ["--stream", mt], r"another task"),
        ("other-data-set-stream", ["--stream", other], r"another (task or )?data set"),
        ("pool-shares-ids", ["--stream", shared], r"share"),
        ("k-too-large", ["--stream", s, "--pool", "none", "--k", "8", "--delay", "3"], r"larger than the pool"),
        ("unknown-policy", ["--policy", "closest"], r"unknown policy"),
        ("tau-out-of-range", ["--policy", "gated:1.5"], r"\[0, 1\]"),
        ("tau-not-a-number", ["--policy", "gated:x"], r"gated"),
        ("missing-stream", ["--stream", str(tmp_path / "nope.jsonl")], r"not found"),
        ("missing-pool", ["--pool", str(tmp_path / "nope.jsonl")], r"not found"),
        ("malformed-row", ["--stream", str(tmp_path / "broken.jsonl")], r"broken.jsonl:2"),
        ("missing-field", ["--stream", str(tmp_path / "noy.jsonl")], r"noy.jsonl:2: missing field"),
    ]


CASE_IDS = ["other-task-stream", "other-data-set-stream", "pool-shares-ids", "k-too-large", "unknown-policy",
            "tau-out-of-range", "tau-not-a-number", "missing-stream", "missing-pool", "malformed-row", "missing-field"]


@pytest.mark.parametrize("case", CASE_IDS)
def test_bad_input(tmp_path, case):
    import re
    cases = {c[0]: c for c in _bad_cases(tmp_path)}
    _, argv, match = cases[case]
    out = tmp_path / "out"
    before = sorted(os.listdir(tmp_path))
    code, stdout, stderr, tb = inproc(["--model", "copier", *argv, "--out", str(out)])
    assert tb is None, tb
    assert code == 2
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and re.search(match, errors[0]), stderr
    assert sorted(os.listdir(tmp_path)) == before and not out.exists()


def test_resume_with_other_settings_is_refused_before_writing(tmp_path):
    out = str(tmp_path / "o")
    assert inproc(["--model", "copier", "--limit", "20", "--out", out])[0] == 0
    snap = {n: open(os.path.join(out, n), "rb").read() for n in os.listdir(out) if not n.startswith(".")}
    code, _, err, _ = inproc(["--model", "copier", "--limit", "20", "--policy", "random", "--out", out])
    assert code == 2 and err.count("error:") == 1 and "resume with other settings" in err
    assert {n: open(os.path.join(out, n), "rb").read() for n in snap} == snap


def _copier_folders(tmp_path, runs):
    """Deploy folders root/<name> of the copier on the repeat stream, one per (name, extra flags)."""
    stream, _ = _repeat_stream(tmp_path)
    root = tmp_path / "root"
    for name, extra in runs:
        code, _, err, _ = inproc(["--model", "copier", "--stream", stream, "--delay", "1", "--k", "2", "--bins",
                                  "0.5,0.9", *extra, "--out", str(root / name)])
        assert code == 0, err
    return root


def test_mt_study_report_g1_g2_verdicts_and_missing_models(tmp_path):
    """studies/deploy/report_mt.py: reads <model>-nearest / <model>-p0 / the zero folder, G1 and G2 equal
    deployment.g1 / g2 on the same rows, the verdicts follow the stated rule, unfinished models are listed."""
    root = _copier_folders(tmp_path, (("copier-nearest", ["--policy", "nearest"]),
                                      ("copier-p0", ["--policy", "nearest", "--feedback", "off"]),
                                      ("zero-zero", ["--policy", "zero"])))
    from tests.test_bad_inputs import run_inprocess
    rep = str(tmp_path / "r.md")
    code, out, err, _ = run_inprocess("studies/deploy/report_mt", ["--root", str(root), "--labels", "copier", "ghost",
                                                                    "--out", rep])
    assert code == 0, err
    res = json.loads(open(rep + ".json").read())
    (m,) = res["models"]
    fb, p0, z = (dp.read_folder(str(root / n)) for n in ("copier-nearest", "copier-p0", "zero-zero"))
    edges = fb[2]["bin_edges"]
    g1 = dp.g1([(str(root / "copier-nearest"), *fb[:2])], [(str(root / "copier-p0"), *p0[:2])], edges)
    g2 = dp.g2([(str(root / "copier-nearest"), *fb[:2])], [(str(root / "zero-zero"), *z[:2])], edges)
    assert m["g1"]["mean"] == pytest.approx(g1["mean"]) and m["g2"]["mean"] == pytest.approx(g2["mean"])
    assert m["goal1"] == (g1["ci"] is not None and g1["ci"][0] > 0) and g1["n"] > 0
    assert m["goal2"] == (g2["ci"] is not None and g2["ci"][0] > -2.0)
    assert res["missing"] == ["ghost"] and "Not run (compute): ghost." in open(rep).read()
    code, _, err, _ = run_inprocess("studies/deploy/report_mt", ["--root", str(root), "--labels", "copier",
                                                                 "--margin", "1000", "--out", rep])
    wide = json.loads(open(rep + ".json").read())
    assert code == 0 and wide["margin"] == 1000.0 and wide["models"][0]["goal2"] is (g2["ci"] is not None)
    code, _, err, _ = run_inprocess("studies/deploy/report_mt", ["--root", str(root), "--zero", "nope", "--labels",
                                                                 "copier", "--out", str(tmp_path / "x.md")])
    assert code == 2 and "zero-regime folder is not finished" in err and not os.path.exists(tmp_path / "x.md")


def test_mt_study_report_empty_start_compares_with_the_zero_prompt(tmp_path):
    """--start empty: <model>-empty (P_0 empty, nearest) against <model>-zeroprompt; G1 = the paired difference on
    the high-bin items; a P_0 that is not empty is refused."""
    root = _copier_folders(tmp_path, (("copier-empty", ["--policy", "nearest", "--pool", "none"]),
                                      ("copier-zeroprompt", ["--policy", "zero"]), ("zero-zero", ["--policy", "zero"]),
                                      ("copier-nearest", ["--policy", "nearest"])))
    from tests.test_bad_inputs import run_inprocess
    rep = str(tmp_path / "r.md")
    code, _, err, _ = run_inprocess("studies/deploy/report_mt", ["--root", str(root), "--start", "empty", "--labels",
                                                                 "copier", "--out", rep])
    assert code == 0, err
    (m,) = json.loads(open(rep + ".json").read())["models"]
    fb, zp = rows_of(root / "copier-empty"), {r["id"]: r for r in rows_of(root / "copier-zeroprompt")}
    high = [r for r in fb if r["best_nsim"] >= m["bin_edges"][2]]
    assert m["g1"]["n"] == len(high) > 0
    assert m["g1"]["mean"] == pytest.approx(sum(r["score"] - zp[r["id"]]["score"] for r in high) / len(high))
    assert "| model | zero prompt | with feedback |" in open(rep).read()
    os.rename(root / "copier-empty", root / "gone")
    os.rename(root / "copier-nearest", root / "copier-empty")  # P_0 = the stream's pool: not an empty start
    code, _, err, _ = run_inprocess("studies/deploy/report_mt", ["--root", str(root), "--start", "empty", "--labels",
                                                                 "copier", "--out", str(tmp_path / "x.md")])
    assert code == 2 and "must start from an empty pool" in err


@pytest.mark.parametrize("model", ["copier", "tiny"])
def test_gated_assembly_equals_a_real_gated_run(tmp_path, model):
    """studies/deploy/gated.py assembles gated:tau from the nearest and zero-prompt runs of one model: the rows
    (prediction, score, which context) equal deploy.py --policy gated:tau's own run, item by item."""
    import importlib
    gated = importlib.import_module("studies.deploy.gated")
    stream, _ = _repeat_stream(tmp_path)
    common = ["--model", model, "--stream", stream, "--delay", "4", "--k", "2", "--batch-size", "4", "--pool", "none"]
    folders = {}
    for name, extra in (("near", ["--policy", "nearest"]), ("zp", ["--policy", "zero"]),
                        ("gated", ["--policy", "gated:0.5"])):
        folders[name] = str(tmp_path / name)
        code, _, err, _ = inproc([*common, *extra, "--out", folders[name]])
        assert code == 0, err
    near, zp, real = (rows_of(folders[n]) for n in ("near", "zp", "gated"))
    made = gated.gate(near, zp, 0.5)
    assert [r["kind"] for r in made] == [r["kind"] for r in real] and {"zero", "nearest"} <= {r["kind"] for r in real}
    assert [(r["id"], r["prediction"], r["score"]) for r in made] == [(r["id"], r["prediction"], r["score"])
                                                                        for r in real]
    tau, mean = gated.choose_tau(near, zp)
    assert mean == max(sum(r["score"] for r in gated.gate(near, zp, t)) / len(near)
                       for t in [0.0, 1.01] + [r["best_nsim"] for r in near])


def test_gated_report_tunes_on_the_first_part_only(tmp_path):
    """TAU is the tuning items' best value (changing the scored items' rows does not change it); a bad
    --tune-frac is refused with one error line."""
    root = _copier_folders(tmp_path, (("copier-empty", ["--policy", "nearest", "--pool", "none"]),
                                      ("copier-zeroprompt", ["--policy", "zero"]), ("zero-zero", ["--policy", "zero"])))
    from tests.test_bad_inputs import run_inprocess
    rep = str(tmp_path / "g.md")
    code, _, err, _ = run_inprocess("studies/deploy/gated", ["--root", str(root), "--start", "empty", "--labels", "copier", "--zero",
                                                             "zero-zero", "--out", rep])
    assert code == 0, err
    (m,) = json.loads(open(rep + ".json").read())["models"]
    assert m["cut"] == 25 and m["T"] == 50 and m["g1"]["n"] + m["g2"]["n"] <= 25
    import importlib
    gated = importlib.import_module("studies.deploy.gated")
    near, zp = rows_of(root / "copier-empty"), rows_of(root / "copier-zeroprompt")
    assert m["tau"] == gated.choose_tau([r for r in near if r["t"] < 25], zp)[0]
    scored_changed = [r if r["t"] < 25 else {**r, "best_nsim": 1.0 - r["best_nsim"]} for r in near]
    assert gated.choose_tau([r for r in scored_changed if r["t"] < 25], zp)[0] == m["tau"]
    code, _, err, _ = run_inprocess("studies/deploy/gated", ["--root", str(root), "--start", "empty", "--labels", "copier",
                                                             "--tune-frac", "1.0", "--out", str(tmp_path / "x.md")])
    assert code == 2 and err.count("error:") == 1 and not os.path.exists(tmp_path / "x.md")


def test_placeholder_check_intact_dropped_mangled():
    """printf-style placeholders (gitpo_ende's UI messages): a reordered set is intact, a missing one dropped,
    a broken or altered one mangled; a reference without one is 'none'."""
    assert dp.placeholders("git %s: %.*s at %u.%2.2u (%<PRIuMAX>) 100%% %1$s") == sorted(
        ["%s", "%.*s", "%u", "%2.2u", "%<PRIuMAX>", "%%", "%1$s"])
    check = dp.placeholder_check
    assert check("Fehler: %d von %s", "error: %s of %d") == "intact"
    assert check("Fehler", "error: %s") == "dropped"
    assert check("Fehler: % s", "error: %s") == "mangled" and check("Fehler: %S", "error: %s") == "mangled"
    assert check("%s und %s", "%s") == "mangled" and check("%d", "%s") == "mangled"
    assert check("Hallo", "hello") == "none"


def test_deploy_figure_plots_window_means(tmp_path):
    """studies/deploy/figure.py: the PNG is written and its JSON holds each model's window means of the rows;
    a model without its folders is named, not plotted; a bad --window is one error line."""
    root = _copier_folders(tmp_path, (("copier-empty", ["--policy", "nearest", "--pool", "none"]),
                                      ("zero-zero", ["--policy", "zero"])))
    from tests.test_bad_inputs import run_inprocess
    png = str(tmp_path / "f.png")
    code, _, err, _ = run_inprocess("studies/deploy/figure", ["--root", str(root), "--start", "empty", "--labels", "copier", "ghost",
                                                              "--window", "10", "--out", png])
    assert code == 0, err
    d = json.loads(open(png + ".json").read())
    rows = rows_of(root / "copier-empty")
    want = [[lo, sum(r["score"] for r in rows[lo:lo + 10]) / len(rows[lo:lo + 10])] for lo in range(0, len(rows), 10)]
    got = d["models"]["copier"]["feedback"]
    assert [g[0] for g in got] == [w[0] for w in want] and [g[1] for g in got] == pytest.approx([w[1] for w in want])
    assert d["missing"] == ["ghost"]
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    code, _, err, _ = run_inprocess("studies/deploy/figure", ["--root", str(root), "--start", "empty", "--labels", "copier", "--window",
                                                              "0", "--out", str(tmp_path / "x.png")])
    assert code == 2 and err.count("error:") == 1 and not os.path.exists(tmp_path / "x.png")


def test_source_copier_answers_with_the_input_and_takes_no_adapter(tmp_path):
    """--model source-copier (no weights): every prediction is the stream item's x, under any policy, scored by
    the task's metric; with its P_t the same as any model's (best_nsim does not depend on the model)."""
    stream, first = _repeat_stream(tmp_path)
    xs = {ex["id"]: ex["x"] for ex in first}
    outs = {}
    for model in ("source-copier", "copier"):
        outs[model] = str(tmp_path / model)
        code, _, err, _ = inproc(["--model", model, "--stream", stream, "--pool", "none", "--policy", "zero",
                                  "--k", "2", "--delay", "1", "--out", outs[model]])
        assert code == 0, err
    src, cop = rows_of(outs["source-copier"]), rows_of(outs["copier"])
    task = load_task("alignment")
    for r, c in zip(src, cop):
        x = xs.get(r["id"]) or xs[first[int(r["id"].split("-")[1])]["id"]]
        assert r["prediction"] == x and r["kind"] == "zero"
        assert r["score"] == task.score(x, {"x": x, "y": r["reference"]})
        assert r["best_nsim"] == c["best_nsim"] and r["best_id"] == c["best_id"]
    code, _, err, _ = inproc(["--model", "source-copier", "--adapter", str(tmp_path), "--out", str(tmp_path / "no")])
    assert code == 2 and err.strip() == "error: --model source-copier has no weights: it takes no --adapter"
    assert not os.path.exists(tmp_path / "no")


def test_mt_study_report_against_the_untranslated_source(tmp_path):
    """report_mt.py --source: each model's feedback run − the source copier by bin equals the paired mean over
    the items of that bin (bins of the model's P_t); the source copier's G2 is judged by the same rule; a
    --source folder of another model is refused."""
    root = _copier_folders(tmp_path, (("copier-nearest", ["--policy", "nearest"]),
                                      ("copier-p0", ["--policy", "nearest", "--feedback", "off"]),
                                      ("zero-zero", ["--policy", "zero"])))
    stream, _ = _repeat_stream(tmp_path)
    code, _, err, _ = inproc(["--model", "source-copier", "--stream", stream, "--delay", "1", "--k", "2", "--bins",
                              "0.5,0.9", "--policy", "zero", "--out", str(root / "src")])
    assert code == 0, err
    from tests.test_bad_inputs import run_inprocess
    rep = str(tmp_path / "r.md")
    code, _, err, _ = run_inprocess("studies/deploy/report_mt", ["--root", str(root), "--labels", "copier", "--source",
                                                                 "src", "--out", rep])
    assert code == 0, err
    res = json.loads(open(rep + ".json").read())
    (m,) = res["models"]
    fb, src = rows_of(root / "copier-nearest"), {r["id"]: r for r in rows_of(root / "src")}
    lo_edge, hi_edge, seen = m["bin_edges"][1], m["bin_edges"][2], 0
    for name, keep in (("low", lambda v: v < lo_edge), ("high", lambda v: v >= hi_edge)):
        items = [r for r in fb if keep(r["best_nsim"])]
        assert m["minus_source"][name]["n"] == len(items)
        if items:
            seen += 1
            assert m["minus_source"][name]["mean"] == pytest.approx(
                sum(r["score"] - src[r["id"]]["score"] for r in items) / len(items))
    assert seen  # at least one bin holds items
    g2 = res["source"]["g2"]
    assert f"goal (2) by the rule: {'**yes**' if g2['ci'] and g2['ci'][0] > -2.0 else 'no'}" in open(rep).read() \
        or g2["ci"] is None
    code, _, err, _ = run_inprocess("studies/deploy/report_mt", ["--root", str(root), "--labels", "copier", "--source",
                                                                 "copier-p0", "--out", str(tmp_path / "x.md")])
    assert code == 2 and "not of source-copier" in err and not os.path.exists(tmp_path / "x.md")
