"""melody_utils: data, model, training, analysis and generation for the melody-lstm notebooks.

Modules, in the order the notebooks introduce them: ``config`` (paths, device, seeds),
``notes`` (note tables and MIDI), ``corpus`` (sources, parsing, cache), ``data``
(splits, normalizer, windows), ``plots``, ``model``, ``train``, ``checkpoint``,
``baselines``, ``embeddings``, ``metrics``, ``generate``, ``audio``, ``widgets`` and
``pipeline`` (the main job, ``python -m melody_utils``).
"""

from .checkpoint import load_checkpoint
from .config import fast_mode, get_device, seed_everything
from .corpus import Corpus, Piece, load_corpus
from .data import Normalizer, Windows, make_windows, split_pieces
from .model import MelodyLSTM, ModelConfig, parameter_table
from .notes import BadInputError

__all__ = [
    "BadInputError",
    "Corpus",
    "MelodyLSTM",
    "ModelConfig",
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
__version__ = "0.2.0"
