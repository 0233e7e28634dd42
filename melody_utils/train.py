"""Training and evaluation of :class:`MelodyLSTM` (introduced in notebook 03).

The card fixes the model, not the recipe (SPEC §2). The recipe here, every part of it
chosen by measurement (notebook 03 and the README's recipe table):

* **objective** ``"all"``: the same LSTM, LayerNorm and heads applied at every time step
  from ``first_position`` on, each predicting the next note (teacher forcing), so one
  window of 32 notes carries up to 31 training signals instead of one; ``"last"`` is
  the card's (the prediction after the 32nd note only). The loss is cross-entropy on
  the pitch plus λ · MSE on the normalized step, duration and velocity, averaged over
  the positions.
* **transposition**: each training window (inputs and targets together) is shifted by
  a random number of semitones in ``transpose_min..transpose_max``, kept inside 0..127.
  Validation and test windows are never transposed.
* AdamW with weight decay on the 2-D weight matrices only (``decay="weights"``: the
  embedding, biases and LayerNorm are exempt, as in nanoGPT), gradient clipping, linear
  warm-up then cosine decay of the learning rate over a fixed number of ``steps``.

Batches are drawn uniformly at random from the windows with a seeded generator and
gathered from the flat note arrays on the training device (see
:class:`~melody_utils.data.Windows`). Every reported metric is the card's: the
prediction after a full 32-note window, on untransposed windows, in fp32.

Files in ``out_dir``:

* ``best.safetensors`` + ``best.json``: the best validation loss so far (loadable with
  :func:`melody_utils.load_checkpoint`);
* ``last.pt``: model, optimizer, scheduler, RNG states and history at the last
  evaluation, read back with ``torch.load(weights_only=True)``; ``resume=True``
  continues from it and ends where an uninterrupted run would (bit for bit on CPU);
* ``history.csv``: one row per evaluation.

Every file is written atomically (temporary file, then rename).
"""

from __future__ import annotations

import contextlib
import io
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .checkpoint import save_checkpoint
from .config import CONT_FEATURES, get_device
from .data import Normalizer, Windows
from .fileio import atomic_write_bytes
from .model import MelodyLSTM

