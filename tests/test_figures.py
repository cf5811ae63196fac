"""The figures: what they show and how they are labelled, read off the matplotlib objects
(figure3's by-context-type panel, probes' one colour per regime, the sweep's shared colour scales)."""
import json
import os
import shutil
from types import SimpleNamespace

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

import figure3  # noqa: E402
import probes  # noqa: E402
from contrastive_context.synthetic import report as sweep_report  # noqa: E402
from contrastive_context.common import UserError, write_jsonl_atomic  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- figure3.py
def _fake_eval(d, score, metric="chrf"):
    os.makedirs(d)
    rows = [{"id": f"test-{i}", "context_type": t, "context": [], "max_nsim": 0.0 if t == "zero" else (i % 10) / 10,
             "prediction": "", "reference": "", "score": score(t, i)}
            for i in range(30) for t in ("zero", "random", "similar")]
    with open(os.path.join(d, "predictions.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    with open(os.path.join(d, "summary.json"), "w") as f:
        json.dump({"task": "mt", "metric": metric, "model": "m", "adapter": None}, f)


def test_figure3_has_a_by_context_type_panel_beside_the_bins(tmp_path):
    _fake_eval(tmp_path / "base", lambda t, i: 40.0)
    _fake_eval(tmp_path / "c0", lambda t, i: {"zero": 10.0, "random": 30.0, "similar": 90.0}[t] + i % 3)
    _fake_eval(tmp_path / "c1", lambda t, i: {"zero": 12.0, "random": 32.0, "similar": 88.0}[t] + i % 3)
    res = figure3.compare([str(tmp_path / d) for d in ("base", "c0", "c1")], ["base", "c", "c"])
    fig = figure3.draw_compare(res)
    try:
        by_type, by_bin = fig.axes[:2]
        assert "by context type" in by_type.get_title().lower() and "bin" in by_bin.get_title().lower()
        assert [t.get_text() for t in by_type.get_xticklabels()] == ["zero", "random", "similar"]
        assert by_type.get_ylabel() == "chrF (0–100)" and by_type.get_ylim() == by_bin.get_ylim() == (0, 105)
        # one bar per (label, context type) at the label's mean, with its 95 % CI as error bars
        bars = [p for p in by_type.patches]
        assert len(bars) == 2 * 3
        heights = sorted(round(b.get_height(), 6) for b in bars)
        want = sorted(round(m["by_context_type"][t]["mean"], 6) for m in res["models"] for t in ("zero", "random",
                                                                                                  "similar"))
        assert heights == want
        from matplotlib.container import BarContainer
        bar_sets = [c for c in by_type.containers if isinstance(c, BarContainer)]
        assert len(bar_sets) == 2 and all(c.errorbar is not None for c in bar_sets)
        # the legend (outside the data) names the folders pooled per label; title and caption say what is shown
        legend = fig.legends[0]
        assert [t.get_text() for t in legend.get_texts()] == ["base ×1", "c ×2"]
        assert fig._suptitle.get_text().startswith("mt: chrF (0–100)")
        caption = fig._supxlabel.get_text()
        assert "95 % CI" in caption and "clustered by test input" in caption
    finally:
        plt.close(fig)


def test_figure3_metric_labels_carry_their_unit():
    label = lambda metric: figure3.metric_label({"models": [{"metric": metric}]})
    assert label("exact_match") == "exact match (%)" and label("chrf") == "chrF (0–100)"
    assert label("chunk_acceptance") == "chunks accepted (%)" and label("newmetric") == "newmetric (percent)"


# ----------------------------------------------------------------------------- probes.py
def _probe_rows():
    rows = []
    for run, scores in (("runs/x", (10, 50, 70)), ("runs/x@s1", (10, 30, 50)), ("runs/y", (10, 20, 30))):
        for step, s in zip((0, 250, 500), scores):
            for probe in probes.PROBES:
                rows.append({"run": run, "step": step, "probe": probe, "score": float(s), "n": 4,
                             "checkpoint": "base" if step == 0 else f"checkpoint-{step}", "adapter_sha256": "a",
                             **({"zero_fail": 50.0 - step / 10} if probe == "iwl" else {})})
    return rows


def test_probes_one_colour_per_regime_seeds_as_mean_and_band():
    rows = _probe_rows()
    labels = {"runs/x": "x", "runs/x@s1": "x@s1", "runs/y": "y"}
    assert probes.regime_of("x@s1") == probes.regime_of("x") == "x"
    fig = probes.draw_probes(rows, labels)
    try:
        panels = [ax for ax in fig.axes if ax.get_visible()]
        assert len(panels) == 4   # iwl, icl, copy, zero-prompt failures
        for ax in panels:
            lines = {line.get_label(): line for line in ax.get_lines()}
            assert set(lines) == {"x (2)", "y (1)"}             # the seeds of x share one line...
            assert to_hex(lines["x (2)"].get_color()) != to_hex(lines["y (1)"].get_color())
            assert ax.get_ylim()[0] == 0 and ax.get_ylabel()
            assert ax.get_legend() is None                      # the legend is outside the panels
            bands = ax.collections                              # ... their min-max is a band in the same colour
            assert len(bands) == 1
            assert to_hex(bands[0].get_facecolor()[0][:3]) == to_hex(lines["x (2)"].get_color())
        iwl = {line.get_label(): line for line in panels[0].get_lines()}
        assert list(iwl["x (2)"].get_ydata()) == [10, 40, 60]   # the mean over the seeds
        assert list(iwl["y (1)"].get_ydata()) == [10, 20, 30]
        assert [t.get_text() for t in fig.legends[0].get_texts()] == ["x (2)", "y (1)"]
        assert "probes" in fig._suptitle.get_text() and "min–max" in fig._supxlabel.get_text()
    finally:
        plt.close(fig)


def test_probes_plot_only_redraws_from_the_jsonl_and_leaves_it_alone(tmp_path):
    out, png = tmp_path / "probes.jsonl", tmp_path / "probes.png"
    write_jsonl_atomic(out, _probe_rows(), meta={"kind": "probes", "config": "c", "complete": True})
    before = out.read_bytes(), (tmp_path / "probes.jsonl.meta.json").read_bytes()
    probes.main(["--plot-only", "--out", str(out), "--plot", str(png)])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out.read_bytes(), (tmp_path / "probes.jsonl.meta.json").read_bytes()) == before
    with pytest.raises(UserError, match="needs --plot"):
        probes.main(["--plot-only", "--out", str(out)])
    with pytest.raises(UserError, match="same file"):
        probes.main(["--plot-only", "--out", str(out), "--plot", str(out)])
    with pytest.raises(UserError, match="--run is required"):
        probes.main(["--out", str(tmp_path / "p.jsonl")])
    out.write_text(out.read_text().replace('"score": 70.0', '"score": 71.0'))   # edited after it was written
    with pytest.raises(UserError, match="changed since"):
        probes.main(["--plot-only", "--out", str(out), "--plot", str(png)])


@pytest.mark.skipif(not os.path.isfile(os.path.join(REPO, "results", "mt", "probes.jsonl")),
                    reason="committed MT probes not present")
def test_probes_plot_only_on_the_committed_mt_probes(tmp_path):
    probes.main(["--plot-only", "--out", os.path.join(REPO, "results", "mt", "probes.jsonl"),
                 "--plot", str(tmp_path / "p.png")])
    assert (tmp_path / "p.png").stat().st_size > 10_000


# ----------------------------------------------------------------------------- sweep_report (phase diagrams)
def _sweep_args(tmp_path, alphas=(0.1, 0.3), rhos=(0.0, 1.0)):
    return SimpleNamespace(out=str(tmp_path), alpha_list=list(alphas), rho_list=list(rhos), beta=0.2, fresh_list=[0.3],
                           repeat_list=[0.0], zero_list=[0.0], gamma_list=[0.0], seeds=1, steps=10, n_eval_mid=5,
                           n_test=10, transience_cells="regimes")


def _sweep_rows(args):
    keys = ["acc_random", "iwl", "icl", "copy", "drift_copy_drifted", "drift_paraphrase_drifted",
            "drift_random_drifted", "drift_paraphrase_kept"]
    rows = []
    for i, (a, r) in enumerate((a, r) for a in args.alpha_list for r in args.rho_list):
        c = sweep_report.cell("contrastive", a, args.beta, r, 0.0, 0.0, 0.3)
        for step in (5, 10):
            rows.append(dict(c, seed=0, step=step, **{k: 98.0 + i % 3 for k in keys}))
    return rows


def _mm(args):
    return {"beta": args.beta, "steps": 1, "rows": [
        {"alpha": a, "rho": r, "mse": {"random": 0.3 - a / 10, "one_near": 0.05 + r / 100},
         "attention_random": {"context": 0.1}, "threshold": 0.7} for a in args.alpha_list for r in args.rho_list]}


def test_phase_diagram_shares_one_colour_scale_per_metric(tmp_path, monkeypatch):
    args = _sweep_args(tmp_path)
    seen = []
    real = sweep_report.heat
    monkeypatch.setattr(sweep_report, "heat", lambda ax, M, A, Rh, title, unit, lim=None, fmt="{:.2f}": (
        seen.append((title, unit, lim)), real(ax, M, A, Rh, title, unit, lim, fmt)))
    rows = _sweep_rows(args)
    name = sweep_report.phase_diagram(args, sweep_report.final_rows(rows), _mm(args), 0.3, 0.0, 0.0)
    assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    top = [s for s in seen if s[0].startswith("transformer")]
    assert len(top) == 4 and all(lim == (0.0, 100.0) and "%" in unit for _, unit, lim in top)  # 98-100 looks flat
    mse = [s for s in seen if "MSE" in s[0]]
    assert len(mse) == 2 and mse[0][2] == mse[1][2] and mse[0][2][0] == 0.0   # the MSE panels: one scale from 0
    assert all(unit for _, unit, _ in seen)                                    # every colour bar says its unit


def test_heat_colour_bar_has_the_unit_and_the_fixed_scale():
    fig, ax = plt.subplots()
    try:
        import numpy as np
        sweep_report.heat(ax, np.array([[98.0, 100.0]]), [0.3], [0.0, 1.0], "t", "% of chunks accepted",
                          (0.0, 100.0), "{:.1f}")
        im = ax.images[0]
        assert im.get_clim() == (0.0, 100.0)
        assert im.colorbar.ax.get_ylabel() == "% of chunks accepted"
        assert [t.get_text() for t in ax.texts] == ["98.0", "100.0"]
    finally:
        plt.close(fig)


def test_transience_draws_a_small_grid_beside_the_regimes(tmp_path):
    args = _sweep_args(tmp_path, alphas=(0.3,), rhos=(0.5,))
    rows = _sweep_rows(args) + [dict(r, cell="random-z0-F0.3") for r in _sweep_rows(args)]
    cells = sweep_report.transience_cells(args, rows, {"random": "random-z0-F0.3"})
    assert cells == ["random-z0-F0.3", rows[0]["cell"]]      # the contrastive grid cell is drawn too
    big = _sweep_args(tmp_path, alphas=(0.1, 0.3, 0.5, 0.7), rhos=(0.0, 0.5, 1.0))
    rows_big = _sweep_rows(big) + [dict(r, cell="random-z0-F0.3") for r in _sweep_rows(args)]
    assert sweep_report.transience_cells(big, rows_big, {"random": "random-z0-F0.3"}) == ["random-z0-F0.3"]
    sweep_report.transience(args, rows, {"random": "random-z0-F0.3"})
    assert (tmp_path / "transience.png").stat().st_size > 10_000


@pytest.mark.skipif(not os.path.isdir(os.path.join(REPO, "results", "synthetic", "calibration_b")),
                    reason="committed calibration sweep not present")
def test_replot_redraws_a_committed_sweep_without_its_runs(tmp_path):
    src = os.path.join(REPO, "results", "synthetic", "calibration_b")
    dst = tmp_path / "calibration_b"
    shutil.copytree(src, dst)
    before = {p: (dst / p).read_bytes() for p in ("sweep.jsonl", "sweep.jsonl.meta.json", "minimal_model.json",
                                                  "results.md")}
    names = sweep_report.replot(str(dst))
    assert names == ["phase_F0.6_R0.5_z0.png", "transience.png"]
    assert all((dst / n).stat().st_size > 10_000 for n in names)
    assert {p: (dst / p).read_bytes() for p in before} == before
