"""Paraphrase quality report and the quick MT base-model check (SmolLM2 vs Gemma).

    # quality of paraphrase files made by paraphrase.py (one --file per task:split:path)
    python benchmarks/paraphrase_quality.py quality \
        --file mt:train:results/paraphrases/mt.train1000.jsonl --mt-data ../shared/data/multi30k --max-pool 1000 \
        --file semparse:train:results/paraphrases/semparse.train1000.jsonl --mtop-data ../shared/data/mtop \
        --out results/paraphrases/quality.md

    # SmolLM2-135M-Instruct vs Gemma-3-270M as the Multi30k En->De base (greedy, chrF)
    python benchmarks/paraphrase_quality.py model-choice --mt-data ../shared/data/multi30k --limit 40 \
        --out results/paraphrases/model_choice.md

quality: per file, the inputs, acceptance (inputs with >= 1 paraphrase), paraphrases per input,
copies (paraphrases.is_copy; must be 0), slot values kept (semparse), the nsim(x, x') quantiles and
a text histogram, lexical change (share of x's content words missing from x', share of x' tokens
new, sentence BLEU and chrF of x' against x: 100 = identical) and 20 random examples (seeded).
model-choice: per model, the first --n test sentences translated zero-shot and with 4 random pool
examples (tasks.py's MT prompt; the same seeded contexts for both models), greedy decoding,
corpus chrF/BLEU (sacrebleu) and the share of empty/copied-source outputs, plus prefill tok/s
(forward pass over the 4-shot prompts) and LoRA train-step tok/s (forward+backward+AdamW on the
same prompts as a batch, r=8 on q/v) measured on one thread.
"""
import argparse
import json
import os
import random
import sys
import time

from contrastive_context import common
from contrastive_context import paraphrases
from contrastive_context import tasks
from contrastive_context.common import UserError
from contrastive_context.paraphrases import is_copy
from contrastive_context.similarity import PoolIndex, word_tokenize


STOP = set("""a an the of in on at to for with and or is are was were be been it its this that these those
his her their my your our i you he she we they me him them by from as into onto over under up down out
near while who which what there here some any all one two three several many s 't 's do does did can
will would should could please just very also not no""".split())


def quantiles(vals, qs=(0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)):
    v = sorted(vals)
    if not v:
        return {q: float("nan") for q in qs}
    return {q: v[min(len(v) - 1, int(round(q * (len(v) - 1))))] for q in qs}


def histogram(vals, edges=(0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0001), width=40):
    counts = [sum(a <= v < b for v in vals) for a, b in zip(edges, edges[1:])]
    top = max(counts) or 1
    lines = []
    for (a, b), c in zip(zip(edges, edges[1:]), counts):
        lines.append(f"  [{a:.2f}, {min(b, 1.0):.2f}{']' if b > 1 else ')'} {c:6d} {'#' * round(width * c / top)}")
    return "\n".join(lines)


def quality_task(name, args):
    if name == "mt":
        return tasks.load_task("mt", data=args.mt_data, max_pool=args.max_pool)
    if name == "semparse":
        return tasks.load_task("semparse", data=args.mtop_data, max_pool=args.max_pool)
    raise UserError(f"quality: task must be mt or semparse, got {name}")


