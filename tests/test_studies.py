"""studies/: the study driver's shell syntax and the context-use analysis."""
import glob
import json
import os
import subprocess

from contrastive_context import tasks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_study_drivers_parse():
    drivers = sorted(glob.glob(os.path.join(REPO, "studies", "**", "*.sh"), recursive=True))
    assert os.path.join(REPO, "studies", "tools", "real_lm.sh") in drivers
    for sh in drivers:
        subprocess.run(["bash", "-n", sh], check=True)


def test_one_study_folder_with_a_readme_per_committed_results_folder():
    """studies/<name>/ -> results/<name>/: each committed results folder has its study folder, whose
    README.md names its results folder; a study folder may be ahead of its results (a study planned or
    running, whose README says so); studies/tools/ holds the scripts several studies share."""
    results = {d for d in os.listdir(os.path.join(REPO, "results")) if os.path.isdir(os.path.join(REPO, "results", d))}
    studies = {d for d in os.listdir(os.path.join(REPO, "studies")) if os.path.isdir(os.path.join(REPO, "studies", d))
               and d != "__pycache__"}
    assert results and results <= studies - {"tools"}, sorted(results - studies)
    for d in studies:
        with open(os.path.join(REPO, "studies", d, "README.md"), encoding="utf-8") as f:
            text = f.read()
        assert d == "tools" or f"results/{d}" in text, d
        if d != "tools" and d not in results:
            assert "not run" in text or "not yet run" in text or "nothing has been run" in text, d


