"""Shared fixtures: the real Bach corpus (read once from data/), MIDI writers, a private
parse cache and one torch thread."""

from __future__ import annotations

from pathlib import Path

import pretty_midi
import pytest

from melody_utils.data import load_corpus, split_pieces


@pytest.fixture(scope="session")
def bach():
    """The 410 embedded Bach chorales (data/bach_chorales.csv.gz: the real thing, not a mock)."""
    return load_corpus("bach", progress=False)


@pytest.fixture(scope="session")
def bach_splits(bach):
    return split_pieces(bach, seed=0)


def write_midi(
    path: Path,
    pitches,
    *,
    step: float = 0.25,
    duration: float = 0.2,
    velocity: int = 90,
    drum: bool = False,
    chord_every: int = 0,
    program: int = 0,
) -> Path:
    """Write a real MIDI file with pretty_midi: one note per pitch, ``step`` seconds apart.

    ``chord_every=k`` puts every k-th note at the same start as the previous one.
    """
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=program, is_drum=drum)
    t = 0.0
    for i, p in enumerate(pitches):
        if not (chord_every and i and i % chord_every == 0):
            t = i * step if not chord_every else t + (step if i else 0.0)
        inst.notes.append(
            pretty_midi.Note(velocity=velocity, pitch=int(p), start=t, end=t + duration)
        )
    pm.instruments.append(inst)
    path.parent.mkdir(parents=True, exist_ok=True)
    pm.write(str(path))
    return path


@pytest.fixture
def midi_writer():
    """:func:`write_midi`: ``midi_writer(path, pitches, step=, duration=, velocity=, ...)``."""
    return write_midi


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """An empty parse-cache folder of this test only (``MELODY_CACHE_DIR``), caching on."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("MELODY_CACHE_DIR", str(folder))
    monkeypatch.delenv("MELODY_NO_CACHE", raising=False)
    monkeypatch.delenv("MELODY_CACHE_MAX_MB", raising=False)
    return folder


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module on one torch thread, then restore the setting.

    Tiny generation batches gain nothing from more threads, and on a shared 2-core
    machine a second OpenMP thread makes every step many times slower.
    """
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
