"""Note tables to sound, offline (notebook 01): a General MIDI SoundFont through tinysoundfont
(pretty_midi's ``TimGM6mb.sf2``, or ``MELODY_SOUNDFONT``) plays each row's ``program`` (default
piano), else a built-in synthesizer (``MELODY_AUDIO_BACKEND`` forces one). A key the instrument
cannot sound moves by octaves, with a warning; every clip is set to :data:`TARGET_RMS`."""

from __future__ import annotations

import importlib
import io
import math
import os
import warnings
import wave
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from .notes import PIANO, PROGRAM

SAMPLE_RATE = 22050
TARGET_RMS, PEAK, MAX_LIMITING = 0.15, 0.99, 4.0
#: Longest audio rendered (seconds); longer music is cut there, with a warning.
MAX_SECONDS = 600.0


def soundfont() -> Path | None:
    """The SoundFont to play with: ``MELODY_SOUNDFONT``, else pretty_midi's ``TimGM6mb.sf2``."""
    env = os.environ.get("MELODY_SOUNDFONT", "").strip()
    if env:
        if not Path(env).expanduser().is_file():
            raise FileNotFoundError(f"MELODY_SOUNDFONT={env!r} is not a file")
        return Path(env).expanduser()
    import pretty_midi

    bundled = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    return bundled if bundled.is_file() else None


def audio_backend() -> str:
    """``"soundfont"`` when tinysoundfont and a SoundFont are there, else ``"builtin"``."""
    forced = os.environ.get("MELODY_AUDIO_BACKEND", "auto").strip().lower()
    if forced not in ("auto", "", "soundfont", "builtin"):
        raise ValueError(f"MELODY_AUDIO_BACKEND must be soundfont, builtin or auto, got {forced!r}")
    if forced == "builtin":
        return "builtin"
    try:
        found = bool(importlib.import_module("tinysoundfont")) and soundfont() is not None
    except ImportError:
        found = False
    if forced == "soundfont" and not found:
        msg = "MELODY_AUDIO_BACKEND=soundfont but tinysoundfont or the SoundFont is missing: "
        raise RuntimeError(msg + "`pip install --no-deps tinysoundfont`, or unset the variable")
    return "soundfont" if found else "builtin"


def _synth(sample_rate: int, programs: list[int]) -> object:
    """A tinysoundfont synthesizer with one channel per program (channel 10 left for drums)."""
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=sample_rate)
    path = soundfont()
    try:
        sfid = synth.sfload(str(path))
    except Exception as exc:  # tinysoundfont: RuntimeError("Could not load SoundFont file")
        msg = f"cannot load the SoundFont {path.name} ({exc}): point MELODY_SOUNDFONT at a "
        raise RuntimeError(msg + ".sf2 file, or set MELODY_AUDIO_BACKEND=builtin") from None
    for channel, program in zip((c for c in range(16) if c != 9), programs, strict=False):
        synth.program_select(channel, sfid, 0, int(program))
    return synth


