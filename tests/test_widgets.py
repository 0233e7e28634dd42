"""The generation UI, driven the way a user drives it: set the controls, click the button.

No Jupyter kernel is needed: the output widget's ``outputs`` are inspected directly.
"""

from __future__ import annotations

import base64
import datetime
import io
import re
import wave

import numpy as np
import pretty_midi
import pytest
import torch

from melody_utils import widgets
from melody_utils.data import Normalizer
from melody_utils.generate import primers_from_pieces
from melody_utils.metrics import CopyIndex, copy_reference
from melody_utils.model import MelodyLSTM
from melody_utils.notation import HIGHLIGHT_COLOR
from melody_utils.widgets import UPLOAD_PREFIX, GenerationUI


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """These tiny batches run on one torch thread (see conftest.one_torch_thread)."""


@pytest.fixture(scope="module")
def parts(bach_splits):
    torch.manual_seed(0)
    return MelodyLSTM(), Normalizer.fit(bach_splits["train"]), bach_splits["test"]


@pytest.fixture
def ui(parts, monkeypatch):
    monkeypatch.setenv("MELODY_AUDIO_BACKEND", "builtin")
    model, normalizer, test = parts
    ui = GenerationUI(
        model,
        normalizer,
        primers_from_pieces(test[:3]),
        reference=test,
        n_notes=16,
        sample_rate=8000,
    )
    return ui


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
            "last_modified": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),  # the file's
        },
    )


def test_click_produces_rolls_audio_links_and_stats(ui):
    ui.primer.value = list(ui.primers)[1]
    ui.temperature.value = 0.9
    ui.top_k.value = 20
    ui.top_p.value = 0.9
    ui.n_notes.value = 16
    ui.n_variations.value = 2
    ui.seed.value = 7
    ui.generate_button.click()

    assert ui.last_error is None
    r = ui.last_result
    assert r is not None and len(r.midi) == 2 and r.seed == 7
    assert r.settings["top_k"] == 20 and r.settings["top_p"] == pytest.approx(0.9)
    assert r.settings["temperature"] == pytest.approx(0.9)
    primer = ui.primers[ui.primer.value]
    assert r.notes[0]["pitch"].iloc[:32].tolist() == primer["pitch"].iloc[-32:].tolist()
    assert all(len(t) == 32 + 16 for t in r.notes)
    assert not ui.generate_button.disabled and "done in" in ui.status.value

    # audio: one finite, audible waveform and one player per variation
    assert len(ui.last_audio) == 2
    for w in ui.last_audio:
        assert np.isfinite(w).all() and 0 < np.abs(w).max() <= 1
    players = [h for h in outputs_with(ui, "text/html") if "<audio" in h]
    assert len(players) == 2
    for html, w in zip(players, ui.last_audio, strict=True):
        wav = base64.b64decode(re.search(r"data:audio/wav;base64,([A-Za-z0-9+/=]+)", html).group(1))
        with wave.open(io.BytesIO(wav)) as f:
            assert f.getframerate() == 8000 and f.getnframes() == len(w)

    # MIDI downloads: valid files holding the generated notes
    links = re.findall(
        r'<a download="([^"]+)" href="data:audio/midi;base64,([^"]+)"',
        "".join(outputs_with(ui, "text/html")),
    )
    assert len(links) == 2
    for (name, b64), tab in zip(links, r.notes, strict=True):
        assert name.endswith(".mid") and "seed7" in name
        pm = pretty_midi.PrettyMIDI(io.BytesIO(base64.b64decode(b64)))
        read = np.array(sorted((n.pitch, n.start) for n in pm.instruments[0].notes))
        want = np.array(sorted(zip(tab["pitch"], tab["start"], strict=True)))
        assert read.shape == want.shape and (read[:, 0] == want[:, 0]).all()
        np.testing.assert_allclose(read[:, 1], want[:, 1], atol=0.005)  # MIDI ticks

    # one piano-roll image, and the degeneration table with the real reference
    (png,) = outputs_with(ui, "image/png")
    assert base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n"
    table = next(h for h in outputs_with(ui, "text/html") if "<table" in h)
    assert "variation 2" in table and "real (mean of" in table and "pitch-class entropy" in table
    assert set(ui.last_timings) == {"generate", "audio", "plots", "scores", "total"}


def test_same_seed_same_notes_through_the_ui(ui):
    ui.seed.value = 11
    ui.generate_button.click()
    first = ui.last_result.notes[0]["pitch"].tolist()
    ui.generate_button.click()
    assert ui.last_result.notes[0]["pitch"].tolist() == first
    ui.seed.value = 12
    ui.generate_button.click()
    assert ui.last_result.notes[0]["pitch"].tolist() != first


