"""The generation UI driven the way a user drives it (set the controls, click, upload a
file), with the committed checkpoint; the output widget's ``outputs`` are read directly,
no Jupyter kernel needed."""

from __future__ import annotations

import base64
import datetime
import html
import io
import re
import wave

import numpy as np
import pytest

from melody_utils import widgets
from melody_utils.generate import primers_from_pieces
from melody_utils.metrics import MEASURES, CopyIndex, copy_reference
from melody_utils.notes import BadInputError, parse_midi
from melody_utils.train import load_checkpoint
from melody_utils.widgets import UPLOAD_PREFIX, GenerationUI, midi_download_link

RED = "#b00020"


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """These tiny batches run on one torch thread."""


@pytest.fixture(autouse=True)
def _builtin_audio(monkeypatch):
    """The built-in synthesizer at a low rate: fast, and what a machine without the
    SoundFont plays (the SoundFont is the audio tests' business)."""
    monkeypatch.setenv("MELODY_AUDIO_BACKEND", "builtin")


@pytest.fixture(scope="module")
def parts(bach_splits):
    model, normalizer, _ = load_checkpoint()
    return model, normalizer, bach_splits["test"]


@pytest.fixture
def ui(parts):
    model, normalizer, test = parts
    return GenerationUI(
        model, normalizer, primers_from_pieces(test[:3]), reference=test, n_notes=8,
        sample_rate=8000,
    )  # fmt: skip


def outputs_with(ui: GenerationUI, mime: str) -> list[str]:
    return [o["data"][mime] for o in ui.output.outputs if mime in o["data"]]


def upload(ui: GenerationUI, data: bytes, name: str) -> None:
    """What the browser does when a file is chosen in the FileUpload widget."""
    ui.upload.value = (
        {
            "name": name,
            "type": "audio/midi",
            "size": len(data),
            "content": memoryview(data),
            "last_modified": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
        },
    )


def test_the_ui_builds_and_displays(parts):
    model, normalizer, test = parts
    ui = GenerationUI(model, normalizer, test[:2])
    assert list(ui.primers) == [p.id for p in test[:2]] and ui.primer.value == test[0].id
    assert ui.reference == list(ui.primers.values()) and ui.copy_index is None
    assert "application/vnd.jupyter.widget-view+json" in ui._repr_mimebundle_()
    assert "builtin synthesizer" in ui.status.value
    assert ui.top_k.max == 128 and ui.n_notes.value == 128
    with pytest.raises(ValueError, match="at least one primer"):
        GenerationUI(model, normalizer, {})


def test_settings_follow_the_controls_and_their_off_positions(ui):
    ui.temperature.value, ui.top_k.value, ui.top_p.value = 0.7, 0, 1.0
    ui.n_notes.value, ui.n_variations.value, ui.seed.value = 20, 3, 11
    assert ui.settings == {
        "n_notes": 20, "temperature": 0.7, "top_k": None, "top_p": None, "n_variations": 3,
        "seed": 11,
    }  # fmt: skip
    ui.top_k.value, ui.top_p.value = 20, 0.9
    assert ui.settings["top_k"] == 20 and ui.settings["top_p"] == 0.9
    ui.top_p.value = 0.30000000000000004  # a slider's float: shown and used rounded
    assert ui.settings["top_p"] == 0.3
    # the controls cannot hold a value generate() would refuse
    ui.n_notes.value, ui.seed.value = 0, -5
    assert ui.n_notes.value == 1 and ui.seed.value == 0


def test_a_click_shows_rolls_audio_links_and_the_measures(ui):
    ui.primer.value = list(ui.primers)[1]
    ui.temperature.value, ui.top_k.value, ui.top_p.value = 0.9, 20, 0.9
    ui.n_notes.value, ui.n_variations.value, ui.seed.value = 8, 2, 7
    ui.generate_button.click()
    assert ui.last_error is None and not ui.generate_button.disabled
    assert "done in" in ui.status.value and set(ui.last_timings) == {
        "generate", "audio", "scores", "total",
    }  # fmt: skip
    r = ui.last_result
    assert len(r) == 2 and r.seed == 7 and r.settings["top_k"] == 20
    assert r.settings["top_p"] == pytest.approx(0.9) and r.settings["temperature"] == 0.9
    primer = ui.primers[ui.primer.value]
    assert r.notes[0]["pitch"].iloc[:32].tolist() == primer["pitch"].iloc[-32:].tolist()
    header = outputs_with(ui, "text/plain")[0]
    assert "8 notes × 2 variation(s)" in header and "temperature 0.90" in header
    assert "top-k 20" in header and "top-p 0.90" in header and "seed 7" in header
    # one piano-roll image
    (png,) = outputs_with(ui, "image/png")
    assert base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n"
    # an audio player per variation, a WAV at the UI's rate
    players = [h for h in outputs_with(ui, "text/html") if "<audio" in h]
    assert len(players) == len(ui.last_audio) == 2
    for player in players:
        wav = base64.b64decode(re.search(r"base64,([A-Za-z0-9+/=]+)", player).group(1))
        with wave.open(io.BytesIO(wav)) as f:
            assert f.getframerate() == 8000 and f.getnframes() > 8000  # seconds of music
    # MIDI downloads holding the notes of their variation
    links = re.findall(
        r'<a download="([^"]+)" href="data:audio/midi;base64,([^"]+)"',
        "".join(outputs_with(ui, "text/html")),
    )
    assert [name for name, _ in links] == [
        f"bach_{ui.primer.value[5:]}_seed7_v1.mid", f"bach_{ui.primer.value[5:]}_seed7_v2.mid",
    ]  # fmt: skip
    for (_, b64), tab in zip(links, r.notes, strict=True):
        back = parse_midi(base64.b64decode(b64)).notes
        assert sorted(back["pitch"]) == sorted(tab["pitch"])
        np.testing.assert_allclose(np.sort(back["start"]), np.sort(tab["start"]), atol=2e-3)
    # the measures beside the real pieces, last
    table = outputs_with(ui, "text/plain")[-1]
    assert "variation 2" in table and "real (mean over windows of a piece" in table
    assert MEASURES["pitch_class_entropy"] in table
    assert outputs_with(ui, "image/svg+xml") == []  # no score unless asked


