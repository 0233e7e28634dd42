"""Note tables and MIDI, both ways, on files written here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pretty_midi
import pytest

from melody_utils.notes import (
    DRUMS,
    BadInputError,
    check_pitch_range,
    file_stem,
    midi_to_bytes,
    note_table,
    notes_from_midi,
    notes_to_midi,
    parse_midi,
)


def test_note_table_sorts_and_derives_step_and_duration():
    t = note_table([64, 60, 67, 72], [0.5, 0.0, 0.5, 1.0], [1.0, 0.5, 0.75, 2.0], [80, 70, 0, 90])
    assert t["pitch"].tolist() == [60, 64, 67, 72]  # by start, then pitch
    assert t["step"].tolist() == [0.0, 0.5, 0.0, 0.5]
    assert t["duration"].tolist() == [0.5, 0.5, 0.25, 1.0]
    assert t["velocity"].tolist() == [70, 80, 1, 90], "velocity 0 becomes the quietest note"


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


def test_check_pitch_range_on_every_kind_of_input():
    import torch

    check_pitch_range(np.array([0, 127]))
    check_pitch_range(torch.tensor([[0, 127]]))
    check_pitch_range(np.array([], dtype=np.int64))
    check_pitch_range(60)
    for bad in (np.array([128]), torch.tensor([-1]), 200):
        with pytest.raises(ValueError, match="0..127"):
            check_pitch_range(bad, "x")


def test_notes_from_midi_errors(tmp_path, midi_writer):
    with pytest.raises(FileNotFoundError):
        notes_from_midi(tmp_path / "nope.mid")
    path = midi_writer(tmp_path / "d.mid", [36] * 5, drum=True)
    with pytest.raises(BadInputError, match="drum-only"):
        notes_from_midi(path)
    with pytest.raises(BadInputError, match="empty"):
        parse_midi(b"")
    with pytest.raises(BadInputError, match="corrupt"):
        parse_midi(b"MThd\x00\x00\x00\x06junk")
    with pytest.raises(TypeError, match="MIDI path, bytes"):
        parse_midi(12)


def test_path_bytes_and_prettymidi_give_the_same_table(tmp_path, midi_writer):
    path = midi_writer(tmp_path / "a.mid", [60 + i % 12 for i in range(40)], chord_every=4)
    a = notes_from_midi(path)
    b = notes_from_midi(path.read_bytes())
    c = notes_from_midi(pretty_midi.PrettyMIDI(str(path)))
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(a, c)


def test_drums_are_left_out_and_counted(tmp_path):
    pm = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    kit = pretty_midi.Instrument(program=0, is_drum=True)
    for i in range(10):
        piano.notes.append(pretty_midi.Note(80, 60 + i, i * 0.5, i * 0.5 + 0.4))
        kit.notes.append(pretty_midi.Note(100, 36, i * 0.5, i * 0.5 + 0.1))
    pm.instruments += [piano, kit]
    parsed = parse_midi(midi_to_bytes(pm))
    assert len(parsed.notes) == 10 and parsed.dropped == {DRUMS: 10}


def test_table_to_midi_and_back_is_exact_enough(tmp_path):
    table = note_table([60, 64, 67, 72], [0, 0, 0.5, 1.0], [0.5, 0.5, 1.0, 2.0], [90, 80, 70, 60])
    back = parse_midi(midi_to_bytes(notes_to_midi(table))).notes
    assert back["pitch"].tolist() == table["pitch"].tolist()
    assert back["velocity"].tolist() == table["velocity"].tolist()
    np.testing.assert_allclose(back[["start", "end"]], table[["start", "end"]], atol=3e-3)
    with pytest.raises(ValueError, match="columns"):
        notes_to_midi(table.drop(columns="velocity"))
    with pytest.raises(ValueError, match="0..127"):
        notes_to_midi(table.assign(pitch=[60, 64, 67, 140]))


@pytest.mark.parametrize(
    "piece_id, stem",
    [
        ("bach/bwv66.6", "bach_bwv66.6"),
        ("Maestro_10.mid", "Maestro_10"),
        ("2018/take 1.MIDI", "2018_take_1"),
        ("a/x.mid", "a_x"),
        ("../../etc/passwd", "etc_passwd"),
        ("...", "piece"),
    ],
)
def test_file_stem_is_safe_and_keeps_folders_apart(piece_id, stem):
    assert file_stem(piece_id) == stem


def test_a_key_struck_again_is_written_so_every_reader_agrees(tmp_path):
    # A long 57, then 57 struck twice while it sounds, and a unison 64 + 64.
    table = note_table(
        [57, 57, 57, 64, 64], [0.0, 0.5, 1.0, 2.0, 2.0], [3.0, 0.8, 1.5, 2.5, 2.5], [64] * 5
    )
    path = tmp_path / "restrike.mid"
    notes_to_midi(table).write(str(path))
    pm = pretty_midi.PrettyMIDI(str(path))
    got = sorted((n.pitch, round(n.start, 3), round(n.end, 3)) for n in pm.instruments[0].notes)
    # the first 57 ends where it is struck again; the last 57 keeps its own end
    assert got == [(57, 0.0, 0.5), (57, 0.5, 0.8), (57, 1.0, 1.5), (64, 2.0, 2.5), (64, 2.0, 2.5)]
    import music21

    notes = music21.converter.parse(path).recurse().notes
    m21 = [n for n in notes if n.isNote and n.pitch.midi == 57]
    assert [float(n.offset) for n in m21] == [0.0, 1.0, 2.0]  # quarter notes at 120 bpm
    assert table["end"].tolist()[0] == 3.0  # the table itself is unchanged
