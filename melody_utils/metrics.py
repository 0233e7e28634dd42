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

Beyond the card (notebook 06) and the generation code use three more groups:

* **rhythm**: :func:`flam_rate` (onsets 10-100 ms apart: neither together nor a real
  rhythmic value), :func:`chord_share`, and step/duration histograms on log-spaced bins
  (:func:`step_histogram`, :func:`duration_histogram`) compared by
  :func:`histogram_distance` / :func:`distribution_distance` and :func:`rhythm_distances`;
* **objective music measures**, generated vs real: :func:`music_stats` (one table) and
  :func:`compare_sets` (a set of generated tables against real pieces cut into windows
  of the same length: one tidy row per measure, with a histogram distance where the
  measure is a distribution);
* **the copy check**: :class:`CopyIndex` indexes the training pitch sequences once
  (a suffix array) and finds, exactly, the longest run of a generation's pitches that
  also occurs in one training piece, and where; :func:`copy_reference` gives the same
  figure for real held-out windows of the same length (Bach reused his own melodies,
  so real pieces share runs too: that is the yardstick), and :func:`copy_report`
  puts the two side by side.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .config import CHORD_SNAP, N_PITCHES

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
    "flam_rate": "share of steps between 10 and 100 ms (flams)",
    "copied_run": "longest run of pitches also in the training set (notes)",
}
#: Measures a generation may carry besides :data:`MEASURES` (rhythm, and the copy check
#: when ``generate`` was given a :class:`CopyIndex`); :func:`stats_table` shows them too.
EXTRA_MEASURES = ("flam_rate", "copied_run")


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


def _chord_share(steps: np.ndarray) -> float:
    """Share of the steps after the first under CHORD_SNAP (one definition, used twice)."""
    return float((steps[1:] < CHORD_SNAP).mean())


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
        out["chord_share"] = _chord_share(steps)
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
        The keys of :data:`MEASURES` (means), ``flam_rate`` for note tables, plus
        ``pieces`` and ``windows``, the numbers of pieces and windows averaged.
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
        windows = [table.iloc[i * length : (i + 1) * length] for i in range(k)]
        rows = [{**degeneration_stats(w), **rhythm_stats(w)} for w in windows]
        n_windows += k
        per_piece.append({m: float(np.nanmean([r[m] for r in rows])) for m in rows[0]})
    out = {m: float(np.nanmean([r[m] for r in per_piece])) for m in per_piece[0]}
    out["pieces"] = float(len(per_piece))
    out["windows"] = float(n_windows)
    return out


def rhythm_stats(notes: object) -> dict[str, float]:
    """``{"flam_rate": ...}`` for a note table with steps; empty for bare pitches."""
    table = getattr(notes, "notes", notes)
    if isinstance(table, pd.DataFrame) and "step" in table.columns:
        return {"flam_rate": flam_rate(table) if len(table) > 1 else math.nan}
    return {}


def stats_table(
    generated: Sequence[Mapping[str, float]],
    reference: Mapping[str, float] | None = None,
    decimals: int = 3,
) -> pd.DataFrame:
    """Side-by-side table: one column per generated variation, then the real reference.

    Rows are the :data:`MEASURES`, then those of :data:`EXTRA_MEASURES` that every
    variation carries, labelled by :data:`DESCRIPTIONS` (a reference without one shows
    NaN there).
    """
    rows = [*MEASURES, *(m for m in EXTRA_MEASURES if generated and all(m in s for s in generated))]
    data = {f"variation {i + 1}": [s[m] for m in rows] for i, s in enumerate(generated)}
    if reference is not None:
        label = "real (mean)"
        if "pieces" in reference:
            label = f"real (mean of {int(reference['pieces'])} pieces)"
        data[label] = [reference.get(m, math.nan) for m in rows]
    table = pd.DataFrame(data, index=[DESCRIPTIONS[m] for m in rows])
    table.index.name = "measure"
    return table.round(decimals)


# =========================================================================== beyond the card
# Everything below is introduced in notebook 06 ("beyond the card").

#: Flams: two onsets at least :data:`FLAM_MIN` apart (so not a chord,
#: :data:`~melody_utils.config.CHORD_SNAP`) but less than :data:`FLAM_MAX` apart (so
#: shorter than the note values chorales use: a 16th note at 120 bpm lasts 125 ms; the
#: few shorter steps in the real chorales, 32nd-note ornaments of 62.5 ms at 120 bpm, are
#: about 0.02 % of their steps). A regression head that averages "together" (0 s) and
#: "next beat" (0.5 s) writes them.
FLAM_MIN = CHORD_SNAP
FLAM_MAX = 0.1

