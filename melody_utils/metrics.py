"""Measures of music (notebook 05): :func:`measures` of a table, :func:`reference_stats` of real
windows of the same length; the copy check :class:`CopyIndex` (the longest run of pitches also
in one training piece) and its real yardstick :func:`copy_reference`."""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from .config import CHORD_SNAP, FLAM_MAX, N_PITCHES

#: Every measure, in display order, with what it means.
MEASURES = {
    "notes": "notes",
    "repeat_share": "share of consecutive notes with the same pitch",
    "longest_run": "longest run of one pitch (notes)",
    "pitch_class_entropy": "pitch-class entropy (bits, max 3.58)",
    "pitch_range": "pitch range (semitones)",
    "unique_pitches": "distinct pitches",
    "polyphony": "notes per onset (1 = a melody)",
    "chord_share": "share of notes starting with the previous one (chord tones)",
    "flam_rate": "share of steps of 10-100 ms (flams: neither together nor a note value)",
    "mean_abs_interval": "mean |interval| between consecutive notes (semitones)",
    "mean_abs_melodic_interval": "mean |interval| of the top voice, onset to onset",
    "copied_run": "longest run of pitches also in the training set (notes)",
}
#: Bin edges (seconds) of the step and duration histograms: half an octave wide, placed so
#: that every power of two of a second sits mid-bin; values outside go to the end bins.
TIME_BIN_EDGES = 2.0 ** (np.arange(-14, 9) / 2 + 0.25)
#: Intervals beyond ±24 semitones share the end bins of the interval histograms.
INTERVAL_CLIP = 24


def _table(notes: object) -> pd.DataFrame:
    table = getattr(notes, "notes", notes)  # a Piece carries its table in .notes
    if not isinstance(table, pd.DataFrame) or not {"pitch", "step"} <= set(table.columns):
        raise TypeError(f"expected a note table (pitch, step) or Piece, got {type(notes).__name__}")
    return table


def _named(pieces: object) -> list[tuple[str, object]]:
    if isinstance(pieces, Mapping):
        return [(str(k), v) for k, v in pieces.items()]
    return [(str(getattr(p, "id", i)), p) for i, p in enumerate(pieces)]


def chord_share(notes: object) -> float:
    """Share of the steps after the first under ``CHORD_SNAP`` (chord tones); NaN if none."""
    steps = _table(notes)["step"].to_numpy(np.float64)[1:]
    return float((steps < CHORD_SNAP).mean()) if len(steps) else math.nan


def flam_rate(notes: object) -> float:
    """Share of the steps after the first in ``CHORD_SNAP .. FLAM_MAX`` (flams); NaN if none."""
    steps = _table(notes)["step"].to_numpy(np.float64)[1:]
    return float(((steps >= CHORD_SNAP) & (steps < FLAM_MAX)).mean()) if len(steps) else math.nan


def _sounding_top(table: pd.DataFrame, onsets: np.ndarray) -> np.ndarray:
    """The highest pitch sounding at each onset: the notes starting there and those still
    held (ending more than ``CHORD_SNAP`` after it), so an inner voice moving under a held
    soprano is not taken for the top voice. Rows in start order, as in a note table."""
    pitch = table["pitch"].to_numpy(np.int64)
    start, end = table["start"].to_numpy(np.float64), table["end"].to_numpy(np.float64)
    bounds, heap = np.r_[onsets, len(pitch)], []
    top = np.empty(len(onsets), np.int64)
    for k in range(len(onsets)):
        first = bounds[k]
        for row in range(first, bounds[k + 1]):
            heapq.heappush(heap, (-pitch[row], end[row], row))
        while heap[0][2] < first and heap[0][1] - start[first] <= CHORD_SNAP:
            heapq.heappop(heap)  # ended before this onset (time only moves on)
        top[k] = -heap[0][0]
    return top


