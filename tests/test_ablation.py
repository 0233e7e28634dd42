"""melody_utils.ablation (notebook 06): the variants, one trained and tested on a tiny
budget, the grid and its summaries over seeds, paired differences against a t interval
computed here, continuations, and the rhythm and measure tables."""

from __future__ import annotations

import math
from dataclasses import asdict, replace

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from melody_utils.ablation import (
    GRID_FILE,
    RUN_METRICS,
    ablation_variants,
    compare_sets,
    continuations,
    paired_differences,
    rhythm_table,
    run_grid,
    sample_continuations,
    summarise_runs,
    train_variant,
)
from melody_utils.data import Normalizer, make_windows
from melody_utils.metrics import MEASURES, measures, reference_stats
from melody_utils.model import MelodyLSTM, ModelConfig, build_model, fit_time_classes
from melody_utils.train import TrainConfig, evaluate

SMALL = ModelConfig(hidden_size=16, num_layers=1, embed_dim=8)
RECIPE = TrainConfig(
    steps=4, batch_size=16, warmup_steps=1, eval_every=4, train_eval_windows=0, eval_batch_size=256
)
ROW_KEYS = [
    "variant", "seed", *RUN_METRICS, "parameters", "steps", "train_seconds", "seconds_per_step",
    "eval_seconds",
]  # fmt: skip


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
            "velocity": 64,
        }
    )


# --------------------------------------------------------------------------- variants


def test_ablation_variants_change_one_thing_each():
    card = ModelConfig()
    variants = ablation_variants()
    assert list(variants) == [
        "card model", "one-hot pitch", "pitch only", "no LayerNorm", "GRU", "TF tutorial's model",
    ]  # fmt: skip
    assert variants["card model"] == card
    for name, field in [
        ("one-hot pitch", "pitch_input"),
        ("pitch only", "cont_inputs"),
        ("no LayerNorm", "layer_norm"),
        ("GRU", "cell"),
    ]:
        diff = {k for k, v in asdict(variants[name]).items() if asdict(card)[k] != v}
        assert diff == {field}, name
    tf = variants["TF tutorial's model"]
    assert (tf.pitch_input, tf.hidden_size, tf.num_layers, tf.layer_norm) == (
        "scalar", 128, 1, False,
    )  # fmt: skip
    assert tf.embed_dropout == 0.0 and tf.cont_inputs and tf.cell == "lstm"
    # a GRU layer has 3H(I + H) + 6H parameters instead of the LSTM's 4H(I + H) + 8H
    lstm, gru = (
        sum(p.numel() for p in MelodyLSTM(variants[n]).parameters()) for n in ("card model", "GRU")
    )
    h, i = 320, 99
    assert lstm - gru == (i * h + h * h + 2 * h) + 2 * (2 * h * h + 2 * h)
    # the variants of another base model keep its sizes
    small = ablation_variants(SMALL)
    assert small["card model"] == SMALL and small["GRU"].hidden_size == 16


def test_train_variant_returns_its_row_and_model(data):
    row, model = train_variant(
        SMALL, data["train"], data["val"], data["test"], RECIPE, seed=1, name="small"
    )
    assert list(row) == ROW_KEYS
    assert (row["variant"], row["seed"], row["steps"]) == ("small", 1, RECIPE.steps)
    assert row["parameters"] == sum(p.numel() for p in model.parameters())
    assert 0 < row["pitch_nll"] < 10 and 0 <= row["pitch_top1"] <= row["pitch_top5"] <= 1
    assert row["seconds_per_step"] == pytest.approx(row["train_seconds"] / RECIPE.steps)
    assert isinstance(model, MelodyLSTM) and not model.training
    # the row is the trained model's test metrics, the card's way
    test = evaluate(model, data["test"])
    assert {m: row[m] for m in RUN_METRICS} == pytest.approx({m: test[m] for m in RUN_METRICS})
    # the same seed gives the same run; build_model(seed) is where it started
    again, again_model = train_variant(SMALL, data["train"], data["val"], data["test"], RECIPE, 1)
    assert again["pitch_nll"] == row["pitch_nll"] and again["variant"] == "variant"
    assert not torch.equal(build_model(SMALL, 1).lstm.weight_hh_l0, model.lstm.weight_hh_l0)
    some, _ = train_variant(
        SMALL, data["train"], data["val"], data["test"], RECIPE, 1, test_indices=torch.arange(10)
    )
    assert some["pitch_nll"] != row["pitch_nll"]  # 10 windows, not all
    categorical = replace(SMALL, time_head="categorical", time_classes=8)
    with pytest.raises(ValueError, match="time_classes"):
        train_variant(categorical, data["train"], data["val"], data["test"], RECIPE)
    row, model = train_variant(
        categorical, data["train"], data["val"], data["test"], RECIPE,
        time_classes=data["classes"],
    )  # fmt: skip
    assert model.categorical_time and np.isfinite(row["mse_step"])


