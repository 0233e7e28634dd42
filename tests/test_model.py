"""melody_utils.model: the card's MelodyLSTM and its variants, their configuration, parameter
counts, seeded construction, the one input encoding, the gates by hand and the input checks."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from melody_utils.config import CHORD_SNAP
from melody_utils.data import Normalizer, make_windows
from melody_utils.model import (
    MelodyLSTM,
    ModelConfig,
    build_model,
    fit_time_classes,
    gru_layer_params,
    lstm_gates,
    lstm_layer_params,
    parameter_table,
)

#: The card's model counted by hand: V = 128, E = 96, IN = E + 3 = 99, H = 320, three layers.
V, E, H, IN = 128, 96, 320, 99
CARD_COUNTS = {
    "embedding": V * E,
    "lstm layer 1": 4 * H * (IN + H) + 8 * H,
    "lstm layer 2": 4 * H * (H + H) + 8 * H,
    "lstm layer 3": 4 * H * (H + H) + 8 * H,
    "layernorm": 2 * H,
    "pitch head": H * V + V,
    "cont head": H * 3 + 3,
}
SMALL = ModelConfig(embed_dim=8, hidden_size=16, num_layers=2)
VARIANTS = {
    "card": {},
    "onehot": {"pitch_input": "onehot"},
    "scalar": {"pitch_input": "scalar"},
    "pitch only": {"cont_inputs": False},
    "no layernorm": {"layer_norm": False},
    "gru": {"cell": "gru"},
    "transformer": {"cell": "transformer", "n_heads": 2, "ff_size": 32},
    "categorical": {"time_head": "categorical", "time_classes": 8},
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Small models: one torch thread."""


@pytest.fixture(scope="module")
def card():
    return build_model(ModelConfig(), seed=0).eval()


@pytest.fixture(scope="module")
def norm(bach_splits):
    return Normalizer.fit(bach_splits["train"])


@pytest.fixture(scope="module")
def classes(bach_splits, norm):
    return fit_time_classes(bach_splits["train"][:20], norm, 8)


def batch(b=4, t=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 128, (b, t), generator=g), torch.randn(b, t, 3, generator=g)


def variant(name: str, classes=None, seed: int = 0) -> MelodyLSTM:
    config = replace(SMALL, **VARIANTS[name])
    return build_model(config, seed, classes if config.time_head == "categorical" else None)


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "field, value",
    [
        ("vocab_size", 0),
        ("embed_dim", -8),
        ("hidden_size", 0),
        ("hidden_size", 16.0),
        ("num_layers", 1.5),
        ("num_layers", True),
        ("n_cont", "3"),
        ("embed_dropout", 1.0),
        ("lstm_dropout", -0.1),
        ("embed_dropout", float("nan")),
        ("embed_init_std", 0),
        ("embed_init_std", -0.1),
        ("pitch_input", "word"),
        ("cell", "rnn"),
        ("time_head", "softmax"),
        ("cont_inputs", 1),
        ("layer_norm", "yes"),
        ("time_classes", 1),
        ("time_classes", 256),
        ("seq_len", 0),
        ("seq_len", -2),
        ("n_heads", 0),
        ("ff_size", 1.5),
        ("max_positions", 0),
    ],
)
def test_bad_config_values_are_value_errors_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"ModelConfig\.{field} must be"):
        ModelConfig(**{field: value})


