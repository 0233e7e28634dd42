"""Time to load the Bach chorales: cold (a fresh process) and warm (again in that process).

    python benchmarks/corpus_load.py [--repeats 5] [--rebuild]

``load_corpus("bach")`` reads the committed table ``data/bach_chorales.csv.gz``. *Cold* is
a new Python process: importing ``melody_utils.data`` and the first load, each timed;
*warm* is the best of ``--repeats`` further loads in the same process. ``--rebuild`` also
times parsing the 410 chorales from music21's MusicXML (what ``tools/build_chorales.py``
does and what a machine without ``data/`` would need).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, time
t0 = time.perf_counter()
from melody_utils.data import load_corpus
t1 = time.perf_counter()
corpus = load_corpus("bach", progress=False)
t2 = time.perf_counter()
warm = []
for _ in range({repeats}):
    t = time.perf_counter()
    load_corpus("bach", progress=False)
    warm.append(time.perf_counter() - t)
print(json.dumps(dict(imp=t1 - t0, cold=t2 - t1, warm=min(warm), pieces=len(corpus),
                      notes=sum(map(len, corpus)), fp=corpus.fingerprint)))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rebuild", action="store_true", help="also time the music21 parse")
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(repeats=args.repeats)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{r['pieces']} pieces, {r['notes']:,} notes, fingerprint {r['fp']}")
    print(f"import melody_utils.data:          {r['imp']:.2f} s")
    print(f"load_corpus('bach'), cold (first): {r['cold']:.3f} s")
    print(f"load_corpus('bach'), warm (best of {args.repeats}): {r['warm']:.3f} s")
    if args.rebuild:
        sys.path.insert(0, str(ROOT / "tools"))
        from build_chorales import build

        t0 = time.perf_counter()
        build(progress=False)
        print(f"rebuild from music21's MusicXML:   {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
