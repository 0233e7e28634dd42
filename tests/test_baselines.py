"""melody_utils.baselines: hand-computed probabilities on toy pieces, and real chorales."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from melody_utils.baselines import (
    CONT_BASELINES,
    METRIC_COLUMNS,
    PITCH_BASELINES,
    Baselines,
    KneserNey,
    fit_baselines,
    topk_accuracy,
)
from melody_utils.data import Normalizer, Piece, Windows, make_windows
from melody_utils.notes import note_table


def make_piece(pitches: list[int], pid: str = "toy", seed: int = 0) -> Piece:
    """A piece with the given pitch order and varied, strictly increasing onsets."""
    rng = np.random.default_rng(seed)
    step = rng.choice([0.25, 0.5, 1.0], size=len(pitches))
    start = np.concatenate([[0.0], np.cumsum(step[:-1])])
    dur = rng.choice([0.25, 0.5, 0.75, 1.0], size=len(pitches))
    notes = note_table(pitches, start, start + dur, rng.integers(40, 100, size=len(pitches)))
    assert notes["pitch"].tolist() == list(pitches)  # onsets increase: order kept
    return Piece(pid, notes)


def windows_of(contexts: list[list[int]], targets: list[int]) -> Windows:
    """Windows with given input and target pitches (continuous parts zero)."""
    p = torch.tensor(contexts, dtype=torch.int64)
    n, length = p.shape
    return Windows.from_tensors(
        p, torch.zeros(n, length, 3), torch.tensor(targets, dtype=torch.int64), torch.zeros(n, 3)
    )


ALT = [60, 62] * 20  # 40 notes alternating C4, D4


@pytest.fixture(scope="module")
def alt():
    piece = make_piece(ALT)
    return fit_baselines([piece], Normalizer.fit([piece]), alpha=0.1)


def test_counts_on_an_alternating_piece(alt):
    assert alt.unigram_counts[60] == 20 and alt.unigram_counts[62] == 20
    assert alt.unigram_counts.sum() == 40
    assert alt.bigram_counts[60, 62] == 20 and alt.bigram_counts[62, 60] == 19
    assert alt.bigram_counts.sum() == 39
    assert alt.trigram_counts[60, 62, 60] == 19 and alt.trigram_counts[62, 60, 62] == 19
    assert alt.trigram_counts.sum() == 38
    assert "p_repeat=" in repr(alt) and "train_notes=40" in repr(alt)


def test_ngrams_are_counted_inside_pieces():
    a, b = make_piece([60, 62, 64] * 11, "a"), make_piece([70, 72] * 17, "b", seed=1)
    split = fit_baselines([a, b], Normalizer.fit([a, b]))
    # the last note of a (64) never precedes the first of b (70)
    assert split.bigram_counts[64, 70] == 0 and split.trigram_counts[62, 64, 70] == 0
    assert split.bigram_counts.sum() == (33 - 1) + (34 - 1)
    assert split.trigram_counts.sum() == (33 - 2) + (34 - 2)
    joined = make_piece([60, 62, 64] * 11 + [70, 72] * 17, "ab")
    one = fit_baselines([joined], Normalizer.fit([joined]))
    assert one.bigram_counts[64, 70] == 1  # what counting across pieces would have added
    np.testing.assert_array_equal(split.unigram_counts, one.unigram_counts)


def test_ngram_probabilities_by_hand(alt):
    beta = 12.8  # alpha * 128 pseudo-counts, spread by the order below
    p1 = {60: (20 + 0.1) / (40 + beta), 61: 0.1 / (40 + beta)}
    p2_60 = (19 + beta * p1[60]) / (19 + beta)  # 60 after 62
    p2_61 = (0 + beta * p1[61]) / (19 + beta)
    p3_60 = (19 + beta * p2_60) / (19 + beta)  # 60 after 60, 62
    p3_61 = (0 + beta * p2_61) / (19 + beta)
    ctx = [60, 62] * 16
    table = alt.evaluate(windows_of([ctx, ctx], [60, 61]))
    expect = {
        "unigram": -(math.log(p1[60]) + math.log(p1[61])) / 2,
        "bigram": -(math.log(p2_60) + math.log(p2_61)) / 2,
        "trigram": -(math.log(p3_60) + math.log(p3_61)) / 2,
    }
    for name, nll in expect.items():
        assert table.loc[name, "pitch_nll"] == pytest.approx(nll, rel=1e-12)
    assert table.loc["bigram", "pitch_top1"] == pytest.approx(0.5)
    assert table.loc["trigram", "pitch_top1"] == pytest.approx(0.5)


def test_unseen_contexts_fall_back_to_the_order_below(alt):
    seq = np.array([[10, 11], [60, 11], [62, 60]])  # unseen, unseen, seen
    p1, p2, p3 = (alt.pitch_distribution(n, seq) for n in ("unigram", "bigram", "trigram"))
    np.testing.assert_allclose(p2[0], p1[0])
    np.testing.assert_allclose(p3[0], p2[0])
    np.testing.assert_allclose(p3[1], p2[1])
    assert p3[2, 62] > p2[2, 62] > p1[2, 62] and p3[2, 62] > 0.5


@pytest.mark.parametrize("alpha", [0.01, 0.1, 1.0, 10.0])
def test_every_distribution_sums_to_one_and_keeps_every_pitch(alpha):
    piece = make_piece(ALT + [65, 65, 67])
    b = fit_baselines([piece], Normalizer.fit([piece]), alpha=alpha)
    rng = np.random.default_rng(1)
    seq = rng.integers(0, 128, size=(300, 32))
    seq[:100, -2:] = [60, 62]  # seen contexts too
    for name in PITCH_BASELINES:
        probs = b.pitch_distribution(name, torch.from_numpy(seq))
        assert probs.shape == (300, 128)
        assert (probs > 0).all(), name
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-12)


def test_more_smoothing_flattens_the_distribution():
    piece = make_piece(ALT)
    norm = Normalizer.fit([piece])
    seen = np.array([[60, 62]])
    tops = [
        fit_baselines([piece], norm, alpha=a).pitch_distribution("trigram", seen)[0, 60]
        for a in (0.01, 0.1, 1.0, 10.0)
    ]
    assert tops == sorted(tops, reverse=True) and tops[0] > 0.95 and tops[-1] < 0.5


def test_repeat_previous_by_hand():
    piece = make_piece([60, 60, 62] * 10)  # 29 transitions, 10 repeats
    b = fit_baselines([piece], Normalizer.fit([piece]))
    assert b.p_repeat == pytest.approx(10 / 29)
    ctx = [60, 62, 60] * 10 + [62, 60]  # ends on 60
    table = b.evaluate(windows_of([ctx, ctx], [60, 62]))
    nll = -(math.log(10 / 29) + math.log((19 / 29) / 127)) / 2
    assert table.loc["repeat previous", "pitch_nll"] == pytest.approx(nll, rel=1e-12)
    assert table.loc["repeat previous", "pitch_top1"] == pytest.approx(0.5)
    # top 5: a hit for the repeat; for the other, 4 of the 127 tied pitches fit
    assert table.loc["repeat previous", "pitch_top5"] == pytest.approx((1 + 4 / 127) / 2)


def test_p_repeat_is_clipped_away_from_0_and_1(alt):
    assert alt.p_repeat == pytest.approx(0.5 / 39)  # no repeats in 39 transitions
    same = make_piece([64] * 40)
    b = fit_baselines([same], Normalizer.fit([same]))
    assert b.p_repeat == pytest.approx(1 - 0.5 / 39)  # only repeats
    probs = b.pitch_distribution("repeat previous", np.array([[64, 65]]))
    assert probs[0, 65] == pytest.approx(1 - 0.5 / 39) and probs[0, 64] > 0
    with pytest.raises(ValueError, match="p_repeat"):
        Baselines(0.1, b.unigram_counts, b.bigram_counts, b.trigram_counts, 1.0, b.cont_mean)


def test_topk_ties_are_expected_accuracy():
    uniform = np.full((3, 128), 1 / 128)
    np.testing.assert_allclose(topk_accuracy(uniform, np.array([0, 5, 127]), 5), 5 / 128)
    probs = np.array([[0.5, 0.3, 0.2] + [0.0] * 125])
    assert topk_accuracy(probs, np.array([1]), 1)[0] == 0.0
    assert topk_accuracy(probs, np.array([1]), 2)[0] == 1.0
    tied = np.array([[0.4, 0.3, 0.3] + [0.0] * 125])
    assert topk_accuracy(tied, np.array([2]), 2)[0] == pytest.approx(0.5)


def test_training_mean_mse_is_the_variance_when_train_is_test():
    pieces = [make_piece(list(range(50, 90)), "a", 0), make_piece(list(range(60, 100)), "b", 1)]
    norm = Normalizer.fit(pieces)
    b = fit_baselines(pieces, norm)
    z = np.concatenate(
        [norm.transform(p.notes[["step", "duration", "velocity"]].to_numpy()) for p in pieces]
    )
    n = len(z)
    w = Windows.from_tensors(
        torch.full((n, 32), 60), torch.zeros(n, 32, 3), torch.full((n,), 60), torch.from_numpy(z)
    )
    row = b.evaluate(w).loc["training mean"]
    var = z.astype(np.float64).var(axis=0)
    got = row[["mse_step", "mse_duration", "mse_velocity"]].to_numpy(np.float64)
    np.testing.assert_allclose(got, var, rtol=1e-5)
    np.testing.assert_allclose(var, 1.0, rtol=1e-4)  # the normalizer scales to unit variance
    assert row[["pitch_nll", "pitch_top1", "pitch_top5"]].isna().all()


def test_evaluate_columns_nans_and_chunking(alt):
    rng = np.random.default_rng(2)
    p = torch.from_numpy(rng.integers(55, 70, size=(300, 32)))
    w = Windows.from_tensors(
        p, torch.randn(300, 32, 3), torch.from_numpy(rng.integers(55, 70, 300)), torch.randn(300, 3)
    )
    whole = alt.evaluate(w)
    assert list(whole.index) == list(Baselines.names) and whole.index.name == "baseline"
    assert list(whole.columns) == list(METRIC_COLUMNS) == [
        "pitch_nll", "pitch_top1", "pitch_top5", "mse_step", "mse_duration", "mse_velocity",
    ]  # fmt: skip
    pd.testing.assert_frame_equal(whole, alt.evaluate(w, chunk=7), rtol=1e-10)
    pitch_cols, mse_cols = list(METRIC_COLUMNS[:3]), list(METRIC_COLUMNS[3:])
    assert whole.loc[list(PITCH_BASELINES), pitch_cols].notna().all().all()
    assert whole.loc[list(CONT_BASELINES), mse_cols].notna().all().all()
    assert whole.loc["training mean", pitch_cols].isna().all()
    assert whole.loc[["unigram", "bigram", "trigram"], mse_cols].isna().all().all()
    expect = ((w.cont_seq[:, -1, :] - w.target_cont) ** 2).double().mean(dim=0).numpy()
    np.testing.assert_allclose(whole.loc["repeat previous", mse_cols].to_numpy(float), expect)


def test_bad_inputs(alt):
    piece = make_piece(ALT)
    norm = Normalizer.fit([piece])
    with pytest.raises(ValueError, match="alpha"):
        fit_baselines([piece], norm, alpha=0.0)
    with pytest.raises(ValueError, match="zero training notes"):
        fit_baselines([], norm)
    with pytest.raises(ValueError, match="zero windows"):
        alt.evaluate(make_windows([], norm))
    with pytest.raises(KeyError, match="predicts no pitch"):
        alt.pitch_distribution("training mean", np.zeros((1, 32), dtype=np.int64))
    with pytest.raises(KeyError, match="predicts no time"):
        alt.cont_prediction("trigram", np.zeros((1, 32, 3)))


def test_real_chorales_trigram_beats_unigram(bach_splits):
    train, test = bach_splits["train"][:40], bach_splits["test"][:8]
    norm = Normalizer.fit(train)
    windows = make_windows(test, norm)
    assert len(windows) > 1000
    table = fit_baselines(train, norm).evaluate(windows)
    nll = table["pitch_nll"]
    assert nll["trigram"] < nll["bigram"] < nll["unigram"] < math.log(128)
    assert table.loc["trigram", "pitch_top1"] > table.loc["unigram", "pitch_top1"]
    acc = table[["pitch_top1", "pitch_top5"]].dropna()
    assert ((acc >= 0) & (acc <= 1)).all().all()
    assert (acc["pitch_top5"] >= acc["pitch_top1"]).all()
    # the time of a chorale note is better guessed by the mean than by the previous note
    assert table.loc["training mean", "mse_duration"] < table.loc["repeat previous", "mse_duration"]


def test_kneser_ney_by_hand():
    # one piece, intervals +2 -2 +2 +2: counts {+2: 3, -2: 1}; context 0, discount 0.5
    kn = KneserNey([make_piece([60, 62, 60, 62, 64])], context=0, discount=0.5)
    p = kn.pitch_distribution([[50, 60]])[0]
    back = 0.5 * 2 / 4 / 255  # the discounted mass, spread uniformly over 255 intervals
    raw = np.full(128, back)
    raw[62], raw[58] = 2.5 / 4 + back, 0.5 / 4 + back
    np.testing.assert_allclose(p, raw / raw.sum())


@pytest.mark.parametrize("relative", [True, False])
def test_kneser_ney_distributions_sum_to_one_and_back_off(relative):
    kn = KneserNey([make_piece([60, 62, 64] * 15)], context=2, relative=relative)
    probs = kn.pitch_distribution([[60, 62, 64, 60, 62], [40, 47, 44, 45, 41]])
    np.testing.assert_allclose(probs.sum(axis=1), 1)
    assert (probs > 0).all()
    assert probs[0].argmax() == 64 and probs[0, 64] > 0.8  # the pattern, learned
    assert probs[1].max() < 0.8  # an unseen context: the lower orders, less sure


def test_kneser_ney_relative_is_transposition_invariant_and_absolute_learns_shifts():
    piece = make_piece([60, 62, 64, 65, 67, 65, 64, 62] * 6)
    rel = KneserNey([piece], context=3)
    a, b = rel.pitch_distribution([[60, 62, 64, 65], [65, 67, 69, 70]])
    np.testing.assert_allclose(a[40:100], b[45:105])
    absolute = KneserNey([piece], context=3, relative=False)
    shifted = KneserNey([piece], context=3, relative=False, shifts=range(-6, 6))
    seq = [[65, 67, 69, 70]]  # the pattern a fourth higher: unseen as written
    assert shifted.pitch_distribution(seq)[0, 72] > 0.8 > absolute.pitch_distribution(seq)[0, 72]


def test_kneser_ney_bad_arguments():
    piece = make_piece(ALT)
    for bad in ({"context": -1}, {"discount": 0}, {"discount": 1}, {"context": 1.5}):
        with pytest.raises(ValueError):
            KneserNey([piece], **bad)
    with pytest.raises(ValueError, match="fewer than two"):
        KneserNey([make_piece([60])])
    with pytest.raises(ValueError, match="zero windows"):
        empty = (torch.zeros(0, 2, dtype=torch.int64), torch.zeros(0, 2, 3))
        KneserNey([piece]).evaluate(
            Windows.from_tensors(*empty, torch.zeros(0, dtype=torch.int64), torch.zeros(0, 3))
        )


def test_real_chorales_kneser_ney_beats_the_trigram(bach_splits):
    train, test = bach_splits["train"][:80], bach_splits["test"][:8]
    norm = Normalizer.fit(train)
    windows = make_windows(test, norm)
    trigram = fit_baselines(train, norm).evaluate(windows).loc["trigram", "pitch_nll"]
    kn = KneserNey(train, context=5, relative=False, shifts=range(-6, 6)).evaluate(windows)
    assert kn["pitch_nll"] < trigram - 0.2
    assert 0 < kn["pitch_top1"] <= kn["pitch_top5"] <= 1