#: Edges (seconds) of the log-spaced bins of the step and duration histograms: half an
#: octave wide (a factor of sqrt 2), placed so that every power of two of a second, and
#: every power of two times sqrt 2, sits in the middle of its bin (on a log scale), away
#: from an edge. From 9.3 ms to 19 s; values outside fall into the first or last bin.
TIME_BIN_EDGES: np.ndarray = 2.0 ** (np.arange(-14, 9) / 2 + 0.25)

#: Intervals (semitones) beyond +-24 (two octaves) share the end bins of the interval
#: histograms.
INTERVAL_CLIP = 24

#: The distances between histograms: total variation and Jensen-Shannon divergence.
DISTANCE_METRICS = ("tv", "js")

#: The scalar measures of :func:`music_stats`, in display order.
MUSIC_MEASURES = (
    "notes",
    "pitch_range",
    "pitch_class_entropy",
    "unique_pitches",
    "polyphony",
    "chord_share",
    "flam_rate",
    "mean_abs_interval",
    "mean_abs_melodic_interval",
)

#: The distributions :func:`compare_sets` compares with a histogram distance.
HISTOGRAMS = (
    "pitch_class_histogram",
    "interval_histogram",
    "melodic_interval_histogram",
    "step_histogram",
    "duration_histogram",
)

#: What each row of :func:`compare_sets` means.
MUSIC_DESCRIPTIONS = {
    "notes": "notes per table (generated) / window (real)",
    "pitch_range": "pitch range (semitones)",
    "pitch_class_entropy": "pitch-class entropy (bits, max 3.58)",
    "unique_pitches": "distinct pitches",
    "polyphony": "notes per onset (1 = monophonic; 4 = four-part chords)",
    "chord_share": "share of notes starting with the previous one (step < 10 ms)",
    "flam_rate": "share of steps of 10-100 ms (flams: neither together nor a note value)",
    "mean_abs_interval": "mean |interval| between consecutive notes (semitones)",
    "mean_abs_melodic_interval": "mean |interval| of the top voice, onset to onset",
    "pitch_class_histogram": "pitch-class histogram (12 bins)",
    "interval_histogram": "interval between consecutive notes (-24..24 semitones)",
    "melodic_interval_histogram": "top-voice interval, onset to onset (-24..24 semitones)",
    "step_histogram": "step (chord bin + log-spaced bins)",
    "duration_histogram": "duration (log-spaced bins)",
}


# --------------------------------------------------------------------------- inputs


def _table(notes: object, columns: Sequence[str] = ("pitch", "step")) -> pd.DataFrame:
    """The note table of a table or a Piece, checked to have ``columns``."""
    table = getattr(notes, "notes", notes)  # a Piece carries its table in .notes
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"expected a note table (DataFrame) or a Piece, got {type(notes).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"a note table needs the column(s) {', '.join(missing)}")
    return table


def _tables(notes: object) -> list[pd.DataFrame]:
    """A list of note tables from one table/Piece, a sequence or mapping of them, or a
    :class:`~melody_utils.generate.GenerationResult` (its continuations)."""
    if hasattr(notes, "continuation") and hasattr(notes, "n_variations"):
        return [notes.continuation(i) for i in range(notes.n_variations)]
    if isinstance(notes, pd.DataFrame) or hasattr(notes, "notes"):
        return [_table(notes, ())]
    if isinstance(notes, Mapping):
        notes = list(notes.values())
    return [_table(t, ()) for t in notes]


def _steps(notes: object) -> np.ndarray:
    return _table(notes, ("step",))["step"].to_numpy(np.float64)


def _ids_and_tables(pieces: object) -> list[tuple[str, pd.DataFrame]]:
    """``(id, table)`` pairs: a Piece's id, a mapping's key, else the position."""
    if isinstance(pieces, pd.DataFrame) or hasattr(pieces, "notes"):
        pieces = [pieces]
    if isinstance(pieces, Mapping):
        return [(str(k), _table(v, ("pitch",))) for k, v in pieces.items()]
    return [(str(getattr(p, "id", i)), _table(p, ("pitch",))) for i, p in enumerate(pieces)]


