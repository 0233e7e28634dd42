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
import torch.nn.functional as F
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
    #: Standard deviation of the embedding's random start, N(0, std²). PyTorch's default
    #: is 1; with 0.1 what training writes dominates the table (notebook 04; the recipe
    #: table in the README). A recipe choice, not the architecture: same parameters.
    embed_init_std: float = 0.1
    # ---- variants beyond the card (notebook 06); the defaults are the card's model ----
    #: How a pitch enters: "embedding" (the card's learned 96-D table), "onehot" (a fixed
    #: 128-D one-hot vector) or "scalar" (pitch / 127, the TensorFlow tutorial's input).
    pitch_input: str = "embedding"
    #: Whether the normalized step, duration and velocity are inputs (False: pitch only).
    cont_inputs: bool = True
    #: The recurrent cell: "lstm" (the card's) or "gru".
    cell: str = "lstm"
    #: LayerNorm on the last hidden state (the card's) or nothing.
    layer_norm: bool = True
    #: The time head: "regression" (the card's: step, duration and velocity regressed
    #: with MSE) or "categorical" (a distribution over ``time_classes`` classes each for
    #: step and duration; velocity is still regressed).
    time_head: str = "regression"
    time_classes: int = 32

    @property
    def is_card(self) -> bool:
        """True for the card's architecture (whatever the sizes and the init scale)."""
        return (self.pitch_input, self.cont_inputs, self.cell, self.layer_norm, self.time_head) == (
            "embedding",
            True,
            "lstm",
            True,
            "regression",
        )

    @property
    def pitch_input_size(self) -> int:
        return {"embedding": self.embed_dim, "onehot": self.vocab_size, "scalar": 1}[
            self.pitch_input
        ]

    @property
    def input_size(self) -> int:
        """Width of the recurrent layer's input: the pitch part plus the continuous one."""
        return self.pitch_input_size + (self.n_cont if self.cont_inputs else 0)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "embed_dim", "n_cont", "hidden_size", "num_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        for name in ("embed_dropout", "lstm_dropout"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 <= value < 1:
                raise ValueError(f"ModelConfig.{name} must lie in [0, 1), got {value!r}")
        if isinstance(self.embed_init_std, bool) or not (
            isinstance(self.embed_init_std, int | float) and 0 < self.embed_init_std < 1e6
        ):
            raise ValueError(
                f"ModelConfig.embed_init_std must be a positive number, got {self.embed_init_std!r}"
            )
        for name, allowed in (
            ("pitch_input", ("embedding", "onehot", "scalar")),
            ("cell", ("lstm", "gru")),
            ("time_head", ("regression", "categorical")),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"ModelConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}"
                )
        for name in ("cont_inputs", "layer_norm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"ModelConfig.{name} must be True or False")
        if (
            isinstance(self.time_classes, bool)
            or not isinstance(self.time_classes, int)
            or not (2 <= self.time_classes <= 255)
        ):
            raise ValueError(
                f"ModelConfig.time_classes must be an integer in 2..255, got {self.time_classes!r}"
            )
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
        # the card's layers keep the card's names (checkpoints and notebooks use them);
        # in the GRU variant ``lstm`` holds an nn.GRU
        self.embedding = (
            nn.Embedding(c.vocab_size, c.embed_dim) if c.pitch_input == "embedding" else None
        )
        self.embed_dropout = nn.Dropout(c.embed_dropout)
        cell = nn.LSTM if c.cell == "lstm" else nn.GRU
        self.lstm = cell(
            input_size=c.input_size,
            hidden_size=c.hidden_size,
            num_layers=c.num_layers,
            dropout=c.lstm_dropout if c.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.norm = nn.LayerNorm(c.hidden_size) if c.layer_norm else nn.Identity()
        self.pitch_head = nn.Linear(c.hidden_size, c.vocab_size)
        self.cont_head = nn.Linear(c.hidden_size, c.n_cont)
        if c.time_head == "categorical":
            k = c.time_classes
            self.step_head = nn.Linear(c.hidden_size, k)
            self.duration_head = nn.Linear(c.hidden_size, k)
            # class edges and values in normalized units: set by set_time_classes (fitted
            # on the training split) and saved with the weights
            for name, n in (
                ("step_edges", k - 1),
                ("step_values", k),
                ("duration_edges", k - 1),
                ("duration_values", k),
            ):
                self.register_buffer(name, torch.full((n,), float("nan")))
        if self.embedding is not None and c.embed_init_std != 1.0:
            # scale PyTorch's N(0, 1) draw: the same random numbers, no extra draw, so a
            # seed gives the same start whatever the scale (up to the factor)
            with torch.no_grad():
                self.embedding.weight.mul_(c.embed_init_std)

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

    def features(
        self, pitch_seq: torch.Tensor, cont_seq: torch.Tensor, from_step: int | None = None
    ) -> torch.Tensor:
        """The normalized hidden state the heads read: after the last step ``(B, H)``, or
        at every step ``from_step .. T-1`` ``(B, T - from_step, H)``. No input checks."""
        c = self.config
        if c.pitch_input == "embedding":
            pitch = self.embedding(pitch_seq)  # (B, T, 96)
        elif c.pitch_input == "onehot":
            pitch = F.one_hot(pitch_seq, c.vocab_size).to(cont_seq.dtype)  # (B, T, 128)
        else:
            pitch = (pitch_seq.to(cont_seq.dtype) / (c.vocab_size - 1)).unsqueeze(-1)  # (B, T, 1)
        pitch = self.embed_dropout(pitch)
        x = torch.cat([pitch, cont_seq.to(pitch.dtype)], dim=-1) if c.cont_inputs else pitch
        out, _ = self.lstm(x)  # (B, T, 320)
        if from_step is None:
            return self.norm(out[:, -1, :])  # (B, 320)
        if not 0 <= from_step < out.shape[1]:
            raise ValueError(f"from_step must lie in 0..{out.shape[1] - 1}, got {from_step}")
        return self.norm(out[:, from_step:, :])  # (B, T - from_step, 320)

    def forward(
        self,
        pitch_seq: torch.Tensor,
        cont_seq: torch.Tensor,
        check: bool = True,
        from_step: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(pitch_logits (B, vocab), cont_pred (B, n_cont))``: the card's
        prediction of the next note, from the LSTM's output after the last step.

        ``from_step=k`` returns the same LayerNorm and heads applied at every time step
        ``k .. T-1`` instead, shapes ``(B, T-k, vocab)`` and ``(B, T-k, n_cont)``: the
        output at step ``t`` has read notes ``0..t`` and predicts note ``t+1`` (the
        ``"all"`` training objective; ``from_step = T-1`` is the last step alone).
        ``check=False`` skips input validation (the training loop's hot path, where the
        windows were validated once when made).

        With a categorical time head, ``cont_pred``'s step and duration are the means of
        the predicted class distributions (in normalized units, so that the MSE compares
        with the card's regression); :meth:`time_logits` gives the distributions.
        """
        if check:
            self.check_inputs(pitch_seq, cont_seq)
        h = self.features(pitch_seq, cont_seq, from_step)
        return self.pitch_head(h), self.cont_prediction(h)

    # ------------------------------------------------------------------ time head

    @property
    def categorical_time(self) -> bool:
        return self.config.time_head == "categorical"

    def cont_prediction(self, h: torch.Tensor) -> torch.Tensor:
        """The normalized ``[step, duration, velocity]`` the heads predict from ``h``."""
        cont = self.cont_head(h)
        if not self.categorical_time:
            return cont
        self._check_time_classes()
        step_logits, dur_logits = self.time_logits(h)
        step = (step_logits.float().softmax(-1) * self.step_values).sum(-1)
        dur = (dur_logits.float().softmax(-1) * self.duration_values).sum(-1)
        return torch.stack([step.to(cont.dtype), dur.to(cont.dtype), cont[..., 2]], dim=-1)

    def time_logits(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(step_logits, duration_logits)`` over the time classes (categorical head)."""
        if not self.categorical_time:
            raise RuntimeError("this model regresses time; it has no time classes")
        return self.step_head(h), self.duration_head(h)

    def set_time_classes(self, classes: dict[str, torch.Tensor]) -> None:
        """Install the class edges and values (normalized units) of the categorical time
        head, from :func:`melody_utils.data.fit_time_classes`."""
        if not self.categorical_time:
            raise RuntimeError("set_time_classes needs ModelConfig(time_head='categorical')")
        for name in ("step_edges", "step_values", "duration_edges", "duration_values"):
            value = torch.as_tensor(classes[name], dtype=torch.float32)
            buffer = getattr(self, name)
            if value.shape != buffer.shape or not torch.isfinite(value).all():
                raise ValueError(f"{name} must be {tuple(buffer.shape)} finite values")
            buffer.copy_(value.to(buffer.device))

    def time_classes_of(self, cont: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The step and duration class of normalized ``cont (..., 3)`` (training targets)."""
        self._check_time_classes()
        return (
            torch.bucketize(cont[..., 0].contiguous(), self.step_edges, right=True),
            torch.bucketize(cont[..., 1].contiguous(), self.duration_edges, right=True),
        )

    def _check_time_classes(self) -> None:
        if not bool(torch.isfinite(self.step_edges).all()):
            raise RuntimeError(
                "the categorical time head has no classes yet: call "
                "set_time_classes(fit_time_classes(train_pieces, normalizer))"
            )

    def head_loss(
        self, h: torch.Tensor, target_pitch: torch.Tensor, target_cont: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pitch cross-entropy, time loss)`` of the heads on ``h`` against the targets,
        averaged over every position. The time loss is the MSE of the three regressed
        values (the card's) or, with a categorical time head, the mean of the step and
        duration cross-entropies plus the velocity's MSE."""
        logits = self.pitch_head(h)
        ce = F.cross_entropy(logits.float().flatten(0, -2), target_pitch.flatten())
        if not self.categorical_time:
            return ce, F.mse_loss(self.cont_head(h).float(), target_cont)
        step_cls, dur_cls = self.time_classes_of(target_cont)
        step_logits, dur_logits = self.time_logits(h)
        time_ce = 0.5 * (
            F.cross_entropy(step_logits.float().flatten(0, -2), step_cls.flatten())
            + F.cross_entropy(dur_logits.float().flatten(0, -2), dur_cls.flatten())
        )
        vel = F.mse_loss(self.cont_head(h)[..., 2].float(), target_cont[..., 2])
        return ce, time_ce + vel


@torch.no_grad()
def lstm_gates(
    model: MelodyLSTM, pitch_seq: torch.Tensor, cont_seq: torch.Tensor, layer: int = 0
) -> dict[str, torch.Tensor]:
    """The gates and states of one LSTM layer over a window, computed step by step from
    ``nn.LSTM``'s own weights (introduced in notebook 02), in eval mode (no dropout).

    For one window (``pitch_seq (T,)`` or ``(1, T)``) returns tensors of shape ``(T, H)``:
    ``input``, ``forget``, ``cell`` (the candidate g), ``output`` gates, the cell state
    ``c`` and the hidden state ``h``. The last ``h`` equals ``nn.LSTM``'s output (the
    notebook checks it); PyTorch orders the gate rows i, f, g, o.
    """
    if model.config.cell != "lstm":
        raise ValueError("lstm_gates needs an LSTM model")
    if not 0 <= layer < model.config.num_layers:
        raise ValueError(f"layer must lie in 0..{model.config.num_layers - 1}, got {layer}")
    pitch_seq = pitch_seq.reshape(1, -1)
    cont_seq = cont_seq.reshape(1, pitch_seq.shape[1], -1)
    was_training = model.training
    model.eval()
    try:
        c = model.config
        if c.pitch_input == "embedding":
            pitch = model.embedding(pitch_seq)
        elif c.pitch_input == "onehot":
            pitch = F.one_hot(pitch_seq, c.vocab_size).to(cont_seq.dtype)
        else:
            pitch = (pitch_seq.to(cont_seq.dtype) / (c.vocab_size - 1)).unsqueeze(-1)
        x = torch.cat([pitch, cont_seq.to(pitch.dtype)], dim=-1) if c.cont_inputs else pitch
        if layer > 0:  # the outputs of the layers below are this layer's input
            below = nn.LSTM(c.input_size, c.hidden_size, num_layers=layer, batch_first=True)
            below.load_state_dict(
                {k: v for k, v in model.lstm.state_dict().items() if int(k[-1]) < layer}
            )
            x, _ = below(x)
        W_ih = getattr(model.lstm, f"weight_ih_l{layer}")
        W_hh = getattr(model.lstm, f"weight_hh_l{layer}")
        b = getattr(model.lstm, f"bias_ih_l{layer}") + getattr(model.lstm, f"bias_hh_l{layer}")
        H = c.hidden_size
        h = torch.zeros(H)
        cell = torch.zeros(H)
        out = {k: [] for k in ("input", "forget", "cell", "output", "c", "h")}
        for t in range(x.shape[1]):
            z = W_ih @ x[0, t] + W_hh @ h + b
            i, f, g, o = (
                z[:H].sigmoid(),
                z[H : 2 * H].sigmoid(),
                z[2 * H : 3 * H].tanh(),
                z[3 * H :].sigmoid(),
            )
            cell = f * cell + i * g
            h = o * cell.tanh()
            for k, v in zip(out, (i, f, g, o, cell, h), strict=True):
                out[k].append(v)
        return {k: torch.stack(v) for k, v in out.items()}
    finally:
        model.train(was_training)


def lstm_layer_params(input_size: int, hidden_size: int) -> int:
    """Parameters of one PyTorch LSTM layer: ``4H(I + H) + 8H``.

    ``weight_ih`` is (4H, I), ``weight_hh`` is (4H, H), and ``bias_ih`` and
    ``bias_hh`` are (4H,) each: four gates, each with its own input and recurrent
    weights and two biases.
    """
    return 4 * hidden_size * (input_size + hidden_size) + 8 * hidden_size


def gru_layer_params(input_size: int, hidden_size: int) -> int:
    """Parameters of one PyTorch GRU layer: ``3H(I + H) + 6H`` (three gates, not four)."""
    return 3 * hidden_size * (input_size + hidden_size) + 6 * hidden_size


def parameter_table(model: MelodyLSTM) -> pd.DataFrame:
    """Per-layer parameters: the formula, its value, PyTorch's count and the card's claim.

    Columns: ``layer, shapes, formula, by_formula, pytorch, card``. The last row is
    the total. ``by_formula == pytorch`` on every row is the check notebook 02 makes.
    Variants (notebook 06) get their own rows: no embedding row for a one-hot or scalar
    pitch input, GRU layers, no LayerNorm row, time-class heads. The ``card`` column is
    only filled for the card's architecture.
    """
    c = model.config
    rows = []

    def add(layer: str, module: nn.Module | None, formula: str, value: int, names=None):
        params = [] if module is None else list(module.named_parameters())
        if names is not None:
            params = [(n, t) for n, t in params if names(n)]
        rows.append(
            {
                "layer": layer,
                "shapes": ", ".join(f"{n} {tuple(t.shape)}" for n, t in params),
                "formula": formula,
                "by_formula": value,
                "pytorch": sum(t.numel() for _, t in params),
                "card": CARD_COUNTS.get(layer) if c.is_card else None,
            }
        )

    V, E, H, K = c.vocab_size, c.embed_dim, c.hidden_size, c.n_cont
    if model.embedding is not None:
        add("embedding", model.embedding, f"{V}·{E}", V * E)
    gates, count = (4, lstm_layer_params) if c.cell == "lstm" else (3, gru_layer_params)
    for k in range(c.num_layers):
        inp = c.input_size if k == 0 else H
        add(
            f"{c.cell} layer {k + 1}",
            model.lstm,
            f"{gates}·{H}·({inp}+{H}) + {2 * gates}·{H}",
            count(inp, H),
            names=lambda n, k=k: n.endswith(f"_l{k}"),
        )
    if c.layer_norm:
        add("layernorm", model.norm, f"2·{H} (γ, β ∈ R^{H})", 2 * H)
    add("pitch head", model.pitch_head, f"{H}·{V} + {V}", H * V + V)
    add("cont head", model.cont_head, f"{H}·{K} + {K}", H * K + K)
    if model.categorical_time:
        T = c.time_classes
        add("step head", model.step_head, f"{H}·{T} + {T}", H * T + T)
        add("duration head", model.duration_head, f"{H}·{T} + {T}", H * T + T)
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