def test_the_grid_runs_every_variant_with_every_seed_seed_by_seed(data):
    variants = {"a": SMALL, "gru": replace(SMALL, cell="gru")}
    runs = run_grid(
        variants, [0, 1], data["train"], data["val"], data["test"], RECIPE, progress=False
    )
    assert list(runs.columns) == ROW_KEYS
    assert list(zip(runs["seed"], runs["variant"], strict=True)) == [
        (0, "a"), (0, "gru"), (1, "a"), (1, "gru"),
    ]  # fmt: skip
    assert runs.loc[runs["variant"] == "gru", "parameters"].iloc[0] < runs["parameters"].iloc[0]
    summary = summarise_runs(runs)
    assert list(summary.index) == ["a", "gru"] and (summary["seeds"] == 2).all()
    with pytest.raises(ValueError, match="at least one"):
        run_grid({}, [0], data["train"], data["val"], data["test"], RECIPE)
    with pytest.raises(ValueError, match="at least one"):
        run_grid(variants, [], data["train"], data["val"], data["test"], RECIPE)


def test_the_committed_grid_has_the_rows_train_variant_writes():
    assert GRID_FILE is not None and GRID_FILE.is_file()
    grid = pd.read_csv(GRID_FILE)
    assert set(ROW_KEYS) <= set(grid.columns)
    assert list(dict.fromkeys(grid["variant"])) == list(ablation_variants())
    summary = summarise_runs(grid)
    assert (summary["seeds"] == grid["seed"].nunique()).all()
    table = paired_differences(grid, "card model")
    assert list(table.index) == list(ablation_variants())[1:]


# --------------------------------------------------------------------------- summaries


def test_summarise_runs_on_known_numbers():
    runs = pd.DataFrame(
        {
            "variant": ["x", "x", "x", "y"],
            "seed": [0, 1, 2, 0],
            "pitch_nll": [1.0, 2.0, 3.0, 5.0],
            "parameters": [10, 10, 10, 7],
            "train_seconds": [1.0, 2.0, 3.0, 4.0],
            "seconds_per_step": [0.1, 0.2, 0.3, 0.4],
        }
    )
    s = summarise_runs(runs, metrics=["pitch_nll"])
    assert list(s.index) == ["x", "y"]  # in the runs' order
    assert list(s.columns) == [
        "seeds", "pitch_nll", "pitch_nll_sd", "parameters", "train_seconds", "seconds_per_step",
    ]  # fmt: skip
    assert s.loc["x", "seeds"] == 3 and s.loc["x", "pitch_nll"] == 2.0
    assert s.loc["x", "pitch_nll_sd"] == pytest.approx(1.0)  # sample sd of 1, 2, 3
    assert math.isnan(s.loc["y", "pitch_nll_sd"])  # one seed: no spread
    assert s.loc["x", "parameters"] == 10 and s.loc["x", "train_seconds"] == 2.0
    assert s.loc["y", "seconds_per_step"] == 0.4


def test_paired_differences_against_a_t_interval_computed_here():
    rng = np.random.default_rng(3)
    seeds = range(5)
    card = 2.0 + rng.normal(0, 0.3, 5)  # seeds vary a lot, the effects a little
    worse = card + 0.1 + rng.normal(0, 0.01, 5)
    noise = card + rng.normal(0, 0.05, 5)
    runs = pd.DataFrame(
        {
            "variant": ["card"] * 5 + ["worse"] * 5 + ["noise"] * 5,
            "seed": [*seeds, *seeds, *seeds],
            "pitch_nll": [*card, *worse, *noise],
        }
    ).sample(frac=1, random_state=0)  # the row order must not matter: pairs are by seed
    d = paired_differences(runs, "card")
    assert set(d.index) == {"worse", "noise"} and d.index.name == "variant"
    for name, values in (("worse", worse), ("noise", noise)):
        diff = values - card
        low, high = stats.t.interval(0.95, len(diff) - 1, diff.mean(), stats.sem(diff))
        assert d.loc[name, "seeds"] == 5
        assert d.loc[name, "mean"] == pytest.approx(diff.mean())
        assert d.loc[name, "sd"] == pytest.approx(diff.std(ddof=1))
        assert (d.loc[name, "ci_low"], d.loc[name, "ci_high"]) == pytest.approx((low, high))
        assert d.loc[name, "clear"] == bool(low > 0 or high < 0)
    assert d.loc["worse", "clear"] and not d.loc["noise", "clear"]
    # unpaired, the seed-to-seed spread would hide the effect
    assert stats.ttest_ind(worse, card).pvalue > 0.05
    # a seed run by one side only is left out of its pair
    partial = pd.concat(
        [runs, pd.DataFrame({"variant": ["worse"], "seed": [9], "pitch_nll": [9.0]})]
    )
    assert paired_differences(partial, "card").loc["worse", "seeds"] == 5
    one = paired_differences(runs[runs["seed"] == 0], "card")
    assert one.loc["worse", "seeds"] == 1 and math.isnan(one.loc["worse", "ci_low"])
    with pytest.raises(ValueError, match="reference"):
        paired_differences(runs, "absent")


