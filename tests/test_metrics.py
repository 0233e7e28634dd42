"""melody_utils.metrics: the measures on hand-built tables with known answers, the real
reference (averaged per piece, then over pieces), the histograms and their distances, and the
copy check against a brute-force search on real chorales."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from melody_utils.config import CHORD_SNAP, FLAM_MAX
from melody_utils.data import Piece
from melody_utils.metrics import (
    INTERVAL_CLIP,
    MEASURES,
    TIME_BIN_EDGES,
    CopyIndex,
    _suffix_array,
    chord_share,
    copy_reference,
    copy_report,
    distribution_distance,
    duration_histogram,
    flam_rate,
    interval_histogram,
    intervals,
    measures,
    pitch_class_histogram,
    real_windows,
    reference_stats,
    stats_table,
    step_histogram,
)


def table(pitches, steps=None, durations=None) -> pd.DataFrame:
    """A note table from pitches and steps (default: one note every 0.5 s)."""
    pitches = np.asarray(pitches, dtype=np.int64)
    steps = np.full(len(pitches), 0.5) if steps is None else np.asarray(steps, float)
    durations = np.full(len(pitches), 0.4) if durations is None else np.asarray(durations, float)
    start = np.cumsum(steps) - (steps[0] if len(steps) else 0.0)
    return pd.DataFrame(
        {
            "pitch": pitches,
            "start": start,
            "end": start + durations,
            "step": steps,
            "duration": durations,
            "velocity": np.full(len(pitches), 64),
        }
    )


def brute_longest(pieces: list[list[int]], query: list[int]) -> int:
    """The longest run of ``query`` inside one piece, by trying every substring with
    ``bytes in bytes`` (another algorithm than the suffix array's)."""
    texts = [bytes(p) for p in pieces]
    best = 0
    for i in range(len(query)):
        for j in range(i + best + 1, len(query) + 1):
            if not any(bytes(query[i:j]) in t for t in texts):
                break
            best = j - i
    return best


# --------------------------------------------------------------------------- measures


def test_chord_share_and_flam_rate_at_the_edges():
    # the first step is never counted; then the rule's edges on both sides
    steps = [9.0, 0.0, 0.005, 0.0099, CHORD_SNAP, 0.05, 0.0999, FLAM_MAX, 0.5]
    t = table(range(60, 69), steps)
    assert (CHORD_SNAP, FLAM_MAX) == (0.01, 0.1)
    assert chord_share(t) == pytest.approx(3 / 8)  # 0, 0.005, 0.0099
    assert flam_rate(t) == pytest.approx(3 / 8)  # 0.01, 0.05, 0.0999
    assert chord_share(Piece("x", t)) == chord_share(t) and flam_rate(Piece("x", t)) == flam_rate(t)
    assert math.isnan(flam_rate(t.iloc[:1])) and math.isnan(chord_share(t.iloc[:1]))
    with pytest.raises(TypeError, match="note table"):
        flam_rate(t.drop(columns="step"))
    with pytest.raises(TypeError, match="note table"):
        chord_share([60, 62])  # a pitch list has no rhythm


def test_intervals_of_rows_and_of_the_top_voice():
    # C major chord, D minor chord half a second later, then a single C
    t = table([60, 64, 67, 62, 65, 69, 72], [0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.5])
    assert intervals(t).tolist() == [4, 3, -5, 3, 4, 3]
    assert intervals(t, "top").tolist() == [2, 3]  # 67 -> 69 -> 72
    assert intervals(t.iloc[:0], "top").tolist() == []
    with pytest.raises(ValueError, match="line"):
        intervals(t, "bass")


def test_the_top_voice_counts_held_notes():
    # a soprano E5 held for a whole bar over a C chord; then an inner voice moves alone (G4 at
    # 1 s), then the soprano moves to F5 (2 s): the top line is E5 E5 F5, not E5 G4 F5
    t = pd.DataFrame({"pitch": [60, 64, 76, 67, 77], "start": [0.0, 0.0, 0.0, 1.0, 2.0]}).assign(
        end=[2.0, 2.0, 2.0, 2.0, 3.0]
    )
    t = t.assign(step=t["start"].diff().fillna(0.0), duration=t["end"] - t["start"], velocity=64)
    assert intervals(t, "top").tolist() == [0, 1]
    assert measures(t)["mean_abs_melodic_interval"] == pytest.approx(0.5)
    # a note that ends as the next onset starts is not held over it
    legato = t.assign(end=[1.0, 1.0, 1.0, 2.0, 3.0])
    assert intervals(legato, "top").tolist() == [-9, 10]  # 76 -> 67 -> 77
    # without start and end: the highest note starting at each onset
    assert intervals(t[["pitch", "step"]], "top").tolist() == [-9, 10]


def test_measures_by_hand():
    t = table([60, 64, 67, 62, 65, 69, 72], [0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.05])
    st = measures(t)
    assert list(st) == [m for m in MEASURES if m != "copied_run"]
    assert st["notes"] == 7 and st["pitch_range"] == 12 and st["unique_pitches"] == 7
    assert st["repeat_share"] == 0 and st["longest_run"] == 1
    assert st["chord_share"] == pytest.approx(4 / 6)
    assert st["flam_rate"] == pytest.approx(1 / 6)
    assert st["polyphony"] == pytest.approx(7 / 3)  # 0.05 starts a new onset
    assert st["mean_abs_interval"] == pytest.approx((4 + 3 + 5 + 3 + 4 + 3) / 6)
    assert st["mean_abs_melodic_interval"] == pytest.approx((2 + 3) / 2)
    pcs = np.array([0, 4, 7, 2, 5, 9, 0])
    p = np.bincount(pcs, minlength=12)[np.bincount(pcs, minlength=12) > 0] / 7
    assert st["pitch_class_entropy"] == pytest.approx(-(p * np.log2(p)).sum())
    rep = measures(table([60, 60, 60, 62, 64]))
    assert rep["repeat_share"] == pytest.approx(2 / 4) and rep["longest_run"] == 3
    assert rep["polyphony"] == 1.0  # a melody
    scale = measures(table(range(60, 72)))
    assert scale["pitch_class_entropy"] == pytest.approx(math.log2(12))
    one = measures(table([60]))
    assert one["notes"] == 1 and one["longest_run"] == 1 and math.isnan(one["repeat_share"])
    empty = measures(table([]))
    assert empty["notes"] == 0 and all(math.isnan(v) for k, v in empty.items() if k != "notes")
    assert measures(Piece("t", t)) == st


def test_every_measure_has_a_description():
    assert set(measures(table([60, 62, 64]))) | {"copied_run"} == set(MEASURES)
    assert list(MEASURES)[-1] == "copied_run"
    for key, text in MEASURES.items():
        assert isinstance(text, str) and len(text) > 3, key
    assert len(set(MEASURES.values())) == len(MEASURES)  # the table's row labels are unique


# --------------------------------------------------------------------------- the reference


def test_real_windows_cut_consecutive_windows_per_piece():
    a, b = table(range(60, 70)), table(range(40, 47))
    windows = real_windows({"a": a, "b": b}, 4)
    assert [(pid, start, len(w)) for pid, start, w in windows] == [
        ("a", 0, 4), ("a", 4, 4), ("b", 0, 4),
    ]  # fmt: skip
    assert windows[1][2]["pitch"].tolist() == [64, 65, 66, 67]
    assert [pid for pid, _, _ in real_windows([Piece("p", a)], 5)] == ["p", "p"]
    assert len(real_windows(a, 10)) == 1  # one table is one piece
    with pytest.raises(ValueError, match="no real piece has 11 notes"):
        real_windows([a, b], 11)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            real_windows([a], bad)


def test_reference_stats_average_per_piece_then_over_pieces():
    a = table([60] * 10)  # 2 windows of 5: repeat share 1
    b = table(list(range(60, 85)))  # 5 windows: repeat share 0
    ref = reference_stats([a, b], 5)
    assert ref["pieces"] == 2 and ref["windows"] == 7 and ref["notes"] == 5
    assert ref["repeat_share"] == pytest.approx((1.0 + 0.0) / 2)  # not 2/7
    assert ref["pitch_range"] == pytest.approx((0 + 4) / 2)
    assert "copied_run" not in ref
    with pytest.raises(ValueError):
        reference_stats([], 5)


def test_the_copied_run_reference_is_averaged_like_the_other_rows():
    """Per piece the mean over its held-out windows, then the mean over pieces; the runs
    themselves by brute force."""
    train = [[60, 62, 64, 65, 67, 69, 71, 72], [50, 52, 53, 55]]
    held_out = {
        "three windows": table([60, 62, 64, 65, 67, 69, 71, 72, 40, 41, 42, 43]),
        "one window": table([50, 52, 70, 80]),
    }
    ref = reference_stats(held_out, 4, CopyIndex([table(p) for p in train]))
    runs = {}
    for pid, notes in held_out.items():
        pitches = notes["pitch"].tolist()
        runs[pid] = [brute_longest(train, pitches[i : i + 4]) for i in range(0, len(pitches), 4)]
    assert runs == {"three windows": [4, 4, 0], "one window": [2]}
    assert ref["copied_run"] == pytest.approx(np.mean([np.mean(r) for r in runs.values()]))
    assert ref["copied_run"] != pytest.approx(np.mean(sum(runs.values(), [])))  # not pooled


def test_the_copied_run_reference_on_real_chorales(bach_splits):
    index = CopyIndex(bach_splits["train"][:80])
    held_out = bach_splits["test"][:10]
    ref = reference_stats(held_out, 32, index)
    by_piece = {}
    for p in held_out:  # independently: the windows of each piece, one by one
        pitches = p.notes["pitch"].tolist()
        by_piece[p.id] = [
            index.longest_match(pitches[i : i + 32]).length for i in range(0, len(pitches) - 31, 32)
        ]
    assert ref["windows"] == sum(map(len, by_piece.values()))
    assert ref["copied_run"] == pytest.approx(np.mean([np.mean(r) for r in by_piece.values()]))
    other = reference_stats(held_out, 32)
    for key in MEASURES:
        if key != "copied_run":
            assert ref[key] == pytest.approx(other[key]), key


def test_stats_table_rows_columns_and_labels():
    gen = [measures(table([60, 62, 64, 60])), measures(table([60, 60, 60, 60]))]
    real = reference_stats([table(range(60, 72)), table(range(50, 58))], 4)
    t = stats_table(gen, real)
    assert list(t.columns) == [
        "variation 1",
        "variation 2",
        "real (mean over windows of a piece, then 2 pieces)",
    ]
    assert list(t.index) == [MEASURES[m] for m in MEASURES if m != "copied_run"]
    assert t.index.name == "measure"
    assert t.loc[MEASURES["repeat_share"], "variation 2"] == 1.0
    assert t.loc[MEASURES["mean_abs_interval"], "variation 1"] == round(8 / 3, 3)
    assert list(stats_table(gen).columns) == ["variation 1", "variation 2"]
    with_copy = [dict(g, copied_run=3.0) for g in gen]
    assert MEASURES["copied_run"] in stats_table(with_copy).index
    # only the measures every variation has
    assert MEASURES["copied_run"] not in stats_table([with_copy[0], gen[1]]).index


# --------------------------------------------------------------------------- histograms


def test_histograms_count_every_value_once():
    t = table([60, 64, 67, 62, 65, 30], [0.0, 0.0, 0.0, 0.5, 0.05, 99.0], [1, 1, 1, 0.5, 0.5, 1e-4])
    steps = step_histogram(t)
    assert len(steps) == len(TIME_BIN_EDGES) and steps.sum() == 5  # the first step not counted
    assert steps[0] == 2 and steps[0] / steps.sum() == chord_share(t)
    assert steps[1 + np.searchsorted(TIME_BIN_EDGES, 0.5, "right") - 1] == 1
    assert steps[-1] == 1  # 99 s: the last bin
    i = np.searchsorted(TIME_BIN_EDGES, 1.0, "right") - 1
    assert np.log2(TIME_BIN_EDGES[i]) == pytest.approx(-0.25)  # a power of two sits mid-bin
    durs = duration_histogram(t)
    assert len(durs) == len(TIME_BIN_EDGES) - 1 and durs.sum() == 6
    assert durs[i] == 3 and durs[0] == 1  # 0.1 ms: the first bin
    pcs = pitch_class_histogram(t)
    assert pcs.tolist() == np.bincount(t["pitch"] % 12, minlength=12).tolist()
    iv = interval_histogram(t)
    assert len(iv) == 2 * INTERVAL_CLIP + 1 and iv.sum() == 5 and iv[0] == 1  # -35 clipped
    assert interval_histogram(t, "top").sum() == len(intervals(t, "top"))
    for h in (steps, durs, pcs, iv):  # normalised, each a distribution
        assert (h / h.sum()).sum() == pytest.approx(1.0)
    # pooled over tables: each table's first step left out
    assert step_histogram([t, t]).tolist() == (2 * steps).tolist()
    assert step_histogram({"a": t}).tolist() == steps.tolist()


def test_distribution_distance_properties_and_known_values():
    rng = np.random.default_rng(0)
    for metric in ("tv", "js"):
        for _ in range(20):
            p, q = rng.integers(0, 5, 12).astype(float), rng.integers(0, 5, 12).astype(float)
            p[0] += 1
            q[1] += 1
            d = distribution_distance(p, q, metric)
            assert 0 <= d <= 1 and d == pytest.approx(distribution_distance(q, p, metric))
            assert distribution_distance(p, 7 * p, metric) == pytest.approx(0.0, abs=1e-12)
        assert distribution_distance([3, 0, 0], [0, 1, 2], metric) == pytest.approx(1.0)
        assert math.isnan(distribution_distance([0, 0], [1, 1], metric))
    assert distribution_distance([4, 0], [1, 1], "tv") == pytest.approx(0.5)
    js = 0.5 * math.log2(1 / 0.75) + 0.5 * (0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(2))
    assert distribution_distance([4, 0], [1, 1], "js") == pytest.approx(js)
    with pytest.raises(ValueError, match="metric"):
        distribution_distance([1], [1], "l2")
    with pytest.raises(ValueError, match="alike"):
        distribution_distance([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="non-negative"):
        distribution_distance([1, -2], [1, 2])


# --------------------------------------------------------------------------- the copy check


def test_suffix_array_sorts_suffixes():
    rng = np.random.default_rng(1)
    for _ in range(100):
        text = bytes(rng.integers(0, 3, rng.integers(1, 40)).astype(np.uint8))
        assert _suffix_array(text) == sorted(range(len(text)), key=lambda i: text[i:])


def test_copy_index_finds_an_exact_slice():
    rng = np.random.default_rng(0)
    train = [Piece(f"bach/p{i}", table(rng.integers(60, 72, 50))) for i in range(4)]
    source = train[2].notes["pitch"].tolist()[17:27]
    query = [40, 41, 42, *source, 43, 44]  # padding no training piece uses
    index = CopyIndex(train)
    assert len(index) == 200 and repr(index) == "CopyIndex(4 pieces, 200 notes)"
    m = index.longest_match(query)
    assert (m.length, m.query_start, m.piece_id, m.note_index) == (10, 3, "bach/p2", 17)
    assert list(m.pitches) == source and m.query_length == 15
    assert m.share == pytest.approx(10 / 15)
    assert m.occurrences == len(index.locate(source)) and ("bach/p2", 17) in index.locate(source)
    assert index.contains(source) and not index.contains(query)
    assert index.longest_match(table(query)) == m


def test_copy_index_never_matches_across_pieces():
    index = CopyIndex({"a": table([60, 61, 62, 63]), "b": table([64, 65, 66, 67])})
    m = index.longest_match([62, 63, 64, 65])  # only if "a" ran on into "b"
    assert m.length == 2 and (m.piece_id, m.note_index, m.query_start) == ("a", 2, 0)
    assert not index.contains([63, 64]) and index.locate([63, 64]) == []
    m = index.longest_match([66, 67, 99, 60, 61])  # equally long: the first in the query
    assert (m.length, m.query_start, m.piece_id, m.note_index) == (2, 0, "b", 2)


def test_copy_index_agrees_with_brute_force_on_toys():
    rng = np.random.default_rng(7)
    for _ in range(150):
        pieces = [rng.integers(60, 63, rng.integers(1, 15)).tolist() for _ in range(3)]
        query = rng.integers(60, 63, rng.integers(0, 20)).tolist()
        index = CopyIndex([table(p) for p in pieces])
        m = index.longest_match(query)
        assert m.length == brute_longest(pieces, query), (pieces, query)
        if m.length:
            piece = pieces[int(m.piece_id)]
            assert piece[m.note_index : m.note_index + m.length] == list(m.pitches)
            assert query[m.query_start : m.query_start + m.length] == list(m.pitches)
            places = index.locate(list(m.pitches))
            assert places[0] == (m.piece_id, m.note_index) and len(places) == m.occurrences


def test_copy_index_agrees_with_brute_force_on_real_chorales(bach_splits):
    train = bach_splits["train"][:30]
    index = CopyIndex(train)
    texts = {p.id: p.notes["pitch"].tolist() for p in train}
    assert len(index) == sum(map(len, texts.values()))
    queries = [p.notes["pitch"].tolist()[:32] for p in bach_splits["test"][:12]]
    queries += [
        texts[train[3].id][40:72],
        texts[train[7].id][5:20] + [0, 1] + texts[train[9].id][:9],
    ]
    for q in queries:
        m = index.longest_match(q)
        assert m.length == brute_longest(list(texts.values()), q)
        if m.length:
            run = list(m.pitches)
            assert texts[m.piece_id][m.note_index : m.note_index + m.length] == run
            brute = [
                (pid, k) for pid, t in texts.items() for k in range(len(t) - len(run) + 1)
                if t[k : k + len(run)] == run
            ]  # fmt: skip
            assert sorted(index.locate(run)) == sorted(brute)
            assert index.locate(run)[0] == (m.piece_id, m.note_index)
            assert index.contains(run) and m.occurrences == len(brute)
    assert index.longest_match(queries[-2]).length == 32  # a training slice: found whole
    assert index.longest_match(queries[-1]).length == 15


def test_copy_index_edge_cases():
    index = CopyIndex([table([60, 62, 64])])
    empty = index.longest_match([])
    assert empty.length == 0 and empty.piece_id is None and math.isnan(empty.share)
    assert index.contains([]) and index.locate([]) == []
    none = index.longest_match([70, 71])
    assert none.length == 0 and none.query_start == -1 and none.occurrences == 0
    for bad in ([60, 128], [60.5], [[60, 62]]):
        with pytest.raises(ValueError, match="0..127"):
            index.longest_match(bad)
    with pytest.raises(ValueError, match="at least one"):
        CopyIndex([])


def test_copy_reference_and_report():
    index = CopyIndex([table([60, 62, 64, 65, 67, 69, 71, 72])])
    held_out = {
        "copy": table([60, 62, 64, 65, 67, 69, 71, 72, 50]),  # windows of 4: runs 4 and 4
        "own": table([40, 41, 42, 43, 60, 62, 40]),  # one window, run 0; 3 notes left over
    }
    ref = copy_reference(index, held_out, 4)
    assert ref.runs.tolist() == [4, 4, 0] and ref.piece_ids == ["copy", "copy", "own"]
    assert ref.starts == [0, 4, 0] and ref.length == 4
    s = ref.summary()
    assert (s["windows"], s["pieces"], s["length"]) == (3, 2, 4)
    assert (s["mean"], s["median"], s["max"]) == (8 / 3, 4.0, 4.0)
    assert s["p90"] == pytest.approx(4.0)
    assert ref.share_at_least(4) == pytest.approx(2 / 3) and ref.share_at_least(5) == 0
    report = copy_report(index, [table([67, 69, 71, 72]), table([1, 2, 3, 4])], ref)
    assert list(report.columns) == [
        "notes", "longest_run", "query_start", "piece_id", "note_index", "occurrences",
        "real_median", "real_max", "real_share_at_least",
    ]  # fmt: skip
    assert report.index.name == "generation"
    assert report["longest_run"].tolist() == [4, 0] and report["notes"].tolist() == [4, 4]
    assert report.loc[0, "note_index"] == 4 and report.loc[0, "piece_id"] == "0"
    assert report["real_share_at_least"].tolist() == pytest.approx([2 / 3, 1.0])
    assert report["real_median"].tolist() == [4.0, 4.0]
    assert list(copy_report(index, table([60, 62])).columns)[-1] == "occurrences"
    with pytest.raises(ValueError, match="no real piece has 10 notes"):
        copy_reference(index, held_out, 10)


# --------------------------------------------------------------------------- real chorales


def test_real_chorales_rhythm_facts(bach_splits):
    test = bach_splits["test"]
    assert len(test) > 10
    assert np.mean([flam_rate(p) for p in test]) < 0.005
    assert 0.5 < np.mean([chord_share(p) for p in test]) < 0.8
    ref = reference_stats(test, 64)
    assert ref["pieces"] > 10 and 2.5 < ref["polyphony"] < 3.5  # four voices, some held
    assert ref["repeat_share"] < 0.2 and ref["pitch_class_entropy"] > 2.0


def brute_transposed(pieces: list[list[int]], query: list[int]) -> int:
    """The longest run of ``query`` (2+ notes) inside one piece in some key, by brute force."""
    best = 0
    for p in pieces:
        for i in range(len(query)):
            for k in range(len(p)):
                n = 0
                while i + n < len(query) and k + n < len(p):
                    if query[i + n] - p[k + n] != query[i] - p[k]:
                        break
                    n += 1
                best = max(best, n if n >= 2 else 0)
    return best


def test_the_transposed_copy_index_finds_a_run_in_another_key():
    rng = np.random.default_rng(3)
    for _ in range(150):
        pieces = [rng.integers(60, 64, rng.integers(1, 15)).tolist() for _ in range(3)]
        query = rng.integers(50, 75, rng.integers(0, 20)).tolist()
        if rng.random() < 0.5 and len(pieces[1]) > 4:
            query[1:1] = [p + int(rng.integers(-9, 10)) for p in pieces[1][1:5]]  # a copy
        index = CopyIndex([table(p) for p in pieces], transposed=True)
        m = index.longest_match(query)
        assert m.length == brute_transposed(pieces, query), (pieces, query)
        if m.length:
            source = pieces[int(m.piece_id)][m.note_index : m.note_index + m.length]
            assert np.ptp(np.subtract(m.pitches, source)) == 0  # one transposition
            assert list(m.pitches) == query[m.query_start : m.query_start + m.length]


def test_a_chorale_copied_a_fourth_higher_is_invisible_exactly_and_found_transposed(bach_splits):
    train = bach_splits["train"][:30]
    copied = [p + 5 for p in train[4].notes["pitch"].tolist()[10:42]]
    exact, transposed = CopyIndex(train), CopyIndex(train, transposed=True)
    assert exact.longest_match(copied).length < 12
    m = transposed.longest_match(copied)
    assert m.length == 32 and m.share == 1
    assert len(transposed) == len(exact) and "transposed" in repr(transposed)
    assert transposed.contains(copied) and not exact.contains(copied)
