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


def _keep_plain_figures() -> None:
    """In Jupyter, music21's import starts a timer that switches matplotlib to "retina"
    PNGs a second later (every figure stored at double size). Inside a notebook kernel,
    import it now and cancel that timer, so that figures stay plain PNGs."""
    import sys

    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    if shell is None or type(shell).__name__ != "ZMQInteractiveShell":
        return
    try:
        import music21.ipython21 as ip21

        timer = getattr(ip21, "t", None)
        if timer is not None:
            timer.cancel()
    except Exception:  # an older or newer music21 without the timer: nothing to undo
        pass


_keep_plain_figures()
