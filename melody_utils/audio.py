"""Turning MIDI into sound in the notebook (introduced in notebook 05).

Two synthesis paths, chosen automatically (:func:`audio_backend` says which):

``"fluidsynth"``
    A real General MIDI piano through FluidSynth, used when the ``pyfluidsynth``
    module, the system ``libfluidsynth`` library and a SoundFont (``.sf2``) are all
    present. The SoundFont is looked for in ``$MELODY_SOUNDFONT``, then the usual
    system folders (``/usr/share/sounds/sf2/FluidR3_GM.sf2``,
    ``/usr/share/soundfonts/*.sf2``, ...), then the small ``TimGM6mb.sf2`` that ships
    inside ``pretty_midi``. To install it:

    * Debian/Ubuntu: ``sudo apt-get install fluidsynth fluid-soundfont-gm`` (the
      library ``libfluidsynth3`` comes with it) and ``pip install pyfluidsynth``;
    * macOS: ``brew install fluid-synth`` and ``pip install pyfluidsynth``;
    * conda: ``conda install -c conda-forge fluidsynth`` and ``pip install pyfluidsynth``.

    These are optional system packages, deliberately not in ``requirements.txt``. Check
    with ``python -c "from melody_utils.audio import audio_backend; print(audio_backend())"``
    (it prints ``fluidsynth`` once all three are found); restart the Jupyter kernel after
    installing.

``"builtin"``
    A small additive synthesizer in NumPy, always available (the default in CI):
    every note gets a few harmonics that decay faster the higher they are, a piano-like
    envelope (5 ms attack, exponential decay, 80 ms release after the note ends),
    loudness from velocity, and all notes are mixed. It does not sound like a concert
    grand, but it sounds like notes.

Set ``MELODY_AUDIO_BACKEND=builtin`` (or ``fluidsynth``) to force one path.
:func:`render` never returns silence quietly: an empty MIDI is a ``ValueError`` and a
silent or non-finite waveform a ``RuntimeError``.

Loudness: both paths bring every clip to the same loudness, the RMS of the whole
waveform set to :data:`TARGET_RMS`, so that two clips sound about equally loud whatever
their peaks. (Scaling the loudest sample to a fixed level instead made a melody that
ends on a big chord quiet: the chord set the scale, and the tune before it was soft.)
A peak limiter then keeps every sample within ``±PEAK``: where a chord would go above
:data:`PEAK`, the gain is lowered smoothly around it (ramps of 20-40 ms, so the waveform
is not distorted), by at most a factor :data:`MAX_LIMITING`; music too spiky to reach
the target within that comes out quieter than the target rather than squashed.
A waveform handed to :func:`play` or :func:`wav_bytes` is written as it is (clipped to
[-1, 1]), not normalized again.
"""

from __future__ import annotations

import io
import math
import os
import sys
import warnings
import wave
from pathlib import Path

import numpy as np

#: Default sample rate (Hz): enough for a piano melody, half the size of 44.1 kHz.
SAMPLE_RATE = 22050
#: Loudness of a rendered waveform: the RMS of the whole clip (full scale = 1). Bach
#: chorales peak at about 5x their RMS, so at 0.15 they pass the limiter untouched.
TARGET_RMS = 0.15
#: Ceiling of a rendered waveform: the limiter keeps every sample within ``±PEAK``.
#: (Before loudness normalization, ``PEAK`` was the level the loudest sample was scaled to.)
PEAK = 0.99
#: Most the limiter may lower the loudest moment of a clip (4 = 12 dB) to reach TARGET_RMS.
MAX_LIMITING = 4.0
#: Longest audio rendered (seconds); longer music is cut, with a warning.
MAX_SECONDS = 600.0
BACKENDS = ("fluidsynth", "builtin")

# the built-in synthesizer's voice
_ATTACK = 0.005  # seconds
_RELEASE = 0.08  # seconds after the note ends
_HARMONICS = np.array([1.0, 0.55, 0.3, 0.18, 0.1, 0.06])  # relative amplitudes
_HARMONIC_DECAY = 1.2  # extra decay (1/s) per harmonic number
# the limiter
_LIMITER_HOLD = 0.01  # seconds: the gain is held at least this long either side of a peak
_LOUDNESS_PASSES = 6  # gain-then-limit rounds to reach TARGET_RMS (limiting costs some RMS)

_SF2_CANDIDATES = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/local/share/soundfonts/default.sf2",
    "/opt/homebrew/share/soundfonts/default.sf2",
)
_SF2_FOLDERS = (
    "/usr/share/sounds/sf2",
    "/usr/share/soundfonts",
    "/usr/local/share/soundfonts",
    "/opt/homebrew/share/soundfonts",
    "~/.local/share/soundfonts",
)


