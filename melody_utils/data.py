"""From pieces to training windows (introduced in notebook 01).

The pipeline is::

    load_corpus("bach")          -> Corpus, a list of Piece (melody_utils.corpus)
    split_pieces(pieces, seed=0) -> {"train": [...], "val": [...], "test": [...]}
    Normalizer.fit(train)        -> invertible scaling of step, duration, velocity
    make_windows(train, norm)    -> Windows(pitch_seq, cont_seq, target_pitch, target_cont)

Corpora, parsing and the cache live in :mod:`melody_utils.corpus`; note tables and
MIDI in :mod:`melody_utils.notes`. Their public names are re-exported here for
convenience.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from .config import CONT_FEATURES, SEQ_LEN
from .corpus import SPLITS, Corpus, Piece, get_piece, load_corpus, load_piece
from .notes import BadInputError, note_table, notes_from_midi

__all__ = [
    "BadInputError",
    "Corpus",
    "Normalizer",
    "Piece",
    "Windows",
    "get_piece",
    "load_corpus",
    "load_piece",
    "make_windows",
    "note_table",
    "notes_from_midi",
    "split_pieces",
    "split_summary",
]


# --------------------------------------------------------------------------- splits


def split_pieces(
    pieces: Sequence[Piece], seed: int = 0, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> dict[str, list[Piece]]:
    """Split pieces into ``train``/``val``/``test`` by piece (never by window).

    A piece whose ``split`` is fixed by its source (MAESTRO's CSV) keeps it; the
    others are shuffled with ``seed`` (in order of their ids, so the result does not
    depend on the input order) and cut by ``fractions``. Same seed, same split.
    """
    if (
        len(fractions) != 3
        or any(f < 0 for f in fractions)
        or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6)
    ):
        raise ValueError(
            f"fractions must be three non-negative numbers summing to 1, got {fractions}"
        )
    ids = [p.id for p in pieces]
    if len(set(ids)) != len(ids):
        raise ValueError("piece ids must be unique")
    out: dict[str, list[Piece]] = {s: [] for s in SPLITS}
    free = sorted((p for p in pieces if p.split is None), key=lambda p: p.id)
    for p in pieces:
        if p.split is not None:
            out[p.split].append(p)
    order = np.random.default_rng(seed).permutation(len(free))
    n_train = round(fractions[0] * len(free))
    n_val = round(fractions[1] * len(free))
    if len(free) >= 3:  # every split gets at least one piece when it can
        n_val = max(n_val, 1 if fractions[1] > 0 else 0)
        n_train = min(n_train, len(free) - n_val - (1 if fractions[2] > 0 else 0))
    for rank, idx in enumerate(order):
        split = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
        out[split].append(free[idx])
    for s in SPLITS:
        out[s].sort(key=lambda p: p.id)
    return out


# --------------------------------------------------------------------------- normalizer


class Normalizer:
    """Invertible scaling of ``[step, duration, velocity]``, fitted on the training split.

    Step and duration are right-skewed and step is often exactly 0 (chord tones), so
    they are log-transformed first: ``z = (log(x + eps) - mean) / std``. Velocity is
    scaled linearly: ``z = (v - mean) / std``. A constant feature (velocity in score
    data) gets ``std = 1`` and is flagged in ``degenerate``. ``transform`` and
    ``inverse_transform`` are exact inverses up to float precision.
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        eps: float = 1e-3,
        degenerate: Sequence[bool] = (False, False, False),
    ):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        self.eps = float(eps)
        self.degenerate = tuple(bool(d) for d in degenerate)
        if self.mean.shape != (3,) or self.std.shape != (3,) or len(self.degenerate) != 3:
            raise ValueError("mean, std and degenerate must have 3 entries each")
        if not (np.isfinite(self.mean).all() and np.isfinite(self.std).all()):
            raise ValueError("mean and std must be finite")
        if (self.std <= 0).any() or not (math.isfinite(self.eps) and self.eps > 0):
            raise ValueError("std and eps must be positive")

    @staticmethod
    def _raw(pieces_or_array: Sequence[Piece] | np.ndarray) -> np.ndarray:
        if isinstance(pieces_or_array, np.ndarray):
            return pieces_or_array
        if not len(pieces_or_array):
            raise ValueError("cannot fit a Normalizer on zero pieces")
        return np.concatenate(
            [p.notes[list(CONT_FEATURES)].to_numpy(np.float64) for p in pieces_or_array]
        )

    @classmethod
    def fit(cls, train: Sequence[Piece] | np.ndarray, eps: float = 1e-3) -> Normalizer:
        """Fit on the training pieces (or an (N, 3) array of raw step, duration, velocity)."""
        raw = cls._raw(train)
        pre = cls._pre(raw, eps)
        mean, std = pre.mean(axis=0), pre.std(axis=0)
        degenerate = std < 1e-8
        std = np.where(degenerate, 1.0, std)
        return cls(mean, std, eps, degenerate)

    @classmethod
    def _pre(cls, raw: np.ndarray, eps: float) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        if raw.shape[-1] != 3:
            raise ValueError(
                f"expected last dimension 3 (step, duration, velocity), got shape {raw.shape}"
            )
        if not np.isfinite(raw).all():
            raise ValueError("step, duration and velocity must be finite (found NaN or inf)")
        if (raw[..., :2] < 0).any():
            raise ValueError("step and duration must be non-negative")
        out = raw.copy()
        out[..., :2] = np.log(raw[..., :2] + eps)
        return out

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """Raw ``(..., 3)`` seconds/velocity -> normalized float32."""
        return ((self._pre(raw, self.eps) - self.mean) / self.std).astype(np.float32)

    def inverse_transform(self, z: np.ndarray | torch.Tensor) -> np.ndarray:
        """Normalized ``(..., 3)`` -> raw seconds and velocity (float64)."""
        if isinstance(z, torch.Tensor):
            z = z.detach().cpu().numpy()
        z = np.asarray(z, dtype=np.float64)
        if z.shape[-1] != 3:
            raise ValueError(f"expected last dimension 3, got shape {z.shape}")
        out = z * self.std + self.mean
        out[..., :2] = np.exp(out[..., :2]) - self.eps
        return out

    def to_dict(self) -> dict:
        """JSON-ready description (stored in checkpoints)."""
        return {
            "features": list(CONT_FEATURES),
            "eps": self.eps,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "degenerate": list(self.degenerate),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Normalizer:
        if list(d.get("features", [])) != list(CONT_FEATURES):
            raise ValueError(f"normalizer features {d.get('features')} != {list(CONT_FEATURES)}")
        try:
            return cls(d["mean"], d["std"], d["eps"], d.get("degenerate", (False,) * 3))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a normalizer description ({type(exc).__name__}: {exc})") from exc

    def __repr__(self) -> str:
        m = ", ".join(
            f"{f}={a:.3f}±{b:.3f}"
            for f, a, b in zip(CONT_FEATURES, self.mean, self.std, strict=True)
        )
        return f"Normalizer({m}, eps={self.eps})"


# --------------------------------------------------------------------------- windows


class Windows(NamedTuple):
    """Training examples: 32 input notes and the next (33rd) note as target."""

    pitch_seq: torch.Tensor  # (N, 32) int64
    cont_seq: torch.Tensor  # (N, 32, 3) float32, normalized
    target_pitch: torch.Tensor  # (N,) int64
    target_cont: torch.Tensor  # (N, 3) float32, normalized


def make_windows(
    pieces: Sequence[Piece], normalizer: Normalizer, seq_len: int = SEQ_LEN, stride: int = 1
) -> Windows:
    """Cut every piece into windows of ``seq_len`` notes; the target is the next note.

    Window ``i`` of a piece holds notes ``i .. i+seq_len-1`` and its target is note
    ``i+seq_len``. Windows never cross pieces. Pieces shorter than ``seq_len + 1`` give
    none.
    """
    if seq_len < 1 or stride < 1:
        raise ValueError("seq_len and stride must be positive")
    p_parts, c_parts, tp_parts, tc_parts = [], [], [], []
    for piece in pieces:
        n = len(piece.notes)
        if n < seq_len + 1:
            continue
        pitch = piece.notes["pitch"].to_numpy(np.int64)
        cont = normalizer.transform(piece.notes[list(CONT_FEATURES)].to_numpy(np.float64))
        starts = np.arange(0, n - seq_len, stride)
        idx = starts[:, None] + np.arange(seq_len)[None, :]
        p_parts.append(pitch[idx])
        c_parts.append(cont[idx])
        tp_parts.append(pitch[starts + seq_len])
        tc_parts.append(cont[starts + seq_len])
    if not p_parts:
        return Windows(
            torch.empty(0, seq_len, dtype=torch.int64),
            torch.empty(0, seq_len, 3),
            torch.empty(0, dtype=torch.int64),
            torch.empty(0, 3),
        )
    return Windows(
        torch.from_numpy(np.concatenate(p_parts)),
        torch.from_numpy(np.concatenate(c_parts)),
        torch.from_numpy(np.concatenate(tp_parts)),
        torch.from_numpy(np.concatenate(tc_parts)),
    )


def split_summary(splits: dict[str, Sequence[Piece]], seq_len: int = SEQ_LEN) -> pd.DataFrame:
    """Pieces, notes and windows per split as a small table."""
    rows = []
    for name, pcs in splits.items():
        n_notes = sum(len(p) for p in pcs)
        n_win = sum(max(len(p) - seq_len, 0) for p in pcs)
        rows.append({"split": name, "pieces": len(pcs), "notes": n_notes, "windows": n_win})
    table = pd.DataFrame(rows).set_index("split")
    table.loc["total"] = table.sum()
    return table