@cache
def _keys(sample_rate: int, program: int) -> np.ndarray:
    """Which of the 128 keys the SoundFont's ``program`` sounds (probed once)."""
    synth, sounds = _synth(sample_rate, [program]), np.zeros(128, bool)
    for key in range(128):
        synth.noteon(0, key, 100)
        sound = np.frombuffer(synth.generate(sample_rate // 50), np.float32)
        sounds[key] = np.abs(sound).max() > 1e-4
        synth.sounds_off()  # at once: a released note's tail would pass for the next key
        synth.generate(sample_rate // 50)
    return sounds


def _soundfont_render(notes: pd.DataFrame, sample_rate: int) -> np.ndarray:
    programs = sorted(set(notes[PROGRAM].tolist()))[:15]
    channel = {p: c for p, c in zip(programs, (c for c in range(16) if c != 9), strict=False)}
    synth, events = _synth(sample_rate, programs), []
    columns = [notes[c] for c in ("pitch", "start", "end", "velocity", PROGRAM)]
    for p, s, e, v, g in zip(*columns, strict=True):
        ch = channel.get(g, 0)
        events += [(round(s * sample_rate), 1, ch, p, v), (round(e * sample_rate), 0, ch, p, 0)]
    out, at = [], 0
    for when, on, ch, pitch, vel in sorted(events):  # at one sample, a note-off before a note-on
        if when > at:
            out.append(np.frombuffer(synth.generate(when - at), np.float32))
            at = when
        synth.noteon(ch, int(pitch), int(vel)) if on else synth.noteoff(ch, int(pitch))
    out.append(np.frombuffer(synth.generate(sample_rate), np.float32))  # one second of release
    return np.concatenate(out).reshape(-1, 2).mean(axis=1)


def _builtin_render(notes: pd.DataFrame, sample_rate: int) -> np.ndarray:
    """Additive synthesis: six decaying harmonics, a piano-like envelope (5 ms attack, decay,
    80 ms release), loudness from velocity."""
    release, attack = int(0.08 * sample_rate), int(0.005 * sample_rate)
    out = np.zeros(int(math.ceil(notes["end"].max() * sample_rate)) + release + 1)
    columns = [notes[c] for c in ("pitch", "start", "end", "velocity")]
    for p, s, e, v in zip(*columns, strict=True):
        n_on = max(1, round((e - s) * sample_rate))
        t = np.arange(n_on + release) / sample_rate
        f0 = 440.0 * 2.0 ** ((p - 69) / 12)
        tone = sum(
            a * np.exp(-1.2 * k * t) * np.sin(2 * np.pi * (k + 1) * f0 * t)
            for k, a in enumerate((1.0, 0.55, 0.3, 0.18, 0.1, 0.06))
            if (k + 1) * f0 < 0.45 * sample_rate
        )
        env = np.exp(-t / np.clip(1.6 * 2.0 ** (-(p - 60) / 24), 0.35, 4.0))
        env[:attack] *= np.linspace(0, 1, attack, endpoint=False)
        env[n_on:] *= np.linspace(1, 0, release)
        a, gain = round(s * sample_rate), (max(1, min(127, int(v))) / 127) ** 1.5
        out[a : a + len(t)] += (tone * env * gain)[: len(out) - a]
    return out


def _limit(x: np.ndarray, ceiling: float, hold: int) -> np.ndarray:
    """``x`` times a smooth gain <= 1 keeping every sample within ``±ceiling``: block minima of
    the gain needed, widened to neighbouring blocks, smoothed over ``2 * hold + 1`` samples."""
    need = np.minimum(1.0, ceiling / np.maximum(np.abs(x), 1e-12))
    if need.min() >= 1.0:
        return x
    blocks = np.r_[need, np.ones(-len(need) % hold)].reshape(-1, hold).min(axis=1)
    wide = np.minimum(blocks, np.minimum(np.r_[1.0, blocks[:-1]], np.r_[blocks[1:], 1.0]))
    sums = np.cumsum(np.pad(np.repeat(wide, hold)[: len(x)], (hold + 1, hold), mode="edge"))
    return x * np.minimum((sums[2 * hold + 1 :] - sums[: -2 * hold - 1]) / (2 * hold + 1), need)


def normalize(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``x`` at :data:`TARGET_RMS`, peaks limited to :data:`PEAK` (a few rounds of scale, limit,
    measure), at most :data:`MAX_LIMITING` times the gain that puts the loudest sample at PEAK."""
    x = np.asarray(x, np.float64)
    peak, rms = float(np.abs(x).max()), float(np.sqrt(np.mean(x**2)))
    if peak == 0 or not math.isfinite(rms):
        raise RuntimeError("the synthesizer rendered silence or non-finite samples")
    max_gain, gain, hold = MAX_LIMITING * PEAK / peak, TARGET_RMS / rms, int(0.01 * sample_rate)
    for _ in range(6):
        gain = min(gain, max_gain)
        out = _limit(x * gain, PEAK, hold)
        level = float(np.sqrt(np.mean(out**2)))
        if abs(level / TARGET_RMS - 1) < 0.005 or gain >= max_gain:
            break
        gain *= TARGET_RMS / level
    return np.clip(out, -PEAK, PEAK).astype(np.float32)


def render(
    notes: pd.DataFrame,
    sample_rate: int = SAMPLE_RATE,
    program: int | None = None,
    max_seconds: float = MAX_SECONDS,
) -> np.ndarray:
    """A note table as a mono float32 waveform at :data:`TARGET_RMS` loudness; ``program``
    overrides the table's column (default: piano); music past ``max_seconds`` is cut, with a
    warning. An empty table is a ValueError."""
    if not isinstance(notes, pd.DataFrame) or not {"pitch", "start", "end"} <= set(notes.columns):
        raise ValueError("render needs a note table with pitch, start and end")
    if len(notes) == 0:
        raise ValueError("nothing to render: the note table is empty")
    rate_ok = isinstance(sample_rate, int) and 1000 <= sample_rate <= 192000
    if isinstance(sample_rate, bool) or not rate_ok:
        raise ValueError(f"sample_rate must be an integer in 1000..192000 Hz, got {sample_rate!r}")
    seconds_ok = isinstance(max_seconds, int | float) and 0 < max_seconds < math.inf
    if isinstance(max_seconds, bool) or not seconds_ok:
        raise ValueError(f"max_seconds must be a positive number of seconds, got {max_seconds!r}")
    t = notes[["pitch", "start", "end"]].assign(
        velocity=notes["velocity"] if "velocity" in notes else 100,
        program=program if program is not None else notes.get(PROGRAM, PIANO),
    )
    if t["end"].max() > max_seconds:
        msg = f"the music lasts {t['end'].max():,.0f} s; only its first {max_seconds:g} s are "
        warnings.warn(msg + "rendered (max_seconds)", UserWarning, stacklevel=2)
        t = t[t["start"] < max_seconds].assign(end=lambda d: d["end"].clip(upper=max_seconds))
    backend = audio_backend()
    forced = os.environ.get("MELODY_AUDIO_BACKEND", "").strip().lower() == "builtin"
    if backend == "builtin" and not forced:
        msg = "no SoundFont synthesizer (tinysoundfont): the built-in synthesizer plays instead"
        warnings.warn(msg, UserWarning, stacklevel=2)
    builtin = 440.0 * 2 ** ((np.arange(128) - 69) / 12) < 0.45 * sample_rate
    pitch = t["pitch"].to_numpy(np.int64).copy()
    for i, (g, p) in enumerate(zip(t["program"], pitch, strict=True)):
        keys = _keys(sample_rate, int(g)) if backend == "soundfont" else builtin
        step = -12 if p >= 60 else 12  # toward the middle of the keyboard
        while not keys[p] and 0 <= p + step <= 127:
            p += step
        pitch[i] = p
    if (moved := pitch != t["pitch"].to_numpy()).any():
        keys = sorted(set(t["pitch"][moved]))
        msg = f"{int(moved.sum())} note(s) at keys {keys} have no sound on this instrument; "
        warnings.warn(
            msg + "played an octave (or more) nearer the middle", UserWarning, stacklevel=2
        )
    t = t.assign(pitch=pitch)
    synthesize = _soundfont_render if backend == "soundfont" else _builtin_render
    return normalize(synthesize(t, sample_rate), sample_rate)


def wav_bytes(notes_or_wave: pd.DataFrame | np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A mono 16-bit WAV file of a note table (rendered) or a waveform (clipped to [-1, 1])."""
    if isinstance(notes_or_wave, np.ndarray):
        x = np.asarray(notes_or_wave, np.float64)
        if x.ndim != 1 or len(x) == 0 or not np.isfinite(x).all():
            raise ValueError("a waveform must be a non-empty 1-D array of finite samples")
    else:  # float64 as a waveform passed in: the same table, the same bytes
        x = render(notes_or_wave, sample_rate).astype(np.float64)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes((np.clip(x, -1, 1) * 32767).round().astype("<i2").tobytes())
    return buf.getvalue()


def write_wav(
    notes_or_wave: pd.DataFrame | np.ndarray, path: str | Path, sample_rate: int = SAMPLE_RATE
) -> Path:
    """Write a mono 16-bit WAV file; return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(wav_bytes(notes_or_wave, sample_rate))
    return path


def play(notes_or_wave: pd.DataFrame | np.ndarray, sample_rate: int = SAMPLE_RATE) -> object:
    """An ``IPython.display.Audio`` player of a note table (rendered) or a waveform."""
    from IPython.display import Audio

    return Audio(data=wav_bytes(notes_or_wave, sample_rate))