OBJECTIVES = ("last", "all")
DECAY_RULES = ("weights", "all")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """A training recipe (``PROFILES`` holds the named ones).

    The defaults are the project's default recipe, chosen by the measurements in the
    README's recipe table; ``PROFILES["card"]`` is the first version's recipe for
    comparison.

    Attributes:
        steps: optimizer steps (the budget; the schedule ends there).
        batch_size: windows per step.
        lr, min_lr_ratio, warmup_steps: peak learning rate; linear warm-up over
            ``warmup_steps``, then cosine decay down to ``lr * min_lr_ratio``.
        weight_decay, decay: AdamW's decoupled weight decay, on the 2-D weight matrices
            of the LSTM and the heads only (``"weights"``) or on every parameter
            (``"all"``, the first version's).
        cont_weight: λ in ``loss = CE(pitch) + λ · MSE(step, duration, velocity)``.
        grad_clip: largest gradient norm.
        objective, first_position: ``"last"`` (the card's: the prediction after the
            32nd note) or ``"all"`` (every output from time step ``first_position`` on,
            0-based; ``first_position = 31`` is the last step alone).
        transpose_min, transpose_max: each training window is shifted by a random
            whole number of semitones in this range (0, 0: off); never out of 0..127.
        eval_every: steps between evaluations (validation, checkpoints, history rows).
        patience: stop after this many evaluations without a better validation loss
            (None: run every step).
        train_eval_windows: training windows also evaluated the card's way at each
            evaluation (a fixed random subset), to measure the generalisation gap.
        eval_batch_size, seed, precision: evaluation batch; seed of the batch order,
            the transpositions and dropout; ``"auto"`` (bf16 autocast on a CUDA device
            that supports it), ``"fp32"`` or ``"bf16"``.
    """

    steps: int = 800
    batch_size: int = 128
    lr: float = 3e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 100
    weight_decay: float = 0.05
    decay: str = "weights"
    cont_weight: float = 1.0
    grad_clip: float = 1.0
    objective: str = "all"
    first_position: int = 8
    transpose_min: int = -6
    transpose_max: int = 5
    eval_every: int = 200
    patience: int | None = None
    train_eval_windows: int = 2048
    eval_batch_size: int = 1024
    seed: int = 0
    precision: str = "auto"

    def __post_init__(self) -> None:
        def whole(name: str, low: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"TrainConfig.{name} must be an integer >= {low}, got {v!r}")

        def number(name: str, low: float, high: float = math.inf) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not low <= v <= high:
                raise ValueError(
                    f"TrainConfig.{name} must be a number in [{low}, {high}], got {v!r}"
                )

        for name in ("steps", "batch_size", "eval_every", "eval_batch_size"):
            whole(name, 1)
        for name in ("warmup_steps", "first_position", "train_eval_windows", "seed"):
            whole(name, 0)
        if self.patience is not None:
            whole("patience", 1)
        number("lr", 0.0, 10.0)
        number("min_lr_ratio", 0.0, 1.0)
        number("weight_decay", 0.0, 10.0)
        number("cont_weight", 0.0, 1e6)
        number("grad_clip", 1e-12)
        for name in ("transpose_min", "transpose_max"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"TrainConfig.{name} must be an integer, got {v!r}")
        if not self.transpose_min <= 0 <= self.transpose_max:
            raise ValueError(
                f"the transposition range must hold 0 (no shift), got "
                f"{self.transpose_min}..{self.transpose_max}"
            )
        for name, allowed in (
            ("objective", OBJECTIVES),
            ("decay", DECAY_RULES),
            ("precision", PRECISIONS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"TrainConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}"
                )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return cls(**d)


#: Named recipes. ``default`` is what ``make run`` and the committed checkpoint use.
PROFILES: dict[str, TrainConfig] = {
    "default": TrainConfig(),
    # the first version's recipe: the card's objective, no transposition, every
    # parameter decayed (for comparison; see the recipe table in the README)
    "card": TrainConfig(
        objective="last", transpose_min=0, transpose_max=0, decay="all", weight_decay=0.01, lr=2e-3
    ),
    # a long run, for a GPU
    "long": TrainConfig(steps=8000, batch_size=256, eval_every=500),
    # seconds, for tests and MELODY_FAST notebooks
    "fast": TrainConfig(
        steps=8,
        batch_size=32,
        warmup_steps=2,
        eval_every=4,
        train_eval_windows=64,
        eval_batch_size=256,
    ),
}


@dataclass
class TrainResult:
    """What :func:`train` returns: the history (one row per evaluation) and more."""

    history: pd.DataFrame
    best_step: int
    best_val_loss: float
    stopped_early: bool
    device: str
    out_dir: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def train_seconds(self) -> float:
        """Seconds spent in training steps (evaluations excluded)."""
        return float(self.history["seconds"].sum()) if len(self.history) else 0.0


# --------------------------------------------------------------------------- helpers


def _autocast(device: torch.device, precision: str):
    """The autocast context for ``precision`` on ``device``.

    ``"auto"`` is bf16 on a CUDA device that supports it (Ampere and newer), fp32
    elsewhere; ``"bf16"`` asks for it explicitly (CPU autocast too, slow but it runs);
    ``"fp32"`` turns autocast off.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        use = device.type == "cuda" and torch.cuda.is_bf16_supported()
    elif precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise RuntimeError(f"precision='bf16' but {device} does not support bfloat16; use 'fp32'")
    else:
        use = precision == "bf16"
    if not use:
        return torch.autocast(device_type=device.type, enabled=False)
    if device.type != "cpu":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    # oneDNN has no bf16 LSTM primitive on most CPUs: with it off, the LSTM runs in fp32
    # and the rest under bf16 autocast (a test of the code path more than a speed-up)
    stack = contextlib.ExitStack()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a note about Intel GPUs and TF32
        stack.enter_context(torch.backends.mkldnn.flags(enabled=False))
    stack.enter_context(torch.autocast(device_type="cpu", dtype=torch.bfloat16))
    return stack


def objective_loss(
    model: MelodyLSTM,
    pitch: torch.Tensor,
    cont: torch.Tensor,
    config: TrainConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loss, pitch_ce, time_loss)`` of one batch of windows under ``config.objective``.

    ``pitch (B, L+1)`` and ``cont (B, L+1, 3)`` hold each window's ``L`` input notes
    and its target. With ``"last"`` the target is note ``L`` alone (the card's); with
    ``"all"`` the output at every time step ``t >= first_position`` predicts note
    ``t + 1``: the targets are the inputs shifted by one. The time loss is the MSE of
    the normalized step, duration and velocity for the card's regression head (see
    :meth:`MelodyLSTM.head_loss` for the categorical one).
    """
    inputs_p, inputs_c = pitch[:, :-1], cont[:, :-1]
    if config.objective == "last":
        h = model.features(inputs_p, inputs_c)
        target_p, target_c = pitch[:, -1], cont[:, -1]
    else:
        first = config.first_position
        h = model.features(inputs_p, inputs_c, from_step=first)
        target_p, target_c = pitch[:, first + 1 :], cont[:, first + 1 :]
    ce, mse = model.head_loss(h, target_p, target_c)
    return ce + config.cont_weight * mse, ce, mse


def transpose_batch(
    pitch: torch.Tensor, low: int, high: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift each window (row) by a random whole number of semitones in ``low..high``.

    The shift of a row is drawn uniformly among those that keep all its notes inside
    0..127 (so a window near the keyboard's edge has fewer choices, never a clipped
    note). Returns ``(shifted pitches, shifts)``; the draws come from ``generator``
    (a CPU generator), so the same seed gives the same shifts.
    """
    lo = torch.clamp(-pitch.min(dim=1).values, min=low)
    hi = torch.clamp(127 - pitch.max(dim=1).values, max=high)
    u = torch.rand(len(pitch), generator=generator, dtype=torch.float64).to(pitch.device)
    shifts = lo + torch.floor(u * (hi - lo + 1)).long()
    return pitch + shifts[:, None], shifts


def _lr_lambda(warmup: int, total: int, min_ratio: float = 0.05):
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``min_ratio``."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return f


def parameter_groups(model: torch.nn.Module, weight_decay: float, decay: str) -> list[dict]:
    """AdamW parameter groups: with ``decay="weights"`` only the 2-D weight matrices of
    the LSTM and the linear heads are decayed; the embedding, biases and LayerNorm are
    not (the rule nanoGPT uses). ``"all"`` decays everything."""
    if decay == "all":
        return [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    decayed, exempt = [], []
    for p in model.parameters():
        (decayed if p.dim() >= 2 and id(p) not in embeddings else exempt).append(p)
    return [
        {"params": decayed, "weight_decay": weight_decay},
        {"params": exempt, "weight_decay": 0.0},
    ]


def _validate_windows(w: Windows, name: str, model: MelodyLSTM) -> None:
    if not isinstance(w, Windows):
        raise TypeError(
            f"{name} windows must be melody_utils.data.Windows, got "
            f"{type(w).__name__} (use make_windows)"
        )
    if len(w) == 0:
        raise ValueError(f"{name} windows are empty: no piece has enough notes")
    seq_len = model.config.seq_len
    if seq_len is not None and w.seq_len != seq_len:
        raise ValueError(f"{name} windows have {w.seq_len} notes but the model takes {seq_len}")
    if int(w.pitch.max()) >= model.config.vocab_size:
        raise ValueError(f"{name} pitches must lie in 0..{model.config.vocab_size - 1}")


@torch.no_grad()
def evaluate(
    model: MelodyLSTM,
    windows: Windows,
    batch_size: int = 1024,
    cont_weight: float = 1.0,
    device: torch.device | str | None = None,
    indices: torch.Tensor | None = None,
) -> dict[str, float]:
    """The card's metrics of ``model`` on ``windows``: the prediction after each full
    window, in eval mode, in fp32 (so numbers from a bf16 GPU run and an fp32 CPU run
    compare), untransposed.

    ``indices`` restricts it to some windows. Returns ``loss``, ``pitch_nll`` (mean
    cross-entropy in nats), ``pitch_top1``, ``pitch_top5``, ``cont_mse`` and
    ``mse_step``/``mse_duration``/``mse_velocity`` (normalized units), over windows.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    idx_all = torch.arange(len(windows)) if indices is None else indices.cpu()
    n = len(idx_all)
    if n == 0:
        raise ValueError("cannot evaluate on zero windows")
    was_training = model.training
    model.eval()
    nll = torch.zeros((), device=device, dtype=torch.float64)
    top1 = torch.zeros((), device=device, dtype=torch.float64)
    top5 = torch.zeros((), device=device, dtype=torch.float64)
    sq = torch.zeros(3, device=device, dtype=torch.float64)
    try:
        for a in range(0, n, batch_size):
            idx = idx_all[a : a + batch_size].to(windows.device)
            p, c, tp, tc = (t.to(device, non_blocking=True) for t in windows.batch(idx))
            logits, cont = model(p, c, check=False)
            logits = logits.float()
            nll += F.cross_entropy(logits, tp, reduction="sum").double()
            top = logits.topk(5, dim=-1).indices
            top1 += (top[:, 0] == tp).sum()
            top5 += (top == tp[:, None]).any(dim=-1).sum()
            sq += ((cont.float() - tc) ** 2).sum(dim=0).double()
    finally:
        model.train(was_training)
    mse = (sq / n).cpu().numpy()
    out = {
        "pitch_nll": float(nll) / n,
        "pitch_top1": float(top1) / n,
        "pitch_top5": float(top5) / n,
        "cont_mse": float(mse.mean()),
    }
    out.update({f"mse_{k}": float(v) for k, v in zip(CONT_FEATURES, mse, strict=True)})
    out["loss"] = out["pitch_nll"] + cont_weight * out["cont_mse"]
    return out


# --------------------------------------------------------------------------- the loop


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
    """Train ``model`` in place for ``config.steps`` steps; at the end it holds the weights
    of the best evaluation (lowest validation loss).

    Args:
        train_windows, val_windows: from :func:`melody_utils.data.make_windows`.
        config: a :class:`TrainConfig` (see ``PROFILES``).
        out_dir: where ``best.*``, ``last.pt`` and ``history.csv`` go (None: nowhere).
        resume: continue from ``out_dir/last.pt`` (error if it does not exist, or if it
            was written with other settings or other data: the message names them).
        device: None picks CUDA, then MPS, then CPU.
        progress: a progress bar over the steps, and a line per evaluation.
        normalizer, metadata: stored with the "best" checkpoint so that it can be
            loaded on its own (``metadata`` should identify the data: ``source``,
            ``split_seed``, ``data_fingerprint``).
        stop_after_steps: stop after this many steps *of this call*, saving ``last.pt``
            (simulates an interruption; the run can be resumed).
    """
    device = torch.device(device) if device is not None else get_device()
    _validate_windows(train_windows, "training", model)
    _validate_windows(val_windows, "validation", model)
    seq_len = train_windows.seq_len
    if config.objective == "all" and config.first_position >= seq_len:
        raise ValueError(
            f"first_position must be below the window length {seq_len}, got {config.first_position}"
        )
    if stop_after_steps is not None and stop_after_steps < 1:
        raise ValueError(f"stop_after_steps must be positive, got {stop_after_steps}")
    if out_dir is not None:
        out_dir = Path(out_dir)
        if resume and not (out_dir / "last.pt").is_file():
            raise FileNotFoundError("resume=True needs out_dir holding last.pt from an earlier run")
        if normalizer is None:
            raise ValueError(
                "out_dir needs the normalizer, so that the best checkpoint can be loaded on its own"
            )
        out_dir.mkdir(parents=True, exist_ok=True)
    elif resume:
        raise FileNotFoundError("resume=True needs out_dir holding last.pt from an earlier run")

    model.to(device)
    tr = train_windows.to(device)  # the notes go to the device once; batches are gathered there
    val = val_windows.to(device)
    opt = torch.optim.AdamW(
        parameter_groups(model, config.weight_decay, config.decay), lr=config.lr
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, _lr_lambda(config.warmup_steps, config.steps, config.min_lr_ratio)
    )
    gen = torch.Generator().manual_seed(config.seed)  # batch order and transpositions
    train_eval_idx = torch.randperm(
        len(tr), generator=torch.Generator().manual_seed(config.seed + 1)
    )[: config.train_eval_windows]

    history: list[dict] = []
    best_val, best_step, bad_evals, step = math.inf, 0, 0, 0
    best_state = None
    if resume:
        # RNG states must stay on the CPU; load_state_dict moves the rest to the device
        ck = torch.load(out_dir / "last.pt", map_location="cpu", weights_only=True)
        _check_resume(ck, config, metadata, out_dir)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        gen.set_state(ck["generator"])
        torch.set_rng_state(ck["rng"])
        if device.type == "cuda" and ck.get("cuda_rng"):
            torch.cuda.set_rng_state_all(ck["cuda_rng"])
        history = ck["history"]
        best_val, best_step, bad_evals, step = (
            ck["best_val"],
            ck["best_step"],
            ck["bad_evals"],
            ck["step"],
        )
        best_state = {k: v.clone() for k, v in ck["best_model"].items()} or None
        partial = ck["partial"]  # the running sums of an interruption between evaluations
    else:
        partial = None
        torch.manual_seed(config.seed)  # dropout masks (CPU and every CUDA device)

    from tqdm.auto import tqdm

    def save_last(partial: dict | None = None) -> None:
        """``last.pt`` with the state right now (the names are read at call time)."""
        buf = io.BytesIO()
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "generator": gen.get_state(),
                "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "metadata": {k: v for k, v in (metadata or {}).items() if k in DATA_KEYS},
                "config": config.to_dict(),
                "step": step,
                "history": history,
                "best_val": best_val,
                "best_step": best_step,
                "bad_evals": bad_evals,
                "best_model": best_state or {},
                "partial": partial,
            },
            buf,
        )
        atomic_write_bytes(out_dir / "last.pt", buf.getvalue())

    transposing = (config.transpose_min, config.transpose_max) != (0, 0)
    stopped_early = config.patience is not None and bad_evals >= config.patience
    end = config.steps if stop_after_steps is None else min(config.steps, step + stop_after_steps)
    bar = tqdm(
        total=config.steps,
        initial=step,
        desc="training",
        unit="step",
        disable=not progress,
        leave=False,
    )
    sums = torch.zeros(3, device=device, dtype=torch.float64)  # loss, ce, mse since eval
    n_sum, t_train = 0, 0.0
    if partial is not None:
        sums += partial["sums"].to(device)
        n_sum, t_train = partial["n"], partial["seconds"]
    model.train()
    while step < end and not stopped_early:
        t0 = time.perf_counter()
        idx = torch.randint(len(tr), (config.batch_size,), generator=gen).to(device)
        pitch, cont = tr.gather(idx)
        if transposing:
            pitch, _ = transpose_batch(pitch, config.transpose_min, config.transpose_max, gen)
        with _autocast(device, config.precision):
            loss, ce, mse = objective_loss(model, pitch, cont, config)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        sched.step()
        step += 1
        sums += torch.stack([loss.detach(), ce.detach(), mse.detach()]).double()
        n_sum += 1
        bar.update(1)
        if progress and step % 20 == 0:
            bar.set_postfix(loss=f"{float(sums[0]) / n_sum:.3f}")
        t_train += time.perf_counter() - t0
        if step % config.eval_every and step < config.steps:
            if step == end and out_dir is not None:  # interrupted between evaluations
                save_last({"sums": sums.cpu(), "n": n_sum, "seconds": t_train})
            continue
        row, improved = _evaluation(
            model, tr, val, config, step, sums, n_sum, t_train, opt, train_eval_idx, best_val
        )
        sums.zero_()
        n_sum, t_train = 0, 0.0
        history.append(row)
        if improved:
            best_val, best_step, bad_evals = row["val_loss"], step, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if out_dir is not None:
                meta = dict(metadata or {})
                meta.update({"train_config": config.to_dict(), "step": step, "history": history})
                save_checkpoint(out_dir / "best", model, normalizer, meta)
        else:
            bad_evals += 1
        if progress:
            tqdm.write(_describe(row, improved))
        stopped_early = config.patience is not None and bad_evals >= config.patience
        if out_dir is not None:
            save_last()
            _write_history(out_dir / "history.csv", history)
        model.train()
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(
        pd.DataFrame(history), best_step, best_val, stopped_early, str(device), out_dir
    )


