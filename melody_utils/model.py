"""The card's next-note model (notebook 02) and its variants (notebook 06): ``pitch_seq (B, 32)``,
``cont_seq (B, 32, 3)`` -> Embedding(128, 96), Dropout(0.15), cat (99) -> LSTM(99, 320, 3 layers,
dropout 0.35) -> last step -> LayerNorm -> ``pitch_logits (B, 128)`` and ``cont_pred (B, 3)``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .config import CHORD_SNAP, N_PITCHES, SEQ_LEN
from .data import Normalizer, Piece, raw_features

#: What the card claimed, per layer (None: it gave no number).
CARD_COUNTS = {"embedding": 12_288, "lstm layer 1": 171_520, "lstm layer 2": 410_880}
CARD_COUNTS |= {"lstm layer 3": 410_880, "layernorm": None, "pitch head": 41_088, "cont head": 963}
_CHOICES = {
    "pitch_input": ("embedding", "onehot", "scalar"),
    "cell": ("lstm", "gru", "transformer"),
}
_CHOICES["time_head"] = ("regression", "categorical")


def _whole(value: object, low: int = 1, high: float = float("inf")) -> bool:
    """An int (not a bool) in ``low..high``."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _real(value: object, low: float, high: float) -> bool:
    """A number (not a bool) in ``[low, high)``."""
    return isinstance(value, int | float) and not isinstance(value, bool) and low <= value < high


