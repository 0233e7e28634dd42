"""Training loop, resume, checkpoints and the safety of loading them."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from melody_utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from melody_utils.data import Normalizer, make_windows
from melody_utils.model import MelodyLSTM
from melody_utils.train import TrainConfig, evaluate, train

CFG = TrainConfig(
    epochs=3, batch_size=32, max_steps_per_epoch=6, warmup_steps=2, lr=3e-3, patience=5
)


@pytest.fixture(scope="module")
def small(bach_splits):
    """A small real subset: 12 training chorales, 3 validation chorales."""
    norm = Normalizer.fit(bach_splits["train"])
    return (
        norm,
        make_windows(bach_splits["train"][:12], norm),
        make_windows(bach_splits["val"][:3], norm),
    )


def fresh(seed=0):
    torch.manual_seed(seed)
    return MelodyLSTM(hidden_size=64, num_layers=2, embed_dim=16)


def test_loss_decreases_on_real_data(small, tmp_path):
    norm, tw, vw = small
    model = fresh()
    before = evaluate(model, vw)
    result = train(
        model,
        tw,
        vw,
        TrainConfig(epochs=4, batch_size=64, max_steps_per_epoch=15, warmup_steps=5, lr=5e-3),
        device="cpu",
        progress=False,
    )
    hist = result.history
    assert hist["train_pitch_loss"].iloc[-1] < hist["train_pitch_loss"].iloc[0]
    assert result.best_val_loss < before["loss"] - 0.5
    assert set(hist.columns) >= {
        "train_pitch_loss",
        "train_cont_loss",
        "val_pitch_loss",
        "val_cont_loss",
        "val_pitch_top1",
        "val_pitch_top5",
        "lr",
        "seconds",
    }
    # the model ends with its best validation weights
    assert evaluate(model, vw)["loss"] == pytest.approx(result.best_val_loss, rel=1e-5)


def test_resume_equals_an_uninterrupted_run(small, tmp_path):
    norm, tw, vw = small
    a = fresh()
    train(a, tw, vw, CFG, out_dir=tmp_path / "a", normalizer=norm, progress=False, device="cpu")
    b = fresh()
    train(
        b,
        tw,
        vw,
        CFG,
        out_dir=tmp_path / "b",
        normalizer=norm,
        progress=False,
        device="cpu",
        stop_after_epochs=1,
    )
    assert len(json.loads((tmp_path / "b" / "best.json").read_text())["history"]) == 1
    c = fresh(seed=99)  # different init: everything must come from last.pt
    res = train(
        c,
        tw,
        vw,
        CFG,
        out_dir=tmp_path / "b",
        normalizer=norm,
        progress=False,
        device="cpu",
        resume=True,
    )
    assert len(res.history) == 3
    for (k, va), vc in zip(a.state_dict().items(), c.state_dict().values(), strict=True):
        assert torch.equal(va, vc), k
    ha = (tmp_path / "a" / "history.csv").read_text().splitlines()
    hb = (tmp_path / "b" / "history.csv").read_text().splitlines()
    assert [r.split(",")[:8] for r in ha] == [r.split(",")[:8] for r in hb]


def test_resume_needs_last_checkpoint(small, tmp_path):
    norm, tw, vw = small
    with pytest.raises(FileNotFoundError, match="last.pt"):
        train(fresh(), tw, vw, CFG, out_dir=tmp_path, normalizer=norm, resume=True, progress=False)


def test_checkpoint_round_trip_and_corruption(small, tmp_path):
    norm, tw, vw = small
    model = fresh().eval()
    stem = save_checkpoint(tmp_path / "m", model, norm, {"source": "bach", "split_seed": 0})
    loaded, lnorm, meta = load_checkpoint(stem.with_suffix(".safetensors"))
    assert not loaded.training
    assert meta["source"] == "bach" and meta["split_seed"] == 0
    assert meta["versions"]["torch"] == torch.__version__
    p, c = tw.pitch_seq[:4], tw.cont_seq[:4]
    assert torch.equal(loaded(p, c)[0], model(p, c)[0])
    assert lnorm.to_dict() == norm.to_dict()

    # truncated weights
    bad = tmp_path / "trunc"
    shutil.copy(stem.with_suffix(".json"), bad.with_suffix(".json"))
    data = stem.with_suffix(".safetensors").read_bytes()
    bad.with_suffix(".safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(bad)
    # weights of another architecture than the config says
    other = tmp_path / "other"
    save_checkpoint(other, MelodyLSTM(hidden_size=32, num_layers=1, embed_dim=8), norm, {})
    meta = json.loads(other.with_suffix(".json").read_text())
    meta["model_config"] = model.config.to_dict()
    other.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="another architecture"):
        load_checkpoint(other)
    # missing files and foreign JSON
    with pytest.raises(FileNotFoundError, match="not found"):
        load_checkpoint(tmp_path / "missing")
    stem.with_suffix(".json").write_text('{"format": "something else"}')
    with pytest.raises(CheckpointError, match="not a melody-lstm checkpoint"):
        load_checkpoint(stem)
    stem.with_suffix(".json").write_text('{"format": "melody-lstm-checkpoint", "mod')
    with pytest.raises(CheckpointError, match="truncated or not JSON"):
        load_checkpoint(stem)


def test_training_rejects_empty_windows(small):
    norm, tw, vw = small
    empty = make_windows([], norm)
    with pytest.raises(ValueError, match="empty"):
        train(fresh(), empty, vw, CFG, progress=False)
