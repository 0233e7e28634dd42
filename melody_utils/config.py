"""Project-wide settings: paths, the fast (test) mode and the compute device.

Introduced in notebook 01; every other module and notebook reads these instead of
hard-coding paths or devices.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

#: The package's folder, and the repository around it when run from a checkout.
PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
#: True in a checkout of the repository; False when installed with ``pip install .``.
IN_CHECKOUT = (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "notebooks").is_dir()
#: The committed pretrained checkpoints ship inside the package (so ``pip install .``
#: has them too).
PRETRAINED_DIR = PACKAGE_DIR / "pretrained"
#: Where the parse cache lives by default: ``data/cache`` in a checkout, the user's
#: cache folder otherwise (``MELODY_CACHE_DIR`` overrides both).
DATA_DIR = (
    REPO_ROOT / "data"
    if IN_CHECKOUT
    else (Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "melody-lstm")
)
#: Where the main job writes checkpoints, CSVs, plots and generated music:
#: ``outputs/`` of the checkout, or of the current folder for an installed package.
OUTPUT_DIR = REPO_ROOT / "outputs" if IN_CHECKOUT else Path("outputs")

#: Window length (input notes) and the continuous features, in this order everywhere.
SEQ_LEN = 32
CONT_FEATURES = ("step", "duration", "velocity")
#: Size of the pitch vocabulary: MIDI pitches 0..127.
N_PITCHES = 128
#: Two notes whose onsets are closer than this (seconds) start together: chord tones.
#: Generation snaps shorter steps to 0 and the metrics count them as chord tones.
CHORD_SNAP = 0.01


def _flag(name: str) -> bool:
    return os.environ.get(name, "0").strip().lower() in {"1", "true", "yes", "on"}


def fast_mode() -> bool:
    """True when ``MELODY_FAST=1``: notebooks shrink data and training for the test suite."""
    return _flag("MELODY_FAST")


def cache_dir() -> Path:
    """Folder of the parsed-corpus cache: ``MELODY_CACHE_DIR``, else ``data/cache``."""
    env = os.environ.get("MELODY_CACHE_DIR", "").strip()
    return Path(env).expanduser() if env else DATA_DIR / "cache"


def cache_enabled() -> bool:
    """False when ``MELODY_NO_CACHE=1``: corpora are parsed every time, nothing is written."""
    return not _flag("MELODY_NO_CACHE")


def get_device(prefer: str | None = None) -> torch.device:
    """Pick the compute device: CUDA when present, else Apple MPS, else CPU.

    ``prefer`` (or the ``MELODY_DEVICE`` environment variable) forces one, e.g. ``"cpu"``.
    Asking for a device that is not available raises a clear error instead of
    silently falling back.
    """
    choice = (prefer or os.environ.get("MELODY_DEVICE") or "").strip()
    if choice:
        try:
            dev = torch.device(choice)
        except RuntimeError:
            raise ValueError(f"unknown device {choice!r}; use cpu, cuda, cuda:N or mps") from None
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise RuntimeError(f"device {choice!r} was requested but CUDA is not available")
            if dev.index is not None and dev.index >= torch.cuda.device_count():
                raise RuntimeError(
                    f"device {choice!r} was requested but only "
                    f"{torch.cuda.device_count()} CUDA device(s) exist"
                )
        elif dev.type == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError(f"device {choice!r} was requested but MPS is not available")
        elif dev.type not in ("cpu", "cuda", "mps"):
            raise ValueError(f"unsupported device {choice!r}; use cpu, cuda, cuda:N or mps")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (and cuDNN determinism); return a seeded generator."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)
