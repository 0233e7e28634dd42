"""Scores: note tables and music21 scores engraved offline as SVG (Verovio).

The SVG is parsed as XML and its note elements counted and read back (each carries
``data-pname``/``data-oct``), so the tests check the music drawn, not just that some
picture came out.
"""

from __future__ import annotations

import socket
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import music21
import numpy as np
import pandas as pd
import pytest

from melody_utils import notation
from melody_utils.data import load_piece
from melody_utils.notation import (
    HIGHLIGHT,
    MAX_MEASURES,
    estimate_bpm,
    notes_to_score,
    score_svg,
    show_score,
)
from melody_utils.notes import note_table

SVG = "{http://www.w3.org/2000/svg}"


def table(pitches, starts, lengths, **extra) -> pd.DataFrame:
    """A note table of ``pitches`` at ``starts`` (seconds) lasting ``lengths`` seconds."""
    starts = np.asarray(starts, float)
    t = note_table(pitches, starts, starts + np.asarray(lengths, float), [80] * len(pitches))
    for name, values in extra.items():
        t[name] = values
    return t


def scale_table() -> pd.DataFrame:
    """C major scale in quarter notes at 120 bpm (0.5 s), then a C-E-G half-note chord."""
    pitches = [60, 62, 64, 65, 67, 69, 71, 72]
    return pd.concat(
        [table(pitches, np.arange(8) * 0.5, [0.5] * 8), table([60, 64, 67], [4.0] * 3, [1.0] * 3)],
        ignore_index=True,
    )


def notes_in(svg: str) -> list[ET.Element]:
    """The ``<g class="note">`` elements of an SVG, in drawing order."""
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == "note"]


def names(svg: str) -> list[str]:
    return [f"{g.get('data-pname')}{g.get('data-oct')}" for g in notes_in(svg)]


def coloured(svg: str) -> list[str]:
    return [
        f"{g.get('data-pname')}{g.get('data-oct')}"
        for g in notes_in(svg)
        if (g.get("fill") or g.get("color") or "").lower() == HIGHLIGHT
    ]


def measures(svg: str) -> int:
    return sum(g.get("class") == "measure" for g in ET.fromstring(svg).iter(f"{SVG}g"))


@pytest.fixture(scope="module")
def bwv66_6():
    return load_piece("bach/bwv66.6").notes


def test_known_notes_are_drawn_one_notehead_each():
    svg = score_svg(scale_table(), bpm=120)
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    # the scale, then the chord (one note element per chord tone)
    assert names(svg) == ["c4", "d4", "e4", "f4", "g4", "a4", "b4", "c5", "c4", "e4", "g4"]
    heads = [g for g in ET.fromstring(svg).iter(f"{SVG}g") if g.get("class") == "notehead"]
    assert len(heads) == 11
    assert coloured(svg) == []
    score = notes_to_score(scale_table(), bpm=120)
    assert len(score.parts) == 1  # all from G3 up: one treble staff
    clef = score.parts[0].recurse().getElementsByClass("Clef")[0]
    assert isinstance(clef, music21.clef.TrebleClef)
    notes = list(score.recurse().notes)
    assert [n.quarterLength for n in notes] == [1.0] * 8 + [2.0]
    assert notes[-1].isChord and [p.midi for p in notes[-1].pitches] == [60, 64, 67]


def test_tempo_sets_the_note_values(bwv66_6):
    t = table([60, 62, 64], [0.0, 0.25, 0.5], [0.25, 0.25, 1.0])
    at_120 = [n.quarterLength for n in notes_to_score(t, bpm=120).recurse().notes]
    at_60 = [n.quarterLength for n in notes_to_score(t, bpm=60).recurse().notes]
    assert at_120 == [0.5, 0.5, 2.0]
    assert at_60 == [0.25, 0.25, 1.0]
    assert estimate_bpm(t) == pytest.approx(240.0)  # the commonest length, 0.25 s, is a quarter
    assert estimate_bpm(bwv66_6) == pytest.approx(96.0)
    # performed music (no length a fifth of the notes): the median length is a quarter
    rng = np.random.default_rng(0)
    lengths = rng.uniform(0.3, 0.9, 50)
    played = table([60] * 50, np.cumsum(lengths) - lengths, lengths)
    assert estimate_bpm(played) == pytest.approx(60 / np.median(lengths))
    assert estimate_bpm(played.iloc[:0]) == 120.0


