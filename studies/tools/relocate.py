"""Move a finished study's outputs into the repository under a repository-relative name: every text file
(JSON, JSONL, markdown) it copies has the old folder prefix replaced by the new one, and the checksums that
cover a rewritten file are refreshed (JSONL sidecars' sha256, cc_output.json's completion record).

    python studies/tools/relocate.py OUT results/mt_fullpool --labels copier contrastive contrastive-cf1

Copies OLD/{EVAL_DIRS, runs}/<label> (eval, eval_cf, eval_cf_heldout, eval_heldout, eval_in; runs: config.json,
train_log.jsonl, contexts.jsonl + sidecar; no weights) and the LoRA adapter of each run (runs.export_adapter,
fp16, with its prompt_template.json) to NEW.
Only labels whose evaluation is complete (summary.json) are copied. The files' contents are unchanged
apart from the path prefix; readers (evaluation.read_eval_folder) check the refreshed checksums.
Each folder is made and rewritten in a temporary folder and renamed into place when complete (never a
partial file or folder); a destination that exists already is refused before anything is written (relocate
never replaces or deletes what it did not make), and files in NEW it did not copy are never touched.
"""
import argparse
import os
import shutil

from contrastive_context import contexts, runs, tasks
from contrastive_context.common import (UserError, atomic_path, file_sha256, read_json, run_main, write_json_atomic,
                                        write_text_atomic)

TEXT = (".json", ".jsonl", ".md")
RUN_FILES = ("config.json", "train_log.jsonl", "contexts.jsonl", "contexts.jsonl.meta.json", "cc_output.json")
SKIP = shutil.ignore_patterns(".cc_lock", "*.partial*")

# the evaluation folders a study may write per label (studies/*/run.sh): five context types, the two
# counterfactual families, MTOP's held-out and kept-domain test splits
EVAL_DIRS = ("eval", "eval_cf", "eval_cf_heldout", "eval_heldout", "eval_in")


def rewrite(folder, old, new):
    """Replace old -> new in every text file under folder (each written atomically); refresh the checksums
    that cover them."""
    for root, _, files in os.walk(folder):
        for f in sorted(files):
            p = os.path.join(root, f)
            if f.endswith(TEXT):
                with open(p, encoding="utf-8") as fh:
                    text = fh.read()
                if old in text:
                    write_text_atomic(p, text.replace(old, new))
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


def plan(old, new, labels):
    """{label: [(kind, source, destination)]} of the folders to make; a destination that exists is a UserError
    (before anything is written)."""
    todo = {}
    for label in labels:
        items = [(s, os.path.join(old, s, label), os.path.join(new, s, label)) for s in EVAL_DIRS
                 if os.path.isfile(os.path.join(old, s, label, "summary.json"))]
        run = os.path.join(old, "runs", label)
        if items and os.path.isdir(run):
            items.append(("runs", run, os.path.join(new, "runs", label)))
            if os.path.isfile(os.path.join(runs.final_dir(run), runs.ADAPTER_WEIGHTS)):
                items.append(("adapters", run, os.path.join(new, "adapters", label)))
        todo[label] = items
    there = [dst for items in todo.values() for _, _, dst in items if os.path.lexists(dst)]
    if there:
        raise UserError(f"{there[0]} exists already: relocate never replaces a folder it did not make "
                        f"({len(there)} such destination(s); remove them or choose another NEW)")
    return todo


def make(kind, src, tmp):
    """Fill the temporary folder `tmp` with the `kind` copy of `src`."""
    if kind in EVAL_DIRS:
        shutil.copytree(src, tmp, ignore=SKIP, dirs_exist_ok=True)
    elif kind == "runs":
        for f in RUN_FILES:
            if os.path.isfile(os.path.join(src, f)):
                shutil.copyfile(os.path.join(src, f), os.path.join(tmp, f))
    else:  # adapters
        runs.export_adapter(runs.final_dir(src), tmp)
        cfg = runs.read_config(src)
        # the k the run trained with: its contexts' (a --contexts run's config.json may not say it)
        k = contexts.sampling_record(cfg.get("contexts") or runs.contexts_path(src))["k"]
        write_json_atomic(os.path.join(tmp, tasks.PROMPT_CARD), tasks.prompt_card(cfg, k))


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
    new_prefix = args.new.rstrip("/") + "/"
    for label, items in plan(old, args.new, args.labels).items():
        if not items:
            print(f"skip {label}: no finished evaluation")
            continue
        for kind, src, dst in items:
            with atomic_path(dst, is_dir=True) as tmp:
                make(kind, src, tmp)
                rewrite(tmp, old, new_prefix)
        print(f"copied {label}: {', '.join(kind for kind, _, _ in items)}")


if __name__ == "__main__":
    run_main(main)