def test_config_defaults_round_trip_and_overrides():
    c = ModelConfig()
    assert (c.vocab_size, c.embed_dim, c.hidden_size, c.num_layers) == (128, 96, 320, 3)
    assert (c.embed_dropout, c.lstm_dropout, c.seq_len, c.embed_init_std) == (0.15, 0.35, 32, 0.1)
    assert c.is_card and c.input_size == 99
    assert ModelConfig(seq_len=None).seq_len is None
    assert ModelConfig.from_dict(SMALL.to_dict()) == SMALL
    with pytest.raises(ValueError, match="unknown ModelConfig fields"):
        ModelConfig.from_dict({**SMALL.to_dict(), "heads": 4})
    assert MelodyLSTM().config == ModelConfig()
    assert MelodyLSTM(hidden_size=16, num_layers=1).config == ModelConfig(
        hidden_size=16, num_layers=1
    )
    with pytest.raises(TypeError, match="ModelConfig"):
        MelodyLSTM(hidden=4)
    with pytest.raises(TypeError, match="ModelConfig"):
        MelodyLSTM({"hidden_size": 4})
    with pytest.raises(ValueError, match="hidden_size"):
        MelodyLSTM(hidden_size=0)
    sizes = {"onehot": 128 + 3, "scalar": 1 + 3, "pitch only": 8}
    for name, size in sizes.items():
        config = replace(SMALL, **VARIANTS[name])
        assert config.input_size == size and not config.is_card
    assert replace(SMALL, embed_dim=4, hidden_size=8).is_card  # sizes are not the design


def test_layers_are_the_cards(card):
    assert card.embedding.num_embeddings == 128 and card.embedding.embedding_dim == 96
    assert card.embed_dropout.p == 0.15
    assert (card.lstm.input_size, card.lstm.hidden_size, card.lstm.num_layers) == (99, 320, 3)
    assert card.lstm.dropout == 0.35 and card.lstm.batch_first
    assert card.norm.normalized_shape == (320,)
    assert card.pitch_head.out_features == 128 and card.cont_head.out_features == 3
    # one layer: no dropout between layers (PyTorch would warn)
    assert MelodyLSTM(hidden_size=16, num_layers=1).lstm.dropout == 0.0


def test_variant_layers_are_what_they_say(classes):
    assert variant("onehot").embedding is None and variant("scalar").embedding is None
    assert isinstance(variant("gru").lstm, torch.nn.GRU)
    assert isinstance(variant("no layernorm").norm, torch.nn.Identity)
    assert variant("scalar").lstm.input_size == 4
    assert variant("pitch only").lstm.input_size == SMALL.embed_dim
    cat = variant("categorical", classes)
    assert cat.step_head.out_features == 8 and cat.duration_head.out_features == 8


# --------------------------------------------------------------------------- parameter counts


def test_card_counts_are_the_formula_and_pytorch(card):
    table = parameter_table(card).set_index("layer")
    for layer, count in CARD_COUNTS.items():
        assert table.loc[layer, "by_formula"] == count, layer
        assert table.loc[layer, "pytorch"] == count, layer
    total = sum(CARD_COUNTS.values())
    assert total == 2_237_379
    assert table.loc["total", "pytorch"] == total == sum(p.numel() for p in card.parameters())
    assert table.loc["total", "by_formula"] == total
    # the card's LSTM claims leave the recurrent weights out: W_ih and one bias per layer
    for k in (2, 3):
        w_ih = getattr(card.lstm, f"weight_ih_l{k - 1}")
        assert table.loc[f"lstm layer {k}", "card"] == w_ih.numel() + w_ih.shape[0]
    for layer in ("embedding", "pitch head", "cont head"):
        assert table.loc[layer, "card"] == table.loc[layer, "pytorch"]
    assert "weight_hh_l0 (1280, 320)" in table.loc["lstm layer 1", "shapes"]


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_counts_by_formula_as_pytorch(name, classes):
    model = variant(name, classes)
    table = parameter_table(model)
    assert (table["by_formula"] == table["pytorch"]).all(), table
    assert table["pytorch"].iloc[-1] == sum(p.numel() for p in model.parameters())
    assert table["pytorch"].iloc[:-1].sum() == table["pytorch"].iloc[-1]  # every parameter once
    if name != "card":  # the card's claims belong to the card's design only
        assert table["card"].isna().all()


@pytest.mark.parametrize("i, h", [(3, 5), (99, 320), (17, 64), (1, 1)])
def test_layer_formulas_match_pytorch(i, h):
    assert lstm_layer_params(i, h) == sum(p.numel() for p in torch.nn.LSTM(i, h).parameters())
    assert gru_layer_params(i, h) == sum(p.numel() for p in torch.nn.GRU(i, h).parameters())


