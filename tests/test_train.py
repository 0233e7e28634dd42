"""melody_utils.train: the recipe (objectives, transposition, schedule, decay groups), the loop
and its resume, the card's metrics, and checkpoints with their failure modes, on the real
chorales and tiny models."""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from melody_utils.data import Normalizer, load_corpus, make_windows, prepare
from melody_utils.model import MelodyLSTM, ModelConfig, build_model
from melody_utils.train import (
    PRETRAINED,
    PROFILES,
    CheckpointError,
    TrainConfig,
    checkpoint_files,
    evaluate,
    load_checkpoint,
    lr_lambda,
    objective_loss,
    parameter_groups,
    piece_bootstrap,
    read_metadata,
    results_table,
    save_checkpoint,
    train,
    transpose_batch,
    window_scores,
)

TINY = ModelConfig(embed_dim=8, hidden_size=32, num_layers=2)
CFG = TrainConfig(
    steps=18,
    batch_size=32,
    warmup_steps=2,
    eval_every=6,
    train_eval_windows=64,
    eval_batch_size=256,
)
TIMING = ["seconds", "windows_per_s", "eval_seconds"]
META = {"source": "bach", "split_seed": 0, "data_fingerprint": "abc", "limit": 20}


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Small models: one torch thread."""


@pytest.fixture(scope="module")
def small(bach_splits):
    """A small real subset: 12 training chorales, 3 validation chorales."""
    norm = Normalizer.fit(bach_splits["train"])
    return (
        norm,
        make_windows(bach_splits["train"][:12], norm),
        make_windows(bach_splits["val"][:3], norm),
    )


def fresh(seed: int = 0, config: ModelConfig = TINY) -> MelodyLSTM:
    return build_model(config, seed)


def quiet(model, tw, vw, config=CFG, **kw):
    return train(model, tw, vw, config, device="cpu", progress=False, **kw)


# --------------------------------------------------------------------------- the recipe


@pytest.mark.parametrize(
    "bad",
    [
        {"steps": 0},
        {"steps": 2.5},
        {"batch_size": True},
        {"lr": float("nan")},
        {"lr": -1e-3},
        {"min_lr_ratio": 1.5},
        {"warmup_steps": -1},
        {"objective": "every"},
        {"decay": "some"},
        {"precision": "fp16"},
        {"patience": 0},
        {"grad_clip": 0},
        {"eval_every": 0},
        {"transpose_min": 2},
        {"transpose_max": -1},
        {"first_position": -1},
        {"cont_weight": "1"},
    ],
)
def test_bad_train_configs_are_value_errors(bad):
    with pytest.raises(ValueError, match="TrainConfig"):
        replace(CFG, **bad)


def test_profiles_are_valid_and_the_default_is_the_documented_recipe():
    assert PROFILES["default"] == TrainConfig()
    d = PROFILES["default"]
    assert d.objective == "all" and d.decay == "weights" and d.first_position == 8
    assert (d.transpose_min, d.transpose_max) == (-6, 5)
    card = PROFILES["card"]
    assert card.objective == "last" and (card.transpose_min, card.transpose_max) == (0, 0)
    assert PROFILES["fast"].steps < 20 and PROFILES["long"].steps > d.steps
    assert TrainConfig.from_dict(card.to_dict()) == card


def test_lr_lambda_warms_up_then_decays_by_a_cosine_to_its_floor():
    f = lr_lambda(10, 110, 0.05)
    warm = [f(s) for s in range(10)]
    assert warm == pytest.approx([(s + 1) / 10 for s in range(10)])  # linear, reaching 1
    assert f(10) == pytest.approx(1.0)  # the cosine starts at the peak
    assert f(60) == pytest.approx(0.05 + 0.95 * 0.5)  # half way: half way down
    assert f(35) == pytest.approx(0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert f(110) == pytest.approx(0.05) and f(500) == pytest.approx(0.05)  # the floor
    decay = [f(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(decay, decay[1:], strict=False))
    g = lr_lambda(0, 100, 0.0)  # no warm-up, decay to 0
    assert g(0) == pytest.approx(1.0) and g(100) == pytest.approx(0.0)


def test_the_learning_rate_of_each_history_row_follows_the_schedule(small):
    norm, tw, vw = small
    result = quiet(fresh(), tw, vw)
    schedule = lr_lambda(CFG.warmup_steps, CFG.steps, CFG.min_lr_ratio)
    expected = [CFG.lr * schedule(step) for step in result.history["step"]]
    np.testing.assert_allclose(result.history["lr"], expected, rtol=1e-9)


def test_weight_decay_spares_embedding_biases_and_layernorm():
    model = fresh()
    decayed, exempt = parameter_groups(model, 0.1, "weights")
    names = {id(p): n for n, p in model.named_parameters()}
    assert decayed["weight_decay"] == 0.1 and exempt["weight_decay"] == 0.0
    want = sorted(
        n for n, p in model.named_parameters() if p.dim() == 2 and not n.startswith("embedding")
    )
    assert sorted(names[id(p)] for p in decayed["params"]) == want
    assert {"embedding.weight", "norm.weight", "norm.bias", "lstm.bias_ih_l0"} <= {
        names[id(p)] for p in exempt["params"]
    }
    assert len(decayed["params"]) + len(exempt["params"]) == len(list(model.parameters()))
    (everything,) = parameter_groups(model, 0.1, "all")
    assert len(everything["params"]) == len(list(model.parameters()))
    assert everything["weight_decay"] == 0.1
    # without an embedding (one-hot input) every 2-D weight decays
    onehot = fresh(config=replace(TINY, pitch_input="onehot"))
    decayed, exempt = parameter_groups(onehot, 0.1, "weights")
    assert all(p.dim() == 2 for p in decayed["params"]) and all(
        p.dim() == 1 for p in exempt["params"]
    )


def test_transposition_shifts_pitches_only_and_stays_in_range():
    g = torch.Generator().manual_seed(0)
    pitch = torch.stack(
        [
            torch.full((33,), 60),  # room both ways
            torch.tensor([0] * 16 + [10] * 17),  # at the bottom: only upward
            torch.tensor([127] * 16 + [120] * 17),  # at the top: only downward
            torch.tensor([0] * 16 + [127] * 17),  # spans everything: no shift
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
    assert torch.equal(transpose_batch(pitch, -6, 5, torch.Generator().manual_seed(0))[1], shifts)


# --------------------------------------------------------------------------- objectives


def test_all_objective_is_every_output_from_first_position_by_hand(small):
    _, tw, _ = small
    model = fresh().eval()
    pitch, cont = tw.gather(torch.arange(0, 200, 9))
    cfg = replace(CFG, objective="all", first_position=5, cont_weight=0.5)
    loss, ce, mse = objective_loss(model, pitch, cont, cfg)
    with torch.no_grad():  # the output at step t predicts note t + 1
        x = torch.cat([model.embedding(pitch[:, :-1]), cont[:, :-1]], dim=-1)
        h = model.norm(model.lstm(x)[0])
        ces = [F.cross_entropy(model.pitch_head(h[:, t]), pitch[:, t + 1]) for t in range(5, 32)]
        mses = [F.mse_loss(model.cont_head(h[:, t]), cont[:, t + 1]) for t in range(5, 32)]
    torch.testing.assert_close(ce, torch.stack(ces).mean())
    torch.testing.assert_close(mse, torch.stack(mses).mean())
    torch.testing.assert_close(loss, ce + 0.5 * mse)


def test_last_objective_is_the_prediction_after_the_full_window(small):
    _, tw, _ = small
    model = fresh().eval()
    pitch, cont = tw.gather(torch.arange(40))
    last = objective_loss(model, pitch, cont, replace(CFG, objective="last"))
    with torch.no_grad():
        logits, pred = model(pitch[:, :-1], cont[:, :-1])
    torch.testing.assert_close(last[1], F.cross_entropy(logits, pitch[:, -1]))
    torch.testing.assert_close(last[2], F.mse_loss(pred, cont[:, -1]))
    only31 = objective_loss(model, pitch, cont, replace(CFG, objective="all", first_position=31))
    for a, b in zip(last, only31, strict=True):
        assert torch.equal(a, b)
    every = objective_loss(model, pitch, cont, replace(CFG, objective="all", first_position=0))
    assert not torch.equal(every[1], last[1])


# --------------------------------------------------------------------------- the loop


def test_a_short_real_run_lowers_the_loss_and_keeps_its_best_weights(small):
    norm, tw, vw = small
    model = fresh()
    before = evaluate(model, vw)
    result = quiet(model, tw, vw, replace(CFG, steps=60, eval_every=20, lr=5e-3))
    hist = result.history
    assert hist["step"].tolist() == [20, 40, 60]
    assert hist["train_pitch_loss"].iloc[-1] < hist["train_pitch_loss"].iloc[0]
    assert result.best_val_loss < before["loss"] - 0.5
    assert set(hist.columns) >= {
        "step",
        "epoch",
        "lr",
        "train_loss",
        "train_pitch_loss",
        "train_cont_loss",
        "train_eval_pitch_nll",
        "val_loss",
        "val_pitch_loss",
        "val_cont_loss",
        "val_pitch_top1",
        "val_pitch_top5",
        *TIMING,
    }
    assert hist["epoch"].iloc[-1] == pytest.approx(60 * 32 / len(tw))
    assert result.best_step == int(hist.loc[hist["val_loss"].idxmin(), "step"])
    assert not model.training and not result.stopped_early and result.device == "cpu"
    assert result.train_seconds > 0
    # the model ends with the weights of its best validation loss, scored untransposed
    assert evaluate(model, vw)["loss"] == pytest.approx(result.best_val_loss, rel=1e-6)


def test_patience_stops_a_run_that_does_not_improve(small):
    norm, tw, vw = small
    cfg = replace(CFG, steps=40, eval_every=4, lr=0.0, patience=2)  # lr 0: nothing changes
    result = quiet(fresh(), tw, vw, cfg)
    assert result.stopped_early
    assert result.history["step"].tolist() == [4, 8, 12] and result.best_step == 4


def test_an_exempt_embedding_keeps_unseen_rows_exactly(small):
    """No decay and no gradient: a pitch never seen stays exactly at its random start."""
    norm, tw, vw = small
    model = fresh()
    start = model.embedding.weight.detach().clone()
    quiet(model, tw, vw, replace(CFG, transpose_min=0, transpose_max=0))
    unseen = torch.ones(128, dtype=torch.bool)
    unseen[tw.pitch.long().unique()] = False
    assert torch.equal(model.embedding.weight[unseen], start[unseen])
    assert not torch.equal(model.embedding.weight[~unseen], start[~unseen])


RESUME_CFG = replace(CFG, steps=12, eval_every=4)


@pytest.mark.parametrize("stop", [6, 8], ids=["between-evaluations", "at-an-evaluation"])
def test_resume_from_last_pt_equals_an_uninterrupted_run(small, tmp_path, stop):
    norm, tw, vw = small
    a = fresh()
    quiet(a, tw, vw, RESUME_CFG, out_dir=tmp_path / "a", normalizer=norm, metadata=META)
    b = fresh()
    quiet(
        b, tw, vw, RESUME_CFG, out_dir=tmp_path / "b", normalizer=norm, metadata=META,
        stop_after_steps=stop,
    )  # fmt: skip
    assert (tmp_path / "b" / "last.pt").is_file()
    assert len(pd.read_csv(tmp_path / "b" / "history.csv")) == stop // 4
    torch.manual_seed(12345)  # the global RNG too must come from last.pt
    c = fresh(seed=99)  # another start: every weight must come from last.pt
    res = quiet(
        c, tw, vw, RESUME_CFG, out_dir=tmp_path / "b", normalizer=norm, metadata=META, resume=True
    )
    assert res.history["step"].tolist() == [4, 8, 12]
    for (k, va), vc in zip(a.state_dict().items(), c.state_dict().values(), strict=True):
        assert torch.equal(va, vc), k
    ha = pd.read_csv(tmp_path / "a" / "history.csv").drop(columns=TIMING)
    hb = pd.read_csv(tmp_path / "b" / "history.csv").drop(columns=TIMING)
    pd.testing.assert_frame_equal(ha, hb, check_exact=True)
    best_a, _, meta_a = load_checkpoint(tmp_path / "a" / "best")
    best_b, _, meta_b = load_checkpoint(tmp_path / "b" / "best")
    for (k, va), vb in zip(best_a.state_dict().items(), best_b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    assert meta_a["step"] == meta_b["step"] and meta_b["source"] == "bach"


def test_resume_needs_last_pt_and_the_same_settings(small, tmp_path):
    norm, tw, vw = small
    with pytest.raises(FileNotFoundError, match="last.pt"):
        quiet(fresh(), tw, vw, out_dir=tmp_path, normalizer=norm, resume=True)
    with pytest.raises(FileNotFoundError, match="last.pt"):
        quiet(fresh(), tw, vw, resume=True)
    quiet(fresh(), tw, vw, out_dir=tmp_path, normalizer=norm, metadata=META, stop_after_steps=6)
    with pytest.raises(ValueError, match=r"lr=0.003 there, 0.001 now"):
        quiet(
            fresh(), tw, vw, replace(CFG, lr=1e-3), out_dir=tmp_path, normalizer=norm,
            metadata=META, resume=True,
        )  # fmt: skip
    with pytest.raises(ValueError, match=r"split_seed=0 there, 1 now"):
        quiet(
            fresh(), tw, vw, out_dir=tmp_path, normalizer=norm, resume=True,
            metadata={**META, "split_seed": 1},
        )  # fmt: skip


def test_train_argument_errors(small, bach_splits):
    norm, tw, vw = small
    with pytest.raises(ValueError, match="empty"):
        quiet(fresh(), make_windows([], norm), vw)
    with pytest.raises(TypeError, match="Windows"):
        quiet(fresh(), (vw.pitch_seq, vw.cont_seq), vw)
    short = make_windows(bach_splits["train"][:3], norm, seq_len=16)
    with pytest.raises(ValueError, match="32 notes"):
        quiet(fresh(), short, vw)
    with pytest.raises(ValueError, match="first_position"):
        quiet(fresh(), tw, vw, replace(CFG, first_position=32))
    with pytest.raises(ValueError, match="stop_after_steps"):
        quiet(fresh(), tw, vw, stop_after_steps=0)
    with pytest.raises(ValueError, match="normalizer"):
        quiet(fresh(), tw, vw, out_dir="somewhere")


def test_validation_is_never_transposed(small):
    norm, tw, vw = small
    model = fresh()
    res = quiet(model, tw, vw, replace(CFG, steps=6, eval_every=6))
    assert res.history["val_loss"].iloc[-1] == pytest.approx(evaluate(model, vw)["loss"], rel=1e-6)


def test_bf16_autocast_runs_on_the_cpu(small):
    norm, tw, vw = small
    result = quiet(fresh(), tw, vw, replace(CFG, steps=4, eval_every=4, precision="bf16"))
    assert np.isfinite(result.history["train_loss"]).all() and np.isfinite(result.best_val_loss)


def test_card_metrics_come_from_the_ranked_logits(small):
    norm, tw, vw = small
    model = fresh().eval()
    metrics = evaluate(model, vw, batch_size=50)
    with torch.no_grad():
        logits, cont = model(vw.pitch_seq, vw.cont_seq)
    target = vw.target_pitch
    assert metrics["pitch_top1"] == pytest.approx((logits.argmax(-1) == target).double().mean())
    rank = (logits > logits.gather(1, target[:, None])).sum(-1)
    assert metrics["pitch_top5"] == pytest.approx((rank < 5).double().mean())
    assert metrics["pitch_nll"] == pytest.approx(
        float(F.cross_entropy(logits.double(), target)), rel=1e-5
    )
    mse = ((cont - vw.target_cont) ** 2).mean(0).double()
    for k, name in enumerate(("mse_step", "mse_duration", "mse_velocity")):
        assert metrics[name] == pytest.approx(float(mse[k]), rel=1e-5, abs=1e-9)
    assert metrics["cont_mse"] == pytest.approx(float(mse.mean()), rel=1e-5)
    assert metrics["loss"] == pytest.approx(metrics["pitch_nll"] + metrics["cont_mse"])
    some = evaluate(model, vw, indices=torch.arange(10))
    with torch.no_grad():
        first = F.cross_entropy(logits[:10].double(), target[:10])
    assert some["pitch_nll"] == pytest.approx(float(first), rel=1e-5)
    with pytest.raises(ValueError, match="zero windows"):
        evaluate(model, vw, indices=[])


# --------------------------------------------------------------------------- checkpoints


def outputs(model, tw):
    with torch.no_grad():
        return model(tw.pitch_seq[:4], tw.cont_seq[:4])


def test_checkpoint_round_trip(small, tmp_path):
    norm, tw, vw = small
    model = fresh().eval()
    stem = save_checkpoint(tmp_path / "m", model, norm, {"source": "bach", "split_seed": 0})
    assert stem == tmp_path / "m"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]
    for path in (stem, stem.with_suffix(".safetensors"), stem.with_suffix(".json")):
        loaded, lnorm, meta = load_checkpoint(path)
        assert not loaded.training and loaded.config == model.config
        for a, b in zip(outputs(loaded, tw), outputs(model, tw), strict=True):
            assert torch.equal(a, b)
        assert lnorm.to_dict() == norm.to_dict()
    assert meta["source"] == "bach" and meta["split_seed"] == 0
    assert meta["format"] == "melody-lstm-checkpoint" and meta["format_version"] == 1
    assert meta["versions"]["torch"] == torch.__version__
    assert read_metadata(stem) == meta
    assert str(tmp_path) not in stem.with_suffix(".json").read_text()
    cat = build_model(replace(TINY, time_head="categorical", time_classes=4), 0, {
        "step_edges": torch.arange(3.0), "step_values": torch.arange(4.0),
        "duration_edges": torch.arange(3.0), "duration_values": torch.arange(4.0),
    })  # fmt: skip
    loaded, _, _ = load_checkpoint(save_checkpoint(tmp_path / "cat", cat, norm))
    assert torch.equal(loaded.step_values, cat.step_values)  # the classes travel too


def test_damaged_or_foreign_checkpoints_are_checkpoint_errors(small, tmp_path):
    norm, tw, vw = small
    model = fresh().eval()
    stem = save_checkpoint(tmp_path / "m", model, norm, {})
    weights, sidecar = checkpoint_files(stem)
    data, meta_text = weights.read_bytes(), sidecar.read_text()

    def damaged(name: str, weight_bytes: bytes, meta: str):
        (tmp_path / f"{name}.safetensors").write_bytes(weight_bytes)
        (tmp_path / f"{name}.json").write_text(meta)
        return tmp_path / name

    cases = {
        "truncated weights": (damaged("a", data[: len(data) // 2], meta_text), "truncated or"),
        "garbage weights": (damaged("b", os.urandom(500), meta_text), "truncated or corrupt"),
        "empty weights": (damaged("c", b"", meta_text), "truncated or corrupt"),
        "foreign JSON": (damaged("d", data, '{"format": "something else"}'), "not a melody-lstm"),
        "a JSON list": (damaged("e", data, "[1, 2]"), "not a melody-lstm"),
        "truncated JSON": (damaged("f", data, meta_text[: len(meta_text) // 2]), "not JSON"),
    }
    bad_config = json.loads(meta_text)
    bad_config["model_config"]["hidden_size"] = 0
    cases["bad config"] = (damaged("g", data, json.dumps(bad_config)), "bad model config")
    no_norm = json.loads(meta_text)
    del no_norm["normalizer"]
    cases["no normalizer"] = (damaged("h", data, json.dumps(no_norm)), "normalizer")
    # weights of another architecture than the sidecar's config
    other = save_checkpoint(tmp_path / "other", fresh(config=replace(TINY, hidden_size=16)), norm)
    cases["another architecture"] = (
        damaged("i", checkpoint_files(other)[0].read_bytes(), meta_text),
        "another architecture",
    )
    for path, match in cases.values():
        with pytest.raises(CheckpointError, match=match):
            load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not a melody-lstm"):
        read_metadata(tmp_path / "d")


def test_nan_weights_are_refused(small, tmp_path):
    norm, tw, vw = small
    model = fresh()
    with torch.no_grad():
        model.pitch_head.bias[3] = float("nan")
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_checkpoint(save_checkpoint(tmp_path / "nan", model, norm, {}))
    with torch.no_grad():
        model.pitch_head.bias[3] = float("inf")
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_checkpoint(save_checkpoint(tmp_path / "inf", model, norm, {}))


def test_names_with_dots_missing_files_and_the_pt_hint(small, tmp_path):
    norm, tw, vw = small
    a, b = fresh(0).eval(), fresh(1).eval()
    save_checkpoint(tmp_path / "run.lr1e-3", a, norm, {})
    save_checkpoint(tmp_path / "run.lr3e-3.safetensors", b, norm, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "run.lr1e-3.json",
        "run.lr1e-3.safetensors",
        "run.lr3e-3.json",
        "run.lr3e-3.safetensors",
    ]
    for name, model in (("run.lr1e-3", a), ("run.lr3e-3.safetensors", b), ("run.lr3e-3.json", b)):
        loaded, _, _ = load_checkpoint(tmp_path / name)
        assert torch.equal(outputs(loaded, tw)[0], outputs(model, tw)[0]), name
    with pytest.raises(FileNotFoundError, match="not found"):
        load_checkpoint(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="not found"):
        read_metadata(tmp_path / "missing.json")
    (tmp_path / "lonely.safetensors").write_bytes(b"x")  # weights without their sidecar
    with pytest.raises(FileNotFoundError, match="lonely.json"):
        load_checkpoint(tmp_path / "lonely")
    # a training state is not read as weights: the error says what it is
    save_checkpoint(tmp_path / "x", a, norm, {})
    (tmp_path / "last.pt").write_bytes(b"a training state")
    with pytest.raises(FileNotFoundError, match=r"last\.pt is a training state"):
        load_checkpoint(tmp_path / "last.pt")
    with pytest.raises(ValueError, match="does not name a checkpoint"):
        checkpoint_files(tmp_path / ".safetensors" / "..")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_checkpoint_files_respect_the_umask(small, tmp_path, umask, mode):
    norm, tw, vw = small
    old = os.umask(umask)
    try:
        stem = save_checkpoint(tmp_path / "m", fresh(), norm, {})
    finally:
        os.umask(old)
    for path in checkpoint_files(stem):
        assert stat.S_IMODE(path.stat().st_mode) == mode


def test_the_committed_checkpoint_loads_and_names_its_data():
    model, norm, meta = load_checkpoint()
    assert checkpoint_files(PRETRAINED)[0].stat().st_size < 10 * 2**20
    assert model.config == ModelConfig() and not model.training
    assert sum(p.numel() for p in model.parameters()) == 2_237_379
    assert read_metadata() == meta
    assert meta["source"] == "bach" and meta["split_seed"] == 0 and meta["limit"] is None
    assert meta["split_by"] == "piece"  # not in the committed sidecar: the split it was made on
    assert meta["profile"] == "default" and meta["train_config"] == TrainConfig().to_dict()
    assert meta["data_fingerprint"] == load_corpus("bach", progress=False).fingerprint
    text = checkpoint_files(PRETRAINED)[1].read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert "/work/" not in text and "/home/" not in text


@pytest.mark.slow
def test_the_committed_checkpoint_beats_the_baselines_on_the_test_split():
    """Re-evaluated on the real test split, not read from the sidecar."""
    from melody_utils.baselines import fit_baselines

    model, norm, meta = load_checkpoint()
    prep = prepare("bach", meta["split_seed"], progress=False)
    assert prep.normalizer.to_dict() == norm.to_dict()  # the split it was trained on
    metrics = evaluate(model, prep.windows["test"])
    for key in ("pitch_nll", "pitch_top1", "pitch_top5", "mse_step", "mse_duration"):
        assert metrics[key] == pytest.approx(meta["test_metrics"][key], rel=1e-4, abs=1e-6), key
    baselines = fit_baselines(prep.splits["train"], norm).evaluate(prep.windows["test"])
    table = results_table(metrics, baselines)
    assert list(table.index) == ["MelodyLSTM", *baselines.index]
    for name, row in baselines.iterrows():
        if not pd.isna(row["pitch_nll"]):
            assert metrics["pitch_nll"] < row["pitch_nll"], name
        if not pd.isna(row["mse_step"]):
            assert metrics["mse_step"] < row["mse_step"], name


def test_window_scores_are_evaluate_per_window_with_their_piece_and_chord_tones(bach_splits):
    pieces = bach_splits["test"][:3]
    norm = Normalizer.fit(bach_splits["train"])
    windows = make_windows(pieces, norm)
    model = fresh(3)
    scores = window_scores(model, windows, norm, batch_size=100)
    m = evaluate(model, windows)
    assert len(scores) == len(windows)
    assert scores["pitch_nll"].mean() == pytest.approx(m["pitch_nll"], rel=1e-6)
    assert scores["top1"].mean() == pytest.approx(m["pitch_top1"])
    for k in ("step", "duration", "velocity"):
        assert scores[f"se_{k}"].mean() == pytest.approx(m[f"mse_{k}"], rel=1e-5)
    counts = scores["piece"].value_counts().sort_index().tolist()
    assert counts == [len(p) - 32 for p in pieces]
    targets = np.concatenate([p.notes["step"].to_numpy()[32:] for p in pieces])
    np.testing.assert_array_equal(scores["chord_tone"], targets < 0.01)


def test_piece_bootstrap_resamples_pieces():
    same = pd.DataFrame({"piece": np.repeat([0, 1, 2], 5), "pitch_nll": 2.0})
    assert piece_bootstrap(same) == (2.0, 2.0, 2.0)
    two = pd.DataFrame({"piece": [0] * 9 + [1], "pitch_nll": [1.0] * 9 + [3.0]})
    mean, low, high = piece_bootstrap(two, n=4000, seed=1)
    assert mean == pytest.approx(1.2) and low == pytest.approx(1.0) and high == pytest.approx(3.0)
    assert piece_bootstrap(two, n=500, seed=5) == piece_bootstrap(two, n=500, seed=5)
    many = pd.DataFrame(
        {
            "piece": np.repeat(np.arange(40), 10),
            "pitch_nll": np.repeat(np.random.default_rng(0).normal(1, 0.3, 40), 10),
        }
    )
    mean, low, high = piece_bootstrap(many)
    assert low < mean < high and high - low < 0.25
    with pytest.raises(ValueError, match="no windows"):
        piece_bootstrap(same.iloc[:0])