def intervals(notes: object, line: str = "rows") -> np.ndarray:
    """Signed intervals between consecutive rows, or (``"top"``) of the top voice: the highest
    note sounding at each onset (held notes count; without start and end, the highest new)."""
    table = _table(notes)
    pitch = table["pitch"].to_numpy(np.int64)
    if line not in ("rows", "top"):
        raise ValueError(f"line must be 'rows' or 'top', got {line!r}")
    if line == "top" and len(pitch):
        onsets = np.flatnonzero(np.r_[True, table["step"].to_numpy()[1:] >= CHORD_SNAP])
        if {"start", "end"} <= set(table.columns):
            pitch = _sounding_top(table, onsets)
        else:
            pitch = np.maximum.reduceat(pitch, onsets)
    return np.diff(pitch)


def measures(notes: object) -> dict[str, float]:
    """Every measure of :data:`MEASURES` but ``copied_run`` (NaN where too few notes)."""
    table = _table(notes)
    pitch, n = table["pitch"].to_numpy(np.int64), len(table)
    out = dict.fromkeys(list(MEASURES)[:-1], math.nan)
    out["notes"] = float(n)
    if n == 0:
        return out
    counts = np.bincount(pitch % 12, minlength=12)
    p = counts[counts > 0] / n
    runs = np.diff(np.r_[-1, np.flatnonzero(np.diff(pitch) != 0), n - 1])
    out["longest_run"] = float(runs.max())
    out["pitch_class_entropy"] = float(max(0.0, -(p * np.log2(p)).sum()))
    out["pitch_range"] = float(np.ptp(pitch))
    out["unique_pitches"] = float(len(np.unique(pitch)))
    out["polyphony"] = n / (1 + int((table["step"].to_numpy()[1:] >= CHORD_SNAP).sum()))
    if n > 1:
        rows, top = intervals(table), intervals(table, "top")
        out["repeat_share"] = float((rows == 0).mean())
        out["chord_share"], out["flam_rate"] = chord_share(table), flam_rate(table)
        out["mean_abs_interval"] = float(np.abs(rows).mean())
        out["mean_abs_melodic_interval"] = float(np.abs(top).mean()) if len(top) else math.nan
    return out


