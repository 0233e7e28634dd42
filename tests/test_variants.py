"""Models beyond the card (notebook 06): ablations, the TensorFlow tutorial's peer, and a
categorical time head; each built, counted, trained a few steps, saved, loaded and used
for generation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from melody_utils.checkpoint import load_checkpoint, save_checkpoint
from melody_utils.config import CHORD_SNAP
from melody_utils.data import Normalizer, fit_time_classes, make_windows
from melody_utils.generate import generate
from melody_utils.model import MelodyLSTM, ModelConfig, gru_layer_params, parameter_table
from melody_utils.train import TrainConfig, evaluate, objective_loss, train

SMALL = ModelConfig(hidden_size=48, num_layers=2, embed_dim=12)
VARIANTS = {
    "onehot": {"pitch_input": "onehot"},
    "pitch only": {"cont_inputs": False},
    "no layernorm": {"layer_norm": False},
    "gru": {"cell": "gru"},
    "tf peer": {"pitch_input": "scalar", "num_layers": 1, "layer_norm": False},
    "categorical time": {"time_head": "categorical", "time_classes": 16},
}
CFG = TrainConfig(
    steps=12,
    batch_size=32,
    warmup_steps=2,
    eval_every=6,
    train_eval_windows=32,
    eval_batch_size=256,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Small models: one torch thread."""


@pytest.fixture(scope="module")
def data(bach_splits):
    norm = Normalizer.fit(bach_splits["train"])
    return (
        norm,
        make_windows(bach_splits["train"][:10], norm),
        make_windows(bach_splits["val"][:2], norm),
        bach_splits,
    )


def build(name: str, data) -> MelodyLSTM:
    torch.manual_seed(0)
    model = MelodyLSTM(replace(SMALL, **VARIANTS[name]))
    if model.categorical_time:
        norm, _, _, splits = data
        model.set_time_classes(fit_time_classes(splits["train"][:10], norm, 16))
    return model


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_counts_trains_saves_and_generates(name, data, tmp_path):
    norm, tw, vw, splits = data
    model = build(name, data)
    table = parameter_table(model)
    assert (table["by_formula"] == table["pytorch"]).all(), table
    assert table["card"].isna().all(), "the card's claims belong to the card's model only"
    result = train(model, tw, vw, CFG, device="cpu", progress=False)
    assert np.isfinite(result.history["val_loss"]).all()
    stem = save_checkpoint(tmp_path / name.replace(" ", "_"), model, norm, {})
    loaded, _, meta = load_checkpoint(stem)
    assert meta["model_config"] == model.config.to_dict()
    p, c = vw.pitch_seq[:3], vw.cont_seq[:3]
    for a, b in zip(loaded(p, c), model(p, c), strict=True):
        torch.testing.assert_close(a, b)
    gen = generate(loaded, norm, splits["test"][0], 16, seed=1, n_variations=2)
    assert len(gen.continuation(0)) == 16
    assert gen.settings["time_head"] == model.config.time_head


def test_variant_layers_are_what_they_say(data):
    assert build("onehot", data).embedding is None
    assert isinstance(build("gru", data).lstm, torch.nn.GRU)
    assert isinstance(build("no layernorm", data).norm, torch.nn.Identity)
    peer = build("tf peer", data)
    assert peer.lstm.input_size == 1 + 3 and peer.embedding is None
    assert build("pitch only", data).lstm.input_size == SMALL.embed_dim
    assert gru_layer_params(7, 5) == sum(p.numel() for p in torch.nn.GRU(7, 5).parameters())


def test_pitch_only_model_ignores_the_continuous_inputs(data):
    _, _, vw, _ = data
    model = build("pitch only", data).eval()
    p, c = vw.pitch_seq[:4], vw.cont_seq[:4]
    torch.testing.assert_close(model(p, c)[0], model(p, torch.randn_like(c))[0])


def test_time_classes_put_real_values_back_exactly(data):
    norm, _, _, splits = data
    classes = fit_time_classes(splits["train"], norm, 32)
    assert classes["step_edges"].shape == (31,) and classes["step_values"].shape == (32,)
    assert torch.all(classes["step_edges"][1:] > classes["step_edges"][:-1])
    # step class 0 is the chord tones: its value decodes to a step of exactly 0
    raw0 = norm.inverse_transform(np.array([[float(classes["step_values"][0]), 0.0, 0.0]]))
    assert raw0[0, 0] == pytest.approx(0.0, abs=1e-6)
    # real chorale steps decode, through their class, to a nearby value: most of them
    # exactly (a class holds one musical value at one tempo), all within the class width
    model = MelodyLSTM(replace(SMALL, time_head="categorical", time_classes=32))
    model.set_time_classes(classes)
    test = make_windows(splits["test"][:5], norm)
    step_cls, _ = model.time_classes_of(test.cont)
    decoded = classes["step_values"][step_cls].numpy()
    back = norm.inverse_transform(np.stack([decoded, decoded, decoded], axis=1))[:, 0]
    real = norm.inverse_transform(test.cont.numpy())[:, 0]
    assert np.mean(np.abs(back - real) < 1e-3) > 0.85
    steps = real >= CHORD_SNAP
    width = (8.0 / CHORD_SNAP) ** (1 / 30)  # ratio between neighbouring edges
    assert np.all(np.maximum(back, real)[steps] / np.minimum(back, real)[steps] < width)
    assert (back[~steps] < CHORD_SNAP).all()


def test_categorical_head_needs_its_classes_and_learns_them(data):
    norm, tw, vw, splits = data
    torch.manual_seed(0)
    bare = MelodyLSTM(replace(SMALL, time_head="categorical", time_classes=16))
    pitch, cont = tw.gather(torch.arange(8))
    with pytest.raises(RuntimeError, match="set_time_classes"):
        objective_loss(bare, pitch, cont, CFG)
    model = build("categorical time", data)
    before = objective_loss(model, pitch, cont, CFG)[2].detach()
    train(model, tw, vw, replace(CFG, steps=30), device="cpu", progress=False)
    after = objective_loss(model.train(), pitch, cont, CFG)[2].detach()
    assert float(after) < float(before) - 0.3
    metrics = evaluate(model, vw)
    assert np.isfinite(metrics["mse_step"])


def test_categorical_generation_only_writes_class_values(data):
    norm, _, _, splits = data
    model = build("categorical time", data).eval()
    gen = generate(model, norm, splits["test"][0], 40, seed=3, n_variations=3)
    values = norm.inverse_transform(np.stack([model.step_values.numpy()] * 3, axis=1))[:, 0]
    steps = np.concatenate([gen.continuation(i)["step"].to_numpy() for i in range(3)])
    allowed = np.where(values < CHORD_SNAP, 0.0, np.minimum(values, 4.0))
    assert np.all(np.min(np.abs(steps[:, None] - allowed[None, :]), axis=1) < 1e-6)
    again = generate(model, norm, splits["test"][0], 40, seed=3, n_variations=3)
    assert again.notes[1].equals(gen.notes[1])  # same seed, same rhythm
