"""Scores engraved offline (notebook 01): note table --:func:`notes_to_score`--> music21 score
--MusicXML--> Verovio --> SVG (:func:`score_svg`, inline by :func:`show_score`). A note table has
no key or metre: the key is estimated, the metre counted from the first note."""

from __future__ import annotations

import hashlib
import math
import re
import warnings
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import pandas as pd

#: Most measures engraved unless asked otherwise (a warning says when music is cut).
MAX_MEASURES = 64
HIGHLIGHT = "#ff7f0e"  # matplotlib's tab:orange, the continuation's colour in piano rolls


def _music21():
    """music21, its Jupyter timer cancelled (it would switch later figures to "retina" PNGs)."""
    import music21

    timer = getattr(getattr(music21, "ipython21", None), "t", None)
    if timer is not None:
        timer.cancel()
    return music21


def estimate_bpm(notes: pd.DataFrame) -> float:
    """The tempo at which the commonest note length (10 ms bins, when it holds a fifth of the
    notes; else the median) is a quarter note."""
    lengths = (notes["end"] - notes["start"]).to_numpy(np.float64)
    lengths = lengths[(lengths > 0) & np.isfinite(lengths)]
    if len(lengths) == 0:
        return 120.0
    bins = np.round(lengths / 0.01)
    values, counts = np.unique(bins, return_counts=True)
    common = lengths[bins == values[counts.argmax()]]
    quarter = common.mean() if len(common) >= 0.2 * len(lengths) else np.median(lengths)
    return float(np.clip(60.0 / quarter, 20.0, 400.0))


def _checked(notes: pd.DataFrame, split_at: int | None) -> tuple[pd.DataFrame, np.ndarray]:
    """``pitch, start, end`` as numbers, validated, and the rows to colour."""
    if not isinstance(notes, pd.DataFrame):
        raise TypeError(f"expected a note table or a music21 stream, got {type(notes).__name__}")
    if len(notes) == 0 or not {"pitch", "start", "end"} <= set(notes.columns):
        msg = "nothing to engrave: a note table needs rows and the columns pitch, start, end"
        raise ValueError(msg)
    try:
        t = notes[["pitch", "start", "end"]].astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError("pitch, start and end must hold numbers") from None
    bad_pitch = (t.pitch != t.pitch.round()).any() or not t.pitch.between(0, 127).all()
    if not np.isfinite(t.to_numpy()).all() or bad_pitch:
        raise ValueError("the note table holds NaN, infinite values or pitches outside 0..127")
    if (t.end <= t.start).any():
        raise ValueError(f"{int((t.end <= t.start).sum())} note(s) end before they start")
    whole = isinstance(split_at, int | np.integer) and not isinstance(split_at, bool)
    if split_at is not None and not (whole and 0 <= split_at <= len(t)):
        raise ValueError(f"split_at must be a row number in 0..{len(t)}, got {split_at!r}")
    marked = np.arange(len(t)) >= (len(t) if split_at is None else split_at)
    if split_at is None and "generated" in notes:
        marked = notes["generated"].to_numpy(bool)
    return t.assign(pitch=t.pitch.astype(int)), marked


