"""Corpora (the embedded chorales, MIDI folders written here, the parse cache, hostile
inputs), splits by piece, the normalizer, windows and ``prepare``."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from melody_utils import data
from melody_utils.config import CONT_FEATURES, REPO_ROOT
from melody_utils.data import (
    BACH_RECORD,
    BACH_TABLE,
    MIN_NOTES,
    Corpus,
    Normalizer,
    Piece,
    Windows,
    cache_limit_bytes,
    clear_cache,
    fingerprint,
    get_piece,
    load_corpus,
    load_piece,
    make_windows,
    prepare,
    prune_cache,
    split_pieces,
    split_summary,
)
from melody_utils.notes import CHURCH_ORGAN, NOTE_COLUMNS, ZERO_LENGTH, note_table

RECORD = json.loads(BACH_RECORD.read_text())


def two_piece_folder(folder: Path, midi_writer) -> Path:
    midi_writer(folder / "a.mid", [60 + i % 12 for i in range(40)])
    midi_writer(folder / "b.mid", [50 + i % 7 for i in range(50)])
    return folder


def ids(pieces) -> list[str]:
    return [p.id for p in pieces]


# ----------------------------------------------------------------- the embedded chorales


def test_bach_is_the_embedded_table_and_matches_its_record(bach):
    assert len(bach) == RECORD["pieces"] == 410
    assert sum(map(len, bach)) == RECORD["notes"]
    assert sum(p.notes["part"].nunique() == 4 for p in bach) > 350  # four voices, mostly
    assert bach.fingerprint == RECORD["fingerprint"] == fingerprint(bach)
    assert bach.dropped == [tuple(r) for r in RECORD["dropped"]]
    assert bach.skipped == [] and bach.source == "bach" and not bach.from_cache
    assert len(set(ids(bach))) == 410 and "bach/bwv66.6" in ids(bach)
    assert 0 < bach.load_seconds < 60
    # one row per note in the table, in piece order
    with gzip.open(BACH_TABLE, "rt") as fh:
        header = fh.readline().strip().split(",")
    assert header == ["piece", *NOTE_COLUMNS, "part"]


def test_every_chorale_is_a_well_formed_note_table(bach):
    for piece in bach:
        notes = piece.notes
        assert list(notes.columns) == [*NOTE_COLUMNS, "part", "program"]
        assert len(notes) >= MIN_NOTES and piece.split is None
        assert (notes["program"] == CHURCH_ORGAN).all(), "chorales are played on the organ"
        parts = notes["part"].to_numpy()
        assert parts.min() == 0 and set(parts) == set(range(parts.max() + 1)), "parts 0..n-1"
        assert notes["pitch"].between(0, 127).all()
        start = notes["start"].to_numpy()
        assert (np.diff(start) >= 0).all()  # sorted by start, then pitch
        assert (np.diff(notes["pitch"].to_numpy())[np.diff(start) == 0] >= 0).all()
        np.testing.assert_array_equal(notes["step"].iloc[1:], np.diff(start))
        assert notes["step"].iloc[0] == 0
        np.testing.assert_array_equal(notes["duration"], notes["end"] - notes["start"])
        assert (notes["duration"] > 0).all()


def test_limit_gives_the_first_chorales(bach):
    five = load_corpus("bach", limit=5, progress=False)
    assert ids(five) == ids(bach[:5])
    for a, b in zip(five, bach[:5], strict=True):
        pd.testing.assert_frame_equal(a.notes, b.notes)
    assert five.fingerprint == fingerprint(bach[:5]) != bach.fingerprint
    # the build record's dropped notes follow their pieces
    first = ids(bach).index("bach/bwv299") + 1
    assert [d[0] for d in load_corpus("bach", limit=first, progress=False).dropped] == [
        "bach/bwv299"
    ]


def test_bwv66_6_first_notes_match_the_score():
    piece = load_piece("bach/bwv66.6")
    first = piece.notes.head(4)
    # the opening chord of BWV 66.6 as music21 reads the score: A3 (twice), E4, C#5
    assert first["start"].tolist() == [0.0] * 4
    assert first["pitch"].tolist() == [57, 57, 64, 73]
    assert (piece.notes["velocity"] == 64).all(), "score data carries no real velocity"
    with pytest.raises(KeyError, match="bwv66.6"):
        load_piece("bach/bwv66.66")


def test_without_the_table_the_chorales_are_parsed_from_music21_alike(
    bach, private_cache, tmp_path, monkeypatch
):
    """An installed package has no data/ folder: music21's files give the same pieces."""
    monkeypatch.setattr(data, "BACH_TABLE", tmp_path / "missing.csv.gz")
    with pytest.warns(UserWarning, match="is not here"):
        parsed = load_corpus("bach", limit=3, progress=False)
    assert ids(parsed) == ids(bach[:3]) and not parsed.from_cache
    for a, b in zip(parsed, bach[:3], strict=True):
        pd.testing.assert_frame_equal(a.notes, b.notes)
    assert parsed.fingerprint == fingerprint(bach[:3])
    again = load_corpus("bach", limit=3, progress=False)
    assert again.from_cache and again.fingerprint == parsed.fingerprint


