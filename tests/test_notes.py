"""Note tables and MIDI, both ways: symusic's reading checked against pretty_midi (the
reference reader) on real files, the documented rules where the two differ, hostile files,
and writing a table and reading it back."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import mido
import music21
import numpy as np
import pandas as pd
import pretty_midi
import pytest

from melody_utils.notes import (
    CHURCH_ORGAN,
    DRUMS,
    NOTE_COLUMNS,
    PIANO,
    SCORE_VELOCITY,
    ZERO_LENGTH,
    BadInputError,
    check_pitch_range,
    file_stem,
    midi_bytes,
    note_table,
    parse_midi,
    parse_score,
    write_midi,
)

PRIMITIVES = Path(music21.__file__).parent / "midi" / "testPrimitive"
#: music21's test files where the readers' rules differ (tested one by one below).
TEMPO_ON_TRACK_1, UNISONS = "test04.mid", "test09.mid"


# ----------------------------------------------------------------- helpers


def pretty_rows(data: bytes) -> np.ndarray:
    """pretty_midi's notes as rows ``part, pitch, start, end, velocity, program`` (drums
    and zero-length notes left out, as parse_midi documents), sorted."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its note about tempo events on other tracks
        pm = pretty_midi.PrettyMIDI(io.BytesIO(data))
    pitched = [i for i in pm.instruments if not i.is_drum and i.notes]
    rows = [
        (k, n.pitch, n.start, n.end, n.velocity, inst.program)
        for k, inst in enumerate(pitched)
        for n in inst.notes
        if n.end > n.start
    ]
    return sort_rows(np.array(rows, np.float64).reshape(-1, 6))


def table_rows(table: pd.DataFrame) -> np.ndarray:
    cols = ["part", "pitch", "start", "end", "velocity", "program"]
    return sort_rows(table[cols].to_numpy(np.float64))


def sort_rows(rows: np.ndarray) -> np.ndarray:
    r = np.round(rows, 4)  # the readers' times differ by float32 rounding only
    return rows[np.lexsort((r[:, 5], r[:, 4], r[:, 3], r[:, 1], r[:, 2], r[:, 0]))]


def assert_same_as_pretty_midi(data: bytes) -> pd.DataFrame:
    table = parse_midi(data).notes
    want, got = pretty_rows(data), table_rows(table)
    assert got.shape == want.shape, f"{len(got)} notes read, pretty_midi reads {len(want)}"
    # symusic gives float32 seconds: equal to float32 precision of the time
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    return table


def mido_bytes(tracks, ticks_per_beat: int = 480) -> bytes:
    """A type-1 MIDI file of tracks of ``(absolute tick, mido message)`` events."""
    mid = mido.MidiFile(ticks_per_beat=ticks_per_beat, type=1)
    for events in tracks:
        track, last = mido.MidiTrack(), 0
        for tick, msg in sorted(events, key=lambda e: e[0]):
            track.append(msg.copy(time=tick - last))
            last = tick
        mid.tracks.append(track)
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def on(note: int, velocity: int = 80, channel: int = 0) -> mido.Message:
    return mido.Message("note_on", note=note, velocity=velocity, channel=channel)


def off(note: int, channel: int = 0) -> mido.Message:
    return mido.Message("note_off", note=note, velocity=0, channel=channel)


def tempo(bpm: float) -> mido.MetaMessage:
    return mido.MetaMessage("set_tempo", tempo=round(60e6 / bpm))


def tempo_moved_to_track_0(data: bytes) -> bytes:
    """The same file with every tempo event moved into the first track (what pretty_midi
    reads), found and moved with mido."""
    mid = mido.MidiFile(file=io.BytesIO(data))
    tracks = []
    for track in mid.tracks:
        tick, events = 0, []
        for msg in track:
            tick += msg.time
            if not msg.is_meta or msg.type != "end_of_track":
                events.append((tick, msg))
        tracks.append(events)
    tempos = [e for events in tracks[1:] for e in events if e[1].type == "set_tempo"]
    tracks = [tracks[0] + tempos] + [
        [e for e in events if e[1].type != "set_tempo"] for events in tracks[1:]
    ]
    return mido_bytes(tracks, mid.ticks_per_beat)


