"""Corpora (``"bach"``, ``"essen"``, a MIDI folder) to training windows (notebook 01):
``load_corpus`` -> ``split_pieces`` -> ``Normalizer.fit`` (train) -> ``make_windows`` = ``prepare``.
Parses are cached in ``data/cache/`` (``MELODY_CACHE_DIR``, ``MELODY_NO_CACHE=1``)."""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import io
import json
import math
import os
import secrets
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .config import (
    CONT_FEATURES,
    DATA_DIR,
    IN_CHECKOUT,
    SEQ_LEN,
    SPLIT_BY,
    cache_dir,
    cache_enabled,
)
from .notes import (
    CHURCH_ORGAN,
    MIDI_SUFFIXES,
    NOTE_COLUMNS,
    PART,
    PROGRAM,
    BadInputError,
    ParsedNotes,
    check_pitch_range,
    parse_midi,
    parse_score,
)

#: A piece needs one window of 32 notes plus its target.
MIN_NOTES = SEQ_LEN + 1
SPLITS = ("train", "val", "test")
#: Bumped whenever parsing changes, so that no stale cache entry is ever reused.
CACHE_VERSION = 6
CACHE_MAX_MB = 256
#: The embedded chorales and their build record.
BACH_TABLE = DATA_DIR / "bach_chorales.csv.gz"
BACH_RECORD = DATA_DIR / "bach_chorales.json"
BUILTIN = ("bach", "essen")


@dataclass
class Piece:
    """One piece: ``id`` (``"bach/bwv66.6"`` or a path inside the MIDI folder), its note
    table, and its ``split`` when the source fixes it (MAESTRO's CSV), else None."""

    id: str
    notes: pd.DataFrame
    split: str | None = None

    def __len__(self) -> int:
        return len(self.notes)

    def __repr__(self) -> str:
        return f"Piece(id={self.id!r}, notes={len(self.notes)}, split={self.split!r})"


class Corpus(list):
    """A list of :class:`Piece` that remembers what was left out and why: ``skipped`` ``(file,
    reason)``, ``dropped`` ``(piece, reason, count)`` of notes, ``warnings`` ``(file, message)``
    from the readers; ``source`` is a label (never a path), ``fingerprint`` a hash of the notes."""

    def __init__(self, pieces=(), skipped=(), dropped=(), warnings=(), source: str = ""):
        super().__init__(pieces)
        self.skipped = [tuple(map(str, r)) for r in skipped]
        self.dropped = [(str(f), str(r), int(n)) for f, r, n in dropped]
        self.warnings = [tuple(map(str, r)) for r in warnings]
        self.source = source
        self.fingerprint = fingerprint(self)
        self.from_cache, self.load_seconds = False, math.nan

    def report(self, max_rows: int = 20) -> str:
        """A readable summary: pieces and notes kept, every skipped file and dropped note."""
        n_dropped = sum(n for _, _, n in self.dropped)
        n_files = len({f for f, _, _ in self.dropped})
        head = f"{self.source}: {len(self)} pieces, {sum(map(len, self)):,} notes kept; "
        head += f"{len(self.skipped)} skipped; {n_dropped:,} notes dropped in {n_files} file(s)"
        rows = [f"  skipped {f}: {r}" for f, r in self.skipped]
        rows += [f"  dropped {n:,} notes from {f}: {r}" for f, r, n in self.dropped]
        rows += [f"  warning for {f}: {m}" for f, m in self.warnings]
        if len(rows) > max_rows:
            extra = len(rows) - max_rows
            rows[max_rows:] = [f"  ... and {extra} more (see .skipped, .dropped, .warnings)"]
        return "\n".join([head, *rows])


def fingerprint(pieces: Sequence[Piece]) -> str:
    """A short hash of the pieces' ids, fixed splits and notes."""
    h = hashlib.sha256()
    for p in pieces:
        h.update(f"{p.id}\0{p.split or ''}\0".encode())
        h.update(np.ascontiguousarray(p.notes[list(NOTE_COLUMNS)].to_numpy(np.float64)).tobytes())
    return h.hexdigest()[:16]


@dataclass
class _Source:
    label: str  # shown in reports: "bach", "essen" or "folder/"
    kind: str  # "bach", "essen" or "midi"
    files: list[tuple[Path, str]]  # (path, shown name)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    splits: dict[str, str] = field(default_factory=dict)
    extra: list[Path] = field(default_factory=list)  # files of the cache key (MAESTRO's CSV)