def test_other_min_notes_parses_music21_and_says_why(bach, private_cache):
    with pytest.warns(UserWarning, match="min_notes=33, not 300"):
        long = load_corpus("bach", limit=4, min_notes=300, progress=False)
    want = [p for p in bach[:4] if len(p) >= 300]
    assert ids(long) == ids(want) and len(want) < 4
    assert all("too few notes" in r for _, r in long.skipped)


@pytest.mark.slow
def test_rebuilding_the_table_reproduces_the_committed_bytes(tmp_path):
    done = subprocess.run(
        [sys.executable, "tools/build_chorales.py", "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"fingerprint {RECORD['fingerprint']}" in done.stdout
    assert (tmp_path / "bach_chorales.csv.gz").read_bytes() == BACH_TABLE.read_bytes()
    assert (tmp_path / "bach_chorales.json").read_bytes() == BACH_RECORD.read_bytes()


# ----------------------------------------------------------------- MIDI folders


def test_midi_folder_with_every_kind_of_bad_file(tmp_path, private_cache, midi_writer):
    folder = tmp_path / "mine"
    midi_writer(folder / "good.mid", [60 + (i * 5) % 12 for i in range(48)], chord_every=3)
    midi_writer(folder / "sub" / "deeper" / "also_good.MIDI", [48 + i % 24 for i in range(40)])
    midi_writer(folder / "drums.mid", [36, 38, 42] * 20, drum=True)
    midi_writer(folder / "short.mid", [60, 62, 64] * 5)
    (folder / "empty.mid").write_bytes(b"")
    (folder / "corrupt.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage-not-midi")
    (folder / "notes.txt").write_text("not a MIDI file, ignored")
    (folder / "folder.mid").mkdir()  # a folder with a MIDI name is walked, not read
    corpus = load_corpus(folder, progress=False)
    assert ids(corpus) == ["good.mid", "sub/deeper/also_good.MIDI"]
    assert corpus.source == "mine/" and str(tmp_path) not in corpus.report()
    reasons = dict(corpus.skipped)
    assert set(reasons) == {"drums.mid", "short.mid", "empty.mid", "corrupt.mid"}
    assert reasons["drums.mid"].startswith("drum-only file (60 drum notes")
    assert reasons["short.mid"] == "too few notes (15 < 33)"
    assert reasons["empty.mid"] == "empty file (0 bytes)"
    assert reasons["corrupt.mid"].startswith("corrupt or unreadable MIDI")
    report = corpus.report()
    assert report.startswith("mine/: 2 pieces, 88 notes kept; 4 skipped; 0 notes dropped")
    assert "  skipped drums.mid: drum-only" in report
    assert "... and 3 more" in corpus.report(max_rows=1)
    good = get_piece(corpus, "good.mid").notes
    assert (good["step"] == 0).sum() == 1 + 47 // 3, "chord tones have step 0"
    assert (good["velocity"] == 90).all()
    # the same report comes back from the cache
    again = load_corpus(folder, progress=False)
    assert again.from_cache and again.skipped == corpus.skipped
    assert again.fingerprint == corpus.fingerprint


def test_min_notes_skips_short_pieces_and_is_part_of_the_cache_key(
    tmp_path, private_cache, midi_writer
):
    folder = two_piece_folder(tmp_path / "midi", midi_writer)  # 40 and 50 notes
    assert ids(load_corpus(folder, progress=False)) == ["a.mid", "b.mid"]
    strict = load_corpus(folder, min_notes=45, progress=False)
    assert not strict.from_cache and ids(strict) == ["b.mid"]
    assert strict.skipped == [("a.mid", "too few notes (40 < 45)")]
    with pytest.raises(ValueError, match="no usable piece in 'midi/'.*too few notes"):
        load_corpus(folder, min_notes=60, progress=False)


def test_symlinked_folders_are_followed_once_and_loops_stop(tmp_path, private_cache, midi_writer):
    outside = tmp_path / "elsewhere"
    midi_writer(outside / "linked.mid", [50 + i % 9 for i in range(40)])
    folder = tmp_path / "collection"
    own = midi_writer(folder / "own.mid", [60 + i % 7 for i in range(40)])
    (folder / "more").symlink_to(outside, target_is_directory=True)
    (folder / "loop").symlink_to(folder, target_is_directory=True)  # a loop
    (folder / "again").symlink_to(outside, target_is_directory=True)  # the same folder twice
    (folder / "sub").mkdir()
    (folder / "sub" / "up").symlink_to(folder, target_is_directory=True)  # a deeper loop
    (folder / "dangling.mid").symlink_to(tmp_path / "gone.mid")
    (folder / "own_link.mid").symlink_to(own)
    corpus = load_corpus(folder, progress=False)
    assert ids(corpus) == ["again/linked.mid", "own.mid"]
    reasons = dict(corpus.skipped)
    assert "link loop" in reasons["loop/"] and "link loop" in reasons["sub/up/"]
    assert reasons["more/"] == "already listed as again/ (a link loop?)"
    assert reasons["dangling.mid"] == "broken symbolic link"
    assert reasons["own_link.mid"] == "same file as own.mid (a link)"


def test_identical_files_are_kept_once(tmp_path, private_cache, midi_writer):
    folder = tmp_path / "dups"
    a = midi_writer(folder / "a.mid", [60 + i % 12 for i in range(40)])
    (folder / "copy_of_a.mid").write_bytes(a.read_bytes())
    midi_writer(folder / "b.mid", [50 + i % 7 for i in range(50)])
    corpus = load_corpus(folder, progress=False)
    assert ids(corpus) == ["a.mid", "b.mid"]
    assert dict(corpus.skipped)["copy_of_a.mid"] == "identical bytes to a.mid (a duplicate)"


def test_dropped_notes_are_counted_per_file(tmp_path, private_cache):
    import mido

    folder = tmp_path / "zero"
    folder.mkdir()
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    for i in range(40):  # 40 real notes
        track.append(mido.Message("note_on", note=60 + i % 12, velocity=80, time=0))
        track.append(mido.Message("note_off", note=60 + i % 12, velocity=0, time=240))
    for _ in range(3):  # 3 zero-length notes
        track.append(mido.Message("note_on", note=90, velocity=80, time=0))
        track.append(mido.Message("note_off", note=90, velocity=0, time=0))
    for _ in range(5):  # and 5 drum notes on channel 10
        track.append(mido.Message("note_on", note=36, velocity=80, time=0, channel=9))
        track.append(mido.Message("note_off", note=36, velocity=0, time=100, channel=9))
    mid.save(folder / "zeros.mid")
    corpus = load_corpus(folder, progress=False)
    assert len(corpus[0]) == 40
    assert sorted(corpus.dropped) == sorted(
        [("zeros.mid", ZERO_LENGTH, 3), ("zeros.mid", "drum notes (ignored)", 5)]
    )
    assert "8 notes dropped in 1 file(s)" in corpus.report()
    assert "dropped 3 notes from zeros.mid: zero length" in corpus.report()
    assert load_corpus(folder, progress=False).dropped == corpus.dropped  # from the cache


def test_maestro_csv_split_is_honoured(tmp_path, private_cache, midi_writer):
    folder = tmp_path / "maestro-v3.0.0"
    rows = []
    for i, split in enumerate(["train", "train", "validation", "test", "train"]):
        name = f"2018/piece{i}.midi"
        midi_writer(folder / name, [40 + (i + k) % 30 for k in range(40)], velocity=30 + 10 * i)
        rows.append({"canonical_title": f"t{i}", "split": split, "midi_filename": name})
    pd.DataFrame(rows).to_csv(folder / "maestro-v3.0.0.csv", index=False)
    (folder / "other.csv").write_text("a,b\n1,2\n")  # not an index: ignored
    corpus = load_corpus(folder, progress=False)
    assert [p.split for p in corpus] == ["train", "train", "val", "test", "train"]
    splits = split_pieces(corpus, seed=123)
    assert ids(splits["val"]) == ["2018/piece2.midi"]
    assert ids(splits["test"]) == ["2018/piece3.midi"]
    assert len(splits["train"]) == 3
    # performance MIDI keeps its velocities, unlike score data
    assert get_piece(corpus, "2018/piece4.midi").notes["velocity"].iloc[0] == 70
    # an edited CSV is a different corpus, not a stale cache hit
    rows[3]["split"] = "train"
    pd.DataFrame(rows).to_csv(folder / "maestro-v3.0.0.csv", index=False)
    edited = load_corpus(folder, progress=False)
    assert not edited.from_cache
    assert get_piece(edited, "2018/piece3.midi").split == "train"
    rows[3]["split"] = "holdout"
    pd.DataFrame(rows).to_csv(folder / "maestro-v3.0.0.csv", index=False)
    with pytest.raises(ValueError, match="unknown split 'holdout'"):
        load_corpus(folder, progress=False)


def test_empty_or_blank_source_is_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for source in ("", "   ", "\t"):
        with pytest.raises(ValueError, match="source is empty"):
            load_corpus(source, progress=False)


@pytest.mark.parametrize(
    "typed, meant", [("bahc", "bach"), ("Bach", "bach"), ("BACH", "bach"), ("esen", "essen"),
                     ("bach/", "bach"), (" Essen ", "essen")],
)  # fmt: skip
def test_mistyped_corpus_names_get_did_you_mean(tmp_path, monkeypatch, typed, meant):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=f"did you mean '{meant}'"):
        load_corpus(typed, progress=False)
    with pytest.raises(FileNotFoundError) as info:
        load_corpus("my_songs", progress=False)
    assert "neither bach, essen nor a folder" in str(info.value)
    assert "did you mean" not in str(info.value)


def test_a_local_folder_named_bach_is_reachable(tmp_path, private_cache, monkeypatch, midi_writer):
    monkeypatch.chdir(tmp_path)
    two_piece_folder(tmp_path / "bach", midi_writer)
    assert ids(load_corpus("./bach", progress=False)) == ["a.mid", "b.mid"]
    assert len(load_corpus(Path("bach"), progress=False)) == 2
    with pytest.warns(UserWarning, match="'./bach'"):
        builtin = load_corpus("bach", limit=1, progress=False)
    assert builtin[0].id.startswith("bach/")


def test_folders_without_usable_files_name_the_folder(tmp_path, private_cache, midi_writer):
    folder = tmp_path / "useless"
    midi_writer(folder / "drums.mid", [36] * 40, drum=True)
    with pytest.raises(ValueError, match="no usable piece in 'useless/'.*drum-only"):
        load_corpus(folder, progress=False)
    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "readme.txt").write_text("no MIDI here")
    with pytest.raises(FileNotFoundError, match="no .mid or .midi file under folder 'nothing'"):
        load_corpus(empty, progress=False)
    with pytest.raises(FileNotFoundError, match="neither"):
        load_corpus(tmp_path / "missing", progress=False)
    file = midi_writer(tmp_path / "single.mid", [60] * 40)
    with pytest.raises(NotADirectoryError, match="folder that holds it"):
        load_corpus(file, progress=False)


