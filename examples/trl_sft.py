"""IC-Train with TRL's SFTTrainer on data exported by export_sft.py: train.py's tokens, loss on the answer only.

    python export_sft.py --task mt --data DIR --contexts contexts.jsonl --model PATH --out sft.jsonl
    python examples/trl_sft.py --data sft.jsonl --model PATH --out adapter/                       # 1 process
    accelerate launch --config_file configs/accelerate/fsdp.yaml examples/trl_sft.py ...        # GPUs

Needs the optional extra: pip install -r requirements-extras.txt (trl, datasets). The learning rate and
LoRA settings default to train.py's (contrastive_context.config.TrainConfig and default_lr: lr 2e-4, q,k,v,
r 16, alpha 32, dropout 0.05; linear decay, no warm-up). --model takes
what train.py --model takes (a local HF folder, smollm2-135m, tiny). The rows are mapped through
contrastive_context.sft.tokenize, so TRL trains on exactly the tokens train.py would (tests/test_sft.py);
feeding the raw prompt/completion strings instead makes TRL append an EOS token to every completion.
"""
import argparse

from contrastive_context import config, models, sft, training

TRAIN = config.TrainConfig()  # train.py's defaults: one source for the learning rate and LoRA settings


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="export_sft.py output (prompt/completion JSONL)")
    p.add_argument("--model", required=True, help="base model (as train.py --model)")
    p.add_argument("--out", required=True, help="output folder (the LoRA adapter)")
    p.add_argument("--batch-size", type=int, default=2, help="sequences per device and step (default %(default)s)")
    p.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation (default %(default)s)")
    p.add_argument("--lr", type=float, default=config.default_lr(full=False),
                   help="peak learning rate (default %(default)s, train.py's for LoRA)")
    p.add_argument("--lora-r", type=int, default=TRAIN.lora_r, help="LoRA rank (default %(default)s)")
    p.add_argument("--lora-alpha", type=float, default=TRAIN.lora_alpha,
                   help="LoRA scaling numerator (default %(default)s)")
    p.add_argument("--lora-dropout", type=float, default=TRAIN.lora_dropout, help="LoRA dropout (default %(default)s)")
    p.add_argument("--lora-targets", default=TRAIN.lora_targets, choices=tuple(training.LORA_TARGETS),
                   help="attn = q,k,v (the paper); attn+mlp = q,k,v,o + gate,up,down (default %(default)s)")
    p.add_argument("--passes", type=float, default=1, help="passes over the file (TRL's num_train_epochs; default "
                   "%(default)s; the file already holds one context per (epoch, target) of export_sft.py: 1 pass = "
                   "all its epochs)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after N optimizer steps (default: all)")
    p.add_argument("--report-to", default="none", help="none | tensorboard | wandb (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed (default %(default)s)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)

    import torch
    from datasets import load_dataset
    from trl import SFTConfig, SFTTrainer

    model, tok = models.load(args.model, device="cpu")
    raw = load_dataset("json", data_files=args.data, split="train")
    data = raw.map(lambda r: sft.tokenize(r, tok), remove_columns=raw.column_names)  # train.py's exact tokens
    cfg = SFTConfig(output_dir=args.out, per_device_train_batch_size=args.batch_size,
                    gradient_accumulation_steps=args.grad_accum, learning_rate=args.lr, lr_scheduler_type="linear",
                    warmup_steps=0, num_train_epochs=args.passes,
                    max_steps=-1 if args.max_steps is None else args.max_steps, max_grad_norm=1.0,
                    completion_only_loss=True, max_length=None, logging_steps=1, save_strategy="no",
                    report_to=[] if args.report_to == "none" else [args.report_to], seed=args.seed,
                    bf16=torch.cuda.is_available(), use_cpu=not torch.cuda.is_available())
    lora, _ = training.lora_config(model, args.lora_targets, args.lora_r, args.lora_alpha, args.lora_dropout,
                                   args.model)  # train.py's LoRA
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=data, processing_class=tok, peft_config=lora)
    trainer.train()
    trainer.save_model(args.out)
    print(f"wrote the adapter to {args.out}")


if __name__ == "__main__":
    main()
