"""MIDI readers side by side: symusic (``parse_midi``) and pretty_midi, same files, same tables.

    python benchmarks/midi_readers.py [--folder DIR ...] [--repeats 3]

Default folders: the 410 chorales written as multi-track MIDI by music21 (exported once into
``data/cache/midi_chorales/``, a minute or two) and music21's own MIDI test files. For each
reader: files/s and notes/s, best of ``--repeats`` passes over files already in memory (no
disk time), each file turned into a note table. Then the tables are compared file by file:
same notes (pitch, velocity, start and end within 10 us), and each difference is explained.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import pretty_midi

from melody_utils.config import cache_dir
from melody_utils.data import _music21_files
from melody_utils.notes import BadInputError, note_table, parse_midi


def export_chorales(folder: Path) -> Path:
    """Write every chorale of music21's corpus as MIDI into ``folder`` (once)."""
    from music21 import corpus

    folder.mkdir(parents=True, exist_ok=True)
    paths = _music21_files("bach")  # the files of the embedded corpus, in its order
    if len(list(folder.glob("*.mid"))) < len(paths):
        for path in paths:
            out = folder / (Path(path).stem + ".mid")
            if not out.exists():
                corpus.parse(path).write("midi", fp=out)
    return folder


def default_folders() -> list[Path]:
    import music21

    primitive = Path(music21.__file__).parent / "midi" / "testPrimitive"
    return [export_chorales(cache_dir() / "midi_chorales"), primitive]


def read_pretty_midi(data: bytes):
    """pretty_midi's notes (drums left out) as the same kind of note table."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its tempo-on-other-tracks warning, counted below
        pm = pretty_midi.PrettyMIDI(io.BytesIO(data))
    notes = [
        (n, k) for k, i in enumerate(i for i in pm.instruments if not i.is_drum) for n in i.notes
    ]
    return note_table(
        [n.pitch for n, _ in notes],
        [n.start for n, _ in notes],
        [n.end for n, _ in notes],
        [n.velocity for n, _ in notes],
        [k for _, k in notes],
    )


def read_symusic(data: bytes):
    return parse_midi(data).notes


def timed(reader, files: dict[str, bytes], repeats: int) -> tuple[float, dict]:
    best, tables = float("inf"), {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        for name, data in files.items():
            try:
                tables[name] = reader(data)
            except (BadInputError, ValueError, OSError, EOFError, KeyError, IndexError) as exc:
                tables[name] = exc
        best = min(best, time.perf_counter() - t0)
    return best, tables


def same(a, b) -> bool:
    cols = ["pitch", "velocity"]
    if len(a) != len(b) or not (a[cols].to_numpy() == b[cols].to_numpy()).all():
        return False
    times = ["start", "end"]
    return bool(np.allclose(a[times].to_numpy(), b[times].to_numpy(), rtol=0, atol=1e-5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, action="append", help="a folder of MIDI files")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    for folder in args.folder or default_folders():
        if not folder.is_dir():
            ap.error(f"no such folder: {folder}")
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".mid", ".midi"))
        files = {str(p.relative_to(folder)): p.read_bytes() for p in paths}
        print(f"\n{folder.name}: {len(files)} files, {sum(map(len, files.values())):,} bytes")
        results = {}
        for label, reader in (("symusic", read_symusic), ("pretty_midi", read_pretty_midi)):
            seconds, tables = timed(reader, files, args.repeats)
            n = sum(len(t) for t in tables.values() if not isinstance(t, Exception))
            print(
                f"  {label:<12} {seconds:7.3f} s  {len(files) / seconds:10,.0f} files/s"
                f"  {n / seconds:12,.0f} notes/s  ({n:,} notes)"
            )
            results[label] = (seconds, tables)
        (s_sec, sym), (p_sec, pm) = results["symusic"], results["pretty_midi"]
        print(f"  symusic is {p_sec / s_sec:.0f}x as fast")
        errors = [f for f in files if isinstance(sym[f], Exception) or isinstance(pm[f], Exception)]
        differ = [f for f in files if f not in errors and not same(sym[f], pm[f])]
        print(f"  same note table: {len(files) - len(differ) - len(errors)} of {len(files)} files")
        for f in differ:
            print(f"    differ: {f}: symusic {len(sym[f])} notes, pretty_midi {len(pm[f])}")
        for f in errors:
            print(f"    unreadable: {f}: symusic {sym[f]!r:.60}; pretty_midi {pm[f]!r:.60}")


if __name__ == "__main__":
    main()
