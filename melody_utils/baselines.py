"""Baselines the model must beat (notebook 03), fitted on the training pieces: ``unigram``,
``bigram``, ``trigram`` pitch models, each order smoothed toward the one below by pseudo-counts
(``P3(w | t u) = (c(t u w) + beta P2(w | u)) / (c(t u .) + beta)``, ``beta = alpha * 128``),
``repeat previous`` and ``training mean``; top-k accuracy is expected under random tie-breaking."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .config import CONT_FEATURES, N_PITCHES
from .data import Normalizer, Piece, Windows, raw_features

V = N_PITCHES
PITCH_BASELINES = ("unigram", "bigram", "trigram", "repeat previous")
CONT_BASELINES = ("repeat previous", "training mean")
METRIC_COLUMNS = ("pitch_nll", "pitch_top1", "pitch_top5", *(f"mse_{k}" for k in CONT_FEATURES))


def topk_accuracy(probs: np.ndarray, target: np.ndarray, k: int) -> np.ndarray:
    """Per row, the expected top-``k`` hit of ``target`` under ``probs (N, V)``."""
    p_t = np.take_along_axis(probs, target[:, None], axis=1)
    return np.clip((k - (probs > p_t).sum(axis=1)) / (probs == p_t).sum(axis=1), 0.0, 1.0)


class Baselines:
    """Fitted baselines (:func:`fit_baselines`): the n-gram counts (``unigram_counts``
    ``(128,)``, ``bigram_counts (128, 128)``, ``trigram_counts (128, 128, 128)``),
    ``p_repeat`` (how often a note repeats the previous pitch) and ``cont_mean``."""

    names = ("unigram", "bigram", "trigram", "repeat previous", "training mean")

    def __init__(self, alpha: float, unigram, bigram, trigram, p_repeat: float, cont_mean):
        if alpha <= 0 or not 0 < p_repeat < 1:
            raise ValueError("alpha must be positive and p_repeat in (0, 1)")
        self.alpha, self.p_repeat = float(alpha), float(p_repeat)
        self.unigram_counts, self.bigram_counts, self.trigram_counts = unigram, bigram, trigram
        self.cont_mean = np.asarray(cont_mean, np.float64)
        self._beta = beta = self.alpha * V
        self._p1 = (unigram + beta / V) / (unigram.sum() + beta)
        self._p2 = (bigram + beta * self._p1) / (bigram.sum(axis=1, keepdims=True) + beta)
        self._tri_ctx = trigram.sum(axis=2).astype(np.float64)

    def pitch_distribution(self, name: str, pitch_seq) -> np.ndarray:
        """``(N, 128)`` probabilities of the next pitch after windows ``pitch_seq (N, L)``."""
        seq = np.asarray(pitch_seq, dtype=np.int64)
        n, last = len(seq), seq[:, -1]
        if name == "unigram":
            return np.broadcast_to(self._p1, (n, V)).copy()
        if name == "bigram":
            return self._p2[last]
        if name == "trigram":
            t = seq[:, -2]
            counts = self.trigram_counts[t, last].astype(np.float64) + self._beta * self._p2[last]
            return counts / (self._tri_ctx[t, last][:, None] + self._beta)
        if name == "repeat previous":
            out = np.full((n, V), (1.0 - self.p_repeat) / (V - 1))
            out[np.arange(n), last] = self.p_repeat
            return out
        raise KeyError(f"{name!r} predicts no pitch; pitch baselines: {PITCH_BASELINES}")

    def cont_prediction(self, name: str, cont_seq) -> np.ndarray:
        """``(N, 3)`` normalized ``[step, duration, velocity]`` after ``cont_seq (N, L, 3)``."""
        cont = np.asarray(cont_seq, np.float64)
        if name == "training mean":
            return np.broadcast_to(self.cont_mean, (len(cont), 3)).copy()
        if name == "repeat previous":
            return cont[:, -1].copy()
        raise KeyError(f"{name!r} predicts no time; those that do: {CONT_BASELINES}")

    def evaluate(self, windows: Windows, chunk: int = 8192) -> pd.DataFrame:
        """Every baseline on ``windows``: ``pitch_nll`` (nats), ``pitch_top1``, ``pitch_top5``,
        ``mse_step``, ``mse_duration``, ``mse_velocity`` (normalized units); NaN where a
        baseline predicts nothing."""
        if len(windows) == 0:
            raise ValueError("cannot evaluate on zero windows")
        index = pd.Index(self.names, name="baseline")
        table = pd.DataFrame(np.nan, index=index, columns=list(METRIC_COLUMNS))
        pitch_cols, mse_cols = list(METRIC_COLUMNS[:3]), list(METRIC_COLUMNS[3:])
        table.loc[list(PITCH_BASELINES), pitch_cols] = 0.0
        table.loc[list(CONT_BASELINES), mse_cols] = 0.0
        for p_seq, c_seq, tp, tc in windows.chunks(chunk):
            p_seq, c_seq, tp, tc = (t.cpu().numpy() for t in (p_seq, c_seq, tp, tc))
            for name in PITCH_BASELINES:
                probs = self.pitch_distribution(name, p_seq)
                nll = -np.log(probs[np.arange(len(tp)), tp])
                hits = [
                    nll.sum(),
                    topk_accuracy(probs, tp, 1).sum(),
                    topk_accuracy(probs, tp, 5).sum(),
                ]
                table.loc[name, pitch_cols] += hits
            for name in CONT_BASELINES:
                err = ((self.cont_prediction(name, c_seq) - tc) ** 2).sum(axis=0)
                table.loc[name, mse_cols] += err
        return table / len(windows)

    def __repr__(self) -> str:
        notes = int(self.unigram_counts.sum())
        return f"Baselines(alpha={self.alpha}, train_notes={notes}, p_repeat={self.p_repeat:.3f})"


def fit_baselines(
    train_pieces: Sequence[Piece], normalizer: Normalizer, alpha: float = 0.1
) -> Baselines:
    """Fit every baseline on the training pieces (n-grams counted inside each piece; ``alpha``
    fixed, not tuned; ``p_repeat`` clipped to ``[0.5/n, 1 - 0.5/n]`` so no probability is 0)."""
    pitches = [p.notes["pitch"].to_numpy(np.int64) for p in train_pieces if len(p)]
    if not pitches:
        raise ValueError("cannot fit baselines on zero training notes")
    uni, bi, tri = np.zeros(V, np.int64), np.zeros(V**2, np.int64), np.zeros(V**3, np.int64)
    for p in pitches:
        uni += np.bincount(p, minlength=V)
        bi += np.bincount(p[:-1] * V + p[1:], minlength=V**2)
        tri += np.bincount((p[:-2] * V + p[1:-1]) * V + p[2:], minlength=V**3)
    n = int(bi.sum())
    if n == 0:
        raise ValueError("training pieces need at least two notes each for the baselines")
    p_repeat = float(np.clip(np.trace(bi.reshape(V, V)) / n, 0.5 / n, 1 - 0.5 / n))
    cont_mean = normalizer.transform(raw_features(train_pieces)).astype(np.float64).mean(axis=0)
    return Baselines(alpha, uni, bi.reshape(V, V), tri.reshape(V, V, V), p_repeat, cont_mean)


class KneserNey:
    """A transposition-invariant n-gram: interpolated Kneser-Ney over the interval to the next
    pitch, given the ``context`` notes before the last one as intervals to it (``context=3``:
    four notes, a whole chord; a (context + 2)-gram in pitch terms). Lower orders use
    continuation counts, the lowest is smoothed toward uniform over the 255 intervals; the
    next pitch's distribution is that of ``last + interval`` over 0..127, renormalised."""

    def __init__(
        self,
        train_pieces: Sequence[Piece],
        context: int = 3,
        discount: float = 0.75,
        relative: bool = True,
        shifts: Sequence[int] = (0,),
    ):
        if not (isinstance(context, int) and context >= 0 and 0 < discount < 1):
            raise ValueError(f"need context >= 0 and 0 < discount < 1, got {context}, {discount}")
        self.context, self.discount, self.relative = context, float(discount), bool(relative)
        top: dict[tuple, dict[int, int]] = {}
        for p in (p.notes["pitch"].to_numpy(np.int64) for p in train_pieces):
            for shift in shifts:
                q = p + shift
                if len(q) and (q.min() < 0 or q.max() >= V):
                    continue
                for j in range(1, len(q)):
                    ref = q[j - 1] if relative else 0
                    ctx = tuple(q[max(j - 1 - context, 0) : j - 1 + (not relative)] - ref)
                    row = top.setdefault(ctx, {})
                    row[q[j] - ref] = row.get(q[j] - ref, 0) + 1
        if not top:
            raise ValueError("cannot fit an n-gram on pieces of fewer than two notes")
        # counts[m][ctx]: raw counts for the longest contexts, continuation counts below
        self.counts: list[dict[tuple, dict[int, int]]] = [{} for _ in range(context + 2)]
        for ctx, row in top.items():  # short contexts (a piece's start) are counted raw too
            self.counts[len(ctx)][ctx] = dict(row)
        for m in range(len(self.counts) - 1, 0, -1):
            for ctx, row in list(self.counts[m].items()):
                lower = self.counts[m - 1].setdefault(ctx[1:], {})
                for d in row:
                    lower[d] = lower.get(d, 0) + 1
        self._cache: dict[tuple, np.ndarray] = {}

    def _interval_probs(self, ctx: tuple) -> np.ndarray:
        """P(interval + 127) after ``ctx`` (a vector of 255), recursively interpolated."""
        if ctx in self._cache:
            return self._cache[ctx]
        lower = self._interval_probs(ctx[1:]) if ctx else np.full(2 * V - 1, 1 / (2 * V - 1))
        row = self.counts[len(ctx)].get(ctx)
        if not row:
            out = lower
        else:
            d, c = np.fromiter(row, np.int64), np.fromiter(row.values(), np.float64)
            total = c.sum()
            out = lower * (self.discount * len(c) / total)
            out[d + V - 1] += np.maximum(c - self.discount, 0) / total
        self._cache[ctx] = out
        return out

    def pitch_distribution(self, pitch_seq) -> np.ndarray:
        """``(N, 128)`` probabilities of the next pitch after windows ``pitch_seq (N, L)``."""
        seq = np.asarray(pitch_seq, dtype=np.int64)
        out = np.empty((len(seq), V))
        for i, s in enumerate(seq):
            ref = s[-1] if self.relative else 0
            first = len(s) - 1 - min(self.context, len(s) - 1)
            ctx = tuple(s[first : len(s) - self.relative] - ref)
            out[i] = self._interval_probs(ctx)[V - 1 - ref : 2 * V - 1 - ref]
        return out / out.sum(axis=1, keepdims=True)

    def evaluate(self, windows: Windows, chunk: int = 8192) -> dict[str, float]:
        """``pitch_nll`` (nats), ``pitch_top1`` and ``pitch_top5`` on ``windows``."""
        if len(windows) == 0:
            raise ValueError("cannot evaluate on zero windows")
        sums = np.zeros(3)
        for p_seq, _, tp, _ in windows.chunks(chunk):
            probs, tp = self.pitch_distribution(p_seq.cpu().numpy()), tp.cpu().numpy()
            nll = -np.log(probs[np.arange(len(tp)), tp])
            sums += [
                nll.sum(),
                topk_accuracy(probs, tp, 1).sum(),
                topk_accuracy(probs, tp, 5).sum(),
            ]
        return dict(zip(METRIC_COLUMNS[:3], (sums / len(windows)).tolist(), strict=True))

    def __repr__(self) -> str:
        return f"KneserNey(context={self.context}, discount={self.discount})"
