#!/usr/bin/env bash
# Re-judge committed adapters on the held-out counterfactual family (evaluation only), resumable.
# From the repository root:  bash studies/counterfactuals_heldout/rejudge.sh DATA_ROOT OUT [small|smoke]
#   (OUT = results to write beside the committed eval_cf/). Budget smoke = every command shape once: model tiny
#   standing in for the base model and each adapter, the first label of each list, 4 inputs per evaluation.
set -euo pipefail
data=${1:?data root}; out=${2:?out}; budget=${3:-small}
case $budget in
    small) lim_mt=340; lim_sp=270; adapter() { echo "--model smollm2-135m --adapter results/$1/adapters/$2"; }; base=smollm2-135m
           labels() { echo "$@"; } ;;
    smoke) lim_mt=4; lim_sp=4; adapter() { echo "--model tiny"; }; base=tiny; labels() { echo "$1"; } ;;
    *) echo "error: budget must be small or smoke, got '$budget'" >&2; exit 2 ;;
esac
ev() { # study label flags...
    local study=$1 label=$2; shift 2
    local dest="$out/$study/eval_cf_heldout/$label"
    [ -f "$dest/summary.json" ] && { echo "skip $study/$label"; return; }
    echo "$(date +%T) $study $label"
    python evaluate.py --context-types random+counterfactual --cf-family heldout --threads 1 --out "$dest" "$@"
}
FP=(--task mt --data "$data/multi30k" --k 2 --limit $lim_mt)
MT=(--task mt --data "$data/multi30k" --max-pool 1000 --k 2 --limit $lim_mt)
SP=(--task semparse --data "$data/mtop" --max-pool 1000 --test-size 400 --k 2 --limit $lim_sp)
for l in $(labels contrastive-cf1 contrastive-cf1@s1 contrastive-cf1@s2 contrastive contrastive@s1 contrastive@s2); do
    ev mt_fullpool $l "${FP[@]}" $(adapter mt_fullpool $l); done
ev mt_fullpool copier "${FP[@]}" --model copier
ev mt_fullpool base "${FP[@]}" --model "$base"
for l in $(labels random similar); do ev mt_fullpool $l "${FP[@]}" $(adapter mt_fullpool $l); done
for l in $(labels contrastive-cf1 contrastive-cf1@s1 contrastive contrastive@s1); do ev mt $l "${MT[@]}" $(adapter mt $l); done
ev mt copier "${MT[@]}" --model copier
ev mt base "${MT[@]}" --model "$base"
ev semparse copier "${SP[@]}" --model copier
ev semparse base "${SP[@]}" --model "$base"
for l in $(labels contrastive contrastive@s1 random random@s1 similar similar@s1 zero); do ev semparse $l "${SP[@]}" $(adapter semparse $l); done
for l in $(labels random random@s1 similar similar@s1 zero contrastive+zero0.1 contrastive-beta0 contrastive-rho0 random+similar); do
    ev mt $l "${MT[@]}" $(adapter mt $l); done
for l in $(labels contrastive+zero0.1 contrastive-beta0 contrastive-rho0 random+similar); do ev semparse $l "${SP[@]}" $(adapter semparse $l); done
echo "$(date +%T) done"