def _evaluation(
    model, tr, val, config, step, sums, n_sum, t_train, opt, train_eval_idx, best_val
) -> tuple[dict, bool]:
    t0 = time.perf_counter()
    s = (sums / max(n_sum, 1)).tolist()  # (synchronises the device)
    v = evaluate(model, val, config.eval_batch_size, config.cont_weight)
    row = {
        "step": step,
        "epoch": step * config.batch_size / len(tr),
        "lr": opt.param_groups[0]["lr"],
        "train_loss": s[0],
        "train_pitch_loss": s[1],
        "train_cont_loss": s[2],
    }
    if len(train_eval_idx):
        t = evaluate(model, tr, config.eval_batch_size, config.cont_weight, indices=train_eval_idx)
        row["train_eval_pitch_nll"] = t["pitch_nll"]
    row.update(
        {
            "val_loss": v["loss"],
            "val_pitch_loss": v["pitch_nll"],
            "val_cont_loss": v["cont_mse"],
            "val_pitch_top1": v["pitch_top1"],
            "val_pitch_top5": v["pitch_top5"],
            "seconds": t_train,
            "windows_per_s": n_sum * config.batch_size / t_train if t_train else math.nan,
            "eval_seconds": time.perf_counter() - t0,
        }
    )
    return row, row["val_loss"] < best_val - 1e-6


