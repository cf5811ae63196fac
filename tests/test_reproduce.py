import json
import os


def test_reproduce_smoke_end_to_end_and_resume(run_script, tmp_path):
    out = tmp_path / "study"
    args = ["reproduce.py", "--budget", "smoke", "--regimes", "zero,contrastive,contrastive+zero0.1",
            "--threads", "1", "--out", out]
    run_script(*args, check=True)
    for f in ("results.md", "figure3.png", "probes.png", "probes.jsonl", "timings.json",
              "paraphrases.train.jsonl", "paraphrases.test.jsonl", "contexts/contrastive.jsonl",
              "runs/contrastive/final", "eval/base/summary.json", "eval/contrastive+zero0.1/summary.json"):
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


def test_reproduce_bad_budget(run_script, tmp_path):
    proc = run_script("reproduce.py", "--budget", "huge", "--out", tmp_path / "x")
    assert proc.returncode == 2