def test_off_grid_times_are_rounded_to_the_grid():
    t = table([60, 62], [0.02, 0.49], [0.45, 0.55])  # 120 bpm: 16th = 0.125 s
    notes = list(notes_to_score(t, bpm=120).recurse().notes)
    assert [n.offset for n in notes] == [0.0, 1.0]
    assert [n.quarterLength for n in notes] == [1.0, 1.0]
    tiny = table([60], [0.0], [0.01])  # shorter than the grid: one grid step, not nothing
    assert [n.quarterLength for n in notes_to_score(tiny, bpm=120).recurse().notes] == [0.25]
    eighths = notes_to_score(table([60, 62], [0.0, 0.3], [0.3, 0.2]), bpm=120, grid=0.5)
    assert [n.quarterLength for n in eighths.recurse().notes] == [0.5, 0.5]


def test_overlapping_rhythms_go_to_separate_voices():
    # a half note on top while two quarters move under it, then one more quarter
    t = table([72, 64, 65, 67], [0.0, 0.0, 0.5, 1.0], [1.0, 0.5, 0.5, 0.5])
    m = notes_to_score(t, bpm=120).parts[0].getElementsByClass("Measure")[0]
    voices = list(m.voices)
    assert len(voices) == 2
    top = [(n.pitch.midi, n.quarterLength) for n in voices[0].notes]
    low = [(n.pitch.midi, n.quarterLength) for n in voices[1].notes]
    assert top == [(72, 2.0), (67, 1.0)] and low == [(64, 1.0), (65, 1.0)]
    # too many rhythms at once (more than four voices): one voice of chords, held notes tied
    many = table([60 + 2 * i for i in range(6)], [0.25 * i for i in range(6)], [2.0] * 6)
    score = notes_to_score(many, bpm=120)
    assert all(len(m.voices) <= 1 for m in score.parts[0].getElementsByClass("Measure"))
    heads = [n for c in score.recurse().notes for n in (c.notes if c.isChord else [c])]
    ties = [n.tie.type for n in heads if n.tie is not None]
    assert "start" in ties and "stop" in ties
    assert {n.pitch.midi for n in heads} == {60 + 2 * i for i in range(6)}


def test_notes_across_a_barline_are_tied():
    t = table([67], [1.5], [1.0])  # 120 bpm: starts on beat 4, lasts a half note
    notes = list(notes_to_score(t, bpm=120).recurse().notes)
    assert [(n.quarterLength, n.tie.type) for n in notes] == [(1.0, "start"), (1.0, "stop")]


def test_wide_music_gets_two_staves_split_at_middle_c():
    t = table([48, 55, 64, 72], [0.0, 0.0, 0.0, 0.0], [0.5] * 4)
    score = notes_to_score(t, bpm=120)
    assert len(score.parts) == 2
    treble, bass = (
        sorted(p.midi for n in part.recurse().notes for p in n.pitches) for part in score.parts
    )
    assert treble == [64, 72] and bass == [48, 55]
    assert len(notes_to_score(t, bpm=120, split_pitch=50).parts[1].recurse().notes) == 1
    low = notes_to_score(table([40, 43, 47], [0, 0.5, 1.0], [0.5] * 3), bpm=120)
    assert len(low.parts) == 1
    assert isinstance(low.recurse().getElementsByClass("Clef")[0], music21.clef.BassClef)