def test_bad_arguments(bach, tmp_path, midi_writer):
    with pytest.raises(ValueError, match="min_notes must be an integer >= 33, got 10"):
        load_corpus("bach", min_notes=10)
    for bad in (33.0, True, "40"):
        with pytest.raises(ValueError, match="min_notes"):
            load_corpus("bach", min_notes=bad)
    for limit in (0, -3, 2.5, True, "5"):
        with pytest.raises(ValueError, match="limit must be an integer >= 1"):
            load_corpus("bach", limit=limit)
    with pytest.raises(TypeError, match="source"):
        load_corpus(42)
    with pytest.raises(KeyError, match="close ids: .*bach/bwv66.6"):
        get_piece(bach, "bach/bwv66.7")


# ----------------------------------------------------------------- the cache


def test_cache_is_keyed_by_settings_and_content(tmp_path, private_cache, midi_writer):
    folder = two_piece_folder(tmp_path / "midi", midi_writer)
    first = load_corpus(folder, progress=False)
    assert not first.from_cache and len(first) == 2
    (entry,) = private_cache.iterdir()
    assert entry.name.startswith("midi-") and entry.suffix == ".npz"  # kind-key.npz, no path
    cached = load_corpus(folder, progress=False)
    assert cached.from_cache and cached.fingerprint == first.fingerprint
    for a, b in zip(cached, first, strict=True):
        pd.testing.assert_frame_equal(a.notes, b.notes)
    limited = load_corpus(folder, limit=1, progress=False)
    assert not limited.from_cache and len(limited) == 1
    # a changed file invalidates the cache
    midi_writer(folder / "b.mid", [50 + i % 5 for i in range(60)])
    changed = load_corpus(folder, progress=False)
    assert not changed.from_cache
    assert len(get_piece(changed, "b.mid")) == 60
    # and so does a renamed one
    (folder / "b.mid").rename(folder / "c.mid")
    assert ids(load_corpus(folder, progress=False)) == ["a.mid", "c.mid"]


