"""Saving and loading trained models safely (introduced in notebook 03).

A checkpoint is two files side by side:

* ``NAME.safetensors``: the weights only (safetensors never unpickles objects);
* ``NAME.json``: the model config, the normalizer, the data source (``"source"``),
  the split seed (``"split_seed"``), the training config and history, the final
  test metrics with the baselines', and the library versions.

``load_checkpoint()`` with no path loads the committed pretrained model
``data/checkpoints/melody_lstm_bach``.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path

import torch

from .config import DATA_DIR
from .data import Normalizer
from .model import MelodyLSTM

FORMAT = "melody-lstm-checkpoint"
FORMAT_VERSION = 1
#: The committed pretrained checkpoint (trained on the full Bach corpus, default profile).
PRETRAINED = DATA_DIR / "checkpoints" / "melody_lstm_bach"


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


def _stem(path: str | Path) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".safetensors", ".json") else path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(
    path: str | Path, model: MelodyLSTM, normalizer: Normalizer, metadata: dict | None = None
) -> Path:
    """Write ``path.safetensors`` and ``path.json`` atomically; return the stem.

    ``metadata`` should carry at least ``source`` and ``split_seed``; the model config,
    the normalizer and library versions are added here.
    """
    from safetensors.torch import save

    stem = _stem(path)
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
    atomic_write_bytes(stem.with_suffix(".safetensors"), save(state, {"format": FORMAT}))
    atomic_write_bytes(
        stem.with_suffix(".json"), json.dumps(meta, indent=1, default=_json_default).encode()
    )
    return stem


def _json_default(obj: object) -> object:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return obj.name
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_metadata(path: str | Path | None = None) -> dict:
    """The JSON sidecar of a checkpoint (the pretrained one when ``path`` is None)."""
    stem = _stem(path) if path is not None else PRETRAINED
    meta_path = stem.with_suffix(".json")
    if not meta_path.exists():
        raise FileNotFoundError(
            f"checkpoint metadata {meta_path.name} not found next to "
            f"{stem.name}.safetensors (looked in {meta_path.parent.name}/)"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{meta_path.name} is truncated or not JSON ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{meta_path.name} is not a melody-lstm checkpoint (format={meta.get('format')!r})"
        )
    return meta


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

    stem = _stem(path) if path is not None else PRETRAINED
    weights = stem.with_suffix(".safetensors")
    if not weights.exists():
        raise FileNotFoundError(
            f"checkpoint weights {weights.name} not found "
            f"(in {weights.parent.name}/); train one with `make run`"
        )
    meta = read_metadata(stem)
    try:
        state = load_file(weights)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights.name} is truncated or corrupt ({exc})") from exc
    try:
        model = MelodyLSTM.from_config(meta["model_config"])
        normalizer = Normalizer.from_dict(meta["normalizer"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{stem.name}.json lacks a valid model config or normalizer ({exc})"
        ) from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise CheckpointError(
            f"{weights.name} holds weights of another architecture than "
            f"its config describes: {' '.join(first)}"
        ) from exc
    return model.to(device).eval(), normalizer, meta
