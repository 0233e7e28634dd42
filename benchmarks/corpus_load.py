"""Time to load the Bach corpus cold (parse) and warm (cache), and the split sizes.

    python benchmarks/corpus_load.py [--source bach] [--workers N]

The cold load parses into a fresh temporary cache folder, so the project's own
``data/cache`` is neither used nor touched.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from melody_utils.data import Normalizer, load_corpus, make_windows, split_pieces, split_summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="bach")
    ap.add_argument("--workers", type=int, default=None, help="parser processes (default: cores)")
    args = ap.parse_args()
    if args.workers:
        os.environ["MELODY_WORKERS"] = str(args.workers)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MELODY_CACHE_DIR"] = tmp
        t0 = time.perf_counter()
        corpus = load_corpus(args.source, progress=False)
        cold = time.perf_counter() - t0
        warm = []
        for _ in range(5):
            t0 = time.perf_counter()
            again = load_corpus(args.source, progress=False)
            warm.append(time.perf_counter() - t0)
        assert again.from_cache
    print(f"cores: {os.cpu_count()}, parser processes: {os.environ.get('MELODY_WORKERS', 'auto')}")
    print(f"cold load (parse {len(corpus)} pieces): {cold:.1f} s")
    print(f"warm load (cache), best of 5: {min(warm):.3f} s")
    print(corpus.report())
    splits = split_pieces(corpus, seed=0)
    norm = Normalizer.fit(splits["train"])
    table = split_summary(splits)
    for name, pieces in splits.items():  # check the count against real windows
        assert len(make_windows(pieces, norm).pitch_seq) == table.loc[name, "windows"]
    print(table.to_string())


if __name__ == "__main__":
    main()