def test_same_name_size_and_mtime_but_other_bytes_is_not_stale(
    tmp_path, private_cache, midi_writer
):
    """A transposed export with the same name, size and modification time."""
    a = midi_writer(tmp_path / "one" / "song.mid", [60 + i % 12 for i in range(40)])
    b = midi_writer(tmp_path / "two" / "song.mid", [62 + i % 12 for i in range(40)])
    assert a.stat().st_size == b.stat().st_size
    os.utime(b, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns))
    first = load_corpus(a.parent, progress=False)
    # the same bytes overwritten in place, with the old mtime restored
    stat = a.stat()
    a.write_bytes(b.read_bytes())
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = load_corpus(a.parent, progress=False)
    assert not again.from_cache
    np.testing.assert_array_equal(again[0].notes["pitch"], first[0].notes["pitch"] + 2)


def test_a_broken_cache_entry_is_deleted_and_parsed_again(tmp_path, private_cache, midi_writer):
    folder = two_piece_folder(tmp_path / "midi", midi_writer)
    first = load_corpus(folder, progress=False)
    (entry,) = private_cache.glob("*.npz")
    entry.write_bytes(entry.read_bytes()[:100])  # half a file
    with pytest.warns(RuntimeWarning, match="ignoring unreadable cache entry"):
        again = load_corpus(folder, progress=False)
    assert not again.from_cache and again.fingerprint == first.fingerprint
    assert load_corpus(folder, progress=False).from_cache  # stored afresh