def real_windows(pieces: object, length: int) -> list[tuple[str, int, pd.DataFrame]]:
    """Real pieces cut into consecutive windows of ``length`` notes (leftovers dropped), as
    ``(piece id, first row, window)``: the one way real music is cut to compare."""
    if isinstance(length, bool) or not isinstance(length, int | np.integer) or length < 1:
        raise ValueError(f"length must be a positive integer, got {length!r}")
    if isinstance(pieces, pd.DataFrame) or hasattr(pieces, "notes"):
        pieces = [pieces]
    tables = [(pid, _table(p)) for pid, p in _named(pieces)]
    starts = [(pid, t, i * length) for pid, t in tables for i in range(len(t) // length)]
    out = [(pid, a, t.iloc[a : a + length]) for pid, t, a in starts]
    if not out:
        longest = max((len(t) for _, t in tables), default=0)
        raise ValueError(f"no real piece has {length} notes (the longest has {longest})")
    return out


def _window_measures(windows: list[tuple[str, int, pd.DataFrame]]) -> pd.DataFrame:
    return pd.DataFrame([measures(w) for _, _, w in windows], [pid for pid, _, _ in windows])


def reference_stats(pieces, length: int, copy_index: CopyIndex | None = None) -> dict[str, float]:
    """:func:`measures` (with ``copy_index`` also ``copied_run``) of real pieces' windows of
    ``length`` notes, averaged per piece, then over pieces; adds ``pieces`` and ``windows``."""
    windows = real_windows(pieces, length)
    rows = _window_measures(windows)
    if copy_index is not None:
        rows["copied_run"] = [copy_index.longest_match(w).length for _, _, w in windows]
    out = rows.groupby(level=0, sort=False).mean().mean().to_dict()
    return {**out, "pieces": float(rows.index.nunique()), "windows": float(len(windows))}


def stats_table(generated: Sequence[Mapping], reference: Mapping | None = None) -> pd.DataFrame:
    """The measures every variation has (rows) of each variation, then of ``reference``."""
    rows = [m for m in MEASURES if generated and all(m in s for s in generated)]
    data = {f"variation {i + 1}": [s[m] for m in rows] for i, s in enumerate(generated)}
    if reference is not None:
        pieces = int(reference.get("pieces", 0))
        label = f"real (mean over windows of a piece, then {pieces} pieces)"
        data[label] = [reference.get(m, math.nan) for m in rows]
    return pd.DataFrame(data, index=pd.Index([MEASURES[m] for m in rows], name="measure")).round(3)


def _tables(notes: object) -> list[pd.DataFrame]:
    """Tables of a table or Piece, a sequence or mapping of them, or a GenerationResult."""
    if hasattr(notes, "continuation"):
        return [notes.continuation(i) for i in range(len(notes))]
    if isinstance(notes, pd.DataFrame) or hasattr(notes, "notes"):
        return [_table(notes)]
    return [_table(t) for t in (notes.values() if isinstance(notes, Mapping) else notes)]


def _pooled(notes: object, column: str, dtype: type = np.float64) -> np.ndarray:
    skip = 1 if column == "step" else 0
    values = [t[column].to_numpy(dtype)[skip:] for t in _tables(notes)]
    return np.concatenate([np.zeros(0, dtype), *values])


def _binned(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    idx = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    return np.bincount(idx, minlength=len(edges) - 1).astype(np.float64)


def step_histogram(notes: object) -> np.ndarray:
    """Counts of the pooled steps: bin 0 the chord tones, then the :data:`TIME_BIN_EDGES` bins."""
    s = _pooled(notes, "step")
    return np.r_[float((s < CHORD_SNAP).sum()), _binned(s[s >= CHORD_SNAP], TIME_BIN_EDGES)]


def duration_histogram(notes: object) -> np.ndarray:
    """Counts of the durations of one or more tables on the :data:`TIME_BIN_EDGES` bins."""
    return _binned(_pooled(notes, "duration"), TIME_BIN_EDGES)


def pitch_class_histogram(notes: object) -> np.ndarray:
    """Counts of the 12 pitch classes (C = 0) of one or more tables."""
    return np.bincount(_pooled(notes, "pitch", np.int64) % 12, minlength=12).astype(np.float64)


def interval_histogram(notes: object, line: str = "rows") -> np.ndarray:
    """Counts of the pooled :func:`intervals` on ``-24 .. 24`` (index 24: the repeated note)."""
    iv = np.concatenate([np.zeros(0, np.int64), *(intervals(t, line) for t in _tables(notes))])
    iv = np.clip(iv, -INTERVAL_CLIP, INTERVAL_CLIP) + INTERVAL_CLIP
    return np.bincount(iv, minlength=2 * INTERVAL_CLIP + 1)


def distribution_distance(p, q, metric: str = "tv") -> float:
    """Distance of two normalised histograms: ``"tv"`` total variation (the share of mass that
    must move) or ``"js"`` Jensen-Shannon in bits; 0 the same, 1 disjoint, NaN if one is empty."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    if p.shape != q.shape or p.ndim != 1 or (p < 0).any() or (q < 0).any():
        raise ValueError("histograms must be alike 1-D arrays of non-negative counts")
    if metric not in ("tv", "js"):
        raise ValueError(f"metric must be 'tv' or 'js', got {metric!r}")
    if p.sum() == 0 or q.sum() == 0:
        return math.nan
    p, q = p / p.sum(), q / q.sum()
    if metric == "tv":
        return float(min(1.0, 0.5 * np.abs(p - q).sum()))
    m = (p + q) / 2
    kl = [float((a[a > 0] * np.log2(a[a > 0] / m[a > 0])).sum()) for a in (p, q)]
    return float(min(1.0, max(0.0, sum(kl) / 2)))


@dataclass(frozen=True)
class CopyMatch:
    """The longest run of a query's pitches in one training piece: its length, where it starts
    in the query and (first occurrence) in the training set, its occurrences and pitches."""

    length: int
    query_start: int
    piece_id: str | None
    note_index: int
    occurrences: int
    pitches: tuple[int, ...]
    query_length: int

    @property
    def share(self) -> float:
        """The run's length as a share of the query's."""
        return self.length / self.query_length if self.query_length else math.nan


def _pitch_bytes(pitches: object) -> bytes:
    table = getattr(pitches, "notes", pitches)
    arr = np.asarray(table["pitch"] if isinstance(table, pd.DataFrame) else table)
    in_range = arr.size == 0 or (0 <= arr.min() and arr.max() < N_PITCHES)
    if arr.ndim != 1 or not in_range or not np.array_equal(arr, np.round(arr)):
        raise ValueError("pitches must be a 1-D sequence of whole MIDI numbers in 0..127")
    return arr.astype(np.uint8).tobytes()


def _suffix_array(text: bytes) -> list[int]:
    """Suffix array by prefix doubling (NumPy sorts); suffixes in Python's ``bytes`` order."""
    n = len(text)
    rank = np.frombuffer(text, dtype=np.uint8).astype(np.int64)
    k = 1
    while True:
        second = np.full(n, -1, np.int64)
        second[: max(n - k, 0)] = rank[k:]
        sa = np.lexsort((second, rank))
        r1, r2 = rank[sa], second[sa]
        rank = np.empty(n, np.int64)
        rank[sa] = np.r_[0, np.cumsum((r1[1:] != r1[:-1]) | (r2[1:] != r2[:-1]))]
        if n == 0 or rank[sa[-1]] == n - 1 or k >= n:
            return sa.tolist()
        k *= 2


class CopyIndex:
    """An exact index of the training pitch sequences (Pieces, note tables or ``{id: table}``):
    a suffix array over their bytes, joined by a separator no pitch uses. ``transposed=True``
    indexes the intervals instead, so a run copied in another key counts (lengths in notes)."""

    def __init__(self, pieces: object, transposed: bool = False) -> None:
        self.transposed = bool(transposed)
        chunks = [(pid, _pitch_bytes(p)) for pid, p in _named(pieces)]
        if not chunks:
            raise ValueError("CopyIndex needs at least one training piece")
        self.piece_ids = [k for k, _ in chunks]
        self.n_notes = sum(len(b) for _, b in chunks)
        chunks = [(k, self._encode(b)) for k, b in chunks]
        self._starts = np.cumsum([0] + [len(b) + 1 for _, b in chunks[:-1]])
        self._text = b"\xff".join(b for _, b in chunks) + b"\xff"
        self._sa = _suffix_array(self._text)

    def _encode(self, pitch_bytes: bytes) -> bytes:
        """The pitches, or (transposed) the intervals + 127 (0..254; the separator is 255)."""
        if not self.transposed:
            return pitch_bytes
        pitch = np.frombuffer(pitch_bytes, np.uint8).astype(np.int16)
        return (np.diff(pitch) + 127).astype(np.uint8).tobytes()

    def __len__(self) -> int:
        return self.n_notes

    def __repr__(self) -> str:
        kind = ", transposed" if self.transposed else ""
        return f"CopyIndex({len(self.piece_ids)} pieces, {self.n_notes} notes{kind})"

    def _range(self, pattern: bytes) -> tuple[int, int]:
        n, text = len(pattern), self._text
        lo = bisect.bisect_left(self._sa, pattern, key=lambda s: text[s : s + n])
        return lo, bisect.bisect_right(self._sa, pattern, lo=lo, key=lambda s: text[s : s + n])

    def _where(self, pos: int) -> tuple[str, int]:
        k = int(np.searchsorted(self._starts, pos, side="right")) - 1
        return self.piece_ids[k], int(pos - self._starts[k])

    def locate(self, pitches: object) -> list[tuple[str, int]]:
        """Every ``(piece id, note index)`` where a pitch sequence occurs (transposed: in any
        key; a single note occurs everywhere and is not listed), in index order."""
        pattern = self._encode(_pitch_bytes(pitches))
        lo, hi = self._range(pattern) if pattern else (0, 0)
        return [self._where(p) for p in sorted(self._sa[lo:hi])]

    def contains(self, pitches: object) -> bool:
        """True when the whole sequence occurs, contiguously, in one training piece (transposed:
        in some key)."""
        pattern = pitches if isinstance(pitches, bytes) else self._encode(_pitch_bytes(pitches))
        n, text = len(pattern), self._text
        lo = bisect.bisect_left(self._sa, pattern, key=lambda s: text[s : s + n])
        return not n or lo < len(self._sa) and text[self._sa[lo] : self._sa[lo] + n] == pattern

    def longest_match(self, query: object) -> CopyMatch:
        """The longest contiguous run of ``query``'s pitches found in one training piece
        (exact, or in any key when transposed, where a run needs one shared interval, two
        notes; among equally long runs, the first in the query, at its first occurrence)."""
        pitches = _pitch_bytes(query)
        q = self._encode(pitches)
        best, best_start, j = 0, -1, 0
        for i in range(len(q)):  # q[i:j] occurs, so q[i+1:j] does too
            j = max(j, i)
            while j < len(q) and self.contains(q[i : j + 1]):
                j += 1
            if j - i > best:
                best, best_start = j - i, i
            if j == len(q):
                break
        if best == 0:
            return CopyMatch(0, -1, None, -1, 0, (), len(pitches))
        lo, hi = self._range(q[best_start : best_start + best])
        where = self._where(min(self._sa[lo:hi]))
        notes = best + self.transposed  # k intervals are k + 1 notes
        run = tuple(pitches[best_start : best_start + notes])
        return CopyMatch(notes, best_start, *where, hi - lo, run, len(pitches))


@dataclass
class CopyReference:
    """Longest runs shared with the training set by real held-out windows of ``length``."""

    length: int
    runs: np.ndarray
    piece_ids: list[str]
    starts: list[int]

    def summary(self) -> dict[str, float]:
        """``windows``, ``pieces``, ``length`` and the runs' mean, median, p90 and max."""
        r = self.runs.astype(np.float64)
        keys = ("windows", "pieces", "length", "mean", "median", "p90", "max")
        counts = (len(r), len(set(self.piece_ids)), self.length)
        values = (*counts, r.mean(), np.median(r), np.quantile(r, 0.9), r.max())
        return {k: float(v) for k, v in zip(keys, values, strict=True)}

    def share_at_least(self, run: int) -> float:
        """Share of the real windows sharing a run of at least ``run`` notes (near 0: copying)."""
        return float((self.runs >= run).mean())


def copy_reference(index: CopyIndex, pieces: object, length: int) -> CopyReference:
    """The yardstick: :meth:`CopyIndex.longest_match` of real held-out windows of ``length``."""
    pids, starts, tables = zip(*real_windows(pieces, length), strict=True)
    runs = np.array([index.longest_match(w).length for w in tables], np.int64)
    return CopyReference(int(length), runs, list(pids), list(starts))


def copy_report(
    index: CopyIndex, generated, reference: CopyReference | None = None
) -> pd.DataFrame:
    """Each generated table's longest run shared with training and where, beside the
    reference's median, max and share of real windows sharing a run at least as long."""
    matches = [index.longest_match(t) for t in _tables(generated)]
    cols = ["query_length", "length", "query_start", "piece_id", "note_index", "occurrences"]
    out = pd.DataFrame([asdict(m) for m in matches], columns=cols)
    out = out.rename(columns={"query_length": "notes", "length": "longest_run"})
    if reference is not None:
        out["real_median"] = float(np.median(reference.runs))
        out["real_max"] = int(reference.runs.max())
        out["real_share_at_least"] = [reference.share_at_least(m.length) for m in matches]
    return out.rename_axis("generation")
