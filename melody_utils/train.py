"""Training, evaluation and checkpoints of :class:`MelodyLSTM` (notebook 03). Metrics are the
card's (after a full window, untransposed, fp32); a checkpoint is ``NAME.safetensors`` +
``NAME.json``, and ``last.pt`` a training state that ``train(resume=True)`` continues."""

from __future__ import annotations

import contextlib
import io
import json
import math
import platform
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .config import CHORD_SNAP, CONT_FEATURES, PRETRAINED_DIR, __version__, get_device
from .data import Normalizer, Windows, atomic_write
from .model import MelodyLSTM, ModelConfig

_CHOICES = {"objective": ("last", "all"), "decay": ("weights", "all")}
_CHOICES["precision"] = ("auto", "fp32", "bf16")
_POSITIVE = ("steps", "batch_size", "eval_every", "eval_batch_size", "patience", "grad_clip")
#: Metadata that identifies the data of a run; resuming with other data is an error.
DATA_KEYS = ("source", "split_seed", "split_by", "data_fingerprint", "limit")


@dataclass(frozen=True)
class TrainConfig:
    """A training recipe; the defaults are the default recipe (``PROFILES`` names others)."""

    steps: int = 800  # optimizer steps
    batch_size: int = 128  # windows per step
    lr: float = 3e-3  # peak learning rate, reached after warmup_steps
    min_lr_ratio: float = 0.05  # the cosine decay ends at lr * min_lr_ratio
    warmup_steps: int = 100
    weight_decay: float = 0.05  # AdamW's
    decay: str = "weights"  # weight decay on the 2-D "weights" only, or on "all"
    cont_weight: float = 1.0  # loss = CE(pitch) + cont_weight * MSE(step, duration, velocity)
    grad_clip: float = 1.0  # max gradient norm
    objective: str = "all"  # "last": the prediction after a full window (the card's)
    first_position: int = 8  # "all": the loss on every output from this step on
    transpose_min: int = -6  # each training window is shifted by a random number of
    transpose_max: int = 5  # semitones in transpose_min..transpose_max
    eval_every: int = 200  # steps between evaluations (validation, checkpoint, history row)
    patience: int | None = None  # evaluations without progress that stop the run (None: never)
    train_eval_windows: int = 2048  # training windows also scored the card's way
    eval_batch_size: int = 1024
    seed: int = 0  # seeds batches, transpositions and dropout
    precision: str = "auto"  # "auto": bf16 on a CUDA GPU that has it, else fp32; or "fp32", "bf16"

    def __post_init__(self) -> None:
        for f in fields(self):
            name, value = f.name, getattr(self, f.name)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            problem = None
            if name in _CHOICES and value not in _CHOICES[name]:
                problem = f"must be one of {_CHOICES[name]}"
            elif name in _CHOICES or name == "patience" and value is None:
                continue
            elif not number or not math.isfinite(value):
                problem = "must be a number"
            elif f.type in ("int", "int | None") and not isinstance(value, int):
                problem = "must be an integer"
            elif name in _POSITIVE and value <= 0:
                problem = "must be positive"
            elif value < 0 and not name.startswith("transpose"):
                problem = "must not be negative"
            elif name == "min_lr_ratio" and value > 1:
                problem = "must be at most 1"
            if problem:
                raise ValueError(f"TrainConfig.{name} {problem}, got {value!r}")
        low, high = self.transpose_min, self.transpose_max
        if not low <= 0 <= high:
            raise ValueError(f"TrainConfig.transpose_min..max must hold 0, got {low}..{high}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return cls(**d)


#: Named recipes: ``default`` (``make run``, the committed checkpoint), ``card`` (the card's
#: objective, the first version's settings), ``long`` (GPU), ``fast`` (seconds: tests).
PROFILES: dict[str, TrainConfig] = {
    "default": TrainConfig(),
    "card": TrainConfig(
        objective="last", transpose_min=0, transpose_max=0, decay="all", weight_decay=0.01, lr=2e-3
    ),
    "long": TrainConfig(steps=8000, batch_size=256, eval_every=500),
}
PROFILES["fast"] = TrainConfig(
    steps=8, batch_size=32, warmup_steps=2, eval_every=4, train_eval_windows=64, eval_batch_size=256
)


@dataclass
class TrainResult:
    """What :func:`train` returns: one history row per evaluation, and the best one."""

    history: pd.DataFrame
    best_step: int
    best_val_loss: float
    stopped_early: bool
    device: str
    out_dir: Path | None = None

    @property
    def train_seconds(self) -> float:
        """Seconds spent in training steps (evaluations excluded)."""
        return float(self.history["seconds"].sum()) if len(self.history) else 0.0


def transpose_batch(pitch: torch.Tensor, low: int, high: int, generator: torch.Generator):
    """Shift each window (row) by a random number of semitones in ``low..high`` that keeps its
    notes in 0..127 (CPU ``generator``). Returns ``(shifted pitches, shifts)``."""
    lo = torch.clamp(-pitch.min(dim=1).values, min=low)
    hi = torch.clamp(127 - pitch.max(dim=1).values, max=high)
    u = torch.rand(len(pitch), generator=generator, dtype=torch.float64).to(pitch.device)
    shifts = lo + torch.floor(u * (hi - lo + 1)).long()
    return pitch + shifts[:, None], shifts


def lr_lambda(warmup: int, total: int, min_ratio: float = 0.05):
    """The learning-rate factor at each step: linear warm-up, then cosine to ``min_ratio``."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def parameter_groups(model: torch.nn.Module, weight_decay: float, decay: str) -> list[dict]:
    """AdamW groups: with ``decay="weights"`` only the 2-D weights of the LSTM and the
    heads decay; the embedding, biases and LayerNorm do not (nanoGPT's rule)."""
    if decay == "all":
        return [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    tables = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    decayed = [p for p in model.parameters() if p.dim() >= 2 and id(p) not in tables]
    exempt = [p for p in model.parameters() if p.dim() < 2 or id(p) in tables]
    return [
        {"params": decayed, "weight_decay": weight_decay},
        {"params": exempt, "weight_decay": 0.0},
    ]


@torch.no_grad()
def window_scores(model, windows: Windows, normalizer: Normalizer, batch_size=1024, device=None):
    """Per window (eval mode, fp32): ``piece`` (index into the windows' pieces), ``pitch_nll``
    (nats), ``top1``, ``chord_tone`` (the target starts with the previous note: step under
    ``CHORD_SNAP``) and the squared errors ``se_step``, ``se_duration``, ``se_velocity``."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    snap = normalizer.transform(np.array([CHORD_SNAP, 1.0, 64.0]))[0]
    was_training, parts = model.training, []
    model.eval()
    try:
        for a in range(0, len(windows), batch_size):
            idx = torch.arange(a, min(a + batch_size, len(windows)), device=windows.device)
            p, c, tp, tc = (t.to(device) for t in windows.batch(idx))
            logits, cont = model(p, c, check=False)
            nll = F.cross_entropy(logits.float(), tp, reduction="none")
            se = (cont.float() - tc) ** 2
            piece = torch.searchsorted(windows.window_offsets, idx, right=True) - 1
            cols = [
                piece.cpu(),
                nll.cpu(),
                (logits.argmax(-1) == tp).cpu(),
                (tc[:, 0] < snap).cpu(),
            ]
            parts.append(torch.column_stack([t.double() for t in (*cols, *se.cpu().T)]).numpy())
    finally:
        model.train(was_training)
    names = ["piece", "pitch_nll", "top1", "chord_tone", "se_step", "se_duration", "se_velocity"]
    table = pd.DataFrame(np.concatenate(parts), columns=names)
    return table.astype({"piece": int, "top1": bool, "chord_tone": bool})


def piece_bootstrap(
    scores: pd.DataFrame, column: str = "pitch_nll", n: int = 2000, seed: int = 0, level=0.95
) -> tuple[float, float, float]:
    """``(mean over windows, low, high)``: the interval of the window mean when the *pieces*
    are resampled with replacement ``n`` times (windows of one piece are not independent)."""
    if len(scores) == 0:
        raise ValueError("no windows to bootstrap")
    by_piece = scores.groupby("piece")[column].agg(["sum", "count"]).to_numpy()
    draws = np.random.default_rng(seed).integers(0, len(by_piece), (n, len(by_piece)))
    sums, counts = by_piece[draws, 0].sum(axis=1), by_piece[draws, 1].sum(axis=1)
    low, high = np.quantile(sums / counts, [(1 - level) / 2, (1 + level) / 2])
    return float(scores[column].mean()), float(low), float(high)


def objective_loss(model: MelodyLSTM, pitch: torch.Tensor, cont: torch.Tensor, config: TrainConfig):
    """``(loss, pitch_ce, time_loss)`` of windows with targets (``pitch (B, L+1)``, ``cont
    (B, L+1, 3)``): the last output, or (``"all"``) each from ``first_position`` on."""
    first = None if config.objective == "last" else config.first_position
    h = model.features(pitch[:, :-1], cont[:, :-1], from_step=first)
    k = -1 if first is None else slice(first + 1, None)
    ce, mse = model.head_loss(h, pitch[:, k], cont[:, k])
    return ce + config.cont_weight * mse, ce, mse


def autocast(device: torch.device, precision: str):
    """The autocast context of ``precision`` (on the CPU, bf16 leaves the LSTM in fp32: oneDNN
    has no bf16 LSTM); RuntimeError for ``"bf16"`` on a CUDA GPU without it."""
    bf16_gpu = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "bf16" and device.type == "cuda" and not bf16_gpu:
        raise RuntimeError(f"precision='bf16' but {device} does not support bfloat16; use 'fp32'")
    if not (precision == "bf16" or precision == "auto" and bf16_gpu):
        return torch.autocast(device_type=device.type, enabled=False)
    if device.type != "cpu":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    stack = contextlib.ExitStack()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        stack.enter_context(torch.backends.mkldnn.flags(enabled=False))
    stack.enter_context(torch.autocast(device_type="cpu", dtype=torch.bfloat16))
    return stack


@torch.no_grad()
def evaluate(
    model, windows: Windows, batch_size=1024, cont_weight=1.0, device=None, indices=None
) -> dict:
    """The card's metrics on ``windows`` (or the windows ``indices``), in eval mode and fp32:
    ``pitch_nll`` (nats), ``pitch_top1``, ``pitch_top5``, ``cont_mse`` (mean of ``mse_step``,
    ``mse_duration``, ``mse_velocity``) and ``loss``. ValueError on zero windows."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    idx_all = torch.arange(len(windows)) if indices is None else torch.as_tensor(indices).cpu()
    if len(idx_all) == 0:
        raise ValueError("cannot evaluate on zero windows")
    was_training = model.training
    model.eval()
    sums = torch.zeros(6, dtype=torch.float64, device=device)  # nll, top-1, top-5, 3 squared errors
    try:
        for a in range(0, len(idx_all), batch_size):
            batch = windows.batch(idx_all[a : a + batch_size].to(windows.device))
            p, c, tp, tc = (t.to(device) for t in batch)
            logits, cont = model(p, c, check=False)
            top = logits.float().topk(5, dim=-1).indices
            sums[0] += F.cross_entropy(logits.float(), tp, reduction="sum")
            sums[1] += (top[:, 0] == tp).sum()
            sums[2] += (top == tp[:, None]).any(dim=-1).sum()
            sums[3:] += ((cont.float() - tc) ** 2).sum(dim=0)
    finally:
        model.train(was_training)
    s = (sums / len(idx_all)).tolist()
    out = dict(zip(("pitch_nll", "pitch_top1", "pitch_top5"), s[:3], strict=True))
    out["cont_mse"] = float(np.mean(s[3:]))
    out.update({f"mse_{k}": v for k, v in zip(CONT_FEATURES, s[3:], strict=True)})
    out["loss"] = out["pitch_nll"] + cont_weight * out["cont_mse"]
    return out


#: The RunState fields saved as they are in ``last.pt``.
_SAVED = ("step", "history", "best_val", "best_step", "bad_evals", "best_model", "n", "seconds")
#: The validation columns of the history, and the keys of :func:`evaluate` they hold.
_VAL_COLUMNS = ("val_loss", "val_pitch_loss", "val_cont_loss", "val_pitch_top1", "val_pitch_top5")
_VAL_KEYS = ("loss", "pitch_nll", "cont_mse", "pitch_top1", "pitch_top5")


@dataclass
class RunState:
    """One run: its recipe, where it writes, and all it needs to continue (``last.pt``)."""

    model: MelodyLSTM
    config: TrainConfig
    out_dir: Path | None
    normalizer: Normalizer | None
    metadata: dict
    opt: torch.optim.Optimizer = None
    sched: torch.optim.lr_scheduler.LRScheduler = None
    gen: torch.Generator = None
    step: int = 0
    history: list = field(default_factory=list)
    best_val: float = math.inf
    best_step: int = 0
    bad_evals: int = 0
    best_model: dict = field(default_factory=dict)
    sums: torch.Tensor = None  # loss, pitch CE, time loss since the last evaluation
    n: int = 0  # steps since the last evaluation
    seconds: float = 0.0  # seconds of those steps

    def __post_init__(self) -> None:
        c = self.config
        self.opt = torch.optim.AdamW(parameter_groups(self.model, c.weight_decay, c.decay), lr=c.lr)
        schedule = lr_lambda(c.warmup_steps, c.steps, c.min_lr_ratio)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, schedule)
        self.gen = torch.Generator().manual_seed(c.seed)  # batch order and transpositions
        self.sums = torch.zeros(3, dtype=torch.float64)

    @property
    def data(self) -> dict:
        return {k: v for k, v in self.metadata.items() if k in DATA_KEYS}

    def save(self) -> None:
        state = {k: getattr(self, k) for k in _SAVED}
        state.update({k: getattr(self, k).state_dict() for k in ("model", "opt", "sched")})
        state.update(sums=self.sums.cpu(), gen=self.gen.get_state(), rng=torch.get_rng_state())
        state["cuda_rng"] = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        state.update(config=self.config.to_dict(), metadata=self.data)
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write(self.out_dir / "last.pt", buf.getvalue())

    def load(self) -> None:
        """Restore ``last.pt``; refuse a run of other settings or data, naming what differs."""
        state = torch.load(self.out_dir / "last.pt", map_location="cpu", weights_only=True)
        before = {**state["config"], **state["metadata"]}
        now = {**self.config.to_dict(), **self.data}
        changed = [k for k in dict.fromkeys([*before, *now]) if before.get(k) != now.get(k)]
        diff = [f"{k}={before.get(k)!r} there, {now.get(k)!r} now" for k in changed]
        if diff:
            raise ValueError(f"resume: the run in {self.out_dir.name}/ differs: " + "; ".join(diff))
        for k in ("model", "opt", "sched"):
            getattr(self, k).load_state_dict(state[k])
        self.gen.set_state(state["gen"])
        torch.set_rng_state(state["rng"])
        if torch.cuda.is_available() and state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        for k in (*_SAVED, "sums"):
            setattr(self, k, state[k])

    def train_step(self, tr: Windows, device: torch.device) -> None:
        """One optimizer step on a random batch of (transposed) training windows."""
        c, t0 = self.config, time.perf_counter()
        batch = torch.randint(len(tr), (c.batch_size,), generator=self.gen).to(device)
        pitch, cont = tr.gather(batch)
        if (c.transpose_min, c.transpose_max) != (0, 0):
            pitch, _ = transpose_batch(pitch, c.transpose_min, c.transpose_max, self.gen)
        with autocast(device, c.precision):
            loss, ce, mse = objective_loss(self.model, pitch, cont, c)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        self.opt.step()
        self.sched.step()
        self.step += 1
        losses = torch.stack([loss.detach(), ce.detach(), mse.detach()]).double()
        self.sums = self.sums.to(device) + losses
        self.n, self.seconds = self.n + 1, self.seconds + time.perf_counter() - t0

    def evaluation(self, tr: Windows, val: Windows, train_eval_idx: torch.Tensor, progress: bool):
        """A history row, the best weights and checkpoint so far, a line of output."""
        c, t0 = self.config, time.perf_counter()
        loss, ce, mse = (self.sums / self.n).tolist()
        v = evaluate(self.model, val, c.eval_batch_size, c.cont_weight)
        row = {"step": self.step, "epoch": self.step * c.batch_size / len(tr)}
        row.update(lr=self.opt.param_groups[0]["lr"], train_loss=loss)
        row.update(train_pitch_loss=ce, train_cont_loss=mse)
        if len(train_eval_idx):
            t = evaluate(self.model, tr, c.eval_batch_size, c.cont_weight, indices=train_eval_idx)
            row["train_eval_pitch_nll"] = t["pitch_nll"]
        row.update({col: v[key] for col, key in zip(_VAL_COLUMNS, _VAL_KEYS, strict=True)})
        speed = self.n * c.batch_size / self.seconds if self.seconds else math.nan
        row.update(seconds=self.seconds, windows_per_s=speed, eval_seconds=time.perf_counter() - t0)
        self.history.append(row)
        self.sums, self.n, self.seconds = torch.zeros_like(self.sums), 0, 0.0
        improved = row["val_loss"] < self.best_val - 1e-6
        self.bad_evals = 0 if improved else self.bad_evals + 1
        if improved:
            self.best_val, self.best_step = row["val_loss"], self.step
            self.best_model = {k: t.detach().clone() for k, t in self.model.state_dict().items()}
        if improved and self.out_dir is not None:
            meta = {**self.metadata, "train_config": c.to_dict(), "step": self.step}
            meta["history"] = self.history
            save_checkpoint(self.out_dir / "best", self.model, self.normalizer, meta)
        if self.out_dir is not None:
            history_csv = pd.DataFrame(self.history).to_csv(index=False).encode()
            atomic_write(self.out_dir / "history.csv", history_csv)
        if progress:
            from tqdm.auto import tqdm

            gap = f", train (eval mode) {t['pitch_nll']:.3f}" if len(train_eval_idx) else ""
            best = " *best*" if improved else ""
            line = f"step {self.step}: objective {loss:.3f} | "
            line += f"validation pitch NLL {v['pitch_nll']:.3f}{gap}, top-1 {v['pitch_top1']:.3f}, "
            tqdm.write(line + f"MSE {v['cont_mse']:.3f} | {speed:.0f} windows/s{best}")
        self.model.train()


def train(
    model: MelodyLSTM,
    train_windows: Windows,
    val_windows: Windows,
    config: TrainConfig = PROFILES["default"],
    *,
    out_dir: str | Path | None = None,
    resume: bool = False,
    device: str | torch.device | None = None,
    progress: bool = True,
    normalizer: Normalizer | None = None,
    metadata: dict | None = None,
    stop_after_steps: int | None = None,
) -> TrainResult:
    """Train ``model`` in place, ending with the weights of its lowest validation loss; ``out_dir``
    gets ``best.*``, ``last.pt``, ``history.csv``; ``resume`` continues from ``last.pt``
    (FileNotFoundError if missing, ValueError if of other settings or data)."""
    device = torch.device(device) if device is not None else get_device()
    for windows, name in ((train_windows, "training"), (val_windows, "validation")):
        if not isinstance(windows, Windows):
            raise TypeError(f"{name} windows must be Windows, not {type(windows).__name__}")
        if len(windows) == 0:
            raise ValueError(f"{name} windows are empty: no piece has enough notes")
        if model.config.seq_len not in (None, windows.seq_len):
            raise ValueError(f"{name} windows do not have the model's {model.config.seq_len} notes")
    if config.objective == "all" and config.first_position >= train_windows.seq_len:
        raise ValueError(f"first_position must be below the window length {train_windows.seq_len}")
    if stop_after_steps is not None and stop_after_steps < 1:
        raise ValueError(f"stop_after_steps must be positive, got {stop_after_steps}")
    if resume and (out_dir is None or not (Path(out_dir) / "last.pt").is_file()):
        raise FileNotFoundError("resume=True needs out_dir holding last.pt from an earlier run")
    if out_dir is not None and normalizer is None:
        raise ValueError("out_dir needs the normalizer, so that the best checkpoint loads alone")
    model.to(device)
    tr, val = train_windows.to(device), val_windows.to(device)  # the notes move once
    out_dir = None if out_dir is None else Path(out_dir)
    state = RunState(model, config, out_dir, normalizer, dict(metadata or {}))
    if resume:
        state.load()
    else:
        torch.manual_seed(config.seed)  # dropout masks
    generator = torch.Generator().manual_seed(config.seed + 1)
    train_eval_idx = torch.randperm(len(tr), generator=generator)[: config.train_eval_windows]
    from tqdm.auto import tqdm

    style = {"desc": "training", "unit": "step", "leave": False, "disable": not progress}
    bar = tqdm(total=config.steps, initial=state.step, **style)
    end = min(config.steps, state.step + (stop_after_steps or config.steps))
    model.train()
    while state.step < end and not (config.patience and state.bad_evals >= config.patience):
        state.train_step(tr, device)
        bar.update(1)
        if state.step % config.eval_every == 0 or state.step == config.steps:
            state.evaluation(tr, val, train_eval_idx, progress)
        if state.out_dir is not None and (state.n == 0 or state.step == end):
            state.save()
    bar.close()
    if state.best_model:
        model.load_state_dict(state.best_model)
    model.eval()
    stopped = bool(config.patience and state.bad_evals >= config.patience)
    history = pd.DataFrame(state.history)
    return TrainResult(history, state.best_step, state.best_val, stopped, str(device), out_dir)


FORMAT = "melody-lstm-checkpoint"
#: The committed checkpoint (the default recipe on the Bach chorales).
PRETRAINED = PRETRAINED_DIR / "melody_lstm_bach"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing a part, truncated, or from another architecture."""


def checkpoint_files(path: str | Path) -> tuple[Path, Path]:
    """``(NAME.safetensors, NAME.json)`` of a checkpoint named by its stem or either file
    (only those two suffixes are stripped: ``run.lr1e-3`` stays a stem)."""
    path = Path(path)
    suffix = next((s for s in (".safetensors", ".json") if path.name.endswith(s)), "")
    name = path.name[: len(path.name) - len(suffix)] if path.name != suffix else path.name
    if name in ("", ".", ".."):
        raise ValueError(f"{str(path)!r} does not name a checkpoint")
    return path.with_name(name + ".safetensors"), path.with_name(name + ".json")


def sidecar(model: MelodyLSTM, normalizer: Normalizer, metadata: dict | None = None) -> dict:
    """The JSON sidecar: ``metadata`` (at least ``source`` and ``split_seed``) with the
    model config, the normalizer and the library versions added."""
    import music21

    versions = {"python": platform.python_version()}
    versions.update({module.__name__: module.__version__ for module in (torch, np, music21)})
    versions["melody_utils"] = __version__
    meta = dict(metadata or {}, format=FORMAT, format_version=1)
    meta.update(model_config=model.config.to_dict(), normalizer=normalizer.to_dict())
    meta["versions"] = versions
    return meta


def save_checkpoint(
    path: str | Path, model: MelodyLSTM, normalizer: Normalizer, metadata: dict | None = None
) -> Path:
    """Write ``path.safetensors`` and ``path.json`` atomically; return the stem."""
    from safetensors.torch import save

    weights, meta_path = checkpoint_files(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(weights, save(state, {"format": FORMAT}))
    meta = json.dumps(sidecar(model, normalizer, metadata), indent=1, default=_json_default)
    atomic_write(meta_path, meta.encode())
    return weights.with_name(weights.name[: -len(".safetensors")])


def _json_default(obj: object) -> object:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return obj.name
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _hint(path: str | Path | None) -> str:
    if path is not None and Path(path).suffix == ".pt" and Path(path).is_file():
        return f"; {Path(path).name} is a training state for `resume`: load best.safetensors"
    return ""


def read_metadata(path: str | Path | None = None) -> dict:
    """The sidecar of a checkpoint (the committed one when ``path`` is None)."""
    weights, meta_path = checkpoint_files(PRETRAINED if path is None else path)
    if not meta_path.is_file():
        raise FileNotFoundError(f"checkpoint metadata {meta_path} not found" + _hint(path))
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{meta_path.name} is truncated or not JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path.name} is not a melody-lstm checkpoint")
    return {"split_by": "piece", **meta} if "split_seed" in meta else meta  # older sidecars


def load_checkpoint(path: str | Path | None = None, device: str | torch.device = "cpu"):
    """``(model, normalizer, metadata)`` (eval mode, on ``device``) of the committed checkpoint or
    ``path`` (stem or either file); FileNotFoundError or :class:`CheckpointError` saying why."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights, meta_path = checkpoint_files(PRETRAINED if path is None else path)
    if not weights.is_file():
        hint = "(`make run` trains one)" + _hint(path)
        raise FileNotFoundError(f"checkpoint {weights} not found {hint}")
    meta = read_metadata(meta_path)
    try:
        state = load_file(weights)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights.name} is truncated or corrupt ({exc})") from exc
    try:
        model = MelodyLSTM(ModelConfig.from_dict(meta["model_config"]))
        normalizer = Normalizer.from_dict(meta["normalizer"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{meta_path.name}: bad model config or normalizer ({exc})") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = " ".join(str(exc).splitlines()[:3])
        raise CheckpointError(f"{weights.name}: weights of another architecture: {first}") from exc
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{weights.name} holds NaN or infinite weights in {bad[:3]}")
    return model.to(device).eval(), normalizer, meta


def plot_history(history: pd.DataFrame, title: str | None = None):
    """Loss curves per head (objective, card's way, validation) and validation accuracy."""
    import matplotlib.pyplot as plt

    if len(history) == 0:
        raise ValueError("empty history: nothing to plot")
    fig, axes = plt.subplots(1, 3, figsize=(16, 3.8))
    x = history["step"]
    axes[0].plot(x, history["train_pitch_loss"], "o-", label="train (objective, dropout on)")
    if "train_eval_pitch_nll" in history:
        axes[0].plot(x, history["train_eval_pitch_nll"], "^--", label="train (card's way, eval)")
    axes[0].plot(x, history["val_pitch_loss"], "s-", label="validation")
    axes[1].plot(x, history["train_cont_loss"], "o-", label="train (objective)")
    axes[1].plot(x, history["val_cont_loss"], "s-", label="validation")
    axes[2].plot(x, history["val_pitch_top1"], "s-", label="validation top-1")
    axes[2].plot(x, history["val_pitch_top5"], "s--", label="validation top-5")
    titles = ("pitch cross-entropy (nats)", "continuous MSE (normalized)", "pitch accuracy")
    for ax, name in zip(axes, titles, strict=True):
        ax.set(title=name, xlabel="optimizer step")
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def results_table(model_metrics: dict, baselines: pd.DataFrame) -> pd.DataFrame:
    """The model's test metrics on top of the baselines' (the same columns)."""
    cols = ["pitch_nll", "pitch_top1", "pitch_top5", "mse_step", "mse_duration", "mse_velocity"]
    row = pd.DataFrame([{c: model_metrics.get(c, np.nan) for c in cols}], index=["MelodyLSTM"])
    return pd.concat([row, baselines.reindex(columns=cols)])