def test_unwritable_cache_folder_warns_and_still_loads(tmp_path, monkeypatch, midi_writer):
    folder = two_piece_folder(tmp_path / "midi", midi_writer)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("MELODY_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.delenv("MELODY_NO_CACHE", raising=False)
    with pytest.warns(RuntimeWarning, match="could not write the parse cache.*MELODY_CACHE_DIR"):
        corpus = load_corpus(folder, progress=False)
    assert len(corpus) == 2 and not corpus.from_cache


def test_read_only_cache_folder_warns_and_still_loads(tmp_path, monkeypatch, midi_writer):
    folder = two_piece_folder(tmp_path / "midi", midi_writer)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    # root writes into a folder of mode 0o500; an immutable folder (chattr +i) stops it too
    immutable = os.geteuid() == 0 and shutil.which("chattr") is not None
    if immutable:
        subprocess.run(["chattr", "+i", str(ro)], check=False, capture_output=True)
    try:
        try:
            (ro / "probe").write_bytes(b"")
        except OSError:
            pass
        else:
            pytest.skip("this user can write into a read-only folder here")
        monkeypatch.setenv("MELODY_CACHE_DIR", str(ro))
        monkeypatch.delenv("MELODY_NO_CACHE", raising=False)
        with pytest.warns(RuntimeWarning, match="could not write the parse cache"):
            corpus = load_corpus(folder, progress=False)
        assert len(corpus) == 2 and not corpus.from_cache
        assert list(ro.iterdir()) == [], "no temporary file is left behind"
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(ro)], check=False, capture_output=True)
        ro.chmod(0o700)


def test_cache_can_be_turned_off(tmp_path, private_cache, monkeypatch, midi_writer):
    folder = two_piece_folder(tmp_path / "midi", midi_writer)
    monkeypatch.setenv("MELODY_NO_CACHE", "1")
    assert not load_corpus(folder, progress=False).from_cache
    assert not load_corpus(folder, progress=False).from_cache
    assert not private_cache.exists()
    monkeypatch.delenv("MELODY_NO_CACHE")
    load_corpus(folder, use_cache=False, progress=False)
    assert not private_cache.exists()


@pytest.mark.parametrize("bad", ["lots", "-1", "nan", "inf", "1e400"])
def test_a_bad_cache_size_limit_is_a_clear_error(tmp_path, private_cache, monkeypatch, bad,
                                                 midi_writer):  # fmt: skip
    monkeypatch.setenv("MELODY_CACHE_MAX_MB", bad)
    with pytest.raises(ValueError, match=f"MELODY_CACHE_MAX_MB must be a number.*{bad!r}"):
        cache_limit_bytes()
    folder = two_piece_folder(tmp_path / "midi", midi_writer)
    with pytest.raises(ValueError, match="MELODY_CACHE_MAX_MB"):  # before any parsing
        load_corpus(folder, progress=False)
    assert not private_cache.exists()


def test_cache_size_limit_default_and_set(monkeypatch):
    monkeypatch.delenv("MELODY_CACHE_MAX_MB", raising=False)
    assert cache_limit_bytes() == 256 * 2**20
    monkeypatch.setenv("MELODY_CACHE_MAX_MB", " 0.5 ")
    assert cache_limit_bytes() == 2**19
    monkeypatch.setenv("MELODY_CACHE_MAX_MB", "0")
    assert cache_limit_bytes() == 0


def test_cache_is_pruned_to_its_size_limit(tmp_path, private_cache, monkeypatch, midi_writer):
    folders = []
    for i in range(4):  # four sources of the same size
        folder = tmp_path / f"midi{i}"
        midi_writer(folder / "a.mid", [40 + i + k % 9 for k in range(45)])
        midi_writer(folder / "b.mid", [50 + i + k % 7 for k in range(45)])
        folders.append(folder)
    load_corpus(folders[0], progress=False)
    (entry,) = private_cache.glob("*.npz")
    size = entry.stat().st_size
    # room for two entries and a half: after four loads only the newest two are left
    monkeypatch.setenv("MELODY_CACHE_MAX_MB", str(2.5 * size / 2**20))
    os.utime(entry, (1e9, 1e9))  # distinct use times, oldest first
    for k, folder in enumerate(folders[1:], 1):
        before = set(private_cache.glob("*.npz"))
        load_corpus(folder, progress=False)
        (new,) = set(private_cache.glob("*.npz")) - before
        os.utime(new, (1e9 + k, 1e9 + k))
    assert len(list(private_cache.glob("*.npz"))) == 2
    assert load_corpus(folders[3], progress=False).from_cache
    assert load_corpus(folders[2], progress=False).from_cache
    assert not load_corpus(folders[0], progress=False).from_cache
    # leftover temporary files of killed processes go once they are an hour old
    stale = private_cache / ".x.npz.123.abcd.tmp"
    fresh = private_cache / ".y.npz.456.abcd.tmp"
    stale.write_bytes(b"half a file")
    fresh.write_bytes(b"being written")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    removed = prune_cache(private_cache)
    assert stale in removed and fresh not in removed and fresh.exists()
    # max_bytes=0 empties it but for what is kept
    keep = next(private_cache.glob("*.npz"))
    prune_cache(private_cache, max_bytes=0, keep=[keep])
    assert list(private_cache.glob("*.npz")) == [keep]