def _music21_files(kind: str) -> list[Path]:
    import music21
    from music21 import corpus

    if kind == "bach":
        found = (Path(p) for p in corpus.getComposer("bach") if Path(p).suffix in (".mxl", ".xml"))
        return sorted(found, key=lambda p: p.name)
    folder = Path(music21.__file__).parent / "corpus" / "essenFolksong"
    return sorted(p for p in folder.glob("*.abc") if not p.stem.startswith("test"))


def _warn(message: str, category: type = RuntimeWarning) -> None:
    warnings.warn(message, category, stacklevel=4)


def _walk_midi(folder: Path) -> tuple[list[tuple[Path, str]], list[tuple[str, str]]]:
    """Every MIDI file under ``folder`` (links followed once), and what was skipped and why."""
    found, skipped = [], []
    seen: dict[str, str] = {}  # real path -> name shown, of every folder and file listed

    def walk(directory: Path) -> None:
        shown = directory.relative_to(folder).as_posix() + "/"
        real = os.path.realpath(directory)
        if real in seen:
            skipped.append((shown, f"already listed as {seen[real]} (a link loop?)"))
            return
        seen[real] = shown
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            skipped.append((shown, f"cannot list folder ({type(exc).__name__})"))
            return
        for entry in entries:
            path = Path(entry.path)
            name = path.relative_to(folder).as_posix()
            if entry.is_dir(follow_symlinks=True):
                walk(path)
            elif path.suffix.lower() not in MIDI_SUFFIXES:
                continue
            elif entry.is_symlink() and not path.exists():
                skipped.append((name, "broken symbolic link"))
            elif entry.is_file(follow_symlinks=True):
                first = seen.setdefault(os.path.realpath(path), name)
                if first != name:
                    skipped.append((name, f"same file as {first} (a link)"))
                else:
                    found.append((path, name))

    walk(folder)
    return sorted(found, key=lambda f: f[1]), skipped


def _maestro_splits(folder: Path) -> tuple[dict[str, str], list[Path]]:
    """``{relative MIDI path: split}`` from a MAESTRO-style CSV in ``folder``, and the CSVs."""
    mapping, used = {}, []
    for csv in sorted(folder.glob("*.csv")):
        try:
            table = pd.read_csv(csv)
        except Exception:  # not a table we understand: not a MAESTRO index
            continue
        if not {"midi_filename", "split"} <= set(table.columns):
            continue
        used.append(csv)
        for name, split in zip(table["midi_filename"], table["split"], strict=True):
            split = {"validation": "val"}.get(str(split), str(split))
            if split not in SPLITS:
                raise ValueError(f"{csv.name}: unknown split {split!r} for {name}")
            mapping[Path(str(name)).as_posix()] = split
    return mapping, used