def test_off_positions_of_the_sliders(ui):
    ui.top_k.value = 0
    ui.top_p.value = 1.0
    ui.temperature.value = 0.0
    assert ui.settings["top_k"] is None and ui.settings["top_p"] is None
    result = ui.generate()
    assert result is ui.last_result and result.settings["temperature"] == 0


def test_upload_a_midi_file_and_generate_from_it(ui, midi_writer, tmp_path):
    path = midi_writer(tmp_path / "tune.mid", range(50, 90))  # 40 notes
    upload(ui, path.read_bytes(), "tune.mid")
    assert ui.last_error is None and ui.primer.value == UPLOAD_PREFIX + "tune.mid"
    assert "40 notes" in ui.status.value
    ui.generate_button.click()
    assert ui.last_error is None
    assert ui.last_result.notes[0]["pitch"].iloc[:32].tolist() == list(range(58, 90))


def test_uploading_the_same_file_again_is_a_new_upload(ui, midi_writer, tmp_path):
    data = midi_writer(tmp_path / "tune.mid", range(50, 90)).read_bytes()
    upload(ui, data, "tune.mid")
    assert ui.primer.value == UPLOAD_PREFIX + "tune.mid"
    ui.primer.value = ui.primer.options[0]
    ui.status.value = ""
    upload(ui, data, "tune.mid")  # the browser sends the very same value again
    assert ui.primer.value == UPLOAD_PREFIX + "tune.mid"
    assert "loaded <b>tune.mid</b>" in ui.status.value


def test_header_shows_slider_values_as_set(ui):
    ui.top_p.value = 0.9
    ui.temperature.value = 0.7
    ui.generate()
    header = outputs_with(ui, "text/plain")[0]
    assert "top-p 0.90" in header and "temperature 0.70" in header
    assert "0000000" not in header
    assert ui.last_result.settings["top_p"] == 0.9


def test_greedy_with_several_variations_says_why_they_match(ui):
    ui.temperature.value = 0.0
    ui.n_variations.value = 3
    result = ui.generate()
    assert pitches_equal(result)
    assert "every variation is the same" in outputs_with(ui, "text/plain")[0]


def pitches_equal(result) -> bool:
    first = result.notes[0]["pitch"].tolist()
    return all(t["pitch"].tolist() == first for t in result.notes)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("garbage", "corrupt or unreadable MIDI"),
        ("empty", "empty file"),
        ("short", "has 10 notes; a primer needs at least 32"),
        ("drums", "drum-only"),
    ],
)
def test_bad_uploads_show_a_message(ui, midi_writer, tmp_path, kind, message):
    if kind == "garbage":
        data = b"MThd this is not really a MIDI file"
    elif kind == "empty":
        data = b""
    else:
        path = midi_writer(
            tmp_path / "x.mid",
            range(60, 70) if kind == "short" else [36] * 40,
            drum=kind == "drums",
        )
        data = path.read_bytes()
    before = list(ui.primer.options)
    upload(ui, data, f"{kind}.mid")  # must not raise
    assert message in ui.last_error
    assert message in ui.status.value and "Could not load the upload" in ui.status.value
    assert "Could not generate" not in ui.status.value
    assert list(ui.primer.options) == before  # nothing half-added
    shown = "".join(outputs_with(ui, "text/plain"))
    assert message not in shown, "the message is shown once, in the status line"


def test_generation_errors_are_shown_not_raised(parts, monkeypatch):
    monkeypatch.setenv("MELODY_AUDIO_BACKEND", "builtin")
    model, normalizer, test = parts
    short = test[0].notes.iloc[:20]
    ui = GenerationUI(model, normalizer, {"short": short, "ok": test[0].notes})
    ui.primer.value = "short"
    ui.n_notes.value = 4
    ui.generate_button.click()  # must not raise
    assert ui.last_result is None
    assert "has 20 notes; the model needs at least 32" in ui.last_error
    assert "Could not generate" in ui.status.value and "Traceback" not in ui.status.value
    assert ui.status.value.count("has 20 notes") == 1
    assert ui.output.outputs == (), "no stale result is left beside the error"
    assert not ui.generate_button.disabled
    # the UI recovers on the next good click
    ui.primer.value = "ok"
    assert ui.generate() is not None and ui.last_error is None


def test_constructor_accepts_pieces_and_displays(parts):
    model, normalizer, test = parts
    ui = GenerationUI(model, normalizer, test[:2])
    assert list(ui.primers) == [p.id for p in test[:2]]
    bundle = ui._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    with pytest.raises(ValueError, match="at least one primer"):
        GenerationUI(model, normalizer, {})