@pytest.mark.parametrize(
    ("key", "pitch", "name"),
    [("A", 61, "C#"), ("F", 70, "B-"), ("E-", 63, "E-"), ("c", 71, "B"), ("c", 63, "E-"),
     ("f#", 65, "E#"), ("G", 70, "A#"), ("B-", 66, "G-"), (None, 70, "B-"), ("C", 72, "C")],
)  # fmt: skip
def test_black_keys_are_spelled_in_the_key(key, pitch, name):
    score = notes_to_score(table([pitch], [0.0], [0.5]), bpm=120, key=key)
    (n,) = score.recurse().notes
    assert n.pitch.name == name and n.pitch.midi == pitch


def test_estimated_key_of_a_chorale(bwv66_6):
    score = notes_to_score(bwv66_6)
    sig = score.recurse().getElementsByClass("KeySignature")[0]
    assert sig.sharps == 3  # f# minor / A major, as the score says
    spelled = {p.name for n in score.recurse().notes for p in n.pitches}
    assert spelled >= {"E#", "C#"} and not spelled & {"F", "D-"}


def test_a_chorale_excerpt_renders_from_its_table_and_from_its_score(bwv66_6):
    excerpt = bwv66_6[bwv66_6["start"] < 10.0]
    svg = score_svg(excerpt)
    drawn = notes_in(svg)
    # every note of the table is drawn (a unison of two voices as one), some as tied
    # pieces across barlines
    unique = len(excerpt.drop_duplicates(["pitch", "start", "end"]))
    assert unique <= len(drawn) <= 1.3 * len(excerpt)
    assert {n for n in names(svg)} >= {"a3", "e4", "c5"}  # the opening chord's notes
    written = music21.corpus.parse("bach/bwv66.6")
    svg = score_svg(written, title="BWV 66.6")
    assert len(notes_in(svg)) == len(list(written.recurse().notes))  # exactly as written
    assert "Soprano" in svg and "BWV 66.6" in svg  # the score's part names, the title
    assert len(svg) < 400_000  # a few systems, not megabytes
    assert written.metadata.title != "BWV 66.6", "the caller's score keeps its title"


def test_a_generated_continuation_is_highlighted_from_split_at():
    """A primer and a continuation as generation gives them: off the grid, with chords."""
    rng = np.random.default_rng(7)
    n = 40
    step = rng.choice([0.0, 0.24, 0.26, 0.5, 0.51], n, p=[0.2, 0.3, 0.2, 0.2, 0.1])
    start = np.cumsum(step)
    generated = note_table(rng.integers(55, 80, n), start, start + rng.uniform(0.2, 0.6, n),
                           rng.integers(40, 110, n))  # fmt: skip
    svg = score_svg(generated, split_at=32)
    marked = coloured(svg)
    assert 8 <= len(marked) <= len(notes_in(svg)) - 32 + 4  # ties may split a note
    shown = names(svg)
    assert shown[-1] in marked and shown[0] not in marked
    assert HIGHLIGHT in svg.lower() and HIGHLIGHT not in score_svg(generated).lower()


def test_highlighting_colours_exactly_the_rows_from_split_at():
    t = scale_table()
    svg = score_svg(t, bpm=120, split_at=8)
    assert names(svg)[8:] == ["c4", "e4", "g4"]
    assert coloured(svg) == ["c4", "e4", "g4"]
    assert len(coloured(score_svg(t, bpm=120, split_at=0))) == 11
    assert coloured(score_svg(t, bpm=120, split_at=len(t))) == []
    # a `generated` column does the same when split_at is not given
    t["generated"] = np.arange(len(t)) >= 5
    assert coloured(score_svg(t, bpm=120)) == ["a4", "b4", "c5", "c4", "e4", "g4"]


def test_show_score_is_an_inline_svg_without_urls_or_paths():
    from IPython.display import SVG as InlineSVG

    shown = show_score(scale_table(), split_at=8, title="A scale")
    assert isinstance(shown, InlineSVG)
    data = shown._repr_svg_()
    assert data.startswith("<svg") and "A scale" in data
    assert len(notes_in(data)) == 11
    namespaces = ("http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink")
    assert data.count("http") == sum(data.count(u) for u in namespaces)  # no other URL
    assert "file:" not in data and "url(" not in data
    for path in {
        str(Path.home()),
        sys.prefix,
        str(Path.cwd()),
        str(Path(notation.__file__).parent),
    }:
        assert path not in data