def _resolve(source: str | Path) -> _Source:
    if isinstance(source, str):
        if not source.strip():
            raise ValueError(f"source is empty; pass one of {BUILTIN} or a folder of MIDI files")
        if source in BUILTIN:
            if Path(source).is_dir():
                hint = f"{source!r} is the built-in corpus; pass './{source}' for the folder"
                _warn(hint, UserWarning)
            return _Source(source, source, [(p, p.name) for p in _music21_files(source)])
    elif not isinstance(source, Path):
        raise TypeError(f"source must be a corpus name or a folder, got {type(source).__name__}")
    folder = Path(source).expanduser()
    if not folder.exists():
        close = difflib.get_close_matches(str(source).strip().lower().rstrip("/"), BUILTIN, 1, 0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise FileNotFoundError(f"source {str(source)!r} is neither bach, essen nor a folder{hint}")
    if not folder.is_dir():
        raise NotADirectoryError(f"source {folder.name!r} is a file; pass the folder that holds it")
    files, skipped = _walk_midi(folder)
    if not files:
        raise FileNotFoundError(f"no .mid or .midi file under folder {folder.name!r} {skipped[:3]}")
    splits, csvs = _maestro_splits(folder)
    return _Source(f"{folder.resolve().name}/", "midi", files, skipped, splits, csvs)


def _parse_file(kind: str, path: Path, shown: str) -> list[tuple[str, ParsedNotes | str]]:
    """``(piece id, ParsedNotes or the reason it is unusable)`` for each piece of a file."""
    if kind == "midi":
        return [(shown, parse_midi(path))]
    from music21 import converter, stream

    try:
        parsed = converter.parse(path)
    except Exception as exc:  # music21 raises many types on odd files
        raise BadInputError(f"music21 cannot parse it ({type(exc).__name__}: {exc})") from exc
    if kind == "bach":
        return [(f"bach/{path.stem}", parse_score(parsed))]
    out: list[tuple[str, ParsedNotes | str]] = []
    for i, score in enumerate(parsed.scores if isinstance(parsed, stream.Opus) else [parsed]):
        number = score.metadata.number if score.metadata and score.metadata.number else i + 1
        pid = f"essen/{path.stem}/{number}"
        try:  # one bad tune does not lose its collection
            out.append((pid, parse_score(score)))
        except BadInputError as exc:
            out.append((pid, str(exc)))
    return out


def _digest(path: Path) -> bytes:
    try:
        return hashlib.sha1(path.read_bytes()).digest()
    except OSError as exc:  # parsing will skip it and say why
        return f"unreadable {type(exc).__name__}".encode()


def _collect(src: _Source, digests: list[bytes], min_notes: int, progress: bool) -> Corpus:
    """Parse every file of the source into a Corpus (the slow path)."""
    from tqdm.auto import tqdm

    pieces, skipped, dropped, caught, seen_bytes = [], list(src.skipped), [], [], {}
    organ = src.kind == "bach"
    bar = tqdm(src.files, desc=f"parsing {src.label}", unit="file", disable=not progress)
    for (path, shown), digest in zip(bar, digests, strict=True):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            try:
                result: object = _parse_file(src.kind, path, shown)
            except BadInputError as exc:
                result = str(exc)
            except OSError as exc:
                result = f"cannot read file ({type(exc).__name__}: {exc.strerror or exc})"
        messages = [str(w.message) for w in record if w.category is not ResourceWarning]
        caught += [(shown, m) for m in dict.fromkeys(messages)]
        if isinstance(result, str):
            skipped.append((shown, result))
            continue
        if src.kind == "midi" and digest in seen_bytes:  # a duplicate would leak across splits
            skipped.append((shown, f"identical bytes to {seen_bytes[digest]} (a duplicate)"))
            continue
        seen_bytes[digest] = shown
        for pid, parsed in result:
            if isinstance(parsed, str):
                skipped.append((pid, parsed))
            elif len(parsed.notes) < min_notes:
                skipped.append((pid, f"too few notes ({len(parsed.notes)} < {min_notes})"))
            else:
                dropped += [(pid, reason, n) for reason, n in parsed.dropped.items()]
                notes = parsed.notes.assign(program=CHURCH_ORGAN) if organ else parsed.notes
                pieces.append(Piece(pid, notes, src.splits.get(pid)))
    return Corpus(pieces, skipped, dropped, caught, src.label)


def _cache_key(src: _Source, digests: list[bytes], limit: int | None, min_notes: int) -> str:
    import music21
    import symusic

    settings = [CACHE_VERSION, src.kind, limit, min_notes, music21.__version__, symusic.__version__]
    h = hashlib.sha256(json.dumps([*settings, src.skipped]).encode())
    for (_, shown), digest in zip(src.files, digests, strict=True):
        h.update(shown.encode() + b"\0" + digest)
    for extra in src.extra:
        h.update(extra.name.encode() + b"\0" + _digest(extra))
    return h.hexdigest()[:24]


def cache_limit_bytes() -> int:
    """``MELODY_CACHE_MAX_MB`` (default 256) in bytes; a bad value is a clear error."""
    env = os.environ.get("MELODY_CACHE_MAX_MB", "").strip()
    try:
        mb = float(env) if env else CACHE_MAX_MB
    except ValueError:
        raise ValueError(f"MELODY_CACHE_MAX_MB must be a number, got {env!r}") from None
    if not math.isfinite(mb) or mb < 0:
        raise ValueError(f"MELODY_CACHE_MAX_MB must be a number >= 0, got {env!r}")
    return int(mb * 2**20)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a unique temporary file renamed to ``path``: never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def prune_cache(folder: Path | None = None, max_bytes: int | None = None, keep=()) -> list[Path]:
    """Delete least recently used entries but ``keep`` until ``max_bytes`` fit (old temp too)."""
    folder = cache_dir() if folder is None else Path(folder)
    max_bytes = cache_limit_bytes() if max_bytes is None else max_bytes
    removed, entries = [], []
    for f in [*folder.glob("*.npz"), *folder.glob(".*.tmp")]:
        try:
            st = f.stat()
        except OSError:
            continue
        if f.suffix != ".tmp":
            entries.append((st.st_mtime, st.st_size, f))
        elif time.time() - st.st_mtime > 3600:
            f.unlink(missing_ok=True)
            removed.append(f)
    total = sum(size for _, size, _ in entries)
    keep = {Path(k).resolve() for k in keep}
    for _, size, f in sorted(entries):
        if total <= max_bytes:
            break
        if f.resolve() not in keep:
            f.unlink(missing_ok=True)
            total -= size
            removed.append(f)
    return removed


def clear_cache(folder: Path | None = None) -> list[Path]:
    """Delete every cache entry (and leftover temporary file) of the cache folder."""
    folder = cache_dir() if folder is None else Path(folder)
    removed = [*folder.glob("*.npz"), *folder.glob(".*.tmp")]
    for f in removed:
        f.unlink(missing_ok=True)
    return removed


def _store(path: Path, corpus: Corpus) -> None:
    """Write the corpus as one ``.npz`` and prune; an unwritable folder is only a warning."""
    cat = pd.concat([p.notes for p in corpus], ignore_index=True)
    columns = [c for c in (*NOTE_COLUMNS, PART, PROGRAM) if c in cat and cat[c].notna().all()]
    arrays = {c: cat[c].to_numpy() for c in columns}
    for name, width in (("skipped", 2), ("dropped", 3), ("warnings", 2)):
        rows = [[str(x) for x in row] for row in getattr(corpus, name)]
        arrays[name] = np.array(rows or np.empty((0, width)), dtype=str)
    arrays["ids"] = np.array([p.id for p in corpus], str)
    arrays["splits"] = np.array([p.split or "" for p in corpus], str)
    arrays["lengths"] = np.array(list(map(len, corpus)))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    try:
        atomic_write(path, buf.getvalue())
        prune_cache(path.parent, keep=[path])
    except OSError as exc:
        where = path.parent.name if IN_CHECKOUT else "the cache folder"
        msg = f"could not write the parse cache in {where}/ ({type(exc).__name__}: "
        msg += f"{exc.strerror or exc}); the corpus is not cached. "
        _warn(msg + "Set MELODY_CACHE_DIR to a writable folder or MELODY_NO_CACHE=1")


def _load_cache(path: Path, label: str) -> Corpus | None:
    """The cached corpus, or None (a broken entry is deleted with a warning, never trusted)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            bounds = np.concatenate([[0], np.cumsum(z["lengths"])])
            cols = {c: z[c] for c in (*NOTE_COLUMNS, PART, PROGRAM) if c in z.files}
            pieces = [
                Piece(str(pid), pd.DataFrame({c: v[a:b] for c, v in cols.items()}), str(s) or None)
                for pid, s, a, b in zip(z["ids"], z["splits"], bounds[:-1], bounds[1:], strict=True)
            ]
            corpus = Corpus(pieces, z["skipped"], z["dropped"], z["warnings"], label)
    except Exception as exc:
        _warn(f"ignoring unreadable cache entry {path.name} ({type(exc).__name__}); parsing again")
        path.unlink(missing_ok=True)
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # recently used, for pruning
    corpus.from_cache = True
    return corpus


def _read_bach_table(limit: int | None) -> Corpus:
    """The embedded chorales (the first ``limit`` pieces), with their build record's report."""
    ints = {"pitch": np.int64, "velocity": np.int64, PART: np.int64}
    # every digit back: pandas 3 parses floats exactly by default (and deprecates the option)
    exact = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
    table = pd.read_csv(BACH_TABLE, dtype=ints, **exact)
    record = json.loads(BACH_RECORD.read_text())
    ids = table.pop("piece").to_numpy()
    bounds = np.r_[np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]), len(ids)]
    n = len(bounds) - 1 if limit is None else min(limit, len(bounds) - 1)
    notes = table.assign(program=CHURCH_ORGAN)
    pieces = [
        Piece(str(ids[a]), notes.iloc[a:b].reset_index(drop=True))
        for a, b in zip(bounds[:n], bounds[1 : n + 1], strict=True)
    ]
    kept = {p.id for p in pieces}
    dropped = [r for r in record["dropped"] if r[0] in kept]
    skipped = [r for r in record["skipped"] if limit is None]
    return Corpus(pieces, skipped, dropped, [], "bach")