def test_copy_check_appears_in_the_stats_when_training_pieces_are_given(parts, monkeypatch):
    monkeypatch.setenv("MELODY_AUDIO_BACKEND", "builtin")
    model, normalizer, test = parts
    ui = GenerationUI(
        model,
        normalizer,
        primers_from_pieces(test[:2]),
        reference=test,
        training=test[5:40],
        n_notes=16,
        sample_rate=8000,
    )
    result = ui.generate()
    assert result.copies and result.stats[0]["copied_run"] == result.copies[0].length
    table = outputs_with(ui, "text/plain")[-1]
    assert "longest run of pitches also in the training set" in table
    # the real column averages like its other rows: windows within a piece, then pieces
    ref = copy_reference(ui.copy_index, test, 16)
    by_piece: dict[str, list[int]] = {}
    for pid, run in zip(ref.piece_ids, ref.runs, strict=True):
        by_piece.setdefault(pid, []).append(int(run))
    want = np.mean([np.mean(runs) for runs in by_piece.values()])
    assert ui._reference(16)["copied_run"] == pytest.approx(want)


def test_show_score_engraves_each_variation_only_when_ticked(ui):
    ui.n_variations.value = 2
    ui.seed.value = 3
    assert not ui.show_score.value  # off by default: a click stays fast
    ui.generate()
    assert outputs_with(ui, "image/svg+xml") == []
    assert "scores" not in ui.status.value
    without = [o["data"]["text/plain"] for o in ui.output.outputs]

    ui.show_score.value = True  # what ticking the box does
    ui.generate()
    assert ui.last_error is None
    svgs = outputs_with(ui, "image/svg+xml")
    assert len(svgs) == 2
    for svg, notes in zip(svgs, ui.last_result.notes, strict=True):
        assert svg.lstrip().startswith("<svg") and "data-pname" in svg  # engraved notes
        assert HIGHLIGHT_COLOR in svg.lower()  # the continuation is coloured
        assert svg.count("data-pname") >= notes["pitch"].nunique()
    # each score follows its variation's audio player; the table stays last
    plain = [o["data"]["text/plain"] for o in ui.output.outputs]
    assert plain.index("<score: variation 1>") == plain.index("<audio: variation 1>") + 1
    assert plain.index("<score: variation 2>") == plain.index("<audio: variation 2>") + 1
    assert plain[-1] == without[-1] and "real (mean of" in outputs_with(ui, "text/html")[-1]
    assert ui.last_timings["scores"] > 0 and "scores" in ui.status.value

    ui.show_score.value = False  # untick: the next click shows no score again
    ui.generate()
    assert outputs_with(ui, "image/svg+xml") == []


def test_a_score_that_cannot_be_engraved_is_a_note_not_an_error(ui, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no engraver today")

    monkeypatch.setattr(widgets, "score_svg", broken)
    ui.show_score.value = True
    result = ui.generate()
    assert result is not None and ui.last_error is None
    assert outputs_with(ui, "image/svg+xml") == []
    assert any("no engraver today" in h for h in outputs_with(ui, "text/html"))
    assert len(outputs_with(ui, "image/png")) == 1  # the piano rolls still show


def test_training_may_be_a_ready_copy_index(parts):
    model, normalizer, test = parts
    index = CopyIndex(test[5:40])
    ui = GenerationUI(model, normalizer, test[:2], training=index)
    assert ui.copy_index is index


def test_a_repeated_click_redraws_the_output_area(ui):
    ui.generate()
    sent = []  # what the kernel sends to the browser: every change of the outputs
    ui.output.observe(lambda change: sent.append(len(change["new"])), names="outputs")
    ui.generate()  # same settings, same seed: the same outputs, built again
    assert ui.last_error is None
    assert sent == [0, len(ui.output.outputs)] and sent[-1] > 0


def test_the_categorical_time_variant_plays_through_the_ui(parts, bach_splits, monkeypatch):
    """Notebook 06's variant (a distribution over time classes) works in the widget too:
    every generated step is one of its class values."""
    from melody_utils.config import CHORD_SNAP
    from melody_utils.data import fit_time_classes
    from melody_utils.model import ModelConfig

    monkeypatch.setenv("MELODY_AUDIO_BACKEND", "builtin")
    _, normalizer, test = parts
    torch.manual_seed(0)
    model = MelodyLSTM(ModelConfig(time_head="categorical", time_classes=8)).eval()
    model.set_time_classes(fit_time_classes(bach_splits["train"][:20], normalizer, 8))
    ui = GenerationUI(
        model, normalizer, primers_from_pieces(test[:2]), n_notes=12, sample_rate=8000
    )
    ui.n_variations.value = 2
    ui.generate_button.click()
    assert ui.last_error is None and len(ui.last_result.midi) == 2
    values = normalizer.inverse_transform(np.stack([model.step_values.numpy()] * 3, axis=1))[:, 0]
    allowed = np.where(values < CHORD_SNAP, 0.0, np.minimum(values, 4.0))
    steps = ui.last_result.continuation(1)["step"].to_numpy()
    assert np.all(np.min(np.abs(steps[:, None] - allowed[None, :]), axis=1) < 1e-6)
    assert len(outputs_with(ui, "text/html")) >= 2
