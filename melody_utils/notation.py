"""Scores in the notebook: a note table or a music21 score engraved as SVG, offline.

A piano roll shows time and pitch; a score shows what a musician reads (key, metre,
voices, note values). music21's ``.show()`` needs MuseScore or LilyPond, which a fresh
machine does not have, so this module engraves with Verovio instead: the ``verovio``
wheel from PyPI carries its engraving code, music fonts and data, and needs no network
and no other program. The route is

    note table --(quantize, :func:`notes_to_score`)--> music21 score
    --(music21's MusicXML writer)--> MusicXML --(Verovio)--> SVG

* :func:`notes_to_score` turns a note table (times in seconds) into a music21
  :class:`~music21.stream.Score`: onsets and ends are rounded to a grid (16th notes by
  default) at a tempo (``bpm``; by default the commonest note length is taken for a
  quarter note, see :func:`estimate_bpm`), notes that start and end together
  become chords, notes that overlap with other rhythms go to separate voices, and wide
  music is split between a treble and a bass staff. Notes from row ``split_at`` on (or
  the rows of a ``generated`` column, as :func:`melody_utils.generate.generate` writes)
  are coloured, like a generated continuation in :func:`~melody_utils.plots.plot_piano_roll`.
* :func:`score_svg` engraves a note table or a music21 score to one SVG string;
* :func:`show_score` wraps it in an ``IPython.display.SVG``: the SVG is inline in the
  notebook (no file, no URL, no path of this machine), and music glyphs are drawn as
  paths, so it looks the same without the fonts installed.

A note table holds no key, metre, barlines, pickups or spelling: the key is estimated
(Krumhansl-Schmuckler, music21's ``analyze("key")``) and sets the key signature and how
black keys are spelled; the metre is ``time_signature`` counted from the first note, so
a piece that starts with a pickup is drawn one pickup off the real barlines. To see a
corpus piece as written, pass its music21 score itself
(``music21.corpus.parse("bach/bwv66.6")``).

Cost: chorale BWV 66.6 (163 notes, 10 bars) engraves in about 0.3 s from its music21
score and 0.3 to 0.9 s from its note table (quantizing, key finding and music21's
notation fix-ups come first), as an SVG of 65 to 85 kB; a 491-note chorale table takes
about 1 s and 170 kB. :data:`MAX_MEASURES` bounds what is drawn unless asked otherwise.
"""

from __future__ import annotations

import copy
import hashlib
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import pandas as pd

from .notes import check_pitch_range

#: Tempo (quarter notes a minute) when a note table has no note lengths to go by.
DEFAULT_BPM = 120.0
#: Rounding grid for onsets and ends, in quarter notes (0.25 = a 16th note).
DEFAULT_GRID = 0.25
#: Pitches from this one up go to the treble staff (60 = middle C).
SPLIT_PITCH = 60
#: Colour of highlighted notes (matplotlib's ``tab:orange``, as in the piano rolls).
HIGHLIGHT_COLOR = "#ff7f0e"
#: Most measures engraved unless ``max_measures`` says otherwise (a warning says so).
MAX_MEASURES = 64
#: More overlapping rhythms than this on one staff are drawn as tied chords in one voice.
MAX_VOICES = 4
#: Width of the SVG in pixels, and Verovio's scale in percent (40: a 7 px staff space).
WIDTH = 900
SCALE = 40

_LOG_SET = False


def _verovio() -> object:
    try:
        import verovio
    except ImportError as exc:  # pragma: no cover - verovio is a requirement
        raise ImportError(
            "engraving scores needs the verovio package: pip install verovio (see requirements.txt)"
        ) from exc
    global _LOG_SET
    if not _LOG_SET:  # Verovio prints its warnings to stderr, outside the notebook cell
        verovio.enableLog(verovio.LOG_ERROR)
        _LOG_SET = True
    return verovio


# --------------------------------------------------------------------------- note table -> score


@dataclass
class _Event:
    """Notes on one staff that start and end together (a note or a chord), in grid ticks."""

    on: int
    off: int
    pitches: list[int] = field(default_factory=list)
    marked: list[bool] = field(default_factory=list)
    ties: list[str | None] = field(default_factory=list)  # music21 tie type per pitch

    def add(self, pitch: int, marked: bool, tie: str | None = None) -> None:
        """Add a pitch (the same pitch twice at once: one note, marked if either is)."""
        if pitch in self.pitches:
            i = self.pitches.index(pitch)
            self.marked[i] = self.marked[i] or marked
            return
        self.pitches.append(pitch)
        self.marked.append(marked)
        self.ties.append(tie)


