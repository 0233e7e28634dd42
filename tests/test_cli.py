"""The main job, ``python -m melody_utils [run]``: its command-line errors (one line, exit
status 2, nothing written) and a short real run on the chorales with every output read back."""

from __future__ import annotations

import json
import subprocess
import sys
import wave

import pandas as pd
import pytest

from melody_utils.__main__ import PROG, main
from melody_utils.config import REPO_ROOT
from melody_utils.data import load_corpus, prepare
from melody_utils.generate import primers_from_pieces
from melody_utils.notes import CHURCH_ORGAN, file_stem, parse_midi
from melody_utils.train import PROFILES, load_checkpoint

FAST = ["--profile", "fast", "--limit", "20"]


def run_module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "melody_utils", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_the_module_exits_2_with_one_line_and_no_traceback(tmp_path):
    out = tmp_path / "o"
    done = run_module("--epochs", "0", "--out", str(out))
    assert done.returncode == 2 and done.stdout == ""
    assert (
        done.stderr == f"{PROG}: error: argument --epochs: must lie in 1..inf, got 0 (see --help)\n"
    )
    done = run_module("run", "--source", "bahc", "--out", str(out))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"{PROG}: error: source 'bahc' is neither bach, essen nor a folder; did you mean 'bach'?"
    ]
    assert not out.exists()


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    for option in ("--source", "--profile", "--steps", "--epochs", "--limit", "--resume", "--out"):
        assert option in text, option


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "argument --epochs: must lie in 1..inf, got 0"),
        (["--steps", "-1"], "argument --steps: must lie in 1..inf, got -1"),
        (["--steps", "two"], "argument --steps: expected a whole number, got 'two'"),
        (["--steps", "5", "--epochs", "1"], "not allowed with argument --steps"),
        (["--limit", "0"], "argument --limit: must lie in 1..inf"),
        (["--split-seed", "-3"], "argument --split-seed: must lie in 0..4294967295"),
        (["--split-by", "title"], "argument --split-by: invalid choice: 'title'"),
        (["--source", ""], "--source is empty"),
        (["--source", "   "], "--source is empty"),
        (["--source", "bahc"], "did you mean 'bach'"),
        (["--source", "Bach"], "did you mean 'bach'"),
        (["--profile", "huge"], "invalid choice: 'huge'"),
        (["--device", "gpu"], "--device: unknown device 'gpu'"),
        (["--device", "tpu"], "--device: unknown device 'tpu'"),
        (["--resume"], "--resume: no interrupted run in out/train/ (last.pt is missing)"),
        (["--source", "essen", "--publish"], "--publish replaces the committed Bach checkpoint"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["run", "extra"], "unrecognized arguments: extra"),
    ],
)
def test_command_line_errors_are_one_line_and_write_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{PROG}: error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists(), "nothing may be written before the arguments are checked"


def test_out_and_source_that_are_files_are_refused(tmp_path, capsys):
    file = tmp_path / "taken"
    file.write_text("x")
    assert main(["--out", str(file)]) == 2
    assert "--out" in capsys.readouterr().err and file.read_text() == "x"
    assert main(["--source", str(file), "--out", str(tmp_path / "o")]) == 2
    assert "is a file; pass the folder that holds it" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--source", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "no .mid or .midi file" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_short_run_writes_every_output(tmp_path, capsys, monkeypatch, one_torch_thread):
    monkeypatch.setenv("MELODY_AUDIO_BACKEND", "builtin")  # the audio tests test the SoundFont
    out = tmp_path / "out"
    assert main(["run", *FAST, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Test split" in printed and "trigram" in printed and "MelodyLSTM" in printed
    prep = prepare("bach", 0, 20, progress=False)
    primers = list(primers_from_pieces(prep.splits["test"]).items())[:3]
    assert len(primers) == 2  # 20 chorales: 2 held out
    assert printed.count("longest run shared with the training set") == 2  # the copy check
    assert "real (mean over windows of a piece, then 2 pieces)" in printed
    # the checkpoint names its data, holds no machine path and loads alone
    stem = out / "checkpoints" / "melody_lstm_bach"
    model, norm, meta = load_checkpoint(stem)
    assert meta["source"] == "bach" and meta["split_seed"] == 0 and meta["limit"] == 20
    assert meta["data_fingerprint"] == load_corpus("bach", limit=20, progress=False).fingerprint
    assert meta["profile"] == "fast" and meta["train_config"] == PROFILES["fast"].to_dict()
    assert set(meta["baselines"]) == {
        "unigram", "bigram", "trigram", "repeat previous", "training mean",
    }  # fmt: skip
    sidecar = stem.with_suffix(".json").read_text()
    assert str(tmp_path) not in sidecar and str(REPO_ROOT) not in sidecar
    json.loads(sidecar, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert {p.name for p in (out / "train").iterdir()} >= {
        "best.safetensors", "best.json", "last.pt", "history.csv",
    }  # fmt: skip
    # history and test metrics as CSV
    history = pd.read_csv(out / "history.csv")
    assert history["step"].tolist() == [4, 8]  # the fast profile: 8 steps, evaluated every 4
    assert {"train_pitch_loss", "val_loss", "lr"} <= set(history.columns)
    metrics = pd.read_csv(out / "test_metrics.csv", index_col=0)
    assert list(metrics.index) == [
        "MelodyLSTM",
        "unigram",
        "bigram",
        "trigram",
        "repeat previous",
        "training mean",
    ]
    assert metrics.loc["MelodyLSTM", "pitch_nll"] == pytest.approx(
        meta["test_metrics"]["pitch_nll"]
    )
    assert (out / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # music: each held-out primer continued by 128 notes, as MIDI, WAV and a piano roll
    mids = sorted(p.name for p in (out / "music").glob("*.mid"))
    assert mids == sorted(f"{file_stem(pid)}_continued_1.mid" for pid, _ in primers)
    for pid, primer in primers:
        stem = out / "music" / f"{file_stem(pid)}_continued"
        notes = parse_midi(stem.parent / f"{stem.name}_1.mid").notes
        assert len(notes) == 32 + 128 and (notes["program"] == CHURCH_ORGAN).all()
        # the context is notes 33..64 of the piece: its opening phrases, not its cadence
        first = sorted(notes.sort_values(["start", "pitch"])["pitch"].iloc[:8])
        assert first == sorted(primer["pitch"].iloc[32:40])
        with wave.open(str(stem.with_suffix(".wav"))) as w:
            assert w.getnframes() > w.getframerate()  # seconds of sound
        assert stem.with_suffix(".png").stat().st_size > 1000
    # an interrupted run resumes: nothing left to train, the same history
    assert main(["run", *FAST, "--out", str(out), "--resume", "--no-music"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out / "history.csv"), history)
    # resuming with another setting names it, in one line
    capsys.readouterr()
    assert main([*FAST, "--out", str(out), "--resume", "--steps", "12", "--no-music"]) == 2
    err = capsys.readouterr().err
    assert "steps=8 there, 12 now" in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
