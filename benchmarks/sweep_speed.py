"""Speed of the from-scratch ensemble trainer (synthetic/scratch.py) against a plain per-run loop, side by side.

    python benchmarks/sweep_speed.py                       # 1 thread, the default sweep's model
    python benchmarks/sweep_speed.py --threads 2 --ensemble 16

For each configuration (--configs: width x layers x batch) it trains E = --ensemble models
(a) as ONE batched ensemble and (b) as E separate single-model ensembles stepped one after
another in a Python loop (the plain per-run loop; same maths, same data), interleaving (a) and (b)
in rounds so that machine-load changes hit both alike. Reported per run: training steps/s,
tokens/s (sequence tokens through the model), achieved GFLOP/s (3 x forward matmul FLOPs of
scratch.Ensemble.flops_per_token; attention included, embeddings not) against the measured
single-thread sgemm peak (1024^3 matmul, best of 5), and the ensemble / loop throughput ratio.
Data generation (synthetic.AlignmentData.train_batch, numpy) is timed separately.
"""
import argparse
import os
import time

import numpy as np
import torch

from contrastive_context.synthetic import scratch
from contrastive_context.synthetic import data as synthetic
from contrastive_context import tasks


def matmul_peak(n=1024, reps=5):
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_time(lambda: a @ b) for _ in range(reps))
    return 2 * n ** 3 / best / 1e9


def _time(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ensemble", type=int, default=8, help="models per ensemble (E)")
    p.add_argument("--configs", default="64x2x32,32x1x8", help="width x layers x batch, comma-separated")
    p.add_argument("--timed-steps", dest="steps", type=int, default=20, help="timed steps per round and mode")
    p.add_argument("--rounds", type=int, default=3)
    return p


def main():
    a = build_parser().parse_args()
    torch.set_num_threads(a.threads)
    load = os.getloadavg()
    print(f"threads {a.threads}, torch {torch.__version__}, load average at start {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f} ({os.cpu_count()} CPUs)")
    peak = matmul_peak()
    print(f"measured sgemm peak (1024^3, best of 5): {peak:.1f} GFLOP/s")
    task = tasks.AlignmentTask(seed=2, n_train=20000, n_test=10, n_rule_sets=20)
    data = synthetic.AlignmentData(task)
    probs = synthetic.regime_probs("contrastive")
    T = data.seq_len
    print("| width × layers × batch | mode | steps/s per run | tokens/s per run | GFLOP/s (all runs) | "
          "% of peak | ensemble / loop |")
    print("|---|---|---|---|---|---|---|")
    for cfg in a.configs.split(","):
        W, L, B = map(int, cfg.split("x"))
        E = a.ensemble
        rng = np.random.default_rng(0)
        t_gen = _time(lambda: [data.train_batch(rng, B, probs, rho=0.5, fresh=0.3) for _ in range(20)]) / 20
        batches = [torch.from_numpy(np.stack([data.train_batch(rng, B, probs, rho=0.5, fresh=0.3) for _ in range(E)]))
                   for _ in range(4)]
        ens = scratch.Ensemble(list(range(E)), L, W, max(1, W // 32), max_len=T)
        ens_opt = scratch.make_optimizer(ens, 1e-3)
        singles = [scratch.Ensemble([e], L, W, max(1, W // 32), max_len=T) for e in range(E)]
        opts = [scratch.make_optimizer(m, 1e-3) for m in singles]
        for _ in range(2):                                   # warm-up
            scratch.train_step(ens, ens_opt, batches[0], data.n_target, 1e-3)
            for e, m in enumerate(singles):
                scratch.train_step(m, opts[e], batches[0][e:e + 1], data.n_target, 1e-3)
        t_ens = t_loop = 0.0
        for _ in range(a.rounds):
            def run_ens():
                for s in range(a.steps):
                    scratch.train_step(ens, ens_opt, batches[s % 4], data.n_target, 1e-3)

            def run_loop():
                for s in range(a.steps):
                    for e, m in enumerate(singles):
                        scratch.train_step(m, opts[e], batches[s % 4][e:e + 1], data.n_target, 1e-3)
            t_ens += _time(run_ens)
            t_loop += _time(run_loop)
        n = a.steps * a.rounds
        flops_step = ens.train_flops(T, data.n_target) * B             # one model, one step (executed FLOPs)
        for mode, t in (("ensemble", t_ens), ("per-run loop", t_loop)):
            sps = n / t
            gf = flops_step * E * n / t / 1e9
            ratio = f"**{t_loop / t_ens:.2f}×**" if mode == "ensemble" else ""
            print(f"| {W} × {L} × {B} (E = {E}) | {mode} | {sps:.1f} | {sps * B * T:,.0f} | {gf:.1f} | "
                  f"{100 * gf / peak:.0f} % | {ratio} |")
        print(f"|  | data generation (numpy, per run and step) | {1 / t_gen:.0f} batches/s = {t_gen * 1e3:.1f} ms | | | | |")
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