# ----------------------------------------------------------------- note tables


def test_note_table_sorts_and_derives_step_and_duration():
    t = note_table([64, 60, 67, 72], [0.5, 0.0, 0.5, 1.0], [1.0, 0.5, 0.75, 2.0], [80, 70, 0, 90])
    assert list(t.columns) == list(NOTE_COLUMNS)
    assert t["pitch"].tolist() == [60, 64, 67, 72]  # by start, then pitch
    assert t["step"].tolist() == [0.0, 0.5, 0.0, 0.5]
    assert t["duration"].tolist() == [0.5, 0.5, 0.25, 1.0]
    assert t["velocity"].tolist() == [70, 80, 1, 90], "velocity 0 becomes the quietest note"
    # notes that cannot sound are left out; the optional columns follow their rows
    t = note_table([60, 62, 64], [0.0, 1.0, 0.5], [0.5, 1.0, 0.6], [80] * 3, [1, 2, 3], [0, 0, 19])
    assert t["pitch"].tolist() == [60, 64] and t["part"].tolist() == [1, 3]
    assert t["program"].tolist() == [0, 19]


@pytest.mark.parametrize(
    "pitch, velocity, start, match",
    [
        ([60, 130], [80, 80], [0, 1], "found 130"),
        ([-1, 60], [80, 80], [0, 1], "found -1"),
        ([60, 62], [80, 300], [0, 1], "velocity"),
        ([60, 62], [80, 80], [0, np.nan], "finite"),
    ],
)
def test_note_table_rejects_bad_values(pitch, velocity, start, match):
    with pytest.raises(BadInputError, match=match):
        note_table(pitch, start, [1, 2], velocity)


def test_note_table_needs_arrays_of_one_length():
    with pytest.raises(ValueError, match="same length"):
        note_table([60, 62], [0.0], [1.0, 2.0], [80, 80])


def test_check_pitch_range_on_every_kind_of_input():
    import torch

    check_pitch_range(np.array([0, 127]))
    check_pitch_range(torch.tensor([[0, 127]]))
    check_pitch_range(np.array([], dtype=np.int64))
    check_pitch_range(60)
    for bad in (np.array([128]), torch.tensor([-1]), 200):
        with pytest.raises(ValueError, match="0..127"):
            check_pitch_range(bad, "x")
    with pytest.raises(BadInputError, match=r"^primer must lie in 0\.\.127 .*found 300$"):
        check_pitch_range([60, 300], "primer", BadInputError)


# ----------------------------------------------------------------- reading: same as pretty_midi


@pytest.mark.parametrize(
    "name",
    sorted(p.name for p in PRIMITIVES.glob("*.mid") if p.name not in (TEMPO_ON_TRACK_1, UNISONS)),
)
def test_music21_test_files_read_as_pretty_midi_reads_them(name):
    assert_same_as_pretty_midi((PRIMITIVES / name).read_bytes())


def test_music21_test_files_are_all_there():
    """The parametrized test above must not pass by finding no file."""
    names = {p.name for p in PRIMITIVES.glob("*.mid")}
    assert len(names) >= 20 and {TEMPO_ON_TRACK_1, UNISONS, "test16.mid"} <= names


@pytest.mark.parametrize("bwv", ["bwv66.6", "bwv269", "bwv8.6"])
def test_chorales_exported_by_music21_read_as_pretty_midi_reads_them(tmp_path, bwv):
    score = music21.corpus.parse(f"bach/{bwv}")
    path = Path(score.write("midi", fp=tmp_path / f"{bwv}.mid"))
    table = assert_same_as_pretty_midi(path.read_bytes())
    assert table["part"].nunique() >= 4  # one track per voice
    ref = parse_score(score).notes
    assert set(table["pitch"]) == set(ref["pitch"])
    if bwv == "bwv66.6":  # no repeat, no extra instrument: the MIDI holds the score's notes
        cols = ["pitch", "start", "end", "part"]
        np.testing.assert_array_equal(table[cols].to_numpy(), ref[cols].to_numpy())