def load_corpus(
    source: str | Path = "bach",
    *,
    limit: int | None = None,
    min_notes: int = MIN_NOTES,
    use_cache: bool = True,
    progress: bool = True,
) -> Corpus:
    """Load ``"bach"``, ``"essen"`` or a folder of MIDI files (recursively; a MAESTRO-style CSV
    with ``midi_filename`` and ``split`` fixes splits). ``limit``: the first files (pieces of
    ``"bach"``) by name; pieces under ``min_notes`` are skipped. Raises ValueError (bad settings,
    no usable piece) or FileNotFoundError (no such folder, no MIDI file)."""
    for name, value, low in (("min_notes", min_notes, MIN_NOTES), ("limit", limit, 1)):
        wrong = isinstance(value, bool) or not isinstance(value, int) or value < low
        if value is not None and wrong:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    t0 = time.perf_counter()
    if source == "bach" and min_notes == MIN_NOTES and BACH_TABLE.is_file():
        if Path(source).is_dir():
            hint = f"{source!r} is the built-in corpus; pass './{source}' for the folder"
            warnings.warn(hint, UserWarning, stacklevel=2)
        corpus = _read_bach_table(limit)
        corpus.load_seconds = time.perf_counter() - t0
        return corpus
    src = _resolve(source)
    src.files = src.files[:limit]
    use_cache = use_cache and cache_enabled()
    if use_cache:
        cache_limit_bytes()  # a bad MELODY_CACHE_MAX_MB fails now, not after the parse
    digests = [_digest(path) for path, _ in src.files]
    path = cache_dir() / f"{src.kind}-{_cache_key(src, digests, limit, min_notes)}.npz"
    corpus = _load_cache(path, src.label) if use_cache else None
    if corpus is None:
        if src.kind == "bach":
            why = "is not here (installed package?)"
            if BACH_TABLE.is_file():
                why = f"holds the pieces of min_notes={MIN_NOTES}, not {min_notes}"
            _warn(f"data/bach_chorales.csv.gz {why}: parsing music21's", UserWarning)
        corpus = _collect(src, digests, min_notes, progress)
        for shown, message in corpus.warnings:
            _warn(f"{shown}: {message}")
        if not corpus:
            why = "; ".join(f"{f}: {r}" for f, r in corpus.skipped[:5])
            raise ValueError(f"no usable piece in {src.label!r} ({len(src.files)} files; {why})")
        if use_cache:
            _store(path, corpus)
    corpus.load_seconds = time.perf_counter() - t0
    return corpus


