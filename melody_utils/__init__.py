"""melody_utils: data, model, training, analysis and generation for the melody-lstm notebooks."""

from .checkpoint import load_checkpoint
from .config import fast_mode, get_device, seed_everything
from .data import (
    BadInputError,
    Corpus,
    Normalizer,
    Piece,
    Windows,
    load_corpus,
    make_windows,
    split_pieces,
)
from .model import MelodyLSTM, parameter_table

__all__ = [
    "BadInputError",
    "Corpus",
    "MelodyLSTM",
    "Normalizer",
    "Piece",
    "Windows",
    "fast_mode",
    "get_device",
    "load_checkpoint",
    "load_corpus",
    "make_windows",
    "parameter_table",
    "seed_everything",
    "split_pieces",
]
__version__ = "0.1.0"
