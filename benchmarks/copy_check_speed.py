"""How long does the copy check take? Index build, one query, and the real reference.

    python benchmarks/copy_check_speed.py [--source bach] [--notes 128] [--runs 5]
                                          [--queries 200] [--scale 1]

Builds a :class:`melody_utils.metrics.CopyIndex` of the training split (seed 0) and
times, each as the median (and max) of ``--runs`` or ``--queries`` repetitions:

* ``build``: indexing every training pitch sequence (the suffix array);
* ``query``: :meth:`CopyIndex.longest_match` of a ``--notes``-note query, for three kinds
  of query: random pitches drawn from the training pitches (few, short matches),
  held-out windows (the realistic case), and exact training slices (the whole query
  matches: one search per note, then the scan stops);
* ``reference``: :func:`melody_utils.metrics.copy_reference` of the held-out split on
  windows of ``--notes`` notes.

``--scale K`` indexes K transposed copies of the training split, to see how build and
query times grow with the corpus. The machine's load average is printed next to the
timings: on a shared machine, read them with it. Nothing is written.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np

from melody_utils.data import load_corpus, split_pieces
from melody_utils.metrics import CopyIndex, copy_reference


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn``."""
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def line(label: str, seconds: list[float], unit: float = 1e3, suffix: str = "ms") -> str:
    med, worst = statistics.median(seconds), max(seconds)
    return f"{label:<38} median {med * unit:8.2f} {suffix}   max {worst * unit:8.2f} {suffix}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="bach")
    ap.add_argument("--notes", type=int, default=128, help="query length (a generation's)")
    ap.add_argument("--runs", type=int, default=5, help="timed index builds")
    ap.add_argument("--queries", type=int, default=200, help="timed queries of each kind")
    ap.add_argument("--scale", type=int, default=1, help="index K transposed training copies")
    args = ap.parse_args(argv)

    load0 = os.getloadavg()
    splits = split_pieces(load_corpus(args.source, progress=False), seed=0)
    train, held_out = splits["train"], splits["test"]
    tables = [p.notes for p in train]
    for k in range(1, args.scale):  # transposed copies: new sequences, same statistics
        shift = (k + 1) // 2 * (1 if k % 2 else -1)  # +1, -1, +2, -2, ...: all distinct
        tables += [
            t.assign(pitch=np.clip(t["pitch"].to_numpy() + shift, 0, 127))
            for t in tables[: len(train)]
        ]
    n_notes = sum(len(t) for t in tables)

    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores")
    print(f"load average before (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in load0)}")
    print(f"training set: {len(tables)} pieces, {n_notes:,} notes; query length {args.notes}")

    index_box: list[CopyIndex] = []
    build = timed(lambda: index_box.append(CopyIndex(tables)), args.runs)
    index = index_box[-1]
    print(line("build index", build, 1.0, "s "))

    rng = np.random.default_rng(0)
    all_pitches = np.concatenate([t["pitch"].to_numpy() for t in tables])
    random_q = [rng.choice(all_pitches, args.notes) for _ in range(args.queries)]
    windows = [
        p.notes["pitch"].to_numpy()[s : s + args.notes]
        for p in held_out
        for s in range(0, len(p) - args.notes + 1, args.notes)
    ]
    held_q = [windows[i % len(windows)] for i in range(args.queries)]
    long_train = [t for t in tables if len(t) >= args.notes]
    slices = []
    for i in range(args.queries):
        t = long_train[i % len(long_train)]["pitch"].to_numpy()
        s = int(rng.integers(0, len(t) - args.notes + 1))
        slices.append(t[s : s + args.notes])

    for label, queries in (
        ("query: random pitches", random_q),
        ("query: held-out window", held_q),
        ("query: exact training slice", slices),
    ):
        it = iter(queries)
        secs = timed(lambda it=it: index.longest_match(next(it)), len(queries))
        runs = [index.longest_match(q).length for q in queries[:50]]
        print(line(label, secs) + f"   (longest run, median of 50: {statistics.median(runs):g})")

    t0 = time.perf_counter()
    ref = copy_reference(index, held_out, args.notes)
    took = time.perf_counter() - t0
    s = ref.summary()
    print(
        f"{'reference: held-out windows':<38} {took:8.2f} s for {ref.windows} windows   "
        f"(runs: median {s['median']:g}, p90 {s['p90']:g}, max {s['max']:g})"
    )
    print(f"load average after  (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
