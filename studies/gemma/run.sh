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
task=(--task mt --data "$data")
ptrain=results/mt/paraphrases.train.jsonl; ptest=results/mt/paraphrases.test.jsonl
case $budget in
    small) model=gemma3-270m; steps=(); save=250; lim=200; lim_cf=340 ;;
    smoke) model=tiny; steps=(--max-steps 4); save=2; lim=4; lim_cf=4 ;;
    *) echo "error: budget must be small or smoke, got '$budget'" >&2; exit 2 ;;
esac
train() { # label, regime flags
    local label=$1; shift
    [ -d "$out/runs/$label/final" ] && return
    local resume=(); [ -d "$out/runs/$label" ] && resume=(--resume)
    echo "$(date +%T) train $label"
    python train.py "${task[@]}" --model "$model" --regime contrastive --targets 1000 --k 2 --epochs 1 \
        --lr 1e-3 --save-every "$save" --eval-limit 0 --paraphrases "$ptrain" --threads 1 "${steps[@]}" \
        --out "$out/runs/$label" "${resume[@]}" "$@"
}
evaluate() { # label, model flags
    local label=$1; shift
    [ -f "$out/eval/$label/summary.json" ] || { echo "$(date +%T) eval $label";
        python evaluate.py "${task[@]}" --k 2 --limit "$lim" --paraphrases "$ptest" --threads 1 \
            --context-types zero,random,similar,random+nearest,random+paraphrase --out "$out/eval/$label" "$@"; }
    [ -f "$out/eval_cf/$label/summary.json" ] || { echo "$(date +%T) eval_cf $label";
        python evaluate.py "${task[@]}" --k 2 --limit "$lim_cf" --threads 1 --context-types random+counterfactual \
            --out "$out/eval_cf/$label" "$@"; }
    [ -f "$out/eval_cf_heldout/$label/summary.json" ] || { echo "$(date +%T) eval_cf_heldout $label";
        python evaluate.py "${task[@]}" --k 2 --limit "$lim_cf" --threads 1 --context-types random+counterfactual \
            --cf-family heldout --out "$out/eval_cf_heldout/$label" "$@"; }
}
run() { # label, regime flags
    local label=$1; shift
    train "$label" "$@"
    evaluate "$label" --adapter "$out/runs/$label"
}
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
