"""Note tables and MIDI (notebook 01). A note table is a DataFrame ``pitch, start, end, step,
duration, velocity`` (seconds) sorted by start then pitch (``step``: time since the previous
onset, 0 in a chord), optionally ``part`` and ``program``. MIDI is read by symusic: a note-off
ends the earliest sounding note of its key, tempo events of every track count, zero-length and
drum notes are counted in :class:`ParsedNotes` ``dropped``; a note never released is lost."""

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
    cols = {"pitch": np.asarray(pitch, np.int64), "start": np.asarray(start, np.float64)}
    cols |= {"end": np.asarray(end, np.float64), "velocity": np.asarray(velocity, np.int64)}
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
    """A sorted note table from parallel arrays (seconds); notes with ``end <= start`` are left
    out, velocity 0 becomes 1; values outside 0..127 or non-finite times: :class:`BadInputError`."""
    return _table(pitch, start, end, velocity, part, program)[0]


def _count(dropped: dict[str, int], reason: str, n: int) -> None:
    if n > 0:
        dropped[reason] = dropped.get(reason, 0) + int(n)


def parse_midi(midi: str | Path | bytes | bytearray) -> ParsedNotes:
    """A MIDI file (path or bytes) as a note table, pitched tracks merged (``part``: the track,
    ``program``: its GM program). FileNotFoundError, IsADirectoryError for a bad path;
    BadInputError for an empty, corrupt, note-less or drum-only file."""
    import symusic

    if isinstance(midi, str | Path):
        if Path(midi).is_dir():
            raise IsADirectoryError(f"{Path(midi).name!r} is a folder, not a MIDI file")
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
    keys, sizes = ("time", "duration", "pitch", "velocity"), [len(a["pitch"]) for a in arrays]
    cat = {k: np.concatenate([a[k] for a in arrays]) for k in keys}
    start = cat["time"].astype(np.float64)  # float32 seconds from symusic, kept as float64
    end, part = start + cat["duration"].astype(np.float64), np.repeat(np.arange(len(tracks)), sizes)
    program = np.repeat([t.program for t in tracks], sizes)
    table, n_zero = _table(cat["pitch"], start, end, cat["velocity"], part, program)
    _count(dropped, ZERO_LENGTH, n_zero)
    if table.empty:
        raise BadInputError(f"every note has zero length ({n_zero})")
    return ParsedNotes(table, dropped)


def parse_score(score: object) -> ParsedNotes:
    """A music21 score as a note table: ties merged, chords expanded, tempo marks respected,
    velocity :data:`SCORE_VELOCITY` unless set, ``part`` 0 the top staff, grace notes counted."""
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
    """A ``symusic.Score`` (seconds) of a note table, one track per program (``program``
    overrides the column; default piano); a note struck again while it sounds ends where the
    new one starts (in the MIDI only: one channel cannot hold two overlapping notes of a key)."""
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
        durations = (_restruck_ends(rows) - start).astype(np.float32)
        velocity = np.clip(rows["velocity"].to_numpy(), 1, 127).astype(np.int8)
        columns = (start.astype(np.float32), durations, rows["pitch"].to_numpy(np.int8), velocity)
        track.notes = symusic.Note.from_numpy(*columns, "second")
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
    """A safe file-name stem: ``"my_midi/a/Maestro_10.mid"`` -> ``"my_midi_a_Maestro_10"`` (the
    suffix goes; folders and anything but letters, digits, ``.``, ``-``, ``_`` become ``_``)."""
    stem = re.sub(r"\.midi?$", "", str(piece_id), flags=re.IGNORECASE)
    stem = re.sub(r"[^\w.-]+", "_", stem.replace("/", "_").replace("\\", "_")).strip("._")
    return stem or "piece"
