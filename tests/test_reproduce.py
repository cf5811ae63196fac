import json
import os
import re

import pytest

import reproduce
from contrastive_context.common import UserError


@pytest.mark.slow  # reproduce.py end to end as a subprocess: ~45 s each
def test_reproduce_smoke_end_to_end_and_resume(run_script, tmp_path):
    out = tmp_path / "study"
    args = ["reproduce.py", "--budget", "smoke", "--regimes", "zero,contrastive,contrastive+zero0.1",
            "--threads", "1", "--out", out]
    run_script(*args, check=True)
    for f in ("results.md", "figure3.png", "probes.png", "probes.jsonl", "timings.json",
              "paraphrases.train.jsonl", "paraphrases.test.jsonl", "contexts/contrastive.jsonl",
              "runs/contrastive/final", "eval/base/summary.json", "eval/contrastive+zero0.1/summary.json",
              "adapters/contrastive/adapter_model.safetensors", "adapters/zero/adapter_config.json", "adapters/contrastive/prompt_template.json"):
        assert (out / f).exists(), f
    assert (out / "figure3.png").stat().st_size > 1000
    md = (out / "results.md").read_text()
    assert "| contrastive |" in md and "random+paraphrase" in md
    probes = [json.loads(l) for l in (out / "probes.jsonl").read_text().splitlines()]
    assert {p["probe"] for p in probes} == {"iwl", "icl", "copy"}
    assert {os.path.basename(p["run"]) for p in probes} == {"zero", "contrastive", "contrastive+zero0.1"}
    # the zero-frac run really mixes in zero-context prompts
    kinds = {json.loads(l)["kind"] for l in (out / "contexts/contrastive+zero0.1.jsonl").read_text().splitlines()}
    assert "zero" in kinds
    # a second run resumes: every stage is skipped, nothing is recomputed
    before = (out / "eval/base/predictions.jsonl").read_bytes()
    again = run_script(*args, check=True)
    assert "[run ]" not in again.stdout and again.stdout.count("[skip]") >= 10
    assert (out / "eval/base/predictions.jsonl").read_bytes() == before
    # a partial output (as left by an interrupted stage) is NOT skipped: the stage is redone,
    # and as it regenerates the same content, the stages after it stay skipped
    p_train = out / "paraphrases.train.jsonl"
    full = p_train.read_bytes()
    p_train.write_bytes(b"".join(full.splitlines(keepends=True)[:5]))
    third = run_script(*args, check=True)
    assert "[run ] paraphrase-train" in third.stdout, third.stdout
    assert p_train.read_bytes() == full
    assert "[run ] contexts-" not in third.stdout and "[run ] eval-" not in third.stdout


@pytest.mark.slow
def test_reproduce_with_its_documented_defaults(run_script, tmp_path):
    """The issue's command, no --threads: every stage takes the value reproduce.py passes (0 = auto)."""
    out = tmp_path / "study"
    proc = run_script("reproduce.py", "--task", "alignment", "--model", "tiny", "--budget", "smoke", "--out", out)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "error:" not in proc.stderr
    regimes = [r for r, _ in reproduce.regime_list(0.1)]
    for label in ["base", *regimes]:
        assert (out / "eval" / label / "summary.json").is_file(), label
    assert proc.stdout.count("--threads 0") == 2 * len(regimes) + 2  # train, evaluate, base evaluation, probes
    threads = [int(n) for n in re.findall(r"torch CPU threads: (\d+)", proc.stdout)]
    assert len(threads) == len(regimes) + 2 and all(1 <= n <= 4 for n in threads)
    probes = [json.loads(line) for line in (out / "probes.jsonl").read_text().splitlines()]
    assert {(os.path.basename(p["run"]), p["step"]) for p in probes} == {(r, s) for r in regimes for s in (0, 3, 6)}
    assert (out / "results.md").is_file() and (out / "figure3.png").stat().st_size > 1000