@dataclass(frozen=True)
class ModelConfig:
    """The sizes and design of :class:`MelodyLSTM` (defaults: the card's); ``seq_len``: the window
    length ``forward`` accepts (None: any). ``time_head="categorical"``: step and duration as
    distributions over ``time_classes`` classes. A bad field is a ValueError."""

    vocab_size: int = N_PITCHES
    embed_dim: int = 96
    n_cont: int = 3
    hidden_size: int = 320
    num_layers: int = 3
    embed_dropout: float = 0.15
    lstm_dropout: float = 0.35
    seq_len: int | None = SEQ_LEN
    #: The embedding starts N(0, std²), PyTorch's N(0, 1): a recipe choice (notebook 03).
    embed_init_std: float = 0.1
    pitch_input: str = "embedding"
    cont_inputs: bool = True
    cell: str = "lstm"
    layer_norm: bool = True
    time_head: str = "regression"
    time_classes: int = 32
    #: ``cell="transformer"``: attention heads and feed-forward width (``hidden_size`` is the
    #: model width, ``lstm_dropout`` its dropout, positions learned up to ``max_positions``).
    n_heads: int = 4
    ff_size: int = 1024
    max_positions: int = 512

    def __post_init__(self) -> None:
        rules = [  # fields, what each must be, the test
            (
                "vocab_size embed_dim n_cont hidden_size num_layers n_heads ff_size max_positions",
                "a positive integer",
                _whole,
            ),
            ("embed_dropout lstm_dropout", "a number in [0, 1)", lambda v: _real(v, 0, 1)),
            ("embed_init_std", "a positive number", lambda v: v != 0 and _real(v, 0, 1e6)),
            *((name, f"one of {opts}", opts.__contains__) for name, opts in _CHOICES.items()),
            ("cont_inputs layer_norm", "True or False", lambda v: isinstance(v, bool)),
            ("time_classes", "an integer in 2..255", lambda v: _whole(v, 2, 255)),
            ("seq_len", "None or a positive integer", lambda v: v is None or _whole(v)),
        ]
        for names, want, test in rules:
            for name in names.split():
                value = getattr(self, name)
                if not test(value):
                    raise ValueError(f"ModelConfig.{name} must be {want}, got {value!r}")
        if self.cell == "transformer" and self.hidden_size % self.n_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must divide by n_heads {self.n_heads}"
            )

    @property
    def is_card(self) -> bool:
        """True for the card's design (whatever the sizes and the init scale)."""
        design = (self.pitch_input, self.cont_inputs, self.cell, self.layer_norm, self.time_head)
        return design == ("embedding", True, "lstm", True, "regression")

    @property
    def input_size(self) -> int:
        """Width of the recurrent layer's input: the pitch part plus the continuous one."""
        pitch = {"embedding": self.embed_dim, "onehot": self.vocab_size, "scalar": 1}
        return pitch[self.pitch_input] + (self.n_cont if self.cont_inputs else 0)

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
    """Two-headed LSTM: the next note's pitch, and its step, duration and velocity; keywords
    change single :class:`ModelConfig` fields (``hidden_size=64``); a GRU's ``lstm`` is a GRU."""

    def __init__(self, config: ModelConfig | None = None, **overrides: object):
        super().__init__()
        if config is not None and not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
        try:
            c = self.config = replace(config or ModelConfig(), **overrides)
        except TypeError as exc:
            raise TypeError(f"MelodyLSTM: {exc}; sizes are the fields of ModelConfig") from None
        self.embedding = None
        if c.pitch_input == "embedding":
            self.embedding = nn.Embedding(c.vocab_size, c.embed_dim)
            with torch.no_grad():  # the same random draw, scaled: a seed gives the same start
                self.embedding.weight.mul_(c.embed_init_std)
        self.embed_dropout = nn.Dropout(c.embed_dropout)
        hidden, dropout = c.hidden_size, c.lstm_dropout if c.num_layers > 1 else 0.0
        if c.cell == "transformer":
            self.lstm = CausalTransformer(c)
        else:
            cell = nn.LSTM if c.cell == "lstm" else nn.GRU
            self.lstm = cell(c.input_size, hidden, c.num_layers, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(hidden) if c.layer_norm else nn.Identity()
        self.pitch_head = nn.Linear(hidden, c.vocab_size)
        self.cont_head = nn.Linear(hidden, c.n_cont)
        if self.categorical_time:
            k = c.time_classes
            self.step_head = nn.Linear(hidden, k)
            self.duration_head = nn.Linear(hidden, k)
            # class edges and values in normalized units, fitted on the training split
            for kind, n in (("edges", k - 1), ("values", k)):
                for name in ("step", "duration"):
                    self.register_buffer(f"{name}_{kind}", torch.full((n,), float("nan")))

    @property
    def categorical_time(self) -> bool:
        return self.config.time_head == "categorical"

    def check_inputs(self, pitch_seq: torch.Tensor, cont_seq: torch.Tensor) -> None:
        """A clear TypeError or ValueError for a wrong type, dtype, shape or pitch."""
        c = self.config
        if not isinstance(pitch_seq, torch.Tensor) or not isinstance(cont_seq, torch.Tensor):
            kinds = f"{type(pitch_seq).__name__} and {type(cont_seq).__name__}"
            raise TypeError(f"pitch_seq and cont_seq must be torch tensors, got {kinds}")
        if pitch_seq.dtype != torch.int64:
            raise TypeError(f"pitch_seq must be int64 (torch.long) pitches, got {pitch_seq.dtype}")
        if not cont_seq.is_floating_point():
            raise TypeError(f"cont_seq must be a float tensor, got {cont_seq.dtype}")
        p_shape, c_shape = tuple(pitch_seq.shape), tuple(cont_seq.shape)
        if len(p_shape) != 2 or c_shape != (*p_shape, c.n_cont):
            want = f"pitch_seq (batch, seq_len) and cont_seq (batch, seq_len, {c.n_cont})"
            raise ValueError(f"need {want}, got {p_shape} and {c_shape}")
        if c.seq_len is not None and p_shape[1] != c.seq_len:
            raise ValueError(f"this model takes windows of {c.seq_len} notes, got {p_shape[1]}")
        if p_shape[0] == 0:
            raise ValueError("the batch is empty (0 windows)")
        low, high = int(pitch_seq.min()), int(pitch_seq.max())
        if low < 0 or high >= c.vocab_size:
            raise ValueError(f"pitch_seq must lie in 0..{c.vocab_size - 1}, found {low}..{high}")
        if not bool(torch.isfinite(cont_seq).all()):
            raise ValueError("cont_seq holds NaN or infinite values")

    def encode(self, pitch_seq: torch.Tensor, cont_seq: torch.Tensor) -> torch.Tensor:
        """The recurrent layer's input ``(B, T, input_size)``: pitch part, dropout, ``cont_seq``."""
        c = self.config
        if c.pitch_input == "embedding":
            pitch = self.embedding(pitch_seq)
        elif c.pitch_input == "onehot":
            pitch = F.one_hot(pitch_seq, c.vocab_size).to(cont_seq.dtype)
        else:
            pitch = (pitch_seq.to(cont_seq.dtype) / (c.vocab_size - 1)).unsqueeze(-1)
        pitch = self.embed_dropout(pitch)
        return torch.cat([pitch, cont_seq.to(pitch.dtype)], dim=-1) if c.cont_inputs else pitch

    def features(self, pitch_seq, cont_seq, from_step: int | None = None) -> torch.Tensor:
        """The normalized state the heads read: after the last step ``(B, H)``, or at every
        step ``from_step .. T-1`` ``(B, T - from_step, H)``. No input checks."""
        out, _ = self.lstm(self.encode(pitch_seq, cont_seq))
        if from_step is None:
            return self.norm(out[:, -1])
        if not 0 <= from_step < out.shape[1]:
            raise ValueError(f"from_step must lie in 0..{out.shape[1] - 1}, got {from_step}")
        return self.norm(out[:, from_step:])

    def next_note(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pitch_logits, cont_pred)`` of the heads on ``h``; a categorical time head gives
        the means of its class distributions as step and duration (normalized units)."""
        logits, cont = self.pitch_head(h), self.cont_head(h)
        if self.categorical_time:
            step_logits, duration_logits = self.time_logits(h)
            step = (step_logits.float().softmax(-1) * self.step_values).sum(-1)
            duration = (duration_logits.float().softmax(-1) * self.duration_values).sum(-1)
            cont = torch.stack([step.to(cont.dtype), duration.to(cont.dtype), cont[..., 2]], -1)
        return logits, cont

    def forward(self, pitch_seq, cont_seq, check: bool = True, from_step: int | None = None):
        """``(pitch_logits (B, vocab), cont_pred (B, n_cont))`` after the last step, or at every
        step ``from_step .. T-1``; ``check=False`` skips :meth:`check_inputs` (training)."""
        if check:
            self.check_inputs(pitch_seq, cont_seq)
        return self.next_note(self.features(pitch_seq, cont_seq, from_step))

    def time_logits(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(step_logits, duration_logits)`` over the time classes (categorical head)."""
        if not self.categorical_time:
            raise RuntimeError("this model regresses time; it has no time classes")
        if not bool(torch.isfinite(self.step_edges).all()):
            fix = "set_time_classes(fit_time_classes(train_pieces, normalizer))"
            raise RuntimeError(f"the categorical time head has no classes yet: call {fix}")
        return self.step_head(h), self.duration_head(h)

    def set_time_classes(self, classes: dict[str, torch.Tensor]) -> None:
        """Install the class edges and values of :func:`fit_time_classes`."""
        if not self.categorical_time:
            raise RuntimeError("set_time_classes needs ModelConfig(time_head='categorical')")
        for name in ("step_edges", "step_values", "duration_edges", "duration_values"):
            value, buffer = torch.as_tensor(classes[name], dtype=torch.float32), getattr(self, name)
            if value.shape != buffer.shape or not torch.isfinite(value).all():
                raise ValueError(f"{name} must be {tuple(buffer.shape)} finite values")
            buffer.copy_(value)

    def time_classes_of(self, cont: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The step and duration class of normalized ``cont (..., 3)``."""
        step = torch.bucketize(cont[..., 0].contiguous(), self.step_edges, right=True)
        return step, torch.bucketize(cont[..., 1].contiguous(), self.duration_edges, right=True)

    def head_loss(self, h, target_pitch, target_cont) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pitch cross-entropy, time loss)`` over every position; the time loss is the MSE
        of the three values, or (categorical) the mean step/duration CE plus velocity MSE."""
        ce = F.cross_entropy(self.pitch_head(h).float().flatten(0, -2), target_pitch.flatten())
        if not self.categorical_time:
            return ce, F.mse_loss(self.cont_head(h).float(), target_cont)
        pairs = zip(self.time_logits(h), self.time_classes_of(target_cont), strict=True)
        time_ce = sum(F.cross_entropy(lg.float().flatten(0, -2), k.flatten()) for lg, k in pairs)
        return ce, time_ce / 2 + F.mse_loss(self.cont_head(h)[..., 2].float(), target_cont[..., 2])


class CausalTransformer(nn.Module):
    """The decoder-only peer (``ModelConfig(cell="transformer")``): the same inputs projected to
    ``hidden_size``, plus learned positions, through pre-norm layers with a causal mask, so the
    state at step t has seen steps 0..t only, as an LSTM's. Returns ``(out, None)`` like one."""

    def __init__(self, c: ModelConfig):
        super().__init__()
        H = c.hidden_size
        self.input = nn.Linear(c.input_size, H)
        self.positions = nn.Embedding(c.max_positions, H)
        layer = nn.TransformerEncoderLayer(
            H, c.n_heads, c.ff_size, c.lstm_dropout, batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerEncoder(layer, c.num_layers, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        T = x.shape[1]
        if T > self.positions.num_embeddings:
            raise ValueError(f"windows of at most {self.positions.num_embeddings} notes, got {T}")
        h = self.input(x) + self.positions(torch.arange(T, device=x.device))
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=x.device, dtype=h.dtype)
        return self.layers(h, mask=mask, is_causal=True), None


def build_model(
    config: ModelConfig | None = None, seed: int = 0, time_classes: dict | None = None
) -> MelodyLSTM:
    """A fresh model drawn after ``torch.manual_seed(seed)``, the global random state untouched
    (a config and seed give the same start); a categorical head needs ``time_classes``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MelodyLSTM(config)
    if model.categorical_time:
        if time_classes is None:
            raise ValueError("a categorical time head needs time_classes (fit_time_classes)")
        model.set_time_classes(time_classes)
    return model


def fit_time_classes(
    pieces: Sequence[Piece], normalizer: Normalizer, n_classes: int = 32, longest: float = 8.0
) -> dict[str, torch.Tensor]:
    """``step_edges, step_values, duration_edges, duration_values`` (normalized): log-spaced
    classes up to ``longest`` seconds (step class 0: under ``CHORD_SNAP``; durations from 20 ms),
    each valued at its training median (empty: its centre)."""
    if not _whole(n_classes, 2, 255):
        raise ValueError(f"n_classes must be an integer in 2..255, got {n_classes!r}")
    raw = raw_features(pieces)
    out = {}
    for col, name, low in ((0, "step", CHORD_SNAP), (1, "duration", 0.02)):
        edges = np.geomspace(low, longest, n_classes - 1)
        cls = np.searchsorted(edges, raw[:, col], side="right")
        centres = np.r_[low / 2 if col else 0.0, np.sqrt(edges[:-1] * edges[1:]), longest * 1.5]
        inside = [raw[cls == k, col] for k in range(n_classes)]
        values = np.array([np.median(v) if len(v) else centres[k] for k, v in enumerate(inside)])
        for kind, v in (("edges", edges), ("values", values)):
            z = normalizer.transform(np.outer(v, np.eye(3)[col]))  # v in column col, 0 elsewhere
            out[f"{name}_{kind}"] = torch.from_numpy(z[:, col])
    return out


@torch.no_grad()
def lstm_gates(
    model: MelodyLSTM, pitch_seq: torch.Tensor, cont_seq: torch.Tensor, layer: int = 0
) -> dict:
    """Layer ``layer``'s ``(T, H)`` gates ``input``, ``forget``, ``cell`` (candidate), ``output``
    and states ``c``, ``h`` over one window, recomputed from ``nn.LSTM``'s weights in eval mode."""
    if model.config.cell != "lstm":
        raise ValueError("lstm_gates needs an LSTM model")
    if not 0 <= layer < model.config.num_layers:
        raise ValueError(f"layer must lie in 0..{model.config.num_layers - 1}, got {layer}")
    was_training = model.training
    model.eval()
    try:
        x = model.encode(pitch_seq.reshape(1, -1), cont_seq.reshape(1, pitch_seq.numel(), -1))[0]
    finally:
        model.train(was_training)
    H = model.config.hidden_size
    for k in range(layer + 1):  # the hidden states of layer k are the input of layer k + 1
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        W_ih, W_hh, b_ih, b_hh = (getattr(model.lstm, f"{n}_l{k}") for n in names)
        h, c = torch.zeros(H), torch.zeros(H)
        steps = []
        for x_t in x:
            i, f, g, o = (W_ih @ x_t + b_ih + W_hh @ h + b_hh).chunk(4)
            i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
            c = f * c + i * g
            h = o * c.tanh()
            steps.append((i, f, g, o, c, h))
        x = torch.stack([s[-1] for s in steps])
    names = ("input", "forget", "cell", "output", "c", "h")
    return {name: torch.stack([s[j] for s in steps]) for j, name in enumerate(names)}


def lstm_layer_params(input_size: int, hidden_size: int) -> int:
    """Parameters of one PyTorch LSTM layer: ``4H(I + H) + 8H`` (two weights, two biases)."""
    return 4 * hidden_size * (input_size + hidden_size) + 8 * hidden_size


def gru_layer_params(input_size: int, hidden_size: int) -> int:
    """Parameters of one PyTorch GRU layer: ``3H(I + H) + 6H`` (three gates, not four)."""
    return 3 * hidden_size * (input_size + hidden_size) + 6 * hidden_size


def parameter_table(model: MelodyLSTM) -> pd.DataFrame:
    """Per layer, then the total: ``layer, shapes, formula, by_formula, pytorch, card`` (the
    card's claim, for the card's design only); notebook 02 checks ``by_formula == pytorch``."""
    c = model.config
    V, E, H, K, T = c.vocab_size, c.embed_dim, c.hidden_size, c.n_cont, c.time_classes
    rows = []

    def add(layer: str, module: nn.Module, formula: str, value: int, suffix: str = "") -> None:
        params = [(n, p) for n, p in module.named_parameters() if n.endswith(suffix)]
        shapes = ", ".join(f"{n} {tuple(p.shape)}" for n, p in params)
        card = CARD_COUNTS.get(layer) if c.is_card else None
        rows.append((layer, shapes, formula, value, sum(p.numel() for _, p in params), card))

    if model.embedding is not None:
        add("embedding", model.embedding, f"{V}·{E}", V * E)
    if c.cell == "transformer":
        F_, P, IN = c.ff_size, c.max_positions, c.input_size
        add("input projection", model.lstm.input, f"{IN}·{H} + {H}", IN * H + H)
        add("positions", model.lstm.positions, f"{P}·{H}", P * H)
        for k, layer in enumerate(model.lstm.layers.layers):
            formula = f"4·{H}·{H} + 2·{H}·{F_} + {F_} + 9·{H}"
            add(f"transformer layer {k + 1}", layer, formula, 4 * H * H + 2 * H * F_ + F_ + 9 * H)
    else:
        gates, count = (4, lstm_layer_params) if c.cell == "lstm" else (3, gru_layer_params)
        for k in range(c.num_layers):
            inp = c.input_size if k == 0 else H
            formula = f"{gates}·{H}·({inp}+{H}) + {2 * gates}·{H}"
            add(f"{c.cell} layer {k + 1}", model.lstm, formula, count(inp, H), f"_l{k}")
    if c.layer_norm:
        add("layernorm", model.norm, f"2·{H} (γ, β ∈ R^{H})", 2 * H)
    add("pitch head", model.pitch_head, f"{H}·{V} + {V}", H * V + V)
    add("cont head", model.cont_head, f"{H}·{K} + {K}", H * K + K)
    if model.categorical_time:
        add("step head", model.step_head, f"{H}·{T} + {T}", H * T + T)
        add("duration head", model.duration_head, f"{H}·{T} + {T}", H * T + T)
    table = pd.DataFrame(rows, columns="layer shapes formula by_formula pytorch card".split())
    total = sum(p.numel() for p in model.parameters())
    table.loc[len(table)] = ["total", "", "sum", int(table["by_formula"].sum()), total, None]
    table["card"] = table["card"].astype("Int64")
    return table
