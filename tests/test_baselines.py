"""Baselines: hand-computed probabilities on toy sequences, and a real Bach subset."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from melody_utils.baselines import (
    BASELINE_NAMES,
    METRIC_COLUMNS,
    PITCH_BASELINES,
    fit_baselines,
    topk_accuracy,
)
from melody_utils.data import Normalizer, Piece, Windows, make_windows, note_table


def make_piece(pitches: list[int], pid: str = "toy", seed: int = 0) -> Piece:
    """A piece with the given pitch order and varied, strictly increasing onsets."""
    rng = np.random.default_rng(seed)
    step = rng.choice([0.25, 0.5, 1.0], size=len(pitches))
    start = np.concatenate([[0.0], np.cumsum(step[:-1])])
    dur = rng.choice([0.25, 0.5, 0.75, 1.0], size=len(pitches))
    vel = rng.integers(40, 100, size=len(pitches))
    notes = note_table(pitches, start, start + dur, vel)
    assert notes["pitch"].tolist() == list(pitches)  # onsets increase: order kept
    return Piece(pid, notes)


def windows_of(contexts: list[list[int]], targets: list[int]) -> Windows:
    """Windows with given input pitches and target pitches (continuous parts zero)."""
    p = torch.tensor(contexts, dtype=torch.int64)
    n, length = p.shape
    return Windows.from_tensors(
        p, torch.zeros(n, length, 3), torch.tensor(targets, dtype=torch.int64), torch.zeros(n, 3)
    )


ALT = [60, 62] * 20  # 40 notes alternating C4, D4


@pytest.fixture(scope="module")
def alt_baselines():
    piece = make_piece(ALT)
    return fit_baselines([piece], Normalizer.fit([piece]), alpha=0.1)


def test_counts_on_alternating_sequence(alt_baselines):
    b = alt_baselines
    assert b.unigram_counts[60] == 20 and b.unigram_counts[62] == 20
    assert b.unigram_counts.sum() == 40
    assert b.bigram_counts[60, 62] == 20 and b.bigram_counts[62, 60] == 19
    assert b.bigram_counts.sum() == 39
    assert b.trigram_counts[60, 62, 60] == 19 and b.trigram_counts[62, 60, 62] == 19
    assert b.trigram_counts.sum() == 38
    assert b.p_repeat == pytest.approx(0.5 / 39)  # no repeats: clipped away from 0


def test_ngram_nll_by_hand(alt_baselines):
    # beta = alpha * 128 = 12.8 pseudo-counts, spread by the order below.
    beta = 12.8
    p1 = {60: (20 + 0.1) / (40 + beta), 61: 0.1 / (40 + beta)}
    p2_60_after_62 = (19 + beta * p1[60]) / (19 + beta)
    p2_61_after_62 = (0 + beta * p1[61]) / (19 + beta)
    p3_60_after_60_62 = (19 + beta * p2_60_after_62) / (19 + beta)
    p3_61_after_60_62 = (0 + beta * p2_61_after_62) / (19 + beta)

    ctx = [60, 62] * 16  # ends ..., 60, 62
    table = alt_baselines.evaluate(windows_of([ctx, ctx], [60, 61]))
    expect = {
        "unigram": -(math.log(p1[60]) + math.log(p1[61])) / 2,
        "bigram": -(math.log(p2_60_after_62) + math.log(p2_61_after_62)) / 2,
        "trigram": -(math.log(p3_60_after_60_62) + math.log(p3_61_after_60_62)) / 2,
    }
    for name, nll in expect.items():
        assert table.loc[name, "pitch_nll"] == pytest.approx(nll, rel=1e-12)
    # 60 is the most likely next pitch after ..., 60, 62 for bigram and trigram; 61 is not.
    assert table.loc["bigram", "pitch_top1"] == pytest.approx(0.5)
    assert table.loc["trigram", "pitch_top1"] == pytest.approx(0.5)


def test_unseen_contexts_fall_back_to_lower_order(alt_baselines):
    b = alt_baselines
    seq = np.array([[10, 11], [60, 11], [62, 60]])  # unseen, unseen, seen contexts
    p1 = b.pitch_distribution("unigram", seq)
    p2 = b.pitch_distribution("bigram", seq)
    p3 = b.pitch_distribution("trigram", seq)
    np.testing.assert_allclose(p2[0], p1[0])  # bigram context 11 never seen
    np.testing.assert_allclose(p3[0], p2[0])  # trigram context (10, 11) never seen
    np.testing.assert_allclose(p3[1], p2[1])
    assert p3[2, 62] > p2[2, 62] > p1[2, 62]  # the seen context sharpens
    assert p3[2, 62] > 0.5


def test_distributions_sum_to_one_everywhere(alt_baselines):
    rng = np.random.default_rng(1)
    seq = rng.integers(0, 128, size=(500, 32))
    seq[:100, -2:] = [60, 62]  # some seen contexts too
    for name in PITCH_BASELINES:
        probs = alt_baselines.pitch_distribution(name, torch.from_numpy(seq))
        assert probs.shape == (500, 128)
        assert (probs > 0).all(), name
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-12)


def test_repeat_previous_by_hand():
    piece = make_piece([60, 60, 62] * 10)  # 29 transitions, 10 of them repeats
    b = fit_baselines([piece], Normalizer.fit([piece]))
    assert b.p_repeat == pytest.approx(10 / 29)
    ctx = [60, 62, 60] * 10 + [62, 60]  # 32 notes ending on 60
    table = b.evaluate(windows_of([ctx, ctx], [60, 62]))
    nll = -(math.log(10 / 29) + math.log((19 / 29) / 127)) / 2
    assert table.loc["repeat previous", "pitch_nll"] == pytest.approx(nll, rel=1e-12)
    assert table.loc["repeat previous", "pitch_top1"] == pytest.approx(0.5)
    # Top 5: a hit for the repeat; for the other, 4 of the 127 tied pitches fit.
    assert table.loc["repeat previous", "pitch_top5"] == pytest.approx((1 + 4 / 127) / 2)


def test_topk_ties_are_expected_accuracy():
    uniform = np.full((3, 128), 1 / 128)
    target = np.array([0, 5, 127])
    np.testing.assert_allclose(topk_accuracy(uniform, target, 5), 5 / 128)
    probs = np.array([[0.5, 0.3, 0.2] + [0.0] * 125])
    assert topk_accuracy(probs, np.array([1]), 1)[0] == 0.0
    assert topk_accuracy(probs, np.array([1]), 2)[0] == 1.0


def test_training_mean_mse_is_the_variance_when_train_is_test():
    pieces = [
        make_piece(list(range(50, 90)), "a", seed=0),
        make_piece(list(range(60, 100)), "b", seed=1),
    ]
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
    np.testing.assert_allclose(
        row[["mse_step", "mse_duration", "mse_velocity"]].to_numpy(np.float64), var, rtol=1e-5
    )
    # The normalizer scales training features to unit variance, so the MSE is 1.
    np.testing.assert_allclose(var, 1.0, rtol=1e-4)
    assert row[["pitch_nll", "pitch_top1", "pitch_top5"]].isna().all()


def test_evaluate_shape_and_chunking(alt_baselines):
    rng = np.random.default_rng(2)
    p = torch.from_numpy(rng.integers(55, 70, size=(300, 32)))
    w = Windows.from_tensors(
        p, torch.randn(300, 32, 3), torch.from_numpy(rng.integers(55, 70, 300)), torch.randn(300, 3)
    )
    whole = alt_baselines.evaluate(w)
    pieces = alt_baselines.evaluate(w, chunk=7)
    assert list(whole.index) == list(BASELINE_NAMES)
    assert list(whole.columns) == list(METRIC_COLUMNS)
    pd.testing.assert_frame_equal(whole, pieces, rtol=1e-10)
    assert whole.loc["training mean", ["pitch_nll", "pitch_top1", "pitch_top5"]].isna().all()
    assert whole.loc[["unigram", "bigram", "trigram"], "mse_step"].isna().all()
    assert whole.loc[list(PITCH_BASELINES)].filter(like="pitch").notna().all().all()
    # "repeat previous" copies the last note's normalized values.
    expect = ((w.cont_seq[:, -1, :] - w.target_cont) ** 2).double().mean(dim=0).numpy()
    np.testing.assert_allclose(
        whole.loc["repeat previous", ["mse_step", "mse_duration", "mse_velocity"]].to_numpy(
            np.float64
        ),
        expect,
        rtol=1e-6,
    )


def test_bad_inputs(alt_baselines):
    piece = make_piece(ALT)
    with pytest.raises(ValueError, match="alpha"):
        fit_baselines([piece], Normalizer.fit([piece]), alpha=0.0)
    with pytest.raises(ValueError, match="zero training notes"):
        fit_baselines([], Normalizer.fit([piece]))
    with pytest.raises(ValueError, match="zero windows"):
        alt_baselines.evaluate(make_windows([], Normalizer.fit([piece])))
    with pytest.raises(ValueError, match="0..127"):
        alt_baselines.evaluate(windows_of([[60] * 32], [128]))
    with pytest.raises(KeyError, match="predicts no pitch"):
        alt_baselines.pitch_distribution("training mean", np.zeros((1, 32), dtype=np.int64))


@pytest.fixture(scope="module")
def bach_subset():
    from melody_utils.data import load_corpus, split_pieces

    corpus = load_corpus("bach", limit=20, progress=False)
    splits = split_pieces(corpus, seed=0)
    norm = Normalizer.fit(splits["train"])
    return splits, norm, make_windows(splits["test"], norm)


def test_bach_trigram_beats_unigram(bach_subset):
    splits, norm, test_windows = bach_subset
    assert len(test_windows.pitch_seq) > 100
    table = fit_baselines(splits["train"], norm).evaluate(test_windows)
    nll = table["pitch_nll"]
    assert nll["trigram"] < nll["unigram"]
    assert nll["bigram"] < nll["unigram"]
    assert nll["unigram"] < math.log(128)  # better than uniform over the vocabulary
    assert table.loc["trigram", "pitch_top1"] > table.loc["unigram", "pitch_top1"]
    assert (
        (
            (table[["pitch_top1", "pitch_top5"]].dropna() >= 0)
            & (table[["pitch_top1", "pitch_top5"]].dropna() <= 1)
        )
        .all()
        .all()
    )
    assert (table["pitch_top5"].dropna() >= table["pitch_top1"].dropna()).all()