def test_files_written_here_read_as_pretty_midi_reads_them(tmp_path, midi_writer):
    chords = midi_writer(tmp_path / "a.mid", [60 + i % 12 for i in range(40)], chord_every=4)
    table = assert_same_as_pretty_midi(chords.read_bytes())
    assert (table["step"] == 0).sum() == 40 // 4 + 1 - 1  # the chord tones start together
    slow = midi_writer(tmp_path / "b.mid", [40, 90, 127, 0], step=1.7, duration=3.1, velocity=5)
    assert_same_as_pretty_midi(slow.read_bytes())


def test_a_multi_track_file_keeps_its_tracks_and_programs():
    pm = pretty_midi.PrettyMIDI(initial_tempo=100)
    for k, program in enumerate((CHURCH_ORGAN, 40, 33)):  # organ, violin, bass
        inst = pretty_midi.Instrument(program=program, name=f"track {k}")
        inst.notes = [
            pretty_midi.Note(60 + 10 * k, 48 + 12 * k + i % 5, 0.3 * i + 0.1 * k, 0.3 * i + 0.5)
            for i in range(20)
        ]
        pm.instruments.append(inst)
    buf = io.BytesIO()
    pm.write(buf)
    table = assert_same_as_pretty_midi(buf.getvalue())
    assert table.groupby("part")["program"].first().tolist() == [CHURCH_ORGAN, 40, 33]
    assert table.groupby("part")["velocity"].first().tolist() == [60, 70, 80]
    assert len(table) == 60


def test_path_bytes_bytearray_and_memoryview_give_the_same_table(tmp_path, midi_writer):
    path = midi_writer(tmp_path / "a.mid", [60 + i % 12 for i in range(40)], chord_every=4)
    want = parse_midi(path).notes
    data = path.read_bytes()
    for form in (str(path), data, bytearray(data), memoryview(data)):
        pd.testing.assert_frame_equal(parse_midi(form).notes, want)


# ----------------------------------------------------------------- where the readers differ


def test_a_note_off_ends_the_earliest_sounding_note_of_its_key():
    """Two overlapping C4s (first in, first out), then a note released by a note-on of
    velocity 0; at 120 bpm and 480 ticks a beat, a tick is 1/960 s."""
    data = mido_bytes(
        [
            [(0, on(60, 80)), (480, on(60, 90)), (960, off(60)), (1440, off(60))]
            + [(1600, on(64)), (2000, on(64, velocity=0))]
        ]
    )
    notes = parse_midi(data).notes
    want = [(60, 0.0, 1.0, 80), (60, 0.5, 1.5, 90), (64, 1600 / 960, 2000 / 960, 80)]
    got = notes[["pitch", "start", "end", "velocity"]].to_numpy()
    np.testing.assert_allclose(got, np.array(want), rtol=1e-6)
    # pretty_midi ends both C4s at the first note-off: the rule differs, on purpose
    pm = pretty_midi.PrettyMIDI(io.BytesIO(data))
    ends = sorted((n.start, n.end) for n in pm.instruments[0].notes if n.pitch == 60)
    assert ends == [(0.0, 1.0), (0.5, 1.0)]


def test_unisons_of_a_real_file_are_paired_first_in_first_out():
    """music21's test09.mid strikes keys twice at once; apart from the ends pretty_midi
    cuts at the first note-off, both readers agree on every note."""
    data = (PRIMITIVES / UNISONS).read_bytes()
    got, want = table_rows(parse_midi(data).notes), pretty_rows(data)
    assert got.shape == want.shape
    np.testing.assert_allclose(got[:, [0, 1, 2, 4, 5]], want[:, [0, 1, 2, 4, 5]], atol=1e-5)
    differ = np.abs(got[:, 3] - want[:, 3]) > 1e-4
    assert 0 < differ.sum() <= 10
    for part, pitch, start, end in got[differ][:, :4]:
        # another note of the key starts with it: pretty_midi ends both at the first release
        twins = want[
            (want[:, 0] == part) & (want[:, 1] == pitch) & (np.abs(want[:, 2] - start) < 1e-4)
        ]
        assert len(twins) >= 2
        assert end > twins[:, 3].min() + 1e-4, "the later release ends the second note"


