#!/usr/bin/env bash
# Relevance vs copying: re-evaluate every committed adapter of a real-LM study, the untuned base model and the
# copier baseline on the counterfactual context type (random+counterfactual), evaluation only.
# Resumable: a label whose evaluation folder already has summary.json is skipped; an interrupted
# evaluation resumes from its progress file (evaluate.py).
#
#   studies/tools/relevance.sh mt ../shared/data/multi30k          # -> results/mt/eval_cf/<label>/
#   studies/tools/relevance.sh semparse ../shared/data/mtop        # -> results/semparse/eval_cf/<label>/
#   studies/tools/relevance.sh TASK DATA [RES] [small|smoke]       # RES instead of results/TASK (its adapters/ and
#     eval*/); the paraphrases stay results/TASK's. Budget smoke = base model tiny, 4 inputs per evaluation.
#
# Sizes: the study's own flags (k = 2, 1,000-example pool); MT evaluates the first 340 test inputs
# (204 get a counterfactual: the bilingual table covers ~62 % of Multi30k sentences), MTOP the
# first 270 (the study's inputs; 242 get one). The copier is also scored on every other context
# type of the committed evaluation (results/<task>/eval/copier), for the copier row of its tables.
set -euo pipefail
task=${1:?task (mt or semparse)}; data=${2:?data folder}; res=${3:-}; budget=${4:-small}
cd "$(dirname "$0")/../.."
par=results/$task; res=${res:-$par}
if [ "$task" = mt ]; then flags=(--task mt --data "$data" --max-pool 1000 --k 2); limit=340; study_limit=200
else flags=(--task semparse --data "$data" --max-pool 1000 --test-size 400 --k 2); limit=270; study_limit=270; fi
case $budget in
    small) model=smollm2-135m ;;
    smoke) model=tiny; limit=4; study_limit=4 ;;
    *) echo "error: budget must be small or smoke, got '$budget'" >&2; exit 2 ;;
esac
ev() { # label, then evaluate.py flags
    local label=$1; shift
    [ -f "$res/eval_cf/$label/summary.json" ] && { echo "skip $label"; return; }
    echo "$(date +%T) $label"
    python evaluate.py "${flags[@]}" --context-types random+counterfactual --limit $limit --threads 1 \
        --out "$res/eval_cf/$label" "$@"
}
[ -f "$res/eval/copier/summary.json" ] || python evaluate.py "${flags[@]}" --model copier --limit $study_limit \
    --paraphrases "$par/paraphrases.test.jsonl" --context-types zero,random,similar,random+nearest,random+paraphrase \
    --out "$res/eval/copier"
ev copier --model copier
ev base --model "$model"
for a in "$res"/adapters/*/; do  # each adapter names its own base model (cc_base.json)
    [ -d "$a" ] || continue
    a=${a%/}
    ev "$(basename "$a")" --adapter "$a"
done
echo "$(date +%T) done"
