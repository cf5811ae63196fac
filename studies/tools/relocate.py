"""Move a finished study's outputs into the repository under a repository-relative name: every text file
(JSON, JSONL, markdown) has the old folder prefix replaced by the new one, and the checksums that cover
a rewritten file are refreshed (JSONL sidecars' sha256, cc_output.json's completion record).

    python studies/tools/relocate.py OUT results/mt_fullpool --labels copier contrastive contrastive-cf1

Copies OLD/{eval,eval_cf,runs}/<label> (runs: config.json, train_log.jsonl, contexts.jsonl + sidecar; no
weights) and the LoRA adapter of each run (runs.export_adapter, fp16, with its prompt_template.json) to NEW.
Only labels whose evaluation is complete (summary.json) are copied. The files' contents are unchanged
apart from the path prefix; readers (evaluation.read_eval_folder) check the refreshed checksums.
"""
import argparse
import os
import shutil

from contrastive_context import contexts, runs, tasks
from contrastive_context.common import UserError, file_sha256, read_json, run_main, write_json_atomic

TEXT = (".json", ".jsonl", ".md")
RUN_FILES = ("config.json", "train_log.jsonl", "contexts.jsonl", "contexts.jsonl.meta.json", "cc_output.json")


def rewrite(folder, old, new):
    """Replace old -> new in every text file under folder; refresh the checksums that cover them."""
    for root, _, files in os.walk(folder):
        for f in sorted(files):
            p = os.path.join(root, f)
            if f.endswith(TEXT):
                with open(p, encoding="utf-8") as fh:
                    text = fh.read()
                if old in text:
                    with open(p, "w", encoding="utf-8") as fh:
                        fh.write(text.replace(old, new))
        for f in sorted(files):  # sidecars: sha256 of their data file
            if f.endswith(".meta.json") and os.path.isfile(os.path.join(root, f[:-len(".meta.json")])):
                p = os.path.join(root, f)
                meta = read_json(p, "sidecar")
                if "sha256" in meta:
                    meta["sha256"] = file_sha256(os.path.join(root, f[:-len(".meta.json")]))
                    write_json_atomic(p, meta)
        if "cc_output.json" in files:  # the completion record: sha256 of each listed file
            p = os.path.join(root, "cc_output.json")
            owner = read_json(p, "output marker")
            listed = (owner.get("complete") or {}).get("files") or {}
            for name in listed:
                if os.path.isfile(os.path.join(root, name)):
                    listed[name] = file_sha256(os.path.join(root, name))
            write_json_atomic(p, owner)


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("old", help="the study's output folder (as the study wrote it)")
    p.add_argument("new", help="repository-relative destination, e.g. results/mt_fullpool")
    p.add_argument("--labels", nargs="+", required=True, help="labels to copy")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if os.path.isabs(args.new):
        raise UserError(f"{args.new}: the destination must be repository-relative")
    old = os.path.abspath(args.old).rstrip("/") + "/"
    for label in args.labels:
        done = [s for s in ("eval", "eval_cf") if os.path.isfile(os.path.join(old, s, label, "summary.json"))]
        if not done:
            print(f"skip {label}: no finished evaluation")
            continue
        for s in done:
            dst = os.path.join(args.new, s, label)
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(os.path.join(old, s, label), dst, ignore=shutil.ignore_patterns(".cc_lock", "*.partial*"))
        run = os.path.join(old, "runs", label)
        if os.path.isdir(run):
            dst = os.path.join(args.new, "runs", label)
            os.makedirs(dst, exist_ok=True)
            for f in RUN_FILES:
                if os.path.isfile(os.path.join(run, f)):
                    shutil.copyfile(os.path.join(run, f), os.path.join(dst, f))
            if os.path.isfile(os.path.join(runs.final_dir(run), runs.ADAPTER_WEIGHTS)):
                ada = runs.export_adapter(runs.final_dir(run), os.path.join(args.new, "adapters", label))
                cfg = runs.read_config(run)
                # the k the run trained with: its contexts' (a --contexts run's config.json may not say it)
                k = contexts.sampling_record(cfg.get("contexts") or runs.contexts_path(run))["k"]
                write_json_atomic(os.path.join(ada, tasks.PROMPT_CARD), tasks.prompt_card(cfg, k))
        print(f"copied {label}: {', '.join(done)}")
    rewrite(args.new, old, args.new.rstrip("/") + "/")


if __name__ == "__main__":
    run_main(main)
