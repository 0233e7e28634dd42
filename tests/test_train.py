"""Training loop, resume, checkpoints and the safety of loading them."""

from __future__ import annotations

import json
import os
import shutil
import stat
from dataclasses import replace

import numpy as np
import pytest
import torch

from melody_utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from melody_utils.data import Normalizer, make_windows
from melody_utils.model import MelodyLSTM
from melody_utils.train import TrainConfig, _lr_lambda, evaluate, train

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


def test_learning_rate_follows_warmup_then_cosine(small):
    norm, tw, vw = small
    result = train(fresh(), tw, vw, CFG, device="cpu", progress=False)
    total = CFG.epochs * CFG.max_steps_per_epoch
    schedule = _lr_lambda(CFG.warmup_steps, total)
    expected = [CFG.lr * schedule(CFG.max_steps_per_epoch * (e + 1)) for e in range(CFG.epochs)]
    np.testing.assert_allclose(result.history["lr"], expected, rtol=1e-9)
    assert result.history["lr"].iloc[0] > result.history["lr"].iloc[-1]


def test_top1_and_top5_are_computed_from_the_ranked_logits(small):
    norm, tw, vw = small
    model = fresh().eval()
    metrics = evaluate(model, vw, batch_size=50)
    with torch.no_grad():
        logits, cont = model(vw.pitch_seq, vw.cont_seq)
    target = vw.target_pitch
    assert metrics["pitch_top1"] == pytest.approx((logits.argmax(-1) == target).double().mean())
    rank = (logits > logits.gather(1, target[:, None])).sum(-1)  # pitches ranked above
    assert metrics["pitch_top5"] == pytest.approx((rank < 5).double().mean())
    nll = torch.nn.functional.cross_entropy(logits.double(), target)
    assert metrics["pitch_nll"] == pytest.approx(float(nll), rel=1e-5)
    mse = ((cont - vw.target_cont) ** 2).mean(0).double()
    assert metrics["mse_duration"] == pytest.approx(float(mse[1]), rel=1e-5)


def test_windows_must_match_the_models_length(small, bach_splits):
    norm, tw, vw = small
    short = make_windows(bach_splits["train"][:3], norm, seq_len=16)
    with pytest.raises(ValueError, match="16 notes but the model takes 32"):
        train(fresh(), short, vw, CFG, progress=False)


def test_resume_with_other_settings_names_them(small, tmp_path):
    norm, tw, vw = small
    train(
        fresh(),
        tw,
        vw,
        CFG,
        out_dir=tmp_path,
        normalizer=norm,
        progress=False,
        device="cpu",
        stop_after_epochs=1,
        metadata={"source": "bach", "split_seed": 0},
    )
    other = replace(CFG, lr=1e-3)
    with pytest.raises(ValueError, match=r"lr=0.003 there, 0.001 now"):
        train(
            fresh(),
            tw,
            vw,
            other,
            out_dir=tmp_path,
            normalizer=norm,
            resume=True,
            progress=False,
            metadata={"source": "bach", "split_seed": 0},
        )
    with pytest.raises(ValueError, match=r"split_seed=0 there, 1 now"):
        train(
            fresh(),
            tw,
            vw,
            CFG,
            out_dir=tmp_path,
            normalizer=norm,
            resume=True,
            progress=False,
            metadata={"source": "bach", "split_seed": 1},
        )


def test_bf16_autocast_runs_on_the_cpu(small):
    norm, tw, vw = small
    config = replace(CFG, epochs=1, precision="bf16")
    result = train(fresh(), tw, vw, config, device="cpu", progress=False)
    assert np.isfinite(result.history["train_loss"]).all()
    assert np.isfinite(result.best_val_loss)


def test_checkpoint_names_with_dots_stay_apart(small, tmp_path):
    norm, tw, vw = small
    a, b = fresh(0).eval(), fresh(1).eval()
    save_checkpoint(tmp_path / "run.lr1e-3", a, norm, {})
    save_checkpoint(tmp_path / "run.lr3e-3", b, norm, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "run.lr1e-3.json",
        "run.lr1e-3.safetensors",
        "run.lr3e-3.json",
        "run.lr3e-3.safetensors",
    ]
    p, c = tw.pitch_seq[:2], tw.cont_seq[:2]
    for name, model in (("run.lr1e-3", a), ("run.lr3e-3.safetensors", b), ("run.lr3e-3.json", b)):
        loaded, _, _ = load_checkpoint(tmp_path / name)
        assert torch.equal(loaded(p, c)[0], model(p, c)[0]), name
    # "x.pt" is not silently read as x.safetensors
    save_checkpoint(tmp_path / "x", a, norm, {})
    (tmp_path / "x.pt").write_bytes(b"a training state")
    with pytest.raises(FileNotFoundError, match="x.pt.safetensors.*training state"):
        load_checkpoint(tmp_path / "x.pt")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_checkpoint_files_respect_the_umask(small, tmp_path, umask, mode):
    norm, tw, vw = small
    old = os.umask(umask)
    try:
        stem = save_checkpoint(tmp_path / "m", fresh(), norm, {})
    finally:
        os.umask(old)
    for suffix in (".safetensors", ".json"):
        assert stat.S_IMODE(os.stat(f"{stem}{suffix}").st_mode) == mode
