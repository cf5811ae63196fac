#!/usr/bin/env bash
# Training with counterfactuals on the committed MT setting: Contrastive with counterfactual near-duplicates in training, gamma = 1, on the
# committed Multi30k study's exact setting (1,000-example pool, k = 2, 500 steps at batch 2, lr 1e-3,
# LoRA q,k,v r 16; training seeds 0 and 1), so the committed Contrastive adapters (gamma = 0, seeds 0
# and 1) are its paired control on the very same evaluation instances.
#
#   studies/mt/gamma_mt.sh ../shared/data/multi30k 0     # seed 0 -> results/mt/{contexts,runs,eval,eval_cf}/contrastive-cf1
#   studies/mt/gamma_mt.sh ../shared/data/multi30k 1     # seed 1 -> .../contrastive-cf1@s1
#   studies/mt/gamma_mt.sh DATA SEED [OUT] [small|smoke] # OUT instead of results/mt; budget smoke = model tiny,
#                                                        # 4 steps, 4 inputs per evaluation (the driver end to end)
#
# gamma = 1: every One-Near example that is neither a paraphrase (rho = 0.5) nor of a target without an
# edit becomes a counterfactual. With 1,000 targets x 1 epoch that is still only ~170 counterfactual
# contexts (half the targets are One-Near, half of those keep their paraphrase, 62 % have an edit): the
# strongest signal this budget allows. Resumable: finished stages are skipped, training resumes from its
# last checkpoint, evaluation from its progress file.
set -euo pipefail
data=${1:?data folder}; seed=${2:?training seed}; res=${3:-results/mt}; budget=${4:-small}
cd "$(dirname "$0")/../.."
case $budget in
    small) model=smollm2-135m; steps=(); save=250; lim=200; lim_cf=340 ;;
    smoke) model=tiny; steps=(--max-steps 4); save=2; lim=4; lim_cf=4 ;;
    *) echo "error: budget must be small or smoke, got '$budget'" >&2; exit 2 ;;
esac
label=contrastive-cf1; [ "$seed" != 0 ] && label="$label@s$seed"
par=results/mt; task=(--task mt --data "$data" --max-pool 1000)  # the committed paraphrases are inputs
ctx=$res/contexts/$label.jsonl; run=$res/runs/$label
[ -f "$ctx.meta.json" ] || python sample_contexts.py "${task[@]}" --k 2 --regime contrastive --counterfactual 1 \
    --paraphrases $par/paraphrases.train.jsonl --epochs 1 --seed "$seed" --out "$ctx"
if [ ! -d "$run/final" ]; then
    resume=(); [ -d "$run" ] && resume=(--resume)
    python train.py "${task[@]}" --contexts "$ctx" --paraphrases $par/paraphrases.train.jsonl --model "$model" --epochs 1 \
        --lr 1e-3 --save-every "$save" --eval-limit 0 --seed "$seed" --threads 1 "${steps[@]}" --out "$run" "${resume[@]}"
fi
[ -f "$res/eval/$label/summary.json" ] || python evaluate.py --adapter "$run" --k 2 --limit "$lim" --threads 1 \
    --paraphrases $par/paraphrases.test.jsonl --context-types zero,random,similar,random+nearest,random+paraphrase \
    --out "$res/eval/$label"
[ -f "$res/eval_cf/$label/summary.json" ] || python evaluate.py --adapter "$run" --k 2 --limit "$lim_cf" --threads 1 \
    --context-types random+counterfactual --out "$res/eval_cf/$label"
echo "$(date +%T) $label done"