def test_clear_cache_removes_only_cache_files(tmp_path, private_cache, midi_writer):
    load_corpus(two_piece_folder(tmp_path / "midi", midi_writer), progress=False)
    (private_cache / "notes.txt").write_text("not ours")
    (private_cache / ".z.npz.1.ab.tmp").write_bytes(b"x")
    assert len(clear_cache()) == 2
    assert [p.name for p in private_cache.iterdir()] == ["notes.txt"]
    assert clear_cache(tmp_path / "no_such_folder") == []


def test_concurrent_saves_of_one_entry_all_succeed(tmp_path, bach):
    """Many threads writing the same cache entry at once."""
    corpus = Corpus(bach[:20], source="bach")
    path = tmp_path / "entry.npz"
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def save() -> None:
        barrier.wait()
        try:
            for _ in range(5):
                data._store(path, corpus)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=save) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [p.name for p in tmp_path.iterdir()] == ["entry.npz"]
    back = data._load_cache(path, "bach")
    assert back.from_cache and back.fingerprint == corpus.fingerprint


@pytest.mark.slow
def test_two_processes_loading_one_folder_at_once_both_succeed(tmp_path, midi_writer):
    """Both parse and store the same entry at the same moment (started together)."""
    folder = tmp_path / "midi"
    for i in range(120):
        pitches = [40 + (i + k) % 30 for k in range(60)]
        midi_writer(folder / f"p{i:03d}.mid", pitches, velocity=i + 1)  # no two alike
    go = tmp_path / "go"
    code = f"""
        import pathlib, sys, time
        from melody_utils import load_corpus
        pathlib.Path(sys.argv[1]).touch()
        deadline = time.time() + 120
        while not pathlib.Path({str(go)!r}).exists() and time.time() < deadline:
            time.sleep(0.005)
        c = load_corpus({str(folder)!r}, progress=False)
        print(len(c), c.fingerprint, c.from_cache)
    """
    env = {**os.environ, "MELODY_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("MELODY_NO_CACHE", None)
    ready = [tmp_path / f"ready{k}" for k in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), str(r)],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in ready
    ]
    try:
        deadline = time.time() + 120
        while not all(r.exists() for r in ready) and time.time() < deadline:
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(0.01)
        go.touch()
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
        assert "Warning" not in err, err[-2000:]
    prints = [out.split() for out, _ in outs]
    assert prints[0][:2] == prints[1][:2] and prints[0][0] == "120"
    cache = tmp_path / "cache"
    assert [p.name for p in cache.iterdir()] == [next(cache.glob("*.npz")).name]


# ----------------------------------------------------------------- splits


def test_split_is_by_piece_and_reproducible(bach, bach_splits):
    split_ids = {k: set(ids(v)) for k, v in bach_splits.items()}
    assert not split_ids["train"] & split_ids["val"]
    assert not split_ids["train"] & split_ids["test"]
    assert not split_ids["val"] & split_ids["test"]
    assert set().union(*split_ids.values()) == set(ids(bach))
    assert [len(v) for v in bach_splits.values()] == [328, 41, 41]
    for v in bach_splits.values():
        assert ids(v) == sorted(ids(v))
    again = split_pieces(list(reversed(bach)), seed=0)  # the order of the pieces is irrelevant
    assert {k: ids(v) for k, v in again.items()} == {k: ids(v) for k, v in bach_splits.items()}
    other = split_pieces(bach, seed=1)
    assert set(ids(other["test"])) != split_ids["test"]


def test_split_edge_cases(bach):
    three = split_pieces(bach[:3], seed=5)
    assert [len(v) for v in three.values()] == [1, 1, 1], "three pieces: one each"
    assert [len(v) for v in split_pieces(bach[:10], fractions=(1, 0, 0)).values()] == [10, 0, 0]
    for bad in ((0.5, 0.5, 0.5), (0.9, 0.1), (1.2, -0.1, -0.1)):
        with pytest.raises(ValueError, match="fractions"):
            split_pieces(bach, fractions=bad)
    with pytest.raises(ValueError, match="unique"):
        split_pieces([bach[0], bach[0], bach[1]])


def test_split_summary_counts(bach_splits):
    table = split_summary(bach_splits)
    assert list(table.index) == ["train", "val", "test", "total"]
    assert table.loc["total", "pieces"] == sum(len(v) for v in bach_splits.values()) == 410
    assert table.loc["val", "notes"] == sum(len(p) for p in bach_splits["val"])
    assert table.loc["val", "windows"] == sum(len(p) - 32 for p in bach_splits["val"])
    assert table.loc["total", "windows"] == table.loc[["train", "val", "test"], "windows"].sum()


# ----------------------------------------------------------------- the normalizer


def raw(pieces) -> np.ndarray:
    return np.concatenate([p.notes[list(CONT_FEATURES)].to_numpy() for p in pieces])


