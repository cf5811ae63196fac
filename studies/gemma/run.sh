#!/usr/bin/env bash
# The core MT study on Gemma-3-270M (the second model family): the full-pool MT settings of
# studies/mt_fullpool/relevance_train.sh with --model gemma3-270m (29,000-pair Multi30k pool,
# 1,000 targets seen once = 500 steps at batch 2, k = 2, lr 1e-3, LoRA q,k,v r 16, 1 thread).
#
#   studies/gemma/run.sh ../shared/data/multi30k OUT [first|rest|all|pilot] [small|smoke]
#
# Each run: train, evaluate on the five context types x 200 inputs, then random+counterfactual on the
# training family and on the held-out family (340 inputs each). Order by information per minute:
#   first: contrastive, zero, base, random, contrastive-cf1
#   rest:  similar, contrastive@s1, random@s1, similar@s1, contrastive-cf1@s1
#   pilot: contrastive and base only (the smoke check: `run.sh DATA OUT pilot smoke`, ~1 min)
# The copier is model-independent: its rows are results/mt_fullpool/eval*/copier (same inputs, same contexts).
# Budget smoke = model tiny, 4 steps, 4 inputs per evaluation (the pipeline end to end in a few minutes).
# Resumable: a finished stage is skipped (final/ or summary.json exists); an interrupted training run
# resumes from its last checkpoint (train.py --resume), an evaluation from its progress file.
set -euo pipefail
data=${1:?data folder}; out=${2:?output folder}; which=${3:-all}; budget=${4:-small}
cd "$(dirname "$0")/../.."
small_model=gemma3-270m; . studies/tools/fullpool_stages.sh  # train, evaluate, run; budgets small / smoke
mkdir -p "$out"
if [ "$which" = pilot ]; then
    run contrastive
    evaluate base --model "$model"
fi
if [ "$which" = first ] || [ "$which" = all ]; then
    run contrastive
    run zero --regime zero
    evaluate base --model "$model"
    run random --regime random
    run contrastive-cf1 --counterfactual 1
fi
if [ "$which" = rest ] || [ "$which" = all ]; then
    run similar --regime similar
    run contrastive@s1 --seed 1
    run random@s1 --regime random --seed 1
    run similar@s1 --regime similar --seed 1
    run contrastive-cf1@s1 --counterfactual 1 --seed 1
fi
echo "$(date +%T) $which done"
