"""melody_utils.research (notebook 06): variants trained and tested, the grid and its
summary over seeds, continuations of several primers, rhythm and objective measures."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from melody_utils.data import Normalizer, fit_time_classes, make_windows
from melody_utils.model import MelodyLSTM, ModelConfig
from melody_utils.research import (
    RUN_METRICS,
    build_variant,
    compare_settings,
    continuations,
    paired_differences,
    rhythm_summary,
    rhythm_table,
    run_grid,
    sample_continuations,
    summarise_runs,
    t_quantile_975,
    train_variant,
)
from melody_utils.train import TrainConfig

SMALL = ModelConfig(hidden_size=24, num_layers=1, embed_dim=8)
CFG = TrainConfig(
    steps=4, batch_size=16, warmup_steps=1, eval_every=4, train_eval_windows=0, eval_batch_size=256
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Small models: one torch thread."""


@pytest.fixture(scope="module")
def data(bach_splits):
    norm = Normalizer.fit(bach_splits["train"])
    return {
        "norm": norm,
        "train": make_windows(bach_splits["train"][:6], norm),
        "val": make_windows(bach_splits["val"][:1], norm),
        "test": make_windows(bach_splits["test"][:2], norm),
        "classes": fit_time_classes(bach_splits["train"][:6], norm, 8),
        "splits": bach_splits,
    }


def table(steps, durations=None, pitches=None) -> pd.DataFrame:
    steps = np.asarray(steps, dtype=np.float64)
    n = len(steps)
    start = np.cumsum(steps)
    dur = np.full(n, 0.5) if durations is None else np.asarray(durations, np.float64)
    return pd.DataFrame(
        {
            "pitch": np.arange(60, 60 + n) if pitches is None else pitches,
            "start": start,
            "end": start + dur,
            "step": steps,
            "duration": dur,
            "velocity": 80,
        }
    )


# --------------------------------------------------------------------------- variants


def test_build_variant_is_seeded_like_make_run():
    a = build_variant(SMALL, 3)
    torch.manual_seed(3)
    b = MelodyLSTM(SMALL)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    c = build_variant(SMALL, 4)
    assert not torch.equal(a.lstm.weight_ih_l0, c.lstm.weight_ih_l0)


def test_categorical_variant_needs_and_gets_its_classes(data):
    config = replace(SMALL, time_head="categorical", time_classes=8)
    with pytest.raises(ValueError, match="time_classes"):
        build_variant(config, 0)
    model = build_variant(config, 0, data["classes"])
    assert torch.equal(model.step_values, data["classes"]["step_values"].float())
    # the card's layers start from the same weights as the card's model of the same seed
    card = build_variant(SMALL, 0)
    assert torch.equal(model.embedding.weight, card.embedding.weight)
    assert torch.equal(model.lstm.weight_hh_l0, card.lstm.weight_hh_l0)


def test_train_variant_reports_test_metrics_time_and_size(data):
    run = train_variant(SMALL, data["train"], data["val"], data["test"], CFG, seed=1, name="small")
    assert (run.name, run.seed, run.steps) == ("small", 1, CFG.steps)
    assert run.parameters == sum(p.numel() for p in MelodyLSTM(SMALL).parameters())
    assert run.train_seconds > 0 and run.eval_seconds > 0
    assert not run.model.training
    row = run.row()
    assert set(RUN_METRICS) <= set(row)
    assert 0 < row["pitch_nll"] < 10 and 0 <= row["pitch_top1"] <= row["pitch_top5"] <= 1
    assert row["seconds_per_step"] == pytest.approx(run.train_seconds / CFG.steps)
    # the same seed gives the same run; test_indices restrict the evaluation
    again = train_variant(
        SMALL,
        data["train"],
        data["val"],
        data["test"],
        CFG,
        seed=1,
        test_indices=torch.arange(10),
    )
    assert again.metrics["pitch_nll"] != row["pitch_nll"]  # 10 windows, not all
    full = train_variant(SMALL, data["train"], data["val"], data["test"], CFG, seed=1)
    assert full.metrics["pitch_nll"] == pytest.approx(row["pitch_nll"], abs=1e-6)