def notes_to_score(
    notes: pd.DataFrame,
    *,
    bpm: float | str = "auto",
    grid: float = 0.25,
    split_pitch: int = 60,
    split_at: int | None = None,
    key: str | None = "auto",
    time_signature: str = "4/4",
    max_measures: int | None = None,
    title: str | None = None,
) -> object:
    """A music21 Score of a note table (seconds): ``bpm`` (``"auto"``: :func:`estimate_bpm` of
    the uncoloured rows), onsets rounded to ``grid`` quarter notes, treble from ``split_pitch``,
    rows from ``split_at`` coloured, ``key`` ``"auto"``, a name (``"f#"``: minor) or None (C)."""
    m21 = _music21()
    t, marked = _checked(notes, split_at)
    if bpm == "auto":
        bpm = estimate_bpm(t[~marked] if (~marked).sum() >= 8 else t)
    if isinstance(bpm, bool) or not isinstance(bpm, int | float) or not 0 < bpm < math.inf:
        raise ValueError(f"bpm must be a positive number or 'auto', got {bpm!r}")
    if isinstance(grid, bool) or not isinstance(grid, int | float | Fraction) or not 0 < grid <= 4:
        raise ValueError(f"grid must be a number of quarter notes in (0, 4], got {grid!r}")
    try:
        ts = m21.meter.TimeSignature(time_signature)
        k = m21.key.Key("C") if key is None else None if key == "auto" else m21.key.Key(key)
    except Exception as exc:  # music21 raises its own types for bad strings
        msg = f"not a time signature or key: {time_signature!r}, {key!r} ({exc})"
        raise ValueError(msg) from None
    q = Fraction(grid).limit_denominator(96)
    on = np.round(t.start.to_numpy() * bpm / 60 / float(q)).astype(int)
    off = np.maximum(np.round(t.end.to_numpy() * bpm / 60 / float(q)).astype(int), on + 1)
    bar = int(Fraction(ts.barDuration.quarterLength) / q)
    shift = on.min() // bar * bar
    on, off = on - shift, off - shift
    if max_measures is not None and off.max() > max_measures * bar:
        _warn_cut(-(-int(off.max()) // bar), max_measures)
        keep = on < max_measures * bar
        t, marked, on = t[keep], marked[keep], on[keep]
        off = np.minimum(off[keep], max_measures * bar)
    pitch = t.pitch.to_numpy()
    if k is None:
        qls = [float(max((f - o) * q, 0.25)) for o, f in zip(on, off, strict=True)]
        probe = [m21.note.Note(int(p), quarterLength=x) for p, x in zip(pitch, qls, strict=True)]
        found = m21.stream.Stream(probe).analyze("key")
        k = m21.key.Key(found.tonic.name, found.mode)
    treble, bass = m21.clef.TrebleClef(), m21.clef.BassClef()
    staves = [(treble, pitch >= split_pitch), (bass, pitch < split_pitch)]
    if pitch.min() >= 55 or pitch.max() <= 64:  # one staff holds it
        staves = [(treble if pitch.mean() >= 60 else bass, pitch >= 0)]
    n_ticks = -(-int(off.max()) // bar) * bar
    score = m21.stream.Score()
    for clef, rows in staves:
        events: dict[tuple[int, int], _Event] = {}
        for o, f, p, m in zip(on[rows], off[rows], pitch[rows], marked[rows], strict=True):
            events.setdefault((int(o), int(f)), _Event(int(o), int(f))).add(int(p), bool(m))
        score.insert(0, _staff(m21, clef, k, ts, list(events.values()), n_ticks, q))
    if len(staves) > 1:
        score.insert(0, m21.layout.StaffGroup(list(score.parts), symbol="brace", barTogether=True))
    score.metadata = m21.metadata.Metadata(title=str(title)) if title else m21.metadata.Metadata()
    return score


@dataclass
class _Event:
    """Notes of one staff that start and end together (a note or a chord), in grid ticks."""

    on: int
    off: int
    #: pitch -> (coloured, tie)
    notes: dict[int, tuple[bool, str | None]] = field(default_factory=dict)

    def add(self, pitch: int, marked: bool, tie: str | None = None) -> None:
        was = self.notes.get(pitch, (False, tie))[0]
        self.notes[pitch] = (was or marked, tie)


def _voices(events: list[_Event]) -> list[list[_Event]]:
    """As few voices as possible with no overlap inside one (greedy by onset, highest first)."""
    voices: list[list[_Event]] = []
    for ev in sorted(events, key=lambda e: (e.on, -max(e.notes), e.off)):
        free = [v for v in voices if v[-1].off <= ev.on]
        free[0].append(ev) if free else voices.append([ev])
    return voices


def _slices(events: list[_Event]) -> list[_Event]:
    """One voice for too many rhythms at once: a chord of what sounds between every two cuts,
    a note sounding across a cut tied."""
    cuts = sorted({e.on for e in events} | {e.off for e in events})
    out, ties = [], {(True, True): "continue", (True, False): "stop", (False, True): "start"}
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        piece = _Event(a, b)
        for e in (e for e in events if e.on <= a < e.off):
            tie = ties.get((e.on < a, e.off > b))
            for p, (m, _) in e.notes.items():
                piece.add(p, m, tie)
        if piece.notes:
            out.append(piece)
    return out


def _staff(m21, clef, key, ts, events: list[_Event], n_ticks: int, q: Fraction) -> object:
    """One staff: events in voices (rests fill the gaps, shown in voice 1 only), in ``key``."""
    names = _spelling(m21, key)
    part = m21.stream.PartStaff()
    for el in (clef, m21.key.KeySignature(key.sharps), m21.meter.TimeSignature(ts.ratioString)):
        part.insert(0, el)
    voices = _voices(events) if events else [[]]
    for i, evs in enumerate(voices if len(voices) <= 4 else [_slices(events)]):
        voice, t = m21.stream.Voice(), 0
        for ev in [*evs, _Event(n_ticks, n_ticks)]:
            if ev.on > t:
                rest = m21.note.Rest(quarterLength=(ev.on - t) * q)
                rest.style.hideObjectOnPrint = i > 0
                voice.insert(t * q, rest)
            if ev.notes:
                voice.insert(ev.on * q, _element(m21, ev, q, names))
            t = max(t, ev.off)
        part.insert(0, voice)
    part.makeMeasures(inPlace=True)
    part.makeNotation(inPlace=True)
    for measure in part.getElementsByClass("Measure"):
        for i, v in enumerate(list(measure.voices)):
            v.id = str(i + 1)  # MusicXML voices count from 1
            if i and all(el.isRest and el.style.hideObjectOnPrint for el in v.notesAndRests):
                measure.remove(v)  # a voice of hidden rests only: left out
    return part


def _element(m21, ev: _Event, q: Fraction, names: dict[int, str]) -> object:
    notes = []
    for p, (marked, tie) in sorted(ev.notes.items()):
        n = m21.note.Note(names[p % 12])
        n.pitch.octave = p // 12 - 1
        n.pitch.octave += round((p - n.pitch.ps) / 12)  # B#, C- cross the octave
        if tie is not None:
            n.tie = m21.tie.Tie(tie)
        if marked:
            n.style.color = HIGHLIGHT
        notes.append(n)
    el = notes[0] if len(notes) == 1 else m21.chord.Chord(notes)
    el.quarterLength = (ev.off - ev.on) * q
    return el


def _spelling(m21, key) -> dict[int, str]:
    """Pitch class -> note name in ``key``: its scale (minor: raised 6th and 7th too), then sharps
    in sharp keys and flats in flat keys."""
    tonic = m21.pitch.Pitch(key.tonic.name)
    minor = [tonic.transpose("M6"), tonic.transpose("M7")] if key.mode == "minor" else []
    scale = list(key.pitches) + minor
    names = {}
    for p in scale:
        names.setdefault(p.pitchClass, p.name)
    for pc in set(range(12)) - set(names):
        p = m21.pitch.Pitch(midi=60 + pc)
        flip = (key.sharps > 0 and "-" in p.name) or (key.sharps < 0 and "#" in p.name)
        names[pc] = p.getEnharmonic().name if flip else p.name
    return names


def _warn_cut(total: int, max_measures: int) -> None:
    msg = f"the music has {total} measures; only the first {max_measures} are engraved"
    warnings.warn(msg + " (max_measures)", UserWarning, stacklevel=4)


def score_svg(
    obj: pd.DataFrame | object,
    *,
    max_measures: int | None = MAX_MEASURES,
    title: str | None = None,
    width: int = 900,
    scale: int = 40,
    **table_options: object,
) -> str:
    """One self-contained SVG of a note table (via :func:`notes_to_score` with ``table_options``)
    or a music21 stream; its ids depend only on the music (the same input, the same SVG)."""
    m21 = _music21()
    if isinstance(width, bool) or not isinstance(width, int) or not 100 <= width <= 20000:
        raise ValueError(f"width must be a number of pixels in 100..20000, got {width!r}")
    if isinstance(scale, bool) or not isinstance(scale, int) or not 5 <= scale <= 200:
        raise ValueError(f"scale must be a percent in 5..200, got {scale!r}")
    if max_measures is not None and (not isinstance(max_measures, int) or max_measures < 1):
        raise ValueError(f"max_measures must be a positive integer or None, got {max_measures!r}")
    if isinstance(obj, pd.DataFrame):
        score = notes_to_score(obj, title=title, max_measures=max_measures, **table_options)
    elif not isinstance(obj, m21.stream.Stream) or table_options:
        raise TypeError("expected a note table, or a music21 stream without note-table options")
    else:
        score = _cut(m21, obj, max_measures)
        if title is not None:
            score = score.__deepcopy__() if score is obj else score
            score.metadata = m21.metadata.Metadata(title=str(title))
    import verovio

    verovio.enableLog(verovio.LOG_ERROR)  # its warnings would go to stderr, outside the cell
    xml = _musicxml(m21, score)
    tk = verovio.toolkit()
    seed = int.from_bytes(hashlib.sha256(xml.encode()).digest()[:4], "big") % (2**31 - 1) + 1
    options = {"scale": scale, "pageWidth": round(width * 100 / scale), "pageHeight": 60000}
    options.update(adjustPageHeight=True, adjustPageWidth=True, breaks="auto")
    options.update(header="auto" if title else "none", footer="none", xmlIdSeed=seed)
    options.update(svgFormatRaw=True, svgAdditionalAttribute=["note@pname", "note@oct"])
    tk.setOptions(options)
    if not tk.loadData(xml):
        raise RuntimeError("Verovio could not read the MusicXML music21 wrote for this score")
    return tk.renderToSVG(1)


def _cut(m21, score: object, max_measures: int | None) -> object:
    """A music21 stream, checked, cut to its first ``max_measures`` measures."""
    if not list(score.recurse().notes):
        raise ValueError("nothing to engrave: the score holds no notes")
    parts = list(score.parts) if isinstance(score, m21.stream.Score) else [score]
    total = max(len(p.getElementsByClass("Measure")) for p in parts)
    if max_measures is None or total <= max_measures:
        return score
    _warn_cut(total, max_measures)
    first = parts[0].getElementsByClass("Measure")[0].number
    return score.measures(first, first + max_measures - 1)


def _musicxml(m21, score: object) -> str:
    """MusicXML of a stream, repeatable: no date, music21's random ids renamed P1.., I1.."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # music21's notes about fixing up notation
        data = m21.musicxml.m21ToXml.GeneralObjectExporter(score).parse().decode("utf-8")
    data = re.sub(r"<encoding-date>[^<]*</encoding-date>", "", data)
    names: dict[str, str] = {}
    for kind, hex_id in re.findall(r'id="([PI])([0-9a-f]{32})"', data):
        names.setdefault(kind + hex_id, f"{kind}{sum(k[0] == kind for k in names) + 1}")
    for old, new in names.items():
        data = data.replace(f'"{old}"', f'"{new}"')
    return data


def show_score(obj: pd.DataFrame | object, **options: object) -> object:
    """An ``IPython.display.SVG`` of :func:`score_svg`: inline, saved with the notebook."""
    from IPython.display import SVG

    return SVG(data=score_svg(obj, **options))
