"""Reproduce the paper's study end to end with one command.

    python reproduce.py --task alignment --model smollm2-135m --budget small --out results/alignment
    python reproduce.py --task mt --data ../shared/data/multi30k --max-pool 2000 --budget small --out results/mt

Stages (each is one of the repo's scripts run as a subprocess). A stage counts as finished only
when its `<output>.done` manifest (common.write_done: the stage's command and the sha256 of
its output files/folders) matches: a stage interrupted by Ctrl-C, SIGTERM or a crash, or
whose output was changed, is run again on a re-run (paraphrase.py continues from its cache,
train.py --resume from its last checkpoint), so an interrupted study resumes where it stopped:
  1. paraphrase.py   training-pool paraphrases (--backend auto: rules for mt/semparse, the task's
                     perturbation otherwise) for Contrastive's rho, and test-input paraphrases
                     with a DIFFERENT seed for `random+paraphrase`
  2. sample_contexts.py   contexts.jsonl for every regime
  3. train.py        one LoRA run per regime (zero, random, similar, contrastive, random+similar,
                     and contrastive with --extra-zero-frac, our extension); each final adapter is also
                     copied in fp16 to adapters/<regime>/ (small enough to publish)
  4. evaluate.py     the untuned base and every run under zero/random/similar/random+nearest/
                     random+paraphrase contexts
  5. probes.py       IWL / ICL / copy scores over every run's checkpoints
  6. figure3.py      -> figure3.png + figure3.md (paired differences vs contrastive), and results.md
Budgets: smoke (tiny random model, seconds; used by the tests), small (sized for 2 CPU
cores), full (the paper's 5 epochs and whole test sets; meant for a GPU).
--out must be missing, empty or a study of reproduce.py (its cc_output.json, or for a study made
before those markers, its stage manifests); any other folder is refused before the first stage.
"""
import argparse
import os
import re
import subprocess
import sys
import time

from contrastive_context import config
from contrastive_context import regimes
from contrastive_context import runs
from contrastive_context import tasks
from contrastive_context.common import (UserError, check_output_path, is_done, output_digest, print_config, read_json,
                                        read_jsonl, run_main, write_done, write_json_atomic, write_text_atomic)
from contrastive_context.evaluation import CONTEXT_TYPES
from contrastive_context.config import SEED_MAX, finite_float, int_range
from contrastive_context.outputs import check_out_not_input, claim_output_dir, read_owner  # output folder ownership
from contrastive_context.stats import fmt
from contrastive_context.tasks import add_task_args, task_from_args

HERE = os.path.dirname(os.path.abspath(__file__))
BUDGETS = {  # training steps/epochs, eval and probe sizes
    "smoke": dict(model="tiny", epochs=1, max_steps=6, save_every=3, eval_limit=6, probe_limit=4, batch_size=2),
    "small": dict(model="smollm2-135m", epochs=2, max_steps=None, save_every=50, eval_limit=60, probe_limit=30,
                  batch_size=2),
    "full": dict(model="smollm2-135m", epochs=5, max_steps=None, save_every=200, eval_limit=None, probe_limit=200,
                 batch_size=2),
}
# every regime of regimes.REGIMES, with the flags its run adds (random+similar: half Random, half Similar)
REGIME_FLAGS = {"random+similar": ["--alpha", "0.5"]}
REGIME_RUNS = [(r, REGIME_FLAGS.get(r, [])) for r in regimes.REGIMES]
# ablations of Contrastive, run only when named in --regimes: no paraphrases among the One-Near
# contexts (rho = 0), no Similar-Contexts (beta = 0)
ABLATIONS = [("contrastive-rho0", ["--rho", "0"]), ("contrastive-beta0", ["--beta", "0"])]
SKIPPABLE = ("base", "probes", "compare")


def made_by_reproduce(folder):
    """A study folder written before cc_output.json markers existed: it holds a stage manifest of
    reproduce.py (a `<output>.done` with the stage's name and command)."""
    for name in os.listdir(folder):
        if name.endswith(".done") and os.path.isfile(os.path.join(folder, name)):
            try:
                rec = read_json(os.path.join(folder, name), "stage manifest")
            except UserError:
                continue
            if isinstance(rec, dict) and "stage" in rec and "cmd" in rec:
                return True
    return False


