"""Reproduce the paper's study end to end with one command.

    python reproduce.py --task alignment --model smollm2-135m --budget small --out results/alignment
    python reproduce.py --task mt --data ../shared/data/multi30k --max-pool 2000 --budget small --out results/mt

Stages (each is one of the repo's scripts run as a subprocess; a finished stage is skipped
on a re-run, so an interrupted study resumes where it stopped):
  1. paraphrase.py   training-pool paraphrases (perturb back-end) for Contrastive's rho, and
                     test-input paraphrases with a DIFFERENT seed for `random+paraphrase`
  2. sample_contexts.py   contexts.jsonl for every regime
  3. train.py        one LoRA run per regime (zero, random, similar, contrastive, random+similar,
                     and contrastive with --zero-frac, our extension)
  4. evaluate.py     the untuned base and every run under zero/random/similar/random+nearest/
                     random+paraphrase contexts
  5. probes.py       IWL / ICL / copy scores over every run's checkpoints
  6. evaluate.py compare -> figure3.png, and results.md with all tables
Budgets: smoke (tiny random model, seconds; used by the tests), small (sized for 2 CPU
cores), full (the paper's 5 epochs and whole test sets; meant for a GPU).
"""
import argparse
import os
import subprocess
import sys
import time

from common import (UserError, print_config, read_json, read_jsonl, run_main, write_json_atomic,
                    write_text_atomic)
from stats import fmt
from tasks import add_task_args

HERE = os.path.dirname(os.path.abspath(__file__))
BUDGETS = {  # training steps/epochs, eval and probe sizes
    "smoke": dict(model="tiny", epochs=1, max_steps=6, save_every=3, eval_limit=6, probe_limit=4, batch_size=2),
    "small": dict(model="smollm2-135m", epochs=2, max_steps=None, save_every=50, eval_limit=60, probe_limit=30,
                  batch_size=2),
    "full": dict(model="smollm2-135m", epochs=5, max_steps=None, save_every=200, eval_limit=None, probe_limit=200,
                 batch_size=2),
}
REGIMES = [("zero", []), ("random", []), ("similar", []), ("contrastive", []), ("random+similar", ["--alpha", "0.5"])]


def task_flags(args):
    out = ["--task", args.task]
    for flag in ("data", "src", "tgt", "lang", "task_seed", "n_train", "n_test", "max_pool", "metric",
                 "align_m", "align_len"):
        v = getattr(args, flag)
        if v is not None:
            out += [f"--{flag.replace('_', '-')}", str(v)]
    return out


def stage(name, done_path, cmd, timings):
    """Run one stage unless its output exists; record its wall time."""
    if os.path.exists(done_path):
        print(f"[skip] {name}: {done_path} exists", flush=True)
        return
    print(f"[run ] {name}: {' '.join(cmd)}", flush=True)
    t0 = time.time()
    proc = subprocess.run([sys.executable, *cmd], cwd=HERE)
    if proc.returncode != 0:
        raise UserError(f"stage {name} failed with exit code {proc.returncode} (command: {' '.join(cmd)})")
    timings[name] = round(time.time() - t0, 1)


