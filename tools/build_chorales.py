"""Build the embedded corpus, ``data/bach_chorales.csv.gz`` and its record, from music21.

    .venv/bin/python tools/build_chorales.py [--out data]

Every chorale of music21's corpus (composer ``bach``, ``.mxl``/``.xml``, in file-name
order) is parsed by :func:`melody_utils.notes.parse_score` into a note table; the tables
go into one CSV, one row per note, with the columns ``piece, pitch, start, end, step,
duration, velocity, part``. Times are written with every digit (``repr`` of the float), so
reading the CSV gives back the parsed values exactly, and the gzip stream carries no
timestamp, so the same music21 gives the same bytes (``tests/test_data.py`` rebuilds it
and compares). ``bach_chorales.json`` records the music21 version, the counts, the notes
dropped (grace notes) and the fingerprint of the parsed corpus.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import sys
import time
from pathlib import Path

import pandas as pd

from melody_utils.config import DATA_DIR
from melody_utils.data import MIN_NOTES, _collect, _music21_files, _Source, atomic_write
from melody_utils.notes import NOTE_COLUMNS, PART, PROGRAM


def build(progress: bool = True) -> tuple[bytes, dict]:
    """``(gzip'd CSV bytes, record)`` of every chorale of music21's corpus."""
    import music21

    src = _Source("bach", "bach", [(p, p.name) for p in _music21_files("bach")])
    corpus = _collect(src, [b""] * len(src.files), MIN_NOTES, progress)
    table = pd.concat([p.notes.drop(columns=PROGRAM).assign(piece=p.id) for p in corpus])
    csv = table[["piece", *NOTE_COLUMNS, PART]].to_csv(index=False, lineterminator="\n")
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as gz:
        gz.write(csv.encode())
    record = {
        "source": "music21 corpus, composer 'bach' (.mxl/.xml files), in file-name order",
        "music21": music21.__version__,
        "pieces": len(corpus),
        "notes": len(table),
        "skipped": corpus.skipped,
        "dropped": corpus.dropped,
        "fingerprint": corpus.fingerprint,
    }
    return buf.getvalue(), record


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DATA_DIR, help="folder to write (default data/)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    data, record = build()
    atomic_write(args.out / "bach_chorales.csv.gz", data)
    atomic_write(args.out / "bach_chorales.json", (json.dumps(record, indent=1) + "\n").encode())
    print(
        f"{record['pieces']} chorales, {record['notes']:,} notes, {len(data) / 1e6:.2f} MB "
        f"in {time.perf_counter() - t0:.0f} s; fingerprint {record['fingerprint']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