def save_timings(path, timings):
    """Merge this process's stage times into timings.json (regime subsets may run in parallel)."""
    old = read_json(path, "timings") if os.path.exists(path) else {}
    timings.update({k: v for k, v in (old if isinstance(old, dict) else {}).items() if k not in timings})
    write_json_atomic(path, timings)


def task_flags(args):
    """The task flags every stage gets, derived from config.TaskConfig (non-default values only)."""
    return config.to_argv(config.from_args(config.TaskConfig, args))


# left out of a stage's record: they never change its output (config.NOT_OF_THE_RUN)
MACHINE_FLAGS = tuple("--" + d.replace("_", "-") for d in config.not_of_the_run("machine"))  # each takes a value
RESUME_FLAGS = tuple("--" + d.replace("_", "-") for d in config.not_of_the_run("resume"))    # switches


def stage_key(cmd):
    """The command that defines a stage's output: flags that do not change it are left out."""
    key, skip = [], False
    for a in cmd:
        if skip:
            skip = False
            continue
        if a in MACHINE_FLAGS:
            skip = True
            continue
        if a not in RESUME_FLAGS:
            key.append(a)
    return key


def stage(name, outputs, cmd, timings, inputs=()):
    """Run one stage unless its outputs are complete: `<outputs[0]>.done` records the command,
    the digests of the files/folders it read (`inputs`: a re-made input re-runs the stage) and
    of every output, and all still match. Returns True when it ran."""
    outputs = [outputs] if isinstance(outputs, str) else list(outputs)

    def info():
        return {"stage": name, "cmd": stage_key(cmd), "also": {o: output_digest(o) for o in outputs[1:]},
                "inputs": {i: output_digest(i) for i in inputs}}
    if is_done(outputs[0], info()):
        print(f"[skip] {name}: {outputs[0]} is complete", flush=True)
        return False
    print(f"[run ] {name}: {' '.join(cmd)}", flush=True)
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, *cmd], cwd=HERE)
    try:
        code = proc.wait()
    except BaseException:  # Ctrl-C / SIGTERM of reproduce.py: stop the stage too, let it clean up
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        raise
    if code != 0:
        raise UserError(f"stage {name} failed with exit code {code} (command: {' '.join(cmd)})")
    missing = [o for o in outputs if not os.path.exists(o)]
    if missing:
        raise UserError(f"stage {name} exited 0 but did not write {', '.join(missing)}")
    write_done(outputs[0], info())
    timings[name] = round(time.time() - t0, 1)
    return True


