"""Which pieces carry the same tune: near-duplicate top-voice melodies, transposition-invariant.

A piece's *contour* is the signed intervals of its top voice (the highest note sounding at each
onset, ``metrics.intervals(..., line="top")``) without repeated pitches, so the same melody
transposed, reharmonised underneath, or re-rhythmed (a half note sung as two quarters) has the
same contour. Two pieces share a tune when at least :data:`TUNE_THRESHOLD` of the shorter one's
runs of :data:`TUNE_K` consecutive intervals (its *shingles*) occur in the other, and at least
:data:`TUNE_MIN_SHARED` of them: a containment, so a tune quoted inside a longer piece counts.
A group is a connected component of that relation (``benchmarks/tune_leak.py`` measures what the
rule catches and misses).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .metrics import intervals

#: Shingle length (intervals), share of the shorter piece's shingles, and shared shingles.
TUNE_K, TUNE_THRESHOLD, TUNE_MIN_SHARED = 8, 0.3, 5


def contour(notes: object) -> np.ndarray:
    """The top voice's intervals in semitones, repeated pitches dropped (``int8``)."""
    steps = intervals(notes, line="top")
    return np.clip(steps[steps != 0], -127, 127).astype(np.int8)


def shingles(notes: object, k: int = TUNE_K) -> set[bytes]:
    """The distinct runs of ``k`` consecutive contour intervals (none if the contour is shorter)."""
    c = contour(notes).tobytes()
    return {c[i : i + k] for i in range(len(c) - k + 1)}


def tune_pairs(
    pieces: Sequence,
    k: int = TUNE_K,
    threshold: float = TUNE_THRESHOLD,
    min_shared: int = TUNE_MIN_SHARED,
) -> pd.DataFrame:
    """Every pair of pieces that share a tune: ``a``, ``b`` (ids, ``a < b``), ``shared``
    shingles and ``containment`` (shared / the shorter piece's shingles), most similar first.

    A shingle found in more than 5 % of the pieces (and more than 20) is a commonplace (a
    scale), not evidence of one tune; it is not counted, which also keeps a large collection
    from comparing every pair."""
    if not (isinstance(k, int) and k >= 1 and 0 < threshold <= 1 and min_shared >= 1):
        raise ValueError(
            f"need k >= 1, 0 < threshold <= 1, min_shared >= 1; got {k}, {threshold}, {min_shared}"
        )
    ids = [p.id for p in pieces]
    sets = [shingles(p.notes, k) for p in pieces]
    postings: defaultdict[bytes, list[int]] = defaultdict(list)
    for i, s in enumerate(sets):
        for sh in s:
            postings[sh].append(i)
    common = max(20, 0.05 * len(sets))
    shared: Counter[tuple[int, int]] = Counter()
    for members in postings.values():
        if 1 < len(members) <= common:
            shared.update((a, b) for n, a in enumerate(members) for b in members[n + 1 :])
    rows = []
    for (i, j), n in shared.items():
        share = n / min(len(sets[i]), len(sets[j]))
        if n >= min_shared and share >= threshold:
            rows.append((*sorted((ids[i], ids[j])), n, share))
    out = pd.DataFrame(rows, columns=["a", "b", "shared", "containment"])
    return out.sort_values(
        ["containment", "a", "b"], ascending=[False, True, True], ignore_index=True
    )


def tune_groups(pieces: Sequence, pairs: pd.DataFrame | None = None, **rule) -> list[list[str]]:
    """The pieces grouped by tune (connected components of :func:`tune_pairs`, or of ``pairs``):
    every piece in exactly one group, ids sorted in a group, largest groups first."""
    parent = {p.id: p.id for p in pieces}

    def root(x: str) -> str:
        while parent[x] != x:
            parent[x] = x = parent[parent[x]]
        return x

    pairs = tune_pairs(pieces, **rule) if pairs is None else pairs
    for a, b in zip(pairs["a"], pairs["b"], strict=True):
        parent[root(a)] = root(b)
    groups: defaultdict[str, list[str]] = defaultdict(list)
    for pid in parent:
        groups[root(pid)].append(pid)
    return sorted((sorted(g) for g in groups.values()), key=lambda g: (-len(g), g[0]))


def tune_leak(splits: dict[str, Sequence], seq_len: int = 32, **rule) -> pd.DataFrame:
    """The validation and test pieces that share a tune with a training piece: ``piece``,
    ``split``, its closest training ``twin``, their ``containment`` and the piece's windows."""
    everything = [p for ps in splits.values() for p in ps]
    where = {p.id: s for s, ps in splits.items() for p in ps}
    sizes = {p.id: max(len(p) - seq_len, 0) for p in everything}
    rows = {}
    for a, b, _, share in tune_pairs(everything, **rule).itertuples(index=False):
        for held, twin in ((a, b), (b, a)):
            if where[held] != "train" and where[twin] == "train" and held not in rows:
                rows[held] = (held, where[held], twin, share, sizes[held])
    cols = ["piece", "split", "twin", "containment", "windows"]
    return pd.DataFrame(list(rows.values()), columns=cols).sort_values(
        ["split", "piece"], ignore_index=True
    )
