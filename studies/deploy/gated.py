"""The gated:TAU policy on a deployment stream, with TAU chosen on one part of the stream and scored on the rest.

    python studies/deploy/gated.py --root results/deploy/chat_ende --start empty \\
        --labels contrastive-cf1 contrastive zero base --out results/deploy/chat_gated.md

gated:TAU answers x_t with the nearest-policy context when its best neighbour in P_t has nsim >= TAU, else
under a zero prompt. P_t does not depend on the policy (it is P_0 plus the stream items whose feedback is
due), so the gated run's row for item t is the nearest run's row when best_nsim >= TAU and the same model's
zero-prompt row otherwise: this script assembles gated runs from the two folders `studies/deploy/run_mt.sh`
wrote (<model>-empty or <model>-nearest, and <model>-zeroprompt; the zero-regime model's zero-prompt folder is
--zero) instead of generating again. The assembly equals a real `deploy.py --policy gated:TAU` run up to the
generation batch's padding (tests/test_deploy.py checks it row for row on the copier).

TAU is chosen on the tuning part (stream items t < --tune-frac x T): the value on the grid {0} + every
best_nsim of the tuning items + {1.01} that maximises the mean gated score there (ties: the smallest TAU).
Every number below is on the scored part only (t >= the cut), where TAU was never chosen.

The rule, fixed before the numbers (as studies/deploy/report_mt.py): a model meets goal (1) when G1 (gated -
the same model with P_0 only, on the scored items whose best neighbour is in the high nsim bin) has a 95 % CI
above 0; goal (2) when G2 (gated on the low-bin scored items - the zero-regime model's zero-prompt score on the
same items) has a CI whose lower end is above -MARGIN. Bins: the nearest run's tertile edges. CIs: bootstrap
over stream items (paired).
"""
import argparse
import os

from contrastive_context import deployment as dp
from contrastive_context import evaluation as ev
from contrastive_context.common import UserError, print_config, run_main, write_json_atomic, write_text_atomic
from contrastive_context.stats import fmt, paired_diff

MARGIN = 2.0


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="folder holding the run_mt.sh / deploy.sh deploy folders")
    p.add_argument("--labels", nargs="+", required=True, help="model labels (folder prefixes), in table order")
    p.add_argument("--start", choices=["train", "empty"], default="train",
                   help="empty: <model>-empty (P_0 empty), P_0-only reference = the zero prompt; train: <model>-nearest, "
                        "reference <model>-p0")
    p.add_argument("--zero", default="zero-zero", help="the zero-regime model's zero-policy folder (under --root)")
    p.add_argument("--tune-frac", type=float, default=0.5, help="share of the stream (its first items) TAU is chosen "
                   "on (default 0.5)")
    p.add_argument("--margin", type=float, default=MARGIN, help=f"goal (2)'s non-inferiority margin (default {MARGIN})")
    p.add_argument("--out", required=True, help="markdown report (and OUT.json)")
    return p


def _folder(root, name):
    path = os.path.join(root, name)
    if not os.path.isfile(os.path.join(path, "summary.json")):
        return None
    return dp.read_folder(path)


def gate(near_rows, zero_rows, tau):
    """The gated:tau rows: the nearest row where its best_nsim >= tau, else the zero-prompt row of the item."""
    zero = {r["id"]: r for r in zero_rows}
    missing = [r["id"] for r in near_rows if r["id"] not in zero]
    if missing:
        raise UserError(f"the zero-prompt run lacks {len(missing)} stream item(s) of the nearest run, e.g. {missing[0]}")
    return [r if r["best_nsim"] >= tau else {**zero[r["id"]], "best_nsim": r["best_nsim"], "kind": "zero"}
            for r in near_rows]


def choose_tau(near_rows, zero_rows):
    """The tau on {0} + the rows' best_nsim values + {1.01} maximising the mean gated score (ties: smallest)."""
    grid = sorted({0.0, 1.01, *(r["best_nsim"] for r in near_rows)})
    best = None
    for tau in grid:
        rows = gate(near_rows, zero_rows, tau)
        mean = sum(r["score"] for r in rows) / len(rows)
        if best is None or mean > best[1] + 1e-12:
            best = (tau, mean)
    return best


def _diff(a_rows, b_rows, keep):
    b = {r["id"]: r for r in b_rows}
    pairs = [(r, b[r["id"]]) for r in a_rows if keep(r)]
    return paired_diff([x["score"] for x, _ in pairs], [y["score"] for _, y in pairs], [x["id"] for x, _ in pairs])


