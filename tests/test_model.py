"""MelodyLSTM: the SPEC architecture, its parameter counts and its input checks."""

from __future__ import annotations

import pytest
import torch

from melody_utils.model import (
    MelodyLSTM,
    ModelConfig,
    lstm_gates,
    lstm_layer_params,
    parameter_table,
)

SPEC_COUNTS = {
    "embedding": 12_288,
    "lstm layer 1": 538_880,
    "lstm layer 2": 821_760,
    "lstm layer 3": 821_760,
    "layernorm": 640,
    "pitch head": 41_088,
    "cont head": 963,
    "total": 2_237_379,
}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MelodyLSTM().eval()


def batch(b=4, t=32, g=None):
    g = g or torch.Generator().manual_seed(0)
    return torch.randint(0, 128, (b, t), generator=g), torch.randn(b, t, 3, generator=g)


def test_output_shapes(model):
    p, c = batch(5)
    logits, cont = model(p, c)
    assert logits.shape == (5, 128) and cont.shape == (5, 3)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()


def test_total_and_per_layer_parameters(model):
    assert sum(p.numel() for p in model.parameters()) == 2_237_379
    table = parameter_table(model).set_index("layer")
    for layer, count in SPEC_COUNTS.items():
        assert table.loc[layer, "pytorch"] == count, layer
        assert table.loc[layer, "by_formula"] == count, layer
    # the card's LSTM claims are the model's figures with the recurrent weights left
    # out: one 4H x H matrix and one bias of 4H per layer, from what PyTorch built
    for k in (2, 3):
        w_ih = getattr(model.lstm, f"weight_ih_l{k - 1}")
        assert table.loc[f"lstm layer {k}", "card"] == w_ih.numel() + w_ih.shape[0]
    assert table.loc["pitch head", "card"] == table.loc["pitch head", "pytorch"]
    assert table.loc["cont head", "card"] == table.loc["cont head", "pytorch"]


def test_lstm_formula_matches_pytorch_for_other_sizes():
    for i, h in [(3, 5), (99, 320), (17, 64)]:
        lstm = torch.nn.LSTM(i, h)
        assert sum(p.numel() for p in lstm.parameters()) == lstm_layer_params(i, h)


def test_layers_are_the_specs(model):
    assert model.embedding.num_embeddings == 128 and model.embedding.embedding_dim == 96
    assert model.embed_dropout.p == 0.15
    assert (model.lstm.input_size, model.lstm.hidden_size, model.lstm.num_layers) == (99, 320, 3)
    assert model.lstm.dropout == 0.35 and model.lstm.batch_first
    assert model.norm.normalized_shape == (320,)
    assert model.pitch_head.out_features == 128 and model.cont_head.out_features == 3


def test_sizes_are_constructor_arguments():
    small = MelodyLSTM(embed_dim=8, hidden_size=16, num_layers=2, seq_len=None)
    p, c = batch(2, 10)
    logits, cont = small(p, c)
    assert logits.shape == (2, 128) and cont.shape == (2, 3)
    table = parameter_table(small).set_index("layer")
    assert (table["by_formula"] == table["pytorch"]).all()


def test_uses_only_the_last_time_step(model):
    """The heads read LayerNorm(lstm_out[:, -1]) and nothing else (computed by hand)."""
    p, c = batch(2)
    logits, cont = model(p, c)
    with torch.no_grad():
        x = torch.cat([model.embedding(p), c], dim=-1)
        out, _ = model.lstm(x)
        last = model.norm(out[:, -1])
        torch.testing.assert_close(logits, model.pitch_head(last))
        torch.testing.assert_close(cont, model.cont_head(last))
        # any other time step gives other outputs: the choice of step matters
        assert not torch.allclose(model.pitch_head(model.norm(out[:, -2])), logits)
    # deterministic in eval mode
    assert torch.equal(model(p, c)[0], logits)