def file_report(task, split, path, seed):
    import sacrebleu
    meta, rows = paraphrases.read_paraphrase_file(path, task, task.fingerprint())
    meta = meta or {}
    by_id = {e["id"]: e for e in task.pool + [e for t in task.tests.values() for e in t]}
    index = PoolIndex(task.pool, task.tokenize)
    sims, content_changed, new_tokens, bleus, chrfs, pairs = [], [], [], [], [], []
    copies = slot_lost = n_para = 0
    backends = {}
    for r in rows:
        ex = by_id.get(r["id"])
        backends[r.get("backend", "?")] = backends.get(r.get("backend", "?"), 0) + 1
        paras = r["paraphrases"]
        if not paras:
            continue
        sims += index.nsim(r["x"], paras)
        xt = word_tokenize(r["x"])
        content = [t for t in xt if t not in STOP]
        for p in paras:
            n_para += 1
            pairs.append((r["x"], p))
            copies += is_copy(r["x"], p)
            if ex is not None:
                slot_lost += any(v not in p for v in tasks.slot_values(task, ex))
            pt = word_tokenize(p)
            if content:
                content_changed.append(sum(t not in pt for t in content) / len(content))
            if pt:
                new_tokens.append(sum(t not in xt for t in pt) / len(pt))
            bleus.append(sacrebleu.sentence_bleu(p, [r["x"]]).score)
            chrfs.append(sacrebleu.sentence_chrf(p, [r["x"]]).score)
    with_any = sum(bool(r["paraphrases"]) for r in rows)
    mean = (lambda v: sum(v) / len(v) if v else float("nan"))
    q = quantiles(sims)
    rng = random.Random(seed)
    examples = rng.sample(pairs, min(20, len(pairs)))
    return {"task": task.name, "split": split, "path": path, "meta": meta, "rows": len(rows), "with_any": with_any,
            "paraphrases": n_para, "copies": copies, "slot_lost": slot_lost, "backends": backends,
            "nsim_q": q, "nsim_mean": mean(sims), "nsim_ge_095": sum(s >= 0.95 for s in sims),
            "hist": histogram(sims), "content_changed": mean(content_changed), "new_tokens": mean(new_tokens),
            "bleu": mean(bleus), "chrf": mean(chrfs), "examples": examples}


