#!/usr/bin/env bash
# MTOP held-out domains (SPEC "Deployment with feedback"): every item of event, music, news and recipes
# leaves the training pool, its targets and every context (--holdout-domains); the models are then scored
# on the held-out domains' 274 test.json items (test split "heldout", the deployment stream) and on the
# other domains' test items. Training settings are the committed MTOP study's (studies/tools/real_lm.sh
# semparse, results/semparse): SmolLM2-135M + LoRA q,k,v r 16, k = 2, --test-size 400 --max-pool 1000
# (1,000 targets seen once = 500 steps at batch 2), lr 1e-3, checkpoints every 250 steps, 1 thread.
#
#   studies/semparse_holdout/run.sh ../shared/data/mtop OUT [worker-a|worker-b|first|all|pilot] [small|smoke]
#
# worker-a: copier, contrastive, random, similar, contrastive@s1, base
# worker-b: contrastive-cf1, contrastive+zero0.1, random@s1, similar@s1, zero
# (two 1-thread workers on the 2-core machine; "all" = both, one after the other).
# first: copier, contrastive, zero, base, contrastive-cf1 (one 1-thread worker, the runs that answer
# goals (1) and (2) first; the others then skip what it finished). pilot: copier and contrastive only
# (the smoke check: `run.sh DATA OUT pilot smoke`, then `deploy.sh DATA OUT smoke`). Each run: train, then
# evaluate on heldout (274 inputs) and on the other domains' test (first 270 of 400). The first worker to
# start makes the paraphrase files (under a lock; the other waits). Budget smoke = model tiny, 4 steps,
# 6 inputs per evaluation: checks the pipeline end to end in a few minutes.
# Resumable: a finished stage is skipped (final/ or summary.json exists); an interrupted training run
# resumes from its last checkpoint (train.py --resume), an evaluation from its progress file.
set -euo pipefail
data=${1:?data folder}; out=${2:?output folder}; which=${3:-all}; budget=${4:-small}
cd "$(dirname "$0")/../.."
HOLDOUT=event,music,news,recipes
task=(--task semparse --data "$data" --test-size 400 --max-pool 1000 --holdout-domains "$HOLDOUT")
case $budget in
    small) model=smollm2-135m; steps=(); save=250; lim_in=270; lim_ho=274 ;;
    smoke) model=tiny; steps=(--max-steps 4); save=2; lim_in=6; lim_ho=6 ;;
    *) echo "error: budget must be small or smoke, got '$budget'" >&2; exit 2 ;;
esac
ptrain=$out/paraphrases.train.jsonl; ptest=$out/paraphrases.test.jsonl
mkdir -p "$out"
# paraphrases of the reduced pool (for rho) and of the test inputs (both test splits), the seeds reproduce.py uses
( flock 9
  [ -f "$ptrain" ] || python paraphrase.py "${task[@]}" --split train --backend auto --n 3 --seed 0 --out "$ptrain"
  [ -f "$ptest" ] || python paraphrase.py "${task[@]}" --split test --backend auto --n 1 --seed 1000 --out "$ptest"
) 9> "$out/.paraphrases.lock"
train() { # label, regime flags
    local label=$1; shift
    [ -d "$out/runs/$label/final" ] && return
    local resume=(); [ -d "$out/runs/$label" ] && resume=(--resume)
    echo "$(date +%T) train $label"
    python train.py "${task[@]}" --model "$model" --regime contrastive --alpha 0.3 --beta 0.2 --rho 0.5 --k 2 \
        --epochs 1 --batch-size 2 --lr 1e-3 --save-every "$save" --eval-limit 0 --paraphrases "$ptrain" --threads 1 \
        "${steps[@]}" --out "$out/runs/$label" "${resume[@]}" "$@"
}
evaluate() { # label, model flags
    local label=$1; shift
    [ -f "$out/eval_heldout/$label/summary.json" ] || { echo "$(date +%T) eval heldout $label";
        python evaluate.py "${task[@]}" --split heldout --k 2 --limit "$lim_ho" --paraphrases "$ptest" --threads 1 \
            --context-types zero,random,similar,random+paraphrase --out "$out/eval_heldout/$label" "$@"; }
    [ -f "$out/eval_in/$label/summary.json" ] || { echo "$(date +%T) eval in-domain $label";
        python evaluate.py "${task[@]}" --split test --k 2 --limit "$lim_in" --paraphrases "$ptest" --threads 1 \
            --context-types zero,random,similar --out "$out/eval_in/$label" "$@"; }
}
run() { # label, regime flags
    local label=$1; shift
    train "$label" "$@"
    evaluate "$label" --adapter "$out/runs/$label"
}
if [ "$which" = pilot ]; then
    evaluate copier --model copier
    run contrastive
fi
if [ "$which" = first ]; then
    evaluate copier --model copier
    run contrastive
    run zero --regime zero
    evaluate base --model "$model"
    run contrastive-cf1 --counterfactual 1
fi
if [ "$which" = worker-a ] || [ "$which" = all ]; then
    evaluate copier --model copier
    run contrastive
    run random --regime random
    run similar --regime similar
    run contrastive@s1 --seed 1
    evaluate base --model "$model"
fi
if [ "$which" = worker-b ] || [ "$which" = all ]; then
    run contrastive-cf1 --counterfactual 1
    run contrastive+zero0.1 --zero-frac 0.1
    run random@s1 --regime random --seed 1
    run similar@s1 --regime similar --seed 1
    run zero --regime zero
fi
echo "$(date +%T) $which done"