def _verdict(d, threshold):
    if d.get("ci") is None:
        return f"n/a (n {d['n']})"
    return "**yes**" if d["ci"][0] > threshold else "no"


def model_row(args, m, zrows):
    near = _folder(args.root, f"{m}-empty" if args.start == "empty" else f"{m}-nearest")
    zp = _folder(args.root, args.zero if m == args.zero.split("-")[0] else f"{m}-zeroprompt")
    ref = zp if args.start == "empty" else _folder(args.root, f"{m}-p0")
    if near is None or zp is None or ref is None:
        return None
    near_st, near_rows, near_sum = near
    T = len(near_rows)
    cut = int(round(args.tune_frac * T))
    if not 0 < cut < T:
        raise UserError(f"--tune-frac {args.tune_frac} leaves no tuning or no scored item of {T}")
    tune, scored = [r for r in near_rows if r["t"] < cut], [r for r in near_rows if r["t"] >= cut]
    tau, tune_mean = choose_tau(tune, zp[1])
    gated = gate(scored, zp[1], tau)
    edges = near_sum["bin_edges"]
    high = lambda r: ev.assign_bin(r["best_nsim"], edges) == 2  # noqa: E731
    low = lambda r: ev.assign_bin(r["best_nsim"], edges) == 0  # noqa: E731
    g1 = _diff(gated, ref[1], high)
    g2 = _diff(gated, zrows, low)
    mean = lambda rows: paired_diff([r["score"] for r in rows], [0.0] * len(rows), [r["id"] for r in rows])  # noqa: E731
    zmap = {r["id"]: r for r in zp[1]}
    return {"model": m, "tau": tau, "tune_mean": tune_mean, "cut": cut, "T": T,
            "share_nearest": sum(r["best_nsim"] >= tau for r in scored) / len(scored),
            "gated": mean(gated), "nearest": mean(scored), "zero_prompt": mean([zmap[r["id"]] for r in scored]),
            "g1": g1, "g2": g2, "goal1": _verdict(g1, 0.0) == "**yes**", "goal2": _verdict(g2, -args.margin) == "**yes**",
            "v1": _verdict(g1, 0.0), "v2": _verdict(g2, -args.margin), "metric": near_st["metric"]}


def main(argv=None):
    args = build_parser().parse_args(argv)
    print_config(args, "gated.py")
    z = _folder(args.root, args.zero)
    if z is None:
        raise UserError(f"the zero-regime folder is not finished: {os.path.join(args.root, args.zero)}")
    if z[0]["policy"] != "zero":
        raise UserError(f"{args.zero} is not a zero-policy run")
    rows, missing = [], []
    for m in args.labels:
        r = model_row(args, m, z[1])
        (rows.append(r) if r else missing.append(m))
    if not rows:
        raise UserError(f"no model of {args.labels} has its nearest, zero-prompt and reference folders in {args.root}")
    r0 = rows[0]
    lines = [f"# gated:TAU on the `{args.root.rstrip('/').split('/')[-1]}` stream ({args.start} start)", "",
             f"TAU chosen on stream items t < {r0['cut']} (of {r0['T']}); everything below on the {r0['T'] - r0['cut']} "
             f"scored items t >= {r0['cut']}. Metric {r0['metric']}; mean [95 % CI]; differences paired by item.", "",
             f"Rule (fixed before the numbers): goal (1) when G1's CI is above 0; goal (2) when G2's CI lower end is "
             f"above −{args.margin}. P_0-only reference: " + ("the same model's zero prompt." if args.start == "empty"
                                                               else "the same model with --feedback off."), "",
             "| model | TAU | nearest share | gated | nearest | zero prompt | G1: high bin (n) | G2: low bin (n) "
             "| goal (1) | goal (2) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ref = " (reference)" * (r["model"] in ("copier", "base"))
        lines.append(f"| {r['model']} | {r['tau']:.3f} | {100 * r['share_nearest']:.0f} % | {fmt(r['gated'])} "
                     f"| {fmt(r['nearest'])} | {fmt(r['zero_prompt'])} | {fmt(r['g1'])} ({r['g1']['n']}) "
                     f"| {fmt(r['g2'])} ({r['g2']['n']}) | {r['v1']}{ref} | {r['v2']}{ref} |")
    lines += ["", "Not run (compute): " + (", ".join(missing) if missing else "none") + "."]
    write_json_atomic(args.out + ".json", {"root": args.root, "start": args.start, "tune_frac": args.tune_frac,
                                           "margin": args.margin, "models": rows, "missing": missing})
    write_text_atomic(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    run_main(main)
