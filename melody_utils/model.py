"""The next-note model of the SPEC (introduced in notebook 02).

``MelodyLSTM`` maps 32 notes, ``pitch_seq (B, 32)`` int64 and ``cont_seq (B, 32, 3)``
float32, to the next note's ``pitch_logits (B, 128)`` and ``cont_pred (B, 3)``::

    Embedding(128, 96) -> Dropout(0.15) -> cat with cont_seq (99)
    -> LSTM(99, 320, num_layers=3, dropout=0.35, batch_first=True) -> last step
    -> LayerNorm(320) -> Linear(320, 128) and Linear(320, 3)

The model card printed wrong LSTM parameter counts; :func:`parameter_table` gives
the true ones with the formula behind each.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import pandas as pd
import torch
from torch import nn

from .config import CONT_FEATURES, N_PITCHES, SEQ_LEN
from .notes import check_pitch_range

#: What the original model card claimed, per layer (None: it gave no number).
CARD_COUNTS = {
    "embedding": 12_288,
    "lstm layer 1": 171_520,
    "lstm layer 2": 410_880,
    "lstm layer 3": 410_880,
    "layernorm": None,
    "pitch head": 41_088,
    "cont head": 963,
}


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of :class:`MelodyLSTM`; the defaults are the SPEC's, written only here.

    ``seq_len`` fixes the window length that ``forward`` accepts (``None`` accepts any
    length).
    """

    vocab_size: int = N_PITCHES
    embed_dim: int = 96
    n_cont: int = len(CONT_FEATURES)
    hidden_size: int = 320
    num_layers: int = 3
    embed_dropout: float = 0.15
    lstm_dropout: float = 0.35
    seq_len: int | None = SEQ_LEN

    def __post_init__(self) -> None:
        for name in ("vocab_size", "embed_dim", "n_cont", "hidden_size", "num_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        for name in ("embed_dropout", "lstm_dropout"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 <= value < 1:
                raise ValueError(f"ModelConfig.{name} must lie in [0, 1), got {value!r}")
        if self.seq_len is not None and (
            isinstance(self.seq_len, bool) or not isinstance(self.seq_len, int) or self.seq_len < 1
        ):
            raise ValueError(
                f"ModelConfig.seq_len must be None or a positive integer, got {self.seq_len!r}"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """The config stored in a checkpoint; unknown keys are an error."""
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {sorted(unknown)}")
        return cls(**d)


class MelodyLSTM(nn.Module):
    """Two-headed LSTM that predicts the next note's pitch and its step, duration, velocity.

    ``MelodyLSTM()`` is the SPEC model; ``MelodyLSTM(config)`` takes a
    :class:`ModelConfig`, and keyword arguments change single sizes of it
    (``MelodyLSTM(hidden_size=64)``).
    """

    def __init__(self, config: ModelConfig | None = None, **overrides: object):
        super().__init__()
        if config is not None and not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
        try:
            config = replace(config or ModelConfig(), **overrides)
        except TypeError as exc:  # an unknown keyword
            raise TypeError(f"MelodyLSTM: {exc}; sizes are the fields of ModelConfig") from None
        c = self.config = config
        self.embedding = nn.Embedding(c.vocab_size, c.embed_dim)
        self.embed_dropout = nn.Dropout(c.embed_dropout)
        self.lstm = nn.LSTM(
            input_size=c.embed_dim + c.n_cont,
            hidden_size=c.hidden_size,
            num_layers=c.num_layers,
            dropout=c.lstm_dropout if c.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.norm = nn.LayerNorm(c.hidden_size)
        self.pitch_head = nn.Linear(c.hidden_size, c.vocab_size)
        self.cont_head = nn.Linear(c.hidden_size, c.n_cont)

    def check_inputs(self, pitch_seq: torch.Tensor, cont_seq: torch.Tensor) -> None:
        """Raise a clear TypeError/ValueError for a wrong dtype, shape or pitch range."""
        c = self.config
        if not isinstance(pitch_seq, torch.Tensor) or not isinstance(cont_seq, torch.Tensor):
            raise TypeError(
                "pitch_seq and cont_seq must be torch tensors, got "
                f"{type(pitch_seq).__name__} and {type(cont_seq).__name__}"
            )
        if pitch_seq.dtype != torch.int64:
            raise TypeError(
                f"pitch_seq must be int64 (torch.long) MIDI pitches, got {pitch_seq.dtype}"
            )
        if not cont_seq.is_floating_point():
            raise TypeError(f"cont_seq must be a float tensor, got {cont_seq.dtype}")
        if pitch_seq.dim() != 2:
            raise ValueError(
                f"pitch_seq must have shape (batch, seq_len), got {tuple(pitch_seq.shape)}"
            )
        if cont_seq.dim() != 3 or cont_seq.shape[-1] != c.n_cont:
            raise ValueError(
                f"cont_seq must have shape (batch, seq_len, {c.n_cont}), "
                f"got {tuple(cont_seq.shape)}"
            )
        if cont_seq.shape[:2] != pitch_seq.shape:
            raise ValueError(
                f"pitch_seq {tuple(pitch_seq.shape)} and cont_seq "
                f"{tuple(cont_seq.shape)} disagree on (batch, seq_len)"
            )
        if c.seq_len is not None and pitch_seq.shape[1] != c.seq_len:
            raise ValueError(
                f"this model takes windows of {c.seq_len} notes, got {pitch_seq.shape[1]}"
            )
        if pitch_seq.shape[0] == 0:
            raise ValueError("the batch is empty (0 windows)")
        check_pitch_range(pitch_seq, "pitch_seq values", n_pitches=c.vocab_size)
        if not bool(torch.isfinite(cont_seq).all()):
            raise ValueError("cont_seq holds NaN or infinite values")

    def forward(
        self, pitch_seq: torch.Tensor, cont_seq: torch.Tensor, check: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(pitch_logits (B, vocab), cont_pred (B, n_cont))``.

        ``check=False`` skips input validation (the training loop's hot path, where the
        windows were validated once when made).
        """
        if check:
            self.check_inputs(pitch_seq, cont_seq)
        emb = self.embed_dropout(self.embedding(pitch_seq))  # (B, T, 96)
        x = torch.cat([emb, cont_seq.to(emb.dtype)], dim=-1)  # (B, T, 99)
        out, _ = self.lstm(x)  # (B, T, 320)
        last = self.norm(out[:, -1, :])  # (B, 320)
        return self.pitch_head(last), self.cont_head(last)


def lstm_layer_params(input_size: int, hidden_size: int) -> int:
    """Parameters of one PyTorch LSTM layer: ``4H(I + H) + 8H``.

    ``weight_ih`` is (4H, I), ``weight_hh`` is (4H, H), and ``bias_ih`` and
    ``bias_hh`` are (4H,) each: four gates, each with its own input and recurrent
    weights and two biases.
    """
    return 4 * hidden_size * (input_size + hidden_size) + 8 * hidden_size


def parameter_table(model: MelodyLSTM) -> pd.DataFrame:
    """Per-layer parameters: the formula, its value, PyTorch's count and the card's claim.

    Columns: ``layer, shapes, formula, by_formula, pytorch, card``. The last row is
    the total. ``by_formula == pytorch`` on every row is the check notebook 02 makes.
    """
    c = model.config
    rows = []

    def add(layer: str, params: list[tuple[str, torch.Tensor]], formula: str, value: int):
        rows.append(
            {
                "layer": layer,
                "shapes": ", ".join(f"{n} {tuple(t.shape)}" for n, t in params),
                "formula": formula,
                "by_formula": value,
                "pytorch": sum(t.numel() for _, t in params),
                "card": CARD_COUNTS.get(layer),
            }
        )

    V, E, H, K = c.vocab_size, c.embed_dim, c.hidden_size, c.n_cont
    add("embedding", list(model.embedding.named_parameters()), f"{V}·{E}", V * E)
    for k in range(c.num_layers):
        inp = E + K if k == 0 else H
        params = [(n, p) for n, p in model.lstm.named_parameters() if n.endswith(f"_l{k}")]
        add(f"lstm layer {k + 1}", params, f"4·{H}·({inp}+{H}) + 8·{H}", lstm_layer_params(inp, H))
    add("layernorm", list(model.norm.named_parameters()), f"2·{H} (γ, β ∈ R^{H})", 2 * H)
    add("pitch head", list(model.pitch_head.named_parameters()), f"{H}·{V} + {V}", H * V + V)
    add("cont head", list(model.cont_head.named_parameters()), f"{H}·{K} + {K}", H * K + K)
    table = pd.DataFrame(rows)
    total = {
        "layer": "total",
        "shapes": "",
        "formula": "sum",
        "by_formula": int(table["by_formula"].sum()),
        "pytorch": sum(p.numel() for p in model.parameters()),
        "card": None,
    }
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    table["card"] = table["card"].astype("Int64")
    return table
