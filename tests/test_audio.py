"""Audio: note tables sound like the notes asked for (SoundFont and built-in synthesizer),
the fallback when tinysoundfont is missing, the settings, loudness, keys out of range,
the instruments, WAV files and the notebook player."""

from __future__ import annotations

import base64
import io
import sys
import warnings
import wave

import numpy as np
import pandas as pd
import pytest

from melody_utils import audio
from melody_utils.audio import (
    MAX_LIMITING,
    PEAK,
    SAMPLE_RATE,
    TARGET_RMS,
    audio_backend,
    normalize,
    play,
    render,
    soundfont,
    wav_bytes,
    write_wav,
)
from melody_utils.notes import CHURCH_ORGAN, PIANO, note_table

SR = 16000
BACKENDS = ("soundfont", "builtin")
NOTICE = "no SoundFont synthesizer (tinysoundfont): the built-in synthesizer plays instead"


def hz(pitch: float) -> float:
    return 440.0 * 2 ** ((pitch - 69) / 12)


def spectrum(x: np.ndarray, sr: int = SR) -> tuple[np.ndarray, np.ndarray]:
    mag = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.fft.rfftfreq(len(x), 1 / sr), mag


def level(freqs: np.ndarray, mag: np.ndarray, f: float, width: float = 3.0) -> float:
    return float(mag[np.abs(freqs - f) <= width].max())


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2)))


def chord(pitches, start: float = 0.0, length: float = 1.5, velocity: int = 90) -> pd.DataFrame:
    n = len(pitches)
    return note_table(pitches, [start] * n, [start + length] * n, [velocity] * n)


def melody(velocity: int = 80) -> pd.DataFrame:
    """Twelve half-second notes, one at a time."""
    pitches = [60, 62, 64, 65, 67, 65, 64, 62, 60, 64, 67, 72]
    start = 0.5 * np.arange(12)
    return note_table(pitches, start, start + 0.45, [velocity] * 12)


def big_chord(start: float, length: float = 2.0) -> pd.DataFrame:
    """Ten notes over four octaves, fortissimo."""
    return chord([36, 43, 48, 52, 55, 60, 64, 67, 72, 76], start, length, 127)


def cat(*tables: pd.DataFrame) -> pd.DataFrame:
    t = pd.concat(tables, ignore_index=True)
    return note_table(t["pitch"], t["start"], t["end"], t["velocity"])


def read_wav(data: bytes) -> tuple[wave._wave_params, np.ndarray]:
    with wave.open(io.BytesIO(data), "rb") as r:
        params = r.getparams()
        frames = np.frombuffer(r.readframes(params.nframes), dtype="<i2")
    return params, frames