def test_semparse_holdout_driver_parses_and_refuses_a_bad_budget(tmp_path):
    script = os.path.join(REPO, "studies", "semparse_holdout", "run.sh")
    subprocess.run(["bash", "-n", script], check=True)
    proc = subprocess.run(["bash", script, str(tmp_path / "data"), str(tmp_path / "out"), "all", "huge"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: budget must be small or smoke, got 'huge'"
    assert not os.path.exists(tmp_path / "out")


def test_context_use_counts_copies_of_context_labels(run_script, tmp_path, mt_dir):
    """A prediction equal to a context example's label is a copy; one equal to the reference is
    counted separately; zero-context rows are ignored."""
    task = tasks.load_task("mt", data=mt_dir)
    pool, test = task.pool, task.tests["test"]
    rows = []
    for i, ex in enumerate(test[:4]):
        ctx = [pool[2 * i]["id"], pool[2 * i + 1]["id"]]
        pred = pool[2 * i]["y"] if i < 3 else "etwas ganz anderes"  # 3 of 4 copy a context label
        rows.append({"id": ex["id"], "context_type": "random", "context": ctx, "max_nsim": 0.1,
                     "prediction": pred, "reference": ex["y"], "score": 10.0})
    rows.append({"id": test[0]["id"], "context_type": "zero", "context": [], "max_nsim": 0.0,
                 "prediction": test[0]["y"], "reference": test[0]["y"], "score": 100.0})
    rows.append({"id": test[1]["id"], "context_type": "zero", "context": [], "max_nsim": 0.0,  # source copied back
                 "prediction": test[1]["x"].upper() + "!", "reference": test[1]["y"], "score": 5.0})
    d = tmp_path / "eval"
    d.mkdir()
    (d / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "cu.md"
    run_script("studies/tools/context_use.py", d, "--labels", "m", "--task", "mt", "--data", mt_dir, "--out", out,
               check=True)
    line = next(l for l in out.read_text().splitlines() if l.startswith("| m |"))
    assert line.split("|")[2].strip() == "75.0 / 0.0 (4)"
    fail = [l for l in out.read_text().splitlines() if l.startswith("| m |")][1]
    assert [c.strip() for c in fail.split("|")[2:4]] == ["50.0 (2)", "0.0 (4)"]  # zero: 1 of 2 copies x back
    bad = run_script("studies/tools/context_use.py", d, d, "--labels", "m", "--task", "mt", "--data", mt_dir,
                     "--out", tmp_path / "x.md")
    assert bad.returncode == 2 and "2 folders but 1 labels" in bad.stderr and not (tmp_path / "x.md").exists()


def test_context_use_adds_a_format_table_for_semparse(run_script, tmp_path, mtop_dir):
    task = tasks.load_task("semparse", data=mtop_dir)
    test = task.tests["test"]
    preds = [test[0]["y"], "[IN:CREATE_CALL [SL:CONTACT Bob ]", test[2]["x"], ""]  # 1 of 4 well-formed
    rows = [{"id": ex["id"], "context_type": "zero", "context": [], "max_nsim": 0.0, "prediction": p,
             "reference": ex["y"], "score": task.score(p, ex)} for ex, p in zip(test, preds)]
    d = tmp_path / "eval"
    d.mkdir()
    (d / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "cu.md"
    run_script("studies/tools/context_use.py", d, "--labels", "m", "--task", "semparse", "--data", mtop_dir,
               "--out", out, check=True)
    text = out.read_text()
    assert "in the output format of task semparse" in text
    no_answer, form = [l for l in text.splitlines() if l.startswith("| m |")][1:]
    assert no_answer.split("|")[2].strip() == "50.0 (4)" and form.split("|")[2].strip() == "25.0 (4)"


def test_synthetic_relevance_separates_per_symbol_icl_from_copying(tmp_path):
    """studies/synthetic/synthetic_relevance.py's second table: shown - unseen drifted chunks, paired within (seed,
    input), "present" only when the CI excludes 0 upwards and every seed agrees; inputs lacking either kind
    of chunk (None) are left out of the pairing."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("synthetic_relevance",
                                                  os.path.join(REPO, "studies", "synthetic", "synthetic_relevance.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    runs = tmp_path / "runs"
    runs.mkdir()
    n = 60

    def write(cell, seed, shown, unseen):
        d = {"drift_random_drifted_shown": shown, "drift_random_drifted_unseen": unseen,
             "drift_copy_drifted": [50.0] * n, "drift_random_drifted": [0.0] * n}
        (runs / f"{cell}-s{seed}.inputs.json").write_text(json.dumps(d))
    for s in (0, 1):   # cell a: symbols shown in context are right far more often (per-symbol ICL)
        write("a", s, [100.0 if i % 3 else 0.0 for i in range(n - 1)] + [None], [0.0] * (n - 1) + [100.0])
        write("b", s, [0.0] * n, [0.0] * n)                                  # cell b: no context use at all
    write("c", 0, [100.0 if i % 3 else 0.0 for i in range(n)], [0.0] * n)   # cell c: the seeds disagree
    write("c", 1, [0.0] * n, [100.0 if i % 3 else 0.0 for i in range(n)])
    rows = {line.split("|")[1].strip(" `"): line for line in mod.icl_table(str(runs), ["a", "b", "c"])
            if line.startswith("| `")}
    assert "| present |" in rows["a"] and "(+66.1, +66.1)" in rows["a"]
    assert [c.strip() for c in rows["a"].split("|")[2:4]] == ["66.1", "0.0"]  # 39 of 59: the None input dropped
    assert "| not shown |" in rows["b"] and "| not shown |" in rows["c"]
    assert rows["a"].split("|")[-2].strip().startswith("50.0")               # copy - random context


def test_every_study_driver_runs_at_its_smoke_budget_in_a_subprocess_test():
    """Each studies/**/*.sh driver (a file with a shebang; the sourced stage files have none) is run by a
    subprocess test in tests/test_drivers.py (cleanrl style), and each driver taking a budget refuses a bad one."""
    with open(os.path.join(REPO, "tests", "test_drivers.py"), encoding="utf-8") as f:
        tests = f.read()
    drivers = []
    for sh in sorted(glob.glob(os.path.join(REPO, "studies", "**", "*.sh"), recursive=True)):
        with open(sh, encoding="utf-8") as f:
            if f.readline().startswith("#!"):
                drivers.append(os.path.relpath(sh, REPO))
    assert len(drivers) >= 8
    missing = [d for d in drivers if f'_driver("{d}"' not in tests and f'"{d}"' not in tests]
    assert not missing, f"drivers no subprocess test runs: {missing}"
    run_in_full = {"studies/counterfactuals_heldout/verdicts.sh"}  # analysis only (seconds): tested in full, golden
    for d in set(drivers) - run_in_full:
        with open(os.path.join(REPO, d), encoding="utf-8") as f:
            assert "smoke" in f.read(), f"{d} has no smoke budget"


def test_synthetic_pairs_reproduces_the_committed_claim():
    """studies/synthetic/synthetic_pairs.py, run as results/synthetic/results.md gives it, prints the paired
    difference that results.md reports (Contrastive below Random under a zero prompt)."""
    proc = subprocess.run(["python", "studies/synthetic/synthetic_pairs.py", "results/synthetic/default",
                           "contrastive-a0.3-b0.2-r0.5-R0-z0-F0.3", "random-z0-F0.3", "--metrics", "acc_zero"],
                          cwd=REPO, capture_output=True, text=True, check=True)
    assert ("acc_zero: contrastive-a0.3-b0.2-r0.5-R0-z0-F0.3 − random-z0-F0.3 = -6.3 [-7.3, -5.3] "
            "(seeds 0,1,2,3,4; n 3000") in proc.stdout
    with open(os.path.join(REPO, "results", "synthetic", "results.md"), encoding="utf-8") as f:
        assert "below Random (−6.3 [−7.3, −5.3])" in f.read()


def test_deploy_report_gives_the_committed_g1_and_g2(tmp_path):
    """studies/deploy/deploy_report.py on the committed chat deployments of Contrastive gamma 1 gives the G1 and
    G2 of results/deploy/chat_train.md (report_mt.py's table), and writes its report and .json twin."""
    d = "results/deploy/chat_ende"
    out = tmp_path / "report.md"
    subprocess.run(["python", "studies/deploy/deploy_report.py", "--g1", f"{d}/contrastive-cf1-nearest",
                    f"{d}/contrastive-cf1-p0", "--g2", f"{d}/contrastive-cf1-nearest", f"{d}/zero-zero",
                    "--out", str(out)], cwd=REPO, capture_output=True, text=True, check=True)
    report = out.read_text(encoding="utf-8")
    assert "| G1 |" in report and "| 167 | 1.2 [0.1, 2.6] |" in report
    assert "| G2 |" in report and "| 167 | 13.9 [10.7, 17.3] |" in report
    assert os.path.isfile(str(out) + ".json")
    with open(os.path.join(REPO, "results", "deploy", "chat_train.md"), encoding="utf-8") as f:
        row = next(line for line in f if line.startswith("| contrastive-cf1 |"))
    assert "1.2 [0.1, 2.6] (167)" in row and "13.9 [10.7, 17.3] (167)" in row


def test_deploy_driver_refuses_a_bad_budget_or_start(tmp_path):
    script = os.path.join(REPO, "studies", "deploy", "run_mt.sh")
    for args, msg in ((["chat_ende", "4", "huge"], "error: budget must be small or smoke, got 'huge'"),
                      (["chat_ende", "4", "smoke", "both"], "error: start must be all, empty or train, got 'both'")):
        proc = subprocess.run(["bash", script, str(tmp_path / "data"), str(tmp_path / "out"), *args], cwd=REPO,
                              capture_output=True, text=True)
        assert proc.returncode == 2 and proc.stderr.strip() == msg
    assert not os.path.exists(tmp_path / "out")
