"""Project-wide settings: paths, the fast (test) mode and the compute device.

Introduced in notebook 01; every other module and notebook reads these instead of
hard-coding paths or devices.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

#: Root of the repository (the folder holding ``melody_utils/``).
REPO_ROOT = Path(__file__).resolve().parents[1]
#: Folder for data that ships with the repo (checkpoints) and the parse cache.
DATA_DIR = REPO_ROOT / "data"
#: Where the main job writes checkpoints, CSVs, plots and generated music.
OUTPUT_DIR = REPO_ROOT / "outputs"

#: Window length (input notes) and the number of continuous features.
SEQ_LEN = 32
CONT_FEATURES = ("step", "duration", "velocity")


def fast_mode() -> bool:
    """True when ``MELODY_FAST=1``: notebooks shrink data and training for the test suite."""
    return os.environ.get("MELODY_FAST", "0").strip().lower() in {"1", "true", "yes"}


def cache_dir() -> Path:
    """Folder of the parsed-corpus cache (``MELODY_CACHE`` overrides ``data/cache``)."""
    return Path(os.environ.get("MELODY_CACHE", DATA_DIR / "cache"))


def get_device(prefer: str | None = None) -> torch.device:
    """Pick the compute device: CUDA when present, else Apple MPS, else CPU.

    ``prefer`` (or the ``MELODY_DEVICE`` environment variable) forces one, e.g. ``"cpu"``.
    Asking for a device that is not available raises a clear error instead of
    silently falling back.
    """
    choice = prefer or os.environ.get("MELODY_DEVICE")
    if choice:
        dev = torch.device(choice)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {choice!r} was requested but CUDA is not available")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError(f"device {choice!r} was requested but MPS is not available")
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