def test_a_repeated_click_redraws_the_same_music_and_the_seed_changes_it(ui):
    ui.seed.value, ui.n_notes.value = 11, 4
    first = ui.generate().notes[0]["pitch"].tolist()
    sent = []  # what the kernel sends to the browser: every change of the outputs
    ui.output.observe(lambda change: sent.append(len(change["new"])), names="outputs")
    assert ui.generate().notes[0]["pitch"].tolist() == first  # the same seed, built again
    assert sent == [0, len(ui.output.outputs)] and sent[-1] > 0  # an equal value is resent
    ui.seed.value = 12
    assert ui.generate().notes[0]["pitch"].tolist() != first and ui.last_result.seed == 12


def test_temperature_zero_with_several_variations_says_why_they_match(ui):
    ui.temperature.value, ui.n_variations.value, ui.n_notes.value = 0.0, 3, 4
    result = ui.generate()
    first = result.notes[0]["pitch"].tolist()
    assert all(t["pitch"].tolist() == first for t in result.notes)
    assert widgets._SAME in outputs_with(ui, "text/plain")[0]
    ui.n_variations.value = 1  # one variation: nothing to explain
    ui.generate()
    assert widgets._SAME not in outputs_with(ui, "text/plain")[0]


def test_load_midi_bytes_accepts_a_real_file(ui, midi_writer, tmp_path):
    data = midi_writer(tmp_path / "tune.mid", range(50, 90), velocity=64).read_bytes()
    key = ui.load_midi_bytes(data, "tune.mid")
    assert key == UPLOAD_PREFIX + "tune.mid" and ui.primer.value == key
    assert key in ui.primer.options and len(ui.primers[key]) == 40
    result = ui.generate()
    assert ui.last_error is None and result.messages == []
    assert result.notes[0]["pitch"].iloc[:32].tolist() == list(range(58, 90))
    assert (result.notes[0]["program"] == 0).all()  # the file's piano
    link = "".join(outputs_with(ui, "text/html"))
    assert 'download="tune_seed0_v1.mid"' in link


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("garbage", "corrupt or unreadable MIDI"),
        ("empty", "empty file"),
        ("short", "10 notes; a primer needs 32"),
        ("drums", "drum-only"),
    ],
)
def test_load_midi_bytes_rejects_what_is_not_a_primer(ui, midi_writer, tmp_path, kind, message):
    if kind == "garbage":
        data = b"MThd this is not really a MIDI file"
    elif kind == "empty":
        data = b""
    else:
        pitches = range(60, 70) if kind == "short" else [36] * 40
        data = midi_writer(tmp_path / "x.mid", pitches, drum=kind == "drums").read_bytes()
    before = list(ui.primer.options)
    with pytest.raises(BadInputError, match=message):
        ui.load_midi_bytes(data, f"{kind}.mid")
    upload(ui, data, f"{kind}.mid")  # through the widget: never raises
    assert message in ui.last_error and f"{kind}.mid" in ui.last_error
    assert RED in ui.status.value and "Could not load the upload" in ui.status.value
    assert html.escape(message) in ui.status.value
    assert list(ui.primer.options) == before  # nothing half-added
    assert ui.upload.value == ()  # choosing the same file again is a change too


