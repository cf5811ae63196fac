#!/usr/bin/env bash
# MT in a new domain: committed full-pool Multi30k adapters (no retraining) deployed on a chat / UI stream.
# From the repository root:  bash studies/deploy/run_mt.sh DATA_ROOT OUT [SET] [LIMIT]   (resumable: re-run after a stop)
set -euo pipefail
data=${1:?data root}; out=${2:?out}; set=${3:-chat_ende}; limit=${4:-500}
T=(--task mt --data "$data/$set" --k 2 --limit "$limit" --threads 1 --seed 0)
dep() { # name flags...
    local name=$1; shift
    local dest="$out/$set/$name"
    [ -f "$dest/summary.json" ] && { echo "skip $set/$name"; return; }
    echo "$(date +%T) $set $name"
    python deploy.py "${T[@]}" --out "$dest" "$@"
}
A=results/mt_fullpool/adapters
dep zero-zero --model smollm2-135m --adapter results/mt/adapters/zero --policy zero
dep zero-nearest --model smollm2-135m --adapter results/mt/adapters/zero --policy nearest
dep zero-p0 --model smollm2-135m --adapter results/mt/adapters/zero --policy nearest --feedback off
for l in contrastive-cf1 contrastive; do
    dep $l-nearest --model smollm2-135m --adapter $A/$l --policy nearest
    dep $l-p0 --model smollm2-135m --adapter $A/$l --policy nearest --feedback off
done
dep copier-nearest --model copier --policy nearest
dep copier-p0 --model copier --policy nearest --feedback off
dep base-nearest --model smollm2-135m --policy nearest
dep base-p0 --model smollm2-135m --policy nearest --feedback off
for l in random similar contrastive-cf1@s1 contrastive@s1; do
    dep $l-nearest --model smollm2-135m --adapter $A/$l --policy nearest
    dep $l-p0 --model smollm2-135m --adapter $A/$l --policy nearest --feedback off
done
echo "$(date +%T) done"
