#!/usr/bin/env bash
# MT in a new domain: committed full-pool Multi30k adapters (no retraining) deployed on a chat / UI stream.
# From the repository root:  bash studies/deploy/run_mt.sh DATA_ROOT OUT [SET] [LIMIT]   (resumable: re-run after a stop)
# Two starts: P_0 = the set's train split (folders <model>-nearest / <model>-p0: with feedback / P_0 only) and
# an empty pool (<model>-empty: every context comes from feedback; its P_0-only reference is the same model
# under a zero prompt, <model>-zeroprompt). Most informative runs first.
set -euo pipefail
data=${1:?data root}; out=${2:?out}; set=${3:-chat_ende}; limit=${4:-500}
T=(--task mt --data "$data/$set" --k 2 --limit "$limit" --threads 1 --seed 0)
. studies/tools/deploy_once.sh
dep() { local name=$1; shift; deploy_once "$out/$set/$name" "$set/$name" "${T[@]}" "$@"; }  # name flags...
A=results/mt_fullpool/adapters
Z=(--model smollm2-135m --adapter results/mt/adapters/zero)
dep zero-zero "${Z[@]}" --policy zero
dep zero-nearest "${Z[@]}" --policy nearest
dep zero-p0 "${Z[@]}" --policy nearest --feedback off
dep contrastive-cf1-nearest --model smollm2-135m --adapter $A/contrastive-cf1 --policy nearest
dep copier-empty --model copier --policy nearest --pool none
dep zero-empty "${Z[@]}" --policy nearest --pool none
for l in contrastive-cf1 contrastive; do
    dep $l-empty --model smollm2-135m --adapter $A/$l --policy nearest --pool none
    dep $l-zeroprompt --model smollm2-135m --adapter $A/$l --policy zero
done
dep base-empty --model smollm2-135m --policy nearest --pool none
dep base-zeroprompt --model smollm2-135m --policy zero
dep copier-nearest --model copier --policy nearest
dep copier-p0 --model copier --policy nearest --feedback off
for l in contrastive-cf1 contrastive; do
    dep $l-p0 --model smollm2-135m --adapter $A/$l --policy nearest --feedback off
done
dep contrastive-nearest --model smollm2-135m --adapter $A/contrastive --policy nearest
dep base-nearest --model smollm2-135m --policy nearest
dep base-p0 --model smollm2-135m --policy nearest --feedback off
for l in random similar; do
    dep $l-empty --model smollm2-135m --adapter $A/$l --policy nearest --pool none
    dep $l-zeroprompt --model smollm2-135m --adapter $A/$l --policy zero
done
echo "$(date +%T) done"
