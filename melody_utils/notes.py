"""Note tables and MIDI: the one place where music becomes a table and back (notebook 01).

A note table is a :class:`pandas.DataFrame` with the columns ``pitch, start, end, step,
duration, velocity`` (times in seconds), sorted by start, then pitch. ``step`` is the
time since the previous note started (0 for the other notes of a chord) and
``duration`` is ``end - start``.

* :func:`note_table` builds one from parallel arrays;
* :func:`parse_midi` / :func:`notes_from_midi` read a MIDI file (a path, its bytes or a
  ``pretty_midi.PrettyMIDI``), drums excluded;
* :func:`parse_score` / :func:`notes_from_score` read a music21 score;
* :func:`notes_to_midi` and :func:`midi_to_bytes` go the other way.

Nothing is dropped silently: the ``parse_*`` functions return a :class:`ParsedNotes`
whose ``dropped`` counts every note that did not make it into the table, by reason,
and whose ``warnings`` hold what the MIDI library said about the file.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .config import N_PITCHES

NOTE_COLUMNS = ("pitch", "start", "end", "step", "duration", "velocity")
#: Optional column: which part (voice, instrument track) a note came from, 0-based. The
#: model never reads it; piano rolls colour by it.
PART = "part"
MIDI_SUFFIXES = (".mid", ".midi")
#: Velocity given to score notes, which carry none (music21's default dynamic, mf).
SCORE_VELOCITY = 64
#: General MIDI program of written MIDI (0 = Acoustic Grand Piano).
PIANO_PROGRAM = 0

#: Reasons a note is dropped, as they appear in reports.
ZERO_LENGTH = "zero length"
UNRELEASED = "zero length or never released (dropped by the MIDI parser)"
DRUMS = "drum notes (ignored)"


class BadInputError(ValueError):
    """A file or piece that cannot become a note table; the message says why."""


def check_pitch_range(
    values: object,
    what: str = "pitch",
    error: type[Exception] = ValueError,
    n_pitches: int = N_PITCHES,
) -> None:
    """Raise ``error`` naming ``what`` unless every value lies in ``0..n_pitches-1``.

    Accepts an int, a NumPy array or a torch tensor (anything with ``min``/``max``).
    The one range check every module uses.
    """
    arr = np.asarray(values) if not hasattr(values, "min") else values
    if getattr(arr, "size", None) == 0 or (hasattr(arr, "numel") and arr.numel() == 0):
        return
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= n_pitches:
        bad = lo if lo < 0 else hi
        raise error(f"{what} must lie in 0..{n_pitches - 1} (MIDI pitch), found {bad}")


@dataclass
class ParsedNotes:
    """A note table plus what reading it left out.

    Attributes:
        notes: the note table.
        dropped: ``{reason: count}`` of notes that are not in the table.
        warnings: messages the parsing library emitted about this file.
    """

    notes: pd.DataFrame
    dropped: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _note_table(
    pitch: Sequence[int],
    start: Sequence[float],
    end: Sequence[float],
    velocity: Sequence[int],
    part: Sequence[int] | None = None,
) -> tuple[pd.DataFrame, int]:
    pitch = np.asarray(pitch, dtype=np.int64)
    start = np.asarray(start, dtype=np.float64)
    end = np.asarray(end, dtype=np.float64)
    velocity = np.asarray(velocity, dtype=np.int64)
    parts = np.zeros(len(pitch), np.int64) if part is None else np.asarray(part, np.int64)
    if not (len(pitch) == len(start) == len(end) == len(velocity) == len(parts)):
        raise ValueError("pitch, start, end, velocity (and part) must have the same length")
    check_pitch_range(pitch, "pitch", BadInputError)
    if len(velocity) and (velocity.min() < 0 or velocity.max() > 127):
        raise BadInputError(
            f"velocity must lie in 0..127, found {int(velocity.min())}..{int(velocity.max())}"
        )
    if not (np.isfinite(start).all() and np.isfinite(end).all()):
        raise BadInputError("note times must be finite")
    keep = end > start
    n_zero = int((~keep).sum())
    pitch, start, end, velocity, parts = (a[keep] for a in (pitch, start, end, velocity, parts))
    order = np.lexsort((parts, pitch, start))  # by start, then pitch (then part)
    pitch, start, end, velocity, parts = (a[order] for a in (pitch, start, end, velocity, parts))
    step = np.diff(start, prepend=start[:1]) if len(start) else start
    columns = {
        "pitch": pitch,
        "start": start,
        "end": end,
        "step": step,
        "duration": end - start,
        "velocity": np.maximum(velocity, 1),
    }
    if part is not None:
        columns[PART] = parts
    return pd.DataFrame(columns), n_zero


def note_table(
    pitch: Sequence[int],
    start: Sequence[float],
    end: Sequence[float],
    velocity: Sequence[int],
    part: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Build a sorted note table from parallel arrays (times in seconds).

    Notes with ``end <= start`` (grace notes, zero-length events) cannot be played and
    are left out (:func:`parse_midi` and :func:`parse_score` count them). A velocity of
    0 becomes 1 (the quietest audible note). Raises :class:`BadInputError` for a pitch
    outside 0..127, a velocity outside 0..127 or a non-finite time.
    """
    return _note_table(pitch, start, end, velocity, part)[0]


