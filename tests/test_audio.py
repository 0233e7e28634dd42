"""Audio: the built-in synthesizer sounds like the notes asked for, every clip comes out
equally loud without clipping, WAV files round-trip.

The built-in path is the one CI uses; the FluidSynth path's normalization is tested with
a stand-in waveform everywhere, and the real FluidSynth only where it is installed.
"""

from __future__ import annotations

import base64
import io
import warnings
import wave

import numpy as np
import pretty_midi
import pytest

from melody_utils import audio
from melody_utils.audio import (
    MAX_LIMITING,
    PEAK,
    TARGET_RMS,
    audio_backend,
    find_soundfont,
    play,
    render,
    wav_bytes,
    write_wav,
)

SR = 16000


def midi(*notes: tuple[int, float, float, int], drum: bool = False) -> pretty_midi.PrettyMIDI:
    """A PrettyMIDI of ``(pitch, start, end, velocity)`` notes on one piano track."""
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=0, is_drum=drum)
    inst.notes = [pretty_midi.Note(velocity=v, pitch=p, start=s, end=e) for p, s, e, v in notes]
    pm.instruments.append(inst)
    return pm


def spectrum(x: np.ndarray, sr: int = SR) -> tuple[np.ndarray, np.ndarray]:
    mag = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.fft.rfftfreq(len(x), 1 / sr), mag


def level(freqs: np.ndarray, mag: np.ndarray, f: float, width: float = 3.0) -> float:
    return float(mag[np.abs(freqs - f) <= width].max())


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2)))


MELODY = (60, 62, 64, 65, 67, 65, 64, 62, 60, 64, 67, 72)


def melody(velocity: int = 80) -> list[tuple[int, float, float, int]]:
    """Twelve half-second notes, one at a time."""
    return [(p, 0.5 * i, 0.5 * i + 0.45, velocity) for i, p in enumerate(MELODY)]


def big_chord(start: float) -> list[tuple[int, float, float, int]]:
    """Ten notes over four octaves, fortissimo, held two seconds."""
    return [(p, start, start + 2.0, 127) for p in (36, 43, 48, 52, 55, 60, 64, 67, 72, 76)]


@pytest.fixture
def builtin(monkeypatch):
    monkeypatch.setenv("MELODY_AUDIO_BACKEND", "builtin")


def test_backend_is_one_of_two():
    assert audio_backend() in audio.BACKENDS


def test_single_note_has_its_fundamental_and_harmonics(builtin):
    w = render(midi((69, 0.0, 1.0, 100)), SR)  # A4 = 440 Hz
    assert w.dtype == np.float32 and w.ndim == 1
    assert np.isfinite(w).all()
    assert rms(w) == pytest.approx(TARGET_RMS, rel=0.01)  # loudness-normalized
    assert np.abs(w).max() <= PEAK <= 1.0
    assert len(w) == pytest.approx(SR * (1.0 + audio._RELEASE), abs=2)
    freqs, mag = spectrum(w[:SR])
    assert abs(freqs[mag.argmax()] - 440.0) < 2.0  # loudest component is the note
    assert level(freqs, mag, 440) > 20 * level(freqs, mag, 466.16)  # not the next semitone
    assert level(freqs, mag, 880) > 0.05 * level(freqs, mag, 440)  # harmonics: not a sine
    assert level(freqs, mag, 880) > 10 * level(freqs, mag, 660)


def test_chord_has_every_fundamental(builtin):
    chord = [60, 64, 67]  # C4 E4 G4
    w = render(midi(*[(p, 0.0, 1.0, 90) for p in chord]), SR)
    freqs, mag = spectrum(w[:SR])
    f0s = [440.0 * 2 ** ((p - 69) / 12) for p in chord]
    quiet = level(freqs, mag, 300.0)  # between the notes
    for f in f0s:
        assert level(freqs, mag, f) > 10 * quiet