def load_piece(piece_id: str) -> Piece:
    """One piece: ``"bach/bwv66.6"`` (from the embedded chorales) or a MIDI file's path."""
    if piece_id.startswith("bach/"):
        return get_piece(load_corpus("bach", progress=False), piece_id)
    return Piece(Path(piece_id).name, parse_midi(piece_id).notes)


def get_piece(pieces: Sequence[Piece], piece_id: str) -> Piece:
    """The piece with this id; a KeyError listing close ids otherwise."""
    for p in pieces:
        if p.id == piece_id:
            return p
    close = difflib.get_close_matches(piece_id, [p.id for p in pieces], n=5)
    raise KeyError(f"no piece {piece_id!r}; close ids: {close}")


def split_pieces(
    pieces: Sequence[Piece], seed: int = 0, fractions=(0.8, 0.1, 0.1), by: str = SPLIT_BY
) -> dict[str, list[Piece]]:
    """``train``/``val``/``test`` by piece: splits fixed by the source are kept, the others are
    shuffled by ``seed`` in id order and cut by ``fractions`` (each split gets one of three+).

    ``by="tune"`` keeps the pieces that share a tune (:func:`melody_utils.tunes.tune_groups`)
    in one split: the groups are shuffled and cut instead, by their pieces; a group with a
    piece of a fixed split joins that split (the most common one, if several)."""
    wrong = len(fractions) != 3 or min(fractions) < 0
    if wrong or not math.isclose(sum(fractions), 1, abs_tol=1e-6):
        raise ValueError(f"fractions must be three numbers >= 0 summing to 1, got {fractions}")
    if by not in ("piece", "tune"):
        raise ValueError(f"by must be 'piece' or 'tune', got {by!r}")
    if len({p.id for p in pieces}) != len(pieces):
        raise ValueError("piece ids must be unique")
    out: dict[str, list[Piece]] = {s: [p for p in pieces if p.split == s] for s in SPLITS}
    if by == "tune":
        from .tunes import tune_groups

        byid = {p.id: p for p in pieces}
        groups = [[byid[i] for i in g] for g in tune_groups(pieces)]
    else:
        groups = [[p] for p in pieces]
    free = []
    for g in groups:
        fixed = Counter(p.split for p in g if p.split is not None)
        if fixed:  # the free members join the group's fixed split
            home = max(SPLITS, key=lambda s: fixed[s])
            out[home] += [p for p in g if p.split is None]
        else:
            free.append(sorted(g, key=lambda p: p.id))
    free.sort(key=lambda g: g[0].id)
    n_free = sum(map(len, free))
    n_train, n_val = round(fractions[0] * n_free), round(fractions[1] * n_free)
    if n_free >= 3:
        n_val = max(n_val, int(fractions[1] > 0))
        n_train = min(n_train, n_free - n_val - int(fractions[2] > 0))
    free_splits: dict[str, list[list[Piece]]] = {s: [] for s in SPLITS}
    placed = 0  # pieces before this group: a group goes where its first piece falls
    for i in np.random.default_rng(seed).permutation(len(free)):
        split = "train" if placed < n_train else "val" if placed < n_train + n_val else "test"
        free_splits[split].append(free[i])
        placed += len(free[i])
    wanted = [s for s, f in zip(SPLITS, fractions, strict=True) if f > 0]
    for split in wanted if len(free) >= 3 else ():  # a split left empty takes a smallest group
        if not free_splits[split]:
            donor = max(wanted, key=lambda s: (len(free_splits[s]), sum(map(len, free_splits[s]))))
            smallest = min(free_splits[donor], key=len)
            free_splits[donor].remove(smallest)
            free_splits[split].append(smallest)
    for split, gs in free_splits.items():
        out[split] += [p for g in gs for p in g]
    return {s: sorted(v, key=lambda p: p.id) for s, v in out.items()}