def find_soundfont() -> Path | None:
    """The General MIDI SoundFont FluidSynth would use, or None.

    Order: ``$MELODY_SOUNDFONT`` (an error if it names a missing file), the usual
    system locations, ``$CONDA_PREFIX/share/soundfonts``, then ``pretty_midi``'s own
    ``TimGM6mb.sf2``.
    """
    env = os.environ.get("MELODY_SOUNDFONT")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"MELODY_SOUNDFONT={env!r} is not a file")
        return path
    for cand in _SF2_CANDIDATES:
        if Path(cand).is_file():
            return Path(cand)
    folders = [*_SF2_FOLDERS]
    if os.environ.get("CONDA_PREFIX"):
        folders.append(str(Path(os.environ["CONDA_PREFIX"]) / "share" / "soundfonts"))
    folders.append(str(Path(sys.prefix) / "share" / "soundfonts"))
    for folder in folders:
        found = sorted(Path(folder).expanduser().glob("*.sf2"))
        if found:
            return found[0]
    try:
        import pretty_midi

        bundled = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
        if bundled.is_file():
            return bundled
    except ImportError:  # pragma: no cover - pretty_midi is a requirement
        pass
    return None


def _fluidsynth_available() -> bool:
    try:
        import fluidsynth  # noqa: F401  (pyfluidsynth; loads libfluidsynth)
    except Exception:  # ImportError, or OSError when the C library is missing
        return False
    try:
        return find_soundfont() is not None
    except FileNotFoundError:
        return False


def audio_backend() -> str:
    """``"fluidsynth"`` when FluidSynth and a SoundFont are usable, else ``"builtin"``.

    ``MELODY_AUDIO_BACKEND`` (``builtin``/``fluidsynth``/``auto``) overrides the choice;
    forcing ``fluidsynth`` where it is missing raises a RuntimeError with the fix.
    """
    forced = os.environ.get("MELODY_AUDIO_BACKEND", "auto").strip().lower()
    if forced == "builtin":
        return "builtin"
    if forced == "fluidsynth":
        if not _fluidsynth_available():
            raise RuntimeError(
                "MELODY_AUDIO_BACKEND=fluidsynth but FluidSynth is not usable: "
                "install libfluidsynth and `pip install pyfluidsynth` (see "
                "melody_utils.audio's docstring), or unset the variable"
            )
        return "fluidsynth"
    if forced not in ("", "auto"):
        raise ValueError(
            f"MELODY_AUDIO_BACKEND must be builtin, fluidsynth or auto, got {forced!r}"
        )
    return "fluidsynth" if _fluidsynth_available() else "builtin"


# --------------------------------------------------------------------------- synthesis


def _pitched_notes(pm: object) -> list:
    return [n for inst in pm.instruments if not inst.is_drum for n in inst.notes]


def _voice(pitch: int, n: int, sample_rate: int, decays: np.ndarray) -> np.ndarray:
    """``n`` samples of one held note at full velocity (attack, then free decay).

    ``decays[k - 1]`` is harmonic k's extra decay curve, shared by all pitches.
    """
    f0 = 440.0 * 2.0 ** ((pitch - 69) / 12.0)
    t = np.arange(n) / sample_rate
    # lower notes ring longer, as on a piano
    tau = float(np.clip(1.6 * 2.0 ** (-(pitch - 60) / 24.0), 0.35, 4.0))
    wave_ = np.zeros(n)
    for k, amp in enumerate(_HARMONICS, start=1):
        if k * f0 >= 0.45 * sample_rate:
            break
        # higher harmonics die away faster: bright attack, mellow tail
        wave_ += amp * decays[k - 1, :n] * np.sin(2 * np.pi * k * f0 * t)
    env = np.exp(-t / tau)
    n_att = min(n, max(1, int(_ATTACK * sample_rate)))
    env[:n_att] *= np.linspace(0.0, 1.0, n_att, endpoint=False)
    return wave_ * env