def _check_table(notes: pd.DataFrame) -> pd.DataFrame:
    """Positional ``pitch, start, end`` columns as numbers, validated (clear errors)."""
    if not isinstance(notes, pd.DataFrame):
        raise TypeError(
            f"expected a note table (pandas DataFrame) or a music21 stream, "
            f"got {type(notes).__name__}"
        )
    if len(notes) == 0:
        raise ValueError("nothing to engrave: the note table is empty")
    if "pitch" not in notes or "start" not in notes or not ({"end", "duration"} & set(notes)):
        raise ValueError(
            "a note table needs the columns pitch, start and end (or duration); got "
            f"{list(notes.columns)}"
        )
    try:
        pitch = notes["pitch"].to_numpy(np.float64)
        start = notes["start"].to_numpy(np.float64)
        end = (
            notes["end"].to_numpy(np.float64)
            if "end" in notes
            else start + notes["duration"].to_numpy(np.float64)
        )
    except (TypeError, ValueError):
        raise ValueError("pitch, start and end must hold numbers") from None
    if not (np.isfinite(pitch).all() and np.isfinite(start).all() and np.isfinite(end).all()):
        raise ValueError("the note table holds NaN or infinite values")
    if (pitch != np.round(pitch)).any():
        raise ValueError("pitches must be whole MIDI numbers")
    check_pitch_range(pitch, "pitch")
    if (end <= start).any():
        raise ValueError(
            f"{int((end <= start).sum())} note(s) end before they start (end <= start)"
        )
    return pd.DataFrame({"pitch": pitch.astype(np.int64), "start": start, "end": end})


def _marked_rows(notes: pd.DataFrame, split_at: int | None) -> np.ndarray:
    """Which rows to colour: from ``split_at`` on, else the ``generated`` column, else none."""
    if split_at is not None:
        if not isinstance(split_at, int | np.integer) or isinstance(split_at, bool):
            raise TypeError(f"split_at must be a row number (int), got {split_at!r}")
        if not 0 <= split_at <= len(notes):
            raise ValueError(f"split_at must lie in 0..{len(notes)} (rows), got {split_at}")
        return np.arange(len(notes)) >= split_at
    if "generated" in notes:
        return notes["generated"].to_numpy(bool)
    return np.zeros(len(notes), dtype=bool)


def estimate_bpm(notes: pd.DataFrame) -> float:
    """The tempo at which the commonest note length of a note table is a quarter note.

    Durations are put in 10 ms bins; the commonest bin (its mean, so a score's exact
    0.625 s gives exactly 96) is taken when it holds a fifth of the notes, else the median
    duration (performed or generated music, without a grid). (The time between onsets
    would mislead: in four voices, one voice's eighth notes make most steps eighths.)
    Scores are timed by their own tempo marks: the chorales of music21's corpus run at
    76 to 120 quarter notes a minute, so no single default tempo fits them all.
    """
    lengths = (notes["end"] - notes["start"]).to_numpy(np.float64)
    lengths = lengths[(lengths > 0) & np.isfinite(lengths)]
    if len(lengths) == 0:
        return DEFAULT_BPM
    bins = np.round(lengths / 0.01).astype(np.int64)
    values, counts = np.unique(bins, return_counts=True)
    best = values[counts.argmax()]
    quarter = (
        float(lengths[bins == best].mean())
        if counts.max() >= 0.2 * len(lengths)
        else float(np.median(lengths))
    )
    return float(np.clip(60.0 / quarter, 20.0, 400.0))


def _spelling(key: object) -> dict[int, str]:
    """Pitch class -> note name in ``key``: its scale, the raised 6th and 7th of a minor
    key, then sharps in sharp keys and flats in flat keys."""
    from music21 import pitch as m21pitch

    names: dict[int, str] = {}
    scale = list(key.pitches)
    if key.mode == "minor":
        tonic = m21pitch.Pitch(key.tonic.name)  # an estimated key's tonic respells itself
        scale += [tonic.transpose("M6"), tonic.transpose("M7")]
    for p in scale:
        names.setdefault(p.pitchClass, p.name)
    for pc in range(12):
        if pc not in names:
            p = m21pitch.Pitch(midi=60 + pc)  # music21's choice: C#, E-, F#, G#, B-
            if (key.sharps > 0 and "-" in p.name) or (key.sharps < 0 and "#" in p.name):
                p = p.getEnharmonic()
            names[pc] = p.name
    return names


