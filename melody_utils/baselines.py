"""Simple baselines the model must beat (introduced in notebook 03).

A next-note model is only interesting if it beats what counting can do. This module
fits, on the **training pieces only**:

* ``"unigram"``, ``"bigram"``, ``"trigram"``: pitch Markov models over the 128 MIDI
  pitches, predicting the target from the last 0, 1 or 2 pitches of the window;
* ``"repeat previous"``: the next note is a copy of the last one (its pitch, and its
  normalized step, duration and velocity);
* ``"training mean"``: the next note's normalized ``[step, duration, velocity]`` is the
  training mean (no pitch prediction).

:meth:`Baselines.evaluate` scores them on :class:`~melody_utils.data.Windows` with the
same metrics the training code reports for the model, so the two tables line up.

Smoothing of the n-gram models
------------------------------
Every order is *interpolated* with the order below it through additive pseudo-counts
(hierarchical Dirichlet smoothing, MacKay & Peto 1995)::

    P0(w)        = 1 / 128                                    (uniform)
    P1(w)        = (c(w)     + beta * P0(w))   / (c(.)     + beta)
    P2(w | u)    = (c(u w)   + beta * P1(w))   / (c(u .)   + beta)
    P3(w | t u)  = (c(t u w) + beta * P2(w|u)) / (c(t u .) + beta)

with ``beta = alpha * 128``: ``alpha`` pseudo-counts per pitch, spread according to
the lower order rather than uniformly. The unigram is therefore exactly Lidstone
(add-``alpha``) smoothing; a bigram context never seen in training falls back to the
unigram, an unseen trigram context to the bigram, and a frequent context is dominated
by its own counts. Each ``P_k`` is a proper distribution over all 128 pitches (sums to
1, never 0). n-grams are counted inside pieces only, in note-table order (sorted by
start, then pitch), exactly the order the windows see.

Ties in top-k accuracy
----------------------
Top-k accuracy is the *expected* accuracy under random tie-breaking: if ``g`` pitches
have a strictly higher probability than the target and ``e`` (target included) have
the same, it is ``clip((k - g) / e, 0, 1)``. This matters for ``"repeat previous"``,
whose 127 other pitches are tied: its top-5 accuracy is ``1`` when the target repeats
the last pitch and ``4/127`` otherwise, instead of depending on an arbitrary sort order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from .config import CONT_FEATURES, N_PITCHES
from .data import Normalizer, Piece, Windows
from .notes import check_pitch_range

VOCAB = N_PITCHES
#: Baselines that predict the pitch (a distribution over the 128 pitches).
PITCH_BASELINES = ("unigram", "bigram", "trigram", "repeat previous")
#: Baselines that predict the normalized ``[step, duration, velocity]``.
CONT_BASELINES = ("repeat previous", "training mean")
BASELINE_NAMES = ("unigram", "bigram", "trigram", "repeat previous", "training mean")
METRIC_COLUMNS = (
    "pitch_nll",
    "pitch_top1",
    "pitch_top5",
    "mse_step",
    "mse_duration",
    "mse_velocity",
)


def _as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _check_pitches(a: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{what} must hold integer MIDI pitches, got dtype {a.dtype}")
    check_pitch_range(a, f"{what} values")
    return a.astype(np.int64, copy=False)


def topk_accuracy(probs: np.ndarray, target: np.ndarray, k: int) -> np.ndarray:
    """Per-row top-``k`` hit of ``target`` under ``probs (N, V)``, ties broken at random.

    Returns the expected hit (a float in 0..1 per row): 1 when fewer than ``k`` pitches
    beat the target and its ties all fit, a fraction when the ties straddle rank ``k``.
    """
    p_t = np.take_along_axis(probs, target[:, None], axis=1)
    greater = (probs > p_t).sum(axis=1)
    equal = (probs == p_t).sum(axis=1)  # includes the target itself
    return np.clip((k - greater) / equal, 0.0, 1.0)


class Baselines:
    """Fitted baselines; build with :func:`fit_baselines`, score with :meth:`evaluate`.

    Attributes:
        alpha: pseudo-counts per pitch used by the n-gram smoothing (module docstring).
        unigram_counts, bigram_counts, trigram_counts: training n-gram counts, shapes
            ``(128,)``, ``(128, 128)`` and ``(128, 128, 128)``, indexed by pitch.
        p_repeat: training frequency of "a note has the previous note's pitch".
        cont_mean: mean normalized ``[step, duration, velocity]`` of the training notes.
    """

    names = BASELINE_NAMES

    def __init__(
        self,
        alpha: float,
        unigram_counts: np.ndarray,
        bigram_counts: np.ndarray,
        trigram_counts: np.ndarray,
        p_repeat: float,
        cont_mean: np.ndarray,
    ):
        if alpha <= 0:
            raise ValueError(f"alpha must be positive (it keeps every pitch possible), got {alpha}")
        if not 0.0 < p_repeat < 1.0:
            raise ValueError(f"p_repeat must lie strictly between 0 and 1, got {p_repeat}")
        self.alpha = float(alpha)
        self.unigram_counts = np.asarray(unigram_counts, dtype=np.int64)
        self.bigram_counts = np.asarray(bigram_counts, dtype=np.int64)
        self.trigram_counts = np.asarray(trigram_counts, dtype=np.int64)
        self.p_repeat = float(p_repeat)
        self.cont_mean = np.asarray(cont_mean, dtype=np.float64)
        beta = self.alpha * VOCAB
        self._beta = beta
        uni = (self.unigram_counts + beta / VOCAB) / (self.unigram_counts.sum() + beta)
        bi_ctx = self.bigram_counts.sum(axis=1, keepdims=True)
        self._p1 = uni  # (V,)
        self._p2 = (self.bigram_counts + beta * uni[None, :]) / (bi_ctx + beta)  # (V, V)
        self._tri_ctx = self.trigram_counts.sum(axis=2).astype(np.float64)  # (V, V)

    # ------------------------------------------------------------------ predictions

    def pitch_distribution(self, name: str, pitch_seq: np.ndarray | torch.Tensor) -> np.ndarray:
        """Probability of each of the 128 next pitches, shape ``(N, 128)``; rows sum to 1.

        ``pitch_seq`` is ``(N, L)`` (the windows' input pitches, ``L >= 2``); only its
        last one or two columns are used.
        """
        seq = _check_pitches(_as_numpy(pitch_seq), "pitch_seq")
        if seq.ndim != 2 or seq.shape[1] < 2:
            raise ValueError(f"pitch_seq must have shape (N, L) with L >= 2, got {seq.shape}")
        n = len(seq)
        if name == "unigram":
            return np.broadcast_to(self._p1, (n, VOCAB)).copy()
        if name == "bigram":
            return self._p2[seq[:, -1]]
        if name == "trigram":
            t, u = seq[:, -2], seq[:, -1]
            counts = self.trigram_counts[t, u].astype(np.float64)  # (N, V)
            return (counts + self._beta * self._p2[u]) / (self._tri_ctx[t, u][:, None] + self._beta)
        if name == "repeat previous":
            out = np.full((n, VOCAB), (1.0 - self.p_repeat) / (VOCAB - 1))
            out[np.arange(n), seq[:, -1]] = self.p_repeat
            return out
        raise KeyError(f"{name!r} predicts no pitch; pitch baselines: {PITCH_BASELINES}")

    def cont_prediction(self, name: str, cont_seq: np.ndarray | torch.Tensor) -> np.ndarray:
        """Predicted normalized ``[step, duration, velocity]`` of the next note, ``(N, 3)``."""
        cont = _as_numpy(cont_seq).astype(np.float64, copy=False)
        if cont.ndim != 3 or cont.shape[-1] != len(CONT_FEATURES):
            raise ValueError(f"cont_seq must have shape (N, L, 3), got {cont.shape}")
        if name == "training mean":
            return np.broadcast_to(self.cont_mean, (len(cont), 3)).copy()
        if name == "repeat previous":
            return cont[:, -1, :].copy()
        raise KeyError(f"{name!r} predicts no continuous values; those that do: {CONT_BASELINES}")

    # ------------------------------------------------------------------ metrics

    def evaluate(self, windows: Windows, chunk: int = 8192) -> pd.DataFrame:
        """Score every baseline on ``windows``.

        Returns a DataFrame indexed by baseline name with the columns ``pitch_nll``
        (mean negative log-likelihood of the target pitch, nats), ``pitch_top1``,
        ``pitch_top5`` (accuracies in 0..1, ties broken at random in expectation),
        ``mse_step``, ``mse_duration``, ``mse_velocity`` (mean squared error in
        normalized units). A quantity a baseline does not predict is NaN.
        """
        n = len(windows)
        if n == 0:
            raise ValueError("cannot evaluate on zero windows")
        table = pd.DataFrame(
            np.nan, index=pd.Index(self.names, name="baseline"), columns=list(METRIC_COLUMNS)
        )
        sums = {name: np.zeros(3) for name in PITCH_BASELINES}  # nll, top-1, top-5
        sq = {name: np.zeros(3) for name in CONT_BASELINES}  # squared errors per feature
        for batch in windows.chunks(chunk):
            pitch_seq, cont_seq, target_pitch, target_cont = (_as_numpy(t) for t in batch)
            tp = _check_pitches(target_pitch, "target_pitch")
            for name in PITCH_BASELINES:
                probs = self.pitch_distribution(name, pitch_seq)
                sums[name] += [
                    -np.log(probs[np.arange(len(tp)), tp]).sum(),
                    topk_accuracy(probs, tp, 1).sum(),
                    topk_accuracy(probs, tp, 5).sum(),
                ]
            for name in CONT_BASELINES:
                err = self.cont_prediction(name, cont_seq) - target_cont.astype(np.float64)
                sq[name] += (err**2).sum(axis=0)
        for name in PITCH_BASELINES:
            table.loc[name, ["pitch_nll", "pitch_top1", "pitch_top5"]] = sums[name] / n
        for name in CONT_BASELINES:
            table.loc[name, [f"mse_{f}" for f in CONT_FEATURES]] = sq[name] / n
        return table

    def __repr__(self) -> str:
        return (
            f"Baselines(alpha={self.alpha}, train_notes={int(self.unigram_counts.sum())}, "
            f"p_repeat={self.p_repeat:.3f})"
        )


def fit_baselines(
    train_pieces: Sequence[Piece], normalizer: Normalizer, alpha: float = 0.1
) -> Baselines:
    """Fit every baseline on the training pieces (whole pieces, not windows).

    Args:
        train_pieces: the training split; n-grams are counted inside each piece in
            note-table order and never across two pieces.
        normalizer: the normalizer fitted on the same training pieces; the
            ``"training mean"`` baseline is the mean of their normalized notes.
        alpha: pseudo-counts per pitch for the interpolated n-gram smoothing (module
            docstring). The default 0.1 is a fixed small value, not tuned on any split.

    ``p_repeat`` is the fraction of training notes (after a piece's first) whose pitch
    equals the previous note's; it is clipped to ``[0.5/n, 1 - 0.5/n]`` (``n`` the
    number of such transitions) so that ``"repeat previous"`` never assigns
    probability 0 to a pitch.
    """
    kept = [p for p in train_pieces if len(p.notes)]
    if not kept:
        raise ValueError("cannot fit baselines on zero training notes")
    pitches = [
        _check_pitches(p.notes["pitch"].to_numpy(np.int64), f"pitches of {p.id}") for p in kept
    ]
    uni = np.zeros(VOCAB, dtype=np.int64)
    bi = np.zeros(VOCAB**2, dtype=np.int64)
    tri = np.zeros(VOCAB**3, dtype=np.int64)
    for p in pitches:
        uni += np.bincount(p, minlength=VOCAB)
        bi += np.bincount(p[:-1] * VOCAB + p[1:], minlength=VOCAB**2)
        tri += np.bincount((p[:-2] * VOCAB + p[1:-1]) * VOCAB + p[2:], minlength=VOCAB**3)
    n_trans = int(bi.sum())
    if n_trans == 0:
        raise ValueError("training pieces need at least two notes each for the baselines")
    repeats = int(np.trace(bi.reshape(VOCAB, VOCAB)))
    p_repeat = float(np.clip(repeats / n_trans, 0.5 / n_trans, 1 - 0.5 / n_trans))
    raw = np.concatenate([p.notes[list(CONT_FEATURES)].to_numpy(np.float64) for p in kept])
    cont_mean = normalizer.transform(raw).astype(np.float64).mean(axis=0)
    return Baselines(
        alpha, uni, bi.reshape(VOCAB, VOCAB), tri.reshape(VOCAB, VOCAB, VOCAB), p_repeat, cont_mean
    )
