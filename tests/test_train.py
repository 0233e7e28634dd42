"""Training: objectives, transposition, the loop, resume, checkpoints and their safety."""

from __future__ import annotations

import json
import os
import shutil
import stat
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from melody_utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from melody_utils.data import Normalizer, make_windows
from melody_utils.model import MelodyLSTM, ModelConfig
from melody_utils.train import (
    PROFILES,
    TrainConfig,
    _lr_lambda,
    evaluate,
    objective_loss,
    parameter_groups,
    train,
    transpose_batch,
)

CFG = TrainConfig(
    steps=18,
    batch_size=32,
    warmup_steps=2,
    eval_every=6,
    lr=3e-3,
    train_eval_windows=64,
    eval_batch_size=256,
)
TIMING = {"seconds", "windows_per_s", "eval_seconds"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Small models: one torch thread (see conftest.one_torch_thread)."""


@pytest.fixture(scope="module")
def small(bach_splits):
    """A small real subset: 12 training chorales, 3 validation chorales."""
    norm = Normalizer.fit(bach_splits["train"])
    return (
        norm,
        make_windows(bach_splits["train"][:12], norm),
        make_windows(bach_splits["val"][:3], norm),
    )


def fresh(seed=0, **sizes):
    torch.manual_seed(seed)
    return MelodyLSTM(ModelConfig(hidden_size=64, num_layers=2, embed_dim=16, **sizes))


# ----------------------------------------------------------------- objectives


def test_all_steps_loss_targets_are_the_inputs_shifted_by_one(small):
    _, tw, _ = small
    model = fresh().eval()
    pitch, cont = tw.gather(torch.arange(0, 200, 9))
    cfg = replace(CFG, objective="all", first_position=5)
    loss, ce, mse = objective_loss(model, pitch, cont, cfg)
    with torch.no_grad():  # by hand: the output at step t predicts note t + 1
        x = torch.cat([model.embedding(pitch[:, :-1]), cont[:, :-1]], dim=-1)
        h = model.norm(model.lstm(x)[0])  # (B, 32, H)
        ces, mses = [], []
        for t in range(5, 32):
            ces.append(F.cross_entropy(model.pitch_head(h[:, t]), pitch[:, t + 1]))
            mses.append(F.mse_loss(model.cont_head(h[:, t]), cont[:, t + 1]))
    torch.testing.assert_close(ce, torch.stack(ces).mean())
    torch.testing.assert_close(mse, torch.stack(mses).mean())
    torch.testing.assert_close(loss, ce + cfg.cont_weight * mse)


def test_all_steps_from_position_31_is_the_last_step_loss_exactly(small):
    _, tw, _ = small
    model = fresh().eval()
    pitch, cont = tw.gather(torch.arange(40))
    last = objective_loss(model, pitch, cont, replace(CFG, objective="last"))
    only31 = objective_loss(model, pitch, cont, replace(CFG, objective="all", first_position=31))
    for a, b in zip(last, only31, strict=True):
        assert torch.equal(a, b)


def test_all_steps_beats_the_last_step_at_equal_steps(bach_splits):
    """A short real-corpus run: 31 signals per window learn faster than one."""
    norm = Normalizer.fit(bach_splits["train"])
    tw = make_windows(bach_splits["train"][:60], norm)
    vw = make_windows(bach_splits["val"][:8], norm)
    nll = {}
    for objective in ("last", "all"):
        cfg = replace(
            CFG,
            steps=80,
            eval_every=80,
            objective=objective,
            first_position=1,
            transpose_min=0,
            transpose_max=0,
        )
        res = train(fresh(), tw, vw, cfg, device="cpu", progress=False)
        nll[objective] = float(res.history["val_pitch_loss"].iloc[-1])
    assert nll["all"] < nll["last"] - 0.1, nll


# ----------------------------------------------------------------- transposition


def test_transposition_shifts_pitches_only_and_stays_in_range():
    g = torch.Generator().manual_seed(0)
    pitch = torch.stack(
        [
            torch.full((33,), 60),  # room both ways
            torch.tensor([0] * 16 + [10] * 17),  # at the bottom: only upward shifts
            torch.tensor([127] * 16 + [120] * 17),  # at the top: only downward shifts
            torch.tensor([0] * 16 + [127] * 17),  # spans everything: no shift possible
        ]
    ).repeat(50, 1)
    shifted, shifts = transpose_batch(pitch, -6, 5, g)
    assert torch.equal(shifted - shifts[:, None], pitch)  # one whole shift per window
    assert shifted.min() >= 0 and shifted.max() <= 127
    kind = torch.arange(len(pitch)) % 4
    assert shifts[kind == 0].min() == -6 and shifts[kind == 0].max() == 5
    assert shifts[kind == 1].min() >= 0 and shifts[kind == 1].max() == 5
    assert shifts[kind == 2].max() <= 0 and shifts[kind == 2].min() == -6
    assert (shifts[kind == 3] == 0).all()
    # same seed, same shifts
    again = transpose_batch(pitch, -6, 5, torch.Generator().manual_seed(0))[1]
    assert torch.equal(again, shifts)


def test_validation_is_never_transposed(small):
    """The validation loss in the history is evaluate() on the untransposed windows."""
    norm, tw, vw = small
    model = fresh()
    res = train(model, tw, vw, replace(CFG, steps=6, eval_every=6), device="cpu", progress=False)
    assert res.history["val_loss"].iloc[-1] == pytest.approx(evaluate(model, vw)["loss"], rel=1e-6)
    assert (CFG.transpose_min, CFG.transpose_max) == (-6, 5)


# ----------------------------------------------------------------- the loop


def test_loss_decreases_on_real_data(small):
    norm, tw, vw = small
    model = fresh()
    before = evaluate(model, vw)
    result = train(
        model, tw, vw, replace(CFG, steps=60, eval_every=20, lr=5e-3), device="cpu", progress=False
    )
    hist = result.history
    assert hist["train_pitch_loss"].iloc[-1] < hist["train_pitch_loss"].iloc[0]
    assert result.best_val_loss < before["loss"] - 0.5
    assert set(hist.columns) >= {
        "step",
        "epoch",
        "train_pitch_loss",
        "train_cont_loss",
        "train_eval_pitch_nll",
        "val_pitch_loss",
        "val_cont_loss",
        "val_pitch_top1",
        "val_pitch_top5",
        "lr",
        "seconds",
    }
    assert hist["step"].tolist() == [20, 40, 60]
    # the model ends with its best validation weights
    assert evaluate(model, vw)["loss"] == pytest.approx(result.best_val_loss, rel=1e-5)


@pytest.mark.parametrize("stop", [8, 12], ids=["between-evaluations", "at-an-evaluation"])
def test_resume_equals_an_uninterrupted_run(small, tmp_path, stop):
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
        stop_after_steps=stop,
    )
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
    assert res.history["step"].tolist() == [6, 12, 18]
    for (k, va), vc in zip(a.state_dict().items(), c.state_dict().values(), strict=True):
        assert torch.equal(va, vc), k
    ha = pd.read_csv(tmp_path / "a" / "history.csv").drop(columns=list(TIMING))
    hb = pd.read_csv(tmp_path / "b" / "history.csv").drop(columns=list(TIMING))
    pd.testing.assert_frame_equal(ha, hb)


def test_resume_needs_last_checkpoint(small, tmp_path):
    norm, tw, vw = small
    with pytest.raises(FileNotFoundError, match="last.pt"):
        train(fresh(), tw, vw, CFG, out_dir=tmp_path, normalizer=norm, resume=True, progress=False)


def test_resume_with_other_settings_names_them(small, tmp_path):
    norm, tw, vw = small
    meta = {"source": "bach", "split_seed": 0}
    train(
        fresh(),
        tw,
        vw,
        CFG,
        out_dir=tmp_path,
        normalizer=norm,
        progress=False,
        device="cpu",
        stop_after_steps=6,
        metadata=meta,
    )
    with pytest.raises(ValueError, match=r"lr=0.003 there, 0.001 now"):
        train(
            fresh(),
            tw,
            vw,
            replace(CFG, lr=1e-3),
            out_dir=tmp_path,
            normalizer=norm,
            resume=True,
            progress=False,
            metadata=meta,
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
            metadata={**meta, "split_seed": 1},
        )


def test_learning_rate_follows_warmup_then_cosine(small):
    norm, tw, vw = small
    result = train(fresh(), tw, vw, CFG, device="cpu", progress=False)
    schedule = _lr_lambda(CFG.warmup_steps, CFG.steps, CFG.min_lr_ratio)
    expected = [CFG.lr * schedule(step) for step in result.history["step"]]
    np.testing.assert_allclose(result.history["lr"], expected, rtol=1e-9)
    assert result.history["lr"].iloc[0] > result.history["lr"].iloc[-1]


def test_weight_decay_spares_embedding_biases_and_layernorm():
    model = fresh()
    decayed, exempt = parameter_groups(model, 0.1, "weights")
    names = {id(p): n for n, p in model.named_parameters()}
    assert decayed["weight_decay"] == 0.1 and exempt["weight_decay"] == 0.0
    assert sorted(names[id(p)] for p in decayed["params"]) == sorted(
        n for n, p in model.named_parameters() if p.dim() == 2 and not n.startswith("embedding")
    )
    assert "embedding.weight" in {names[id(p)] for p in exempt["params"]}
    assert "norm.weight" in {names[id(p)] for p in exempt["params"]}
    (everything,) = parameter_groups(model, 0.1, "all")
    assert len(everything["params"]) == len(list(model.parameters()))


def test_an_exempt_embedding_keeps_unseen_rows_exactly(small):
    """No decay and no gradient: a pitch never seen stays exactly at its random start."""
    norm, tw, vw = small
    model = fresh()
    start = model.embedding.weight.detach().clone()
    train(
        model, tw, vw, replace(CFG, transpose_min=0, transpose_max=0), device="cpu", progress=False
    )
    unseen = torch.ones(128, dtype=torch.bool)
    unseen[tw.pitch.long().unique()] = False
    assert torch.equal(model.embedding.weight[unseen], start[unseen])
    assert not torch.equal(model.embedding.weight[~unseen], start[~unseen])


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
    nll = F.cross_entropy(logits.double(), target)
    assert metrics["pitch_nll"] == pytest.approx(float(nll), rel=1e-5)
    mse = ((cont - vw.target_cont) ** 2).mean(0).double()
    assert metrics["mse_duration"] == pytest.approx(float(mse[1]), rel=1e-5)


def test_windows_must_match_the_models_length(small, bach_splits):
    norm, tw, vw = small
    short = make_windows(bach_splits["train"][:3], norm, seq_len=16)
    with pytest.raises(ValueError, match="16 notes but the model takes 32"):
        train(fresh(), short, vw, CFG, progress=False)


def test_training_rejects_empty_windows_and_bad_configs(small):
    norm, tw, vw = small
    with pytest.raises(ValueError, match="empty"):
        train(fresh(), make_windows([], norm), vw, CFG, progress=False)
    with pytest.raises(TypeError, match="make_windows"):
        train(fresh(), (vw.pitch_seq, vw.cont_seq), vw, CFG, progress=False)
    for bad in (
        {"steps": 0},
        {"objective": "every"},
        {"transpose_min": 2},
        {"lr": float("nan")},
        {"decay": "some"},
        {"batch_size": True},
        {"precision": "fp16"},
        {"patience": 0},
    ):
        with pytest.raises(ValueError, match="TrainConfig|transposition"):
            replace(CFG, **bad)


def test_bf16_autocast_runs_on_the_cpu(small):
    norm, tw, vw = small
    result = train(
        fresh(), tw, vw, replace(CFG, steps=6, precision="bf16"), device="cpu", progress=False
    )
    assert np.isfinite(result.history["train_loss"]).all()
    assert np.isfinite(result.best_val_loss)


def test_profiles_are_valid_and_the_default_is_the_documented_recipe():
    assert PROFILES["default"] == TrainConfig()
    d = PROFILES["default"]
    assert d.objective == "all" and d.decay == "weights"
    assert (d.transpose_min, d.transpose_max) != (0, 0)
    card = PROFILES["card"]
    assert card.objective == "last" and (card.transpose_min, card.transpose_max) == (0, 0)


# ----------------------------------------------------------------- checkpoints


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
    stem.with_suffix(".json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="not a melody-lstm checkpoint"):
        load_checkpoint(stem)
    stem.with_suffix(".json").write_text('{"format": "melody-lstm-checkpoint", "mod')
    with pytest.raises(CheckpointError, match="truncated or not JSON"):
        load_checkpoint(stem)


def test_checkpoint_with_nan_weights_is_refused(small, tmp_path):
    norm, tw, vw = small
    model = fresh()
    with torch.no_grad():
        model.pitch_head.bias[3] = float("nan")
    stem = save_checkpoint(tmp_path / "nan", model, norm, {})
    with pytest.raises(CheckpointError, match="NaN"):
        load_checkpoint(stem)


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
