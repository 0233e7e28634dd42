"""From a corpus to training windows (introduced in notebook 01).

The pipeline is::

    load_corpus("bach")          -> list of Piece (each a note table)
    split_pieces(pieces, seed=0) -> {"train": [...], "val": [...], "test": [...]}
    Normalizer.fit(train)        -> invertible scaling of step, duration, velocity
    make_windows(train, norm)    -> Windows(pitch_seq, cont_seq, target_pitch, target_cont)

A note table is a :class:`pandas.DataFrame` with the columns ``pitch, start, end,
step, duration, velocity`` (times in seconds) sorted by start, then pitch.
``step`` is the time since the previous note started (0 for the other notes of a
chord) and ``duration`` is ``end - start``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from .config import CONT_FEATURES, SEQ_LEN, cache_dir

NOTE_COLUMNS = ("pitch", "start", "end", "step", "duration", "velocity")
#: A piece needs one window of 32 notes plus its target.
MIN_NOTES = SEQ_LEN + 1
#: Velocity given to score notes, which carry none (music21's default dynamic, mf).
SCORE_VELOCITY = 64
#: Bumped whenever parsing changes, so stale caches are never reused.
CACHE_VERSION = 3
MIDI_SUFFIXES = (".mid", ".midi")
SPLITS = ("train", "val", "test")


class BadInputError(ValueError):
    """A file or piece that cannot become a note table; the message says why."""


@dataclass
class Piece:
    """One piece of music as a note table.

    Attributes:
        id: stable identifier, e.g. ``"bach/bwv66.6"`` or a path relative to the MIDI folder.
        notes: the note table (see module docstring).
        split: ``"train"``/``"val"``/``"test"`` when the source fixes it (MAESTRO's CSV),
            else ``None`` and :func:`split_pieces` draws one.
    """

    id: str
    notes: pd.DataFrame
    split: str | None = None

    def __len__(self) -> int:
        return len(self.notes)

    def __repr__(self) -> str:
        return f"Piece(id={self.id!r}, notes={len(self.notes)}, split={self.split!r})"


class Corpus(list):
    """A list of :class:`Piece` that also remembers what was skipped and why.

    ``corpus.skipped`` is a list of ``(file, reason)``; ``print(corpus.report())``
    shows a summary. Nothing is dropped silently.
    """

    def __init__(
        self,
        pieces: Iterable[Piece] = (),
        skipped: Iterable[tuple[str, str]] = (),
        source: str = "",
        load_seconds: float = float("nan"),
        from_cache: bool = False,
    ):
        super().__init__(pieces)
        self.skipped: list[tuple[str, str]] = list(skipped)
        self.source = source
        self.load_seconds = load_seconds
        self.from_cache = from_cache

    def report(self, max_rows: int = 20) -> str:
        """A human-readable summary: pieces kept, notes, and every skipped file with its reason."""
        n_notes = sum(len(p) for p in self)
        lines = [
            f"{self.source}: {len(self)} pieces, {n_notes:,} notes kept; "
            f"{len(self.skipped)} skipped"
        ]
        for file, reason in self.skipped[:max_rows]:
            lines.append(f"  skipped {file}: {reason}")
        if len(self.skipped) > max_rows:
            lines.append(f"  ... and {len(self.skipped) - max_rows} more (see .skipped)")
        return "\n".join(lines)


# --------------------------------------------------------------------------- note tables


def note_table(
    pitch: Sequence[int], start: Sequence[float], end: Sequence[float], velocity: Sequence[int]
) -> pd.DataFrame:
    """Build a sorted note table from parallel arrays (times in seconds).

    Notes with ``end <= start`` (grace notes, zero-length MIDI events) cannot be
    played and are removed. Raises :class:`BadInputError` for pitches outside 0..127.
    """
    pitch = np.asarray(pitch, dtype=np.int64)
    start = np.asarray(start, dtype=np.float64)
    end = np.asarray(end, dtype=np.float64)
    velocity = np.asarray(velocity, dtype=np.int64)
    if not (len(pitch) == len(start) == len(end) == len(velocity)):
        raise ValueError("pitch, start, end and velocity must have the same length")
    if len(pitch) and (pitch.min() < 0 or pitch.max() > 127):
        bad = pitch[(pitch < 0) | (pitch > 127)]
        raise BadInputError(f"pitch out of range 0..127 (found {int(bad[0])})")
    keep = end > start
    pitch, start, end, velocity = pitch[keep], start[keep], end[keep], velocity[keep]
    order = np.lexsort((pitch, start))  # by start, then pitch
    pitch, start, end, velocity = pitch[order], start[order], end[order], velocity[order]
    step = np.diff(start, prepend=start[:1]) if len(start) else start
    return pd.DataFrame(
        {
            "pitch": pitch,
            "start": start,
            "end": end,
            "step": step,
            "duration": end - start,
            "velocity": np.clip(velocity, 1, 127),
        }
    )


def notes_from_midi(midi: str | Path | object) -> pd.DataFrame:
    """Note table of a MIDI file (path or ``pretty_midi.PrettyMIDI``), drums excluded.

    Raises :class:`BadInputError` with the reason for an unreadable, empty or
    drum-only file.
    """
    import pretty_midi

    if isinstance(midi, str | Path):
        path = Path(midi)
        if not path.exists():
            raise FileNotFoundError(f"no such MIDI file: {path}")
        if path.stat().st_size == 0:
            raise BadInputError("empty file (0 bytes)")
        try:
            pm = pretty_midi.PrettyMIDI(str(path))
        except Exception as exc:  # pretty_midi/mido raise many types for bad bytes
            raise BadInputError(
                f"corrupt or unreadable MIDI ({type(exc).__name__}: {exc})"
            ) from exc
    else:
        pm = midi
    pitched = [inst for inst in pm.instruments if not inst.is_drum]
    n_drum = sum(len(i.notes) for i in pm.instruments if i.is_drum)
    notes = [n for inst in pitched for n in inst.notes]
    if not notes:
        if n_drum:
            raise BadInputError(f"drum-only file ({n_drum} drum notes, no pitched notes)")
        raise BadInputError("no notes in file")
    return note_table(
        [n.pitch for n in notes],
        [n.start for n in notes],
        [n.end for n in notes],
        [n.velocity for n in notes],
    )


def notes_from_score(score: object) -> pd.DataFrame:
    """Note table of a music21 score; ties are merged, chords expanded, tempo respected.

    Times come from music21's ``secondsMap`` (so metronome marks are honoured);
    scores carry no performed velocity, so a note's own velocity is used when set
    and :data:`SCORE_VELOCITY` otherwise.
    """
    from music21 import chord, note

    flat = score.stripTies().flatten()
    pitch, start, end, vel = [], [], [], []
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
    if not pitch:
        raise BadInputError("no pitched notes in score")
    return note_table(pitch, start, end, vel)


# --------------------------------------------------------------------------- sources


def _bach_files() -> list[Path]:
    from music21 import corpus

    return sorted(
        (Path(p) for p in corpus.getComposer("bach") if Path(p).suffix in (".mxl", ".xml")),
        key=lambda p: p.name,
    )


def _essen_files() -> list[Path]:
    import music21

    folder = Path(music21.__file__).parent / "corpus" / "essenFolksong"
    return sorted(p for p in folder.glob("*.abc") if not p.stem.startswith("test"))


def _midi_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file())


def _maestro_splits(folder: Path) -> dict[str, str]:
    """Map a MIDI path (relative to ``folder``) to its split from a MAESTRO-style CSV."""
    mapping: dict[str, str] = {}
    for csv in sorted(folder.glob("*.csv")):
        try:
            table = pd.read_csv(csv)
        except Exception:  # not a table we understand: not a MAESTRO index
            continue
        if not {"midi_filename", "split"} <= set(table.columns):
            continue
        for name, split in zip(table["midi_filename"], table["split"], strict=True):
            split = {"validation": "val"}.get(str(split), str(split))
            if split not in SPLITS:
                raise ValueError(f"{csv.name}: unknown split {split!r} for {name}")
            mapping[Path(str(name)).as_posix()] = split
    return mapping


def _resolve_source(source: str | Path) -> tuple[str, list[Path], Path | None]:
    if isinstance(source, str) and source in ("bach", "essen"):
        files = _bach_files() if source == "bach" else _essen_files()
        return source, files, None
    folder = Path(source).expanduser()
    if not folder.exists():
        raise FileNotFoundError(
            f"source {str(source)!r} is neither 'bach', 'essen' nor an existing folder"
        )
    if not folder.is_dir():
        raise NotADirectoryError(f"source {folder} is a file; pass the folder that holds it")
    files = _midi_files(folder)
    if not files:
        raise FileNotFoundError(f"no .mid or .midi files found under folder {folder}")
    return "midi", files, folder


def _cache_key(
    kind: str, files: list[Path], folder: Path | None, limit: int | None, min_notes: int
) -> str:
    import music21
    import pretty_midi

    h = hashlib.sha1()
    h.update(
        json.dumps(
            [
                CACHE_VERSION,
                kind,
                limit,
                min_notes,
                music21.__version__,
                getattr(pretty_midi, "__version__", "?"),
            ]
        ).encode()
    )
    for f in files:
        st = f.stat()
        name = f.relative_to(folder).as_posix() if folder else f.name
        h.update(f"{name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    if folder is not None:
        for csv in sorted(folder.glob("*.csv")):
            h.update(f"{csv.name}|{csv.stat().st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _save_cache(path: Path, corpus: Corpus) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lengths = np.array([len(p) for p in corpus], dtype=np.int64)
    cat = (
        pd.concat([p.notes for p in corpus], ignore_index=True)
        if len(corpus)
        else pd.DataFrame({c: [] for c in NOTE_COLUMNS})
    )
    tmp = path.with_suffix(".tmp.npz")
    columns = {
        c: cat[c].to_numpy(np.int64 if c in ("pitch", "velocity") else np.float64)
        for c in NOTE_COLUMNS
    }
    np.savez(
        tmp,
        ids=np.array([p.id for p in corpus], dtype=str),
        splits=np.array([p.split or "" for p in corpus], dtype=str),
        lengths=lengths,
        skipped=np.array([list(s) for s in corpus.skipped] or np.empty((0, 2)), dtype=str),
        **columns,
    )
    os.replace(tmp, path)


def _load_cache(path: Path, source: str) -> Corpus:
    with np.load(path, allow_pickle=False) as z:
        bounds = np.concatenate([[0], np.cumsum(z["lengths"])])
        columns = {c: z[c] for c in NOTE_COLUMNS}
        pieces = []
        for i, (pid, split) in enumerate(zip(z["ids"], z["splits"], strict=True)):
            a, b = bounds[i], bounds[i + 1]
            notes = pd.DataFrame({c: v[a:b] for c, v in columns.items()}, copy=True)
            pieces.append(Piece(str(pid), notes, str(split) or None))
        skipped = [(str(f), str(r)) for f, r in z["skipped"]]
    return Corpus(pieces, skipped, source=source, from_cache=True)


def _parse_file(kind: str, path: Path, folder: Path | None) -> list[tuple[str, pd.DataFrame]]:
    """Parse one file into (id, note table) pairs; raise BadInputError on failure."""
    if kind == "midi":
        return [(path.relative_to(folder).as_posix(), notes_from_midi(path))]
    from music21 import converter, stream

    try:
        parsed = converter.parse(path)
    except Exception as exc:
        raise BadInputError(f"music21 could not parse it ({type(exc).__name__}: {exc})") from exc
    try:
        if kind == "bach":
            return [(f"bach/{path.stem}", notes_from_score(parsed))]
        scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
        out = []
        for i, sc in enumerate(scores):
            num = sc.metadata.number if sc.metadata and sc.metadata.number else i + 1
            out.append((f"essen/{path.stem}/{num}", notes_from_score(sc)))
        return out
    except BadInputError:
        raise
    except Exception as exc:  # music21 raises many types on odd scores
        raise BadInputError(f"could not read notes ({type(exc).__name__}: {exc})") from exc


def _parse_safely(job: tuple[str, Path, Path | None]) -> list[tuple[str, pd.DataFrame]] | str:
    """Worker wrapper: the parsed pieces, or the reason (a string) the file was skipped."""
    try:
        return _parse_file(*job)
    except BadInputError as exc:
        return str(exc)


def _n_workers(n_files: int) -> int:
    """Parser processes: ``MELODY_WORKERS`` or one per core (at most 8), 1 for few files."""
    if n_files < 16:
        return 1
    env = os.environ.get("MELODY_WORKERS")
    if env:
        return max(1, int(env))
    return max(1, min(8, os.cpu_count() or 1))


def load_corpus(
    source: str | Path = "bach",
    *,
    limit: int | None = None,
    min_notes: int = MIN_NOTES,
    use_cache: bool = True,
    progress: bool = True,
) -> Corpus:
    """Load a corpus as a list of :class:`Piece` (a :class:`Corpus`).

    Args:
        source: ``"bach"`` (every Bach chorale in music21's corpus, offline; the
            default), ``"essen"`` (the Essen folk songs in the same corpus), or a
            path to a folder of ``.mid``/``.midi`` files searched recursively. A
            MAESTRO-style CSV in that folder (columns ``midi_filename`` and
            ``split``) fixes each piece's split.
        limit: parse only the first ``limit`` files (sorted by name), for quick demos.
        min_notes: pieces with fewer notes are skipped (at least 33: one window + target).
        use_cache: reuse/write the parsed corpus under ``data/cache`` (keyed by source,
            file list, sizes, modification times and these settings).
        progress: show a progress bar while parsing.

    Returns:
        A :class:`Corpus` (a list of pieces) whose ``.skipped`` lists ``(file, reason)``
        for every file that could not be used: corrupt, empty, drum-only, too short.

    Raises:
        FileNotFoundError: the folder does not exist or has no MIDI files.
        ValueError: no file in the source could be used (the message names the source).
    """
    if min_notes < MIN_NOTES:
        raise ValueError(
            f"min_notes must be at least {MIN_NOTES} (a {SEQ_LEN}-note window "
            f"plus its target), got {min_notes}"
        )
    if limit is not None and limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    t0 = time.perf_counter()
    kind, files, folder = _resolve_source(source)
    if limit is not None:
        files = files[:limit]
    label = str(source) if folder is None else f"{folder.name}/"  # no machine paths in reports
    cache_file = cache_dir() / f"{kind}-{_cache_key(kind, files, folder, limit, min_notes)}.npz"
    if use_cache and cache_file.exists():
        try:
            corpus = _load_cache(cache_file, label)
            corpus.load_seconds = time.perf_counter() - t0
            return corpus
        except Exception:  # a broken cache file is rebuilt, never trusted
            cache_file.unlink(missing_ok=True)

    splits = _maestro_splits(folder) if folder is not None else {}
    pieces: list[Piece] = []
    skipped: list[tuple[str, str]] = []
    from tqdm.auto import tqdm

    jobs = [(kind, path, folder) for path in files]
    n_workers = _n_workers(len(files))
    if n_workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(n_workers) as pool:
            results = list(
                tqdm(
                    pool.map(_parse_safely, jobs, chunksize=4),
                    total=len(jobs),
                    desc=f"parsing {kind}",
                    unit="file",
                    disable=not progress,
                )
            )
    else:
        results = [
            _parse_safely(j)
            for j in tqdm(jobs, desc=f"parsing {kind}", unit="file", disable=not progress)
        ]
    for path, result in zip(files, results, strict=True):
        shown = path.relative_to(folder).as_posix() if folder else path.name
        if isinstance(result, str):
            skipped.append((shown, result))
            continue
        for pid, notes in result:
            if len(notes) < min_notes:
                skipped.append(
                    (
                        pid if kind == "essen" else shown,
                        f"too few notes ({len(notes)} < {min_notes})",
                    )
                )
                continue
            pieces.append(Piece(pid, notes, splits.get(pid)))
    if not pieces:
        reasons = "; ".join(f"{f}: {r}" for f, r in skipped[:5])
        raise ValueError(f"no usable piece in source {label!r} ({len(files)} files; {reasons})")
    corpus = Corpus(pieces, skipped, source=label)
    if use_cache:
        _save_cache(cache_file, corpus)
    corpus.load_seconds = time.perf_counter() - t0
    return corpus


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

    LOG = (True, True, False)

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
        if self.mean.shape != (3,) or self.std.shape != (3,) or (self.std <= 0).any():
            raise ValueError("mean and std must have 3 entries and std must be positive")

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
            "log_transform": list(self.LOG),
            "eps": self.eps,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "degenerate": list(self.degenerate),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Normalizer:
        if list(d.get("features", [])) != list(CONT_FEATURES):
            raise ValueError(f"normalizer features {d.get('features')} != {list(CONT_FEATURES)}")
        return cls(d["mean"], d["std"], d["eps"], d.get("degenerate", (False,) * 3))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> Normalizer:
        return cls.from_dict(json.loads(Path(path).read_text()))

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


def split_summary(
    splits: dict[str, Sequence[Piece]], normalizer: Normalizer | None = None, seq_len: int = SEQ_LEN
) -> pd.DataFrame:
    """Pieces, notes and windows per split as a small table."""
    rows = []
    for name, pcs in splits.items():
        n_notes = sum(len(p) for p in pcs)
        n_win = sum(max(len(p) - seq_len, 0) for p in pcs)
        rows.append({"split": name, "pieces": len(pcs), "notes": n_notes, "windows": n_win})
    table = pd.DataFrame(rows).set_index("split")
    table.loc["total"] = table.sum()
    return table


def load_piece(piece_id: str) -> Piece:
    """Parse one named piece without loading its corpus, e.g. ``load_piece("bach/bwv66.6")``.

    Accepts ``"bach/<name>"`` for a chorale of music21's corpus, or a path to a MIDI file.
    """
    if piece_id.startswith("bach/"):
        matches = [f for f in _bach_files() if f.stem == piece_id[5:]]
        if not matches:
            raise KeyError(f"no Bach chorale {piece_id!r} in the music21 corpus")
        return Piece(piece_id, _parse_file("bach", matches[0], None)[0][1])
    path = Path(piece_id)
    return Piece(path.name, notes_from_midi(path))


def get_piece(pieces: Sequence[Piece], piece_id: str) -> Piece:
    """The piece with this id; a clear KeyError listing close ids otherwise."""
    for p in pieces:
        if p.id == piece_id:
            return p
    import difflib

    close = difflib.get_close_matches(piece_id, [p.id for p in pieces], n=5)
    raise KeyError(f"no piece {piece_id!r}; close ids: {close}")
