"""From pieces to training windows (introduced in notebook 01).

The pipeline is::

    load_corpus("bach")          -> Corpus, a list of Piece (melody_utils.corpus)
    split_pieces(pieces, seed=0) -> {"train": [...], "val": [...], "test": [...]}
    Normalizer.fit(train)        -> invertible scaling of step, duration, velocity
    make_windows(train, norm)    -> Windows: flat note arrays; batches are gathered

Corpora, parsing and the cache live in :mod:`melody_utils.corpus`; note tables and
MIDI in :mod:`melody_utils.notes`. Their public names are re-exported here for
convenience.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from .config import CHORD_SNAP, CONT_FEATURES, SEQ_LEN
from .corpus import SPLITS, Corpus, Piece, get_piece, load_corpus, load_piece
from .notes import BadInputError, check_pitch_range, note_table, notes_from_midi

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


class Windows:
    """Every stride-1 window of some pieces, stored once as flat per-note arrays.

    A window is ``seq_len`` consecutive notes of one piece plus the next note as its
    target; windows never cross pieces. Materialising all of them would store every
    note ``seq_len + 1`` times (660 bytes per window: int64 pitches, float32 features);
    instead the notes of all pieces are
    kept once, concatenated (``pitch`` as uint8, ``cont`` as three float32: 13 bytes per
    note), and a batch of windows is *gathered* on demand::

        first = windows.starts(idx)                       # (B,) first note of each window
        rows = first[:, None] + torch.arange(seq_len + 1)  # (B, 33) note rows
        pitch, cont = windows.pitch[rows], windows.cont[rows]

    Window ``i`` of the k-th piece (in order) starts at its note ``i``; windows are
    numbered piece after piece, so window ``j`` overall lies in the piece whose window
    range holds ``j``.

    Attributes:
        pitch: ``(n_notes,)`` uint8, MIDI pitch of every note.
        cont: ``(n_notes, 3)`` float32, normalized step, duration, velocity.
        note_offsets: ``(n_pieces + 1,)`` int64, where each piece's notes start.
        window_offsets: ``(n_pieces + 1,)`` int64, cumulative window counts.
        seq_len: input notes per window (the target is one more).

    The card's four tensors are still there for small sets: :meth:`batch` gives them
    for some windows and the properties ``pitch_seq``, ``cont_seq``, ``target_pitch``,
    ``target_cont`` for all of them (materialised: use them for validation-sized sets,
    not MAESTRO).
    """

    def __init__(
        self,
        pitch: torch.Tensor,
        cont: torch.Tensor,
        note_offsets: torch.Tensor,
        seq_len: int = SEQ_LEN,
    ):
        if pitch.dtype != torch.uint8 or pitch.dim() != 1:
            raise TypeError(
                f"pitch must be a 1-D uint8 tensor, got {pitch.dtype} {tuple(pitch.shape)}"
            )
        if cont.dim() != 2 or cont.shape != (len(pitch), len(CONT_FEATURES)):
            raise ValueError(f"cont must have shape ({len(pitch)}, 3), got {tuple(cont.shape)}")
        self.pitch = pitch
        self.cont = cont
        self.note_offsets = note_offsets.to(torch.int64)
        self.seq_len = int(seq_len)
        lengths = self.note_offsets.diff()
        if (lengths < seq_len + 1).any():
            raise ValueError(f"every piece needs at least {seq_len + 1} notes")
        counts = lengths - seq_len
        self.window_offsets = torch.cat([counts.new_zeros(1), counts.cumsum(0)]).to(
            self.note_offsets.device
        )

    @classmethod
    def from_tensors(
        cls,
        pitch_seq: torch.Tensor,
        cont_seq: torch.Tensor,
        target_pitch: torch.Tensor,
        target_cont: torch.Tensor,
    ) -> Windows:
        """Windows given in the card's four tensors (each window becomes its own
        ``seq_len + 1``-note piece): for hand-made examples and tests."""
        n, seq_len = pitch_seq.shape
        if (
            cont_seq.shape != (n, seq_len, len(CONT_FEATURES))
            or target_pitch.shape != (n,)
            or (target_cont.shape != (n, len(CONT_FEATURES)))
        ):
            raise ValueError("shapes must be (N, L), (N, L, 3), (N,) and (N, 3)")
        pitch = torch.cat([pitch_seq, target_pitch[:, None]], dim=1)
        check_pitch_range(pitch, "pitches")
        cont = torch.cat([cont_seq, target_cont[:, None]], dim=1).float()
        offsets = torch.arange(n + 1, dtype=torch.int64) * (seq_len + 1)
        return cls(pitch.reshape(-1).to(torch.uint8), cont.reshape(-1, 3), offsets, seq_len)

    # ------------------------------------------------------------------ size

    def __len__(self) -> int:
        return int(self.window_offsets[-1])

    @property
    def n_notes(self) -> int:
        return len(self.pitch)

    @property
    def n_pieces(self) -> int:
        return len(self.note_offsets) - 1

    @property
    def device(self) -> torch.device:
        return self.pitch.device

    @property
    def nbytes(self) -> int:
        """Bytes held by the windows (notes and offsets)."""
        return sum(
            t.element_size() * t.numel()
            for t in (self.pitch, self.cont, self.note_offsets, self.window_offsets)
        )

    def to(self, device: torch.device | str) -> Windows:
        """The same windows on another device (a copy; the notes move once)."""
        return Windows(
            self.pitch.to(device), self.cont.to(device), self.note_offsets.to(device), self.seq_len
        )

    def __repr__(self) -> str:
        return (
            f"Windows({len(self)} windows of {self.seq_len}+1 notes from {self.n_pieces} "
            f"pieces, {self.n_notes} notes, {self.nbytes / 2**20:.1f} MiB on {self.device})"
        )

    # ------------------------------------------------------------------ gathering

    def _index(self, idx) -> torch.Tensor:
        """``idx`` (a tensor, NumPy array, list or int) as int64 on the windows' device;
        every index must lie in ``0 .. len - 1``."""
        if (
            isinstance(idx, torch.Tensor)
            and idx.is_floating_point()
            or (isinstance(idx, np.ndarray) and not np.issubdtype(idx.dtype, np.integer))
        ):
            raise TypeError(f"window indices must be integers, got {idx.dtype}")
        idx = torch.as_tensor(idx, dtype=torch.int64, device=self.device)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            raise IndexError(
                f"window index out of range 0..{len(self) - 1}: "
                f"got {int(idx.min())}..{int(idx.max())}"
            )
        return idx

    def starts(self, idx: torch.Tensor) -> torch.Tensor:
        """Row of the first note of each window in ``idx`` (int64, any shape; a NumPy
        array or a list works too)."""
        idx = self._index(idx)
        piece = torch.searchsorted(self.window_offsets, idx, right=True) - 1
        return self.note_offsets[piece] + (idx - self.window_offsets[piece])

    def gather(
        self, idx: torch.Tensor, length: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pitch (B, L) int64, cont (B, L, 3))`` of windows ``idx`` with their target:
        ``L = seq_len + 1`` notes each (or ``length``, at most that)."""
        length = self.seq_len + 1 if length is None else length
        idx = self._index(idx)
        rows = self.starts(idx)[:, None] + torch.arange(length, device=idx.device)
        return self.pitch[rows].long(), self.cont[rows]

    def batch(
        self, idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The card's ``(pitch_seq, cont_seq, target_pitch, target_cont)`` for windows
        ``idx``: shapes ``(B, 32)``, ``(B, 32, 3)``, ``(B,)``, ``(B, 3)``."""
        pitch, cont = self.gather(idx)
        return pitch[:, :-1], cont[:, :-1], pitch[:, -1], cont[:, -1]

    def chunks(self, size: int):
        """``(pitch_seq, cont_seq, target_pitch, target_cont)`` of every window, in order,
        ``size`` windows at a time."""
        for a in range(0, len(self), size):
            yield self.batch(torch.arange(a, min(a + size, len(self)), device=self.device))

    def _all(self, k: int) -> torch.Tensor:
        return self.batch(torch.arange(len(self), device=self.device))[k]

    @property
    def pitch_seq(self) -> torch.Tensor:
        """All input pitches ``(N, seq_len)`` (materialised)."""
        return self._all(0)

    @property
    def cont_seq(self) -> torch.Tensor:
        """All input continuous features ``(N, seq_len, 3)`` (materialised)."""
        return self._all(1)

    @property
    def target_pitch(self) -> torch.Tensor:
        """All target pitches ``(N,)``."""
        return self._all(2)

    @property
    def target_cont(self) -> torch.Tensor:
        """All target continuous features ``(N, 3)``."""
        return self._all(3)


def make_windows(
    pieces: Sequence[Piece], normalizer: Normalizer, seq_len: int = SEQ_LEN
) -> Windows:
    """The windows of ``pieces``: window ``i`` of a piece holds its notes ``i ..
    i+seq_len-1`` and its target is note ``i+seq_len``. Pieces with fewer than
    ``seq_len + 1`` notes give none (they are left out).
    """
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"seq_len must be a positive integer, got {seq_len!r}")
    kept = [p for p in pieces if len(p.notes) >= seq_len + 1]
    pitch = [p.notes["pitch"].to_numpy(np.int64) for p in kept]
    for p, values in zip(kept, pitch, strict=True):
        check_pitch_range(values, f"pitches of {p.id}")
    cont = [normalizer.transform(p.notes[list(CONT_FEATURES)].to_numpy(np.float64)) for p in kept]
    lengths = np.array([len(v) for v in pitch], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return Windows(
        torch.from_numpy(np.concatenate(pitch).astype(np.uint8) if kept else np.zeros(0, np.uint8)),
        torch.from_numpy(np.concatenate(cont) if kept else np.zeros((0, 3), np.float32)),
        torch.from_numpy(offsets),
        seq_len,
    )


def fit_time_classes(
    pieces: Sequence[Piece],
    normalizer: Normalizer,
    n_classes: int = 32,
    longest: float = 8.0,
    shortest_duration: float = 0.02,
) -> dict[str, torch.Tensor]:
    """Classes of step and duration for a categorical time head (notebook 06), fitted on
    the training pieces.

    Step class 0 holds every step below :data:`~melody_utils.config.CHORD_SNAP` (the
    chord tones); classes 1..K-1 are log-spaced from there to ``longest`` seconds (the
    last one open-ended). Duration classes are log-spaced from ``shortest_duration`` to
    ``longest``. A class's value is the median of the training values that fall in it,
    so a class that holds one musical value (an eighth note at quarter = 96) gives it
    back exactly; an empty class gets the geometric centre of its edges. Edges and
    values are in normalized units, the model's.

    Returns ``{"step_edges", "step_values", "duration_edges", "duration_values"}``.
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or not 2 <= n_classes <= 255:
        raise ValueError(f"n_classes must be an integer in 2..255, got {n_classes!r}")
    if not 0 < CHORD_SNAP < longest or not 0 < shortest_duration < longest:
        raise ValueError("the class range needs 0 < shortest < longest")
    raw = Normalizer._raw(pieces)
    out: dict[str, torch.Tensor] = {}
    for col, name, low in ((0, "step", CHORD_SNAP), (1, "duration", shortest_duration)):
        edges = np.geomspace(low, longest, n_classes - 1)
        values_raw = raw[:, col]
        cls = np.searchsorted(edges, values_raw, side="right")  # class of each value
        centres = np.concatenate(
            [[low / 2 if col else 0.0], np.sqrt(edges[:-1] * edges[1:]), [longest * 1.5]]
        )
        values = np.array(
            [
                np.median(values_raw[cls == k]) if (cls == k).any() else centres[k]
                for k in range(n_classes)
            ]
        )
        out[f"{name}_edges"] = torch.from_numpy(_normalized(normalizer, col, edges))
        out[f"{name}_values"] = torch.from_numpy(_normalized(normalizer, col, values))
    return out


def _normalized(normalizer: Normalizer, col: int, values: np.ndarray) -> np.ndarray:
    """Normalized units of raw values of one continuous feature."""
    raw = np.zeros((len(values), 3))
    raw[:, col] = values
    return normalizer.transform(raw)[:, col].astype(np.float32)


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