def _pitch(midi: int, names: dict[int, str]) -> object:
    """A music21 Pitch of MIDI number ``midi`` spelled as ``names`` says."""
    from music21 import pitch as m21pitch

    p = m21pitch.Pitch(names[midi % 12])
    p.octave = midi // 12 - 1
    p.octave += round((midi - p.ps) / 12)  # B#, C- cross the octave
    return p


def _estimate_key(pitches: np.ndarray, lengths: np.ndarray) -> object:
    """music21's key estimate for these pitches, each weighted by its length."""
    from music21 import key as m21key
    from music21 import note, stream

    s = stream.Stream()
    for p, length in zip(pitches, lengths, strict=True):
        s.append(note.Note(int(p), quarterLength=float(max(length, 0.25))))
    found = s.analyze("key")
    return m21key.Key(found.tonic.name, found.mode)


def _voices(events: list[_Event]) -> list[list[_Event]]:
    """Put events in as few voices as possible, none overlapping within a voice.

    Greedy by onset (optimal for intervals: as many voices as rhythms sound at once);
    among events that start together the highest goes to the lowest free voice, so
    voice 1 tends to be the top line (stems up) and voice 2 the one under it.
    """
    voices: list[list[_Event]] = []
    for ev in sorted(events, key=lambda e: (e.on, -max(e.pitches), e.off)):
        free = [v for v in voices if v[-1].off <= ev.on]
        if free:
            free[0].append(ev)
        else:
            voices.append([ev])
    return voices


def _slices(events: list[_Event]) -> list[_Event]:
    """One voice for music with too many rhythms at once: cut at every onset and end, a
    chord of what sounds in each piece; a note that sounds across cuts is tied."""
    cuts = sorted({e.on for e in events} | {e.off for e in events})
    out = []
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        piece = _Event(a, b)
        sounding = [
            (p, m, e)
            for e in events
            if e.on <= a < e.off
            for p, m in zip(e.pitches, e.marked, strict=True)
        ]
        for p, m, e in sorted(sounding, key=lambda x: x[0]):
            before, after = e.on < a, e.off > b
            tie = (
                "continue" if before and after else "stop" if before else "start" if after else None
            )
            piece.add(p, m, tie)
        if piece.pitches:
            out.append(piece)
    return out


def _element(ev: _Event, grid: Fraction, names: dict[int, str], color: str) -> object:
    from music21 import chord, note, tie

    ql = (ev.off - ev.on) * grid
    parts = []
    for p, m, t in zip(ev.pitches, ev.marked, ev.ties, strict=True):
        n = note.Note(_pitch(p, names))
        if t is not None:
            n.tie = tie.Tie(t)
        if m:
            n.style.color = color
        parts.append(n)
    el = parts[0] if len(parts) == 1 else chord.Chord(parts)
    el.quarterLength = ql
    return el


def _staff(
    events: list[_Event],
    n_ticks: int,
    grid: Fraction,
    names: dict[int, str],
    color: str,
    first: Sequence[object],
) -> object:
    """A PartStaff of measures holding ``events`` in voices; rests fill the gaps (shown in
    voice 1, hidden in the others so a second voice appears only where it is needed)."""
    from music21 import note, stream

    voices = _voices(events) if events else [[]]
    if len(voices) > MAX_VOICES:
        voices = [_slices(events)]
    flat = stream.PartStaff()
    for el in first:
        flat.insert(0, el)
    for i, evs in enumerate(voices):
        v = stream.Voice()
        t = 0
        for ev in [*evs, _Event(n_ticks, n_ticks)]:
            if ev.on > t:
                rest = note.Rest(quarterLength=(ev.on - t) * grid)
                rest.style.hideObjectOnPrint = i > 0
                v.insert(t * grid, rest)
            if ev.pitches:
                v.insert(ev.on * grid, _element(ev, grid, names, color))
            t = max(t, ev.off)
        flat.insert(0, v)
    flat.makeMeasures(inPlace=True)
    staff = flat
    staff.makeNotation(inPlace=True)  # ties over barlines, beams, accidentals in the key
    for m in staff.getElementsByClass("Measure"):
        for i, v in enumerate(list(m.voices)):
            v.id = str(i + 1)  # MusicXML voices count from 1
            if i and all(el.isRest and el.style.hideObjectOnPrint for el in v.notesAndRests):
                m.remove(v)  # a voice of hidden rests only: leave it out
    return staff


