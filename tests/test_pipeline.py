"""The main job end to end (``python -m melody_utils``), its command line and the
committed checkpoint, on the real corpus."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pretty_midi
import pytest

from melody_utils import load_checkpoint
from melody_utils.baselines import fit_baselines
from melody_utils.checkpoint import PRETRAINED, read_metadata
from melody_utils.config import REPO_ROOT
from melody_utils.generate import primers_from_pieces
from melody_utils.pipeline import main, prepare
from melody_utils.train import evaluate

FAST = ["--profile", "fast", "--limit", "40"]


def test_main_job_writes_every_output(tmp_path, capsys, one_torch_thread):
    out = tmp_path / "out"
    # flags without the `run` word work too
    assert main([*FAST, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Test split" in printed and "trigram" in printed
    assert printed.count("longest run shared with the training set") == 3  # the copy check
    model, norm, meta = load_checkpoint(out / "checkpoints" / "melody_lstm_bach")
    assert meta["source"] == "bach" and meta["split_seed"] == 0 and meta["limit"] == 40
    assert len(meta["data_fingerprint"]) == 16
    sidecar = (out / "checkpoints" / "melody_lstm_bach.json").read_text()
    assert str(tmp_path) not in sidecar and str(REPO_ROOT) not in sidecar, "no machine paths"
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
    # music continues the opening of three held-out chorales, named after them
    prep = prepare("bach", 0, 40, progress=False)
    primers = list(primers_from_pieces(prep.splits["test"]).items())[:3]
    mids = sorted((out / "music").glob("*.mid"))
    assert [m.name for m in mids] == sorted(
        f"{pid.replace('/', '_')}_continued.mid" for pid, _ in primers
    )
    for pid, primer in primers:
        mid = out / "music" / f"{pid.replace('/', '_')}_continued.mid"
        pm = pretty_midi.PrettyMIDI(str(mid))
        notes = sorted(
            (n for i in pm.instruments for n in i.notes), key=lambda n: (n.start, n.pitch)
        )
        assert len(notes) == 32 + 128
        # the context is notes 33..64 of the piece, not its final cadence
        assert sorted(n.pitch for n in notes[:8]) == sorted(primer["pitch"].iloc[32:40])
        assert mid.with_suffix(".wav").stat().st_size > 1000
        assert mid.with_suffix(".png").exists()
    # an interrupted run resumes: nothing left to train, same history
    assert main(["run", *FAST, "--out", str(out), "--resume", "--no-music"]) == 0
    assert len(pd.read_csv(out / "history.csv")) == 2
    # resuming with another setting names it
    capsys.readouterr()
    assert main([*FAST, "--out", str(out), "--resume", "--steps", "12", "--no-music"]) == 2
    err = capsys.readouterr().err
    assert "steps=8 there, 12 now" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "--epochs: must be at least 1"),
        (["--steps", "-1"], "--steps: must be at least 1"),
        (["--steps", "two"], "expected a whole number"),
        (["--steps", "5", "--epochs", "1"], "not allowed with argument"),
        (["--limit", "0"], "--limit: must be at least 1"),
        (["--split-seed", "-3"], "--split-seed: must lie in"),
        (["--source", ""], "--source is empty"),
        (["--source", "   "], "--source is empty"),
        (["--source", "bahc"], "did you mean 'bach'"),
        (["--source", "Bach"], "did you mean 'bach'"),
        (["--profile", "huge"], "invalid choice: 'huge'"),
        (["--device", "gpu"], "unknown device 'gpu'"),
        (["--resume"], "no interrupted run to resume"),
        (["--source", "essen", "--publish"], "--publish"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_command_line_errors_are_one_line_and_write_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert not out.exists(), "nothing may be written before the arguments are checked"


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    file = tmp_path / "taken"
    file.write_text("x")
    assert main(["--out", str(file)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_module_entry_point_exits_2_without_a_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "melody_utils", "--epochs", "0", "--out", str(tmp_path / "o")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith("python -m melody_utils: error: argument --epochs")
    assert "Traceback" not in done.stderr


def test_pretrained_checkpoint_beats_the_baselines_on_the_test_split(bach, one_torch_thread):
    """Re-evaluated here on the real test split, not read from the sidecar."""
    meta = read_metadata()
    assert PRETRAINED.with_suffix(".safetensors").stat().st_size < 10 * 2**20
    assert meta["source"] == "bach" and meta["profile"] == "default"
    model, norm, _ = load_checkpoint()
    assert sum(p.numel() for p in model.parameters()) == 2_237_379
    prep = prepare("bach", meta["split_seed"], progress=False)
    assert prep.corpus.fingerprint == meta["data_fingerprint"]
    test = prep.windows["test"]
    metrics = evaluate(model, test)
    for key in ("pitch_nll", "pitch_top1", "mse_step", "mse_duration"):
        assert metrics[key] == pytest.approx(meta["test_metrics"][key], rel=1e-4, abs=1e-6), key
    baselines = fit_baselines(prep.splits["train"], prep.normalizer).evaluate(test)
    for name, row in baselines.iterrows():
        if not pd.isna(row["pitch_nll"]):
            assert metrics["pitch_nll"] < row["pitch_nll"], name
        if not pd.isna(row["mse_step"]):
            assert metrics["mse_step"] < row["mse_step"], name


def test_sidecar_is_strict_json():
    text = Path(f"{PRETRAINED}.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