def test_tempo_events_of_every_track_count():
    """The tempo (60 bpm, then 240 bpm) sits on the second track, with the notes."""
    data = mido_bytes(
        [
            [],
            [(0, tempo(60)), (0, on(60)), (480, off(60))]
            + [(960, tempo(240)), (960, on(62)), (1440, off(62))],
        ]
    )
    notes = parse_midi(data).notes
    assert notes[["pitch", "start", "end"]].values.tolist() == [[60, 0.0, 1.0], [62, 2.0, 2.25]]
    with pytest.warns(RuntimeWarning, match="non-zero tracks"):
        pm = pretty_midi.PrettyMIDI(io.BytesIO(data))  # pretty_midi: 120 bpm throughout
    assert [(n.start, n.end) for n in pm.instruments[0].notes] == [(0.0, 0.5), (1.0, 1.5)]
    # with the tempo moved to the first track, pretty_midi reads what symusic read
    assert_same_as_pretty_midi(tempo_moved_to_track_0(data))


def test_a_real_file_with_its_tempo_map_on_track_1():
    """music21's test04.mid: 96 tempo events on its second track, 6000 notes on 16 others."""
    data = (PRIMITIVES / TEMPO_ON_TRACK_1).read_bytes()
    # pitch, start, end, velocity (its tracks change program mid-way, at the tick of a note:
    # the readers file a few such notes under different programs, so those are not compared)
    got = table_rows(parse_midi(data).notes)[:, 1:5]
    got = got[np.lexsort(np.round(got, 4).T[::-1])]
    for reference, same in ((tempo_moved_to_track_0(data), True), (data, False)):
        want = pretty_rows(reference)[:, 1:5]
        want = want[np.lexsort(np.round(want, 4).T[::-1])]
        assert np.allclose(got, want, rtol=1e-6, atol=1e-5) == same


def test_zero_length_notes_are_dropped_and_counted():
    data = mido_bytes(
        [
            [(480 * i, on(60 + i)) for i in range(5)]
            + [(480 * i + 240, off(60 + i)) for i in range(5)]
            + [(3000, on(90)), (3000, off(90)), (3100, on(91)), (3100, off(91))]
        ]
    )
    parsed = parse_midi(data)
    assert parsed.notes["pitch"].tolist() == [60, 61, 62, 63, 64]
    assert parsed.dropped == {ZERO_LENGTH: 2}
    # a real one: music21's test16.mid holds one
    assert parse_midi((PRIMITIVES / "test16.mid").read_bytes()).dropped == {ZERO_LENGTH: 1}
    only_zero = mido_bytes([[(0, on(60)), (0, off(60))]])
    with pytest.raises(BadInputError, match="zero length"):
        parse_midi(only_zero)


def test_a_note_never_released_is_left_out_as_by_pretty_midi():
    data = mido_bytes(
        [[(0, on(60)), (480, off(60)), (480, on(62)), (960, on(64)), (1440, off(64))]]
    )
    assert parse_midi(data).notes["pitch"].tolist() == [60, 64]
    assert sorted(
        n.pitch for n in pretty_midi.PrettyMIDI(io.BytesIO(data)).instruments[0].notes
    ) == [60, 64]


def test_drums_are_left_out_and_counted(tmp_path, midi_writer):
    pm = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    kit = pretty_midi.Instrument(program=0, is_drum=True)
    for i in range(10):
        piano.notes.append(pretty_midi.Note(80, 60 + i, i * 0.5, i * 0.5 + 0.4))
        kit.notes.append(pretty_midi.Note(100, 36, i * 0.5, i * 0.5 + 0.1))
        kit.notes.append(pretty_midi.Note(100, 42, i * 0.5 + 0.25, i * 0.5 + 0.3))
    pm.instruments += [kit, piano]
    buf = io.BytesIO()
    pm.write(buf)
    parsed = parse_midi(buf.getvalue())
    assert parsed.notes["pitch"].tolist() == list(range(60, 70))
    assert parsed.dropped == {DRUMS: 20}
    assert set(parsed.notes["part"]) == {0}, "parts count the pitched tracks only"
    drums = midi_writer(tmp_path / "d.mid", [36] * 5, drum=True)
    with pytest.raises(BadInputError, match=r"drum-only file \(5 drum notes"):
        parse_midi(drums)