def test_uploading_a_good_file_selects_it(ui, midi_writer, tmp_path):
    data = midi_writer(tmp_path / "tune.mid", range(50, 90)).read_bytes()
    upload(ui, data, "tune.mid")
    assert ui.last_error is None and ui.primer.value == UPLOAD_PREFIX + "tune.mid"
    assert "loaded <b>tune.mid</b>: 40 notes" in ui.status.value and RED not in ui.status.value
    ui.primer.value = ui.primer.options[0]
    upload(ui, data, "tune.mid")  # the very same file again
    assert ui.primer.value == UPLOAD_PREFIX + "tune.mid"


def test_the_velocity_message_is_shown(ui, midi_writer, tmp_path):
    """A file at velocity 80 primes a model trained on velocity 64 only: the primer's
    velocities are replaced, and the header says so."""
    data = midi_writer(tmp_path / "loud.mid", range(50, 90), velocity=80).read_bytes()
    ui.load_midi_bytes(data, "loud.mid")
    result = ui.generate()
    assert ui.last_error is None and len(result.messages) == 1
    assert (result.notes[0]["velocity"].iloc[:32] == 64).all()
    header = outputs_with(ui, "text/plain")[0]
    assert "32 velocities (80..80)" in header and "set to 64..64" in header


def test_generation_errors_are_a_red_message_not_a_traceback(parts):
    model, normalizer, test = parts
    ui = GenerationUI(model, normalizer, {"short": test[0].notes.iloc[:20], "ok": test[0].notes})
    ui.primer.value, ui.n_notes.value = "ok", 4
    assert ui.generate() is not None and ui.output.outputs
    ui.primer.value = "short"
    ui.generate_button.click()  # must not raise
    assert ui.last_result is not None  # the earlier result stays the last good one
    assert "primer has 20 notes; the model's window needs 32" in ui.last_error
    assert RED in ui.status.value and "Could not generate" in ui.status.value
    assert "Traceback" not in ui.status.value and ui.status.value.count("has 20 notes") == 1
    assert ui.output.outputs == (), "no stale result beside the error"
    assert not ui.generate_button.disabled
    ui.primer.value = "ok"  # and the UI recovers
    assert ui.generate() is not None and ui.last_error is None and RED not in ui.status.value


def test_the_copy_check_with_training_pieces(parts):
    model, normalizer, test = parts
    ui = GenerationUI(
        model, normalizer, primers_from_pieces(test[:2]), reference=test, training=test[5:40],
        n_notes=8, sample_rate=8000,
    )  # fmt: skip
    assert isinstance(ui.copy_index, CopyIndex)
    result = ui.generate()
    assert result.copies and result.stats[0]["copied_run"] == result.copies[0].length
    assert MEASURES["copied_run"] in outputs_with(ui, "text/plain")[-1]
    # the real column averages copied_run like its other rows: windows of a piece, then pieces
    ref = copy_reference(ui.copy_index, test, 8)
    by_piece: dict[str, list[int]] = {}
    for pid, run in zip(ref.piece_ids, ref.runs, strict=True):
        by_piece.setdefault(pid, []).append(int(run))
    assert ui._reference(8)["copied_run"] == pytest.approx(
        np.mean([np.mean(r) for r in by_piece.values()])
    )
    index = CopyIndex(test[5:10])
    assert GenerationUI(model, normalizer, test[:2], training=index).copy_index is index


def test_no_real_reference_when_no_piece_is_that_long(parts):
    model, normalizer, test = parts
    ui = GenerationUI(model, normalizer, {"a": test[0].notes.iloc[:40]}, n_notes=41)
    ui.generate()
    assert ui.last_error is None and ui._reference(41) is None
    assert "no held-out piece has 41 notes" in "".join(outputs_with(ui, "text/plain"))
    ui.n_notes.value = 8  # the primer itself is the reference: 5 windows of 8
    ui.generate()
    assert ui._reference(8)["windows"] == 5 and "real (mean" in outputs_with(ui, "text/plain")[-1]


@pytest.mark.slow
def test_show_score_engraves_each_variation_when_ticked(ui):
    ui.n_variations.value, ui.n_notes.value, ui.show_score.value = 2, 4, True
    ui.generate()
    assert ui.last_error is None
    svgs = outputs_with(ui, "image/svg+xml")
    assert len(svgs) == 2 and all(s.lstrip().startswith("<svg") for s in svgs)
    plain = [o["data"]["text/plain"] for o in ui.output.outputs]
    assert plain.index("<score: variation 1>") == plain.index("<audio: variation 1>") + 1
    assert plain.index("<score: variation 2>") == plain.index("<audio: variation 2>") + 1
    ui.show_score.value = False
    ui.generate()
    assert outputs_with(ui, "image/svg+xml") == []


def test_midi_download_link():
    link = midi_download_link(b"MThd\x00", 'a "b".mid', "get <it>")
    assert link.startswith('<a download="a &quot;b&quot;.mid" href="data:audio/midi;base64,')
    assert base64.b64encode(b"MThd\x00").decode() in link and "get &lt;it&gt;</a>" in link
    assert ">download x.mid</a>" in midi_download_link(b"", "x.mid")