# --------------------------------------------------------------------------- seeded construction


def test_build_model_is_reproducible_and_leaves_the_global_rng_alone():
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    a, b, c = build_model(SMALL, 3), build_model(SMALL, 3), build_model(SMALL, 4)
    assert torch.equal(torch.get_rng_state(), before)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    assert not torch.equal(a.lstm.weight_ih_l0, c.lstm.weight_ih_l0)
    # the same start as seeding by hand, which a training run seeded with 3 relies on
    torch.manual_seed(3)
    by_hand = MelodyLSTM(SMALL)
    for (name, x), y in zip(a.state_dict().items(), by_hand.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


def test_categorical_head_needs_classes_and_shares_the_card_layers(classes):
    config = replace(SMALL, **VARIANTS["categorical"])
    with pytest.raises(ValueError, match="time_classes"):
        build_model(config, 0)
    model = build_model(config, 0, classes)
    assert torch.equal(model.step_values, classes["step_values"].float())
    card = build_model(SMALL, 0)  # the layers built first draw the same numbers
    assert torch.equal(model.embedding.weight, card.embedding.weight)
    assert torch.equal(model.lstm.weight_hh_l0, card.lstm.weight_hh_l0)


def test_embedding_init_scales_the_same_draw():
    pytorch = build_model(ModelConfig(embed_init_std=1.0), 5)  # nn.Embedding's own N(0, 1)
    default, small = build_model(ModelConfig(), 5), build_model(ModelConfig(embed_init_std=0.05), 5)
    torch.testing.assert_close(default.embedding.weight, 0.1 * pytorch.embedding.weight)
    torch.testing.assert_close(small.embedding.weight, 0.05 * pytorch.embedding.weight)
    torch.testing.assert_close(small.lstm.weight_hh_l0, pytorch.lstm.weight_hh_l0)
    assert abs(float(default.embedding.weight.detach().std()) - 0.1) < 0.005


# --------------------------------------------------------------------------- forward


def test_output_shapes_and_only_the_last_step(card):
    p, c = batch(3)
    logits, cont = card(p, c)
    assert logits.shape == (3, 128) and cont.shape == (3, 3) and logits.dtype == torch.float32
    with torch.no_grad():  # by hand: LayerNorm of the LSTM's last output, then the heads
        out, _ = card.lstm(torch.cat([card.embedding(p), c], dim=-1))
        last = card.norm(out[:, -1])
        torch.testing.assert_close(logits, card.pitch_head(last))
        torch.testing.assert_close(cont, card.cont_head(last))
        assert not torch.allclose(card.pitch_head(card.norm(out[:, -2])), logits)
    assert torch.equal(card(p, c)[0], logits)  # deterministic in eval mode


def test_dropout_only_in_train_mode():
    model = build_model(SMALL, 1)
    p, c = batch(3)
    model.train()
    assert not torch.equal(model(p, c)[0], model(p, c)[0])
    model.eval()
    assert torch.equal(model(p, c)[0], model(p, c)[0])


def test_outputs_at_every_step_from_a_position(card):
    p, c = batch(3)
    logits, cont = card(p, c)
    all_l, all_c = card(p, c, from_step=8)
    assert all_l.shape == (3, 24, 128) and all_c.shape == (3, 24, 3)
    torch.testing.assert_close(all_l[:, -1], logits)
    torch.testing.assert_close(all_c[:, -1], cont)
    p2 = p.clone()  # the output at step t reads notes 0..t only
    p2[:, 20] = (p2[:, 20] + 5) % 128
    changed = card(p2, c, from_step=8)[0]
    torch.testing.assert_close(changed[:, : 20 - 8], all_l[:, : 20 - 8])
    assert not torch.allclose(changed[:, 20 - 8], all_l[:, 20 - 8])
    with pytest.raises(ValueError, match="from_step"):
        card(p, c, from_step=32)


@pytest.mark.parametrize("name", ["card", "onehot", "scalar", "pitch only", "no layernorm"])
def test_features_are_the_encoding_through_the_recurrent_layer(name):
    """encode() is the one input encoding: features() and the heads read it."""
    model = variant(name).eval()
    p, c = batch(2)
    x = model.encode(p, c)
    assert x.shape == (2, 32, model.config.input_size)
    pitch_part = {
        "card": model.embedding(p) if model.embedding is not None else None,
        "onehot": F.one_hot(p, 128).float(),
        "scalar": (p.float() / 127).unsqueeze(-1),
        "pitch only": model.embedding(p) if model.embedding is not None else None,
        "no layernorm": model.embedding(p) if model.embedding is not None else None,
    }[name]
    want = pitch_part if name == "pitch only" else torch.cat([pitch_part, c], dim=-1)
    torch.testing.assert_close(x, want)
    with torch.no_grad():
        h = model.features(p, c)
        torch.testing.assert_close(h, model.norm(model.lstm(x)[0][:, -1]))
        logits, cont = model.next_note(h)
        torch.testing.assert_close(logits, model.pitch_head(h))
        torch.testing.assert_close(cont, model.cont_head(h))
        torch.testing.assert_close(model(p, c)[0], logits)


def test_pitch_only_model_ignores_the_continuous_inputs():
    model = variant("pitch only").eval()
    p, c = batch(4)
    torch.testing.assert_close(model(p, c)[0], model(p, torch.randn_like(c))[0])
    assert not torch.allclose(variant("card").eval()(p, c)[0], variant("card").eval()(p, 2 * c)[0])


# --------------------------------------------------------------------------- gates by hand


def reference_lstm(model: MelodyLSTM, layers: int) -> torch.nn.LSTM:
    """An nn.LSTM of the first ``layers`` layers of ``model`` (same weights)."""
    c = model.config
    ref = torch.nn.LSTM(c.input_size, c.hidden_size, num_layers=layers, batch_first=True)
    keep = {k: v for k, v in model.lstm.state_dict().items() if int(k.rsplit("_l", 1)[1]) < layers}
    ref.load_state_dict(keep)
    return ref.eval()


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_gates_by_hand_reproduce_nn_lstm_for_every_layer(card, layer):
    p, c = batch(1, seed=layer)
    gates = lstm_gates(card, p[0], c[0], layer=layer)
    assert set(gates) == {"input", "forget", "cell", "output", "c", "h"}
    assert all(v.shape == (32, 320) for v in gates.values())
    for k in ("input", "forget", "output"):
        assert gates[k].min() >= 0 and gates[k].max() <= 1
    assert gates["cell"].abs().max() <= 1
    with torch.no_grad():
        out, (h_n, c_n) = reference_lstm(card, layer + 1)(card.encode(p, c))
    torch.testing.assert_close(gates["h"], out[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(gates["c"][-1], c_n[-1, 0], atol=1e-5, rtol=1e-4)
    if layer == 2:  # the last layer's last state, normalized, is what the heads read
        torch.testing.assert_close(card.norm(gates["h"][-1:]), card.features(p, c))
    # a (1, T) window and a (T,) window are the same
    again = lstm_gates(card, p, c, layer=layer)
    torch.testing.assert_close(again["h"], gates["h"])


@pytest.mark.parametrize("name", ["onehot", "scalar", "pitch only"])
def test_gates_use_the_variants_encoding(name):
    model = variant(name)
    model.train()  # lstm_gates works in eval mode and restores the mode
    p, c = batch(1, seed=7)
    gates = lstm_gates(model, p[0], c[0], layer=1)
    assert model.training
    model.eval()
    with torch.no_grad():
        out, _ = reference_lstm(model, 2)(model.encode(p, c))
        torch.testing.assert_close(gates["h"], out[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(model.norm(gates["h"][-1:]), model.features(p, c))


def test_gates_refuse_a_gru_and_a_missing_layer(card):
    p, c = batch(1)
    with pytest.raises(ValueError, match="LSTM model"):
        lstm_gates(variant("gru"), p[0], c[0])
    for layer in (-1, 3):
        with pytest.raises(ValueError, match="layer must lie in 0..2"):
            lstm_gates(card, p[0], c[0], layer=layer)


# --------------------------------------------------------------------------- the categorical head


def test_time_classes_put_real_values_back(bach_splits, norm):
    classes = fit_time_classes(bach_splits["train"], norm, 32)
    assert set(classes) == {"step_edges", "step_values", "duration_edges", "duration_values"}
    assert classes["step_edges"].shape == (31,) and classes["step_values"].shape == (32,)
    for kind in ("step", "duration"):
        assert torch.all(classes[f"{kind}_edges"].diff() > 0)
    raw0 = norm.inverse_transform(np.array([[float(classes["step_values"][0]), 0.0, 0.0]]))
    assert raw0[0, 0] == pytest.approx(0.0, abs=1e-6)  # class 0: chord tones, a step of 0
    model = build_model(replace(SMALL, time_head="categorical", time_classes=32), 0, classes)
    test = make_windows(bach_splits["test"][:5], norm)
    step_cls, _ = model.time_classes_of(test.cont)
    decoded = classes["step_values"][step_cls].numpy()
    back = norm.inverse_transform(np.stack([decoded] * 3, axis=1))[:, 0]
    real = norm.inverse_transform(test.cont.numpy())[:, 0]
    assert np.mean(np.abs(back - real) < 1e-3) > 0.85  # most steps decode exactly
    steps = real >= CHORD_SNAP
    width = (8.0 / CHORD_SNAP) ** (1 / 30)  # ratio of neighbouring edges
    assert np.all(np.maximum(back, real)[steps] / np.minimum(back, real)[steps] < width)
    assert (back[~steps] < CHORD_SNAP).all()
    for bad in (1, 256, 2.5, True):
        with pytest.raises(ValueError, match="n_classes"):
            fit_time_classes(bach_splits["train"][:2], norm, bad)


def test_categorical_next_note_is_the_mean_of_its_classes(classes):
    model = variant("categorical", classes).eval()
    p, c = batch(3)
    with torch.no_grad():
        h = model.features(p, c)
        logits, cont = model.next_note(h)
        step = (model.step_head(h).softmax(-1) * classes["step_values"].float()).sum(-1)
        dur = (model.duration_head(h).softmax(-1) * classes["duration_values"].float()).sum(-1)
    torch.testing.assert_close(logits, model.pitch_head(h))
    torch.testing.assert_close(cont[:, 0], step)
    torch.testing.assert_close(cont[:, 1], dur)
    torch.testing.assert_close(cont[:, 2], model.cont_head(h)[:, 2])


def test_categorical_head_loss_by_hand(classes):
    model = variant("categorical", classes).eval()
    p, c = batch(5, 33)
    with torch.no_grad():
        h = model.features(p[:, :-1], c[:, :-1])
        ce, time_loss = model.head_loss(h, p[:, -1], c[:, -1])
        k_step = torch.bucketize(
            c[:, -1, 0].contiguous(), classes["step_edges"].float().contiguous(), right=True
        )
        k_dur = torch.bucketize(
            c[:, -1, 1].contiguous(), classes["duration_edges"].float().contiguous(), right=True
        )
        want = (
            F.cross_entropy(model.step_head(h), k_step)
            + F.cross_entropy(model.duration_head(h), k_dur)
        ) / 2 + F.mse_loss(model.cont_head(h)[:, 2], c[:, -1, 2])
    torch.testing.assert_close(ce, F.cross_entropy(model.pitch_head(h), p[:, -1]))
    torch.testing.assert_close(time_loss, want)
    regression = variant("card").eval()
    with torch.no_grad():
        h = regression.features(p[:, :-1], c[:, :-1])
        _, mse = regression.head_loss(h, p[:, -1], c[:, -1])
        torch.testing.assert_close(mse, F.mse_loss(regression.cont_head(h), c[:, -1]))


def test_time_class_errors(classes):
    bare = MelodyLSTM(replace(SMALL, **VARIANTS["categorical"]))
    p, c = batch(2)
    with pytest.raises(RuntimeError, match="set_time_classes"):
        bare(p, c)
    with pytest.raises(RuntimeError, match="categorical"):
        variant("card").set_time_classes(classes)
    with pytest.raises(RuntimeError, match="regresses time"):
        variant("card").time_logits(torch.zeros(1, 16))
    wrong = {**classes, "step_edges": classes["step_edges"][:-1]}
    with pytest.raises(ValueError, match="step_edges"):
        bare.set_time_classes(wrong)
    nan = {**classes, "duration_values": torch.full((8,), float("nan"))}
    with pytest.raises(ValueError, match="duration_values"):
        bare.set_time_classes(nan)


# --------------------------------------------------------------------------- input checks


@pytest.mark.parametrize(
    "pitch, cont, error, match",
    [
        (torch.zeros(2, 32, dtype=torch.int32), torch.zeros(2, 32, 3), TypeError, "int64"),
        (
            torch.zeros(2, 32, dtype=torch.long),
            torch.zeros(2, 32, 3, dtype=torch.long),
            TypeError,
            "float",
        ),
        (torch.full((2, 32), 130), torch.zeros(2, 32, 3), ValueError, "0..127"),
        (torch.full((2, 32), -1), torch.zeros(2, 32, 3), ValueError, "0..127"),
        (torch.zeros(32, dtype=torch.long), torch.zeros(32, 3), ValueError, "batch, seq_len"),
        (torch.zeros(2, 32, dtype=torch.long), torch.zeros(2, 32, 4), ValueError, "seq_len, 3"),
        (torch.zeros(2, 32, dtype=torch.long), torch.zeros(3, 32, 3), ValueError, "got"),
        (torch.zeros(2, 16, dtype=torch.long), torch.zeros(2, 16, 3), ValueError, "32 notes"),
        (torch.zeros(0, 32, dtype=torch.long), torch.zeros(0, 32, 3), ValueError, "empty"),
        (
            torch.zeros(1, 32, dtype=torch.long),
            torch.full((1, 32, 3), float("nan")),
            ValueError,
            "NaN",
        ),
        ([[60] * 32], torch.zeros(1, 32, 3), TypeError, "torch tensors"),
    ],
)
def test_bad_inputs_get_clear_errors(card, pitch, cont, error, match):
    with pytest.raises(error, match=match):
        card(pitch, cont)
    with pytest.raises(error, match=match):
        card.check_inputs(pitch, cont)


def test_any_window_length_when_seq_len_is_none():
    model = build_model(replace(SMALL, seq_len=None), 0).eval()
    for t in (1, 10, 40):
        p, c = batch(2, t)
        logits, cont = model(p, c)
        assert logits.shape == (2, 128) and cont.shape == (2, 3)
    model(*batch(2, 10), check=False)  # no checks: what training uses


def test_the_transformer_is_causal_and_its_last_step_is_the_cards_output():
    model = variant("transformer").eval()
    p, c = batch(3)
    with torch.no_grad():
        every, _ = model(p, c, from_step=0)
        changed = p.clone()
        changed[:, 20] = (changed[:, 20] + 7) % 128
        again, _ = model(changed, c, from_step=0)
        torch.testing.assert_close(every[:, :20], again[:, :20])  # the past never sees the future
        assert not torch.allclose(every[:, 20:], again[:, 20:])
        torch.testing.assert_close(model(p, c)[0], every[:, -1])
    with pytest.raises(ValueError, match="divide by n_heads"):
        ModelConfig(cell="transformer", hidden_size=10, n_heads=4)
    short = MelodyLSTM(
        replace(SMALL, cell="transformer", n_heads=2, max_positions=16, seq_len=None)
    )
    with pytest.raises(ValueError, match="at most 16 notes"):
        short(p, c)
