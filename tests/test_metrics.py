"""Metrics beyond the card: rhythm measures, histogram distances, objective music
measures (generated vs real) and the copy check. Hand-made cases with known answers,
a brute-force cross-check of the copy index, and plausible facts on the real chorales."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from melody_utils.config import CHORD_SNAP
from melody_utils.corpus import Piece
from melody_utils.metrics import (
    FLAM_MAX,
    FLAM_MIN,
    HISTOGRAMS,
    INTERVAL_CLIP,
    MUSIC_MEASURES,
    TIME_BIN_EDGES,
    CopyIndex,
    _suffix_array,
    chord_share,
    compare_sets,
    copy_reference,
    copy_report,
    degeneration_stats,
    distribution_distance,
    duration_histogram,
    flam_rate,
    histogram,
    histogram_distance,
    interval_histogram,
    intervals,
    music_stats,
    pitch_class_histogram,
    polyphony,
    reference_stats,
    rhythm_distances,
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


# --------------------------------------------------------------------------- rhythm


def test_flam_rate_and_chord_share_by_hand():
    # the first step is never counted; then 2 chord tones, 3 flams, 2 real steps
    steps = [9.0, 0.0, 0.005, FLAM_MIN, 0.05, 0.0999, FLAM_MAX, 0.5]
    t = table(range(60, 68), steps)
    assert FLAM_MIN == CHORD_SNAP == 0.01 and FLAM_MAX == 0.1
    assert chord_share(t) == pytest.approx(2 / 7)
    assert flam_rate(t) == pytest.approx(3 / 7)
    # the same definition of chord_share as the degeneration measures, also for a Piece
    assert chord_share(Piece("x", t)) == degeneration_stats(t)["chord_share"]
    assert flam_rate(Piece("x", t)) == flam_rate(t)
    # one note: no step to measure
    assert math.isnan(flam_rate(t.iloc[:1])) and math.isnan(chord_share(t.iloc[:1]))
    with pytest.raises(ValueError, match="step"):
        flam_rate(t.drop(columns="step"))
    with pytest.raises(TypeError):
        flam_rate([60, 62])  # a pitch list has no rhythm


def test_histogram_counts_out_of_range_values_in_end_bins():
    counts = histogram([-5.0, 0.0, 0.5, 1.0, 1.5, 2.0, 99.0], [0.0, 1.0, 2.0])
    assert counts.tolist() == [3.0, 4.0]  # [0, 1) plus the one below; [1, 2] plus above
    with pytest.raises(ValueError, match="increasing"):
        histogram([1.0], [0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="NaN"):
        histogram([math.nan], [0.0, 1.0])


def test_histogram_distance_known_values():
    bins = [0.0, 1.0, 2.0, 3.0]
    a = [0.5, 1.5, 1.5, 2.5]
    for metric in ("tv", "js"):
        assert histogram_distance(a, a, bins, metric) == 0.0
        # the same shape from a sample twice the size: still 0
        assert histogram_distance(a, a + a, bins, metric) == pytest.approx(0.0)
        # disjoint supports: the maximum, 1
        assert histogram_distance([0.1, 0.2], [2.5, 2.9], bins, metric) == pytest.approx(1.0)
        assert math.isnan(histogram_distance([], a, bins, metric))
    # p = (1, 0), q = (1/2, 1/2): TV = 1/2; JS by hand with m = (3/4, 1/4)
    assert distribution_distance([4, 0], [1, 1], "tv") == pytest.approx(0.5)
    js = 0.5 * math.log2(1 / 0.75) + 0.5 * (0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(2))
    assert distribution_distance([4, 0], [1, 1], "js") == pytest.approx(js)
    with pytest.raises(ValueError, match="metric"):
        distribution_distance([1], [1], "l2")
    with pytest.raises(ValueError, match="alike"):
        distribution_distance([1, 2], [1, 2, 3])


def test_step_and_duration_histograms():
    t = table([60, 64, 67, 62, 65], [0.0, 0.0, 0.0, 0.5, 0.05], [1.0, 1.0, 1.0, 0.5, 0.5])
    steps = step_histogram(t)
    assert len(steps) == len(TIME_BIN_EDGES) and steps.sum() == 4  # first step not counted
    assert steps[0] == 2 and steps[0] / steps.sum() == chord_share(t)
    # 0.5 s and 0.05 s land in the log bin that holds them
    assert steps[1 + np.searchsorted(TIME_BIN_EDGES, 0.5, "right") - 1] == 1
    assert steps[1 + np.searchsorted(TIME_BIN_EDGES, 0.05, "right") - 1] == 1
    # powers of two sit in the middle of their bin, not on an edge
    i = np.searchsorted(TIME_BIN_EDGES, 1.0, "right") - 1
    assert np.log2(TIME_BIN_EDGES[i]) == pytest.approx(-0.25)
    durs = duration_histogram(t)
    assert len(durs) == len(TIME_BIN_EDGES) - 1 and durs.sum() == 5 and durs[i] == 3
    # pooled over tables: each table's first step is left out
    assert step_histogram([t, t]).tolist() == (2 * steps).tolist()
    assert step_histogram({"a": t}).tolist() == steps.tolist()


def test_rhythm_distances():
    real = [table(range(60, 80), [0.5, 0.0] * 10), table(range(50, 70), [0.25] * 20)]
    same = rhythm_distances(real, real)
    assert set(same) == {"step_tv", "step_js", "duration_tv", "duration_js"}
    assert all(v == 0.0 for v in same.values())
    # a hedging regression head: every step a 50 ms flam, no chord, no real value
    flams = table(range(60, 80), [0.05] * 20, [0.2] * 20)
    far = rhythm_distances([flams], real)
    assert far["step_tv"] == pytest.approx(1.0) and far["step_js"] == pytest.approx(1.0)
    assert 0.0 < far["duration_tv"] <= 1.0


# --------------------------------------------------------------------------- music measures


def test_polyphony_and_intervals_by_hand():
    # C major chord, then D minor chord half a second later, then a single C
    t = table([60, 64, 67, 62, 65, 69, 72], [0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.5])
    assert polyphony(t) == pytest.approx(7 / 3)
    assert polyphony(table([60, 62, 64])) == 1.0  # a melody
    assert math.isnan(polyphony(t.iloc[:0]))
    assert intervals(t).tolist() == [4, 3, -5, 3, 4, 3]
    assert intervals(t, "top").tolist() == [2, 3]  # 67 -> 69 -> 72
    with pytest.raises(ValueError, match="line"):
        intervals(t, "bass")
    hist = interval_histogram(t)
    assert len(hist) == 2 * INTERVAL_CLIP + 1 and hist[INTERVAL_CLIP + 3] == 3
    # leaps beyond two octaves share the end bins
    wide = interval_histogram(table([30, 90, 30]))
    assert wide[-1] == 1 and wide[0] == 1
    pcs = pitch_class_histogram(t)
    assert pcs[0] == 2 and pcs[4] == 1 and pcs.sum() == 7


def test_music_stats_by_hand():
    t = table([60, 64, 67, 62, 65, 69, 72], [0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.05])
    st = music_stats(t)
    assert tuple(st) == MUSIC_MEASURES
    assert st["notes"] == 7 and st["pitch_range"] == 12 and st["unique_pitches"] == 7
    assert st["chord_share"] == pytest.approx(4 / 6)
    assert st["flam_rate"] == pytest.approx(1 / 6)
    assert st["polyphony"] == pytest.approx(7 / 3)
    assert st["mean_abs_interval"] == pytest.approx((4 + 3 + 5 + 3 + 4 + 3) / 6)
    assert st["mean_abs_melodic_interval"] == pytest.approx((2 + 3) / 2)
    assert st["pitch_class_entropy"] == degeneration_stats(t)["pitch_class_entropy"]


def test_compare_sets_identical_and_windowed():
    real = [
        table(range(60, 72), [0.5, 0.0, 0.0] * 4),  # 3 windows of 4 notes
        table([60, 62, 64, 65, 67, 69, 71, 72, 74], [0.25] * 9),  # 2 windows, 1 left over
    ]
    windows = [real[0].iloc[i : i + 4] for i in (0, 4, 8)] + [
        real[1].iloc[i : i + 4] for i in (0, 4)
    ]
    out = compare_sets(windows, real)
    assert list(out.index) == list(MUSIC_MEASURES) + list(HISTOGRAMS)
    assert list(out.columns) == ["description", "generated", "real", "real_sd", "distance"]
    assert out.attrs["length"] == 4 and out.attrs["real_windows"] == 5
    assert out.attrs["real_pieces"] == 2 and out.attrs["generated_tables"] == 5
    # the real windows against themselves: every histogram distance is 0
    assert (out.loc[list(HISTOGRAMS), "distance"] == 0).all()
    assert out.loc[list(MUSIC_MEASURES), "distance"].isna().all()
    # real = mean over each piece's windows, then over pieces (as reference_stats)
    ref = reference_stats(real, 4)
    for m in ("pitch_range", "pitch_class_entropy", "chord_share"):
        assert out.loc[m, "real"] == pytest.approx(ref[m])
    # a monophonic, flam-ridden generation is far from four-part music
    bad = compare_sets([table([60] * 4, [0.05] * 4)], real, metric="js")
    assert bad.loc["polyphony", "generated"] == 1.0 and bad.loc["flam_rate", "generated"] == 1.0
    assert bad.loc["step_histogram", "distance"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no real piece has 50 notes"):
        compare_sets([table(range(60, 110))], real)
    with pytest.raises(ValueError, match="positive"):
        compare_sets(windows, real, length=0)


# --------------------------------------------------------------------------- copy check


def brute_longest(pieces: list[list[int]], query: list[int]) -> int:
    """The longest run of ``query`` inside one piece, by trying every substring."""
    best = 0
    for i in range(len(query)):
        for j in range(i + 1, len(query) + 1):
            run = query[i:j]
            if any(
                p[k : k + len(run)] == run for p in pieces for k in range(len(p) - len(run) + 1)
            ):
                best = max(best, j - i)
    return best


def test_suffix_array_sorts_suffixes():
    rng = np.random.default_rng(1)
    for _ in range(100):
        text = bytes(rng.integers(0, 3, rng.integers(1, 40)).astype(np.uint8))
        assert _suffix_array(text).tolist() == sorted(range(len(text)), key=lambda i: text[i:])


def test_copy_index_finds_an_exact_ten_note_slice():
    rng = np.random.default_rng(0)
    train = [Piece(f"bach/p{i}", table(rng.integers(60, 72, 50))) for i in range(4)]
    source = train[2].notes["pitch"].tolist()[17:27]
    # padding from pitches the training set never uses: no accidental longer match
    query = [40, 41, 42] + source + [43, 44]
    index = CopyIndex(train)
    assert len(index) == 200 and repr(index) == "CopyIndex(4 pieces, 200 notes)"
    m = index.longest_match(query)
    assert (m.length, m.query_start) == (10, 3)
    assert (m.piece_id, m.note_index) == ("bach/p2", 17)
    assert list(m.pitches) == source and m.query_length == 15
    assert m.share == pytest.approx(10 / 15)
    assert m.occurrences == len(index.locate(source)) and ("bach/p2", 17) in index.locate(source)
    assert index.contains(source) and not index.contains(query)
    # a note table as the query gives the same answer
    assert index.longest_match(table(query)) == m


def test_copy_index_never_matches_across_pieces():
    index = CopyIndex({"a": table([60, 61, 62, 63]), "b": table([64, 65, 66, 67])})
    # [62, 63, 64, 65] only exists if "a" ran on into "b"
    m = index.longest_match([62, 63, 64, 65])
    assert m.length == 2 and (m.piece_id, m.note_index, m.query_start) == ("a", 2, 0)
    assert not index.contains([63, 64]) and index.locate([63, 64]) == []
    # equally long runs: the one that starts first in the query is reported
    m = index.longest_match([66, 67, 99, 60, 61])
    assert (m.length, m.query_start, m.piece_id, m.note_index) == (2, 0, "b", 2)


def test_copy_index_agrees_with_brute_force():
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
            # the first occurrence in index order, and every occurrence is counted
            places = index.locate(list(m.pitches))
            assert places[0] == (m.piece_id, m.note_index) and len(places) == m.occurrences


def test_copy_index_edge_cases():
    index = CopyIndex([table([60, 62, 64])])
    empty = index.longest_match([])
    assert empty.length == 0 and empty.piece_id is None and math.isnan(empty.share)
    none = index.longest_match([70, 71])
    assert none.length == 0 and none.query_start == -1 and none.occurrences == 0
    with pytest.raises(ValueError, match="0..127"):
        index.longest_match([60, 128])
    with pytest.raises(ValueError, match="whole numbers"):
        index.longest_match([60.5])
    with pytest.raises(ValueError, match="at least one"):
        CopyIndex([])


def test_copy_reference_and_report():
    train = [table([60, 62, 64, 65, 67, 69, 71, 72])]
    held_out = {
        "copy": table([60, 62, 64, 65, 67, 69, 71, 72, 50]),  # windows of 4: runs 4 and 4
        "own": table([40, 41, 42, 43, 60, 62, 40]),  # one window, run 0; 3 notes left over
    }
    index = CopyIndex(train)
    ref = copy_reference(index, held_out, 4)
    assert ref.runs.tolist() == [4, 4, 0] and ref.piece_ids == ["copy", "copy", "own"]
    assert ref.starts == [0, 4, 0] and ref.windows == 3 and ref.pieces == 2
    s = ref.summary()
    assert (s["mean"], s["median"], s["max"], s["length"]) == (8 / 3, 4.0, 4.0, 4.0)
    assert ref.share_at_least(4) == pytest.approx(2 / 3) and ref.share_at_least(5) == 0
    report = copy_report(index, [table([67, 69, 71, 72]), table([1, 2, 3, 4])], ref)
    assert report["longest_run"].tolist() == [4, 0]
    assert report.loc[0, "note_index"] == 4 and report.loc[0, "piece_id"] == "0"
    assert report["real_share_at_least"].tolist() == pytest.approx([2 / 3, 1.0])
    assert report.attrs["reference_length"] == 4
    with pytest.raises(ValueError, match="no real piece has 10 notes"):
        copy_reference(index, held_out, 10)


# --------------------------------------------------------------------------- real chorales


def test_real_chorales_rhythm_and_copy_facts(bach_splits):
    test = bach_splits["test"]
    assert len(test) > 10
    assert np.mean([flam_rate(p) for p in test]) < 0.005
    assert 0.5 < np.mean([chord_share(p) for p in test]) < 0.8
    assert 2.5 < np.mean([polyphony(p) for p in test]) < 3.5  # four voices, some held
    for p in test[:5]:
        assert chord_share(p) == degeneration_stats(p)["chord_share"]
    # held-out chorales against other held-out chorales: close, but not identical
    gen = [p.notes.iloc[:128] for p in bach_splits["val"] if len(p) >= 128]
    out = compare_sets(gen, test, length=128)
    dist = out["distance"].dropna()
    assert (dist > 0).all() and (dist < 0.25).all()
    # the copy check: a training slice is found whole; real held-out windows share
    # much shorter runs (Bach reused melodies, so not none)
    index = CopyIndex(bach_splits["train"])
    piece = bach_splits["train"][5]
    m = index.longest_match(piece.notes.iloc[20:148])
    assert m.length == 128 and m.query_start == 0
    assert piece.id in [pid for pid, _ in index.locate(piece.notes.iloc[20:148])]
    ref = copy_reference(index, test, 128)
    assert 4 <= ref.summary()["median"] < 64