def _windows(pieces: object, length: int) -> list[tuple[str, int, pd.DataFrame]]:
    """Consecutive, non-overlapping windows of ``length`` notes: ``(piece id, first row,
    window)``; a leftover shorter than ``length`` is dropped. Raises ValueError when no
    piece holds a whole window (a shorter reference would not be comparable)."""
    if isinstance(length, bool) or not isinstance(length, int | np.integer) or length < 1:
        raise ValueError(f"length must be a positive integer, got {length!r}")
    pairs = _ids_and_tables(pieces)
    if not pairs:
        raise ValueError("need at least one real piece")
    out = [
        (pid, i * length, t.iloc[i * length : (i + 1) * length])
        for pid, t in pairs
        for i in range(len(t) // length)
    ]
    if not out:
        longest = max(len(t) for _, t in pairs)
        raise ValueError(
            f"no real piece has {length} notes (the longest has {longest}); use a shorter length"
        )
    return out


# --------------------------------------------------------------------------- rhythm


def chord_share(notes: object) -> float:
    """Share of the notes after the first that start with the previous one.

    The same definition as ``degeneration_stats(...)["chord_share"]``: ``step`` under
    :data:`~melody_utils.config.CHORD_SNAP` (10 ms). About 0.67 for the four-part
    chorales (most notes are chord tones), 0 for a melody. NaN for fewer than two notes.

    Args:
        notes: a note table or a :class:`~melody_utils.data.Piece` (needs ``step``).
    """
    steps = _steps(notes)
    return _chord_share(steps) if len(steps) > 1 else math.nan


def flam_rate(notes: object) -> float:
    """Share of the steps after the first that are flams: ``FLAM_MIN <= step < FLAM_MAX``.

    A flam is two onsets 10 to 100 ms apart: too far apart to be a chord (chord tones
    have ``step < CHORD_SNAP``, so chord tones, flams and real steps never overlap) and
    too close to be a note value of the piece. The real chorales have about 0.0002 (a
    few very short ornaments); a regression head that hedges between "together" and
    "next beat" writes many. NaN for fewer than two notes.

    Args:
        notes: a note table or a :class:`~melody_utils.data.Piece` (needs ``step``).
    """
    steps = _steps(notes)[1:]
    if len(steps) == 0:
        return math.nan
    return float(((steps >= FLAM_MIN) & (steps < FLAM_MAX)).mean())


def _bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value; values below the first edge go to the first bin, values at or
    above the last edge to the last bin (nothing is dropped)."""
    idx = np.searchsorted(edges, values, side="right") - 1
    return np.clip(idx, 0, len(edges) - 2)


def _check_edges(bins: Sequence[float] | np.ndarray) -> np.ndarray:
    edges = np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2:
        raise ValueError("bins must be a 1-D sequence of at least two edges")
    if not np.isfinite(edges).all() or not (np.diff(edges) > 0).all():
        raise ValueError("bin edges must be finite and strictly increasing")
    return edges


def _values(x: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    return arr


def histogram(
    values: Sequence[float] | np.ndarray, bins: Sequence[float] | np.ndarray
) -> np.ndarray:
    """Counts of ``values`` on the bins with edges ``bins`` (``len(bins) - 1`` counts).

    Bins are ``[edge_i, edge_i+1)``. Unlike :func:`numpy.histogram`, values outside the
    edges are not dropped: they are counted in the first or last bin.
    """
    edges = _check_edges(bins)
    idx = _bin_index(_values(values, "values"), edges)
    return np.bincount(idx, minlength=len(edges) - 1).astype(np.float64)


def distribution_distance(
    p: Sequence[float] | np.ndarray, q: Sequence[float] | np.ndarray, metric: str = "tv"
) -> float:
    """Distance between two histograms given as counts (or shares) on the same bins.

    Both are normalised to sum to 1 first.

    * ``"tv"``: total variation, ``0.5 * sum |p - q|``: the share of probability mass that
      must move to turn one into the other. 0 for identical shapes, 1 for disjoint
      supports (no bin in common).
    * ``"js"``: Jensen-Shannon divergence in bits, ``0.5 KL(p||m) + 0.5 KL(q||m)`` with
      ``m = (p + q) / 2``; also 0 (identical) to 1 (disjoint), smoother than TV for
      small differences; its square root is a metric.

    Returns NaN when either histogram is empty (all zeros).
    """
    if metric not in DISTANCE_METRICS:
        raise ValueError(f"metric must be one of {DISTANCE_METRICS}, got {metric!r}")
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError(f"histograms must be 1-D and alike, got shapes {p.shape} and {q.shape}")
    if (p < 0).any() or (q < 0).any() or not (np.isfinite(p).all() and np.isfinite(q).all()):
        raise ValueError("histogram counts must be finite and non-negative")
    if p.sum() == 0 or q.sum() == 0:
        return math.nan
    p, q = p / p.sum(), q / q.sum()
    if metric == "tv":
        return float(min(1.0, 0.5 * np.abs(p - q).sum()))
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / m[nz])).sum())

    return float(min(1.0, max(0.0, 0.5 * kl(p) + 0.5 * kl(q))))


def histogram_distance(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    bins: Sequence[float] | np.ndarray,
    metric: str = "tv",
) -> float:
    """Distance between the distributions of two samples of values, on fixed bins.

    Both samples are counted on the same ``bins`` (edges; see :func:`histogram`: values
    outside are counted in the end bins) and compared by :func:`distribution_distance`:
    0 when the two histograms have the same shape (whatever the sample sizes), 1 when
    they share no bin. NaN if either sample is empty.
    """
    return distribution_distance(histogram(a, bins), histogram(b, bins), metric)


def step_histogram(notes: object) -> np.ndarray:
    """Counts of the steps (after each table's first note) of one or more note tables.

    Bin 0 holds the chord tones (``step < CHORD_SNAP``, exactly 0 in the scores and in
    generation, which snaps shorter steps to 0), so its share equals
    :func:`chord_share`; bins ``1..`` are the log-spaced :data:`TIME_BIN_EDGES` bins for
    the other steps (``len(TIME_BIN_EDGES)`` counts in all).

    Args:
        notes: a note table or Piece, a sequence or mapping of them, or a
            :class:`~melody_utils.generate.GenerationResult` (its continuations):
            all their steps are pooled.
    """
    steps = [_steps(t)[1:] for t in _tables(notes)]
    s = np.concatenate(steps) if steps else np.zeros(0)
    chord = s < CHORD_SNAP
    rest = histogram(s[~chord], TIME_BIN_EDGES)
    return np.concatenate([[float(chord.sum())], rest])


def duration_histogram(notes: object) -> np.ndarray:
    """Counts of the note durations of one or more note tables on the log-spaced
    :data:`TIME_BIN_EDGES` bins (``len(TIME_BIN_EDGES) - 1`` counts; every note counts).

    Args:
        notes: as for :func:`step_histogram`.
    """
    durs = [_table(t, ("duration",))["duration"].to_numpy(np.float64) for t in _tables(notes)]
    return histogram(np.concatenate(durs) if durs else np.zeros(0), TIME_BIN_EDGES)


def rhythm_distances(generated: object, real: object) -> dict[str, float]:
    """How far the generated steps and durations are from the real ones.

    Args:
        generated: generated note tables (see :func:`step_histogram` for the forms
            accepted), pooled.
        real: real note tables (e.g. the held-out pieces), pooled.

    Returns:
        ``step_tv``, ``step_js``, ``duration_tv``, ``duration_js``: the
        :func:`distribution_distance` of the :func:`step_histogram` and
        :func:`duration_histogram` of the two sets, by total variation and
        Jensen-Shannon (0 = the same distribution on these bins, 1 = nothing in common).
    """
    out = {}
    for name, hist in (("step", step_histogram), ("duration", duration_histogram)):
        g, r = hist(generated), hist(real)
        for metric in DISTANCE_METRICS:
            out[f"{name}_{metric}"] = distribution_distance(g, r, metric)
    return out


# --------------------------------------------------------------------------- music measures


def pitch_class_histogram(notes: object) -> np.ndarray:
    """Counts of the 12 pitch classes (C = 0 ... B = 11) of one or more note tables."""
    pitches = [_table(t, ("pitch",))["pitch"].to_numpy(np.int64) for t in _tables(notes)]
    p = np.concatenate(pitches) if pitches else np.zeros(0, np.int64)
    return np.bincount(p % 12, minlength=12).astype(np.float64)


def _onset_groups(table: pd.DataFrame) -> np.ndarray:
    """First row of each onset (a row whose step is at least CHORD_SNAP, and row 0)."""
    steps = table["step"].to_numpy(np.float64)
    new = steps >= CHORD_SNAP
    if len(new):
        new[0] = True
    return np.flatnonzero(new)


def polyphony(notes: object) -> float:
    """Notes per onset: rows divided by distinct onsets (notes starting together, i.e.
    ``step < CHORD_SNAP``, share one onset). 1 for a melody, about 3 for the chorales
    (four voices, but held and tied notes leave fewer new notes at many onsets). NaN for
    an empty table.

    Unlike MusPy's ``polyphony`` (the mean number of pitches *sounding* per time step),
    this counts notes that *start* together, which is what the model writes.
    """
    table = _table(notes, ("step",))
    if len(table) == 0:
        return math.nan
    return float(len(table) / len(_onset_groups(table)))


def intervals(notes: object, line: str = "rows") -> np.ndarray:
    """Signed intervals (semitones) between consecutive notes of one note table.

    Args:
        notes: a note table or Piece.
        line: ``"rows"``: between consecutive rows, in the order the model reads and
            writes them (inside a chord, the steps up through the chord; between
            chords, the jump from the top of one to the bottom of the next);
            ``"top"``: the melodic intervals of the top voice, the highest pitch of
            each onset to the highest of the next (the soprano line of a chorale).
    """
    if line not in ("rows", "top"):
        raise ValueError(f"line must be 'rows' or 'top', got {line!r}")
    table = _table(notes, ("pitch", "step") if line == "top" else ("pitch",))
    pitches = table["pitch"].to_numpy(np.int64)
    if len(pitches) == 0:
        return np.zeros(0, np.int64)
    if line == "top":
        pitches = np.maximum.reduceat(pitches, _onset_groups(table))
    return np.diff(pitches)


def interval_histogram(notes: object, line: str = "rows") -> np.ndarray:
    """Counts of the :func:`intervals` of one or more note tables, pooled, on the
    integer bins ``-INTERVAL_CLIP .. +INTERVAL_CLIP`` (larger leaps share the end bins):
    ``2 * INTERVAL_CLIP + 1`` counts, index ``INTERVAL_CLIP`` being the repeated note."""
    ivs = [intervals(t, line) for t in _tables(notes)]
    iv = np.concatenate(ivs) if ivs else np.zeros(0, np.int64)
    iv = np.clip(iv, -INTERVAL_CLIP, INTERVAL_CLIP) + INTERVAL_CLIP
    return np.bincount(iv, minlength=2 * INTERVAL_CLIP + 1).astype(np.float64)


def music_stats(notes: object) -> dict[str, float]:
    """The scalar objective measures of one note table (a generation, or a real window).

    Args:
        notes: a note table or Piece with the columns ``pitch`` and ``step``.

    Returns:
        A dict with the keys of :data:`MUSIC_MEASURES` (see :data:`MUSIC_DESCRIPTIONS`):
        ``notes``; ``pitch_range``, ``pitch_class_entropy``, ``unique_pitches`` and
        ``chord_share`` as in :func:`degeneration_stats`; ``polyphony``
        (:func:`polyphony`), ``flam_rate`` (:func:`flam_rate`), and the mean absolute
        interval between consecutive rows and of the top voice (:func:`intervals`).
        Measures that need more notes than there are are NaN.
    """
    table = _table(notes, ("pitch", "step"))
    deg = degeneration_stats(table)
    out = {m: deg[m] for m in ("notes", "pitch_range", "pitch_class_entropy", "unique_pitches")}
    out["polyphony"] = polyphony(table)
    out["chord_share"] = chord_share(table)
    out["flam_rate"] = flam_rate(table)
    for key, line in (("mean_abs_interval", "rows"), ("mean_abs_melodic_interval", "top")):
        iv = intervals(table, line)
        out[key] = float(np.abs(iv).mean()) if len(iv) else math.nan
    return {m: out[m] for m in MUSIC_MEASURES}


_HISTOGRAM_FUNCS = {
    "pitch_class_histogram": pitch_class_histogram,
    "interval_histogram": lambda t: interval_histogram(t, "rows"),
    "melodic_interval_histogram": lambda t: interval_histogram(t, "top"),
    "step_histogram": step_histogram,
    "duration_histogram": duration_histogram,
}


def compare_sets(
    generated: object, real: object, length: int | None = None, metric: str = "tv"
) -> pd.DataFrame:
    """Objective measures of generated music next to real music of the same length.

    The real pieces are cut into consecutive, non-overlapping windows of ``length``
    notes (as :func:`reference_stats` does; leftovers dropped), because range, entropy
    and the like grow with the number of notes.

    Args:
        generated: the generated note tables (continuations only, without the primer),
            as a sequence or mapping of tables, or a
            :class:`~melody_utils.generate.GenerationResult`.
        real: real pieces (:class:`~melody_utils.data.Piece` or note tables, e.g. the
            held-out split), or a mapping whose values are such.
        length: window length for the real pieces; default: the median length of the
            generated tables. Raises ValueError if no real piece is that long.
        metric: ``"tv"`` or ``"js"``, the histogram distance (see
            :func:`distribution_distance`).

    Returns:
        A DataFrame indexed by ``measure`` (:data:`MUSIC_MEASURES`, then
        :data:`HISTOGRAMS`) with the columns ``description``; ``generated`` (mean over
        the generated tables); ``real`` (mean over each real piece's windows, then over
        pieces, as :func:`reference_stats`); ``real_sd`` (standard deviation over the
        real windows: how much one real window of this length varies, the yardstick for
        a generated value's distance from ``real``); ``distance`` (histogram rows only:
        the distance between the generated and the real histogram, pooled over tables
        and windows; 0 = same distribution, 1 = nothing in common). Scalar rows have no
        distance and histogram rows no mean (NaN). ``attrs`` holds ``length``,
        ``generated_tables``, ``real_pieces``, ``real_windows`` and ``metric``.
    """
    gen = [t for t in _tables(generated) if len(t)]
    if not gen:
        raise ValueError("need at least one non-empty generated table")
    if length is None:
        length = int(np.median([len(t) for t in gen]))
    windows = _windows(real, length)
    gen_rows = pd.DataFrame([music_stats(t) for t in gen])
    real_rows = pd.DataFrame([music_stats(w) for _, _, w in windows])
    real_rows["piece"] = [pid for pid, _, _ in windows]
    per_piece = real_rows.groupby("piece", sort=False)[list(MUSIC_MEASURES)].mean()
    real_tables = [w for _, _, w in windows]
    rows = []
    for m in MUSIC_MEASURES:
        rows.append(
            {
                "measure": m,
                "description": MUSIC_DESCRIPTIONS[m],
                "generated": float(gen_rows[m].mean()),
                "real": float(per_piece[m].mean()),
                "real_sd": float(real_rows[m].std(ddof=0)),
                "distance": math.nan,
            }
        )
    for h in HISTOGRAMS:
        func = _HISTOGRAM_FUNCS[h]
        rows.append(
            {
                "measure": h,
                "description": MUSIC_DESCRIPTIONS[h],
                "generated": math.nan,
                "real": math.nan,
                "real_sd": math.nan,
                "distance": distribution_distance(func(gen), func(real_tables), metric),
            }
        )
    table = pd.DataFrame(rows).set_index("measure")
    table.attrs.update(
        length=int(length),
        generated_tables=len(gen),
        real_pieces=len(per_piece),
        real_windows=len(windows),
        metric=metric,
    )
    return table


# --------------------------------------------------------------------------- copy check

#: The byte that separates pieces in the copy index (pitches are bytes 0..127, so no
#: query ever contains it and no match can run across two pieces).
_SEPARATOR = 0xFF


def _pitch_bytes(pitches: object) -> bytes:
    """A pitch sequence (a table, a Piece or a sequence of MIDI pitches) as bytes."""
    table = getattr(pitches, "notes", pitches)
    if isinstance(table, pd.DataFrame):
        arr = _table(table, ("pitch",))["pitch"].to_numpy()
    else:
        arr = np.asarray(pitches)
        if arr.ndim != 1:
            raise ValueError(f"expected a 1-D pitch sequence, got shape {arr.shape}")
    if len(arr) and not np.issubdtype(arr.dtype, np.integer):
        if not np.array_equal(arr, np.round(arr)):
            raise ValueError("pitches must be whole numbers")
    arr = arr.astype(np.int64)
    if len(arr) and (arr.min() < 0 or arr.max() >= N_PITCHES):
        bad = int(arr.min()) if arr.min() < 0 else int(arr.max())
        raise ValueError(f"pitch must lie in 0..{N_PITCHES - 1} (MIDI pitch), found {bad}")
    return arr.astype(np.uint8).tobytes()


def _suffix_array(text: bytes) -> np.ndarray:
    """Suffix array of ``text`` by prefix doubling (NumPy sorts, O(n log^2 n)).

    Suffixes are ordered as Python orders ``bytes`` (a proper prefix sorts first), so
    the array can be searched with :mod:`bisect` on slices of ``text``.
    """
    n = len(text)
    if n == 0:
        return np.zeros(0, np.int64)
    rank = np.frombuffer(text, dtype=np.uint8).astype(np.int64)
    k = 1
    while True:
        second = np.full(n, -1, np.int64)  # past the end: shorter suffixes sort first
        if k < n:
            second[: n - k] = rank[k:]
        sa = np.lexsort((second, rank))
        r1, r2 = rank[sa], second[sa]
        new = np.empty(n, np.int64)
        new[sa] = np.concatenate([[0], np.cumsum((r1[1:] != r1[:-1]) | (r2[1:] != r2[:-1]))])
        rank = new
        if rank[sa[-1]] == n - 1 or k >= n:  # all ranks distinct: fully sorted
            return sa
        k *= 2


@dataclass(frozen=True)
class CopyMatch:
    """The longest run of a query's pitches that also occurs in one training piece.

    Attributes:
        length: its length in notes (0 for an empty query, or one whose every pitch is
            absent from the training set).
        query_start: the query row where the run starts (the first such run if several
            are equally long); -1 when ``length`` is 0.
        piece_id: the training piece holding the run's first occurrence (in the order
            the pieces were indexed); None when ``length`` is 0.
        note_index: the row of that piece's note table where the occurrence starts.
        occurrences: how many places in the training set hold the run.
        pitches: the run itself.
        query_length: the query's length in notes.
    """

    length: int
    query_start: int
    piece_id: str | None
    note_index: int
    occurrences: int
    pitches: tuple[int, ...]
    query_length: int

    @property
    def share(self) -> float:
        """The run's length as a share of the query's (NaN for an empty query)."""
        return self.length / self.query_length if self.query_length else math.nan


class CopyIndex:
    """An exact index of the training set's pitch sequences, built once, for the copy
    check: what is the longest run of a generation's pitches that also occurs,
    contiguously and inside one piece, in the training set?

    Each piece's pitches (in note-table row order, the order the model reads) become
    bytes, joined with a separator byte that no pitch uses, so a run can never span two
    pieces; a suffix array of the whole sorts every suffix. Whether a pattern occurs is
    then a binary search (about log2 of the note count comparisons of short byte
    strings), and the longest shared run of a query of ``m`` notes takes at most ``2m``
    such searches (two pointers over the query). Building it for the ~90k notes of the
    Bach training split takes a fraction of a second; a 128-note query a few
    milliseconds (``benchmarks/copy_check_speed.py`` measures both).

    Args:
        pieces: the training pieces (:class:`~melody_utils.data.Piece` or note tables),
            or a mapping ``{id: table}``. Ids are the pieces' ``id``, the mapping's
            keys, or else their positions (``"0"``, ``"1"``, ...).

    Example::

        index = CopyIndex(splits["train"])
        match = index.longest_match(result.continuation(0))
        match.length, match.piece_id, match.note_index
    """

    def __init__(self, pieces: object) -> None:
        pairs = _ids_and_tables(pieces)
        if not pairs:
            raise ValueError("CopyIndex needs at least one training piece")
        self.piece_ids: list[str] = [pid for pid, _ in pairs]
        chunks: list[bytes] = []
        starts = []
        pos = 0
        for _, table in pairs:
            b = _pitch_bytes(table)
            starts.append(pos)
            chunks.append(b)
            pos += len(b) + 1
        self._text = bytes([_SEPARATOR]).join(chunks) + bytes([_SEPARATOR])
        self._starts = np.asarray(starts, np.int64)
        self._sa: list[int] = _suffix_array(self._text).tolist()
        self.n_notes = pos - len(pairs)

    def __len__(self) -> int:
        """Number of notes indexed."""
        return self.n_notes

    def __repr__(self) -> str:
        return f"CopyIndex({len(self.piece_ids)} pieces, {self.n_notes} notes)"

    def _range(self, pattern: bytes) -> tuple[int, int]:
        """The suffix-array rows whose suffixes start with ``pattern``."""
        n = len(pattern)
        text = self._text

        def key(s: int) -> bytes:
            return text[s : s + n]

        lo = bisect.bisect_left(self._sa, pattern, key=key)
        hi = bisect.bisect_right(self._sa, pattern, lo=lo, key=key)
        return lo, hi

    def _occurs(self, pattern: bytes) -> bool:
        sa, n = self._sa, len(pattern)
        text = self._text
        lo = bisect.bisect_left(sa, pattern, key=lambda s: text[s : s + n])
        return lo < len(sa) and text[sa[lo] : sa[lo] + n] == pattern

    def locate(self, pitches: object) -> list[tuple[str, int]]:
        """Every place a pitch sequence occurs in the training set, as ``(piece id,
        note index)`` in index order (pieces as given, rows ascending); empty if none.
        An empty sequence is not located (empty list)."""
        pattern = _pitch_bytes(pitches)
        if not pattern:
            return []
        lo, hi = self._range(pattern)
        return [self._where(p) for p in sorted(self._sa[lo:hi])]

    def contains(self, pitches: object) -> bool:
        """True when the whole pitch sequence occurs, contiguously, in one training piece."""
        pattern = _pitch_bytes(pitches)
        return not pattern or self._occurs(pattern)

    def _where(self, pos: int) -> tuple[str, int]:
        k = int(np.searchsorted(self._starts, pos, side="right")) - 1
        return self.piece_ids[k], int(pos - self._starts[k])

    def longest_match(self, query: object) -> CopyMatch:
        """The longest contiguous run of ``query``'s pitches found in one training piece.

        Exact (not sampled or hashed). Among runs of the greatest length, the one that
        starts first in the query is returned, located at its first occurrence in the
        training set.

        Args:
            query: a note table, a Piece or a sequence of MIDI pitches (e.g. a
                generation's continuation, primer excluded).

        Returns:
            A :class:`CopyMatch`. Read ``length`` against :func:`copy_reference` for
            real held-out windows of the same length: a run far longer than real pieces
            share with the training set is copying, not style.
        """
        q = _pitch_bytes(query)
        m = len(q)
        best, best_start = 0, -1
        j = 0
        for i in range(m):  # invariant: q[i:j] occurs (so q[i+1:j] does too)
            j = max(j, i)
            while j < m and self._occurs(q[i : j + 1]):
                j += 1
            if j - i > best:
                best, best_start = j - i, i
            if j == m:  # no later start can beat m - i
                break
        if best == 0:
            return CopyMatch(0, -1, None, -1, 0, (), m)
        run = q[best_start : best_start + best]
        lo, hi = self._range(run)
        piece_id, note = self._where(min(self._sa[lo:hi]))
        return CopyMatch(best, best_start, piece_id, note, hi - lo, tuple(run), m)


@dataclass
class CopyReference:
    """Longest runs shared with the training set by real held-out windows.

    Attributes:
        length: the window length in notes.
        runs: the longest shared run of each window (notes).
        piece_ids: the piece of each window.
        starts: the first row of each window in its piece.
    """

    length: int
    runs: np.ndarray
    piece_ids: list[str] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)

    @property
    def windows(self) -> int:
        return len(self.runs)

    @property
    def pieces(self) -> int:
        return len(set(self.piece_ids))

    def summary(self) -> dict[str, float]:
        """``windows``, ``pieces``, ``length`` and the ``mean``, ``median``, ``p90``
        (90th percentile) and ``max`` of the runs."""
        r = self.runs.astype(np.float64)
        return {
            "windows": float(self.windows),
            "pieces": float(self.pieces),
            "length": float(self.length),
            "mean": float(r.mean()),
            "median": float(np.median(r)),
            "p90": float(np.quantile(r, 0.9)),
            "max": float(r.max()),
        }

    def share_at_least(self, run: int) -> float:
        """Share of the real windows whose longest shared run is at least ``run`` notes.

        Read a generation's run with it: 0.5 means half the real windows share a run as
        long, an ordinary figure; 0 means no real window does, a sign of copying.
        """
        return float((self.runs >= run).mean())


def copy_reference(index: CopyIndex, pieces: object, length: int) -> CopyReference:
    """The copy check's yardstick: :meth:`CopyIndex.longest_match` of real held-out
    pieces cut into consecutive, non-overlapping windows of ``length`` notes.

    Args:
        index: the index of the training pieces.
        pieces: held-out pieces (not in the index), or a mapping of them.
        length: the window length, normally the generation's ``n_notes``. Raises
            ValueError if no piece is that long.

    Returns:
        A :class:`CopyReference` (its ``summary()`` gives mean, median, p90 and max).
    """
    windows = _windows(pieces, length)
    runs = np.array([index.longest_match(w).length for _, _, w in windows], np.int64)
    return CopyReference(
        int(length), runs, [pid for pid, _, _ in windows], [s for _, s, _ in windows]
    )


def copy_report(
    index: CopyIndex, generated: object, reference: CopyReference | None = None
) -> pd.DataFrame:
    """The copy check of each generated table, next to the real reference.

    Args:
        index: the index of the training pieces.
        generated: generated note tables (continuations only), a mapping of them, or a
            :class:`~melody_utils.generate.GenerationResult`.
        reference: from :func:`copy_reference`, on windows of the generations' length.

    Returns:
        One row per generated table: ``notes``, ``longest_run``, ``query_start``,
        ``piece_id`` and ``note_index`` (where the run occurs in the training set),
        ``occurrences``; with a reference also ``real_median`` and ``real_max`` (the
        reference's figures) and ``real_share_at_least`` (share of real windows sharing
        a run at least as long; near 0 means copying beyond what real music does).
    """
    rows = []
    for table in _tables(generated):
        m = index.longest_match(table)
        row = {
            "notes": m.query_length,
            "longest_run": m.length,
            "query_start": m.query_start,
            "piece_id": m.piece_id,
            "note_index": m.note_index,
            "occurrences": m.occurrences,
        }
        if reference is not None:
            row["real_median"] = float(np.median(reference.runs))
            row["real_max"] = int(reference.runs.max())
            row["real_share_at_least"] = reference.share_at_least(m.length)
        rows.append(row)
    out = pd.DataFrame(rows)
    out.index.name = "generation"
    if reference is not None:
        out.attrs["reference_length"] = reference.length
    return out
