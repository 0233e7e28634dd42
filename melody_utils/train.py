"""Training and evaluation of :class:`MelodyLSTM` (introduced in notebook 03).

loss = cross-entropy(pitch) + λ · MSE(step, duration, velocity), with AdamW,
gradient clipping, linear warm-up then cosine decay of the learning rate, and
early stopping on the validation loss. The windows live on the training device
as whole tensors, so the hot loop is index-select, forward, backward, step: no
per-item Python data loading.

Checkpoints in ``out_dir``:

* ``best.safetensors`` + ``best.json``: the best validation loss so far
  (loadable with :func:`melody_utils.load_checkpoint`);
* ``last.pt``: model, optimizer, scheduler, RNG state and history after the last
  finished epoch, read back with ``torch.load(weights_only=True)``; ``resume=True``
  continues from it and ends where an uninterrupted run would (on CPU);
* ``history.csv``: one row per epoch.

Every file is written atomically (temporary file, then rename).
"""

from __future__ import annotations

import contextlib
import io
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
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
from .notes import check_pitch_range


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of a training run (``PROFILES`` holds the named ones)."""

    epochs: int = 12
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.01
    cont_weight: float = 1.0  # λ in loss = CE + λ·MSE
    grad_clip: float = 1.0
    warmup_steps: int = 200
    patience: int = 3  # epochs without validation improvement before stopping
    seed: int = 0
    max_steps_per_epoch: int | None = None  # cap, for quick demos and tests
    eval_batch_size: int = 2048
    precision: str = "auto"  # "auto" (bf16 autocast on CUDA), "fp32" or "bf16"

    def __post_init__(self) -> None:
        _check_fields(self)

    def to_dict(self) -> dict:
        return asdict(self)


def _check_fields(config: object) -> None:
    """Validate a config dataclass by its field types: ints >= 1 (``seed`` >= 0,
    optional ones may be None), finite floats >= 0, the precision's name."""
    for f in fields(config):
        value = getattr(config, f.name)
        if f.name == "precision":
            if value not in ("auto", "fp32", "bf16"):
                raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {value!r}")
            continue
        if value is None and "None" in str(f.type):
            continue
        if "int" in str(f.type):
            low = 0 if f.name == "seed" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{f.name} must be an integer >= {low}, got {value!r}")
        elif "float" in str(f.type):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (math.isfinite(value) and value >= 0)
            ):
                raise ValueError(f"{f.name} must be a finite number >= 0, got {value!r}")


#: Named profiles. ``default`` is what ``make run`` and the pretrained checkpoint use.
PROFILES: dict[str, TrainConfig] = {
    "default": TrainConfig(epochs=5),
    "fast": TrainConfig(
        epochs=2, max_steps_per_epoch=4, batch_size=64, warmup_steps=2, eval_batch_size=512
    ),
}


@dataclass
class TrainResult:
    """What :func:`train` returns: the per-epoch history and where things went."""

    history: pd.DataFrame
    best_epoch: int
    best_val_loss: float
    stopped_early: bool
    device: str
    out_dir: Path | None = None
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers


def _autocast(device: torch.device, precision: str):
    """The autocast context for ``precision`` on ``device``.

    ``"auto"`` is bf16 on a CUDA device that supports it (Ampere and newer), fp32
    elsewhere; ``"bf16"`` asks for it explicitly (CPU autocast too, slow but it runs);
    ``"fp32"`` turns autocast off.
    """
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {precision!r}")
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