def test_grid_runs_every_variant_with_every_seed_seed_by_seed(data):
    variants = {"a": SMALL, "gru": replace(SMALL, cell="gru")}
    runs = run_grid(variants, [0, 1], data["train"], data["val"], data["test"], CFG, progress=False)
    assert list(zip(runs["seed"], runs["variant"], strict=True)) == [
        (0, "a"),
        (0, "gru"),
        (1, "a"),
        (1, "gru"),
    ]
    assert runs.attrs["seconds"] > 0
    assert runs.loc[runs["variant"] == "gru", "parameters"].iloc[0] < runs["parameters"].iloc[0]
    summary = summarise_runs(runs)
    assert list(summary.index) == ["a", "gru"] and (summary["seeds"] == 2).all()
    with pytest.raises(ValueError):
        run_grid({}, [0], data["train"], data["val"], data["test"], CFG)


def test_summarise_runs_on_known_numbers():
    runs = pd.DataFrame(
        {
            "variant": ["x", "x", "x", "y"],
            "seed": [0, 1, 2, 0],
            "pitch_nll": [1.0, 2.0, 3.0, 5.0],
            "parameters": [10, 10, 10, 7],
            "train_seconds": [1.0, 2.0, 3.0, 4.0],
        }
    )
    s = summarise_runs(runs, metrics=["pitch_nll"], order=["y", "x"])
    assert list(s.index) == ["y", "x"]
    assert s.loc["x", "pitch_nll"] == 2.0
    assert s.loc["x", "pitch_nll_sd"] == pytest.approx(1.0)  # sample sd of 1, 2, 3
    assert (s.loc["x", "pitch_nll_min"], s.loc["x", "pitch_nll_max"]) == (1.0, 3.0)
    assert math.isnan(s.loc["y", "pitch_nll_sd"])  # one seed: no spread
    assert s.loc["x", "parameters"] == 10 and s.loc["x", "train_seconds"] == 2.0
    with pytest.raises(ValueError, match="no runs of variant"):
        summarise_runs(runs, metrics=["pitch_nll"], order=["z"])


def test_paired_differences_by_seed():
    runs = pd.DataFrame(
        {
            "variant": ["card"] * 3 + ["worse"] * 3 + ["noise"] * 3,
            "seed": [0, 1, 2] * 3,
            "pitch_nll": [2.0, 2.5, 3.0, 2.1, 2.62, 3.14, 2.1, 2.4, 3.0],
        }
    )
    d = paired_differences(runs, "card")
    assert list(d.index) == ["worse", "noise"]
    # worse: +0.10, +0.12, +0.14 against the same seeds: a clear effect, although its
    # seed range (2.1..3.14) overlaps the reference's (2.0..3.0)
    assert d.loc["worse", "mean"] == pytest.approx(0.12)
    assert d.loc["worse", "sd"] == pytest.approx(0.02)
    half = 4.303 * 0.02 / np.sqrt(3)
    assert d.loc["worse", "ci_low"] == pytest.approx(0.12 - half)
    assert d.loc["worse", "clear"] and d.loc["worse", "ci_low"] > 0
    # noise: +0.1, -0.1, 0: no effect
    assert d.loc["noise", "mean"] == pytest.approx(0.0) and not d.loc["noise", "clear"]
    assert (d.loc["noise", "min"], d.loc["noise", "max"]) == pytest.approx((-0.1, 0.1))
    with pytest.raises(ValueError, match="reference"):
        paired_differences(runs, "absent")


def test_t_quantiles_match_the_tables():
    assert t_quantile_975(1) == 12.706 and t_quantile_975(2) == 4.303
    for df, exact in ((31, 2.0395), (60, 2.0003), (120, 1.9799), (10_000, 1.9602)):
        assert t_quantile_975(df) == pytest.approx(exact, abs=1e-3)
    with pytest.raises(ValueError):
        t_quantile_975(0)


# --------------------------------------------------------------------------- generation


def test_sample_continuations_same_seed_same_music(data):
    model = build_variant(SMALL, 0).eval()
    test = data["splits"]["test"][:2]
    primers = {p.id: p.notes.iloc[:40] for p in test}
    a = sample_continuations(model, data["norm"], primers, 6, n_variations=2, seed=5)
    b = sample_continuations(model, data["norm"], primers, 6, n_variations=2, seed=5)
    assert list(a) == list(primers)
    tables = continuations(a)
    assert len(tables) == 4 and all(len(t) == 6 for t in tables)
    for x, y in zip(tables, continuations(b), strict=True):
        assert x["pitch"].tolist() == y["pitch"].tolist()
    with pytest.raises(ValueError):
        sample_continuations(model, data["norm"], {}, 6)