def results_markdown(args, evals, probes_path, compare_md, timings):
    lines = [f"# Results: task `{args.task}`, model `{args.model}`, budget `{args.budget}`", "",
             f"Command: `python reproduce.py {' '.join(sys.argv[1:])}`", ""]
    summaries = {label: read_json(os.path.join(d, "summary.json"), "summary") for label, d in evals}
    metric = next(iter(summaries.values()))["metric"]
    types = ["zero", "random", "similar", "random+nearest", "random+paraphrase"]
    lines += [f"## Mean {metric} per evaluation context type (95% bootstrap CI, n per cell)", "",
              "| model | " + " | ".join(types) + " |", "|---" * (len(types) + 1) + "|"]
    for label, s in summaries.items():
        cells = [fmt(s["by_context_type"][t]) if t in s["by_context_type"] else "-" for t in types]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    n = next(iter(summaries.values()))["by_context_type"].get("random", {}).get("n")
    lines += ["", f"n = {n} test inputs per cell.", "", "## By target-context similarity (Figure 3)", "",
              "![figure 3](figure3.png)", ""]
    if os.path.exists(compare_md):
        with open(compare_md, encoding="utf-8") as f:
            lines += [f.read(), ""]
    if os.path.exists(probes_path):
        rows = read_jsonl(probes_path, "probes")
        lines += ["## Probes (Figure 4)", "", "![probes](probes.png)", "",
                  "| run | step | iwl | icl | copy |", "|---|---|---|---|---|"]
        table = {}
        for r in rows:
            table.setdefault((r["run"], r["step"]), {})[r["probe"]] = r["score"]
        for (run, step), v in sorted(table.items(), key=lambda kv: (kv[0][0], kv[0][1])):
            lines.append(f"| {os.path.basename(run)} | {step} | " + " | ".join(
                f"{v.get(p, float('nan')):.1f}" for p in ("iwl", "icl", "copy")) + " |")
    lines += ["", "## Wall time per stage (s)", "", "| stage | s |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in timings.items()]
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_task_args(p)
    p.add_argument("--model", default=None, help="model (default: per budget: tiny for smoke, else smollm2-135m)")
    p.add_argument("--budget", default="small", choices=tuple(BUDGETS))
    p.add_argument("--epochs", type=int, default=None, help="override the budget's epochs")
    p.add_argument("--max-steps", type=int, default=None, help="override the budget's max steps per run")
    p.add_argument("--save-every", type=int, default=None, help="override the budget's checkpoint interval")
    p.add_argument("--eval-limit", type=int, default=None, help="override the budget's test inputs")
    p.add_argument("--probe-limit", type=int, default=None, help="override the budget's probe inputs")
    p.add_argument("--zero-frac", type=float, default=0.1,
                   help="also train contrastive with this --zero-frac (0 disables the extra run)")
    p.add_argument("--test-paraphrases", default=None,
                   help="paraphrase JSONL of test inputs for random+paraphrase (default: perturb with another seed)")
    p.add_argument("--lr", type=float, default=None, help="training learning rate (default: train.py's 2e-4)")
    p.add_argument("--threads", type=int, default=0, help="torch threads per stage (0 = auto)")
    p.add_argument("--regimes", default=None, help="comma-separated subset of regimes to run")
    p.add_argument("--only-train", action="store_true",
                   help="stop after training (e.g. to train regime subsets in parallel processes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    b = dict(BUDGETS[args.budget])
    for k in ("epochs", "max_steps", "save_every", "eval_limit", "probe_limit"):
        if getattr(args, k) is not None:
            b[k] = getattr(args, k)
    args.model = args.model or b["model"]
    print_config({**vars(args), **{f"budget.{k}": v for k, v in b.items()}}, "reproduce")
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    tf, timings = task_flags(args), {}
    tpath = os.path.join(out, "timings.json")
    if os.path.exists(tpath):
        timings = read_json(tpath, "timings")

    # 1. paraphrases: training pool (for rho) and test inputs (another seed: not the training ones)
    p_train = os.path.join(out, "paraphrases.train.jsonl")
    stage("paraphrase-train", p_train, ["paraphrase.py", *tf, "--split", "train", "--backend", "perturb",
                                        "--n", "3", "--seed", str(args.seed), "--out", p_train], timings)
    p_test = args.test_paraphrases or os.path.join(out, "paraphrases.test.jsonl")
    if not args.test_paraphrases:
        stage("paraphrase-test", p_test, ["paraphrase.py", *tf, "--split", "test", "--backend", "perturb",
                                          "--n", "1", "--seed", str(args.seed + 1000), "--out", p_test], timings)

    # 2-3. contexts and training, per regime
    regimes = list(REGIMES)
    if args.zero_frac > 0:
        regimes.append((f"contrastive+zero{args.zero_frac:g}", ["--zero-frac", str(args.zero_frac)]))
    if args.regimes:
        keep = set(args.regimes.split(","))
        regimes = [r for r in regimes if r[0] in keep]
    runs = []
    for label, extra in regimes:
        regime = label.split("+zero")[0]
        ctx = os.path.join(out, "contexts", f"{label}.jsonl")
        stage(f"contexts-{label}", ctx, ["sample_contexts.py", *tf, "--regime", regime, *extra,
                                         "--paraphrases", p_train, "--epochs", str(b["epochs"]),
                                         "--seed", str(args.seed), "--out", ctx], timings)
        run = os.path.join(out, "runs", label)
        cmd = ["train.py", *tf, "--regime", regime, *extra, "--contexts", ctx, "--paraphrases", p_train, "--model", args.model,
               "--epochs", str(b["epochs"]), "--save-every", str(b["save_every"]), "--batch-size",
               str(b["batch_size"]), "--seed", str(args.seed), "--eval-limit", "0", "--out", run]
        if b["max_steps"]:
            cmd += ["--max-steps", str(b["max_steps"])]
        if args.lr:
            cmd += ["--lr", str(args.lr)]
        cmd += ["--threads", str(args.threads)]
        if os.path.isdir(run) and not os.path.isdir(os.path.join(run, "final")):
            cmd.append("--resume")  # an interrupted run continues from its last checkpoint
        stage(f"train-{label}", os.path.join(run, "final"), cmd, timings)
        runs.append((label, run))
        write_json_atomic(tpath, timings)

    if args.only_train:
        print("--only-train: stopping after training")
        return

    # 4. evaluation of the base model and every run on the very same instances
    lim = ["--limit", str(b["eval_limit"])] if b["eval_limit"] else []
    evals = [("base", os.path.join(out, "eval", "base"))]
    stage("eval-base", os.path.join(evals[0][1], "summary.json"),
          ["evaluate.py", *tf, "--model", args.model, "--paraphrases", p_test, "--seed", str(args.seed), *lim,
           "--out", evals[0][1]], timings)
    for label, run in runs:
        d = os.path.join(out, "eval", label)
        stage(f"eval-{label}", os.path.join(d, "summary.json"),
              ["evaluate.py", *tf, "--model", args.model, "--adapter", run, "--paraphrases", p_test,
               "--seed", str(args.seed), *lim, "--threads", str(args.threads), "--out", d], timings)
        evals.append((label, d))
        write_json_atomic(tpath, timings)

    # 5. probes over checkpoints
    probes = os.path.join(out, "probes.jsonl")
    cmd = ["probes.py"]
    for _, run in runs:
        cmd += ["--run", run]
    stage("probes", probes, cmd + ["--limit", str(b["probe_limit"]), "--paraphrases", p_test,
                                   "--threads", str(args.threads or 1),
                                   "--out", probes, "--plot", os.path.join(out, "probes.png")], timings)

    # 6. Figure 3 and results.md
    fig, table = os.path.join(out, "figure3.png"), os.path.join(out, "figure3.md")
    stage("compare", fig, ["figure3.py", *[d for _, d in evals], "--labels",
                           *[l for l, _ in evals], "--out", fig, "--table", table,
                           "--title", f"{args.task} / {args.model}"], timings)
    write_json_atomic(tpath, timings)
    write_text_atomic(os.path.join(out, "results.md"), results_markdown(args, evals, probes, table, timings))
    print(f"wrote {os.path.join(out, 'results.md')}")


if __name__ == "__main__":
    run_main(main)