def test_normalizer_round_trip_and_json(bach_splits):
    norm = Normalizer.fit(bach_splits["train"])
    test = raw(bach_splits["test"])
    z = norm.transform(test)
    assert z.dtype == np.float32 and z.shape == test.shape
    np.testing.assert_allclose(norm.inverse_transform(z), test, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        norm.inverse_transform(torch.from_numpy(z)), test, rtol=1e-5, atol=1e-6
    )
    # fitted on train only: train features are standardised, velocity is flagged constant
    ztrain = norm.transform(raw(bach_splits["train"]))
    np.testing.assert_allclose(ztrain[:, :2].mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(ztrain[:, :2].std(0), 1, atol=1e-3)
    assert norm.degenerate == (False, False, True) and norm.std[2] == 1.0
    stored = json.loads(json.dumps(norm.to_dict()))  # as in a checkpoint's sidecar
    assert stored["features"] == ["step", "duration", "velocity"]
    back = Normalizer.from_dict(stored)
    np.testing.assert_array_equal(back.transform(test), z)
    assert back.degenerate == norm.degenerate and "step=" in repr(back)


def test_normalizer_uses_the_training_split_only():
    train = np.array([[0.0, 0.5, 60], [0.5, 0.5, 80], [0.25, 1.0, 100]])
    test = np.array([[4.0, 8.0, 20]])
    a = Normalizer.fit(train)
    b = Normalizer.fit(np.concatenate([train, test]))
    assert not np.allclose(a.mean, b.mean)
    np.testing.assert_allclose(a.mean, Normalizer._log(train, 1e-3).mean(0))


def test_normalizer_rejects_bad_input():
    norm = Normalizer.fit(np.array([[0.0, 0.5, 60], [0.5, 0.5, 80]]))
    with pytest.raises(ValueError, match="non-negative"):
        norm.transform(np.array([[-1.0, 0.5, 60]]))
    with pytest.raises(ValueError, match="finite"):
        norm.transform(np.array([[np.nan, 0.5, 60]]))
    with pytest.raises(ValueError, match="shape"):
        norm.transform(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="last dimension 3"):
        norm.inverse_transform(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="at least one piece"):
        Normalizer.fit([])
    with pytest.raises(ValueError, match="positive"):
        Normalizer([0, 0, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="features"):
        Normalizer.from_dict({**norm.to_dict(), "features": ["a", "b", "c"]})
    with pytest.raises(ValueError, match="not a normalizer description"):
        Normalizer.from_dict({"features": list(CONT_FEATURES), "mean": [0, 0, 0]})


# ----------------------------------------------------------------- windows


def test_windows_line_up_with_the_note_table(bach_splits):
    norm = Normalizer.fit(bach_splits["train"])
    pieces = bach_splits["val"][:5]
    w = make_windows(pieces, norm)
    assert w.pitch_seq.dtype == torch.int64 and w.target_pitch.dtype == torch.int64
    assert w.cont_seq.dtype == torch.float32 and w.target_cont.dtype == torch.float32
    n = sum(len(p) - 32 for p in pieces)
    assert len(w) == n and w.n_pieces == 5 and w.n_notes == sum(map(len, pieces))
    assert w.pitch_seq.shape == (n, 32) and w.cont_seq.shape == (n, 32, 3)
    assert w.target_pitch.shape == (n,) and w.target_cont.shape == (n, 3)
    # window k of the second piece: the target is really its (k+33)-th note
    first = len(pieces[0]) - 32
    notes = pieces[1].notes
    for k in (0, 5, len(notes) - 33):
        i = first + k
        assert w.pitch_seq[i].tolist() == notes["pitch"].iloc[k : k + 32].tolist()
        assert int(w.target_pitch[i]) == int(notes["pitch"].iloc[k + 32])
        back = norm.inverse_transform(w.target_cont[i].numpy())
        want = notes[list(CONT_FEATURES)].iloc[k + 32].to_numpy(np.float64)
        np.testing.assert_allclose(back, want, rtol=1e-4, atol=1e-5)
        if k < len(notes) - 33:  # the target is the last input of the next window
            assert int(w.pitch_seq[i + 1, -1]) == int(w.target_pitch[i])


def test_gathered_windows_equal_materialised_ones_for_every_index(bach_splits):
    norm = Normalizer.fit(bach_splits["train"])
    pieces = bach_splits["val"]
    w = make_windows(pieces, norm, seq_len=16)
    pitch, cont, tp, tc = [], [], [], []
    for p in pieces:  # every stride-1 window written out, piece after piece
        pp = p.notes["pitch"].to_numpy(np.int64)
        cc = norm.transform(p.notes[list(CONT_FEATURES)].to_numpy(np.float64))
        for i in range(len(pp) - 16):
            pitch.append(pp[i : i + 16])
            cont.append(cc[i : i + 16])
            tp.append(pp[i + 16])
            tc.append(cc[i + 16])
    assert len(w) == len(pitch)
    ps, cs, tps, tcs = w.batch(torch.arange(len(w)))
    assert torch.equal(ps, torch.from_numpy(np.stack(pitch)))
    assert torch.equal(cs, torch.from_numpy(np.stack(cont)))
    assert torch.equal(tps, torch.from_numpy(np.array(tp)))
    assert torch.equal(tcs, torch.from_numpy(np.stack(tc)))
    perm = torch.randperm(len(w), generator=torch.Generator().manual_seed(0))
    assert torch.equal(w.batch(perm)[0], ps[perm])
    chunks = list(w.chunks(1000))
    assert len(chunks) == -(-len(w) // 1000)
    assert torch.equal(torch.cat([c[0] for c in chunks]), ps)
    assert torch.equal(torch.cat([c[3] for c in chunks]), tcs)


def test_windows_store_each_note_once(bach_splits):
    norm = Normalizer.fit(bach_splits["train"])
    w = make_windows(bach_splits["train"], norm)
    assert w.pitch.dtype == torch.uint8 and w.cont.dtype == torch.float32
    assert w.n_notes == sum(map(len, bach_splits["train"]))
    assert w.nbytes / w.n_notes < 14  # 13 bytes a note, plus the offsets
    assert repr(w).startswith(f"Windows({len(w)} windows of 32+1 notes from 328 pieces")
    moved = w.to("cpu")
    assert torch.equal(moved.batch([0, 7])[0], w.batch([0, 7])[0])


def test_windows_from_tensors_round_trip(bach_splits):
    norm = Normalizer.fit(bach_splits["train"])
    w = make_windows(bach_splits["val"][:2], norm)
    idx = torch.tensor([0, 3, len(w) - 1])
    again = Windows.from_tensors(*w.batch(idx))
    assert len(again) == 3 and again.n_pieces == 3
    assert all(torch.equal(a, b) for a, b in zip(again.batch([0, 1, 2]), w.batch(idx), strict=True))
    with pytest.raises(ValueError, match="shapes"):
        Windows.from_tensors(*w.batch(idx)[:3], torch.zeros(3, 2))


def test_pieces_shorter_than_a_window_give_no_windows():
    notes = note_table(
        list(range(60, 80)), np.arange(20) * 0.5, np.arange(20) * 0.5 + 0.4, [80] * 20
    )
    norm = Normalizer.fit(notes[list(CONT_FEATURES)].to_numpy())
    w = make_windows([Piece("short", notes)], norm)
    assert len(w) == 0 and w.pitch_seq.shape == (0, 32)
    assert len(make_windows([Piece("short", notes)], norm, seq_len=19)) == 1


def test_windows_reject_bad_input(bach_splits):
    norm = Normalizer.fit(bach_splits["train"])
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="seq_len"):
            make_windows(bach_splits["val"], norm, seq_len=bad)
    bad = Piece("bad", bach_splits["val"][0].notes.assign(pitch=200))
    with pytest.raises(ValueError, match="0..127"):
        make_windows([bad], norm)


def test_windows_take_numpy_and_list_indices_and_refuse_bad_ones(bach_splits):
    norm = Normalizer.fit(bach_splits["train"])
    w = make_windows(bach_splits["val"][:3], norm)
    want = w.batch(torch.tensor([0, 5, len(w) - 1]))
    for idx in ([0, 5, len(w) - 1], np.array([0, 5, len(w) - 1], np.int32)):
        assert all(torch.equal(a, b) for a, b in zip(w.batch(idx), want, strict=True))
    for bad in ([-1], [len(w)], torch.tensor([0, len(w) + 7])):
        with pytest.raises(IndexError, match="out of range"):
            w.gather(bad)
    with pytest.raises(TypeError, match="integers"):
        w.gather(np.array([0.0, 1.5]))
    with pytest.raises(TypeError, match="integers"):
        w.gather(torch.tensor([True, False]))


# ----------------------------------------------------------------- prepare


def test_prepare_splits_fits_on_train_and_cuts_windows(bach):
    prep = prepare("bach", split_seed=3, limit=40, progress=False)
    assert prep.source == "bach" and len(prep.corpus) == 40
    assert {k: ids(v) for k, v in prep.splits.items()} == {
        k: ids(v) for k, v in split_pieces(bach[:40], seed=3).items()
    }
    fitted = Normalizer.fit(prep.splits["train"])
    np.testing.assert_array_equal(prep.normalizer.mean, fitted.mean)
    np.testing.assert_array_equal(prep.normalizer.std, fitted.std)
    summary = prep.summary()
    for split, w in prep.windows.items():
        assert len(w) == summary.loc[split, "windows"] > 0
    meta = prep.data_metadata()
    assert meta == {
        "source": "bach",
        "data_fingerprint": prep.corpus.fingerprint,
        "split_seed": 3,
        "split_by": "piece",
        "limit": 40,
    }
    assert json.loads(json.dumps(meta)) == meta
    by_tune = prepare("bach", split_seed=3, limit=40, progress=False, split_by="tune")
    assert by_tune.data_metadata()["split_by"] == "tune"
    assert {k: ids(v) for k, v in by_tune.splits.items()} == {
        k: ids(v) for k, v in split_pieces(bach[:40], seed=3, by="tune").items()
    }


def test_prepare_needs_three_pieces(tmp_path, private_cache, midi_writer):
    folder = two_piece_folder(tmp_path / "two", midi_writer)
    with pytest.raises(ValueError, match="too few pieces for train/val/test"):
        prepare(folder, progress=False)