def split_summary(splits: dict[str, Sequence[Piece]], seq_len: int = SEQ_LEN) -> pd.DataFrame:
    """Pieces, notes and windows per split, and their totals."""
    table = pd.DataFrame(index=pd.Index(list(splits), name="split"))
    table["pieces"] = [len(ps) for ps in splits.values()]
    table["notes"] = [sum(map(len, ps)) for ps in splits.values()]
    table["windows"] = [sum(max(len(p) - seq_len, 0) for p in ps) for ps in splits.values()]
    table.loc["total"] = table.sum()
    return table


class Normalizer:
    """Invertible scaling of ``[step, duration, velocity]``, fitted on the training split:
    ``z = (log(x + eps) - mean) / std`` for the right-skewed step and duration (often 0), linear
    for velocity. A constant feature gets ``std = 1`` and is flagged in ``degenerate``."""

    def __init__(self, mean, std, eps: float = 1e-3, degenerate=(False, False, False)):
        self.mean, self.std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
        self.eps, self.degenerate = float(eps), tuple(bool(d) for d in degenerate)
        if self.mean.shape != (3,) or self.std.shape != (3,) or len(self.degenerate) != 3:
            raise ValueError("mean, std and degenerate must have 3 entries each")
        if not (np.isfinite(self.mean).all() and np.isfinite(self.std).all()):
            raise ValueError("mean and std must be finite")
        if (self.std <= 0).any() or not (math.isfinite(self.eps) and self.eps > 0):
            raise ValueError("std and eps must be positive")

    @classmethod
    def fit(cls, train: Sequence[Piece] | np.ndarray, eps: float = 1e-3) -> Normalizer:
        """Fit on the training pieces (or an (N, 3) array of raw step, duration, velocity)."""
        pre = cls._log(raw_features(train), eps)
        mean, std = pre.mean(axis=0), pre.std(axis=0)
        return cls(mean, np.where(std < 1e-8, 1.0, std), eps, std < 1e-8)

    @staticmethod
    def _log(raw: np.ndarray, eps: float) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        if raw.shape[-1] != 3:
            raise ValueError(f"expected (..., 3) step, duration, velocity; got shape {raw.shape}")
        if not np.isfinite(raw).all():
            raise ValueError("step, duration and velocity must be finite (found NaN or inf)")
        if (raw[..., :2] < 0).any():
            raise ValueError("step and duration must be non-negative")
        out = raw.copy()
        out[..., :2] = np.log(raw[..., :2] + eps)
        return out

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """Raw ``(..., 3)`` seconds and velocity -> normalized float32."""
        return ((self._log(raw, self.eps) - self.mean) / self.std).astype(np.float32)

    def inverse_transform(self, z: np.ndarray | torch.Tensor) -> np.ndarray:
        """Normalized ``(..., 3)`` -> raw seconds and velocity (float64)."""
        if isinstance(z, torch.Tensor):
            z = z.detach().cpu().numpy()
        z = np.asarray(z, dtype=np.float64)
        if z.shape[-1] != 3:
            raise ValueError(f"expected last dimension 3, got shape {z.shape}")
        out = z * self.std + self.mean
        with np.errstate(over="ignore"):
            out[..., :2] = np.exp(out[..., :2]) - self.eps
        return out

    def to_dict(self) -> dict:
        """JSON-ready description (stored with checkpoints)."""
        head = {"features": list(CONT_FEATURES), "eps": self.eps, "mean": self.mean.tolist()}
        return {**head, "std": self.std.tolist(), "degenerate": list(self.degenerate)}

    @classmethod
    def from_dict(cls, d: dict) -> Normalizer:
        if list(d.get("features", [])) != list(CONT_FEATURES):
            raise ValueError(f"normalizer features {d.get('features')} != {list(CONT_FEATURES)}")
        try:
            return cls(d["mean"], d["std"], d["eps"], d.get("degenerate", (False,) * 3))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a normalizer description ({type(exc).__name__}: {exc})") from exc

    def __repr__(self) -> str:
        stats = zip(CONT_FEATURES, self.mean, self.std, strict=True)
        parts = ", ".join(f"{name}={m:.3f}±{s:.3f}" for name, m, s in stats)
        return f"Normalizer({parts}, eps={self.eps})"