@pytest.fixture(autouse=True)
def _plain_settings(monkeypatch):
    for name in ("MELODY_AUDIO_BACKEND", "MELODY_SOUNDFONT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    """Each synthesizer in turn, forced (no notice, no fallback)."""
    if request.param == "soundfont":
        pytest.importorskip("tinysoundfont")
    monkeypatch.setenv("MELODY_AUDIO_BACKEND", request.param)
    return request.param


@pytest.fixture
def no_tinysoundfont(monkeypatch):
    """tinysoundfont cannot be imported (as where it is not installed)."""
    monkeypatch.setitem(sys.modules, "tinysoundfont", None)


# ----------------------------------------------------------------- what is heard


def test_the_soundfont_plays_by_default():
    pytest.importorskip("tinysoundfont")
    assert audio_backend() == "soundfont"
    assert soundfont().name == "TimGM6mb.sf2" and soundfont().is_file()


def test_a_chord_sounds_its_three_fundamentals(backend):
    c_major = render(chord([60, 64, 67]), SR)  # C4 E4 G4
    c_e = render(chord([60, 64]), SR)
    assert c_major.dtype == np.float32 and c_major.ndim == 1 and np.isfinite(c_major).all()
    freqs, mag = spectrum(c_major[:SR])
    loudest = mag.max()
    for pitch in (60, 64, 67):
        assert level(freqs, mag, hz(pitch)) > 0.1 * loudest, pitch
    for pitch in (61, 62, 63, 65, 66, 68):  # the keys between them are quiet
        assert level(freqs, mag, hz(pitch)) < 0.02 * loudest, pitch
    # G4 is there because it was asked for: without it, its frequency is quiet
    freqs, without = spectrum(c_e[:SR])
    assert level(freqs, without, hz(67)) < 0.02 * without.max()


def test_a_single_note_has_its_fundamental_and_is_not_a_sine(backend):
    w = render(note_table([69], [0.0], [1.0], [100]), SR)  # A4 = 440 Hz
    freqs, mag = spectrum(w[:SR])
    assert abs(freqs[mag.argmax()] - 440.0) < 2.0  # the loudest component is the note
    assert level(freqs, mag, 440) > 20 * level(freqs, mag, hz(70))  # not the next semitone
    assert level(freqs, mag, 880) > 0.01 * level(freqs, mag, 440)  # harmonics
    assert level(freqs, mag, 880) > 10 * level(freqs, mag, 660)


def test_velocity_sets_loudness(backend):
    w = render(note_table([60, 60], [0.0, 1.0], [0.5, 1.5], [30, 120]), SR)
    soft, loud = rms(w[: SR // 2]), rms(w[SR : SR + SR // 2])
    assert soft > 0 and loud > 2 * soft


def test_builtin_envelope_has_no_clicks_and_decays(monkeypatch):
    monkeypatch.setenv("MELODY_AUDIO_BACKEND", "builtin")
    w = render(note_table([57], [0.5], [1.5], [100]), SR)
    onset = int(0.5 * SR)
    assert np.abs(w[:onset]).max() == 0  # silence before the note
    assert abs(w[onset]) < 1e-3  # the attack starts from zero
    assert np.abs(w[-10:]).max() < 1e-3  # the release ends at zero
    assert rms(w[onset : onset + SR // 5]) > 1.5 * rms(w[onset + int(0.8 * SR) : onset + SR])


def test_rendering_is_repeatable(backend):
    t = melody()
    np.testing.assert_array_equal(render(t, SR), render(t, SR))


# ----------------------------------------------------------------- the fallback and the settings


def test_without_tinysoundfont_the_builtin_synthesizer_plays_with_one_notice(no_tinysoundfont):
    assert audio_backend() == "builtin"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        w = render(chord([60, 64, 67]), SR)
    messages = [str(c.message) for c in caught]
    assert messages == [NOTICE], "one notice, one line"
    assert caught[0].category is UserWarning and caught[0].filename == __file__
    freqs, mag = spectrum(w[:SR])
    for pitch in (60, 64, 67):
        assert level(freqs, mag, hz(pitch)) > 0.1 * mag.max()
    # the same music as the built-in synthesizer asked for by name, which says nothing
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MELODY_AUDIO_BACKEND", "builtin")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            np.testing.assert_array_equal(render(chord([60, 64, 67]), SR), w)


def test_forcing_the_soundfont_without_tinysoundfont_is_a_clear_error(
    no_tinysoundfont, monkeypatch
):
    monkeypatch.setenv("MELODY_AUDIO_BACKEND", "soundfont")
    with pytest.raises(RuntimeError, match="MELODY_AUDIO_BACKEND=soundfont.*pip install"):
        audio_backend()
    with pytest.raises(RuntimeError, match="tinysoundfont"):
        render(melody(), SR)


@pytest.mark.parametrize(
    "value, want",
    [("builtin", "builtin"), (" Builtin ", "builtin"), ("soundfont", "soundfont"),
     ("SOUNDFONT", "soundfont"), ("auto", "soundfont"), ("", "soundfont")],
)  # fmt: skip
def test_melody_audio_backend_choices(monkeypatch, value, want):
    if want == "soundfont":
        pytest.importorskip("tinysoundfont")
    monkeypatch.setenv("MELODY_AUDIO_BACKEND", value)
    assert audio_backend() == want


@pytest.mark.parametrize("value", ["gramophone", "fluidsynth", "1"])
def test_a_bad_melody_audio_backend_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv("MELODY_AUDIO_BACKEND", value)
    with pytest.raises(ValueError, match=f"must be soundfont, builtin or auto, got '{value}'"):
        audio_backend()
    with pytest.raises(ValueError, match="MELODY_AUDIO_BACKEND"):
        render(melody(), SR)


def test_melody_soundfont_missing_or_garbage_is_a_clear_error(monkeypatch, tmp_path):
    pytest.importorskip("tinysoundfont")
    monkeypatch.setenv("MELODY_SOUNDFONT", str(tmp_path / "missing.sf2"))
    with pytest.raises(FileNotFoundError, match="MELODY_SOUNDFONT=.*missing.sf2.* is not a file"):
        audio_backend()
    with pytest.raises(FileNotFoundError, match="MELODY_SOUNDFONT"):
        render(melody(), SR)
    garbage = tmp_path / "garbage.sf2"
    garbage.write_bytes(b"RIFF\x10\x00\x00\x00sfbk not really a SoundFont")
    monkeypatch.setenv("MELODY_SOUNDFONT", str(garbage))
    with pytest.raises(
        RuntimeError, match="cannot load the SoundFont garbage.sf2.*MELODY_SOUNDFONT"
    ):
        render(melody(), SR)


def test_melody_soundfont_chooses_the_file(monkeypatch, tmp_path):
    pytest.importorskip("tinysoundfont")
    default = render(melody(), SR)
    copy = tmp_path / "my piano.sf2"
    copy.write_bytes(soundfont().read_bytes())
    monkeypatch.setenv("MELODY_SOUNDFONT", str(copy))
    assert soundfont() == copy
    np.testing.assert_array_equal(render(melody(), SR), default)


# ----------------------------------------------------------------- loudness


def test_every_clip_comes_out_equally_loud(backend):
    """A soft tune that ends on a loud chord is not scaled by the chord's peak."""
    plain = render(melody(80), SR)
    loud_end = render(cat(melody(40), big_chord(6.0)), SR)
    for w in (plain, loud_end):
        assert rms(w) == pytest.approx(TARGET_RMS, rel=0.01)
        assert np.abs(w).max() <= PEAK and np.isfinite(w).all()
    assert np.abs(loud_end).max() == pytest.approx(PEAK, abs=1e-3)  # the chord is limited
    # the tune before the chord is louder than peak scaling would have left it
    raw = audio._soundfont_render if backend == "soundfont" else audio._builtin_render
    mix = raw(cat(melody(40), big_chord(6.0)).assign(program=PIANO), SR)
    peak_scaled = mix * (PEAK / np.abs(mix).max())
    assert rms(loud_end[: 6 * SR]) > 1.5 * rms(peak_scaled[: 6 * SR])


def test_many_overlapping_notes_do_not_clip(backend):
    start = 0.01 * np.arange(50)
    w = render(note_table(np.arange(40, 90), start, np.full(50, 2.0), [127] * 50), SR)
    assert np.abs(w).max() <= PEAK and np.isfinite(w).all()


def test_spiky_music_is_limited_at_most_max_limiting():
    """A whisper and one short shout: reaching TARGET_RMS would lower the shout 30-fold;
    the limiter lowers it MAX_LIMITING-fold at most."""
    t = np.arange(8 * SR) / SR
    x = 0.001 * np.sin(2 * np.pi * 220 * t)
    x[6 * SR : 6 * SR + SR // 20] = 0.9 * np.sign(np.sin(2 * np.pi * 220 * t[: SR // 20]))
    y = normalize(x, SR)
    assert y.dtype == np.float32 and np.abs(y).max() <= PEAK
    assert rms(y) < 0.9 * TARGET_RMS  # quieter than the target rather than squashed flat
    gain = rms(y[: 6 * SR]) / rms(x[: 6 * SR])
    assert gain == pytest.approx(MAX_LIMITING * PEAK / 0.9, rel=0.01)
    with pytest.raises(RuntimeError, match="silence"):
        normalize(np.zeros(100))
    with pytest.raises(RuntimeError, match="non-finite"):
        normalize(np.r_[0.5, np.inf])


def test_the_limiter_lowers_the_gain_smoothly_and_only_near_peaks():
    sr = 8000
    t = np.arange(2 * sr) / sr
    x = 0.5 * np.sin(2 * np.pi * 220 * t)
    x[sr : sr + sr // 10] *= 4.0  # a 0.1 s burst at twice full scale
    hold = int(0.01 * sr)
    y = audio._limit(x, PEAK, hold)
    assert np.abs(y).max() <= PEAK
    sounding = np.abs(x) > 1e-3
    gain = np.divide(y, x, out=np.ones_like(x), where=sounding)
    assert np.abs(np.diff(gain[sounding])).max() < 0.05  # a ramp, not a kink
    far = np.r_[: sr - 3 * hold, sr + sr // 10 + 3 * hold : 2 * sr]
    np.testing.assert_array_equal(y[far], x[far])  # untouched away from the burst
    assert np.abs(y[sr : sr + sr // 10]).max() > 0.95 * PEAK  # the burst stays loud
    np.testing.assert_array_equal(audio._limit(x / 4, PEAK, hold), x / 4)


# ----------------------------------------------------------------- keys and instruments


def test_keys_the_piano_cannot_sound_move_by_octaves_with_a_warning():
    pytest.importorskip("tinysoundfont")
    sounds = audio._keys(SAMPLE_RATE, PIANO)
    top = int(np.flatnonzero(sounds).max())
    assert top == 108, "TimGM6mb's piano has no sample above C8"
    organ = audio._keys(SAMPLE_RATE, CHURCH_ORGAN)
    assert int(np.flatnonzero(~organ).min()) == 109, "nor its organ (as the README says)"
    high = note_table([top + 6], [0.0], [1.0], [100])
    with pytest.warns(UserWarning, match=rf"1 note\(s\) at keys \[{top + 6}\] have no sound"):
        w = render(high, SAMPLE_RATE)
    freqs, mag = spectrum(w[:SAMPLE_RATE], SAMPLE_RATE)
    assert abs(freqs[mag.argmax()] - hz(top - 6)) < 0.03 * hz(top - 6), "an octave lower"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a key that sounds is left alone, silently
        for key in range(top - 3, top + 1):  # and really sounds (silence is an error)
            w = render(note_table([key], [0.0], [1.0], [100]), SAMPLE_RATE)
            freqs, mag = spectrum(w[:SAMPLE_RATE], SAMPLE_RATE)
            assert abs(freqs[mag.argmax()] - hz(key)) < 0.03 * hz(key)


def test_keys_above_the_builtin_synthesizers_range_move_too(monkeypatch):
    monkeypatch.setenv("MELODY_AUDIO_BACKEND", "builtin")
    sr = 8000  # nothing above 0.45 * 8000 = 3600 Hz: key 106 (3729 Hz) and up
    table = note_table([110, 60], [0.0, 1.0], [1.0, 2.0], [100, 100])
    with pytest.warns(UserWarning, match=r"1 note\(s\) at keys \[110\]"):
        w = render(table, sr)
    freqs, mag = spectrum(w[:sr], sr)
    assert abs(freqs[mag.argmax()] - hz(98)) < 3  # 110 - 12
    assert table["pitch"].tolist() == [110, 60], "the caller's table is not changed"


def test_chorales_play_on_the_organ_and_tables_without_a_program_on_the_piano(bach):
    pytest.importorskip("tinysoundfont")
    notes = next(p for p in bach if p.id == "bach/bwv66.6").notes.iloc[:24]
    assert (notes["program"] == CHURCH_ORGAN).all()
    organ = render(notes, SR)
    np.testing.assert_array_equal(organ, render(notes, SR, program=CHURCH_ORGAN))
    plain = notes.drop(columns="program")
    piano = render(plain, SR)
    np.testing.assert_array_equal(piano, render(notes, SR, program=PIANO))
    assert not np.allclose(organ[: len(piano)], piano[: len(organ)], atol=0.05)
    # an organ holds its tone, a piano's dies away
    held = note_table([60], [0.0], [3.0], [90])
    for program, lo, hi in ((CHURCH_ORGAN, 0.7, 1.4), (PIANO, 0.0, 0.3)):
        x = render(held, SR, program=program)
        sustain = rms(x[int(2.5 * SR) : int(2.9 * SR)]) / rms(x[int(0.1 * SR) : int(0.5 * SR)])
        assert lo < sustain < hi, (program, sustain)


def test_each_note_is_played_by_its_own_program():
    pytest.importorskip("tinysoundfont")
    duet = note_table([60, 67], [0.0, 0.0], [3.0, 3.0], [90, 90], program=[CHURCH_ORGAN, PIANO])
    w = render(duet, SR)
    freqs, early = spectrum(w[int(0.1 * SR) : int(0.6 * SR)])
    _, late = spectrum(w[int(2.4 * SR) : int(2.9 * SR)])
    # the organ's C4 holds; the piano's G4 fades against it
    ratio_early = level(freqs, early, hz(67), 6) / level(freqs, early, hz(60), 6)
    ratio_late = level(freqs, late, hz(67), 6) / level(freqs, late, hz(60), 6)
    assert ratio_late < 0.3 * ratio_early


# ----------------------------------------------------------------- files and the player


def test_wav_written_and_read_back(backend, tmp_path):
    t = note_table([64, 67], [0.0, 0.4], [0.4, 0.8], [100, 80])
    w = render(t, SR)
    path = write_wav(t, tmp_path / "out" / "tune.wav", SR)
    params, pcm = read_wav(path.read_bytes())
    assert (params.nchannels, params.sampwidth, params.framerate) == (1, 2, SR)
    assert params.nframes == len(w) and path.read_bytes() == wav_bytes(t, SR)
    np.testing.assert_allclose(pcm / 32767, w, atol=1 / 32767)
    # a waveform works as well as a note table, and gives the same bytes
    assert write_wav(w, tmp_path / "w.wav", SR).read_bytes() == path.read_bytes()
    params, frames = read_wav(wav_bytes(np.array([2.0, -2.0, 0.5]), 8000))
    assert frames.tolist() == [32767, -32767, 16384]  # clipped, not wrapped
    assert params.framerate == 8000
    for bad in (np.array([0.0, np.nan]), np.zeros((2, 2)), np.zeros(0)):
        with pytest.raises(ValueError, match="waveform"):
            wav_bytes(bad, SR)


def test_play_gives_an_audio_player(backend):
    from IPython.display import Audio

    player = play(note_table([72], [0.0], [0.3], [100]), SR)
    assert isinstance(player, Audio) and player.data[:4] == b"RIFF"
    b64 = player._repr_html_().split("data:audio/wav;base64,")[1].split('"')[0]
    params, frames = read_wav(base64.b64decode(b64))
    assert params.framerate == SR and np.abs(frames).max() > 1000


def test_bad_tables_and_settings_are_errors():
    with pytest.raises(ValueError, match="empty"):
        render(melody().iloc[:0], SR)
    with pytest.raises(ValueError, match="pitch, start and end"):
        render(melody()[["pitch", "start"]], SR)
    with pytest.raises(ValueError, match="pitch, start and end"):
        render(np.zeros((3, 3)), SR)
    for bad in (0, 999, 16000.0, True, 200_000):
        with pytest.raises(ValueError, match="sample_rate"):
            render(melody(), bad)


def test_long_music_is_cut_to_max_seconds_with_a_warning(monkeypatch):
    monkeypatch.setenv("MELODY_AUDIO_BACKEND", "builtin")
    t = note_table([60, 64], [0.0, 600.0], [0.5, 600.5], [80, 80])  # ten minutes apart
    with pytest.warns(UserWarning, match="lasts 600 s; only its first 20 s"):
        w = render(t, 8000, max_seconds=20)
    assert len(w) <= 8000 * 21
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(render(t, 8000, max_seconds=700)) > 8000 * 600  # under the cap: all of it
    assert t["end"].tolist() == [0.5, 600.5], "the caller's table is not changed"
    for bad in (0, -1.0, float("nan"), float("inf"), "20"):
        with pytest.raises(ValueError, match="max_seconds"):
            render(t, 8000, max_seconds=bad)
