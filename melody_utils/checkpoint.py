"""Saving and loading trained models safely (introduced in notebook 03).

A checkpoint is two files side by side:

* ``NAME.safetensors``: the weights only (safetensors never unpickles objects);
* ``NAME.json``: the model config, the normalizer, the data source (``"source"``),
  the split seed (``"split_seed"``), the training config and history, the final
  test metrics with the baselines', and the library versions.

``load_checkpoint()`` with no path loads the committed pretrained model
``melody_utils/pretrained/melody_lstm_bach``.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

from .config import PRETRAINED_DIR
from .data import Normalizer
from .fileio import atomic_write_bytes
from .model import MelodyLSTM, ModelConfig

FORMAT = "melody-lstm-checkpoint"
FORMAT_VERSION = 1
#: The committed pretrained checkpoint (trained on the full Bach corpus, default profile).
PRETRAINED = PRETRAINED_DIR / "melody_lstm_bach"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing a part, truncated, or from another architecture."""


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a trained model's numbers."""
    import music21
    import numpy

    from . import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "music21": music21.__version__,
        "melody_utils": __version__,
    }


def checkpoint_files(path: str | Path) -> tuple[Path, Path]:
    """``(NAME.safetensors, NAME.json)`` for a checkpoint named by its stem or either file.

    Only the two checkpoint suffixes are stripped: ``run.lr1e-3`` is the stem of
    ``run.lr1e-3.safetensors``, never of ``run.safetensors``.
    """
    path = Path(path)
    name = path.name
    for suffix in (".safetensors", ".json"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    if not name or name in (".", ".."):
        raise ValueError(f"{str(path)!r} does not name a checkpoint")
    return path.with_name(name + ".safetensors"), path.with_name(name + ".json")


def save_checkpoint(
    path: str | Path, model: MelodyLSTM, normalizer: Normalizer, metadata: dict | None = None
) -> Path:
    """Write ``path.safetensors`` and ``path.json`` atomically; return the stem.

    ``metadata`` should carry at least ``source`` and ``split_seed``; the model config,
    the normalizer and library versions are added here.
    """
    from safetensors.torch import save

    weights, sidecar = checkpoint_files(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = dict(metadata or {})
    meta.update(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model_config": model.config.to_dict(),
            "normalizer": normalizer.to_dict(),
            "versions": library_versions(),
        }
    )
    atomic_write_bytes(weights, save(state, {"format": FORMAT}))
    atomic_write_bytes(sidecar, json.dumps(meta, indent=1, default=_json_default).encode())
    return weights.with_name(weights.name[: -len(".safetensors")])


def _json_default(obj: object) -> object:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return obj.name
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_metadata(path: str | Path | None = None) -> dict:
    """The JSON sidecar of a checkpoint (the pretrained one when ``path`` is None)."""
    weights, meta_path = checkpoint_files(PRETRAINED if path is None else path)
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"checkpoint metadata {meta_path.name} not found next to "
            f"{weights.name} (looked in {meta_path.parent.name}/)" + _hint(path)
        )
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{meta_path.name} is truncated or not JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{meta_path.name} is not a melody-lstm checkpoint "
            f"(format={meta.get('format') if isinstance(meta, dict) else None!r})"
        )
    return meta


def _hint(path: str | Path | None) -> str:
    """Why a name that is not a checkpoint was probably passed."""
    if path is not None and Path(path).is_file() and Path(path).suffix == ".pt":
        return (
            f"; {Path(path).name} is a training state for `resume`, not a checkpoint: "
            f"load best.safetensors from the same folder"
        )
    return ""


def load_checkpoint(
    path: str | Path | None = None, device: str | torch.device = "cpu"
) -> tuple[MelodyLSTM, Normalizer, dict]:
    """Load ``(model, normalizer, metadata)``; the model is in eval mode on ``device``.

    With no ``path`` the committed pretrained checkpoint is loaded. ``path`` may name
    the ``.safetensors`` file, the ``.json`` sidecar or their common stem. A missing,
    truncated or foreign file, or weights of another architecture, raise
    :class:`FileNotFoundError` or :class:`CheckpointError` with the reason.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights, sidecar = checkpoint_files(PRETRAINED if path is None else path)
    if not weights.is_file():
        raise FileNotFoundError(
            f"checkpoint weights {weights.name} not found "
            f"(in {weights.parent.name}/); train one with `make run`" + _hint(path)
        )
    meta = read_metadata(sidecar)
    try:
        state = load_file(weights)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights.name} is truncated or corrupt ({exc})") from exc
    try:
        model = MelodyLSTM(ModelConfig.from_dict(meta["model_config"]))
        normalizer = Normalizer.from_dict(meta["normalizer"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{sidecar.name} lacks a valid model config or normalizer ({exc})"
        ) from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise CheckpointError(
            f"{weights.name} holds weights of another architecture than "
            f"its config describes: {' '.join(first)}"
        ) from exc
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{weights.name} holds NaN or infinite weights in {bad[:3]}")
    return model.to(device).eval(), normalizer, meta
