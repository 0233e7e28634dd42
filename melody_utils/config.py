"""Project-wide settings (notebook 01): paths, shared sizes, the fast mode and the device."""

from __future__ import annotations

import os
from pathlib import Path

import torch

__version__ = "0.3.0"

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
#: True in a checkout of the repository; False when installed with ``pip install .``.
IN_CHECKOUT = (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "notebooks").is_dir()
#: The committed checkpoints ship inside the package (``pip install .`` has them too).
PRETRAINED_DIR = PACKAGE_DIR / "pretrained"
#: The embedded corpus (``data/bach_chorales.csv.gz``), in a checkout.
DATA_DIR = REPO_ROOT / "data"
#: Where the main job writes: ``outputs/`` of the checkout, else of the current folder.
OUTPUT_DIR = REPO_ROOT / "outputs" if IN_CHECKOUT else Path("outputs")

#: Window length (input notes) and the continuous features, in this order everywhere.
SEQ_LEN = 32
CONT_FEATURES = ("step", "duration", "velocity")
#: How ``split_pieces``, ``prepare`` and ``make run`` split a corpus: ``"piece"`` or
#: ``"tune"`` (pieces sharing a tune kept together; melody_utils.tunes). A checkpoint's sidecar
#: records it as ``split_by`` (absent in older sidecars: ``"piece"``).
SPLIT_BY = "piece"
#: The pitch vocabulary: MIDI pitches 0..127.
N_PITCHES = 128
#: The one rhythm rule. Onsets closer than ``CHORD_SNAP`` seconds start together (chord
#: tones: generation snaps such steps to 0, the metrics count them as chords); a step of
#: ``CHORD_SNAP`` up to ``FLAM_MAX`` is a flam, neither together nor a note value. The bounds
#: are in seconds and made for scores rendered at a steady tempo (the chorales: a sixteenth is
#: 62 ms); on performance MIDI, where players spread chords by 10-50 ms, the flam rate and the
#: chord share measure the performance style as much as the model, so compare them only with
#: real pieces of the same collection.
CHORD_SNAP = 0.01
FLAM_MAX = 0.1


def _flag(name: str) -> bool:
    return os.environ.get(name, "0").strip().lower() in {"1", "true", "yes", "on"}


def fast_mode() -> bool:
    """True when ``MELODY_FAST=1``: notebooks shrink data and training for the test suite."""
    return _flag("MELODY_FAST")


def cache_dir() -> Path:
    """Folder of the parse cache: ``MELODY_CACHE_DIR``, else ``data/cache`` in a checkout,
    else the user's cache folder."""
    env = os.environ.get("MELODY_CACHE_DIR", "").strip()
    if env:
        return Path(env).expanduser()
    if IN_CHECKOUT:
        return DATA_DIR / "cache"
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "melody-lstm"


def cache_enabled() -> bool:
    """False when ``MELODY_NO_CACHE=1``: corpora are parsed every time, nothing is written."""
    return not _flag("MELODY_NO_CACHE")


def get_device(prefer: str | None = None) -> torch.device:
    """CUDA when present, else Apple MPS, else the CPU; ``prefer`` (or ``MELODY_DEVICE``, e.g.
    ``"cuda:1"``) forces one, and a device that is not there is an error, never a fallback."""
    choice = (prefer or os.environ.get("MELODY_DEVICE") or "").strip()
    if not choice:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(choice)
    except RuntimeError:
        raise ValueError(f"unknown device {choice!r}; use cpu, cuda, cuda:N or mps") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {choice!r}; use cpu, cuda, cuda:N or mps")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {choice!r} was requested but CUDA is not available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise RuntimeError(f"device {choice!r} was requested but only {n} CUDA device(s) exist")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"device {choice!r} was requested but MPS is not available")
    return dev


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (cuDNN deterministic on a GPU); return a seeded
    ``torch.Generator`` for the demos' own draws."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)
