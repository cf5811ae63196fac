#!/usr/bin/env bash
# The real-LM study (SmolLM2-135M + LoRA) on the 2-core CPU: two workers, one thread each,
# each running reproduce.py on one regime at a time (train, then evaluate), so every finished
# model has its evaluation as soon as possible. Resumable: re-running this script skips every
# complete stage (reproduce.py's .done manifests) and resumes an interrupted training run from
# its last checkpoint. Logs: OUT-logs/{worker_a,worker_b,final}.log.
#
#   studies/tools/real_lm.sh mt DATA_DIR OUT_DIR          # Multi30k En->De (DATA_DIR: train.en/train.de/test.*)
#   studies/tools/real_lm.sh semparse DATA_DIR OUT_DIR    # MTOP (DATA_DIR: dev.json/test.json)
#   studies/tools/real_lm.sh TASK DATA_DIR OUT_DIR smoke  # the driver end to end: model tiny, reproduce.py's
#                                                         # smoke budget, one regime per worker, 4 inputs
#
# Sizes (README "Cost model"): k = 2, 1,000 pool targets seen once (500 steps at batch 2),
# 200 test inputs x 5 context types, lr 1e-3, checkpoints every 250 steps.
set -euo pipefail
task=${1:?task (mt or semparse)}; data=${2:?data folder}; out=${3:?output folder}; budget=${4:-small}
cd "$(dirname "$0")/../.."
# MTOP here has dev (859) + test (1,237) only: test items after the first 400 join the pool
# 200 test inputs per context type: 189 of Multi30k's first 200 test inputs have a rule
# paraphrase, but only ~77 % of MTOP's, so MTOP evaluates 270 (~206 random+paraphrase instances)
taskargs=(--max-pool 1000); limit=200
[ "$task" = semparse ] && taskargs+=(--test-size 400) && limit=270
A="contrastive similar random+similar contrastive-rho0 zero"
B="random contrastive@s1 random@s1 similar@s1 contrastive-beta0 contrastive+zero0.1"
table="contrastive random similar random+similar zero contrastive@s1 random@s1 similar@s1 contrastive-rho0 contrastive-beta0 contrastive+zero0.1"
case $budget in
    small) sizes=(--model smollm2-135m --budget small --save-every 250 --eval-limit "$limit" --probe-limit 30) ;;
    smoke) sizes=(--model tiny --budget smoke --save-every 3 --eval-limit 4 --probe-limit 4); A=contrastive; B=random; table="$A $B" ;;
    *) echo "error: budget must be small or smoke, got '$budget'" >&2; exit 2 ;;
esac
common=(--task "$task" --data "$data" "${taskargs[@]}" "${sizes[@]}" --k 2 --epochs 1 --lr 1e-3 --threads 1 --out "$out")
# worker A starts (its first stages make the paraphrase files both workers read); worker B
# waits until those are complete
worker() {
    for r in $1; do
        python reproduce.py "${common[@]}" --regimes "$r" --skip "$2" || exit 1
    done
}
# the logs go beside OUT, not into it: reproduce.py takes only a missing, empty or its own study folder
logs=${out%/}-logs; mkdir -p "$logs"
worker "$A" probes > "$logs/worker_a.log" 2>&1 &
pa=$!
until [ -f "$out/paraphrases.train.jsonl.done" ] && [ -f "$out/paraphrases.test.jsonl.done" ]; do
    kill -0 $pa 2>/dev/null || { echo "worker A stopped early: see $logs/worker_a.log"; exit 1; }
    sleep 5
done
worker "$B" base,probes > "$logs/worker_b.log" 2>&1 &
pb=$!
wait $pa $pb
# finally: probes over every run and the full comparison table, in $table's order (all stages above are skipped)
python reproduce.py "${common[@]}" --regimes "${table// /,}" \
    > "$logs/final.log" 2>&1
# and how often each model copies a label from its context (studies/tools/context_use.py)
evals=(); labels=()
for d in "$out"/eval/*/; do
    [ -f "$d/summary.json" ] || continue
    l=$(basename "$d"); evals+=("$d"); labels+=("${l%@s*}")
done
python studies/tools/context_use.py "${evals[@]}" --labels "${labels[@]}" --task "$task" --data "$data" "${taskargs[@]}" \
    --paraphrases "$out/paraphrases.test.jsonl" --out "$out/context_use.md" >> "$logs/final.log" 2>&1
