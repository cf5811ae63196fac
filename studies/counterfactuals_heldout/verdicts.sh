#!/usr/bin/env bash
# The relevance verdicts on the held-out counterfactual family, seeds pooled and per seed.
# From the repository root, after rejudge.sh:  bash studies/counterfactuals_heldout/verdicts.sh STUDY REF [FAMILY] [OUT]
#   STUDY = mt_fullpool | mt | semparse (reads results/STUDY/eval_cf_heldout/ and results/STUDY/eval/),
#   REF   = the label whose paired differences are reported (e.g. contrastive-cf1);
#   FAMILY = heldout (default: results/STUDY/eval_cf_heldout/) or train (results/STUDY/eval_cf/, the family
#   train.py --counterfactual uses; files get a _train suffix); OUT = the folder written (default below).
# Writes results/counterfactuals_heldout/STUDY/relevance.md (pooled) and relevance_s<N>.md (seed N alone:
# the labels of that seed, linked under their seed-0 names, with the single-seed base and copier).
set -euo pipefail
study=${1:?study}; ref=${2:?ref}; family=${3:-heldout}; out=${4:-results/counterfactuals_heldout/$study}
case $family in
    heldout) cf=results/$study/eval_cf_heldout; tag="" ;;
    train) cf=results/$study/eval_cf; tag="_train" ;;
    *) echo "error: FAMILY must be heldout or train, not '$family'" >&2; exit 2 ;;
esac
ev=results/$study/eval
mkdir -p "$out"
python studies/tools/relevance.py "$cf" --eval-root "$ev" --ref "$ref" --show 20 --out "$out/relevance$tag.md"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for s in 0 1 2; do
    suffix=$([ "$s" = 0 ] && echo "" || echo "@s$s")
    mkdir -p "$tmp/s$s/cf" "$tmp/s$s/ev"
    n=0
    for d in "$cf"/*; do
        label=$(basename "$d"); base=${label%@s*}
        if [ "$label" = "$base$suffix" ] && { [ -n "$suffix" ] || [ "$label" = "$base" ]; } && [ -d "$ev/$label" ]; then
            ln -s "$PWD/$d" "$tmp/s$s/cf/$base"; ln -s "$PWD/$ev/$label" "$tmp/s$s/ev/$base"; n=$((n + 1))
        fi
    done
    if [ -n "$suffix" ]; then  # the single-seed references join every seed
        for r in base copier; do
            [ -d "$cf/$r" ] && [ ! -e "$tmp/s$s/cf/$r" ] && ln -s "$PWD/$cf/$r" "$tmp/s$s/cf/$r" && ln -s "$PWD/$ev/$r" "$tmp/s$s/ev/$r"
        done
    fi
    [ -e "$tmp/s$s/cf/$ref" ] || { echo "seed $s: no $ref$suffix, skipped"; continue; }
    python studies/tools/relevance.py "$tmp/s$s/cf" --eval-root "$tmp/s$s/ev" --ref "$ref" --out "$out/relevance${tag}_s$s.md"
    sed -i "1s#.*#\`bash studies/counterfactuals_heldout/verdicts.sh $study $ref $family\` (seed $s alone)#" "$out/relevance${tag}_s$s.md"
done