def _describe(row: dict, improved: bool) -> str:
    gap = (
        f", train (eval mode) {row['train_eval_pitch_nll']:.3f}"
        if "train_eval_pitch_nll" in row
        else ""
    )
    return (
        f"step {row['step']}: objective {row['train_loss']:.3f} | validation pitch NLL "
        f"{row['val_pitch_loss']:.3f}{gap}, top-1 {row['val_pitch_top1']:.3f}, MSE "
        f"{row['val_cont_loss']:.3f} | {row['windows_per_s']:.0f} windows/s"
        + (" *best*" if improved else "")
    )


#: Metadata that identifies the data of a run; resuming with other data is an error.
DATA_KEYS = ("source", "split_seed", "data_fingerprint", "limit")


def _check_resume(ck: dict, config: TrainConfig, metadata: dict | None, out_dir: Path) -> None:
    """Refuse to resume a run with other settings or other data, naming what differs."""
    before = {**ck["config"], **ck.get("metadata", {})}
    now = {**config.to_dict(), **{k: v for k, v in (metadata or {}).items() if k in DATA_KEYS}}
    diff = [
        f"{k}={before.get(k)!r} there, {now.get(k)!r} now"
        for k in dict.fromkeys([*before, *now])
        if before.get(k) != now.get(k)
    ]
    if diff:
        raise ValueError(
            f"resume: the interrupted run in {out_dir.name}/ differs from this one: "
            + "; ".join(diff)
            + " (resume with the same settings, or train afresh in another folder)"
        )