def _add(dropped: dict[str, int], reason: str, n: int) -> None:
    if n > 0:
        dropped[reason] = dropped.get(reason, 0) + int(n)


def _count_note_ons(data: bytes) -> int:
    """Note-on events with a velocity above 0 in a standard MIDI file (every channel)."""
    import mido

    midi = mido.MidiFile(file=io.BytesIO(data))
    return sum(
        1 for track in midi.tracks for msg in track if msg.type == "note_on" and msg.velocity > 0
    )


def parse_midi(
    midi: str | Path | bytes | bytearray | object, name: str | None = None
) -> ParsedNotes:
    """Read a MIDI file (path, bytes or ``pretty_midi.PrettyMIDI``) into a note table.

    Drum tracks are excluded; the notes of every other track are merged (the ``part``
    column keeps the track, 0-based among the pitched ones). ``dropped``
    counts drum notes, notes the MIDI parser could not pair (a note-on whose note-off
    comes at the same tick, or never) and zero-length notes.

    Raises:
        FileNotFoundError: a path that does not exist.
        BadInputError: an empty, corrupt, note-less or drum-only file (the message says
            which), or a pitch out of range.
    """
    import pretty_midi

    data: bytes | None = None
    if isinstance(midi, str | Path):
        path = Path(midi)
        name = name or path.name
        if not path.is_file():
            raise FileNotFoundError(f"no such MIDI file: {path}")
        data = path.read_bytes()
    elif isinstance(midi, bytes | bytearray | memoryview):
        data = bytes(midi)
    caught: list[str] = []
    if data is not None:
        if not data:
            raise BadInputError("empty file (0 bytes)")
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            try:
                pm = pretty_midi.PrettyMIDI(io.BytesIO(data))
                n_note_on = _count_note_ons(data)
            except Exception as exc:  # pretty_midi/mido raise many types for bad bytes
                raise BadInputError(
                    f"corrupt or unreadable MIDI ({type(exc).__name__}: {exc})"
                ) from exc
        caught = [str(w.message) for w in record if w.category is not ResourceWarning]
    elif isinstance(midi, pretty_midi.PrettyMIDI):
        pm, n_note_on = midi, None
    else:
        raise TypeError(
            f"expected a MIDI path, bytes or pretty_midi.PrettyMIDI, got {type(midi).__name__}"
        )
    dropped: dict[str, int] = {}
    n_drum = sum(len(i.notes) for i in pm.instruments if i.is_drum)
    notes = [n for inst in pm.instruments if not inst.is_drum for n in inst.notes]
    if n_note_on is not None:
        _add(dropped, UNRELEASED, n_note_on - n_drum - len(notes))
    _add(dropped, DRUMS, n_drum)
    if not notes:
        if n_drum:
            raise BadInputError(f"drum-only file ({n_drum} drum notes, no pitched notes)")
        raise BadInputError("no notes in file")
    pitched = [inst for inst in pm.instruments if not inst.is_drum]
    part = [k for k, inst in enumerate(pitched) for _ in inst.notes]
    table, n_zero = _note_table(
        [n.pitch for n in notes],
        [n.start for n in notes],
        [n.end for n in notes],
        [n.velocity for n in notes],
        part,
    )
    _add(dropped, ZERO_LENGTH, n_zero)
    if table.empty:
        raise BadInputError(f"every note has zero length ({n_zero})")
    return ParsedNotes(table, dropped, caught)


def notes_from_midi(midi: str | Path | bytes | object) -> pd.DataFrame:
    """Note table of a MIDI file (path, bytes or ``pretty_midi.PrettyMIDI``), drums excluded.

    The library's warnings about the file are re-issued with the file's name in front.
    See :func:`parse_midi` (which also says what was dropped) for the errors.
    """
    parsed = parse_midi(midi)
    label = Path(midi).name if isinstance(midi, str | Path) else "MIDI data"
    for message in parsed.warnings:
        warnings.warn(f"{label}: {message}", RuntimeWarning, stacklevel=2)
    return parsed.notes


