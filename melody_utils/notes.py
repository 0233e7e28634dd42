"""Note tables and MIDI: where music becomes a table and back (notebook 01).

A note table is a :class:`pandas.DataFrame` with the columns ``pitch, start, end, step,
duration, velocity`` (times in seconds), sorted by start, then pitch. ``step`` is the time
since the previous note started (0 for the other notes of a chord) and ``duration`` is
``end - start``. Two optional columns: ``part`` (the voice or track a note came from; piano
rolls colour by it) and ``program`` (the General MIDI instrument that plays it).

* :func:`note_table` builds one from parallel arrays;
* :func:`parse_midi` reads a MIDI file (a path or its bytes) with ``symusic``;
* :func:`parse_score` reads a music21 score;
* :func:`midi_bytes` and :func:`write_midi` go the other way (``symusic`` too).

Reading MIDI, the rules where MIDI readers legitimately differ (``pretty_midi`` is the
reference the tests compare with):

* **a note-off ends the earliest sounding note of its key** in its track (first in, first
  out, as symusic and most synthesizers pair them); pretty_midi ends *every* sounding
  note of the key at the first note-off instead;
* **tempo changes count wherever they are**: symusic reads tempo events of every track,
  pretty_midi only those of the first one (and warns);
* **zero-length notes** (note-on and note-off at the same tick) cannot be played: they are
  left out and counted in ``dropped``; drum tracks (channel 10) too;
* a note-on that is never released is left out by the reader (as by pretty_midi) and
  cannot be counted: neither library reports it.

Nothing else is dropped: :class:`ParsedNotes` says what was left out, and why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .config import N_PITCHES

NOTE_COLUMNS = ("pitch", "start", "end", "step", "duration", "velocity")
PART, PROGRAM = "part", "program"
MIDI_SUFFIXES = (".mid", ".midi")
#: Velocity given to score notes, which carry none (this package's choice: mezzo-forte).
SCORE_VELOCITY = 64
#: General MIDI programs (0-based): what plays a table that names none, and the chorales.
PIANO, CHURCH_ORGAN = 0, 19
ZERO_LENGTH = "zero length"
DRUMS = "drum notes (ignored)"


class BadInputError(ValueError):
    """A file or piece that cannot become a note table; the message says why."""


def check_pitch_range(values: object, what: str = "pitch", error: type = ValueError) -> None:
    """Raise ``error`` naming ``what`` unless every value is a MIDI pitch 0..127."""
    arr = np.asarray(values)
    if arr.size == 0:
        return
    lo, hi = arr.min(), arr.max()
    if lo < 0 or hi >= N_PITCHES:
        bad = lo if lo < 0 else hi
        raise error(f"{what} must lie in 0..{N_PITCHES - 1} (MIDI pitch), found {bad:g}")


@dataclass
class ParsedNotes:
    """A note table, ``{reason: count}`` of the notes left out, and the reader's warnings."""

    notes: pd.DataFrame
    dropped: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _table(pitch, start, end, velocity, part=None, program=None) -> tuple[pd.DataFrame, int]:
    """The sorted note table and how many zero-length notes were left out of it."""
    cols = {
        "pitch": np.asarray(pitch, np.int64),
        "start": np.asarray(start, np.float64),
        "end": np.asarray(end, np.float64),
        "velocity": np.asarray(velocity, np.int64),
    }
    for name, values in ((PART, part), (PROGRAM, program)):
        if values is not None:
            cols[name] = np.asarray(values, np.int64)
    if len({len(v) for v in cols.values()}) > 1:
        raise ValueError(f"{', '.join(cols)} must have the same length")
    check_pitch_range(cols["pitch"], "pitch", BadInputError)
    if len(cols["velocity"]) and not 0 <= cols["velocity"].min() <= cols["velocity"].max() <= 127:
        raise BadInputError("velocity must lie in 0..127")
    if not (np.isfinite(cols["start"]).all() and np.isfinite(cols["end"]).all()):
        raise BadInputError("note times must be finite")
    keep = cols["end"] > cols["start"]
    cols = {k: v[keep] for k, v in cols.items()}
    order = np.lexsort((cols.get(PART, cols["pitch"]), cols["pitch"], cols["start"]))
    t = pd.DataFrame({k: v[order] for k, v in cols.items()})
    t.insert(3, "step", np.diff(t["start"].to_numpy(), prepend=t["start"].iloc[0] if len(t) else 0))
    t.insert(4, "duration", t["end"] - t["start"])
    t["velocity"] = t["velocity"].clip(lower=1)
    return t, int((~keep).sum())