# ----------------------------------------------------------------- hostile files


def test_missing_empty_and_non_midi_inputs_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mid"):
        parse_midi(tmp_path / "nope.mid")
    with pytest.raises(IsADirectoryError, match="folder"):
        parse_midi(tmp_path)
    with pytest.raises(BadInputError, match="empty"):
        parse_midi(b"")
    (tmp_path / "empty.mid").write_bytes(b"")
    with pytest.raises(BadInputError, match="empty"):
        parse_midi(tmp_path / "empty.mid")
    text = tmp_path / "readme.mid"
    text.write_text("This is not a MIDI file, just text with a .mid name.\n")
    with pytest.raises(BadInputError, match="corrupt or unreadable MIDI"):
        parse_midi(text)
    with pytest.raises(BadInputError, match="corrupt"):
        parse_midi(b"MThd\x00\x00\x00\x06junk")
    with pytest.raises(TypeError, match="MIDI path or its bytes"):
        parse_midi(12)
    header_only = mido_bytes([])
    with pytest.raises(BadInputError, match="no notes"):
        parse_midi(header_only)


def test_every_truncation_of_a_real_file_is_a_table_or_a_bad_input_error():
    data = (PRIMITIVES / "test11.mid").read_bytes()  # three tracks, four tempo changes
    full = parse_midi(data).notes
    outcomes = []
    for cut in range(len(data)):
        try:
            notes = parse_midi(data[:cut]).notes
        except BadInputError as exc:
            assert str(exc) and "\n" not in str(exc)
            outcomes.append("error")
        else:  # a file cut in its last bytes can still be read: never more notes than whole
            assert len(notes) <= len(full)
            outcomes.append("table")
    assert outcomes.count("error") > 0.9 * len(data)


def test_garbage_bytes_are_a_bad_input_error_never_a_crash():
    rng = np.random.default_rng(0)
    good = bytearray((PRIMITIVES / "test02.mid").read_bytes())
    for i in range(300):
        if i % 3 == 0:
            data = rng.integers(0, 256, rng.integers(1, 300)).astype(np.uint8).tobytes()
        elif i % 3 == 1:
            data = b"MThd" + rng.integers(0, 256, rng.integers(1, 300)).astype(np.uint8).tobytes()
        else:  # a real file with some bytes flipped
            data = bytearray(good)
            for at in rng.integers(0, len(data), 8):
                data[at] = int(rng.integers(0, 256))
        try:
            parse_midi(bytes(data))
        except BadInputError:
            pass


# ----------------------------------------------------------------- writing and reading back


def chorale_like_table() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    start = np.sort(rng.choice(np.arange(0, 20, 0.125), 80))
    end = start + rng.choice([0.125, 0.25, 0.5, 1.0], 80)
    return note_table(rng.integers(36, 96, 80), start, end, rng.integers(20, 127, 80))


def restruck(table: pd.DataFrame) -> pd.DataFrame:
    """What the written file must hold: every same-pitch overlap cut where the next starts."""
    t = table.copy()
    for _, rows in t.groupby("pitch"):
        idx = rows.sort_values("start").index
        for a, b in zip(idx[:-1], idx[1:], strict=True):
            if t.at[a, "start"] < t.at[b, "start"] < t.at[a, "end"]:
                t.at[a, "end"] = t.at[b, "start"]
    return t


def test_table_to_midi_and_back(tmp_path):
    table = chorale_like_table()
    want = restruck(table)
    assert (want["end"] != table["end"]).any(), "the table must exercise the restrike rule"
    path = write_midi(table, tmp_path / "out" / "t.mid")
    assert path.read_bytes() == midi_bytes(table)
    for back in (parse_midi(path).notes, parse_midi(midi_bytes(table)).notes):
        assert back["pitch"].tolist() == want["pitch"].tolist()
        assert back["velocity"].tolist() == want["velocity"].tolist()
        # a tick at 120 bpm and 480 ticks a beat is 1/960 s
        np.testing.assert_allclose(back[["start", "end"]], want[["start", "end"]], atol=0.6e-3)
        assert (back["program"] == PIANO).all()
    assert_same_as_pretty_midi(midi_bytes(table))