def test_threads_flag_is_one_flag_everywhere():
    """reproduce.py passes its --threads to train.py, evaluate.py and probes.py: the same type and
    default everywhere, so any value one accepts the others accept; 0 means auto_threads()."""
    from contrastive_context import config
    import evaluate
    import probes
    import train
    parsers = [reproduce.build_parser(), evaluate.build_parser(), probes.build_parser()]
    actions = [a for p in parsers for a in p._actions if "--threads" in a.option_strings]
    assert len(actions) == 3 and all(a.type is config.THREADS and a.default == 0 for a in actions)
    assert train.get_args(["--threads", "0"]).threads == 0 and train.get_args([]).threads == 0
    assert 1 <= config.auto_threads() <= config.AUTO_THREADS_MAX
    import torch
    before = torch.get_num_threads()
    try:
        assert 1 <= config.set_threads(0) == torch.get_num_threads() <= config.AUTO_THREADS_MAX
        assert config.set_threads(1) == torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("task,extreme", [("alignment", "low"), ("alignment", "high"), ("mt", "low"),
                                         ("mt", "high")])
def test_flags_reproduce_passes_on_are_accepted_by_the_stages(task, extreme):
    """The flags reproduce.py passes to evaluate.py and probes.py are declared once
    (config.EvalConfig, config.TaskConfig). The commands it builds from the extreme values its own parser
    accepts parse in evaluate.py's and probes.py's parsers, to the values reproduce.py meant."""
    import evaluate
    import probes
    from contrastive_context import config
    low = extreme == "low"
    flags = {"--k": 1 if low else 64, "--seed": 0 if low else config.SEED_MAX - 1000,
             "--eval-limit": 1 if low else 10**7, "--probe-limit": 1 if low else 10**7, "--threads": 0 if low else 1024}
    tf = {"alignment": ["--n-train", "2" if low else "10000000", "--task-seed", "0" if low else str(config.SEED_MAX),
                        "--align-m", "2" if low else "25"],
          "mt": ["--data", "D", "--max-pool", "1", "--metric", "bleu", "--src", "fr", "--tgt", "en"]}[task]
    argv = ["--task", task, *tf, "--budget", "smoke", "--test-paraphrases", "p.jsonl", "--out", "o",
            *[a for k, v in flags.items() for a in (k, str(v))]]
    args = reproduce.build_parser().parse_args(argv)
    b = reproduce.budget(args)
    args.model = args.model or b["model"]
    task_flags = reproduce.task_flags(args)
    stages = [(evaluate, reproduce.eval_cmd(args, b, task_flags, "p.jsonl", "e/base"), b["eval_limit"]),
              (evaluate, reproduce.eval_cmd(args, b, task_flags, "p.jsonl", "e/x", run="runs/x"), b["eval_limit"]),
              (probes, reproduce.probes_cmd(args, b, ["runs/x", "runs/y"], "p.jsonl", "pr.jsonl", "pr.png"),
               b["probe_limit"])]
    for script, cmd, limit in stages:
        try:
            got = script.build_parser().parse_args(cmd[1:])
        except SystemExit:
            pytest.fail(f"{cmd[0]} refuses the command reproduce.py builds: {cmd}")
        assert (got.k, got.threads, got.limit, got.paraphrases) == (args.k, args.threads, limit, "p.jsonl")
        if script is evaluate:  # (probes.py takes the task flags and model from each run's config.json)
            assert got.seed == args.seed and got.model == args.model
            assert {k: getattr(got, k) for k in config.TASK_KEYS} == {k: getattr(args, k) for k in config.TASK_KEYS}


@pytest.mark.slow  # reproduce.py end to end as a subprocess: ~45 s each
def test_reproduce_seeds_ablations_k_and_skip(run_script, tmp_path):
    """@s<N> trains another seed on the same evaluation contexts; ablations change the contexts;
    --k reaches every stage; --skip base,probes leaves those stages to another process."""
    out = tmp_path / "study"
    run_script("reproduce.py", "--budget", "smoke", "--k", "2", "--skip", "base,probes", "--regimes",
               "contrastive,contrastive@s1,contrastive-rho0,contrastive-beta0", "--threads", "1", "--out", out,
               check=True)
    assert not (out / "eval/base").exists() and not (out / "probes.jsonl").exists()
    rows = {lab: [json.loads(l) for l in (out / f"contexts/{lab}.jsonl").read_text().splitlines()]
            for lab in ("contrastive", "contrastive@s1", "contrastive-rho0", "contrastive-beta0")}
    assert all(len(r["context"]) <= 2 for rs in rows.values() for r in rs if r["kind"] != "zero")
    assert rows["contrastive"] != rows["contrastive@s1"]  # another training seed
    kinds = {lab: {r["kind"] for r in rs} for lab, rs in rows.items()}
    assert "similar" not in kinds["contrastive-beta0"] and "similar" in kinds["contrastive"]
    assert not any(r["paraphrase"] for r in rows["contrastive-rho0"])
    assert any(r["paraphrase"] for r in rows["contrastive"])
    cfg = json.loads((out / "runs/contrastive@s1/config.json").read_text())
    assert json.dumps(cfg).count('"seed": 1') >= 1
    # every run is evaluated on the very same contexts (pairing by test input across seeds)
    preds = {lab: [(json.loads(l)["id"], json.loads(l)["context_type"], json.loads(l)["context"])
                   for l in (out / f"eval/{lab}/predictions.jsonl").read_text().splitlines()]
             for lab in ("contrastive", "contrastive@s1")}
    assert preds["contrastive"] == preds["contrastive@s1"]
    md = (out / "figure3.md").read_text()
    assert "contrastive@s1" not in md  # seeds of one regime are pooled under one label