def raw_features(pieces: Sequence[Piece] | np.ndarray) -> np.ndarray:
    """The raw ``(N, 3)`` step, duration and velocity of every note of ``pieces``."""
    if isinstance(pieces, np.ndarray):
        return pieces
    if not len(pieces):
        raise ValueError("need at least one piece")
    return np.concatenate([p.notes[list(CONT_FEATURES)].to_numpy(np.float64) for p in pieces])


class Windows:
    """Every stride-1 window (``seq_len`` notes of a piece, the next as target), notes stored
    once (``pitch`` uint8, ``cont`` float32 ``(n_notes, 3)``) and gathered per batch;
    :meth:`batch` gives the card's four tensors, ``pitch_seq`` ... ``target_cont`` all of them."""

    def __init__(self, pitch, cont, note_offsets, seq_len: int = SEQ_LEN):
        if pitch.dtype != torch.uint8 or pitch.dim() != 1 or cont.shape != (len(pitch), 3):
            raise ValueError("pitch must be 1-D uint8 and cont (n_notes, 3)")
        self.pitch, self.cont, self.seq_len = pitch, cont, int(seq_len)
        self.note_offsets = note_offsets.to(torch.int64)
        counts = self.note_offsets.diff() - seq_len
        if (counts < 1).any():
            raise ValueError(f"every piece needs at least {seq_len + 1} notes")
        self.window_offsets = torch.cat([counts.new_zeros(1), counts.cumsum(0)])

    @classmethod
    def from_tensors(cls, pitch_seq, cont_seq, target_pitch, target_cont) -> Windows:
        """Windows given as the card's four tensors (each its own piece): for tests."""
        n, seq_len = pitch_seq.shape
        expected = ((n, seq_len, 3), (n,), (n, 3))
        if (cont_seq.shape, target_pitch.shape, target_cont.shape) != expected:
            raise ValueError("shapes must be (N, L), (N, L, 3), (N,) and (N, 3)")
        pitch = torch.cat([pitch_seq, target_pitch[:, None]], dim=1)
        cont = torch.cat([cont_seq, target_cont[:, None]], dim=1).float()
        offsets = torch.arange(n + 1) * (seq_len + 1)
        return cls(pitch.reshape(-1).to(torch.uint8), cont.reshape(-1, 3), offsets, seq_len)

    def __len__(self) -> int:
        return int(self.window_offsets[-1])

    n_notes = property(lambda self: len(self.pitch))
    n_pieces = property(lambda self: len(self.note_offsets) - 1)
    device = property(lambda self: self.pitch.device)

    @property
    def nbytes(self) -> int:
        """Bytes held by the notes and offsets."""
        tensors = (self.pitch, self.cont, self.note_offsets, self.window_offsets)
        return sum(t.element_size() * t.numel() for t in tensors)

    def to(self, device: torch.device | str) -> Windows:
        """The same windows on another device (the notes move once)."""
        moved = (t.to(device) for t in (self.pitch, self.cont, self.note_offsets))
        return Windows(*moved, self.seq_len)

    def __repr__(self) -> str:
        head = f"{len(self)} windows of {self.seq_len}+1 notes from {self.n_pieces} pieces"
        size = f"{self.n_notes} notes, {self.nbytes / 2**20:.1f} MiB on {self.device}"
        return f"Windows({head}, {size})"

    def starts(self, idx) -> torch.Tensor:
        """The row of each window's first note; ``idx`` holds integers in ``0 .. len - 1``."""
        idx = torch.as_tensor(idx)
        if idx.is_floating_point() or idx.dtype == torch.bool:
            raise TypeError(f"window indices must be integers, got {idx.dtype}")
        idx = idx.to(device=self.device, dtype=torch.int64)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            lo, hi = int(idx.min()), int(idx.max())
            raise IndexError(f"window index out of range 0..{len(self) - 1}: got {lo}..{hi}")
        piece = torch.searchsorted(self.window_offsets, idx, right=True) - 1
        return self.note_offsets[piece] + idx - self.window_offsets[piece]

    def gather(self, idx) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pitch (B, L+1) int64, cont (B, L+1, 3))``: the windows ``idx`` and targets."""
        rows = self.starts(idx)[:, None] + torch.arange(self.seq_len + 1, device=self.device)
        return self.pitch[rows].long(), self.cont[rows]

    def batch(self, idx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``pitch_seq (B, L)``, ``cont_seq (B, L, 3)``, ``target_pitch (B,)``, ``target_cont``."""
        pitch, cont = self.gather(idx)
        return pitch[:, :-1], cont[:, :-1], pitch[:, -1], cont[:, -1]

    def chunks(self, size: int):
        """:meth:`batch` of every window in order, ``size`` windows at a time."""
        for a in range(0, len(self), size):
            yield self.batch(torch.arange(a, min(a + size, len(self)), device=self.device))

    pitch_seq = property(lambda self: self.batch(torch.arange(len(self)))[0])
    cont_seq = property(lambda self: self.batch(torch.arange(len(self)))[1])
    target_pitch = property(lambda self: self.batch(torch.arange(len(self)))[2])
    target_cont = property(lambda self: self.batch(torch.arange(len(self)))[3])