# --------------------------------------------------------------------------- continuations


def test_sample_continuations_same_seed_same_music(data):
    model = build_model(SMALL, 0).eval()
    test = data["splits"]["test"][:2]
    primers = {p.id: p.notes.iloc[:40] for p in test}
    a = sample_continuations(model, data["norm"], primers, 6, n_variations=2, seed=5)
    b = sample_continuations(model, data["norm"], primers, 6, n_variations=2, seed=5)
    assert list(a) == list(primers) and all(r.seed == 5 for r in a.values())
    tables = continuations(a)
    assert len(tables) == 4 and all(len(t) == 6 for t in tables)
    for x, y in zip(tables, continuations(b), strict=True):
        pd.testing.assert_frame_equal(x, y)
    greedy = sample_continuations(model, data["norm"], primers, 6, temperature=0)
    assert greedy[test[0].id].settings["temperature"] == 0
    with pytest.raises(ValueError, match="primer"):
        sample_continuations(model, data["norm"], {}, 6)


# --------------------------------------------------------------------------- rhythm and measures


def test_rhythm_table_by_hand():
    real = [table([0.0, 0.0, 0.5, 0.0, 0.5])]  # steps after the first: 0, 0.5, 0, 0.5
    same = [table([0.0, 0.0, 0.5, 0.0, 0.5], pitches=[70, 71, 72, 73, 74])]
    flams = [table([0.0, 0.05, 0.05, 0.02, 0.05], durations=[3.0] * 5), table([0.0, 0.0, 0.3])]
    t = rhythm_table({"same": same, "flams": flams}, real)
    assert list(t.index) == ["same", "flams"] and t.index.name == "set"
    assert list(t.columns) == [
        "tables", "notes", "steps", "flams", "flam_rate", "chord_share", "median_onset_step",
        "step_distance", "duration_distance", "chord_share_gap",
    ]  # fmt: skip
    assert all(dtype == np.float64 for dtype in t.dtypes)
    assert t.loc["same", "step_distance"] == 0 and t.loc["same", "duration_distance"] == 0
    assert t.loc["same", "chord_share_gap"] == 0 and t.loc["same", "chord_share"] == 0.5
    row = t.loc["flams"]  # steps pooled: 0.05, 0.05, 0.02, 0.05 | 0.0, 0.3
    assert (row["tables"], row["notes"], row["steps"], row["flams"]) == (2, 8, 6, 4)
    assert row["flam_rate"] == pytest.approx(4 / 6) and row["chord_share"] == pytest.approx(1 / 6)
    assert row["median_onset_step"] == pytest.approx(0.05)
    assert row["chord_share_gap"] == pytest.approx(100 * (1 / 6 - 0.5))
    assert 0 < row["step_distance"] <= 1 and row["duration_distance"] > 0
    js = rhythm_table({"flams": flams}, real, metric="js")
    assert js.loc["flams", "step_distance"] != row["step_distance"]


def test_compare_sets_columns_and_the_real_reference(bach_splits):
    real = bach_splits["test"][:4]
    gen = {
        "held out": [p.notes.iloc[:32] for p in bach_splits["val"][:3]],
        "shifted": [p.notes.iloc[:32].assign(pitch=p.notes["pitch"].iloc[:32] + 1) for p in real],
    }
    t = compare_sets(gen, real, 32)
    assert list(t.columns) == ["description", "real", "real_sd", "held out", "shifted"]
    hists = [
        "pitch-class histogram", "interval histogram", "top-voice interval histogram",
        "step histogram", "duration histogram",
    ]  # fmt: skip
    assert list(t.index) == [m for m in MEASURES if m != "copied_run"] + hists
    assert t.loc["pitch_range", "description"] == MEASURES["pitch_range"]
    assert t.loc["step histogram", "description"] == "tv distance from real"
    assert t.attrs["length"] == 32 and t.attrs["real_pieces"] == 4
    assert t.attrs["real_windows"] == sum(len(p) // 32 for p in real)
    # real: the mean over each piece's windows, then over pieces, as reference_stats
    ref = reference_stats(real, 32)
    for m in ("pitch_range", "chord_share", "polyphony"):
        assert t.loc[m, "real"] == pytest.approx(ref[m])
    assert t.loc["notes", "held out"] == 32
    assert t.loc["pitch_range", "held out"] == pytest.approx(
        np.mean([measures(x)["pitch_range"] for x in gen["held out"]])
    )
    assert t.loc[hists, "real"].isna().all()
    for h in hists:
        assert 0 <= t.loc[h, "held out"] <= 1
    # a semitone up moves the pitch classes, not the rhythm
    assert t.loc["step histogram", "shifted"] < t.loc["pitch-class histogram", "shifted"]
    assert t.loc["duration histogram", "shifted"] < t.loc["pitch-class histogram", "shifted"]
    with pytest.raises(ValueError, match="no real piece has"):
        compare_sets(gen, real, 10_000)