def notes_to_score(
    notes: pd.DataFrame,
    *,
    bpm: float | str = "auto",
    grid: float = DEFAULT_GRID,
    staves: int | None = None,
    split_pitch: int = SPLIT_PITCH,
    split_at: int | None = None,
    color: str = HIGHLIGHT_COLOR,
    time_signature: str = "4/4",
    key: str | None = "auto",
    max_measures: int | None = None,
    title: str | None = None,
) -> object:
    """A music21 Score of a note table (times in seconds), ready to engrave or write.

    Args:
        notes: a note table (``pitch, start, end``; ``duration`` instead of ``end`` is
            accepted). Rows need not be sorted.
        bpm: quarter notes a minute: a note of ``60 / bpm`` seconds is a quarter note.
            ``"auto"``: the commonest note length is a quarter note (:func:`estimate_bpm`),
            measured on the rows that are not coloured when there are 8 or more (a
            primer from a score keeps its grid; generated timings have none).
        grid: onsets and ends are rounded to multiples of this many quarter notes
            (0.25: 16ths; 1/3 for eighth-note triplets). A note is at least one grid
            step long.
        staves: 1 or 2; None picks one staff (treble or bass) when every pitch fits it
            comfortably (all from G3 up, or all up to E4), else two.
        split_pitch: with two staves, pitches from this one up go to the treble staff.
        split_at: colour the rows from this position on (e.g. a continuation after its
            primer). None colours the rows of a boolean ``generated`` column when the
            table has one, else nothing.
        color: the highlight colour (any matplotlib colour, e.g. ``"tab:orange"``).
        time_signature: the metre, counted from the first note (shifted to bar 1).
        key: ``"auto"`` estimates it from the notes, a name such as ``"A"`` or ``"f#"``
            (lower case: minor) sets it, None writes no key signature (C major).
        max_measures: keep only the notes that start in the first this many measures.
        title: shown above the score when given.

    Raises:
        ValueError: an empty table, a pitch outside 0..127, non-numeric or non-finite
            values, a note that ends before it starts, a bad option.
        TypeError: ``notes`` is not a DataFrame; ``split_at`` is not an int.
    """
    import matplotlib.colors
    from music21 import clef, layout, metadata, meter, stream
    from music21 import key as m21key

    table = _check_table(notes)
    marked = _marked_rows(notes, split_at)
    if bpm == "auto":  # from the unmarked notes (a primer keeps its score's grid) if enough
        bpm = estimate_bpm(table[~marked] if (~marked).sum() >= 8 else table)
    elif not (isinstance(bpm, int | float) and 0 < bpm < math.inf) or isinstance(bpm, bool):
        raise ValueError(f"bpm must be a positive number or 'auto', got {bpm!r}")
    if not (isinstance(grid, int | float | Fraction) and 0 < grid <= 4):
        raise ValueError(f"grid must be a number of quarter notes in (0, 4], got {grid!r}")
    if staves not in (None, 1, 2):
        raise ValueError(f"staves must be 1, 2 or None (automatic), got {staves!r}")
    check_pitch_range(split_pitch, "split_pitch")
    if max_measures is not None and not (isinstance(max_measures, int) and max_measures > 0):
        raise ValueError(f"max_measures must be a positive int or None, got {max_measures!r}")
    try:
        color = matplotlib.colors.to_hex(color)
    except ValueError:
        raise ValueError(f"not a colour: {color!r}") from None
    try:
        ts = meter.TimeSignature(time_signature)
    except Exception as exc:  # music21 raises its own exception types for bad strings
        raise ValueError(f"not a time signature: {time_signature!r} ({exc})") from None

    grid_q = Fraction(grid).limit_denominator(96)
    tick_s = 60.0 / bpm * float(grid_q)  # seconds per grid step
    on = np.round(table["start"].to_numpy() / tick_s).astype(np.int64)
    off = np.maximum(np.round(table["end"].to_numpy() / tick_s).astype(np.int64), on + 1)
    bar = Fraction(ts.barDuration.quarterLength) / grid_q
    if bar.denominator != 1:
        raise ValueError(f"a {time_signature} bar is not a whole number of grid steps ({grid})")
    bar_ticks = int(bar)
    shift = (int(on.min()) // bar_ticks) * bar_ticks
    on, off = on - shift, off - shift
    pitch = table["pitch"].to_numpy()
    total = -(-int(off.max()) // bar_ticks)
    if max_measures is not None and total > max_measures:
        _warn_cut(total, max_measures)
        limit = max_measures * bar_ticks
        keep = on < limit
        on, off, pitch, marked = on[keep], np.minimum(off[keep], limit), pitch[keep], marked[keep]
    n_ticks = -(-int(off.max()) // bar_ticks) * bar_ticks

    if key == "auto":
        k = _estimate_key(pitch, (off - on) * float(grid_q))
    elif key is None:
        k = m21key.Key("C")
    else:
        try:
            k = m21key.Key(key)
        except Exception as exc:
            raise ValueError(f"not a key: {key!r} ({exc})") from None
    names = _spelling(k)

    lo, hi = int(pitch.min()), int(pitch.max())
    if staves is None:
        staves = 1 if lo >= 55 or hi <= 64 else 2
    if staves == 1:
        groups = [(clef.TrebleClef() if (lo + hi) / 2 >= 60 else clef.BassClef(), pitch >= 0)]
    else:
        groups = [
            (clef.TrebleClef(), pitch >= split_pitch),
            (clef.BassClef(), pitch < split_pitch),
        ]

    score = stream.Score()
    parts = []
    for cl, rows in groups:
        by_span: dict[tuple[int, int], _Event] = {}
        for o, f, p, m in zip(on[rows], off[rows], pitch[rows], marked[rows], strict=True):
            by_span.setdefault((int(o), int(f)), _Event(int(o), int(f))).add(int(p), bool(m))
        first = [cl, m21key.KeySignature(k.sharps), copy.deepcopy(ts)]
        parts.append(_staff(list(by_span.values()), n_ticks, grid_q, names, color, first))
    for part in parts:
        score.insert(0, part)
    if len(parts) > 1:
        score.insert(0, layout.StaffGroup(parts, symbol="brace", barTogether=True))
    score.metadata = metadata.Metadata()
    if title:
        score.metadata.title = str(title)
    return score


# --------------------------------------------------------------------------- engraving


def _check_score(score: object, max_measures: int | None) -> object:
    """The music21 stream, validated, cut to its first ``max_measures`` measures."""
    from music21 import stream

    if not isinstance(score, stream.Stream):
        raise TypeError(
            f"expected a note table (pandas DataFrame) or a music21 stream, "
            f"got {type(score).__name__}"
        )
    pitches = [p.ps for n in score.recurse().notes for p in n.pitches]
    if not pitches:
        raise ValueError("nothing to engrave: the score holds no notes")
    check_pitch_range(np.array(pitches), "pitch")
    parts = list(score.parts) if isinstance(score, stream.Score) else [score]
    total = max((len(p.getElementsByClass("Measure")) for p in parts), default=0)
    if max_measures is None or total <= max_measures:
        return score
    _warn_cut(total, max_measures)
    first = parts[0].getElementsByClass("Measure")[0].number
    return score.measures(first, first + max_measures - 1)


def _warn_cut(total: int, max_measures: int) -> None:
    warnings.warn(
        f"the music has {total} measures; only the first {max_measures} are engraved "
        f"(max_measures)",
        UserWarning,
        stacklevel=4,
    )


_DATE = re.compile(rb"<encoding-date>[^<]*</encoding-date>")
_RANDOM_ID = re.compile(rb'id="([PI])([0-9a-f]{32})"')


def _musicxml(score: object) -> str:
    """MusicXML of a music21 stream, made repeatable: without the writing date, and with
    the random part and instrument ids music21 draws renamed P1, P2, ... and I1, I2, ...
    in order (so the same music always gives the same bytes, and the same SVG)."""
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # music21's notes about fixing up notation
        data = GeneralObjectExporter(score).parse()
    names: dict[bytes, bytes] = {}

    def rename(match: re.Match) -> bytes:
        kind = match.group(1)
        if match.group(0) not in names:
            n = sum(1 for k in names if k.startswith(b'id="' + kind))
            names[match.group(0)] = b'id="' + kind + str(n + 1).encode() + b'"'
        return names[match.group(0)]

    return _RANDOM_ID.sub(rename, _DATE.sub(b"", data)).decode("utf-8")


def score_svg(
    obj: pd.DataFrame | object,
    *,
    max_measures: int | None = MAX_MEASURES,
    title: str | None = None,
    width: int = WIDTH,
    scale: int = SCALE,
    **table_options: object,
) -> str:
    """Engrave a note table or a music21 stream as one SVG document (a string).

    Args:
        obj: a note table (converted by :func:`notes_to_score`) or a music21 Score,
            Part or other Stream (engraved as it is written).
        max_measures: engrave only the first this many measures (None: all; a warning
            says when music was left out).
        title: shown above the music; None shows no header (a music21 score's own
            title is then left out too).
        width: width of the SVG in pixels; systems are broken to fit it.
        scale: Verovio's zoom in percent (40 suits a notebook).
        **table_options: for a note table, the options of :func:`notes_to_score`
            (``bpm``, ``grid``, ``staves``, ``split_pitch``, ``split_at``, ``color``,
            ``time_signature``, ``key``).

    Returns:
        An ``<svg>`` document, with the music glyphs it uses defined inside it, no
        external references, and ids that depend only on the music (the same input
        gives the same SVG).

    Raises:
        ValueError / TypeError: as :func:`notes_to_score` for a table; a score with no
            notes or a pitch outside 0..127; options for a table given with a score.
        RuntimeError: Verovio could not read the MusicXML.
    """
    if not (isinstance(width, int) and 100 <= width <= 20000):
        raise ValueError(f"width must be an int number of pixels in 100..20000, got {width!r}")
    if not (isinstance(scale, int) and 5 <= scale <= 200):
        raise ValueError(f"scale must be an int percent in 5..200, got {scale!r}")
    if max_measures is not None and not (isinstance(max_measures, int) and max_measures > 0):
        raise ValueError(f"max_measures must be a positive int or None, got {max_measures!r}")
    if isinstance(obj, pd.DataFrame):
        score = notes_to_score(obj, title=title, max_measures=max_measures, **table_options)
    else:
        if table_options:
            raise TypeError(
                f"{sorted(table_options)} apply to note tables only; colour a music21 "
                f"note with note.style.color instead"
            )
        score = _check_score(obj, max_measures)
        if title is not None:
            from music21 import metadata

            score = copy.deepcopy(score) if score is obj else score
            score.metadata = metadata.Metadata(title=str(title))
    xml = _musicxml(score)
    verovio = _verovio()
    tk = verovio.toolkit()
    seed = int.from_bytes(hashlib.sha256(xml.encode()).digest()[:4], "big") % (2**31 - 1) + 1
    tk.setOptions(
        {
            "scale": scale,
            "pageWidth": max(100, min(60000, round(width * 100 / scale))),
            "pageHeight": 60000,
            "adjustPageHeight": True,
            "adjustPageWidth": True,
            "breaks": "auto",
            "header": "auto" if title is not None else "none",
            "footer": "none",
            "xmlIdSeed": seed,
            "svgFormatRaw": True,
            # each note says what it is (data-pname="c" data-oct="4"): for tests and scripts
            "svgAdditionalAttribute": ["note@pname", "note@oct"],
        }
    )
    if not tk.loadData(xml):
        raise RuntimeError("Verovio could not read the MusicXML music21 wrote for this score")
    if tk.getPageCount() > 1:
        warnings.warn(
            f"the score fills {tk.getPageCount()} pages; only the first is shown (pass a "
            f"smaller max_measures)",
            UserWarning,
            stacklevel=2,
        )
    return tk.renderToSVG(1)


def show_score(obj: pd.DataFrame | object, **options: object) -> object:
    """An ``IPython.display.SVG`` of a note table or music21 stream, for a notebook cell.

    Takes the arguments of :func:`score_svg`. The SVG is embedded in the notebook
    itself, so it is saved with it and shows without this package or the network.
    """
    from IPython.display import SVG

    return SVG(data=score_svg(obj, **options))
