"""Corpora: where pieces come from, how files are parsed, and the parse cache (notebook 01).

::

    load_corpus("bach")         # every Bach chorale in music21's corpus (offline)
    load_corpus("essen")        # the Essen folk songs, also in music21's corpus
    load_corpus("my_midi/")     # any folder of .mid/.midi files, searched recursively

The result is a :class:`Corpus`, a list of :class:`Piece` (each a note table, see
:mod:`melody_utils.notes`) that also reports every file it skipped and every note it
dropped, with the reason. Nothing is dropped silently.

Built-in corpora are listed in one place, :func:`builtin_corpora`: adding one is adding
an entry there.

The cache
---------
Parsing the chorales takes tens of seconds, so the parsed corpus is cached as one
``.npz`` file per (source, settings) in ``data/cache/`` (``MELODY_CACHE_DIR`` moves it,
``MELODY_NO_CACHE=1`` or ``use_cache=False`` turns it off). The key is a hash of every
file's **bytes** and name, the settings and the parsing libraries' versions, so an
edited, replaced or copied file is never served stale notes. The folder is kept under
``MELODY_CACHE_MAX_MB`` (default 256 MB) by deleting the least recently used entries.
A cache folder that cannot be written is a warning, never an error: the corpus is
returned all the same.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .config import REPO_ROOT, SEQ_LEN, cache_dir, cache_enabled
from .fileio import TMP_SUFFIX, atomic_writer
from .notes import (
    MIDI_SUFFIXES,
    NOTE_COLUMNS,
    PART,
    BadInputError,
    ParsedNotes,
    parse_midi,
    parse_score,
)

#: A piece needs one window of 32 notes plus its target.
MIN_NOTES = SEQ_LEN + 1
#: Bumped whenever parsing changes, so stale caches are never reused.
CACHE_VERSION = 5
#: Default bound on the cache folder's size (MB); ``MELODY_CACHE_MAX_MB`` overrides it.
CACHE_MAX_MB = 256
SPLITS = ("train", "val", "test")


@dataclass
class Piece:
    """One piece of music as a note table.

    Attributes:
        id: stable identifier, e.g. ``"bach/bwv66.6"`` or a path relative to the MIDI folder.
        notes: the note table (see :mod:`melody_utils.notes`).
        split: ``"train"``/``"val"``/``"test"`` when the source fixes it (MAESTRO's CSV),
            else ``None`` and :func:`~melody_utils.data.split_pieces` draws one.
    """

    id: str
    notes: pd.DataFrame
    split: str | None = None

    def __len__(self) -> int:
        return len(self.notes)

    def __repr__(self) -> str:
        return f"Piece(id={self.id!r}, notes={len(self.notes)}, split={self.split!r})"


class Corpus(list):
    """A list of :class:`Piece` that also remembers what was left out, and why.

    Attributes:
        skipped: ``(file, reason)`` for every file or piece that could not be used.
        dropped: ``(file, reason, count)`` for notes left out of kept pieces (drums,
            zero-length notes, notes the MIDI parser could not pair).
        warnings: ``(file, message)`` the parsing libraries emitted.
        source: the source's label (a corpus name, or a folder's name; no machine path).
        fingerprint: a hash of the parsed data (changes when any file's bytes change).
    """

    def __init__(
        self,
        pieces: Iterable[Piece] = (),
        skipped: Iterable[tuple[str, str]] = (),
        source: str = "",
        load_seconds: float = float("nan"),
        from_cache: bool = False,
        dropped: Iterable[tuple[str, str, int]] = (),
        warnings: Iterable[tuple[str, str]] = (),
        fingerprint: str = "",
    ):
        super().__init__(pieces)
        self.skipped: list[tuple[str, str]] = list(skipped)
        self.dropped: list[tuple[str, str, int]] = [(f, r, int(n)) for f, r, n in dropped]
        self.warnings: list[tuple[str, str]] = list(warnings)
        self.source = source
        self.load_seconds = load_seconds
        self.from_cache = from_cache
        self.fingerprint = fingerprint

    def report(self, max_rows: int = 20) -> str:
        """A readable summary: pieces kept, notes, every skipped file and dropped note."""
        n_notes = sum(len(p) for p in self)
        n_dropped = sum(n for _, _, n in self.dropped)
        files = len({f for f, _, _ in self.dropped})
        lines = [
            f"{self.source}: {len(self)} pieces, {n_notes:,} notes kept; "
            f"{len(self.skipped)} skipped; {n_dropped:,} notes dropped in {files} "
            f"file(s)"
        ]
        rows = [f"  skipped {f}: {r}" for f, r in self.skipped]
        rows += [f"  dropped {n:,} notes from {f}: {r}" for f, r, n in self.dropped]
        rows += [f"  warning for {f}: {m}" for f, m in self.warnings]
        lines += rows[:max_rows]
        if len(rows) > max_rows:
            lines.append(
                f"  ... and {len(rows) - max_rows} more (see .skipped, .dropped, .warnings)"
            )
        return "\n".join(lines)


# --------------------------------------------------------------------------- sources


def _music21_composer(name: str) -> Callable[[], list[Path]]:
    def files() -> list[Path]:
        from music21 import corpus

        return sorted(
            (Path(p) for p in corpus.getComposer(name) if Path(p).suffix in (".mxl", ".xml")),
            key=lambda p: p.name,
        )

    return files


def _essen_files() -> list[Path]:
    import music21

    folder = Path(music21.__file__).parent / "corpus" / "essenFolksong"
    return sorted(p for p in folder.glob("*.abc") if not p.stem.startswith("test"))


def builtin_corpora() -> dict[str, tuple[Callable[[], list[Path]], str]]:
    """The corpora that ship with music21: ``{name: (list_files, mode)}``.

    ``mode`` says how a file becomes pieces: ``"score"`` (one piece per file) or
    ``"opus"`` (a file of many tunes, e.g. an ABC collection). Adding a corpus is adding
    an entry here.
    """
    return {
        "bach": (_music21_composer("bach"), "score"),
        "essen": (_essen_files, "opus"),
    }


def _walk_midi(folder: Path) -> tuple[list[tuple[Path, str]], list[tuple[str, str]]]:
    """Every MIDI file under ``folder`` as ``(path, shown name)``, following symbolic
    links to folders and files once; plus ``(name, reason)`` for what was not listed
    (broken links, loops, a file reached twice, unreadable folders)."""
    found: list[tuple[Path, str]] = []
    skipped: list[tuple[str, str]] = []
    seen_dirs: dict[str, str] = {}
    seen_files: dict[str, str] = {}

    def shown(path: Path) -> str:
        return path.relative_to(folder).as_posix()

    def walk(directory: Path) -> None:
        real = os.path.realpath(directory)
        if real in seen_dirs:
            skipped.append(
                (
                    shown(directory) + "/",
                    f"folder already listed as "
                    f"{seen_dirs[real] or '.'}/ (symbolic link loop or duplicate)",
                )
            )
            return
        seen_dirs[real] = shown(directory) if directory != folder else ""
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            skipped.append((shown(directory) + "/", f"cannot list folder ({type(exc).__name__})"))
            return
        for entry in entries:
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=True):
                walk(path)
                continue
            if path.suffix.lower() not in MIDI_SUFFIXES:
                continue
            if entry.is_symlink() and not path.exists():
                skipped.append((shown(path), "broken symbolic link"))
                continue
            if not entry.is_file(follow_symlinks=True):
                continue
            real_file = os.path.realpath(path)
            if real_file in seen_files:
                skipped.append(
                    (
                        shown(path),
                        f"same file as {seen_files[real_file]} (reached through a symbolic link)",
                    )
                )
                continue
            seen_files[real_file] = shown(path)
            found.append((path, shown(path)))

    walk(folder)
    found.sort(key=lambda item: item[1])
    return found, skipped


def _maestro_splits(folder: Path) -> tuple[dict[str, str], list[Path]]:
    """Map a MIDI path (relative to ``folder``) to its split from a MAESTRO-style CSV;
    also return the CSV files read (they are part of the cache key)."""
    mapping: dict[str, str] = {}
    used: list[Path] = []
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


@dataclass
class _Source:
    label: str  # shown in reports: corpus name or "folder/"
    kind: str  # "bach", "essen", ... or "midi"
    mode: str  # "score", "opus" or "midi"
    files: list[tuple[Path, str]]  # (path, shown name)
    folder: Path | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    splits: dict[str, str] = field(default_factory=dict)
    extra_files: list[Path] = field(default_factory=list)  # e.g. the MAESTRO CSV

    def digests(self) -> list[bytes]:
        """SHA-1 of each file's bytes (an unreadable file gets a marker instead)."""
        out = []
        for path, _ in self.files:
            try:
                out.append(hashlib.sha1(path.read_bytes()).digest())
            except OSError as exc:  # parsing will skip it and say why
                out.append(f"unreadable {type(exc).__name__}".encode())
        return out


def _resolve_source(source: str | Path) -> _Source:
    corpora = builtin_corpora()
    if isinstance(source, str):
        if not source.strip():
            raise ValueError(
                f"source is empty; pass one of {sorted(corpora)} or a folder of MIDI files"
            )
        if source in corpora:
            if Path(source).is_dir():
                warnings.warn(
                    f"{source!r} means music21's built-in corpus; a folder named "
                    f"{source!r} also exists here: pass './{source}' (or a Path) "
                    f"to load that folder",
                    UserWarning,
                    stacklevel=3,
                )
            list_files, mode = corpora[source]
            return _Source(source, source, mode, [(p, p.name) for p in list_files()])
    elif not isinstance(source, Path):
        raise TypeError(
            f"source must be a corpus name or a folder path, got {type(source).__name__}"
        )
    folder = Path(source).expanduser()
    if not folder.exists():
        typed = str(source).strip().lower().rstrip("/")
        close = difflib.get_close_matches(typed, list(corpora), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise FileNotFoundError(
            f"source {str(source)!r} is neither a built-in corpus "
            f"({', '.join(sorted(corpora))}) nor an existing folder{hint}"
        )
    if not folder.is_dir():
        raise NotADirectoryError(f"source {folder.name!r} is a file; pass the folder that holds it")
    files, skipped = _walk_midi(folder)
    if not files:
        raise FileNotFoundError(
            f"no .mid or .midi files found under folder {folder.name!r}"
            + (f" ({len(skipped)} unusable entries: {skipped[:3]})" if skipped else "")
        )
    splits, csvs = _maestro_splits(folder)
    return _Source(
        f"{folder.resolve().name}/", "midi", "midi", files, folder, skipped, splits, csvs
    )


# --------------------------------------------------------------------------- parsing


def _parse_file(mode: str, kind: str, path: Path, shown: str) -> list[tuple[str, ParsedNotes]]:
    """Parse one file into ``(piece id, ParsedNotes)`` pairs; BadInputError on failure."""
    if mode == "midi":
        return [(shown, parse_midi(path))]
    from music21 import converter, stream

    try:
        parsed = converter.parse(path)
    except Exception as exc:
        raise BadInputError(f"music21 could not parse it ({type(exc).__name__}: {exc})") from exc
    try:
        if mode == "score":
            return [(f"{kind}/{path.stem}", parse_score(parsed))]
        scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
        out = []
        for i, sc in enumerate(scores):
            num = sc.metadata.number if sc.metadata and sc.metadata.number else i + 1
            try:
                out.append((f"{kind}/{path.stem}/{num}", parse_score(sc)))
            except BadInputError as exc:  # one bad tune does not lose its collection
                out.append((f"{kind}/{path.stem}/{num}", str(exc)))
        return out
    except BadInputError:
        raise
    except Exception as exc:  # music21 raises many types on odd scores
        raise BadInputError(f"could not read notes ({type(exc).__name__}: {exc})") from exc


def _parse_job(job: tuple[str, str, Path, str]) -> tuple[object, list[str]]:
    """Worker: ``(pieces or the reason the file was skipped, warnings)``."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        try:
            result: object = _parse_file(*job)
        except BadInputError as exc:
            result = str(exc)
        except OSError as exc:
            result = f"cannot read file ({type(exc).__name__}: {exc.strerror or exc})"
    # ResourceWarnings come from the garbage collector, about objects of anyone: not ours
    return result, [str(w.message) for w in record if w.category is not ResourceWarning]


def _worker_init(parent: int) -> None:
    """Make a parser process die with the process that started it (even on ``kill -9``)."""
    if os.getppid() != parent:
        os._exit(1)
    try:  # Linux: the kernel kills us when the parent dies
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except Exception:  # other systems: the watchdog below does it
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watchdog() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watchdog, daemon=True, name="parent-watchdog").start()


def _n_workers(n_files: int) -> int:
    """Parser processes: ``MELODY_WORKERS`` or one per core (at most 8), 1 for few files."""
    env = os.environ.get("MELODY_WORKERS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"MELODY_WORKERS must be a positive integer, got {env!r}") from None
        if n < 1:
            raise ValueError(f"MELODY_WORKERS must be a positive integer, got {env!r}")
        return 1 if n_files < 2 else min(n, n_files)
    if n_files < 16:
        return 1
    return max(1, min(8, os.cpu_count() or 1))


def _parse_all(source: _Source, progress: bool) -> list[tuple[object, list[str]]]:
    from tqdm.auto import tqdm

    jobs = [(source.mode, source.kind, path, shown) for path, shown in source.files]
    n_workers = _n_workers(len(jobs))
    bar = dict(total=len(jobs), desc=f"parsing {source.label}", unit="file", disable=not progress)
    if n_workers == 1:
        return [_parse_job(j) for j in tqdm(jobs, **bar)]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(n_workers, initializer=_worker_init, initargs=(os.getpid(),)) as pool:
        return list(tqdm(pool.map(_parse_job, jobs, chunksize=4), **bar))


# --------------------------------------------------------------------------- cache


def _display(path: Path) -> str:
    try:
        return path.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(path)


def _cache_key(source: _Source, digests: list[bytes], limit: int | None, min_notes: int) -> str:
    import music21
    import pretty_midi

    h = hashlib.sha256()
    h.update(
        json.dumps(
            [
                CACHE_VERSION,
                source.kind,
                source.mode,
                limit,
                min_notes,
                music21.__version__,
                getattr(pretty_midi, "__version__", "?"),
            ]
        ).encode()
    )
    for (_, shown), digest in zip(source.files, digests, strict=True):
        h.update(shown.encode() + b"\0" + digest)
    for extra in source.extra_files:
        h.update(extra.name.encode() + b"\0" + hashlib.sha1(extra.read_bytes()).digest())
    h.update(json.dumps(source.skipped).encode())
    return h.hexdigest()[:24]


def _cache_limit_bytes() -> int:
    env = os.environ.get("MELODY_CACHE_MAX_MB", "").strip()
    try:
        mb = float(env) if env else CACHE_MAX_MB
    except ValueError:
        raise ValueError(f"MELODY_CACHE_MAX_MB must be a number, got {env!r}") from None
    return int(mb * 2**20)


def prune_cache(
    folder: Path | None = None, max_bytes: int | None = None, keep: Sequence[Path] = ()
) -> list[Path]:
    """Delete the least recently used cache entries until the folder fits ``max_bytes``.

    Leftover temporary files older than an hour (from killed processes) go too. Files
    in ``keep`` are never deleted. Returns what was deleted.
    """
    folder = cache_dir() if folder is None else Path(folder)
    max_bytes = _cache_limit_bytes() if max_bytes is None else max_bytes
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    now = time.time()
    for tmp in folder.glob(f".*{TMP_SUFFIX}"):
        try:
            if now - tmp.stat().st_mtime > 3600:
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            pass
    entries = []
    for f in folder.glob("*.npz"):
        try:
            st = f.stat()
        except OSError:
            continue
        entries.append((st.st_mtime, st.st_size, f))
    entries.sort()  # oldest use first
    total = sum(size for _, size, _ in entries)
    keep_set = {Path(k).resolve() for k in keep}
    for _, size, f in entries:
        if total <= max_bytes:
            break
        if f.resolve() in keep_set:
            continue
        try:
            f.unlink()
        except OSError:
            continue
        total -= size
        removed.append(f)
    return removed


def clear_cache(folder: Path | None = None) -> list[Path]:
    """Delete every cache entry (and leftover temporary file) in the cache folder."""
    folder = cache_dir() if folder is None else Path(folder)
    removed = []
    for f in [*folder.glob("*.npz"), *folder.glob(f".*{TMP_SUFFIX}")]:
        try:
            f.unlink()
            removed.append(f)
        except OSError:
            pass
    return removed


def _save_cache(path: Path, corpus: Corpus) -> None:
    lengths = np.array([len(p) for p in corpus], dtype=np.int64)
    cat = (
        pd.concat([p.notes for p in corpus], ignore_index=True)
        if len(corpus)
        else pd.DataFrame({c: [] for c in NOTE_COLUMNS})
    )
    names = [*NOTE_COLUMNS, *([PART] if PART in cat.columns and cat[PART].notna().all() else [])]
    columns = {
        c: cat[c].to_numpy(np.int64 if c in ("pitch", "velocity", PART) else np.float64)
        for c in names
    }

    def strings(rows: list, width: int) -> np.ndarray:
        return np.array([[str(x) for x in r] for r in rows] or np.empty((0, width)), dtype=str)

    with atomic_writer(path) as fh:
        np.savez(
            fh,
            ids=np.array([p.id for p in corpus], dtype=str),
            splits=np.array([p.split or "" for p in corpus], dtype=str),
            lengths=lengths,
            skipped=strings(corpus.skipped, 2),
            dropped=strings(corpus.dropped, 3),
            warnings=strings(corpus.warnings, 2),
            **columns,
        )


def _load_cache(path: Path) -> Corpus:
    with np.load(path, allow_pickle=False) as z:
        bounds = np.concatenate([[0], np.cumsum(z["lengths"])])
        columns = {c: z[c] for c in (*NOTE_COLUMNS, PART) if c in z.files}
        pieces = []
        for i, (pid, split) in enumerate(zip(z["ids"], z["splits"], strict=True)):
            a, b = bounds[i], bounds[i + 1]
            notes = pd.DataFrame({c: v[a:b] for c, v in columns.items()}, copy=True)
            pieces.append(Piece(str(pid), notes, str(split) or None))
        return Corpus(
            pieces,
            [tuple(map(str, r)) for r in z["skipped"]],
            dropped=[(str(f), str(r), int(n)) for f, r, n in z["dropped"]],
            warnings=[tuple(map(str, r)) for r in z["warnings"]],
            from_cache=True,
        )


def _try_load_cache(path: Path) -> Corpus | None:
    if not path.is_file():
        return None
    try:
        corpus = _load_cache(path)
    except Exception as exc:  # a broken or unreadable entry is rebuilt, never trusted
        warnings.warn(
            f"ignoring unreadable cache entry {path.name} ({type(exc).__name__}); parsing again",
            RuntimeWarning,
            stacklevel=3,
        )
        try:
            path.unlink()
        except OSError:
            pass
        return None
    try:
        os.utime(path)  # mark as recently used, for pruning
    except OSError:
        pass
    return corpus


def _try_save_cache(path: Path, corpus: Corpus) -> None:
    try:
        _save_cache(path, corpus)
        prune_cache(path.parent, keep=[path])
    except OSError as exc:
        warnings.warn(
            f"could not write the parse cache in {_display(path.parent)} "
            f"({type(exc).__name__}: {exc.strerror or exc}); the corpus is loaded "
            f"but not cached. Set MELODY_CACHE_DIR to a writable folder, or "
            f"MELODY_NO_CACHE=1 to stop caching",
            RuntimeWarning,
            stacklevel=3,
        )


# --------------------------------------------------------------------------- loading


def _fingerprint(pieces: Sequence[Piece]) -> str:
    h = hashlib.sha256()
    for p in pieces:
        h.update(p.id.encode() + b"\0" + (p.split or "").encode() + b"\0")
        h.update(np.ascontiguousarray(p.notes[list(NOTE_COLUMNS)].to_numpy(np.float64)).tobytes())
    return h.hexdigest()[:16]


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
            folder of ``.mid``/``.midi`` files, searched recursively (symbolic links are
            followed once). A string names a built-in corpus first: a local folder
            called ``bach`` is ``"./bach"`` or ``Path("bach")``. A MAESTRO-style CSV in
            the folder (columns ``midi_filename`` and ``split``) fixes each piece's split.
        limit: parse only the first ``limit`` files (sorted by name), for quick demos.
        min_notes: pieces with fewer notes are skipped (at least 33: one window + target).
        use_cache: reuse/write the parsed corpus in the cache (see the module docstring).
        progress: show a progress bar while parsing.

    Returns:
        A :class:`Corpus`. Its ``.skipped`` lists ``(file, reason)`` for every file that
        could not be used (corrupt, empty, drum-only, too short, an exact duplicate of
        another file, a broken link) and ``.dropped`` the notes left out of kept pieces.

    Raises:
        ValueError: an empty source name or bad settings, or no usable file in the
            source (the message names it).
        FileNotFoundError: the folder does not exist or holds no MIDI file (with a
            "did you mean" for a mistyped corpus name).
    """
    if isinstance(min_notes, bool) or not isinstance(min_notes, int) or min_notes < MIN_NOTES:
        raise ValueError(
            f"min_notes must be an integer of at least {MIN_NOTES} (a {SEQ_LEN}-"
            f"note window plus its target), got {min_notes!r}"
        )
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    t0 = time.perf_counter()
    src = _resolve_source(source)
    if limit is not None:
        src.files = src.files[:limit]
    use_cache = use_cache and cache_enabled()
    digests = src.digests()
    cache_file = cache_dir() / f"{src.kind}-{_cache_key(src, digests, limit, min_notes)}.npz"
    if use_cache:
        cached = _try_load_cache(cache_file)
        if cached is not None:
            cached.source = src.label
            cached.fingerprint = _fingerprint(cached)
            cached.load_seconds = time.perf_counter() - t0
            return cached

    pieces: list[Piece] = []
    skipped = list(src.skipped)
    dropped: list[tuple[str, str, int]] = []
    caught: list[tuple[str, str]] = []
    seen_bytes: dict[bytes, str] = {}
    results = _parse_all(src, progress)
    for (_, shown), digest, (result, messages) in zip(src.files, digests, results, strict=True):
        caught += [(shown, m) for m in dict.fromkeys(messages)]
        if isinstance(result, str):
            skipped.append((shown, result))
            continue
        if src.mode == "midi":  # the same bytes twice would leak between splits
            if digest in seen_bytes:
                skipped.append(
                    (
                        shown,
                        f"identical bytes to {seen_bytes[digest]} "
                        "(a duplicate would leak between splits)",
                    )
                )
                continue
            seen_bytes[digest] = shown
        for pid, parsed in result:
            if isinstance(parsed, str):
                skipped.append((pid, parsed))
                continue
            if len(parsed.notes) < min_notes:
                skipped.append((pid, f"too few notes ({len(parsed.notes)} < {min_notes})"))
                continue
            dropped += [(pid, reason, n) for reason, n in parsed.dropped.items()]
            caught += [(pid, m) for m in dict.fromkeys(parsed.warnings)]
            pieces.append(Piece(pid, parsed.notes, src.splits.get(pid)))
    for shown, message in caught:
        warnings.warn(f"{shown}: {message}", RuntimeWarning, stacklevel=2)
    if not pieces:
        reasons = "; ".join(f"{f}: {r}" for f, r in skipped[:5])
        raise ValueError(
            f"no usable piece in source {src.label!r} ({len(src.files)} files; {reasons})"
        )
    corpus = Corpus(pieces, skipped, source=src.label, dropped=dropped, warnings=caught)
    if use_cache:
        _try_save_cache(cache_file, corpus)
    corpus.fingerprint = _fingerprint(corpus)
    corpus.load_seconds = time.perf_counter() - t0
    return corpus


def load_piece(piece_id: str) -> Piece:
    """Parse one named piece without loading its corpus, e.g. ``load_piece("bach/bwv66.6")``.

    Accepts ``"<corpus>/<name>"`` for a score of a built-in corpus (``bach``), or a
    path to a MIDI file.
    """
    corpora = builtin_corpora()
    kind, _, name = piece_id.partition("/")
    if kind in corpora and corpora[kind][1] == "score" and name:
        matches = [f for f in corpora[kind][0]() if f.stem == name]
        if not matches:
            close = difflib.get_close_matches(name, [f.stem for f in corpora[kind][0]()], n=3)
            raise KeyError(
                f"no piece {piece_id!r} in music21's {kind} corpus; close: "
                f"{[f'{kind}/{c}' for c in close]}"
            )
        return Piece(piece_id, _parse_file("score", kind, matches[0], name)[0][1].notes)
    path = Path(piece_id)
    return Piece(path.name, parse_midi(path).notes)


def get_piece(pieces: Sequence[Piece], piece_id: str) -> Piece:
    """The piece with this id; a clear KeyError listing close ids otherwise."""
    for p in pieces:
        if p.id == piece_id:
            return p
    close = difflib.get_close_matches(piece_id, [p.id for p in pieces], n=5)
    raise KeyError(f"no piece {piece_id!r}; close ids: {close}")