def _write_history(path: Path, history: list[dict]) -> None:
    atomic_write_bytes(path, pd.DataFrame(history).to_csv(index=False).encode())


def plot_history(history: pd.DataFrame, title: str | None = None):
    """Loss curves per head (training objective, training windows the card's way, and
    validation) and validation accuracy, against optimizer steps, as one figure."""
    import matplotlib.pyplot as plt

    if len(history) == 0:
        raise ValueError("empty history: nothing to plot")
    fig, axes = plt.subplots(1, 3, figsize=(16, 3.8))
    x = history["step"]
    ax = axes[0]
    ax.plot(x, history["train_pitch_loss"], "o-", label="train (objective, dropout on)")
    if "train_eval_pitch_nll" in history:
        ax.plot(x, history["train_eval_pitch_nll"], "^--", label="train (card's way, eval)")
    ax.plot(x, history["val_pitch_loss"], "s-", label="validation")
    ax.set_title("pitch cross-entropy (nats)")
    ax = axes[1]
    ax.plot(x, history["train_cont_loss"], "o-", label="train (objective)")
    ax.plot(x, history["val_cont_loss"], "s-", label="validation")
    ax.set_title("continuous MSE (normalized)")
    ax = axes[2]
    ax.plot(x, history["val_pitch_top1"], "s-", label="validation top-1")
    ax.plot(x, history["val_pitch_top5"], "s--", label="validation top-5")
    ax.set_title("pitch accuracy")
    for ax in axes:
        ax.set_xlabel("optimizer step")
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def results_table(model_metrics: dict[str, float], baselines: pd.DataFrame) -> pd.DataFrame:
    """The model's test metrics on top of the baselines' (same columns)."""
    cols = ["pitch_nll", "pitch_top1", "pitch_top5", "mse_step", "mse_duration", "mse_velocity"]
    row = pd.DataFrame([{c: model_metrics.get(c, np.nan) for c in cols}], index=["MelodyLSTM"])
    return pd.concat([row, baselines.reindex(columns=cols)])
