"""The main job end to end (``python -m melody_utils run``), on a small real corpus."""

from __future__ import annotations

import pandas as pd
import pretty_midi
import pytest

from melody_utils import load_checkpoint
from melody_utils.checkpoint import PRETRAINED, read_metadata
from melody_utils.pipeline import main


def test_main_job_writes_every_output(tmp_path, capsys, one_torch_thread):
    out = tmp_path / "out"
    assert main(["run", "--profile", "fast", "--limit", "40", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Test split" in printed and "trigram" in printed
    model, norm, meta = load_checkpoint(out / "checkpoints" / "melody_lstm_bach")
    assert meta["source"] == "bach" and meta["split_seed"] == 0
    assert set(meta["baselines"]) == {
        "unigram",
        "bigram",
        "trigram",
        "repeat previous",
        "training mean",
    }
    assert meta["test_metrics"]["pitch_nll"] > 0
    history = pd.read_csv(out / "history.csv")
    assert len(history) == 2 and {"train_pitch_loss", "val_cont_loss"} <= set(history.columns)
    assert (out / "loss_curves.png").stat().st_size > 10_000
    mids = sorted((out / "music").glob("*.mid"))
    assert len(mids) == 3
    for mid in mids:
        pm = pretty_midi.PrettyMIDI(str(mid))
        assert sum(len(i.notes) for i in pm.instruments) == 32 + 128
        assert mid.with_suffix(".wav").stat().st_size > 1000
        assert mid.with_suffix(".png").exists()
    # an interrupted run resumes: nothing left to train, same best epoch
    assert (
        main(
            [
                "run",
                "--profile",
                "fast",
                "--limit",
                "40",
                "--out",
                str(out),
                "--resume",
                "--no-music",
            ]
        )
        == 0
    )
    assert len(pd.read_csv(out / "history.csv")) == 2


def test_pretrained_checkpoint_is_committed_and_beats_the_baselines():
    meta = read_metadata()
    assert PRETRAINED.with_suffix(".safetensors").stat().st_size < 10 * 2**20
    assert meta["source"] == "bach" and meta["profile"] == "default"
    nll = meta["test_metrics"]["pitch_nll"]
    for name, row in meta["baselines"].items():
        if row["pitch_nll"] is not None:
            assert nll < row["pitch_nll"], name
    model, norm, _ = load_checkpoint()
    assert sum(p.numel() for p in model.parameters()) == 2_237_379


def test_unknown_profile_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="unknown profile"):
        main(["run", "--profile", "huge", "--out", str(tmp_path)])
