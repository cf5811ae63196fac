# Sourced by the full-pool MT drivers (studies/mt_fullpool/relevance_train.sh, studies/gemma/run.sh) from the
# repository root, after they set data, out, budget (small|smoke) and small_model (the model of budget small):
# the stages every full-pool run shares. Budget smoke = model tiny, 4 steps, 4 inputs per evaluation.
#   train LABEL FLAGS...     train.py on the full 29,000-pair pool: 1,000 targets seen once (500 steps at
#                            batch 2), k = 2, lr 1e-3, LoRA q,k,v r 16, 1 thread; FLAGS pick the regime
#   evaluate LABEL FLAGS...  the five context types x 200 inputs, then random+counterfactual x 340 inputs on
#                            the training family (eval_cf/) and on the held-out family (eval_cf_heldout/)
#   run LABEL FLAGS...       train, then evaluate its adapter
# Resumable: a finished stage is skipped (final/ or summary.json exists); an interrupted training run resumes
# from its last checkpoint (train.py --resume), an evaluation from its progress file.
task=(--task mt --data "$data")
ptrain=results/mt/paraphrases.train.jsonl; ptest=results/mt/paraphrases.test.jsonl
case $budget in
    small) model=$small_model; steps=(); save=250; lim=200; lim_cf=340 ;;
    smoke) model=tiny; steps=(--max-steps 4); save=2; lim=4; lim_cf=4 ;;
    *) echo "error: budget must be small or smoke, got '$budget'" >&2; exit 2 ;;
esac
train() { # label, regime flags
    local label=$1; shift
    [ -d "$out/runs/$label/final" ] && return
    local resume=(); [ -d "$out/runs/$label" ] && resume=(--resume)
    echo "$(date +%T) train $label"
    python train.py "${task[@]}" --model "$model" --regime contrastive --targets 1000 --k 2 --epochs 1 \
        --lr 1e-3 --save-every "$save" --eval-limit 0 --paraphrases "$ptrain" --threads 1 "${steps[@]}" \
        --out "$out/runs/$label" "${resume[@]}" "$@"
}
evaluate() { # label, model flags
    local label=$1; shift
    [ -f "$out/eval/$label/summary.json" ] || { echo "$(date +%T) eval $label";
        python evaluate.py "${task[@]}" --k 2 --limit "$lim" --paraphrases "$ptest" --threads 1 \
            --context-types zero,random,similar,random+nearest,random+paraphrase --out "$out/eval/$label" "$@"; }
    [ -f "$out/eval_cf/$label/summary.json" ] || { echo "$(date +%T) eval_cf $label";
        python evaluate.py "${task[@]}" --k 2 --limit "$lim_cf" --threads 1 --context-types random+counterfactual \
            --out "$out/eval_cf/$label" "$@"; }
    [ -f "$out/eval_cf_heldout/$label/summary.json" ] || { echo "$(date +%T) eval_cf_heldout $label";
        python evaluate.py "${task[@]}" --k 2 --limit "$lim_cf" --threads 1 --context-types random+counterfactual \
            --cf-family heldout --out "$out/eval_cf_heldout/$label" "$@"; }
}
run() { # label, regime flags
    local label=$1; shift
    train "$label" "$@"
    evaluate "$label" --adapter "$out/runs/$label"
}