def test_config_is_the_single_source_of_sizes():
    assert MelodyLSTM().config == ModelConfig()
    small = MelodyLSTM(ModelConfig(hidden_size=16, num_layers=1))
    assert small.lstm.hidden_size == 16 and small.lstm.dropout == 0.0
    assert MelodyLSTM(hidden_size=16, num_layers=1).config == small.config
    assert ModelConfig.from_dict(small.config.to_dict()) == small.config
    with pytest.raises(ValueError, match="unknown ModelConfig fields"):
        ModelConfig.from_dict({**small.config.to_dict(), "heads": 4})
    with pytest.raises(TypeError, match="ModelConfig"):
        MelodyLSTM(hidden=4)
    for bad in ({"hidden_size": 0}, {"embed_dropout": 1.0}, {"seq_len": -2}, {"num_layers": 1.5}):
        with pytest.raises(ValueError, match="ModelConfig"):
            ModelConfig(**bad)


def test_dropout_only_in_train_mode():
    torch.manual_seed(1)
    m = MelodyLSTM()
    p, c = batch(3)
    m.train()
    assert not torch.equal(m(p, c)[0], m(p, c)[0])
    m.eval()
    assert torch.equal(m(p, c)[0], m(p, c)[0])


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
        (torch.zeros(2, 32, dtype=torch.long), torch.zeros(3, 32, 3), ValueError, "disagree"),
        (torch.zeros(2, 16, dtype=torch.long), torch.zeros(2, 16, 3), ValueError, "32 notes"),
        ([[60] * 32], torch.zeros(1, 32, 3), TypeError, "torch tensors"),
    ],
)
def test_bad_inputs_get_clear_errors(model, pitch, cont, error, match):
    with pytest.raises(error, match=match):
        model(pitch, cont)


def test_outputs_at_every_step_from_a_position(model):
    p, c = batch(3)
    logits, cont = model(p, c)
    all_l, all_c = model(p, c, from_step=8)
    assert all_l.shape == (3, 24, 128) and all_c.shape == (3, 24, 3)
    torch.testing.assert_close(all_l[:, -1], logits)
    torch.testing.assert_close(all_c[:, -1], cont)
    # the output at step t reads notes 0..t only: changing note t+1 leaves it alone
    p2 = p.clone()
    p2[:, 20] = (p2[:, 20] + 5) % 128
    changed = model(p2, c, from_step=8)[0]
    torch.testing.assert_close(changed[:, : 20 - 8], all_l[:, : 20 - 8])
    assert not torch.allclose(changed[:, 20 - 8], all_l[:, 20 - 8])
    with pytest.raises(ValueError, match="from_step"):
        model(p, c, from_step=32)


def test_embedding_init_scale_scales_the_same_draw():
    torch.manual_seed(5)
    pytorch = MelodyLSTM(embed_init_std=1.0)  # nn.Embedding's own N(0, 1) draw
    torch.manual_seed(5)
    default = MelodyLSTM()  # the recipe's 0.1
    torch.manual_seed(5)
    small = MelodyLSTM(embed_init_std=0.05)
    assert ModelConfig().embed_init_std == 0.1
    torch.testing.assert_close(default.embedding.weight, 0.1 * pytorch.embedding.weight)
    torch.testing.assert_close(small.embedding.weight, 0.05 * pytorch.embedding.weight)
    torch.testing.assert_close(small.lstm.weight_hh_l0, pytorch.lstm.weight_hh_l0)
    assert sum(p.numel() for p in small.parameters()) == 2_237_379
    with pytest.raises(ValueError, match="embed_init_std"):
        ModelConfig(embed_init_std=0)


@pytest.mark.parametrize("layer", [0, 2])
def test_lstm_gates_by_hand_match_nn_lstm(model, layer):
    p, c = batch(1)
    gates = lstm_gates(model, p[0], c[0], layer=layer)
    assert set(gates) == {"input", "forget", "cell", "output", "c", "h"}
    assert gates["h"].shape == (32, 320)
    for k in ("input", "forget", "output"):
        assert gates[k].min() >= 0 and gates[k].max() <= 1
    with torch.no_grad():
        x = torch.cat([model.embedding(p), c], dim=-1)
        ref = torch.nn.LSTM(99, 320, num_layers=layer + 1, batch_first=True)
        ref.load_state_dict(
            {k: v for k, v in model.lstm.state_dict().items() if int(k[-1]) <= layer}
        )
        out, _ = ref(x)
    torch.testing.assert_close(gates["h"], out[0], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="layer"):
        lstm_gates(model, p[0], c[0], layer=3)
