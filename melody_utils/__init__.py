"""melody_utils: data, model, training, analysis and generation for the melody-lstm notebooks
(modules config, notes, data, tunes, audio, notation, plots, model, train, baselines, embeddings,
metrics, generate, widgets, ablation; ``python -m melody_utils`` is the main job)."""

from .config import __version__, fast_mode, get_device, seed_everything
from .data import (
    Corpus,
    Normalizer,
    Piece,
    Windows,
    load_corpus,
    make_windows,
    prepare,
    split_pieces,
)
from .model import MelodyLSTM, ModelConfig, build_model, parameter_table
from .notes import BadInputError
from .train import load_checkpoint

__all__ = ["BadInputError", "Corpus", "MelodyLSTM", "ModelConfig", "Normalizer", "Piece", "Windows"]
__all__ += ["__version__", "build_model", "fast_mode", "get_device", "load_checkpoint"]
__all__ += ["load_corpus", "make_windows", "parameter_table", "prepare", "seed_everything"]
__all__ += ["split_pieces"]