def test_same_music_same_svg():
    t = scale_table()
    assert score_svg(t, split_at=3) == score_svg(t, split_at=3)
    chorale = music21.corpus.parse("bach/bwv66.6")
    assert score_svg(chorale) == score_svg(chorale)
    assert score_svg(t) != score_svg(t, split_at=3)


def test_no_network_is_used(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    assert len(notes_in(score_svg(scale_table()))) == 11


def test_long_music_is_cut_to_max_measures_with_a_warning():
    n = 40 * 4  # forty 4/4 bars of quarter notes at 120 bpm
    t = table([60 + i % 12 for i in range(n)], np.arange(n) * 0.5, [0.5] * n)
    with pytest.warns(UserWarning, match="40 measures; only the first 3 are engraved"):
        svg = score_svg(t, bpm=120, max_measures=3)
    assert len(notes_in(svg)) == 12 and measures(svg) == 3
    chorale = music21.corpus.parse("bach/bwv66.6")
    with pytest.warns(UserWarning, match="only the first 2"):
        svg = score_svg(chorale, max_measures=2)  # the pickup bar and bar 1
    assert measures(svg) == 2
    assert len(notes_in(svg)) == len(list(chorale.measures(0, 1).recurse().notes))
    # the default cut: MAX_MEASURES
    long = table([60 + i % 12 for i in range(4 * 70)], np.arange(4 * 70) * 0.5, [0.5] * 280)
    with pytest.warns(UserWarning, match=f"70 measures; only the first {MAX_MEASURES}"):
        assert measures(score_svg(long, bpm=120)) == MAX_MEASURES
    with pytest.warns(UserWarning, match="only the first 2"):  # notes_to_score cuts too
        score = notes_to_score(t, bpm=120, max_measures=2)
    assert len(list(score.recurse().notes)) == 8


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (pd.DataFrame(columns=["pitch", "start", "end"]), ValueError, "nothing to engrave"),
        (pd.DataFrame({"pitch": [60], "start": [0.0]}), ValueError, "columns"),
        (pd.DataFrame({"pitch": [128], "start": [0.0], "end": [1.0]}), ValueError, r"0\.\.127"),
        (pd.DataFrame({"pitch": [-1], "start": [0.0], "end": [1.0]}), ValueError, r"0\.\.127"),
        (pd.DataFrame({"pitch": [60.5], "start": [0.0], "end": [1.0]}), ValueError, r"0\.\.127"),
        (pd.DataFrame({"pitch": [60], "start": [np.nan], "end": [1.0]}), ValueError, "NaN"),
        (pd.DataFrame({"pitch": [60], "start": [1.0], "end": [1.0]}), ValueError, "end before"),
        (pd.DataFrame({"pitch": ["C4"], "start": [0.0], "end": [1.0]}), ValueError, "numbers"),
        ([60, 62, 64], TypeError, "note table"),
        (music21.stream.Score(), ValueError, "no notes"),
    ],
)
def test_bad_input_is_a_clear_error(bad, error, match):
    with pytest.raises(error, match=match):
        score_svg(bad)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"split_at": 99}, "split_at"), ({"split_at": 1.5}, "split_at"),
     ({"split_at": True}, "split_at"), ({"bpm": 0}, "bpm"), ({"bpm": "fast"}, "bpm"),
     ({"grid": 0}, "grid"), ({"grid": 8}, "grid"),
     ({"time_signature": "four"}, "time signature"), ({"key": "H#m"}, "key"),
     ({"max_measures": 0}, "max_measures"), ({"width": 10}, "width"), ({"scale": 0}, "scale")],
)  # fmt: skip
def test_bad_options_are_clear_errors(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        score_svg(scale_table(), **kwargs)


def test_score_options_are_for_note_tables_only():
    with pytest.raises(TypeError, match="without note-table options"):
        score_svg(music21.corpus.parse("bach/bwv66.6"), split_at=3)