def test_programs_are_written_one_track_each():
    table = chorale_like_table()
    table["program"] = np.where(table["pitch"] >= 60, 40, CHURCH_ORGAN)
    back = parse_midi(midi_bytes(table)).notes
    assert back["program"].tolist() == table["program"].tolist()
    assert back.groupby("program")["part"].nunique().tolist() == [1, 1]
    organ = parse_midi(midi_bytes(table, program=CHURCH_ORGAN)).notes
    assert set(organ["program"]) == {CHURCH_ORGAN}
    assert set(parse_midi(midi_bytes(table.drop(columns="program"))).notes["program"]) == {PIANO}


def test_writing_rejects_bad_tables():
    table = chorale_like_table()
    with pytest.raises(ValueError, match="columns"):
        midi_bytes(table.drop(columns="velocity"))
    with pytest.raises(ValueError, match="0..127"):
        midi_bytes(table.assign(pitch=np.r_[table["pitch"].iloc[:-1], 140]))
    with pytest.raises(ValueError, match="program"):
        midi_bytes(table, program=128)


def test_a_key_struck_again_is_written_so_every_reader_agrees(tmp_path):
    # A long 57, then 57 struck twice while it sounds, and a unison 64 + 64.
    table = note_table(
        [57, 57, 57, 64, 64], [0.0, 0.5, 1.0, 2.0, 2.0], [3.0, 0.8, 1.5, 2.5, 2.5], [64] * 5
    )
    path = write_midi(table, tmp_path / "restrike.mid")
    pm = pretty_midi.PrettyMIDI(str(path))
    got = sorted((n.pitch, round(n.start, 3), round(n.end, 3)) for n in pm.instruments[0].notes)
    # the first 57 ends where it is struck again; the last 57 keeps its own end
    assert got == [(57, 0.0, 0.5), (57, 0.5, 0.8), (57, 1.0, 1.5), (64, 2.0, 2.5), (64, 2.0, 2.5)]
    back = parse_midi(path).notes
    read = zip(back["pitch"], back["start"].round(3), back["end"].round(3), strict=True)
    assert sorted(read) == got
    notes = music21.converter.parse(path).recurse().notes
    m21 = [n for n in notes if n.isNote and n.pitch.midi == 57]
    assert [float(n.offset) for n in m21] == [0.0, 1.0, 2.0]  # quarter notes at 120 bpm
    assert table["end"].tolist()[0] == 3.0  # the table itself is unchanged


# ----------------------------------------------------------------- scores and names


def test_parse_score_reads_parts_ties_and_grace_notes():
    parsed = parse_score(music21.corpus.parse("bach/bwv66.6"))
    notes = parsed.notes
    assert notes.head(4)["pitch"].tolist() == [57, 57, 64, 73]  # the opening chord
    assert sorted(notes.head(4)["part"]) == [0, 1, 2, 3] and parsed.dropped == {}
    assert (notes["velocity"] == SCORE_VELOCITY).all()
    grace = parse_score(music21.corpus.parse("bach/bwv315"))
    assert grace.dropped == {"zero length (grace notes)": 1}
    with pytest.raises(BadInputError, match="no pitched notes"):
        parse_score(music21.stream.Score())
    tied = music21.converter.parse("tinyNotation: 4/4 c2~ c2 d4")
    t = parse_score(tied).notes
    assert t["pitch"].tolist() == [60, 62] and t["duration"].tolist() == [2.0, 0.5]


@pytest.mark.parametrize(
    "piece_id, stem",
    [
        ("bach/bwv66.6", "bach_bwv66.6"),
        ("Maestro_10.mid", "Maestro_10"),
        ("my_midi/a/Maestro_10.mid", "my_midi_a_Maestro_10"),
        ("2018/take 1.MIDI", "2018_take_1"),
        ("a/x.mid", "a_x"),
        ("a\\x.mid", "a_x"),
        ("../../etc/passwd", "etc_passwd"),
        ("...", "piece"),
        ("", "piece"),
    ],
)
def test_file_stem_is_safe_and_keeps_folders_apart(piece_id, stem):
    assert file_stem(piece_id) == stem
