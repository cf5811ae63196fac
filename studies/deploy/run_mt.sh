#!/usr/bin/env bash
# MT in a new domain: committed full-pool Multi30k adapters (no retraining) deployed on a chat / UI stream.
# From the repository root:  bash studies/deploy/run_mt.sh DATA_ROOT OUT [SET] [LIMIT] [small|smoke] [all|empty|train]
# (resumable: re-run after a stop). The last argument keeps one start's runs only (zero-zero, G2's reference,
# belongs to both): `empty` = <model>-empty and <model>-zeroprompt, `train` = <model>-nearest and <model>-p0.
# Two starts: P_0 = the set's train split (folders <model>-nearest / <model>-p0: with feedback / P_0 only) and
# an empty pool (<model>-empty: every context comes from feedback; its P_0-only reference is the same model
# under a zero prompt, <model>-zeroprompt). Most informative runs first.
set -euo pipefail
# Budget smoke = the first six runs (every command shape: zero prompt, nearest, P_0 only, an adapter, the copier,
# an empty pool), model tiny standing in for every LM (the driver end to end; LIMIT sets the stream length).
data=${1:?data root}; out=${2:?out}; set=${3:-chat_ende}; limit=${4:-500}; budget=${5:-small}; start=${6:-all}
case $start in all|empty|train) ;; *) echo "error: start must be all, empty or train, got '$start'" >&2; exit 2 ;; esac
T=(--task mt --data "$data/$set" --k 2 --limit "$limit" --threads 1 --seed 0)
case $budget in
    small) runs=1000; lm() { echo "--model smollm2-135m${1:+ --adapter $1}"; } ;;  # lm [ADAPTER]: the model flags
    smoke) runs=6; lm() { echo "--model tiny"; } ;;
    *) echo "error: budget must be small or smoke, got '$budget'" >&2; exit 2 ;;
esac
. studies/tools/deploy_once.sh
n=0
dep() { # name flags...
    local name=$1 of; shift
    case $name in zero-zero) of=$start ;; *-empty|*-zeroprompt) of=empty ;; *) of=train ;; esac
    [ "$start" = all ] || [ "$of" = "$start" ] || return 0
    n=$((n + 1)); [ "$n" -gt "$runs" ] && return
    deploy_once "$out/$set/$name" "$set/$name" "${T[@]}" "$@"
}
A=results/mt_fullpool/adapters
Z=$(lm results/mt/adapters/zero)
dep zero-zero $Z --policy zero
dep zero-nearest $Z --policy nearest
dep zero-p0 $Z --policy nearest --feedback off
dep contrastive-cf1-nearest $(lm $A/contrastive-cf1) --policy nearest
dep copier-empty --model copier --policy nearest --pool none
dep zero-empty $Z --policy nearest --pool none
for l in contrastive-cf1 contrastive; do
    dep $l-empty $(lm $A/$l) --policy nearest --pool none
    dep $l-zeroprompt $(lm $A/$l) --policy zero
done
dep base-empty $(lm) --policy nearest --pool none
dep base-zeroprompt $(lm) --policy zero
dep copier-nearest --model copier --policy nearest
dep copier-p0 --model copier --policy nearest --feedback off
for l in contrastive-cf1 contrastive; do
    dep $l-p0 $(lm $A/$l) --policy nearest --feedback off
done
dep contrastive-nearest $(lm $A/contrastive) --policy nearest
dep base-nearest $(lm) --policy nearest
dep base-p0 $(lm) --policy nearest --feedback off
for l in random similar; do
    dep $l-empty $(lm $A/$l) --policy nearest --pool none
    dep $l-zeroprompt $(lm $A/$l) --policy zero
done
dep source-copier-empty --model source-copier --policy zero --pool none  # x itself: the floor of an untranslated answer
dep source-copier-p0 --model source-copier --policy zero --feedback off
echo "$(date +%T) done"
