"""The data pipeline on the real Bach corpus and on MIDI files written here."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
import torch

from melody_utils.data import (
    MIN_NOTES,
    BadInputError,
    Normalizer,
    Piece,
    get_piece,
    load_corpus,
    load_piece,
    make_windows,
    note_table,
    notes_from_midi,
    split_pieces,
    split_summary,
)

COLUMNS = ["pitch", "start", "end", "step", "duration", "velocity"]


def test_bach_corpus_is_complete_and_well_formed(bach):
    assert len(bach) >= 350, "music21 ships about 400 Bach chorales"
    assert bach.skipped == [] or all(len(s) == 2 for s in bach.skipped)
    ids = [p.id for p in bach]
    assert len(set(ids)) == len(ids)
    assert "bach/bwv66.6" in ids
    for piece in bach[:50]:
        notes = piece.notes
        assert list(notes.columns) == COLUMNS
        assert len(notes) >= MIN_NOTES
        assert notes["pitch"].between(0, 127).all()
        # sorted by start, then pitch
        assert (np.diff(notes["start"]) >= 0).all()
        same = np.diff(notes["start"]) == 0
        assert (np.diff(notes["pitch"])[same] >= 0).all()
        np.testing.assert_allclose(notes["step"].iloc[1:], np.diff(notes["start"]))
        assert notes["step"].iloc[0] == 0
        np.testing.assert_allclose(notes["duration"], notes["end"] - notes["start"])
        assert (notes["duration"] > 0).all()


def test_bwv66_6_first_notes_match_the_score():
    piece = load_piece("bach/bwv66.6")
    first = piece.notes.head(4)
    # the opening chord of BWV 66.6 as music21 reads the score: A3 (twice), E4, C#5
    assert first["start"].tolist() == [0.0] * 4
    assert first["pitch"].tolist() == [57, 57, 64, 73]
    assert (piece.notes["velocity"] == 64).all(), "score data carries no real velocity"


def test_cache_makes_the_second_load_fast(bach, tmp_path, monkeypatch):
    again = load_corpus("bach", progress=False)
    assert again.from_cache
    t0 = time.perf_counter()
    again = load_corpus("bach", progress=False)
    assert time.perf_counter() - t0 < 1.0
    assert [p.id for p in again] == [p.id for p in bach]
    pd.testing.assert_frame_equal(again[7].notes, bach[7].notes)


def test_cache_is_keyed_by_settings(tmp_path, monkeypatch, midi_writer):
    monkeypatch.setenv("MELODY_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "midi"
    midi_writer(folder / "a.mid", [60 + i % 12 for i in range(40)])
    midi_writer(folder / "b.mid", [50 + i % 7 for i in range(50)])
    first = load_corpus(folder, progress=False)
    assert not first.from_cache and len(first) == 2
    assert load_corpus(folder, progress=False).from_cache
    limited = load_corpus(folder, limit=1, progress=False)
    assert not limited.from_cache and len(limited) == 1
    # a changed file invalidates the cache
    midi_writer(folder / "b.mid", [50 + i % 5 for i in range(60)])
    changed = load_corpus(folder, progress=False)
    assert not changed.from_cache
    assert len(get_piece(changed, "b.mid")) == 60


def test_split_is_by_piece_and_reproducible(bach, bach_splits):
    ids = {k: {p.id for p in v} for k, v in bach_splits.items()}
    assert not ids["train"] & ids["val"]
    assert not ids["train"] & ids["test"]
    assert not ids["val"] & ids["test"]
    assert set().union(*ids.values()) == {p.id for p in bach}
    assert len(ids["train"]) > len(ids["val"]) > 0 and len(ids["test"]) > 0
    again = split_pieces(list(reversed(bach)), seed=0)
    assert {k: [p.id for p in v] for k, v in again.items()} == {
        k: [p.id for p in v] for k, v in bach_splits.items()
    }
    other = split_pieces(bach, seed=1)
    assert {p.id for p in other["test"]} != ids["test"]


def test_split_rejects_bad_fractions(bach):
    with pytest.raises(ValueError, match="fractions"):
        split_pieces(bach, fractions=(0.5, 0.5, 0.5))


def test_normalizer_round_trip_and_json(bach_splits, tmp_path):
    norm = Normalizer.fit(bach_splits["train"])
    raw = np.concatenate(
        [p.notes[["step", "duration", "velocity"]].to_numpy() for p in bach_splits["test"]]
    )
    z = norm.transform(raw)
    assert z.dtype == np.float32
    back = norm.inverse_transform(z)
    np.testing.assert_allclose(back, raw, rtol=1e-5, atol=1e-6)
    # fitted on train only: train features are standardised, velocity is flagged constant
    ztrain = norm.transform(
        np.concatenate(
            [p.notes[["step", "duration", "velocity"]].to_numpy() for p in bach_splits["train"]]
        )
    )
    np.testing.assert_allclose(ztrain[:, :2].mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(ztrain[:, :2].std(0), 1, atol=1e-3)
    assert norm.degenerate == (False, False, True)
    norm.save(tmp_path / "norm.json")
    loaded = Normalizer.load(tmp_path / "norm.json")
    np.testing.assert_array_equal(loaded.transform(raw), z)
    assert json.loads((tmp_path / "norm.json").read_text())["features"] == [
        "step",
        "duration",
        "velocity",
    ]


def test_normalizer_uses_training_split_only():
    train = np.array([[0.0, 0.5, 60], [0.5, 0.5, 80], [0.25, 1.0, 100]])
    test = np.array([[4.0, 8.0, 20]])
    a = Normalizer.fit(train)
    b = Normalizer.fit(np.concatenate([train, test]))
    assert not np.allclose(a.mean, b.mean)
    with pytest.raises(ValueError, match="non-negative"):
        a.transform(np.array([[-1.0, 0.5, 60]]))


def test_windows_line_up_with_the_note_table(bach_splits):
    norm = Normalizer.fit(bach_splits["train"])
    pieces = bach_splits["val"][:5]
    w = make_windows(pieces, norm)
    assert w.pitch_seq.dtype == torch.int64 and w.target_pitch.dtype == torch.int64
    assert w.cont_seq.dtype == torch.float32 and w.target_cont.dtype == torch.float32
    n = sum(len(p) - 32 for p in pieces)
    assert w.pitch_seq.shape == (n, 32) and w.cont_seq.shape == (n, 32, 3)
    assert w.target_pitch.shape == (n,) and w.target_cont.shape == (n, 3)
    # window k of the second piece: the target is really its (k+33)-th note
    first = len(pieces[0]) - 32
    notes = pieces[1].notes
    for k in (0, 5, len(notes) - 33):
        i = first + k
        assert w.pitch_seq[i].tolist() == notes["pitch"].iloc[k : k + 32].tolist()
        assert int(w.target_pitch[i]) == int(notes["pitch"].iloc[k + 32])
        raw = norm.inverse_transform(w.target_cont[i].numpy())
        np.testing.assert_allclose(
            raw,
            notes[["step", "duration", "velocity"]].iloc[k + 32].to_numpy(),
            rtol=1e-4,
            atol=1e-5,
        )


def test_split_summary_counts(bach_splits):
    table = split_summary(bach_splits)
    assert table.loc["total", "pieces"] == sum(len(v) for v in bach_splits.values())
    assert table.loc["val", "windows"] == sum(len(p) - 32 for p in bach_splits["val"])


# ----------------------------------------------------------------- MIDI folders and bad input


def test_midi_folder_with_every_kind_of_bad_file(tmp_path, monkeypatch, midi_writer):
    monkeypatch.setenv("MELODY_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "mine"
    midi_writer(folder / "good.mid", [60 + (i * 5) % 12 for i in range(48)], chord_every=3)
    midi_writer(folder / "sub" / "also_good.midi", [48 + i % 24 for i in range(40)])
    midi_writer(folder / "drums.mid", [36, 38, 42] * 20, drum=True)
    midi_writer(folder / "short.mid", [60, 62, 64] * 5)
    (folder / "empty.mid").write_bytes(b"")
    (folder / "corrupt.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage-not-midi")
    (folder / "notes.txt").write_text("not a MIDI file, ignored")
    corpus = load_corpus(folder, progress=False)
    assert sorted(p.id for p in corpus) == ["good.mid", "sub/also_good.midi"]
    reasons = dict(corpus.skipped)
    assert set(reasons) == {"drums.mid", "short.mid", "empty.mid", "corrupt.mid"}
    assert "drum-only" in reasons["drums.mid"]
    assert "too few notes (15 < 33)" == reasons["short.mid"]
    assert "empty" in reasons["empty.mid"]
    assert "corrupt" in reasons["corrupt.mid"]
    report = corpus.report()
    assert "4 skipped" in report and "drums.mid" in report
    good = get_piece(corpus, "good.mid").notes
    assert (good["step"] == 0).sum() >= 15, "chord tones have step 0"
    assert (good["velocity"] == 90).all()


def test_folder_without_usable_files_names_the_folder(tmp_path, midi_writer):
    folder = tmp_path / "useless"
    midi_writer(folder / "drums.mid", [36] * 40, drum=True)
    with pytest.raises(ValueError, match="useless"):
        load_corpus(folder, use_cache=False, progress=False)
    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="nothing"):
        load_corpus(empty, progress=False)
    with pytest.raises(FileNotFoundError, match="neither"):
        load_corpus(tmp_path / "missing", progress=False)


def test_maestro_csv_split_is_honoured(tmp_path, monkeypatch, midi_writer):
    monkeypatch.setenv("MELODY_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "maestro-v3.0.0"
    rows = []
    for i, split in enumerate(["train", "train", "validation", "test", "train"]):
        name = f"2018/piece{i}.midi"
        midi_writer(folder / name, [40 + (i + k) % 30 for k in range(40)], velocity=30 + 10 * i)
        rows.append(
            {
                "canonical_composer": "X",
                "canonical_title": f"t{i}",
                "split": split,
                "year": 2018,
                "midi_filename": name,
                "audio_filename": "",
                "duration": 1,
            }
        )
    pd.DataFrame(rows).to_csv(folder / "maestro-v3.0.0.csv", index=False)
    corpus = load_corpus(folder, progress=False)
    splits = split_pieces(corpus, seed=123)
    assert [p.id for p in splits["val"]] == ["2018/piece2.midi"]
    assert [p.id for p in splits["test"]] == ["2018/piece3.midi"]
    assert len(splits["train"]) == 3
    # performance MIDI keeps its velocities, unlike score data
    assert get_piece(corpus, "2018/piece4.midi").notes["velocity"].iloc[0] == 70


def test_note_table_rejects_out_of_range_pitch():
    with pytest.raises(BadInputError, match="out of range"):
        note_table([60, 130], [0, 1], [1, 2], [80, 80])


def test_notes_from_midi_errors(tmp_path, midi_writer):
    with pytest.raises(FileNotFoundError):
        notes_from_midi(tmp_path / "nope.mid")
    path = midi_writer(tmp_path / "d.mid", [36] * 5, drum=True)
    with pytest.raises(BadInputError, match="drum-only"):
        notes_from_midi(path)


def test_pieces_shorter_than_a_window_give_no_windows():
    notes = note_table(
        list(range(60, 80)), np.arange(20) * 0.5, np.arange(20) * 0.5 + 0.4, [80] * 20
    )
    norm = Normalizer.fit(notes[["step", "duration", "velocity"]].to_numpy())
    w = make_windows([Piece("short", notes)], norm)
    assert w.pitch_seq.shape == (0, 32)


def test_bad_arguments(bach):
    with pytest.raises(ValueError, match="min_notes"):
        load_corpus("bach", min_notes=10)
    with pytest.raises(KeyError, match="close ids"):
        get_piece(bach, "bach/bwv66.7")