def note_table(pitch, start, end, velocity, part=None, program=None) -> pd.DataFrame:
    """A sorted note table from parallel arrays (times in seconds).

    Notes with ``end <= start`` cannot be played and are left out (the parsers count them);
    velocity 0 becomes 1. A pitch or velocity outside 0..127, or a non-finite time, is a
    :class:`BadInputError`.
    """
    return _table(pitch, start, end, velocity, part, program)[0]


def _count(dropped: dict[str, int], reason: str, n: int) -> None:
    if n > 0:
        dropped[reason] = dropped.get(reason, 0) + int(n)


def parse_midi(midi: str | Path | bytes | bytearray) -> ParsedNotes:
    """Read a MIDI file (a path or its bytes) into a note table, with symusic.

    Drum tracks are left out; the other tracks are merged (``part``: the track, 0-based
    among the pitched ones; ``program``: its General MIDI program). See the module
    docstring for how notes are paired and what is dropped.

    Raises:
        FileNotFoundError: a path that does not exist.
        BadInputError: an empty, corrupt, note-less or drum-only file (the message says
            which).
    """
    import symusic

    if isinstance(midi, str | Path):
        if not Path(midi).is_file():
            raise FileNotFoundError(f"no such MIDI file: {Path(midi).name}")
        midi = Path(midi).read_bytes()
    if not isinstance(midi, bytes | bytearray | memoryview):
        raise TypeError(f"expected a MIDI path or its bytes, got {type(midi).__name__}")
    if not midi:
        raise BadInputError("empty file (0 bytes)")
    try:
        score = symusic.Score.from_midi(bytes(midi), ttype="second")
    except Exception as exc:  # symusic raises RuntimeError("MiniMidi: ...") for bad bytes
        reason = str(exc).replace(": iostream error", "")
        raise BadInputError(f"corrupt or unreadable MIDI ({reason})") from None
    dropped: dict[str, int] = {}
    _count(dropped, DRUMS, sum(t.note_num() for t in score.tracks if t.is_drum))
    tracks = [t for t in score.tracks if not t.is_drum and t.note_num()]
    if not tracks:
        if DRUMS in dropped:
            raise BadInputError(f"drum-only file ({dropped[DRUMS]} drum notes, no pitched notes)")
        raise BadInputError("no notes in file")
    arrays = [t.notes.numpy() for t in tracks]
    cat = {k: np.concatenate([a[k] for a in arrays]) for k in ("time", "duration", "pitch")}
    # float32 seconds from symusic; the table keeps float64 of those values
    start = cat["time"].astype(np.float64)
    table, n_zero = _table(
        cat["pitch"].astype(np.int64),
        start,
        start + cat["duration"].astype(np.float64),
        np.concatenate([a["velocity"] for a in arrays]).astype(np.int64),
        np.repeat(np.arange(len(tracks)), [len(a["pitch"]) for a in arrays]),
        np.repeat([t.program for t in tracks], [len(a["pitch"]) for a in arrays]),
    )
    _count(dropped, ZERO_LENGTH, n_zero)
    if table.empty:
        raise BadInputError(f"every note has zero length ({n_zero})")
    return ParsedNotes(table, dropped)


