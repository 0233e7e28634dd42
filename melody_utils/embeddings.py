"""Measuring the pitch-embedding space (introduced in notebook 04; issue 5).

The model card claims the 96-D pitch embedding "learns semantic relations between
notes (e.g. C# near C)". This module turns that claim into measurements that can fail:

* :func:`cosine_similarity_matrix`, :func:`nearest_neighbours` -- what is near what;
* :func:`similarity_by_interval` -- mean cosine similarity of two pitches as a function
  of the interval between them (1 = semitone, 7 = fifth, 12 = octave);
* :func:`linear_probe` -- can a linear classifier read the pitch class or the octave
  off the vector (cross-validated, with its chance level)? :func:`height_probe` -- can
  a linear regression read the pitch height (R²)?
* :func:`learned_update` -- the trained table minus its (weight-decayed) random start:
  what the gradients wrote, to analyse on its own;
* :func:`pitch_class_centroids`, :func:`pitch_class_circles` -- with pitch height
  taken out, do the pitch classes lie on the circle of fifths or the chromatic circle?
* :func:`pitches_to_notes` -- a list of pitches as a note table, to listen to;
* :func:`compare_with_controls` -- every measure again on two controls: the same
  architecture's **untrained** embedding (:func:`random_init_embedding`) and the
  trained vectors with their pitch labels **permuted** among the seen pitches
  (:func:`permuted_embedding`). A claim holds only where the trained embedding beats
  both controls; :func:`judge_claims` and :func:`verdict_markdown` turn such results
  into a computed verdict, :func:`describe_profile` says which values stand out.

Never-seen pitches
------------------
A pitch that never occurs in the training pieces receives no gradient (the embedding
is only updated for pitches that appear in the input), so its vector is still its
random initial value. Such rows say nothing about what the model learned, and
training corpora use only a few dozen of the 128 pitches. Every statistic here takes a
boolean ``mask`` (from :func:`seen_mask` on :func:`pitch_counts` of the training
pieces) and only ever reads the rows it marks: unseen rows never enter any
computation, whatever they hold.

Conventions: ``E`` is the ``(128, 96)`` table, row ``p`` the vector of MIDI pitch ``p``;
pitch class is ``p % 12`` (0 = C) and octave ``p // 12 - 1`` (scientific pitch
notation, 60 = C4).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .data import Piece
from .model import MelodyLSTM, ModelConfig
from .notes import check_pitch_range
from .plots import NOTE_NAMES, note_name

#: Short names of the intervals 1..12 semitones.
INTERVAL_NAMES = ("m2", "M2", "m3", "M3", "P4", "TT", "P5", "m6", "M6", "m7", "M7", "P8")

Measure = Callable[[np.ndarray, np.ndarray], "float | Mapping | pd.Series"]


# --------------------------------------------------------------------------- inputs


def embedding_table(model: MelodyLSTM | torch.nn.Module) -> np.ndarray:
    """The pitch embedding of ``model`` as a float64 array ``(vocab, dim)``, e.g. (128, 96)."""
    emb = getattr(model, "embedding", None)
    if not isinstance(emb, torch.nn.Embedding):
        raise TypeError(
            f"expected a model with an nn.Embedding attribute 'embedding', got "
            f"{type(model).__name__}"
        )
    return emb.weight.detach().cpu().numpy().astype(np.float64)


def pitch_counts(
    pieces: Iterable[Piece], vocab_size: int = 128, transpose: tuple[int, int] = (0, 0)
) -> np.ndarray:
    """How often each pitch occurs in ``pieces`` (pass the training split), shape ``(vocab,)``.

    ``transpose=(low, high)``: the training recipe shifted every window by a uniformly
    drawn number of semitones in ``low..high`` (``TrainConfig.transpose_min/max``), so
    the model saw pitch ``p`` whenever a note ``p - s`` was shifted by ``s``. The counts
    are then the *expected* occurrences, ``sum_s count[p - s] / n_shifts`` (a float
    array): a pitch outside every shifted range has count 0 and never got a gradient.
    """
    counts = np.zeros(vocab_size, dtype=np.int64)
    for piece in pieces:
        p = piece.notes["pitch"].to_numpy(np.int64)
        check_pitch_range(p, f"{piece.id}: pitches", n_pitches=vocab_size)
        counts += np.bincount(p, minlength=vocab_size)
    low, high = transpose
    if (low, high) == (0, 0):
        return counts
    if low > 0 or high < 0:
        raise ValueError(f"transpose must be a range holding 0, got {transpose}")
    shifted = np.zeros(vocab_size, dtype=np.float64)
    for shift in range(low, high + 1):
        lo, hi = max(0, shift), min(vocab_size, vocab_size + shift)
        shifted[lo:hi] += counts[lo - shift : hi - shift]
    return shifted / (high - low + 1)


def seen_mask(counts: np.ndarray, min_count: int = 1) -> np.ndarray:
    """Boolean mask of pitches seen at least ``min_count`` times in training."""
    counts = np.asarray(counts)
    if counts.ndim != 1 or not np.issubdtype(counts.dtype, np.number):
        raise ValueError(f"counts must be a 1-D array of numbers, got shape {counts.shape}")
    return counts >= min_count


def _prepare(
    E: np.ndarray, mask: np.ndarray | None, min_seen: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``E`` (2-D) and ``mask`` (bool, one per row); return float64 E and the mask."""
    E = np.asarray(E, dtype=np.float64)
    if E.ndim != 2:
        raise ValueError(f"E must be a 2-D (pitches, dim) array, got shape {E.shape}")
    if mask is None:
        mask = np.ones(len(E), dtype=bool)
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise TypeError(f"mask must be boolean (use seen_mask(counts)), got dtype {mask.dtype}")
    if mask.shape != (len(E),):
        raise ValueError(f"mask must have shape ({len(E)},), got {mask.shape}")
    if mask.sum() < min_seen:
        raise ValueError(f"need at least {min_seen} seen pitches, the mask has {int(mask.sum())}")
    if not np.isfinite(E[mask]).all():
        raise ValueError("E has non-finite values in seen rows")
    return E, mask