def losses(
    model: MelodyLSTM,
    pitch_seq: torch.Tensor,
    cont_seq: torch.Tensor,
    target_pitch: torch.Tensor,
    target_cont: torch.Tensor,
    cont_weight: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(total, pitch_ce, cont_mse, pitch_logits)`` for one batch (the training objective)."""
    logits, cont = model(pitch_seq, cont_seq, check=False)
    ce = F.cross_entropy(logits.float(), target_pitch)
    mse = F.mse_loss(cont.float(), target_cont)
    return ce + cont_weight * mse, ce, mse, logits


def _lr_lambda(warmup: int, total: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return f


def _validate_windows(w: Windows, name: str, model: MelodyLSTM) -> None:
    vocab, seq_len = model.config.vocab_size, model.config.seq_len
    if len(w.pitch_seq) == 0:
        raise ValueError(f"{name} windows are empty: no piece has enough notes")
    if seq_len is not None and w.pitch_seq.shape[1] != seq_len:
        raise ValueError(
            f"{name} windows have {w.pitch_seq.shape[1]} notes but the model takes {seq_len}"
        )
    if w.pitch_seq.dtype != torch.int64 or w.target_pitch.dtype != torch.int64:
        raise TypeError(f"{name} pitches must be int64")
    check_pitch_range(w.pitch_seq, f"{name} pitches", n_pitches=vocab)
    check_pitch_range(w.target_pitch, f"{name} target pitches", n_pitches=vocab)


@torch.no_grad()
def evaluate(
    model: MelodyLSTM,
    windows: Windows,
    batch_size: int = 2048,
    cont_weight: float = 1.0,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Metrics of ``model`` on ``windows`` in eval mode, always in fp32 (so numbers from
    a bf16 training run on a GPU and an fp32 run on a CPU compare).

    Returns ``loss``, ``pitch_nll`` (mean cross-entropy in nats), ``pitch_top1``,
    ``pitch_top5``, ``cont_mse`` and ``mse_step``/``mse_duration``/``mse_velocity`` (in
    normalized units), averaged over windows.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    n = len(windows.pitch_seq)
    if n == 0:
        raise ValueError("cannot evaluate on zero windows")
    nll = torch.zeros((), device=device, dtype=torch.float64)
    top1 = torch.zeros((), device=device, dtype=torch.float64)
    top5 = torch.zeros((), device=device, dtype=torch.float64)
    sq = torch.zeros(3, device=device, dtype=torch.float64)
    for a in range(0, n, batch_size):
        p, c, tp, tc = (t[a : a + batch_size].to(device, non_blocking=True) for t in windows)
        logits, cont = model(p, c, check=False)
        logits = logits.float()
        nll += F.cross_entropy(logits, tp, reduction="sum").double()
        top = logits.topk(5, dim=-1).indices
        top1 += (top[:, 0] == tp).sum()
        top5 += (top == tp[:, None]).any(dim=-1).sum()
        sq += ((cont.float() - tc) ** 2).sum(dim=0).double()
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
    stop_after_epochs: int | None = None,
) -> TrainResult:
    """Train ``model`` in place; at the end it holds the best-validation weights.

    Args:
        train_windows, val_windows: from :func:`melody_utils.data.make_windows`.
        config: a :class:`TrainConfig` (see ``PROFILES``).
        out_dir: where ``best.*``, ``last.pt`` and ``history.csv`` go (None: nowhere).
        resume: continue from ``out_dir/last.pt`` (error if it does not exist).
        device: None picks CUDA, then MPS, then CPU.
        normalizer, metadata: stored with the "best" checkpoint so that it can be
            loaded on its own (``metadata`` should hold ``source`` and ``split_seed``).
        stop_after_epochs: stop after this many epochs *of this call* (simulates an
            interruption; the run can be resumed).
    """
    device = torch.device(device) if device is not None else get_device()
    _validate_windows(train_windows, "training", model)
    _validate_windows(val_windows, "validation", model)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
    if resume and (out_dir is None or not (out_dir / "last.pt").exists()):
        raise FileNotFoundError("resume=True needs out_dir holding last.pt from an earlier run")
    if out_dir is not None and normalizer is None:
        raise ValueError(
            "out_dir needs the normalizer, so that the best checkpoint can be loaded on its own"
        )

    model.to(device)
    # The windows go to the device once; batches are index-selects on it.
    tr = Windows(*(t.to(device) for t in train_windows))
    n = len(tr.pitch_seq)
    steps_per_epoch = math.ceil(n / config.batch_size)
    if config.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, _lr_lambda(config.warmup_steps, config.epochs * steps_per_epoch)
    )

    history: list[dict] = []
    best_val, best_epoch, bad_epochs, start_epoch = math.inf, 0, 0, 0
    best_state = None
    if resume:
        # RNG states must stay on the CPU; load_state_dict moves the rest to the device
        ck = torch.load(out_dir / "last.pt", map_location="cpu", weights_only=True)
        _check_resume(ck, config, metadata, out_dir)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        torch.set_rng_state(ck["rng"])
        if device.type == "cuda" and ck.get("cuda_rng"):
            torch.cuda.set_rng_state_all(ck["cuda_rng"])
        history = ck["history"]
        best_val, best_epoch, bad_epochs = ck["best_val"], ck["best_epoch"], ck["bad_epochs"]
        start_epoch = ck["epoch"]
        best_state = {k: v.clone() for k, v in ck["best_model"].items()} or None
        if bad_epochs >= config.patience or start_epoch >= config.epochs:
            start_epoch = config.epochs  # the run had already finished
    else:
        torch.manual_seed(config.seed)  # dropout masks (CPU and every CUDA device)

    from tqdm.auto import tqdm

    stopped_early = bad_epochs >= config.patience
    epochs_run = 0
    for epoch in range(start_epoch, config.epochs):
        if stopped_early or (stop_after_epochs is not None and epochs_run >= stop_after_epochs):
            break
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(
            n, generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        ).to(device)
        sums = torch.zeros(5, device=device, dtype=torch.float64)  # ce, mse, top1, top5, count
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"epoch {epoch + 1}/{config.epochs}",
            unit="batch",
            disable=not progress,
            leave=False,
        )
        for step in bar:
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            p, c, tp, tc = (t.index_select(0, idx) for t in tr)
            with _autocast(device, config.precision):
                loss, ce, mse, logits = losses(model, p, c, tp, tc, config.cont_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            sched.step()
            with torch.no_grad():
                top = logits.detach().topk(5, dim=-1).indices
                b = len(idx)
                sums += torch.stack(
                    [
                        ce.detach().double() * b,
                        mse.detach().double() * b,
                        (top[:, 0] == tp).sum().double(),
                        (top == tp[:, None]).any(-1).sum().double(),
                        torch.tensor(b, device=device, dtype=torch.float64),
                    ]
                )
            if progress and (step % 20 == 0 or step == steps_per_epoch - 1):
                s = sums.tolist()
                bar.set_postfix(ce=f"{s[0] / s[4]:.3f}", mse=f"{s[1] / s[4]:.3f}")
        s = sums.tolist()  # (synchronises the device)
        train_seconds = time.perf_counter() - t0
        val = evaluate(model, val_windows, config.eval_batch_size, config.cont_weight, device)
        row = {
            "epoch": epoch + 1,
            "train_loss": (s[0] + config.cont_weight * s[1]) / s[4],
            "train_pitch_loss": s[0] / s[4],
            "train_cont_loss": s[1] / s[4],
            "train_pitch_top1": s[2] / s[4],
            "train_pitch_top5": s[3] / s[4],
            "val_loss": val["loss"],
            "val_pitch_loss": val["pitch_nll"],
            "val_cont_loss": val["cont_mse"],
            "val_pitch_top1": val["pitch_top1"],
            "val_pitch_top5": val["pitch_top5"],
            "lr": opt.param_groups[0]["lr"],
            "train_seconds": train_seconds,
            "train_windows_per_s": s[4] / train_seconds,
            "seconds": time.perf_counter() - t0,
        }
        history.append(row)
        epochs_run += 1
        improved = row["val_loss"] < best_val - 1e-6
        if improved:
            best_val, best_epoch, bad_epochs = row["val_loss"], epoch + 1, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if out_dir is not None:
                meta = dict(metadata or {})
                meta.update(
                    {
                        "train_config": config.to_dict(),
                        "epoch": epoch + 1,
                        "val_metrics": val,
                        "history": history,
                    }
                )
                save_checkpoint(out_dir / "best", model, normalizer, meta)
        else:
            bad_epochs += 1
        if progress:
            tqdm.write(
                f"epoch {epoch + 1}: train {row['train_loss']:.3f} "
                f"(pitch {row['train_pitch_loss']:.3f}, cont {row['train_cont_loss']:.3f})"
                f" | val {row['val_loss']:.3f} (pitch {row['val_pitch_loss']:.3f}, "
                f"top1 {row['val_pitch_top1']:.3f}) | {row['seconds']:.0f}s"
                + (" *best*" if improved else "")
            )
        stopped_early = bad_epochs >= config.patience
        if out_dir is not None:
            _save_last(
                out_dir,
                metadata,
                model,
                opt,
                sched,
                config,
                epoch + 1,
                history,
                best_val,
                best_epoch,
                bad_epochs,
                best_state,
            )
            _write_history(out_dir / "history.csv", history)

    if best_state is not None:
        model.load_state_dict(best_state)
    return TrainResult(
        pd.DataFrame(history), best_epoch, best_val, stopped_early, str(device), out_dir
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


def _save_last(
    out_dir: Path,
    metadata: dict | None,
    model,
    opt,
    sched,
    config: TrainConfig,
    epoch: int,
    history: list[dict],
    best_val: float,
    best_epoch: int,
    bad_epochs: int,
    best_state: dict | None,
) -> None:
    buf = io.BytesIO()
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "metadata": {k: v for k, v in (metadata or {}).items() if k in DATA_KEYS},
            "config": config.to_dict(),
            "epoch": epoch,
            "history": history,
            "best_val": best_val,
            "best_epoch": best_epoch,
            "bad_epochs": bad_epochs,
            "best_model": best_state or {},
        },
        buf,
    )
    atomic_write_bytes(out_dir / "last.pt", buf.getvalue())


def _write_history(path: Path, history: list[dict]) -> None:
    atomic_write_bytes(path, pd.DataFrame(history).to_csv(index=False).encode())


def plot_history(history: pd.DataFrame, title: str | None = None):
    """Loss curves per head (train vs validation) and accuracy, as one figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if len(history) == 0:
        raise ValueError("empty history: nothing to plot")
    fig, axes = plt.subplots(1, 4, figsize=(18, 3.8))
    ep = history["epoch"]
    panels = [
        ("loss", "total loss"),
        ("pitch_loss", "pitch cross-entropy (nats)"),
        ("cont_loss", "continuous MSE (normalized)"),
    ]
    for ax, (key, label) in zip(axes, panels, strict=False):
        ax.plot(ep, history[f"train_{key}"], "o-", label="train")
        ax.plot(ep, history[f"val_{key}"], "s-", label="validation")
        ax.set_title(label)
        ax.set_xlabel("epoch")
        ax.legend()
    ax = axes[3]
    for k, style in (
        ("train_pitch_top1", "o-"),
        ("val_pitch_top1", "s-"),
        ("val_pitch_top5", "s--"),
    ):
        if k in history:
            ax.plot(ep, history[k], style, label=k.replace("_pitch_", " ").replace("_", " "))
    ax.set_title("pitch accuracy")
    ax.set_xlabel("epoch")
    ax.legend()
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def results_table(model_metrics: dict[str, float], baselines: pd.DataFrame) -> pd.DataFrame:
    """The model's test metrics on top of the baselines' (same columns)."""
    cols = ["pitch_nll", "pitch_top1", "pitch_top5", "mse_step", "mse_duration", "mse_velocity"]
    row = pd.DataFrame([{c: model_metrics.get(c, np.nan) for c in cols}], index=["MelodyLSTM"])
    return pd.concat([row, baselines.reindex(columns=cols)])
