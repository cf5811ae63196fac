#!/usr/bin/env bash
# The full-pool MT study: does training with counterfactual near-duplicates (--counterfactual gamma)
# teach SmolLM2-135M + LoRA to check relevance before it copies? MT (Multi30k En->De) with the FULL
# 29,000-pair pool for contexts and evaluation neighbours, 1,000 training targets (--targets 1000),
# otherwise the committed study's settings (k = 2, 500 steps at batch 2, lr 1e-3, LoRA q,k,v r 16).
#
#   studies/mt_fullpool/relevance_train.sh ../shared/data/multi30k OUT [worker-a|worker-b|all|worker-c|worker-d|worker-e] [small|smoke]
#
# Runs, in the order the two 1-thread workers take them (each: train, evaluate on the five context
# types x 200 inputs, evaluate on random+counterfactual x 340 inputs = ~204 instances, and on the held-out
# counterfactual family's random+counterfactual x 340 inputs = ~242 instances):
#   worker-a: copier, contrastive (gamma 0), random, contrastive@s1, base
#   worker-b: contrastive-cf1 (gamma 1), similar, contrastive-cf1@s1
#   worker-c: the third seeds, contrastive@s2 and contrastive-cf1@s2 (not part of "all")
#   worker-d / worker-e: contrastive-cf1-both at seed 0 / 1 -- gamma 1 with counterfactuals from both families
#     (--cf-train-family train+heldout-noun: the held-out family's noun swaps too), judged on the held-out
#     family's verbs and prepositions, edit kinds it never trained on (results/counterfactuals_heldout/)
# Budget smoke = model tiny, 4 steps, 4 inputs per evaluation (`... worker-d smoke`: the driver end to end).
# gamma = 1: every One-Near example that is neither a paraphrase (rho = 0.5) nor lacks a
# counterfactual becomes one; at 1,000 targets x 1 epoch that is still only ~150 counterfactual
# contexts (half the targets are One-Near, half of those keep their paraphrase, 62 % have an edit).
# Cost (README "Cost model", 1 thread): ~28 min training + ~28 min evaluation per run.
# Resumable: a finished stage is skipped (its summary.json / final/ exists); an interrupted training
# run resumes from its last checkpoint (train.py --resume), an evaluation from its progress file.
set -euo pipefail
data=${1:?data folder}; out=${2:?output folder}; which=${3:-all}; budget=${4:-small}
cd "$(dirname "$0")/../.."
small_model=smollm2-135m; . studies/tools/fullpool_stages.sh  # train, evaluate, run; budgets small / smoke
mkdir -p "$out"
if [ "$which" = worker-a ] || [ "$which" = all ]; then
    evaluate copier --model copier
    run contrastive
    run random --regime random
    run contrastive@s1 --seed 1
    evaluate base --model "$model"
fi
if [ "$which" = worker-b ] || [ "$which" = all ]; then
    run contrastive-cf1 --counterfactual 1
    run similar --regime similar
    run contrastive-cf1@s1 --counterfactual 1 --seed 1
fi
if [ "$which" = worker-c ]; then
    run contrastive@s2 --seed 2
    run contrastive-cf1@s2 --counterfactual 1 --seed 2
fi
if [ "$which" = worker-d ]; then
    run contrastive-cf1-both --counterfactual 1 --cf-train-family train+heldout-noun
fi
if [ "$which" = worker-e ]; then
    run contrastive-cf1-both@s1 --counterfactual 1 --cf-train-family train+heldout-noun --seed 1
fi
echo "$(date +%T) $which done"