def synthesize(pm: object, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The built-in synthesizer (see module docstring); float32, loudness-normalized
    to :data:`TARGET_RMS` with peaks limited to :data:`PEAK`."""
    notes = _pitched_notes(pm)
    if not notes:
        raise ValueError("nothing to render: the MIDI holds no pitched notes")
    end = max(n.end for n in notes)
    out = np.zeros(int(math.ceil((end + _RELEASE) * sample_rate)) + 1)
    n_rel = max(1, int(_RELEASE * sample_rate))
    release = np.linspace(1.0, 0.0, n_rel)
    spans = [
        (int(round(n.start * sample_rate)), max(1, int(round((n.end - n.start) * sample_rate))))
        for n in notes
    ]
    # one voice per pitch, as long as its longest note: every note is a slice of it
    longest: dict[int, int] = {}
    for note, (_, n_on) in zip(notes, spans, strict=True):
        longest[note.pitch] = max(longest.get(note.pitch, 0), n_on + n_rel)
    t = np.arange(max(longest.values())) / sample_rate
    decays = np.exp(-_HARMONIC_DECAY * np.arange(len(_HARMONICS))[:, None] * t[None, :])
    voices = {p: _voice(p, n, sample_rate, decays) for p, n in longest.items()}
    for note, (start, n_on) in zip(notes, spans, strict=True):
        seg = voices[note.pitch][: n_on + n_rel].copy()
        seg[n_on:] *= release  # fade out after the note ends
        seg *= (max(1, min(127, int(note.velocity))) / 127.0) ** 1.5
        stop = min(len(out), start + len(seg))
        out[start:stop] += seg[: stop - start]
    return _normalize(out, sample_rate)


def _limit(wave_: np.ndarray, ceiling: float, hold: int) -> np.ndarray:
    """``wave_`` times a smooth gain <= 1 that keeps every sample within ``±ceiling``.

    The gain a sample needs is ``ceiling / |x|`` (1 where it is under the ceiling). Its
    minimum over blocks of ``hold`` samples, widened to the neighbouring blocks, is at
    most what any sample within ``hold`` needs; a moving average of ``2 * hold + 1``
    samples of that is therefore still at most what each sample needs (nothing passes
    the ceiling), and it ramps the gain down and up again over tens of milliseconds
    instead of bending single waveform peaks (which would sound distorted).
    """
    level = np.abs(wave_)
    if len(wave_) == 0 or float(level.max()) <= ceiling:
        return wave_
    need = np.minimum(1.0, ceiling / np.maximum(level, 1e-12))
    hold = max(1, int(hold))
    n_blocks = -(-len(need) // hold)
    padded = np.ones(n_blocks * hold)
    padded[: len(need)] = need
    blocks = padded.reshape(n_blocks, hold).min(axis=1)
    wide = np.minimum(blocks, np.minimum(np.r_[1.0, blocks[:-1]], np.r_[blocks[1:], 1.0]))
    held = np.repeat(wide, hold)[: len(need)]
    sums = np.cumsum(np.pad(held, (hold + 1, hold), mode="edge"))
    gain = (sums[2 * hold + 1 :] - sums[: -2 * hold - 1]) / (2 * hold + 1)
    return wave_ * np.minimum(gain, need)


def _normalize(wave_: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Bring a waveform to :data:`TARGET_RMS` (whole clip), peaks limited to :data:`PEAK`.

    The gain is found by a few rounds of "scale to the target, limit, measure again":
    limiting lowers the RMS a little, so the next round asks for a bit more gain, never
    more than :data:`MAX_LIMITING` times what would put the loudest sample at PEAK.
    """
    wave_ = np.asarray(wave_, dtype=np.float64)
    if len(wave_) == 0:
        return wave_.astype(np.float32)
    peak = float(np.abs(wave_).max())
    rms = float(np.sqrt(np.mean(wave_**2)))
    if peak == 0.0 or not math.isfinite(rms):
        return wave_.astype(np.float32)  # _check says what is wrong
    hold = int(_LIMITER_HOLD * sample_rate)
    max_gain = MAX_LIMITING * PEAK / peak
    gain = min(TARGET_RMS / rms, max_gain)
    out = _limit(wave_ * gain, PEAK, hold)
    for _ in range(_LOUDNESS_PASSES - 1):
        level = float(np.sqrt(np.mean(out**2)))
        if abs(level / TARGET_RMS - 1.0) < 0.005 or gain >= max_gain:
            break
        gain = min(gain * TARGET_RMS / level, max_gain)
        out = _limit(wave_ * gain, PEAK, hold)
    return np.clip(out, -PEAK, PEAK).astype(np.float32)


def _check(wave_: np.ndarray, backend: str) -> np.ndarray:
    if wave_.ndim != 1 or len(wave_) == 0:
        raise RuntimeError(f"{backend} rendered an empty waveform")
    if not np.isfinite(wave_).all():
        raise RuntimeError(f"{backend} rendered NaN or infinite samples")
    if float(np.abs(wave_).max()) == 0.0:
        raise RuntimeError(f"{backend} rendered silence")
    return wave_


def _trim(pm: object, max_seconds: float) -> object:
    """``pm`` itself if it ends within ``max_seconds``, else a copy cut there (with a
    warning that says how long the music really is)."""
    import copy

    end = max(n.end for n in _pitched_notes(pm))
    if end <= max_seconds:
        return pm
    warnings.warn(
        f"the music lasts {end:,.0f} s; only its first {max_seconds:g} s are rendered "
        f"(max_seconds)",
        UserWarning,
        stacklevel=3,
    )
    cut = copy.deepcopy(pm)
    for inst in cut.instruments:
        inst.notes = [n for n in inst.notes if n.start < max_seconds]
        for n in inst.notes:
            n.end = min(n.end, max_seconds)
    return cut


def render(
    pm: object,
    sample_rate: int = SAMPLE_RATE,
    backend: str | None = None,
    max_seconds: float = MAX_SECONDS,
) -> np.ndarray:
    """Synthesize a ``pretty_midi.PrettyMIDI`` to a mono float32 waveform in [-1, 1].

    Args:
        pm: the MIDI to play (drum tracks are ignored by the built-in synthesizer).
        sample_rate: samples per second.
        backend: ``"fluidsynth"``, ``"builtin"`` or None for :func:`audio_backend`.
            If FluidSynth fails at run time, a warning is issued and the built-in
            synthesizer is used.
        max_seconds: longer music is cut there, with a warning (a 10-minute clip is
            already 13 M samples at 22.05 kHz).

    Returns:
        The waveform at :data:`TARGET_RMS` loudness, every sample within ``±PEAK``
        (see "Loudness" in the module docstring).

    Raises:
        ValueError: no pitched notes (nothing to play), a bad sample rate or backend.
        RuntimeError: the synthesizer produced silence or non-finite samples.
    """
    if (
        not isinstance(sample_rate, int)
        or isinstance(sample_rate, bool)
        or not 1000 <= sample_rate <= 192000
    ):
        raise ValueError(f"sample_rate must be an integer in 1000..192000 Hz, got {sample_rate!r}")
    backend = backend or audio_backend()
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not _pitched_notes(pm):
        raise ValueError("nothing to render: the MIDI holds no pitched notes")
    if not (isinstance(max_seconds, int | float) and 0 < max_seconds < math.inf):
        raise ValueError(f"max_seconds must be a positive number, got {max_seconds!r}")
    pm = _trim(pm, max_seconds)
    if backend == "fluidsynth":
        try:
            sf2 = find_soundfont()
            if sf2 is None:
                raise RuntimeError("no SoundFont found")
            wave_ = np.asarray(
                pm.fluidsynth(fs=sample_rate, synthesizer=str(sf2)), dtype=np.float64
            )
            return _check(_normalize(wave_, sample_rate), "fluidsynth")
        except Exception as exc:
            warnings.warn(
                f"FluidSynth failed ({type(exc).__name__}: {exc}); using the built-in synthesizer",
                RuntimeWarning,
                stacklevel=2,
            )
    return _check(synthesize(pm, sample_rate), "the built-in synthesizer")


# --------------------------------------------------------------------------- output


def _as_wave(pm_or_wave: object, sample_rate: int) -> np.ndarray:
    if isinstance(pm_or_wave, np.ndarray):
        wave_ = np.asarray(pm_or_wave, dtype=np.float64)
        if wave_.ndim != 1 or len(wave_) == 0:
            raise ValueError(f"a waveform must be a non-empty 1-D array, got shape {wave_.shape}")
        if not np.isfinite(wave_).all():
            raise ValueError("the waveform holds NaN or infinite samples")
        return wave_
    return render(pm_or_wave, sample_rate).astype(np.float64)


def wav_bytes(pm_or_wave: object, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A mono 16-bit PCM WAV file, as bytes, of a PrettyMIDI (rendered) or a waveform.

    Samples outside [-1, 1] are clipped.
    """
    wave_ = _as_wave(pm_or_wave, sample_rate)
    pcm = (np.clip(wave_, -1.0, 1.0) * 32767).round().astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def write_wav(pm_or_wave: object, path: str | Path, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write a mono 16-bit PCM WAV file (stdlib ``wave``); return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(wav_bytes(pm_or_wave, sample_rate))
    return path


def play(pm_or_wave: object, sample_rate: int = SAMPLE_RATE) -> object:
    """An ``IPython.display.Audio`` player for a PrettyMIDI (rendered) or a waveform."""
    from IPython.display import Audio

    return Audio(data=wav_bytes(pm_or_wave, sample_rate))