def _unit_rows(X: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(X, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, X / norm, np.nan)


# --------------------------------------------------------------------------- similarity


def cosine_similarity_matrix(E: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Cosine similarity of every pair of rows, ``(vocab, vocab)``, indexed by pitch.

    Entries involving a pitch outside ``mask`` are NaN (so indices stay pitches). A
    zero vector has no direction: its similarities are NaN too.
    """
    E, mask = _prepare(E, mask, min_seen=1)
    idx = np.flatnonzero(mask)
    U = _unit_rows(E[idx])
    out = np.full((len(E), len(E)), np.nan)
    out[np.ix_(idx, idx)] = np.clip(U @ U.T, -1.0, 1.0)
    return out


def nearest_neighbours(
    E: np.ndarray, pitch: int, k: int = 5, mask: np.ndarray | None = None
) -> pd.DataFrame:
    """The ``k`` seen pitches most cosine-similar to ``pitch`` (itself excluded).

    Returns a DataFrame with the columns ``pitch``, ``name`` (e.g. ``"C#4"``),
    ``cosine`` and ``interval`` (signed semitones from ``pitch`` to the neighbour:
    ``+7`` is a fifth up, ``-12`` an octave down), most similar first.
    """
    E, mask = _prepare(E, mask)
    pitch = int(pitch)
    if not 0 <= pitch < len(E):
        raise ValueError(f"pitch must lie in 0..{len(E) - 1}, got {pitch}")
    if not mask[pitch]:
        raise ValueError(
            f"pitch {pitch} ({note_name(pitch)}) is not a seen pitch: its "
            "vector is still the random initialisation"
        )
    sims = cosine_similarity_matrix(E, mask)[pitch]
    sims[pitch] = np.nan
    cand = np.flatnonzero(~np.isnan(sims))
    order = cand[np.lexsort((cand, -sims[cand]))][:k]  # by similarity, ties by pitch
    return pd.DataFrame(
        {
            "pitch": order.astype(int),
            "name": [note_name(p) for p in order],
            "cosine": sims[order],
            "interval": (order - pitch).astype(int),
        }
    )


def similarity_by_interval(
    E: np.ndarray, mask: np.ndarray | None, max_interval: int = 12
) -> pd.DataFrame:
    """Mean cosine similarity of pairs of seen pitches ``d`` semitones apart, ``d = 1..max``.

    Every pair ``(p, p + d)`` with both pitches seen counts once. Columns: ``name``
    (``m2`` ... ``P8``), ``mean``, ``std``, ``sem`` (std / sqrt(n); the pairs share
    pitches, so treat it as a rough guide -- the controls of
    :func:`compare_with_controls` are the real test) and ``n_pairs``. An interval with
    no pair gives NaN.
    """
    if max_interval < 1:
        raise ValueError(f"max_interval must be at least 1, got {max_interval}")
    S = cosine_similarity_matrix(E, mask)
    _, mask = _prepare(E, mask)
    rows = []
    for d in range(1, max_interval + 1):
        p = np.flatnonzero(mask[:-d] & mask[d:]) if d < len(mask) else np.array([], int)
        vals = S[p, p + d]
        vals = vals[~np.isnan(vals)]
        n = len(vals)
        rows.append(
            {
                "interval": d,
                "name": INTERVAL_NAMES[d - 1] if d <= 12 else f"{d}st",
                "mean": vals.mean() if n else np.nan,
                "std": vals.std(ddof=1) if n > 1 else np.nan,
                "sem": vals.std(ddof=1) / np.sqrt(n) if n > 1 else np.nan,
                "n_pairs": n,
            }
        )
    return pd.DataFrame(rows).set_index("interval")


# --------------------------------------------------------------------------- probes


def _labels(pitches: np.ndarray, target: str) -> np.ndarray:
    if target == "pitch_class":
        return pitches % 12
    if target == "octave":
        return pitches // 12 - 1
    raise ValueError(f"target must be 'pitch_class' or 'octave', got {target!r}")


def linear_probe(
    E: np.ndarray,
    mask: np.ndarray | None,
    target: str = "pitch_class",
    cv: int = 5,
    seed: int = 0,
    C: float = 1.0,
) -> dict:
    """Cross-validated accuracy of a linear classifier reading ``target`` off the vectors.

    The classifier is scikit-learn's ``StandardScaler`` + ``LogisticRegression`` (L2,
    strength ``C``), trained on the seen pitches only. ``target`` is ``"pitch_class"``
    (``p % 12``) or ``"octave"`` (``p // 12 - 1``).

    Small classes: stratified K-fold needs every class in every training fold, so a
    class with a single seen pitch (e.g. the one pitch of an extreme octave) cannot be
    tested and is **dropped** (listed in ``dropped_classes``), and the number of folds
    is reduced to the size of the smallest remaining class (``folds``, at least 2).
    The folds are ``StratifiedKFold(shuffle=True, random_state=seed)``.

    Read it with care: with ~50 seen pitches in 96 dimensions the probe has fewer
    examples than features, so a *low* accuracy is weak evidence that the information
    is absent (it may be encoded in too few directions, e.g. 12 classes on a 2-D
    circle), while a high held-out accuracy, above its chance and above the controls
    of :func:`compare_with_controls`, is real evidence that it is present.

    Returns a dict: ``target``, ``accuracy`` (mean over folds), ``accuracy_std``,
    ``chance`` (a most-frequent-class ``DummyClassifier`` scored on the same folds),
    ``uniform_chance`` (1 / classes), ``n_samples``, ``n_classes``, ``folds``,
    ``dropped_classes``.
    """
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    E, mask = _prepare(E, mask)
    if cv < 2:
        raise ValueError(f"cv must be at least 2, got {cv}")
    pitches = np.flatnonzero(mask)
    y = _labels(pitches, target)
    classes, sizes = np.unique(y, return_counts=True)
    dropped = classes[sizes < 2]
    keep = ~np.isin(y, dropped)
    X, y = E[pitches[keep]], y[keep]
    classes, sizes = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise ValueError(
            f"need at least 2 classes of {target} with 2+ seen pitches each, got {len(classes)}"
        )
    folds = int(min(cv, sizes.min()))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000))
    # A few dozen samples: one BLAS thread is faster than many fighting for shared cores.
    with threadpool_limits(1):
        acc = cross_val_score(probe, X, y, cv=splitter)
        chance = cross_val_score(DummyClassifier(strategy="most_frequent"), X, y, cv=splitter)
    return {
        "target": target,
        "accuracy": float(acc.mean()),
        "accuracy_std": float(acc.std()),
        "chance": float(chance.mean()),
        "uniform_chance": 1.0 / len(classes),
        "n_samples": int(len(y)),
        "n_classes": int(len(classes)),
        "folds": folds,
        "dropped_classes": [int(c) for c in dropped],
    }


def height_probe(
    E: np.ndarray, mask: np.ndarray | None, cv: int = 5, seed: int = 0, alpha: float = 1.0
) -> dict:
    """Cross-validated R² of a linear (ridge) regression reading pitch height, the MIDI
    number, off the vectors of the seen pitches.

    ``StandardScaler`` + ``Ridge(alpha)`` scored by R² on ``KFold(cv, shuffle=True,
    random_state=seed)`` folds. R² is 1 for a perfect read-out, 0 for predicting the
    mean, negative for worse than that. Unlike the octave classifier this uses the
    ordering of pitches, so a smooth "low to high" direction in the table is enough.

    Returns a dict: ``r2`` (mean over folds), ``r2_std``, ``n_samples``, ``folds``.
    """
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    E, mask = _prepare(E, mask, min_seen=max(cv, 2) * 2)
    if cv < 2:
        raise ValueError(f"cv must be at least 2, got {cv}")
    pitches = np.flatnonzero(mask)
    folds = KFold(n_splits=cv, shuffle=True, random_state=seed)
    with threadpool_limits(1):
        r2 = cross_val_score(
            make_pipeline(StandardScaler(), Ridge(alpha=alpha)),
            E[pitches],
            pitches.astype(np.float64),
            cv=folds,
            scoring="r2",
        )
    return {
        "r2": float(r2.mean()),
        "r2_std": float(r2.std()),
        "n_samples": int(len(pitches)),
        "folds": cv,
    }


# --------------------------------------------------------------------------- controls


def _model_config(like: MelodyLSTM | ModelConfig | dict | np.ndarray | None) -> ModelConfig:
    if like is None:
        return ModelConfig()
    if isinstance(like, MelodyLSTM):
        return like.config
    if isinstance(like, ModelConfig):
        return like
    if isinstance(like, dict):
        return ModelConfig.from_dict(like)
    shape = np.shape(like)
    if len(shape) != 2:
        raise ValueError(
            f"like must be a model, a ModelConfig, its dict or an embedding "
            f"table, got shape {shape}"
        )
    return ModelConfig(vocab_size=shape[0], embed_dim=shape[1])


def random_init_embedding(
    seed: int, like: MelodyLSTM | ModelConfig | dict | np.ndarray | None = None
) -> np.ndarray:
    """The untrained embedding of the same architecture: ``MelodyLSTM`` built after
    ``torch.manual_seed(seed)`` (``nn.Embedding``'s N(0, 1) draw, times the config's
    ``embed_init_std``).

    ``like`` gives the sizes (a model, its config or dict, or an embedding table);
    default the SPEC's. The global torch RNG state is restored afterwards. If the
    training run seeded torch with ``seed`` right before building its model, this is
    exactly the embedding that training started from.
    """
    config = _model_config(like)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MelodyLSTM(config)
    return embedding_table(model)


def permuted_embedding(E: np.ndarray, mask: np.ndarray | None, seed: int) -> np.ndarray:
    """``E`` with its seen rows shuffled among the seen pitches (unseen rows untouched).

    The set of vectors, and so every property that ignores which pitch owns which
    vector (norms, anisotropy, clustering), is kept; any relation between a vector and
    its pitch is destroyed.
    """
    E, mask = _prepare(E, mask)
    idx = np.flatnonzero(mask)
    out = E.copy()
    out[idx] = E[np.random.default_rng(seed).permutation(idx)]
    return out


def learned_update(
    E: np.ndarray, E_init: np.ndarray, mask: np.ndarray, rtol: float = 1e-4
) -> tuple[np.ndarray, float]:
    """Split a trained table into its decayed starting point and what training wrote.

    ``E = r * E_init + L``. With AdamW (decoupled weight decay), every step multiplies
    every parameter by ``1 - lr * weight_decay`` and then adds the optimizer's update, so
    after training each row is its initial value times the same factor ``r`` plus the
    (decayed) sum of its updates ``L``. A row that never received a gradient (an unseen
    pitch) is exactly ``r * E_init``; ``r`` is measured there, the same for every row.
    ``L`` is then what the gradients wrote into the table: zero (up to float rounding)
    on unseen rows, and the part of a seen row that owes nothing to the random start.

    Args:
        E: the trained table, ``(vocab, dim)``.
        E_init: the table training started from (:func:`random_init_embedding` with the
            training seed).
        mask: the seen pitches (:func:`seen_mask`); the rows outside it must exist.
        rtol: how far an unseen row may stray from ``r * E_init`` (relative to its norm).

    Returns:
        ``(L, r)``, ``L`` with the shape of ``E``.

    Raises:
        ValueError: no unseen row to measure ``r`` on, or unseen rows that are not one
            common multiple of ``E_init`` (another start, e.g. a wrong seed, or an
            optimizer without decoupled weight decay): the split does not apply.
    """
    E, mask = _prepare(E, mask, min_seen=0)
    E_init = np.asarray(E_init, dtype=np.float64)
    if E_init.shape != E.shape:
        raise ValueError(f"E_init must have the shape of E {E.shape}, got {E_init.shape}")
    unseen = np.flatnonzero(~mask)
    if len(unseen) == 0:
        raise ValueError("every pitch is seen: no untouched row to measure the decay on")
    A, B = E[unseen], E_init[unseen]
    if not (np.isfinite(A).all() and np.isfinite(B).all()):
        raise ValueError("E and E_init must be finite on the unseen rows")
    r = float((A * B).sum() / (B * B).sum())
    resid = np.linalg.norm(A - r * B, axis=1) / np.maximum(np.linalg.norm(A, axis=1), 1e-300)
    if resid.max() > rtol:
        worst = int(unseen[np.argmax(resid)])
        raise ValueError(
            f"unseen row {worst} ({note_name(worst)}) is not {r:.6g} x its "
            f"initial value (relative residual {resid.max():.2g} > {rtol:g}): "
            "E was not trained from E_init with decoupled weight decay "
            "(wrong seed?)"
        )
    return E - r * E_init, r


def _as_series(value: float | Mapping | pd.Series) -> pd.Series:
    if isinstance(value, pd.Series):
        return value.astype(float)
    if isinstance(value, Mapping):
        return pd.Series(value, dtype=float)
    return pd.Series({"value": float(value)})


def compare_with_controls(
    measure: Measure,
    E: np.ndarray,
    mask: np.ndarray | None,
    *,
    n_permutations: int = 199,
    n_random: int = 49,
    seed: int = 0,
    like: MelodyLSTM | ModelConfig | dict | None = None,
    higher_is_stronger: bool = True,
    level: float = 0.05,
    correction: str | None = "bonferroni",
) -> pd.DataFrame:
    """Run ``measure`` on the trained embedding and on its two controls.

    Args:
        measure: ``measure(E, mask)`` returning a number, or a dict/Series of numbers
            (e.g. ``lambda E, m: similarity_by_interval(E, m)["mean"]`` gives one per
            interval, ``lambda E, m: linear_probe(E, m)["accuracy"]`` one number).
        E, mask: the trained table and the seen-pitch mask (used for every control too).
        n_permutations: label permutations (:func:`permuted_embedding`).
        n_random: untrained embeddings (:func:`random_init_embedding`), one per seed.
        seed: seeds both control series (reproducible).
        like: the architecture for the untrained embeddings (default: E's shape).
        higher_is_stronger: whether a larger value of the measure means more structure.
        level: significance level for ``beats_controls``.
        correction: ``"bonferroni"`` divides ``level`` by the number of values the
            measure returns (testing 12 intervals at 0.05 finds one by chance
            otherwise); ``None`` uses ``level`` as is.

    Returns:
        One row per value of the measure with the columns ``trained``,
        ``random_init_mean``, ``random_init_std``, ``permuted_mean``,
        ``permuted_std``, ``p_random_init``, ``p_permuted`` and ``beats_controls``.
        A p-value is the permutation-test fraction ``(1 + #{control >= trained}) /
        (1 + n)`` (``<=`` when ``higher_is_stronger`` is False); ``beats_controls`` is
        True only where both p-values are at most the (corrected) level. The smallest
        attainable p-value is ``1 / (1 + n)``: a warning says so when that can never
        reach the level.
    """
    if n_permutations < 1 or n_random < 1:
        raise ValueError("n_permutations and n_random must be at least 1")
    if correction not in (None, "bonferroni"):
        raise ValueError(f"correction must be 'bonferroni' or None, got {correction!r}")
    E, mask = _prepare(E, mask)
    trained = _as_series(measure(E, mask))
    rng = np.random.default_rng(seed)
    perm_seeds = rng.integers(0, 2**31 - 1, size=n_permutations)
    rand_seeds = rng.integers(0, 2**31 - 1, size=n_random)
    like = E if like is None else like
    perm = pd.DataFrame(
        [_as_series(measure(permuted_embedding(E, mask, int(s)), mask)) for s in perm_seeds]
    ).reindex(columns=trained.index)
    rand = pd.DataFrame(
        [_as_series(measure(random_init_embedding(int(s), like), mask)) for s in rand_seeds]
    ).reindex(columns=trained.index)
    alpha = level / len(trained) if correction == "bonferroni" else level
    if 1 / (1 + min(n_permutations, n_random)) > alpha:
        warnings.warn(
            f"with {n_permutations} permutations and {n_random} random inits the "
            f"smallest p-value is {1 / (1 + min(n_permutations, n_random)):.3g} > "
            f"level {alpha:.3g}: beats_controls can never be True; raise n",
            stacklevel=2,
        )

    def p_value(control: pd.DataFrame) -> pd.Series:
        at_least = control.ge(trained) if higher_is_stronger else control.le(trained)
        p = (1 + at_least.sum()) / (1 + len(control))
        return p.where(trained.notna())

    out = pd.DataFrame(
        {
            "trained": trained,
            "random_init_mean": rand.mean(),
            "random_init_std": rand.std(ddof=1),
            "permuted_mean": perm.mean(),
            "permuted_std": perm.std(ddof=1),
            "p_random_init": p_value(rand),
            "p_permuted": p_value(perm),
        }
    )
    out["beats_controls"] = (out["p_random_init"] <= alpha) & (out["p_permuted"] <= alpha)
    out.index.name = "measure"
    return out


# --------------------------------------------------------------------------- export


def export_projector_tsv(
    E: np.ndarray,
    counts: np.ndarray,
    folder: str | Path,
    min_count: int = 1,
    include_unseen: bool = False,
) -> tuple[Path, Path]:
    """Write ``vectors.tsv`` and ``metadata.tsv`` for TensorBoard's Embedding Projector.

    Load both files with "Load" at https://projector.tensorflow.org (or TensorBoard's
    projector plugin). ``vectors.tsv`` has one tab-separated row of floats per point
    and no header; ``metadata.tsv`` has a header row (the projector requires one when
    there is more than one column) and one row per point, in the same order:
    ``name`` (``"C#4"``), ``pitch`` (MIDI number), ``pitch_class`` (its name, ``"C#"``,
    so the projector can colour by it), ``octave``, ``count`` (training occurrences)
    and ``seen`` (``count >= min_count``).

    Unseen pitches are **left out** by default: their vectors are random
    initialisations and would dominate the projector's PCA and t-SNE.
    ``include_unseen=True`` writes all rows (then row ``i`` is pitch ``i``), with
    ``seen`` telling them apart.

    Returns ``(vectors_path, metadata_path)``.
    """
    E = np.asarray(E, dtype=np.float64)
    counts = np.asarray(counts)
    if E.ndim != 2 or counts.shape != (len(E),):
        raise ValueError(
            f"E must be (pitches, dim) and counts (pitches,), got {E.shape} and {counts.shape}"
        )
    seen = seen_mask(counts, min_count)
    rows = np.arange(len(E)) if include_unseen else np.flatnonzero(seen)
    if len(rows) == 0:
        raise ValueError("no pitch to export: none is seen (pass include_unseen=True?)")
    if not np.isfinite(E[rows]).all():
        raise ValueError("E has non-finite values in rows to export")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vectors_path, metadata_path = folder / "vectors.tsv", folder / "metadata.tsv"
    np.savetxt(vectors_path, E[rows], fmt="%.8g", delimiter="\t")
    meta = pd.DataFrame(
        {
            "name": [note_name(p) for p in rows],
            "pitch": rows,
            "pitch_class": [NOTE_NAMES[p % 12] for p in rows],
            "octave": rows // 12 - 1,
            "count": counts[rows].astype(np.int64),
            "seen": seen[rows],
        }
    )
    meta.to_csv(metadata_path, sep="\t", index=False, lineterminator="\n")
    return vectors_path, metadata_path


# --------------------------------------------------------------------------- plots


def plot_pitch_scatter(
    coords: np.ndarray,
    pitches: Iterable[int],
    color_by: str = "pitch_class",
    ax=None,
    annotate: bool = True,
    title: str | None = None,
    s: float = 60.0,
):
    """Scatter a 2-D or 3-D projection of pitch vectors, one labelled point per pitch.

    Introduced in notebook 04 for PCA and t-SNE pictures of the embedding. ``coords``
    is ``(n, 2)`` or ``(n, 3)`` (e.g. ``PCA(2).fit_transform(E[mask])``) and row ``i``
    belongs to MIDI pitch ``pitches[i]``; each point is labelled with its note name
    (``"C#4"``) when ``annotate``.

    ``color_by`` is ``"pitch_class"`` (12 colours from the cyclic ``hsv`` map, so
    C and B are neighbouring hues; legend C..B) or ``"octave"`` (``viridis``, one
    colour per octave present, legend ``octave 2`` ...). A 3-D ``coords`` needs a 3-D
    ``ax`` (``projection="3d"``); with ``ax=None`` a suitable one is made.

    Returns the axes.
    """
    import matplotlib.pyplot as plt

    coords = np.asarray(coords, dtype=np.float64)
    pitches = np.asarray(list(pitches), dtype=np.int64)
    if coords.ndim != 2 or coords.shape[1] not in (2, 3):
        raise ValueError(f"coords must be (n, 2) or (n, 3), got shape {coords.shape}")
    if len(pitches) != len(coords):
        raise ValueError(f"got {len(coords)} points but {len(pitches)} pitches")
    check_pitch_range(pitches, "pitches")
    if color_by == "pitch_class":
        keys = pitches % 12
        cmap = plt.get_cmap("hsv")
        colour_of = {k: cmap(k / 12) for k in range(12)}
        label_of = {k: NOTE_NAMES[k] for k in range(12)}
    elif color_by == "octave":
        keys = pitches // 12 - 1
        present = sorted(set(keys.tolist()))
        cmap = plt.get_cmap("viridis")
        colour_of = {k: cmap(i / max(len(present) - 1, 1)) for i, k in enumerate(present)}
        label_of = {k: f"octave {k}" for k in present}
    else:
        raise ValueError(f"color_by must be 'pitch_class' or 'octave', got {color_by!r}")
    three_d = coords.shape[1] == 3
    if ax is None:
        fig = plt.figure(figsize=(7, 6))
        ax = fig.add_subplot(projection="3d" if three_d else None)
    if three_d and getattr(ax, "name", "") != "3d":
        raise ValueError("3-D coords need an axes made with projection='3d'")
    for k in sorted(set(keys.tolist())):
        sel = keys == k
        ax.scatter(
            *coords[sel].T,
            color=colour_of[k],
            s=s,
            label=label_of[k],
            edgecolor="black",
            linewidth=0.4,
        )
    if annotate:
        for xyz, p in zip(coords, pitches, strict=True):
            ax.text(*xyz, f" {note_name(int(p))}", fontsize=7)
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.15 if three_d else 1.02, 1.0),
        fontsize="small",
        title=color_by.replace("_", " "),
    )  # 3-D: clear of the z label
    if title:
        ax.set_title(title)
    return ax


# --------------------------------------------------------------------------- pitch classes


#: Steps around the circle of fifths between two pitch classes ``k`` semitones apart
#: (``k = 0..11``): a fifth or a fourth is 1 step, a semitone 5, a tritone 6.
FIFTH_STEPS = tuple(min((7 * k) % 12, 12 - (7 * k) % 12) for k in range(12))


def _check_degree(degree: int) -> None:
    if isinstance(degree, bool) or not isinstance(degree, int) or degree < 0:
        raise ValueError(f"degree must be a non-negative integer, got {degree!r}")


def pitch_class_centroids(E: np.ndarray, mask: np.ndarray | None, degree: int = 2) -> np.ndarray:
    """The mean vector of each pitch class once pitch height is taken out, ``(12, dim)``.

    Introduced in notebook 04 to look for chroma (octave equivalence) and the circle of
    fifths *beyond* pitch height. Each seen row is replaced by its residual from a
    least-squares polynomial of degree ``degree`` in the MIDI number (one fit per
    dimension, over the seen rows): what a smooth low-to-high trend does not explain.
    Row ``c`` of the result is the mean residual of the seen pitches of class ``c``
    (0 = C); a class with no seen pitch is a row of NaN.
    """
    _check_degree(degree)
    E, mask = _prepare(E, mask, min_seen=degree + 2)
    pitches = np.flatnonzero(mask)
    x = (pitches - pitches.mean()) / max(pitches.std(), 1.0)  # well-conditioned powers
    P = np.vander(x, degree + 1)
    X = E[pitches]
    resid = X - P @ np.linalg.lstsq(P, X, rcond=None)[0]
    out = np.full((12, E.shape[1]), np.nan)
    for c in range(12):
        sel = pitches % 12 == c
        if sel.any():
            out[c] = resid[sel].mean(axis=0)
    return out


def pitch_class_circles(
    E: np.ndarray, mask: np.ndarray | None, degree: int = 2
) -> dict[str, float]:
    """How well the pitch classes, height removed, lie on the circle of fifths or on the
    chromatic circle.

    For every pair of pitch classes present, the cosine of their
    :func:`pitch_class_centroids` is compared with the cosine of the angle between the
    two classes on a circle of 12 equal steps: ``cos(30° * FIFTH_STEPS[k])`` on the
    circle of fifths (C–G–D–…, a fifth apart = neighbours) and ``cos(30° * k)`` on the
    chromatic circle (C–C♯–D–…, a semitone apart = neighbours), ``k`` the interval
    between the classes. Returns the Pearson correlation over the pairs for each circle,
    ``{"circle of fifths": r, "chromatic circle": r}``: 1 for centroids spread exactly on
    that circle, about 0 for unrelated ones. The two predictions agree on the intervals
    of 2, 3, 4 and 6 semitones and disagree on the semitone and the fifth, so the
    difference between the two numbers is what tells the circles apart.
    """
    _check_degree(degree)
    E, mask = _prepare(E, mask, min_seen=degree + 2)
    C = pitch_class_centroids(E, mask, degree)
    # a centroid at float-rounding size (height explained everything) has no direction
    scale = np.median(np.linalg.norm(E[mask], axis=1))
    C[np.linalg.norm(np.nan_to_num(C), axis=1) <= 1e-9 * max(scale, 1e-300)] = np.nan
    present = np.flatnonzero(~np.isnan(C).any(axis=1))
    if len(present) < 3:
        raise ValueError(
            f"need at least 3 pitch classes with a seen pitch and a direction once height "
            f"is removed, got {len(present)}"
        )
    U = _unit_rows(C[present])
    i, j = np.triu_indices(len(present), k=1)
    cos = np.sum(U[i] * U[j], axis=1)
    k = (present[j] - present[i]) % 12
    fifths = np.cos(np.deg2rad(30 * np.asarray(FIFTH_STEPS)[k]))
    chromatic = np.cos(np.deg2rad(30 * k))
    ok = np.isfinite(cos)
    if ok.sum() < 3:
        raise ValueError("too few pitch-class centroids with a direction (zero vectors?)")

    def corr(a: np.ndarray) -> float:
        return float(np.corrcoef(cos[ok], a[ok])[0, 1])

    return {"circle of fifths": corr(fifths), "chromatic circle": corr(chromatic)}


# --------------------------------------------------------------------------- listening


def pitches_to_notes(
    pitches: Iterable[int],
    step: float = 0.4,
    hold: float | None = None,
    velocity: int = 80,
    rest_after: Iterable[int] = (),
    rest: float | None = None,
) -> pd.DataFrame:
    """A note table that plays ``pitches`` one after the other (an arpeggio), to listen to.

    Introduced in notebook 04 to hear what a neighbour list or a direction of the
    embedding suggests: ``melody_utils.audio.play(notes_to_midi(pitches_to_notes(...)))``.
    Note ``i`` starts at ``i * step`` seconds and lasts ``hold`` seconds (default
    ``0.9 * step``); a pause of ``rest`` seconds (default ``step``) follows each position
    listed in ``rest_after`` (to separate groups, e.g. a pitch from its neighbours).
    Returns the columns ``pitch, start, end, step, duration, velocity``.
    """
    p = np.asarray(list(pitches), dtype=np.int64)
    if p.ndim != 1 or len(p) == 0:
        raise ValueError("pitches must be a non-empty sequence of MIDI numbers")
    check_pitch_range(p, "pitches")
    if not step > 0:
        raise ValueError(f"step must be positive, got {step}")
    hold = 0.9 * step if hold is None else float(hold)
    if not hold > 0:
        raise ValueError(f"hold must be positive, got {hold}")
    rest = step if rest is None else float(rest)
    if rest < 0:
        raise ValueError(f"rest must be non-negative, got {rest}")
    gaps = np.full(len(p), step, dtype=np.float64)
    for i in rest_after:
        if not 0 <= int(i) < len(p):
            raise ValueError(f"rest_after holds {i}, outside 0..{len(p) - 1}")
        gaps[int(i)] += rest
    start = np.concatenate([[0.0], np.cumsum(gaps)[:-1]])
    return pd.DataFrame(
        {
            "pitch": p,
            "start": start,
            "end": start + hold,
            "step": np.diff(start, prepend=0.0),
            "duration": np.full(len(p), hold),
            "velocity": np.full(len(p), int(velocity), dtype=np.int64),
        }
    )


# --------------------------------------------------------------------------- verdicts


@dataclass(frozen=True, eq=False)
class Claim:
    """One testable claim: row ``key`` of a :func:`compare_with_controls` result.

    Attributes:
        results: the result of :func:`compare_with_controls`, indexed by the measure's
            values, or several of them stacked with ``pd.concat({table: result, ...},
            names=["table"])`` (index ``(table, measure)``): the claim is then judged on
            every table. All rows of one table form the family of the Bonferroni
            correction (what ``compare_with_controls`` corrected for).
        key: the measure's value the claim is about (e.g. ``1``, the semitone, in an
            interval profile; ``"octave"`` for a probe).
        percent: show the values as percentages (fractions of pitches).
        positive: the value must also be above 0 (a local peak ``s(d) - max(s(d±1))``
            that beats the controls but is negative is no peak).
        group: the heading the summary of :func:`verdict_markdown` lists it under.
        short: a short name for that summary (default: the claim's full text).
    """

    results: pd.DataFrame
    key: object
    percent: bool = False
    positive: bool = False
    group: str = ""
    short: str = ""


_RESULT_COLUMNS = (
    "trained",
    "random_init_mean",
    "random_init_std",
    "permuted_mean",
    "permuted_std",
    "p_random_init",
    "p_permuted",
    "beats_controls",
)


def _tables(results: pd.DataFrame) -> dict[str, pd.DataFrame]:
    missing = [c for c in _RESULT_COLUMNS if c not in results.columns]
    if missing:
        raise ValueError(f"not a compare_with_controls result: missing columns {missing}")
    if isinstance(results.index, pd.MultiIndex):
        if results.index.nlevels != 2:
            raise ValueError("a stacked result must be indexed by (table, measure)")
        return {str(t): results.xs(t, level=0) for t in results.index.unique(level=0)}
    return {"": results}


def judge_claims(
    claims: Mapping[str, Claim],
    level: float = 0.05,
    start: Mapping[str, float] | None = None,
    start_table: str | None = None,
) -> pd.DataFrame:
    """Judge each claim on each table it was measured on.

    A claim **holds** on a table where its value beats both controls at the
    Bonferroni-corrected level ``level / m`` (``m`` = the number of values of its
    measure on that table: the ``beats_controls`` column of
    :func:`compare_with_controls`) and, for a :attr:`Claim.positive` claim, is above 0.
    It holds **narrowly** where one of its two p-values is above half that corrected
    level: another draw of control seeds could turn it over. Otherwise it is **not
    established** (which is not the same as shown false).

    Args:
        claims: claim text -> :class:`Claim`, in the order to report them.
        level: the family-wise level used by ``compare_with_controls``.
        start: optional claim text -> the same measure on the table training started
            from (a paired comparison), reported for ``start_table``.
        start_table: the table ``start`` belongs to (default: the first table).

    Returns:
        One row per ``(claim, table)`` (``table`` is ``""`` for an unstacked result)
        with the columns ``group``, ``short``, ``value``, ``permuted_mean``, ``permuted_std``,
        ``random_init_mean``, ``random_init_std``, ``p_permuted``, ``p_random_init``,
        ``alpha`` (the corrected level), ``z_permuted`` (value minus the permuted mean,
        in permuted standard deviations), ``start`` (NaN where not given), ``percent``,
        ``holds``, ``narrow`` and ``verdict`` (``"holds"``, ``"holds, narrowly"`` or
        ``"not established"``).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if not claims:
        raise ValueError("no claims to judge")
    start = dict(start or {})
    unknown = set(start) - set(claims)
    if unknown:
        raise ValueError(f"start values for unknown claims: {sorted(unknown)}")
    rows = []
    for text, claim in claims.items():
        if not isinstance(claim, Claim):
            raise TypeError(f"claim {text!r} must be a Claim, got {type(claim).__name__}")
        tables = _tables(claim.results)
        first = next(iter(tables))
        for table, res in tables.items():
            if claim.key not in res.index:
                raise KeyError(f"claim {text!r}: no row {claim.key!r} in table {table!r}")
            row = res.loc[claim.key]
            alpha = level / len(res)
            holds = bool(row["beats_controls"]) and (not claim.positive or row["trained"] > 0)
            narrow = holds and max(row["p_permuted"], row["p_random_init"]) > alpha / 2
            with np.errstate(divide="ignore", invalid="ignore"):
                z = (row["trained"] - row["permuted_mean"]) / row["permuted_std"]
            on_start = table == (first if start_table is None else start_table)
            rows.append(
                {
                    "claim": text,
                    "table": table,
                    "group": claim.group,
                    "short": claim.short or text,
                    "value": float(row["trained"]),
                    "permuted_mean": float(row["permuted_mean"]),
                    "permuted_std": float(row["permuted_std"]),
                    "random_init_mean": float(row["random_init_mean"]),
                    "random_init_std": float(row["random_init_std"]),
                    "p_permuted": float(row["p_permuted"]),
                    "p_random_init": float(row["p_random_init"]),
                    "alpha": alpha,
                    "z_permuted": float(z),
                    "start": float(start[text]) if on_start and text in start else np.nan,
                    "percent": claim.percent,
                    "holds": holds,
                    "narrow": narrow,
                    "verdict": (
                        "holds, narrowly" if narrow else "holds" if holds else "not established"
                    ),
                }
            )
    return pd.DataFrame(rows).set_index(["claim", "table"])


def _fmt(value: float, percent: bool) -> str:
    return f"{value:.0%}" if percent else f"{value:.3f}"


def _short(table: str) -> str:
    return table.split(" (")[0]


def verdict_markdown(
    judged: pd.DataFrame,
    *,
    intro: str = "",
    notes: Iterable[str] = (),
    warning: str | None = None,
    start_label: str = "its own start",
) -> str:
    """The Markdown verdict of :func:`judge_claims`: every claim with its numbers, then a
    short summary.

    For each claim, one bullet per table: the value, the controls as mean ± sd, the two
    p-values (permuted / untrained), the value at the start of training where known, and
    the verdict in bold (the corrected level is given for a narrow one). Then
    **In short**: per table and group, which claims hold, hold narrowly, or are not
    established (by their :attr:`Claim.short` names), followed by ``notes`` (sentences
    the caller computed, e.g. :func:`describe_profile`). ``warning`` is put first as a
    block quote (e.g. "fast mode: too few control runs"). Table names are shortened to
    the part before `` (``.
    """
    required = {"value", "p_permuted", "p_random_init", "holds", "narrow", "verdict"}
    if not required <= set(judged.columns) or judged.index.names != ["claim", "table"]:
        raise ValueError("judged must be the DataFrame returned by judge_claims")
    lines = []
    if warning:
        lines += [f"> **{warning}**", ""]
    if intro:
        lines += [intro, ""]
    tables = list(dict.fromkeys(judged.index.get_level_values("table")))
    for claim in dict.fromkeys(judged.index.get_level_values("claim")):
        lines.append(f"* **{claim}**")
        for table in tables:
            if (claim, table) not in judged.index:
                continue
            r = judged.loc[(claim, table)]
            pct = bool(r["percent"])
            text = (
                f"{_fmt(r['value'], pct)} (permuted {_fmt(r['permuted_mean'], pct)} ± "
                f"{_fmt(r['permuted_std'], pct)}, untrained {_fmt(r['random_init_mean'], pct)}"
                f" ± {_fmt(r['random_init_std'], pct)}; p = {r['p_permuted']:.3f} / "
                f"{r['p_random_init']:.3f}"
            )
            if not np.isnan(r["start"]):
                text += f"; {start_label}: {_fmt(r['start'], pct)}"
            verdict = f"**{r['verdict']}**" if r["holds"] else r["verdict"]
            if r["narrow"]:
                verdict += f" (a p-value above half the corrected level {r['alpha']:.4f})"
            name = _short(table)
            lines.append(f"  * {name + ': ' if name else ''}{text}): {verdict}")
    lines += ["", "**In short:**", ""]
    for table in tables:
        sub = judged.xs(table, level="table")
        for group in dict.fromkeys(sub["group"]):
            g = sub[sub["group"] == group]
            parts = []
            for label, sel in (
                ("holds", g["holds"] & ~g["narrow"]),
                ("holds narrowly", g["narrow"]),
                ("not established", ~g["holds"]),
            ):
                if sel.any():
                    names = g["short"][sel] if "short" in g.columns else g.index[sel]
                    parts.append(f"{label}: " + ", ".join(names))
            head = " · ".join(x for x in (_short(table), group) if x)
            lines.append(f"* {'*' + head + '*: ' if head else ''}" + "; ".join(parts) + ".")
    notes = [n for n in notes if n]
    if notes:
        lines += [""] + [" ".join(notes)]
    return "\n".join(lines)


def rank_against_controls(
    results: pd.DataFrame, names: Mapping | None = None, control: str = "permuted"
) -> pd.DataFrame:
    """The values of one measure ranked by how far they beat a control.

    ``results`` is one table's :func:`compare_with_controls` result. ``z`` is the value
    minus the control's mean, in the control's standard deviations (``control`` is
    ``"permuted"`` or ``"random_init"``); rows are sorted by ``z``, largest first.
    Columns: ``name`` (``names[key]`` or the key), ``trained``, ``z``,
    ``beats_controls``.
    """
    if control not in ("permuted", "random_init"):
        raise ValueError(f"control must be 'permuted' or 'random_init', got {control!r}")
    if isinstance(results.index, pd.MultiIndex):
        raise ValueError("pass one table's result (results.loc[table]), not a stacked one")
    res = _tables(results)[""]
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (res["trained"] - res[f"{control}_mean"]) / res[f"{control}_std"]
    out = pd.DataFrame(
        {
            "name": [str((names or {}).get(k, k)) for k in res.index],
            "trained": res["trained"].astype(float),
            "z": z.astype(float),
            "beats_controls": res["beats_controls"].astype(bool),
        },
        index=res.index,
    )
    return out.sort_values("z", ascending=False, kind="stable")


def describe_profile(
    results: pd.DataFrame,
    names: Mapping | None = None,
    what: str = "intervals",
    control: str = "permuted",
    top: int | None = None,
) -> str:
    """One sentence saying which values of a measure stand out, strongest first.

    E.g. for an interval profile: ``"Intervals that beat both controls, strongest first
    (z against permuted labels): m3 (0.431, z = 9.1), P8 (...), ...; not beating them:
    TT, m7, M7."`` ``top`` limits how many winners are listed (the rest are counted).
    Built on :func:`rank_against_controls`.
    """
    ranked = rank_against_controls(results, names, control)
    label = "permuted labels" if control == "permuted" else "untrained tables"
    win = ranked[ranked["beats_controls"]]
    lose = ranked[~ranked["beats_controls"]]
    shown = win if top is None else win.head(top)
    more = len(win) - len(shown)
    if len(win):
        listed = ", ".join(f"{r.name} ({r.trained:.3f}, z = {r.z:.1f})" for r in shown.itertuples())
        text = (
            f"{what[:1].upper() + what[1:]} that beat both controls, strongest first (z against "
            f"{label}): {listed}" + (f" and {more} more" if more else "")
        )
    else:
        text = f"No {what} beat both controls"
    if len(lose) and len(win):
        text += "; not beating them: " + ", ".join(lose["name"])
    return text + "."