def parse_score(score: object) -> ParsedNotes:
    """Read a music21 score: ties merged, chords expanded, tempo marks respected.

    Times come from music21's ``secondsMap``. Scores carry no performed velocity, so a
    note's own velocity is used when set and :data:`SCORE_VELOCITY` otherwise. The
    ``part`` column says which part (voice) each note is in, 0 = the top staff.
    Zero-length notes (grace notes) are left out and counted in ``dropped``.
    """
    from music21 import chord, note

    stripped = score.stripTies()
    parts = list(getattr(stripped, "parts", []))
    part_of = {id(n): k for k, p in enumerate(parts) for n in p.recurse().notes}
    flat = stripped.flatten()
    pitch, start, end, vel, part = [], [], [], [], []
    for item in flat.secondsMap:
        el = item["element"]
        if isinstance(el, note.Note):
            pitches = [el.pitch]
        elif isinstance(el, chord.Chord):
            pitches = list(el.pitches)
        else:
            continue
        v = el.volume.velocity if el.volume.velocity is not None else SCORE_VELOCITY
        for p in pitches:
            pitch.append(int(round(p.ps)))
            start.append(item["offsetSeconds"])
            end.append(item["endTimeSeconds"])
            vel.append(v)
            part.append(part_of.get(id(el), 0))
    if not pitch:
        raise BadInputError("no pitched notes in score")
    table, n_zero = _note_table(pitch, start, end, vel, part)
    dropped: dict[str, int] = {}
    _add(dropped, ZERO_LENGTH + " (grace notes)", n_zero)
    if table.empty:
        raise BadInputError("every note of the score has zero length")
    return ParsedNotes(table, dropped)


def notes_from_score(score: object) -> pd.DataFrame:
    """Note table of a music21 score (see :func:`parse_score`)."""
    return parse_score(score).notes


def notes_to_midi(
    notes: pd.DataFrame, program: int = PIANO_PROGRAM, name: str = "Acoustic Grand Piano"
) -> object:
    """A one-instrument ``pretty_midi.PrettyMIDI`` holding the rows of a note table.

    One MIDI channel cannot hold two overlapping notes of the same key: readers pair the
    note-offs differently (pretty_midi ends every open note at the first note-off, music21
    invents or merges notes). So when a note starts while an earlier note of the same pitch
    is still sounding, the earlier one ends where the later one starts (a key struck again),
    in the MIDI only; the note table is not changed. Notes of one pitch that start together
    (a unison) are written as they are.
    """
    import pretty_midi

    if not {"pitch", "start", "end", "velocity"} <= set(notes.columns):
        raise ValueError("notes need the columns pitch, start, end and velocity")
    check_pitch_range(notes["pitch"].to_numpy(), "pitch")
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=program, name=name)
    ends = restrike_ends(notes)
    for p, s, e, v in zip(notes["pitch"], notes["start"], ends, notes["velocity"], strict=True):
        inst.notes.append(
            pretty_midi.Note(
                velocity=int(np.clip(v, 1, 127)), pitch=int(p), start=float(s), end=float(e)
            )
        )
    pm.instruments.append(inst)
    return pm


def restrike_ends(notes: pd.DataFrame) -> np.ndarray:
    """Note ends with every same-pitch overlap cut at the later note's start.

    ``notes`` needs ``pitch``, ``start`` and ``end``; the result is aligned with its rows.
    A note whose key is struck again (same pitch, a later start before its end) ends at
    that start; notes that start together keep their ends.
    """
    pitch = notes["pitch"].to_numpy(np.int64)
    start = notes["start"].to_numpy(np.float64)
    end = notes["end"].to_numpy(np.float64).copy()
    order = np.lexsort((start, pitch))
    for a, b in zip(order[:-1], order[1:], strict=True):
        if pitch[a] == pitch[b] and start[a] < start[b] < end[a]:
            end[a] = start[b]
    return end


def file_stem(piece_id: str) -> str:
    """A safe file-name stem for a piece: ``"my_midi/a/Maestro_10.mid"`` -> ``"a_Maestro_10"``
    relative to its folder, ``"bach/bwv66.6"`` -> ``"bach_bwv66.6"``.

    The MIDI suffix goes, folders become ``_`` (two pieces with the same name in two
    folders stay apart) and anything but letters, digits, ``.``, ``-`` and ``_`` becomes
    ``_``.
    """
    import re

    stem = str(piece_id)
    for suffix in MIDI_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    stem = re.sub(r"[^\w.-]+", "_", stem.replace("/", "_").replace("\\", "_")).strip("._")
    return stem or "piece"


def midi_to_bytes(pm: object) -> bytes:
    """Serialize a ``pretty_midi.PrettyMIDI`` to standard MIDI file bytes."""
    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue()