def results_markdown(args, evals, probes_path, compare_md, timings):
    lines = [f"# Results: task `{args.task}`, model `{args.model}`, budget `{args.budget}`", "",
             f"Command: `python reproduce.py {' '.join(sys.argv[1:])}`", ""]
    summaries = {label: read_json(os.path.join(d, "summary.json"), "summary") for label, d in evals}
    metric = next(iter(summaries.values()))["metric"]
    types = [t for t in CONTEXT_TYPES if any(t in s["by_context_type"] for s in summaries.values())]
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
                  "`zero fail` = % of zero-context answers that are empty or copy the input back: a model that "
                  "collapses under the zero prompt gets a low IWL score for that reason.", "",
                  "| run | step | iwl | zero fail | icl | copy |", "|---|---|---|---|---|---|"]
        table = {}
        for r in rows:
            table.setdefault((r["run"], r["step"]), {})[r["probe"]] = r["score"]
            if r["probe"] == "iwl":
                table[(r["run"], r["step"])]["zero_fail"] = r.get("zero_fail")
        for (run, step), v in sorted(table.items(), key=lambda kv: (kv[0][0], kv[0][1])):
            lines.append(f"| {os.path.basename(run)} | {step} | " + " | ".join(
                "—" if v.get(p) is None else f"{v[p]:.1f}" for p in ("iwl", "zero_fail", "icl", "copy")) + " |")
    lines += ["", "## Wall time per stage (s)", "", "| stage | s |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in timings.items()]
    return "\n".join(lines) + "\n"


def regime_list(zero_frac):
    regimes = list(REGIME_RUNS)
    if zero_frac > 0:
        regimes.append((f"contrastive+zero{zero_frac:g}", ["--zero-frac", str(zero_frac)]))
    return regimes


def parse_label(label):
    """'contrastive+zero0.1@s1' -> (regime 'contrastive', training-seed offset 1). The offset
    changes the training contexts and initialisation only; every run is evaluated on the same
    test contexts (--seed), so runs pair by test input and seeds pool in figure3.py."""
    name, offset = regimes.split_run_label(label)
    regime = name.split("+zero")[0]
    regime = "contrastive" if regime in dict(ABLATIONS) else regime
    return regime, offset


def parse_label_name(label):
    """The label a run reports under: its regime name without the seed suffix."""
    return regimes.split_run_label(label)[0]


def select_regimes(spec, zero_frac):
    """--regimes 'contrastive,random@s1,contrastive-rho0' -> [(label, extra flags)]."""
    known = dict(regime_list(zero_frac) + ABLATIONS)
    if spec is None:
        return regime_list(zero_frac)
    asked = [r.strip() for r in spec.split(",") if r.strip()]
    bad = [r for r in asked if r.partition("@s")[0] not in known
           or (r.partition("@s")[1] and not re.fullmatch(r"[1-9][0-9]{0,2}", r.partition("@s")[2]))]
    if bad or not asked:
        raise UserError(f"--regimes: unknown regime(s) {', '.join(bad) or '(none given)'}; valid: "
                        f"{', '.join(known)}, each optionally with @s<N> (N = 1..999, another training seed)")
    if len(set(asked)) != len(asked):
        raise UserError("--regimes: a regime is named twice")
    return [(r, known[r.partition("@s")[0]]) for r in asked]


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    add_task_args(p)
    pos = int_range(1, 10**7)
    p.add_argument("--model", default=None, help="model (default: per budget: tiny for smoke, else smollm2-135m)")
    p.add_argument("--budget", default="small", choices=tuple(BUDGETS))
    p.add_argument("--epochs", type=int_range(1, 1000), default=None, help="override the budget's epochs")
    p.add_argument("--max-steps", type=pos, default=None, help="override the budget's max steps per run")
    p.add_argument("--save-every", type=pos, default=None, help="override the budget's checkpoint interval")
    # the flags passed on to evaluate.py / probes.py are theirs (config.EvalConfig), at most narrowed here
    config.add_eval_arg(p, "limit", "--eval-limit", dest="eval_limit", hi=10**7,
                        help="override the budget's test inputs")
    config.add_eval_arg(p, "limit", "--probe-limit", dest="probe_limit", hi=10**7,
                        help="override the budget's probe inputs")
    p.add_argument("--extra-zero-frac", dest="zero_frac", type=finite_float(0, 1, hi_open=True), default=0.1,
                   help="also train contrastive with train.py --zero-frac set to this share in [0, 1) (0 disables "
                        "the extra run)")
    config.add_eval_arg(p, "paraphrases", "--test-paraphrases", dest="test_paraphrases",
                        help="paraphrase JSONL of test inputs for random+paraphrase (default: perturb with another "
                             "seed)")
    p.add_argument("--lr", type=finite_float(0, 1, lo_open=True), default=None,
                   help="training learning rate in (0, 1] (default: train.py's 2e-4)")
    config.add_threads_arg(p)  # passed as is to every stage, whose --threads is the same flag
    p.add_argument("--regimes", default=None, help="comma-separated regimes to run (default: the five regimes "
                   f"and contrastive+zero<FRAC>): {', '.join(r for r, _ in REGIME_RUNS + ABLATIONS)}, "
                   "contrastive+zero<FRAC>; a suffix @s<N> trains another seed (seed + N), e.g. contrastive@s1")
    config.add_eval_arg(p, "k", hi=64, help="examples per context in training and evaluation")
    p.add_argument("--skip", default="", help=f"comma-separated stages not to run here: {', '.join(SKIPPABLE)} "
                   "(e.g. when regime subsets run in parallel processes and one of them evaluates the base)")
    p.add_argument("--only-train", action="store_true",
                   help="stop after training (e.g. to train regime subsets in parallel processes)")
    config.add_eval_arg(p, "seed", hi=SEED_MAX - 1000, help="seed (the test paraphrases use seed + 1000)")
    p.add_argument("--out", required=True, help="study folder")
    return p


def budget(args):
    """The budget's sizes, with the flags that override them."""
    b = dict(BUDGETS[args.budget])
    for k in ("epochs", "max_steps", "save_every", "eval_limit", "probe_limit"):
        if getattr(args, k) is not None:
            b[k] = getattr(args, k)
    return b


def check_args(args):
    """Every flag checked before the first stage starts; returns (budget, regimes)."""
    b = budget(args)
    args.model = args.model or b["model"]
    regimes = select_regimes(args.regimes, args.zero_frac)
    args.skip = [s.strip() for s in args.skip.split(",") if s.strip()]
    bad = [s for s in args.skip if s not in SKIPPABLE]
    if bad:
        raise UserError(f"--skip: unknown stage(s) {', '.join(bad)}; valid: {', '.join(SKIPPABLE)}")
    check_output_path(args.out, is_dir=True, what="--out")
    check_out_not_input(args.out, [args.data, args.test_paraphrases], is_dir=True, may_hold_inputs=True)
    claim_output_dir(args.out, "study", "reproduce.py", reuse=True, lock=False, legacy=made_by_reproduce)
    if args.test_paraphrases is not None and not os.path.isfile(args.test_paraphrases):
        raise UserError(f"--test-paraphrases file not found: {args.test_paraphrases}")
    if args.data is None or not args.data.startswith("hub:"):
        task_from_args(args)  # bad --data / task flags fail here, not inside a stage
    else:  # a hub data set is not downloaded here, but an unknown name or no network fails before any stage
        from contrastive_context import hub
        config.task_options(config.from_args(config.TaskConfig, args))
        hub.hub_plan(args.data[4:], args.src, args.tgt)
        hub.require_datasets(args.data[4:])
    from contrastive_context import models
    models.check_model_name(args.model)  # an unknown model fails here, before a stage writes anything
    return b, regimes


def paraphrase_stages(args, out, tf, timings):
    """Training-pool paraphrases (for rho) and test-input ones (another seed: not the training ones)."""
    p_train = os.path.join(out, "paraphrases.train.jsonl")
    stage("paraphrase-train", p_train, ["paraphrase.py", *tf, "--split", "train", "--backend", "auto",
                                        "--n", "3", "--seed", str(args.seed), "--out", p_train], timings)
    p_test = args.test_paraphrases or os.path.join(out, "paraphrases.test.jsonl")
    if not args.test_paraphrases:
        stage("paraphrase-test", p_test, ["paraphrase.py", *tf, "--split", "test", "--backend", "auto",
                                          "--n", "1", "--seed", str(args.seed + 1000), "--out", p_test], timings)
    return p_train, p_test


def train_stages(args, b, regimes, out, tf, p_train, timings, tpath):
    """Contexts and training, per regime -> [(label, run folder)]."""
    trained = []
    for label, extra in regimes:
        regime, offset = parse_label(label)
        seed, k = str(args.seed + offset), ["--k", str(args.k)] if args.k != 4 else []
        ctx = os.path.join(out, "contexts", f"{label}.jsonl")
        stage(f"contexts-{label}", ctx, ["sample_contexts.py", *tf, "--regime", regime, *extra, *k,
                                         "--paraphrases", p_train, "--epochs", str(b["epochs"]),
                                         "--seed", seed, "--out", ctx], timings, inputs=[p_train])
        run = os.path.join(out, "runs", label)
        cmd = ["train.py", *tf, "--regime", regime, *extra, *k, "--contexts", ctx, "--paraphrases", p_train,
               "--model", args.model, "--epochs", str(b["epochs"]), "--save-every", str(b["save_every"]),
               "--batch-size", str(b["batch_size"]), "--seed", seed, "--eval-limit", "0", "--out", run]
        cmd += ["--max-steps", str(b["max_steps"])] if b["max_steps"] else []
        cmd += ["--lr", str(args.lr)] if args.lr else []
        cmd += ["--threads", str(args.threads)]
        if read_owner(run):
            cmd.append("--resume")  # an unfinished run (cc_output.json: train.py's) continues from its last checkpoint
        stage(f"train-{label}", run, cmd, timings, inputs=[ctx, p_train])
        trained.append((label, run))
        save_timings(tpath, timings)
    return trained


def export_adapters(trained, out, k):
    """<out>/adapters/<label>/: each finished LoRA run's final adapter in fp16 (a few MB, small
    enough to commit beside the results; evaluate.py --adapter takes the folder)."""
    for label, run in trained:
        final = runs.final_dir(run)
        if os.path.isfile(os.path.join(final, runs.ADAPTER_WEIGHTS)):
            dst = runs.export_adapter(final, os.path.join(out, "adapters", label))
            write_json_atomic(os.path.join(dst, tasks.PROMPT_CARD), tasks.prompt_card(runs.read_config(run), k))


def eval_cmd(args, b, tf, p_test, out, run=None):
    """The evaluate.py command of the base model (run None) or of a run (its folder as --adapter)."""
    lim = ["--limit", str(b["eval_limit"])] if b["eval_limit"] else []
    lim += ["--k", str(args.k)] if args.k != 4 else []
    return ["evaluate.py", *tf, "--model", args.model, *(["--adapter", run] if run else []), "--paraphrases", p_test,
            "--seed", str(args.seed), *lim, "--threads", str(args.threads), "--out", out]


def probes_cmd(args, b, run_dirs, p_test, probes, png):
    """The probes.py command over every run's checkpoints."""
    cmd = ["probes.py", *[a for run in run_dirs for a in ("--run", run)], "--limit", str(b["probe_limit"]),
           "--paraphrases", p_test, "--threads", str(args.threads), "--out", probes, "--plot", png]
    return cmd + (["--k", str(args.k)] if args.k != 4 else [])


def eval_stages(args, b, trained, out, tf, p_test, timings, tpath):
    """The base model and every run, evaluated on the very same instances -> [(label, eval folder)]."""
    evals = [("base", os.path.join(out, "eval", "base"))]
    if "base" not in args.skip:
        stage("eval-base", evals[0][1], eval_cmd(args, b, tf, p_test, evals[0][1]), timings, inputs=[p_test])
    if not os.path.isfile(os.path.join(evals[0][1], "summary.json")):
        evals = []  # skipped here and not (yet) evaluated by another process
    for label, run in trained:
        d = os.path.join(out, "eval", label)
        stage(f"eval-{label}", d, eval_cmd(args, b, tf, p_test, d, run), timings, inputs=[run, p_test])
        evals.append((label, d))
        save_timings(tpath, timings)
    return evals


def main(argv=None):
    args = build_parser().parse_args(argv)
    b, regimes = check_args(args)
    print_config({**config.applicable(args), **{f"budget.{k}": v for k, v in b.items()}}, "reproduce")
    out = os.path.abspath(args.out)
    # a missing or empty folder, a study of ours (cc_output.json) or an older one (its stage manifests);
    # never locked: regime subsets may run in parallel processes on one study (each stage locks its own folder)
    claim_output_dir(out, "study", "reproduce.py", reuse=True, lock=False, legacy=made_by_reproduce).start()
    tf, tpath = task_flags(args), os.path.join(out, "timings.json")
    timings = read_json(tpath, "timings") if os.path.exists(tpath) else {}
    timings = timings if isinstance(timings, dict) else {}

    p_train, p_test = paraphrase_stages(args, out, tf, timings)
    trained = train_stages(args, b, regimes, out, tf, p_train, timings, tpath)
    export_adapters(trained, out, args.k)
    if args.only_train:
        print("--only-train: stopping after training")
        return
    evals = eval_stages(args, b, trained, out, tf, p_test, timings, tpath)

    probes, png = os.path.join(out, "probes.jsonl"), os.path.join(out, "probes.png")
    if "probes" not in args.skip:
        stage("probes", [probes, png], probes_cmd(args, b, [r for _, r in trained], p_test, probes, png), timings,
              inputs=[p_test, *[r for _, r in trained]])

    fig, table = os.path.join(out, "figure3.png"), os.path.join(out, "figure3.md")
    labels = [parse_label_name(l) for l, _ in evals]  # seeds of one regime share a label: figure3 pools them
    ref = ["--ref", "contrastive"] if "contrastive" in labels else []
    if "compare" not in args.skip and evals:
        stage("compare", [fig, table], ["figure3.py", *[d for _, d in evals], "--labels", *labels, *ref,
                                        "--out", fig, "--table", table, "--title", f"{args.task} / {args.model}"],
              timings, inputs=[d for _, d in evals])
    save_timings(tpath, timings)
    if evals:
        write_text_atomic(os.path.join(out, "results.md"), results_markdown(args, evals, probes, table, timings))
        print(f"wrote {os.path.join(out, 'results.md')}")


if __name__ == "__main__":
    run_main(main)