def _stage_cmd(path, code=0):
    return ["-c", f"import sys; open({str(path)!r}, 'a').write('x\\n'); sys.exit({code})"]


def test_stage_skips_only_complete_outputs(tmp_path, capsys):
    out, timings = tmp_path / "o.txt", {}
    assert reproduce.stage("s", str(out), _stage_cmd(out), timings)
    assert out.read_text() == "x\n" and os.path.isfile(str(out) + ".done")
    assert not reproduce.stage("s", str(out), _stage_cmd(out), timings)  # complete: skipped
    out.write_text("x\ny\n")  # changed / partial content: redone
    assert reproduce.stage("s", str(out), _stage_cmd(out), timings)
    # another command (e.g. other flags) is another output
    assert reproduce.stage("s", str(out), _stage_cmd(out) + ["--extra"], timings)
    # --threads and --resume do not change what a stage produces
    assert not reproduce.stage("s", str(out), _stage_cmd(out) + ["--extra", "--threads", "3", "--resume"], timings)
    # a failing (interrupted) stage leaves no completion manifest
    other = tmp_path / "p.txt"
    with pytest.raises(UserError, match="exit code 3"):
        reproduce.stage("t", str(other), _stage_cmd(other, 3), timings)
    assert other.exists() and not os.path.exists(str(other) + ".done")
    assert reproduce.stage("t", str(other), _stage_cmd(other), timings)
    # a re-made input re-runs the stages that read it
    dep = tmp_path / "dep.txt"
    assert reproduce.stage("u", str(dep), _stage_cmd(dep), timings, inputs=[str(out)])
    assert not reproduce.stage("u", str(dep), _stage_cmd(dep), timings, inputs=[str(out)])
    out.write_text("new\n")
    assert reproduce.stage("u", str(dep), _stage_cmd(dep), timings, inputs=[str(out)])


@pytest.mark.parametrize("argv,msg", [
    (["--regimes", "bogus"], "unknown regime(s) bogus; valid: zero, random, similar, contrastive, random+similar"),
    (["--regimes", ","], "unknown regime(s) (none given)"),
    (["--regimes", "contrastive@s0"], "unknown regime(s) contrastive@s0"),
    (["--regimes", "random,random"], "a regime is named twice"),
    (["--skip", "train"], "--skip: unknown stage(s) train"),
    (["--k", "0"], "argument --k"),
    (["--extra-zero-frac", "nan"], "argument --extra-zero-frac"),
    (["--lr", "inf"], "argument --lr"),
    (["--max-steps", "1e12"], "argument --max-steps"),
    (["--seed", str(2**40)], "argument --seed"),
    (["--threads", "-1"], "argument --threads"),
    (["--budget", "huge"], "argument --budget"),
])
def test_reproduce_bad_flags_fail_before_any_work(tmp_path, capsys, argv, msg):
    out = tmp_path / "study"
    with pytest.raises(SystemExit) as e:
        from contrastive_context.common import run_main
        run_main(reproduce.main, ["--budget", "smoke", "--out", str(out)] + argv if "--budget" not in argv
                 else ["--out", str(out)] + argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert msg in err and sum("error:" in l for l in err.splitlines()) == 1
    assert os.listdir(tmp_path) == []
