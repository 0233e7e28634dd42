"""What the tune rule catches and misses, and how much a by-piece split leaks.

    python benchmarks/tune_leak.py [--seed 0]

On the Bach chorales, with the rule of ``melody_utils.tunes`` (shingles of ``TUNE_K`` top-voice
intervals, containment >= ``TUNE_THRESHOLD``, at least ``TUNE_MIN_SHARED`` shared):

1. the pairs and groups it finds, the largest groups with their pieces;
2. chance: every piece against the others *played backwards* (same intervals, same step
   statistics, no shared tune): how many such pairs pass the rule;
3. constructed twins of every chorale with a contour of 30+ intervals: transposed, the
   lower voices replaced (reharmonised), every top-voice note split in two (re-rhythmed),
   and 1, 2, 3, 4 or 6 top-voice notes moved by a semitone: the share caught;
4. the leak of the by-piece split (the committed checkpoint's) and of the by-tune split: the
   validation and test pieces with a training twin, their windows, and the committed model's
   test pitch NLL on the twin windows and on the rest.

Results go to ``benchmarks/results/tune_leak.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from melody_utils.data import load_corpus, make_windows, split_pieces
from melody_utils.train import evaluate, load_checkpoint
from melody_utils.tunes import (
    TUNE_K,
    TUNE_MIN_SHARED,
    TUNE_THRESHOLD,
    contour,
    shingles,
    tune_groups,
    tune_leak,
    tune_pairs,
)

OUT = Path(__file__).resolve().parent / "results" / "tune_leak.json"


def top_rows(notes: pd.DataFrame) -> np.ndarray:
    """Row of the highest note starting at each onset (the top voice's new notes)."""
    onset = np.r_[0, np.cumsum(notes["step"].to_numpy()[1:] >= 0.01)]
    return notes.groupby(onset)["pitch"].idxmax().to_numpy()


def variants(notes: pd.DataFrame, rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    """Constructed twins of one piece (each its own note table)."""
    top = top_rows(notes)
    out = {"transposed +5": notes.assign(pitch=notes["pitch"] + 5)}
    low = notes.copy()
    others = ~low.index.isin(top)
    low.loc[others, "pitch"] = rng.integers(36, 60, others.sum())  # new lower voices
    out["reharmonised"] = low
    split = notes.loc[top].copy()  # the top voice alone, each note split in two
    halves = split.assign(end=(split["start"] + split["end"]) / 2)
    second = split.assign(start=halves["end"])
    out["re-rhythmed"] = pd.concat([halves, second]).sort_values("start", kind="stable")
    out["re-rhythmed"]["step"] = out["re-rhythmed"]["start"].diff().fillna(0)
    for n in (1, 2, 3, 4, 6):
        moved = notes.copy()
        rows = rng.choice(top[1:-1], size=n, replace=False)
        moved.loc[rows, "pitch"] += rng.choice([-1, 1], size=n)
        out[f"{n} notes moved"] = moved
    return out


def caught(a: set, b: set) -> bool:
    n = len(a & b)
    return n >= TUNE_MIN_SHARED and n / max(min(len(a), len(b)), 1) >= TUNE_THRESHOLD


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    bach = load_corpus("bach", progress=False)
    load = os.getloadavg()[0]
    print(f"{platform.machine()}, {os.cpu_count()} cores, load {load:.2f}")
    print(f"rule: {TUNE_K} intervals, containment >= {TUNE_THRESHOLD}, >= {TUNE_MIN_SHARED} shared")

    t = time.perf_counter()
    pairs = tune_pairs(bach)
    pair_s = time.perf_counter() - t
    groups = tune_groups(bach, pairs)
    multi = [g for g in groups if len(g) > 1]
    print(
        f"1. {len(pairs)} pairs in {pair_s:.2f} s; {len(groups)} groups, {len(multi)} of 2+ "
        f"pieces holding {sum(map(len, multi))} of {len(bach)}; sizes {[len(g) for g in multi]}"
    )
    for g in multi[:3]:
        print("   ", ", ".join(x.split("/")[1] for x in g))

    sets = [shingles(p.notes) for p in bach]
    backwards = []
    for p in bach:
        c = contour(p.notes)[::-1] * -1  # the melody played backwards
        backwards.append({c[i : i + TUNE_K].tobytes() for i in range(len(c) - TUNE_K + 1)})
    chance = sum(
        caught(sets[i], backwards[j]) for i in range(len(bach)) for j in range(i + 1, len(bach))
    )
    n_pairs = len(bach) * (len(bach) - 1) // 2
    print(
        f"2. chance: {chance} of {n_pairs:,} pairs pass against a melody played backwards "
        f"(the rule found {len(pairs)})"
    )

    rng = np.random.default_rng(0)
    hits: dict[str, list[bool]] = {}
    for p, s in zip(bach, sets, strict=True):
        if len(contour(p.notes)) < 30:
            continue
        for name, table in variants(p.notes, rng).items():
            hits.setdefault(name, []).append(caught(s, shingles(table)))
    constructed = {k: float(np.mean(v)) for k, v in hits.items()}
    print(f"3. constructed twins of {len(next(iter(hits.values())))} chorales, share caught:")
    for k, v in constructed.items():
        print(f"   {k:14s} {v:6.1%}")

    model, normalizer, meta = load_checkpoint()
    leak = {}
    for by in ("piece", "tune"):
        splits = split_pieces(bach, seed=args.seed, by=by)
        table = tune_leak(splits)
        row = {}
        for split in ("val", "test"):
            mine = table[table["split"] == split]
            n_windows = sum(max(len(p) - 32, 0) for p in splits[split])
            row[split] = {
                "pieces": len(mine),
                "of_pieces": len(splits[split]),
                "windows": int(mine["windows"].sum()),
                "of_windows": n_windows,
            }
        test_twins = set(table.loc[table["split"] == "test", "piece"])
        for name, keep in (("twin", True), ("rest", False)):
            ps = [p for p in splits["test"] if (p.id in test_twins) == keep]
            if by == "piece" and ps:  # the committed model's own split
                row[f"nll_{name}"] = evaluate(model, make_windows(ps, normalizer))["pitch_nll"]
        leak[by] = row
        nll = ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k.startswith("nll") and v)
        print(
            f"4. split by {by}: test {row['test']['pieces']} of {row['test']['of_pieces']} pieces "
            f"({row['test']['windows']:,} of {row['test']['of_windows']:,} windows) and val "
            f"{row['val']['pieces']} of {row['val']['of_pieces']} have a training twin; "
            f"committed model's test NLL: {nll or 'no twins'}"
        )
    print("   (the committed model was trained on the by-piece split: on the by-tune split's")
    print("    test pieces its NLL would not be a held-out figure, so none is given)")

    OUT.write_text(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "load_before": load,
                "rule": {"k": TUNE_K, "threshold": TUNE_THRESHOLD, "min_shared": TUNE_MIN_SHARED},
                "pairs": len(pairs),
                "pair_seconds": pair_s,
                "groups": len(groups),
                "group_sizes": [len(g) for g in multi],
                "groups_of_2_plus": multi,
                "chance_pairs": chance,
                "all_pairs": n_pairs,
                "constructed_caught": constructed,
                "leak": leak,
                "split_seed": args.seed,
                "seconds": time.perf_counter() - t0,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {OUT.relative_to(OUT.parents[2])} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