def parse_score(score: object) -> ParsedNotes:
    """Read a music21 score: ties merged, chords expanded, tempo marks respected.

    Times come from music21's ``secondsMap``; a note's own velocity is used when set and
    :data:`SCORE_VELOCITY` otherwise. ``part`` is the part (voice), 0 = the top staff.
    Zero-length notes (grace notes) are left out and counted.
    """
    from music21 import chord, note

    stripped = score.stripTies()
    parts = getattr(stripped, "parts", [])
    part_of = {id(n): k for k, p in enumerate(parts) for n in p.recurse().notes}
    rows = []
    for item in stripped.flatten().secondsMap:
        el = item["element"]
        if not isinstance(el, note.Note | chord.Chord):
            continue
        vel = el.volume.velocity if el.volume.velocity is not None else SCORE_VELOCITY
        for p in el.pitches:
            part = part_of.get(id(el), 0)
            rows.append((round(p.ps), item["offsetSeconds"], item["endTimeSeconds"], vel, part))
    if not rows:
        raise BadInputError("no pitched notes in score")
    table, n_zero = _table(*zip(*rows, strict=True))
    if table.empty:
        raise BadInputError("every note of the score has zero length")
    return ParsedNotes(table, {ZERO_LENGTH + " (grace notes)": n_zero} if n_zero else {})


def _restruck_ends(notes: pd.DataFrame) -> np.ndarray:
    """Note ends with every same-pitch overlap cut where the later note starts."""
    pitch, start = notes["pitch"].to_numpy(), notes["start"].to_numpy(np.float64)
    end = notes["end"].to_numpy(np.float64).copy()
    order = np.lexsort((start, pitch))
    a, b = order[:-1], order[1:]
    cut = (pitch[a] == pitch[b]) & (start[a] < start[b]) & (start[b] < end[a])
    end[a[cut]] = start[b[cut]]
    return end


def to_symusic(notes: pd.DataFrame, program: int | None = None) -> object:
    """A ``symusic.Score`` (in seconds) of a note table: one track per program.

    ``program`` overrides the table's ``program`` column (default: piano). One MIDI channel
    cannot hold two overlapping notes of one key (readers pair the note-offs differently),
    so a note struck again while it sounds ends where the new one starts, in the MIDI only;
    notes of one pitch that start together (a unison) are written as they are.
    """
    import symusic

    missing = {"pitch", "start", "end", "velocity"} - set(notes.columns)
    if missing:
        raise ValueError(f"a note table needs the columns {sorted(missing)}")
    check_pitch_range(notes["pitch"].to_numpy(), "pitch")
    if program is None and PROGRAM in notes:
        programs = notes[PROGRAM].to_numpy(np.int64)
    else:
        programs = np.full(len(notes), PIANO if program is None else program, np.int64)
    if len(programs) and not 0 <= programs.min() <= programs.max() <= 127:
        raise ValueError(f"a General MIDI program lies in 0..127, got {programs.max()}")
    score = symusic.Score(480, ttype="second")
    for prog in np.unique(programs):
        rows = notes[programs == prog]
        start = rows["start"].to_numpy(np.float64)
        track = symusic.Track(name=f"program {prog}", program=int(prog), ttype="second")
        track.notes = symusic.Note.from_numpy(
            start.astype(np.float32),
            (_restruck_ends(rows) - start).astype(np.float32),
            rows["pitch"].to_numpy(np.int8),
            np.clip(rows["velocity"].to_numpy(), 1, 127).astype(np.int8),
            "second",
        )
        score.tracks.append(track)
    return score


def midi_bytes(notes: pd.DataFrame, program: int | None = None) -> bytes:
    """A standard MIDI file of a note table, as bytes (see :func:`to_symusic`)."""
    return bytes(to_symusic(notes, program).dumps_midi())


def write_midi(notes: pd.DataFrame, path: str | Path, program: int | None = None) -> Path:
    """Write a note table as a standard MIDI file; return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(midi_bytes(notes, program))
    return path


def file_stem(piece_id: str) -> str:
    """A safe file-name stem: ``"my_midi/a/Maestro_10.mid"`` -> ``"my_midi_a_Maestro_10"``.

    The MIDI suffix goes, folders become ``_`` (two pieces of one name in two folders stay
    apart), anything but letters, digits, ``.``, ``-`` and ``_`` becomes ``_``.
    """
    stem = re.sub(r"\.midi?$", "", str(piece_id), flags=re.IGNORECASE)
    stem = re.sub(r"[^\w.-]+", "_", stem.replace("/", "_").replace("\\", "_")).strip("._")
    return stem or "piece"
