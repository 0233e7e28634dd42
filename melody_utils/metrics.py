"""Degeneration measures for generated music (introduced in notebook 05).

A next-note model that has gone wrong tends to *degenerate*: it repeats one pitch,
circles among two or three notes, or wanders off over the whole keyboard. These
cheap, interpretable numbers catch that, and :func:`reference_stats` computes the
same numbers on real held-out pieces, cut into windows of the same length as the
generation, so the two can be read side by side (every measure here depends on the
number of notes, so comparing a 64-note continuation with a 300-note chorale would
mislead).

All measures read a note table in its row order, which is the order the model reads
and writes notes (chord tones are consecutive rows with ``step == 0``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .config import CHORD_SNAP

#: The measures returned by :func:`degeneration_stats`, in display order.
MEASURES = (
    "notes",
    "repeat_share",
    "longest_run",
    "pitch_class_entropy",
    "pitch_range",
    "unique_pitches",
    "chord_share",
)


#: What each measure means (shown as the index of :func:`stats_table`).
DESCRIPTIONS = {
    "notes": "notes",
    "repeat_share": "share of consecutive notes with the same pitch",
    "longest_run": "longest run of one pitch (notes)",
    "pitch_class_entropy": "pitch-class entropy (bits, max 3.58)",
    "pitch_range": "pitch range (semitones)",
    "unique_pitches": "distinct pitches",
    "chord_share": "share of notes starting with the previous one (chord tones)",
}


def _pitches_and_steps(notes: object) -> tuple[np.ndarray, np.ndarray | None]:
    table = getattr(notes, "notes", notes)  # a Piece carries its table in .notes
    if isinstance(table, pd.DataFrame):
        if "pitch" not in table.columns:
            raise ValueError("a note table needs a 'pitch' column")
        steps = table["step"].to_numpy(np.float64) if "step" in table.columns else None
        return table["pitch"].to_numpy(np.int64), steps
    pitches = np.asarray(table)
    if pitches.ndim != 1:
        raise ValueError(
            f"expected a note table or a 1-D sequence of pitches, got shape {pitches.shape}"
        )
    return pitches.astype(np.int64), None


def degeneration_stats(notes: pd.DataFrame | Sequence[int] | np.ndarray) -> dict[str, float]:
    """Degeneration measures of one note sequence.

    Args:
        notes: a note table (or a :class:`~melody_utils.data.Piece`), or a plain
            sequence of MIDI pitches (then ``chord_share`` is NaN).

    Returns:
        A dict with the keys of :data:`MEASURES`:

        * ``notes``: how many notes were measured;
        * ``repeat_share``: fraction of consecutive pairs with the same pitch
          (NaN for fewer than two notes);
        * ``longest_run``: the longest run of consecutive notes with one pitch;
        * ``pitch_class_entropy``: Shannon entropy of the pitch-class histogram in
          bits (0 for one pitch class, log2(12) = 3.58 for all twelve equally often);
        * ``pitch_range``: highest minus lowest pitch, in semitones;
        * ``unique_pitches``: number of distinct pitches;
        * ``chord_share``: fraction of notes after the first that start with the
          previous one (``step`` under :data:`~melody_utils.config.CHORD_SNAP`, 10 ms):
          chord tones. A model stuck on step 0 piles every note into one chord; one
          that never predicts it writes no chords.
    """
    pitches, steps = _pitches_and_steps(notes)
    n = len(pitches)
    out: dict[str, float] = {m: math.nan for m in MEASURES}
    out["notes"] = float(n)
    if n == 0:
        return out
    same = pitches[1:] == pitches[:-1]
    if n > 1:
        out["repeat_share"] = float(same.mean())
    # longest run: split the sequence wherever the pitch changes
    change = np.flatnonzero(np.diff(pitches) != 0)
    bounds = np.concatenate([[-1], change, [n - 1]])
    out["longest_run"] = float(np.diff(bounds).max())
    counts = np.bincount(pitches % 12, minlength=12).astype(np.float64)
    p = counts[counts > 0] / n
    out["pitch_class_entropy"] = float(max(0.0, -(p * np.log2(p)).sum()))
    out["pitch_range"] = float(pitches.max() - pitches.min())
    out["unique_pitches"] = float(len(np.unique(pitches)))
    if steps is not None and n > 1:
        out["chord_share"] = float((steps[1:] < CHORD_SNAP).mean())
    return out


def reference_stats(
    pieces: Sequence[object] | Mapping[str, object], length: int
) -> dict[str, float]:
    """Mean :func:`degeneration_stats` of real pieces, on windows of ``length`` notes.

    Each piece is cut into consecutive, non-overlapping windows of ``length`` notes
    (a leftover shorter than ``length`` is dropped); the measures are averaged over a
    piece's windows, then over pieces, so long pieces do not outweigh short ones. If
    no piece is that long, the longest window that some piece holds is used instead
    (the ``notes`` entry then says so).

    Args:
        pieces: held-out pieces (:class:`~melody_utils.data.Piece` or note tables),
            or a mapping whose values are such.
        length: window length in notes, normally the generation's ``n_notes``.

    Returns:
        The keys of :data:`MEASURES` (means) plus ``pieces`` and ``windows``, the
        numbers of pieces and windows averaged.
    """
    if isinstance(pieces, Mapping):
        pieces = list(pieces.values())
    if length < 1:
        raise ValueError(f"length must be positive, got {length}")
    tables = [getattr(p, "notes", p) for p in pieces]
    tables = [t for t in tables if len(t)]
    if not tables:
        raise ValueError("reference_stats needs at least one non-empty piece")
    length = min(length, max(len(t) for t in tables))
    per_piece = []
    n_windows = 0
    for table in tables:
        k = len(table) // length
        if k == 0:
            continue
        rows = [degeneration_stats(table.iloc[i * length : (i + 1) * length]) for i in range(k)]
        n_windows += k
        per_piece.append({m: float(np.nanmean([r[m] for r in rows])) for m in MEASURES})
    out = {m: float(np.nanmean([r[m] for r in per_piece])) for m in MEASURES}
    out["pieces"] = float(len(per_piece))
    out["windows"] = float(n_windows)
    return out


def stats_table(
    generated: Sequence[Mapping[str, float]],
    reference: Mapping[str, float] | None = None,
    decimals: int = 3,
) -> pd.DataFrame:
    """Side-by-side table: one column per generated variation, then the real reference.

    Rows are the :data:`MEASURES`, labelled by :data:`DESCRIPTIONS`.
    """
    data = {f"variation {i + 1}": [s[m] for m in MEASURES] for i, s in enumerate(generated)}
    if reference is not None:
        label = "real (mean)"
        if "pieces" in reference:
            label = f"real (mean of {int(reference['pieces'])} pieces)"
        data[label] = [reference[m] for m in MEASURES]
    table = pd.DataFrame(data, index=[DESCRIPTIONS[m] for m in MEASURES])
    table.index.name = "measure"
    return table.round(decimals)
