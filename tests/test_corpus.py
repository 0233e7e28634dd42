"""Corpora: the real Bach corpus, MIDI folders written here, the cache, hostile inputs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from melody_utils.corpus import (
    MIN_NOTES,
    Corpus,
    _save_cache,
    get_piece,
    load_corpus,
    load_piece,
    prune_cache,
)
from melody_utils.data import split_pieces
from melody_utils.notes import NOTE_COLUMNS

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private, empty cache folder for one test."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("MELODY_CACHE_DIR", str(folder))
    monkeypatch.delenv("MELODY_NO_CACHE", raising=False)
    return folder


def two_piece_folder(folder: Path, midi_writer) -> Path:
    midi_writer(folder / "a.mid", [60 + i % 12 for i in range(40)])
    midi_writer(folder / "b.mid", [50 + i % 7 for i in range(50)])
    return folder


def test_bach_corpus_is_complete_and_well_formed(bach):
    assert len(bach) >= 350, "music21 ships about 400 Bach chorales"
    assert bach.skipped == [] or all(len(s) == 2 for s in bach.skipped)
    ids = [p.id for p in bach]
    assert len(set(ids)) == len(ids)
    assert "bach/bwv66.6" in ids
    for piece in bach[:50]:
        notes = piece.notes
        # scores carry the part (0 = top staff) of every note
        assert list(notes.columns) == [*NOTE_COLUMNS, "part"]
        assert notes["part"].between(0, 15).all() and notes["part"].nunique() >= 2
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
    assert bach.source == "bach" and len(bach.fingerprint) == 16


def test_bwv66_6_first_notes_match_the_score():
    piece = load_piece("bach/bwv66.6")
    first = piece.notes.head(4)
    # the opening chord of BWV 66.6 as music21 reads the score: A3 (twice), E4, C#5
    assert first["start"].tolist() == [0.0] * 4
    assert first["pitch"].tolist() == [57, 57, 64, 73]
    assert (piece.notes["velocity"] == 64).all(), "score data carries no real velocity"
    with pytest.raises(KeyError, match="bwv66.6"):
        load_piece("bach/bwv66.66")


def test_second_load_comes_from_the_cache_and_is_equal(bach):
    again = load_corpus("bach", progress=False)
    assert again.from_cache
    assert [p.id for p in again] == [p.id for p in bach]
    pd.testing.assert_frame_equal(again[7].notes, bach[7].notes)
    assert again.fingerprint == bach.fingerprint


# ----------------------------------------------------------------- the cache


def test_cache_is_keyed_by_settings_and_content(tmp_path, cache, midi_writer):
    folder = two_piece_folder(tmp_path / "midi", midi_writer)
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


def test_same_name_size_and_mtime_but_other_bytes_is_not_stale(tmp_path, cache, midi_writer):
    """A transposed export with the same name, size and modification time."""
    a = midi_writer(tmp_path / "one" / "song.mid", [60 + i % 12 for i in range(40)])
    b = midi_writer(tmp_path / "two" / "song.mid", [62 + i % 12 for i in range(40)])
    assert a.stat().st_size == b.stat().st_size
    os.utime(b, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns))
    first = load_corpus(a.parent, progress=False)
    second = load_corpus(b.parent, progress=False)
    assert not second.from_cache
    np.testing.assert_array_equal(second[0].notes["pitch"], first[0].notes["pitch"] + 2)
    # and the same bytes overwritten in place, with the old mtime restored
    stat = a.stat()
    a.write_bytes(b.read_bytes())
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = load_corpus(a.parent, progress=False)
    np.testing.assert_array_equal(again[0].notes["pitch"], second[0].notes["pitch"])


def test_unwritable_cache_folder_warns_and_still_loads(tmp_path, monkeypatch, midi_writer):
    folder = two_piece_folder(tmp_path / "midi", midi_writer)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("MELODY_CACHE_DIR", str(blocker / "cache"))
    with pytest.warns(RuntimeWarning, match="could not write the parse cache"):
        corpus = load_corpus(folder, progress=False)
    assert len(corpus) == 2 and not corpus.from_cache


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only folder")
def test_read_only_cache_folder_warns_and_still_loads(tmp_path, monkeypatch, midi_writer):
    folder = two_piece_folder(tmp_path / "midi", midi_writer)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    monkeypatch.setenv("MELODY_CACHE_DIR", str(ro))
    try:
        with pytest.warns(RuntimeWarning, match="could not write"):
            assert len(load_corpus(folder, progress=False)) == 2
    finally:
        ro.chmod(0o700)


def test_cache_can_be_turned_off(tmp_path, cache, monkeypatch, midi_writer):
    folder = two_piece_folder(tmp_path / "midi", midi_writer)
    monkeypatch.setenv("MELODY_NO_CACHE", "1")
    assert not load_corpus(folder, progress=False).from_cache
    assert not load_corpus(folder, progress=False).from_cache
    assert not cache.exists() or not list(cache.iterdir())
    monkeypatch.delenv("MELODY_NO_CACHE")
    load_corpus(folder, use_cache=False, progress=False)
    assert not cache.exists() or not list(cache.iterdir())


def test_cache_is_pruned_to_its_size_limit(tmp_path, cache, monkeypatch, midi_writer):
    folders = []
    for i in range(4):  # four sources of the same size
        folder = tmp_path / f"midi{i}"
        midi_writer(folder / "a.mid", [40 + i + k % 9 for k in range(45)])
        midi_writer(folder / "b.mid", [50 + i + k % 7 for k in range(45)])
        folders.append(folder)
    load_corpus(folders[0], progress=False)
    (entry,) = cache.glob("*.npz")
    size = entry.stat().st_size
    # room for two entries and a half: after four loads only the newest two are left
    monkeypatch.setenv("MELODY_CACHE_MAX_MB", str(2.5 * size / 2**20))
    for folder in folders[1:]:
        time.sleep(0.02)  # distinct modification times
        load_corpus(folder, progress=False)
    assert len(list(cache.glob("*.npz"))) == 2
    assert load_corpus(folders[3], progress=False).from_cache
    assert load_corpus(folders[2], progress=False).from_cache
    assert not load_corpus(folders[0], progress=False).from_cache
    # leftover temporary files of killed processes go once they are old
    stale = cache / ".x.npz.123.abcd.tmp"
    stale.write_bytes(b"half a file")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    assert stale in prune_cache(cache)


def test_concurrent_saves_of_one_entry_all_succeed(tmp_path, bach):
    """Many threads writing the same cache entry at once (it used one temp name)."""
    corpus = Corpus(bach[:20], source="bach")
    path = tmp_path / "entry.npz"
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def save() -> None:
        barrier.wait()
        try:
            for _ in range(5):
                _save_cache(path, corpus)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=save) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert list(tmp_path.glob("*.tmp")) == [] and list(tmp_path.glob(".*")) == []


def _python(code: str, env: dict, pipes: bool = True) -> subprocess.Popen:
    out = subprocess.PIPE if pipes else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=out,
        stderr=out,
        text=True,
    )


def test_two_processes_loading_one_folder_at_once_both_succeed(tmp_path, midi_writer):
    folder = tmp_path / "midi"
    for i in range(24):
        midi_writer(folder / f"p{i:02d}.mid", [40 + (i + k) % 30 for k in range(60)])
    code = f"""
        from melody_utils import load_corpus
        c = load_corpus({str(folder)!r}, progress=False)
        print(len(c), c.fingerprint)
    """
    env = {"MELODY_CACHE_DIR": str(tmp_path / "cache"), "MELODY_WORKERS": "1"}
    procs = [_python(code, env) for _ in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    assert len({out for out, _ in outs}) == 1 and outs[0][0].startswith("24 ")


def test_parser_workers_die_with_a_killed_parent(tmp_path):
    psutil = pytest.importorskip("psutil")
    code = """
        from melody_utils import load_corpus
        load_corpus("bach", limit=60, progress=False)
    """
    env = {"MELODY_CACHE_DIR": str(tmp_path / "cache"), "MELODY_WORKERS": "2"}
    parent = _python(code, env, pipes=False)
    try:
        deadline = time.time() + 60
        workers = []
        while time.time() < deadline and len(workers) < 2:
            workers = psutil.Process(parent.pid).children(recursive=True)
            time.sleep(0.05)
        assert len(workers) >= 2, "the load did not start its parser processes"
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        gone, alive = psutil.wait_procs(workers, timeout=10)
        assert alive == [], f"{len(alive)} parser processes outlived their parent"
    finally:
        for proc in psutil.Process().children(recursive=True):
            proc.kill()


# ----------------------------------------------------------------- sources


def test_empty_or_blank_source_is_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for source in ("", "   ", "\t"):
        with pytest.raises(ValueError, match="source is empty"):
            load_corpus(source, progress=False)


@pytest.mark.parametrize("typed", ["bahc", "Bach", "BACH", "esen", "bach/"])
def test_mistyped_corpus_names_get_did_you_mean(tmp_path, monkeypatch, typed):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="did you mean"):
        load_corpus(typed, progress=False)


def test_local_folder_named_bach_is_reachable(tmp_path, cache, monkeypatch, midi_writer):
    monkeypatch.chdir(tmp_path)
    two_piece_folder(tmp_path / "bach", midi_writer)
    local = load_corpus("./bach", progress=False)
    assert sorted(p.id for p in local) == ["a.mid", "b.mid"]
    assert len(load_corpus(Path("bach"), progress=False)) == 2
    with pytest.warns(UserWarning, match="'./bach'"):
        builtin = load_corpus("bach", limit=1, progress=False)
    assert builtin[0].id.startswith("bach/")


def test_midi_folder_with_every_kind_of_bad_file(tmp_path, cache, midi_writer):
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
    # the same report comes back from the cache
    again = load_corpus(folder, progress=False)
    assert again.from_cache and again.skipped == corpus.skipped


def test_symlinked_subfolders_are_followed_once(tmp_path, cache, midi_writer):
    outside = tmp_path / "elsewhere"
    midi_writer(outside / "linked.mid", [50 + i % 9 for i in range(40)])
    folder = tmp_path / "collection"
    midi_writer(folder / "own.mid", [60 + i % 7 for i in range(40)])
    (folder / "more").symlink_to(outside, target_is_directory=True)
    (folder / "loop").symlink_to(folder, target_is_directory=True)  # a loop
    (folder / "again").symlink_to(outside, target_is_directory=True)  # the same folder twice
    (folder / "dangling.mid").symlink_to(tmp_path / "gone.mid")
    corpus = load_corpus(folder, progress=False)
    assert sorted(p.id for p in corpus) == ["again/linked.mid", "own.mid"]
    reasons = dict(corpus.skipped)
    assert "loop" in reasons["loop/"]
    assert "already listed as again/" in reasons["more/"]
    assert reasons["dangling.mid"] == "broken symbolic link"


def test_identical_files_are_kept_once(tmp_path, cache, midi_writer):
    folder = tmp_path / "dups"
    a = midi_writer(folder / "a.mid", [60 + i % 12 for i in range(40)])
    (folder / "copy_of_a.mid").write_bytes(a.read_bytes())
    midi_writer(folder / "b.mid", [50 + i % 7 for i in range(50)])
    corpus = load_corpus(folder, progress=False)
    assert sorted(p.id for p in corpus) == ["a.mid", "b.mid"]
    assert "identical bytes to a.mid" in dict(corpus.skipped)["copy_of_a.mid"]


def test_zero_length_notes_are_counted_per_file(tmp_path, cache):
    import mido

    folder = tmp_path / "zero"
    folder.mkdir()
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    for i in range(40):  # 40 real notes
        track.append(mido.Message("note_on", note=60 + i % 12, velocity=80, time=0))
        track.append(mido.Message("note_off", note=60 + i % 12, velocity=0, time=240))
    for _ in range(3):  # 3 zero-length notes on a pitch never released otherwise
        track.append(mido.Message("note_on", note=90, velocity=80, time=0))
        track.append(mido.Message("note_off", note=90, velocity=0, time=0))
    mid.save(folder / "zeros.mid")
    corpus = load_corpus(folder, progress=False)
    assert len(corpus[0]) == 40
    assert corpus.dropped == [
        ("zeros.mid", "zero length or never released (dropped by the MIDI parser)", 3)
    ]
    assert "dropped 3 notes from zeros.mid" in corpus.report()


def test_library_warnings_name_the_file(tmp_path, cache):
    import mido

    folder = tmp_path / "warn"
    folder.mkdir()
    mid = mido.MidiFile(ticks_per_beat=480)
    first, second = mido.MidiTrack(), mido.MidiTrack()
    mid.tracks += [first, second]
    second.append(mido.MetaMessage("set_tempo", tempo=400000, time=0))  # on track 1
    for i in range(40):
        second.append(mido.Message("note_on", note=60 + i % 12, velocity=80, time=0))
        second.append(mido.Message("note_off", note=60 + i % 12, velocity=0, time=240))
    mid.save(folder / "tempo_on_track_two.mid")
    with pytest.warns(RuntimeWarning, match="tempo_on_track_two.mid: "):
        corpus = load_corpus(folder, progress=False)
    assert corpus.warnings and corpus.warnings[0][0] == "tempo_on_track_two.mid"


def test_folder_without_usable_files_names_the_folder(tmp_path, cache, midi_writer):
    folder = tmp_path / "useless"
    midi_writer(folder / "drums.mid", [36] * 40, drum=True)
    with pytest.raises(ValueError, match="useless"):
        load_corpus(folder, progress=False)
    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="nothing"):
        load_corpus(empty, progress=False)
    with pytest.raises(FileNotFoundError, match="neither"):
        load_corpus(tmp_path / "missing", progress=False)
    file = midi_writer(tmp_path / "single.mid", [60] * 40)
    with pytest.raises(NotADirectoryError, match="folder that holds it"):
        load_corpus(file, progress=False)


def test_maestro_csv_split_is_honoured(tmp_path, cache, midi_writer):
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
    # an edited CSV is a different corpus, not a stale cache hit
    rows[3]["split"] = "train"
    pd.DataFrame(rows).to_csv(folder / "maestro-v3.0.0.csv", index=False)
    edited = load_corpus(folder, progress=False)
    assert not edited.from_cache
    assert get_piece(edited, "2018/piece3.midi").split == "train"


def test_bad_arguments(bach):
    with pytest.raises(ValueError, match="min_notes"):
        load_corpus("bach", min_notes=10)
    for limit in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="limit"):
            load_corpus("bach", limit=limit)
    with pytest.raises(TypeError, match="source"):
        load_corpus(42)
    with pytest.raises(KeyError, match="close ids"):
        get_piece(bach, "bach/bwv66.7")


def test_clear_cache_removes_only_cache_files(tmp_path, cache, midi_writer):
    from melody_utils.corpus import clear_cache

    load_corpus(two_piece_folder(tmp_path / "midi", midi_writer), progress=False)
    (cache / "notes.txt").write_text("not ours")
    assert len(clear_cache()) == 1
    assert [p.name for p in cache.iterdir()] == ["notes.txt"]