def make_windows(
    pieces: Sequence[Piece], normalizer: Normalizer, seq_len: int = SEQ_LEN
) -> Windows:
    """Window ``i`` of a piece: notes ``i .. i+seq_len-1``, target ``i+seq_len`` (none if short)."""
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"seq_len must be a positive integer, got {seq_len!r}")
    kept = [p for p in pieces if len(p) > seq_len]
    if not kept:
        no_notes = torch.zeros(0, dtype=torch.uint8)
        return Windows(no_notes, torch.zeros(0, 3), torch.zeros(1), seq_len)
    pitch = np.concatenate([p.notes["pitch"].to_numpy(np.int64) for p in kept])
    check_pitch_range(pitch, "pitches")
    cont = torch.from_numpy(normalizer.transform(raw_features(kept)))
    offsets = torch.from_numpy(np.cumsum([0] + [len(p) for p in kept]))
    return Windows(torch.from_numpy(pitch.astype(np.uint8)), cont, offsets, seq_len)


@dataclass
class Prepared:
    """One corpus split by piece, its normalizer (fitted on train) and its windows."""

    corpus: Corpus
    splits: dict[str, list[Piece]]
    normalizer: Normalizer
    windows: dict[str, Windows]
    split_seed: int
    limit: int | None = None
    split_by: str = SPLIT_BY

    source = property(lambda self: self.corpus.source)

    def summary(self) -> pd.DataFrame:
        return split_summary(self.splits)

    def data_metadata(self) -> dict:
        """What identifies the data, for a checkpoint's sidecar (no machine path)."""
        meta = {"source": self.corpus.source, "data_fingerprint": self.corpus.fingerprint}
        return {
            **meta,
            "split_seed": self.split_seed,
            "split_by": self.split_by,
            "limit": self.limit,
        }


def prepare(
    source: str | Path = "bach",
    split_seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
    use_cache: bool = True,
    split_by: str = SPLIT_BY,
) -> Prepared:
    """Load, split (by piece or by tune), fit the normalizer on train only, cut the windows."""
    corpus = load_corpus(source, limit=limit, progress=progress, use_cache=use_cache)
    splits = split_pieces(corpus, seed=split_seed, by=split_by)
    if not all(splits.values()):
        sizes = {k: len(v) for k, v in splits.items()}
        raise ValueError(f"{corpus.source!r}: too few pieces for train/val/test ({sizes}); need 3")
    normalizer = Normalizer.fit(splits["train"])
    windows = {k: make_windows(v, normalizer) for k, v in splits.items()}
    return Prepared(corpus, splits, normalizer, windows, split_seed, limit, split_by)
