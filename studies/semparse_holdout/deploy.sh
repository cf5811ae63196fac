#!/usr/bin/env bash
# MTOP held-out domains, deployed with feedback: the models run.sh trained (no item of event, music, news or
# recipes in their training, pool or contexts) answer the held-out domains' 274 test.json items in file order
# (test split "heldout"); P_0 = the training pool of the kept domains, so every relevant context can only come
# from feedback (labelled stream items join the pool after d = 32 steps, no weight update).
#
#   studies/semparse_holdout/deploy.sh ../shared/data/mtop OUT [small|smoke]     (OUT = run.sh's OUT; resumable)
#
# Folders OUT/deploy/<model>-nearest (nearest policy, feedback on) and <model>-p0 (--feedback off: P_0 only),
# zero-zero (the zero-regime model under a zero prompt: G2's reference); studies/deploy/report_mt.py reads them.
# Most informative first; a model whose run.sh training has not finished is skipped.
set -euo pipefail
data=${1:?data folder}; out=${2:?output folder}; budget=${3:-small}
cd "$(dirname "$0")/../.."
case $budget in
    small) model=smollm2-135m; lim=274 ;;
    smoke) model=tiny; lim=6 ;;
    *) echo "error: budget must be small or smoke, got '$budget'" >&2; exit 2 ;;
esac
T=(--task semparse --data "$data" --test-size 400 --max-pool 1000 --holdout-domains event,music,news,recipes
   --split heldout --k 2 --delay 32 --limit "$lim" --threads 1 --seed 0)
. studies/tools/deploy_once.sh
dep() { local name=$1; shift; deploy_once "$out/deploy/$name" "$name" "${T[@]}" "$@"; }  # name flags...
pair() { # label model-flags...: <label>-nearest and <label>-p0
    local label=$1; shift
    dep "$label-nearest" "$@" --policy nearest
    dep "$label-p0" "$@" --policy nearest --feedback off
}
trained() { [ -d "$out/runs/$1/final" ]; }
pair copier --model copier
trained zero && dep zero-zero --adapter "$out/runs/zero" --policy zero
trained contrastive && pair contrastive --adapter "$out/runs/contrastive"
trained zero && pair zero --adapter "$out/runs/zero"
trained contrastive-cf1 && pair contrastive-cf1 --adapter "$out/runs/contrastive-cf1"
pair base --model "$model"
for l in random similar contrastive+zero0.1 contrastive@s1 random@s1 similar@s1; do
    trained "$l" && pair "$l" --adapter "$out/runs/$l"
done
echo "$(date +%T) deploy done"