# --------------------------------------------------------------------------- rhythm


def test_rhythm_summary_counts_flams_and_chord_tones_pooled():
    # steps after the first: 0, 0.05 (flam), 0.5, 0 | 0.02 (flam), 0.25
    a = table([0.0, 0.0, 0.05, 0.5, 0.0])
    b = table([0.0, 0.02, 0.25])
    s = rhythm_summary([a, b])
    assert (s["tables"], s["notes"], s["steps"], s["flams"]) == (2, 8, 6, 2)
    assert s["flam_rate"] == pytest.approx(2 / 6)
    assert s["chord_share"] == pytest.approx(2 / 6)
    assert s["median_onset_step"] == pytest.approx(np.median([0.05, 0.5, 0.02, 0.25]))
    one = rhythm_summary(table([0.0]))
    assert one["steps"] == 0 and math.isnan(one["flam_rate"])


def test_rhythm_table_distance_zero_for_the_same_rhythm_and_one_for_disjoint():
    real = [table([0.0, 0.0, 0.5, 0.0, 0.5])]
    same = [table([0.0, 0.0, 0.5, 0.0, 0.5], pitches=[70, 71, 72, 73, 74])]
    flams = [table([0.0, 0.05, 0.05, 0.05, 0.05], durations=[3.0] * 5)]
    t = rhythm_table({"same": same, "flams": flams}, real)
    assert t.loc["same", "step_distance"] == 0 and t.loc["same", "duration_distance"] == 0
    assert t.loc["same", "chord_share_gap"] == 0
    assert t.loc["flams", "step_distance"] == 1 and t.loc["flams", "duration_distance"] == 1
    assert t.loc["flams", "chord_share_gap"] == pytest.approx(-50.0)
    assert t.attrs["metric"] == "tv"


def test_compare_settings_puts_means_and_distances_side_by_side(bach_splits):
    real = bach_splits["test"][:3]
    gen = {
        "copy": [p.notes.iloc[:32] for p in bach_splits["val"][:3]],
        "shifted": [p.notes.iloc[:32].assign(pitch=p.notes["pitch"].iloc[:32] + 1) for p in real],
    }
    t = compare_settings(gen, real)
    assert list(t.columns) == ["description", "real", "real_sd", "copy", "shifted"]
    assert t.attrs["length"] == 32
    assert t.loc["notes", "copy"] == 32
    for h in ("pitch_class_histogram", "step_histogram"):
        assert 0 <= t.loc[h, "copy"] <= 1 and np.isnan(t.loc[h, "real"])
    # shifting every pitch by a semitone moves the pitch classes, not the rhythm
    assert t.loc["step_histogram", "shifted"] < t.loc["pitch_class_histogram", "shifted"]
    with pytest.raises(ValueError):
        compare_settings({}, real)


def test_ablation_variants_change_one_thing_each():
    from dataclasses import asdict

    from melody_utils.research import ablation_variants

    card = ModelConfig()
    variants = ablation_variants()
    assert list(variants) == [
        "card model",
        "one-hot pitch",
        "pitch only",
        "no LayerNorm",
        "GRU",
        "TF tutorial's model",
    ]
    assert variants["card model"] == card
    for name, field_ in [
        ("one-hot pitch", "pitch_input"),
        ("pitch only", "cont_inputs"),
        ("no LayerNorm", "layer_norm"),
        ("GRU", "cell"),
    ]:
        diff = {k for k, v in asdict(variants[name]).items() if asdict(card)[k] != v}
        assert diff == {field_}, name
    # a GRU layer: 3H(I + H) + 6H parameters instead of the LSTM's 4H(I + H) + 8H
    lstm, gru = (
        sum(p.numel() for p in MelodyLSTM(variants[n]).parameters()) for n in ("card model", "GRU")
    )
    h, i = 320, 99
    assert lstm - gru == (i * h + h * h + 2 * h) + 2 * (2 * h * h + 2 * h)
    tf = variants["TF tutorial's model"]
    assert (tf.pitch_input, tf.hidden_size, tf.num_layers, tf.layer_norm) == (
        "scalar",
        128,
        1,
        False,
    )