def render_quality(reports, argv, seconds):
    out = ["# Paraphrase quality", "",
           f"Command: `python benchmarks/paraphrase_quality.py {' '.join(argv)}` "
           f"({seconds:.1f} s wall for the report itself).", "",
           "nsim(x, x') = BM25(x, x') / BM25(x, x) over the task pool (1.0 for a copy). "
           "Content words changed = share of x's non-stop-word tokens missing from x'. "
           "New tokens = share of x' tokens not in x. BLEU / chrF = sentence scores of x' against x "
           "(100 = identical). Copies = is_copy(x, x') (equal up to casing, punctuation, spacing, "
           "contractions, 'please'); paraphrase.py never writes one.", "",
           "| task | split | file | backend | inputs | acceptance | paras/input | copies | slots lost | "
           "nsim mean | nsim q10/q50/q90 | nsim >= 0.95 | content words changed | new tokens | BLEU | chrF |",
           "|---|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in reports:
        q = r["nsim_q"]
        b = ", ".join(f"{k} {v}" for k, v in sorted(r["backends"].items()))
        slots = str(r["slot_lost"]) if r["task"] == "semparse" else "-"
        out.append(f"| {r['task']} | {r['split']} | `{os.path.basename(r['path'])}` | {b} | {r['rows']} | "
                   f"{r['with_any'] / max(1, r['rows']):.3f} | {r['paraphrases'] / max(1, r['rows']):.2f} | "
                   f"{r['copies']} | {slots} | {r['nsim_mean']:.3f} | {q[0.1]:.2f} / {q[0.5]:.2f} / {q[0.9]:.2f} | "
                   f"{r['nsim_ge_095']} | {r['content_changed']:.3f} | {r['new_tokens']:.3f} | {r['bleu']:.1f} | "
                   f"{r['chrf']:.1f} |")
    for r in reports:
        q = r["nsim_q"]
        meta = {k: v for k, v in r["meta"].items() if k not in ("sha256",)}
        out += ["", f"## {r['task']} {r['split']}: `{r['path']}`", "",
                f"Sidecar: `{json.dumps(meta, sort_keys=True)}`", "",
                "nsim quantiles: " + ", ".join(f"q{int(k * 100)} {v:.3f}" for k, v in q.items()), "",
                "nsim histogram (paraphrases per bin):", "", "```", r["hist"], "```", "",
                "20 random examples (x -> x'):", ""]
        for x, p in r["examples"]:
            out.append(f"- {x}\n  -> {p}")
    return "\n".join(out) + "\n"


def cmd_quality(args, argv):
    if not args.file:
        raise UserError("quality: give at least one --file task:split:path")
    t0 = time.monotonic()
    cache, reports = {}, []
    for spec in args.file:
        try:
            name, split, path = spec.split(":", 2)
        except ValueError:
            raise UserError(f"--file must be task:split:path, got {spec}") from None
        if not os.path.isfile(path):
            raise UserError(f"paraphrase file not found: {path}")
        if name not in cache:
            cache[name] = quality_task(name, args)
        reports.append(file_report(cache[name], split, path, args.seed))
        r = reports[-1]
        print(f"{name} {split}: {r['rows']} inputs, acceptance {r['with_any'] / max(1, r['rows']):.3f}, "
              f"nsim mean {r['nsim_mean']:.3f}, content words changed {r['content_changed']:.3f}, "
              f"copies {r['copies']}", flush=True)
    text = render_quality(reports, argv, time.monotonic() - t0)
    common.write_text_atomic(args.out, text)
    print(f"wrote {args.out}")


# ===================================================================================== model choice
def cmd_model_choice(args, argv):
    import sacrebleu
    import torch
    from contrastive_context import generation
    from contrastive_context import models
    torch.set_num_threads(args.threads)
    task = tasks.load_task("mt", data=args.mt_data, max_pool=args.max_pool or 2000)
    tests = task.tests["test"][:args.n]
    rng = random.Random(f"model-choice|{args.seed}")
    contexts = {e["id"]: rng.sample(task.pool, args.k) for e in tests}
    prompts = {"zero-shot": [task.prompt([], e["x"]) for e in tests],
               f"{args.k}-random-shot": [task.prompt(contexts[e["id"]], e["x"]) for e in tests]}
    refs = [e["y"] for e in tests]
    results, t_all = {}, time.monotonic()
    for name in args.models.split(","):
        t0 = time.monotonic()
        model, tok = models.load(name, device="cpu")
        load_s = time.monotonic() - t0
        res = {"load_s": load_s, "params_m": sum(p.numel() for p in model.parameters()) / 1e6}
        for kind, ps in ({} if args.speed_only else prompts).items():
            t0 = time.monotonic()
            outs, st = generation.generate(model, tok, ps, max_new_tokens=args.max_new_tokens, stop="\n",
                                           batch_size=args.batch_size, progress=False, return_stats=True)
            dt = time.monotonic() - t0
            chrf = sacrebleu.corpus_chrf(outs, [refs]).score
            bleu = sacrebleu.corpus_bleu(outs, [refs]).score
            empty = sum(not o.strip() for o in outs)
            copy_src = sum(is_copy(o, e["x"]) or sacrebleu.sentence_chrf(o, [e["x"]]).score > 80
                           for o, e in zip(outs, tests))
            res[kind] = {"chrf": chrf, "bleu": bleu, "empty": empty, "copied_source": copy_src, "seconds": dt,
                         "new_tokens": st["new_tokens"], "examples": list(zip([e["x"] for e in tests[:3]], outs[:3]))}
            print(f"{name} {kind}: chrF {chrf:.1f} BLEU {bleu:.1f} empty {empty} copied-source {copy_src} "
                  f"({dt:.1f} s, {st['new_tokens']} new tokens)", flush=True)
        # prefill speed: one forward pass over the few-shot prompts, batch of 8
        enc = tok(prompts[f"{args.k}-random-shot"][:8], return_tensors="pt", padding=True)
        n_tok = int(enc["attention_mask"].sum())
        with torch.inference_mode():
            model(**enc)  # warm-up
            t0, c0 = time.monotonic(), time.process_time()
            model(**enc)
            res["prefill_tok_s"] = n_tok / (time.monotonic() - t0)
            res["prefill_tok_cpu_s"] = n_tok / (time.process_time() - c0)
        # LoRA train step: forward + backward + AdamW on the same batch
        from peft import LoraConfig, get_peft_model
        lora = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                                lora_dropout=0.0, task_type="CAUSAL_LM"))
        lora.train()
        opt = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-4)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        times = []
        for _ in range(2):
            t0, c0 = time.monotonic(), time.process_time()
            loss = lora(**enc, labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            times.append((time.monotonic() - t0, time.process_time() - c0))
        res["train_tok_s"] = n_tok / times[-1][0]
        res["train_tok_cpu_s"] = n_tok / times[-1][1]
        res["batch_tokens"] = n_tok
        print(f"{name}: prefill {res['prefill_tok_s']:.0f} tok/s wall, {res['prefill_tok_cpu_s']:.0f} per CPU-s; "
              f"LoRA train step {res['train_tok_s']:.0f} tok/s wall, {res['train_tok_cpu_s']:.0f} per CPU-s "
              f"({n_tok} tokens)", flush=True)
        results[name] = res
        del model, lora, opt
    text = render_model_choice(results, args, argv, time.monotonic() - t_all)
    common.write_text_atomic(args.out, text)
    print(f"wrote {args.out}")


def render_model_choice(results, args, argv, seconds):
    kinds = [] if args.speed_only else ["zero-shot", f"{args.k}-random-shot"]
    out = ["# MT base model: SmolLM2-135M-Instruct vs Gemma-3-270M", "",
           f"Command: `python benchmarks/paraphrase_quality.py {' '.join(argv)}` ({seconds:.0f} s wall, "
           f"{args.threads} thread, shared 2-core machine under load: wall tok/s are pessimistic, "
           "tok per CPU-second is the figure to plan with).", ""]
    if kinds:
        out += [f"First {args.n} Multi30k test sentences, En->De, tasks.py MT prompt, greedy, max "
                f"{args.max_new_tokens} new tokens, stop at newline; {args.k}-shot contexts are the same seeded "
                "random pool examples for both models. chrF/BLEU: sacrebleu corpus scores. Copied source: output "
                "equal to the English source (or chrF > 80 against it).", ""]
    head = "| model | params (M) | " + "".join(f"{k} chrF | {k} BLEU | {k} empty / copied src | " for k in kinds)
    out += [head + "prefill tok/s (wall / per CPU-s) | LoRA train-step tok/s (wall / per CPU-s) |",
            "|---|---:|" + "---:|---:|---:|" * len(kinds) + "---:|---:|"]
    for name, r in results.items():
        cells = "".join(f"{r[k]['chrf']:.1f} | {r[k]['bleu']:.1f} | {r[k]['empty']} / {r[k]['copied_source']} | "
                        for k in kinds)
        cpu_p, cpu_t = r.get("prefill_tok_cpu_s"), r.get("train_tok_cpu_s")
        out.append(f"| {name} | {r['params_m']:.0f} | {cells}{r['prefill_tok_s']:.0f} / "
                   f"{cpu_p:.0f} | {r['train_tok_s']:.0f} / {cpu_t:.0f} |" if cpu_p else
                   f"| {name} | {r['params_m']:.0f} | {cells}{r['prefill_tok_s']:.0f} / - | {r['train_tok_s']:.0f} / - |")
    if kinds:
        out += ["", "Generation time (s) per setting: " + "; ".join(
            f"{n} {k} {r[k]['seconds']:.0f} s ({r[k]['new_tokens']} new tokens)" for n, r in results.items()
            for k in kinds), "", "First outputs:", ""]
        for name, r in results.items():
            for k in kinds:
                for x, o in r[k]["examples"]:
                    out.append(f"- {name} {k}: {x} -> {o!r}")
    return "\n".join(out) + "\n"


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("command", choices=("quality", "model-choice"))
    p.add_argument("--file", action="append", default=[], help="quality: task:split:path (repeatable)")
    p.add_argument("--mt-data", default=None, help="Multi30k folder (train/test.{en,de})")
    p.add_argument("--mtop-data", default=None, help="MTOP folder (dev.json/test.json)")
    p.add_argument("--max-pool", type=int, default=None, help="pool size the paraphrase files were made with")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models", default="smollm2-135m,gemma3-270m", help="model-choice: comma-separated")
    p.add_argument("--limit", dest="n", type=int, default=40, help="model-choice: the first N test sentences")
    p.add_argument("--k", type=int, default=4, help="model-choice: random shots")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--speed-only", action="store_true", help="model-choice: only the prefill / train-step speeds")
    p.add_argument("--out", required=True, help="markdown report")
    return p


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    common.print_config(args, "paraphrase_quality.py")
    if args.command == "quality":
        cmd_quality(args, argv)
    else:
        if not args.mt_data:
            raise UserError("model-choice needs --mt-data")
        cmd_model_choice(args, argv)


if __name__ == "__main__":
    common.run_main(main)