def test_envelope_has_no_clicks_and_decays(builtin):
    w = render(midi((57, 0.5, 1.5, 100)), SR)
    assert np.abs(w[: int(0.5 * SR)]).max() == 0  # silence before the note
    onset = int(0.5 * SR)
    assert abs(w[onset]) < 1e-3  # attack starts from zero
    assert np.abs(w[-10:]).max() < 1e-3  # release ends at zero
    early = np.sqrt(np.mean(w[onset : onset + SR // 5] ** 2))
    late = np.sqrt(np.mean(w[onset + int(0.8 * SR) : onset + SR] ** 2))
    assert early > 1.5 * late  # a struck note dies away


def test_velocity_sets_loudness(builtin):
    w = render(midi((60, 0.0, 0.5, 30), (60, 1.0, 1.5, 120)), SR)
    soft = np.sqrt(np.mean(w[: SR // 2] ** 2))
    loud = np.sqrt(np.mean(w[SR : SR + SR // 2] ** 2))
    assert soft > 0 and loud > 3 * soft


def test_many_overlapping_notes_do_not_clip(builtin):
    notes = [(p, 0.01 * i, 2.0, 127) for i, p in enumerate(range(40, 90))]
    w = render(midi(*notes), SR)
    assert np.abs(w).max() <= 1.0 and np.isfinite(w).all()


def test_every_clip_comes_out_equally_loud(builtin, monkeypatch):
    """A soft tune that ends on a loud chord used to be scaled by the chord's peak."""
    plain = render(midi(*melody(80)), SR)
    loud_end = render(midi(*melody(40), *big_chord(6.0)), SR)
    for w in (plain, loud_end):
        assert rms(w) == pytest.approx(TARGET_RMS, rel=0.1)
        assert np.abs(w).max() <= PEAK and np.isfinite(w).all()
    assert rms(loud_end) == pytest.approx(rms(plain), rel=0.1)
    assert np.abs(plain).max() < 0.8 * PEAK  # a plain tune needs no limiting ...
    assert np.abs(loud_end).max() == pytest.approx(PEAK, abs=1e-3)  # ... the chord does
    # the tune before the chord is louder than scaling the peak to 0.9 had left it
    monkeypatch.setattr(audio, "_normalize", lambda w, sr: w.astype(np.float32))
    mix = render(midi(*melody(40), *big_chord(6.0)), SR)
    peak_scaled = mix * (0.9 / np.abs(mix).max())
    assert rms(loud_end[: 6 * SR]) > 2 * rms(peak_scaled[: 6 * SR])


def test_limiter_lowers_the_gain_smoothly_and_only_near_peaks():
    sr = 8000
    t = np.arange(2 * sr) / sr
    x = 0.5 * np.sin(2 * np.pi * 220 * t)
    x[sr : sr + sr // 10] *= 4.0  # a 0.1 s burst at twice full scale
    hold = int(audio._LIMITER_HOLD * sr)
    y = audio._limit(x, PEAK, hold)
    assert np.abs(y).max() <= PEAK
    gain = np.divide(y, x, out=np.ones_like(x), where=np.abs(x) > 1e-3)
    assert np.abs(np.diff(gain[np.abs(x) > 1e-3])).max() < 0.02  # a ramp, not a kink
    far = np.r_[: sr - 3 * hold, sr + sr // 10 + 3 * hold : 2 * sr]
    np.testing.assert_array_equal(y[far], x[far])  # untouched away from the burst
    assert np.abs(y[sr : sr + sr // 10]).max() > 0.95 * PEAK  # the burst stays loud
    np.testing.assert_array_equal(audio._limit(x / 4, PEAK, hold), x / 4)


def test_spiky_music_is_limited_at_most_max_limiting(builtin, monkeypatch):
    """A whisper-soft tune and one short fortissimo chord: reaching TARGET_RMS would mean
    lowering the chord 30-fold; the limiter lowers it MAX_LIMITING-fold at most."""
    pm = midi(*melody(10), *[(p, 6.0, 6.3, v) for p, _, _, v in big_chord(6.0)])
    w = render(pm, SR)
    assert np.abs(w).max() <= PEAK
    assert rms(w) < 0.9 * TARGET_RMS  # quieter than the target rather than squashed flat
    monkeypatch.setattr(audio, "_normalize", lambda w, sr: w.astype(np.float32))
    mix = render(pm, SR)
    peak_scaled = mix * (PEAK / np.abs(mix).max())
    tune = slice(0, 6 * SR)
    # the tune is raised above peak scaling, by no more than MAX_LIMITING
    assert 2 < rms(w[tune]) / rms(peak_scaled[tune]) <= MAX_LIMITING * 1.001


def test_silent_or_broken_synthesis_is_an_error(builtin, monkeypatch):
    pm = midi((60, 0.0, 0.5, 100))
    monkeypatch.setattr(audio, "_voice", lambda pitch, n, *_: np.zeros(n))
    with pytest.raises(RuntimeError, match="silence"):
        render(pm, SR)
    monkeypatch.setattr(audio, "_voice", lambda pitch, n, *_: np.full(n, np.nan))
    with pytest.raises(RuntimeError, match="NaN"):
        render(pm, SR)


def test_nothing_to_play_is_an_error(builtin):
    with pytest.raises(ValueError, match="no pitched notes"):
        render(pretty_midi.PrettyMIDI(), SR)
    with pytest.raises(ValueError, match="no pitched notes"):
        render(midi((36, 0.0, 0.5, 100), drum=True), SR)


def test_bad_settings_are_errors(builtin, monkeypatch):
    pm = midi((60, 0.0, 0.5, 100))
    with pytest.raises(ValueError, match="sample_rate"):
        render(pm, 0)
    with pytest.raises(ValueError, match="backend"):
        render(pm, SR, backend="speaker")
    with pytest.raises(ValueError, match="NaN"):
        wav_bytes(np.array([0.0, np.nan]), SR)
    monkeypatch.setenv("MELODY_AUDIO_BACKEND", "gramophone")
    with pytest.raises(ValueError, match="MELODY_AUDIO_BACKEND"):
        audio_backend()


def read_wav(data: bytes) -> tuple[wave._wave_params, np.ndarray]:
    with wave.open(io.BytesIO(data), "rb") as r:
        params = r.getparams()
        frames = np.frombuffer(r.readframes(params.nframes), dtype="<i2")
    return params, frames


def test_wav_written_and_read_back(builtin, tmp_path):
    pm = midi((64, 0.0, 0.4, 100), (67, 0.4, 0.8, 80))
    w = render(pm, SR)
    path = write_wav(pm, tmp_path / "out" / "tune.wav", SR)
    assert path.exists()
    with wave.open(str(path), "rb") as r:
        assert (r.getnchannels(), r.getsampwidth(), r.getframerate()) == (1, 2, SR)
        assert r.getnframes() == len(w)
        pcm = np.frombuffer(r.readframes(r.getnframes()), dtype="<i2")
    np.testing.assert_allclose(pcm / 32767, w, atol=1 / 32767)
    # a waveform works as well as a MIDI, and gives the same bytes
    assert write_wav(w, tmp_path / "w.wav", SR).read_bytes() == path.read_bytes()
    params, frames = read_wav(wav_bytes(np.array([2.0, -2.0, 0.5]), 8000))
    assert frames.tolist() == [32767, -32767, 16384]  # clipped, not wrapped
    assert params.framerate == 8000


def test_play_gives_an_audio_player(builtin):
    player = play(midi((72, 0.0, 0.3, 100)), SR)
    assert player.data[:4] == b"RIFF"
    html = player._repr_html_()
    b64 = html.split("data:audio/wav;base64,")[1].split('"')[0]
    params, frames = read_wav(base64.b64decode(b64))
    assert params.framerate == SR and np.abs(frames).max() > 1000


def test_soundfont_lookup_honours_env(monkeypatch, tmp_path):
    sf2 = tmp_path / "piano.sf2"
    sf2.write_bytes(b"RIFF")
    monkeypatch.setenv("MELODY_SOUNDFONT", str(sf2))
    assert find_soundfont() == sf2
    monkeypatch.setenv("MELODY_SOUNDFONT", str(tmp_path / "missing.sf2"))
    with pytest.raises(FileNotFoundError, match="MELODY_SOUNDFONT"):
        find_soundfont()
    monkeypatch.setenv("MELODY_AUDIO_BACKEND", "builtin")
    assert audio_backend() == "builtin"


def test_forcing_missing_fluidsynth_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(audio, "_fluidsynth_available", lambda: False)
    monkeypatch.setenv("MELODY_AUDIO_BACKEND", "fluidsynth")
    with pytest.raises(RuntimeError, match="pyfluidsynth"):
        audio_backend()
    monkeypatch.setenv("MELODY_AUDIO_BACKEND", "auto")
    assert audio_backend() == "builtin"


def test_failing_fluidsynth_falls_back_loudly(monkeypatch):
    pm = midi((69, 0.0, 0.5, 100))

    def broken(*_args, **_kwargs):
        raise OSError("libfluidsynth.so.3: cannot open shared object file")

    monkeypatch.setattr(pm, "fluidsynth", broken)
    with pytest.warns(RuntimeWarning, match="built-in synthesizer"):
        w = render(pm, SR, backend="fluidsynth")
    assert np.abs(w).max() > 0


def test_fluidsynth_output_is_loudness_normalized_too(monkeypatch):
    """The FluidSynth path's waveform (a stand-in here) gets the same RMS and limiter."""
    monkeypatch.setattr(audio, "find_soundfont", lambda: "piano.sf2")
    pm = midi((69, 0.0, 1.0, 100))
    t = np.arange(2 * SR) / SR
    synth = 0.02 * np.sin(2 * np.pi * 440 * t)
    synth[-SR // 4 :] *= 40  # soft, then a loud ending
    monkeypatch.setattr(pm, "fluidsynth", lambda fs, synthesizer: synth.copy())
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to the built-in one
        w = render(pm, SR, backend="fluidsynth")
    assert len(w) == len(synth)  # FluidSynth's waveform, not the built-in synthesizer's
    assert rms(w) == pytest.approx(TARGET_RMS, rel=0.1) and np.abs(w).max() <= PEAK


@pytest.mark.parametrize(("bad", "why"), [(np.zeros(SR), "silence"), (np.full(SR, np.nan), "NaN")])
def test_silent_or_nan_fluidsynth_falls_back_with_the_reason(monkeypatch, bad, why):
    monkeypatch.setattr(audio, "find_soundfont", lambda: "piano.sf2")
    pm = midi((69, 0.0, 0.5, 100))
    monkeypatch.setattr(pm, "fluidsynth", lambda fs, synthesizer: bad.copy())
    with pytest.warns(RuntimeWarning, match=f"{why}.*built-in synthesizer"):
        w = render(pm, SR, backend="fluidsynth")
    assert rms(w) == pytest.approx(TARGET_RMS, rel=0.01)


@pytest.mark.skipif(not audio._fluidsynth_available(), reason="FluidSynth is not installed")
def test_fluidsynth_renders_a_piano(monkeypatch):
    """Where FluidSynth and a SoundFont are installed, they are what plays."""
    monkeypatch.delenv("MELODY_AUDIO_BACKEND", raising=False)
    assert audio_backend() == "fluidsynth"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback would warn
        w = render(midi((69, 0.0, 1.0, 100)), 22050)
        tune = render(midi(*melody(40), *big_chord(6.0)), 22050)
    assert w.dtype == np.float32 and np.isfinite(w).all() and 0 < np.abs(w).max() <= PEAK
    freqs, mag = spectrum(w[:22050], 22050)
    assert level(freqs, mag, 440) > 5 * level(freqs, mag, 466.16)
    assert rms(tune) == pytest.approx(TARGET_RMS, rel=0.1) and np.abs(tune).max() <= PEAK


def test_long_music_is_cut_to_max_seconds_with_a_warning(builtin):
    """A primer with a 600-second gap once rendered 13 M samples."""
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0)
    inst.notes += [
        pretty_midi.Note(80, 60, 0.0, 0.5),
        pretty_midi.Note(80, 64, 600.0, 600.5),  # ten minutes later
    ]
    pm.instruments.append(inst)
    with pytest.warns(UserWarning, match="lasts 600 s; only its first 20 s"):
        wave_ = render(pm, 8000, max_seconds=20)
    assert len(wave_) <= 8000 * 21
    assert len(render(pm, 8000, max_seconds=700)) > 8000 * 600  # under the cap: all of it
    assert len(pm.instruments[0].notes) == 2, "the caller's MIDI is not changed"
    with pytest.raises(ValueError, match="max_seconds"):
        render(pm, 8000, max_seconds=0)
