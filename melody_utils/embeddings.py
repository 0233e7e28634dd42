"""Measuring the pitch embedding (notebook 04): similarity, probes, circles and the learned part
of ``E`` (the ``(128, 96)`` table, row ``p`` = MIDI pitch ``p``), each against two controls
(:func:`compare_with_controls`). Statistics read only the rows of ``mask`` (:func:`seen_mask`)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .data import Piece
from .model import MelodyLSTM, ModelConfig, build_model
from .plots import NOTE_NAMES, note_name

#: Short names of the intervals 1..12 semitones.
INTERVAL_NAMES = ("m2", "M2", "m3", "M3", "P4", "TT", "P5", "m6", "M6", "m7", "M7", "P8")
#: Steps around the circle of fifths between pitch classes ``k`` semitones apart.
FIFTH_STEPS = tuple(min((7 * k) % 12, 12 - (7 * k) % 12) for k in range(12))


def embedding_table(model: MelodyLSTM) -> np.ndarray:
    """The pitch embedding of ``model`` as a float64 ``(vocab, dim)`` array."""
    if not isinstance(getattr(model, "embedding", None), torch.nn.Embedding):
        name = type(model).__name__
        raise TypeError(f"expected a model with an nn.Embedding 'embedding', got {name}")
    return model.embedding.weight.detach().cpu().numpy().astype(np.float64)


def pitch_counts(pieces: Iterable[Piece], transpose: tuple[int, int] = (0, 0)) -> np.ndarray:
    """How often each of the 128 pitches occurs in ``pieces``; with ``transpose=(low, high)`` the
    expected count after a uniform shift in ``low..high``: ``sum_s count[p - s] / n``."""
    counts = np.zeros(128)
    for piece in pieces:
        counts += np.bincount(piece.notes["pitch"].to_numpy(np.int64), minlength=128)
    low, high = transpose
    if not low <= 0 <= high:
        raise ValueError(f"transpose must be a range holding 0, got {transpose}")
    if (low, high) == (0, 0):
        return counts.astype(np.int64)
    shifted = np.zeros(128)
    for s in range(low, high + 1):  # pitch p was seen whenever a note p - s was shifted by s
        lo, hi = max(0, s), min(128, 128 + s)
        shifted[lo:hi] += counts[lo - s : hi - s]
    return shifted / (high - low + 1)


def seen_mask(counts: np.ndarray, min_count: float = 1) -> np.ndarray:
    """Boolean mask of the pitches seen at least ``min_count`` times."""
    counts = np.asarray(counts)
    if counts.ndim != 1:
        raise ValueError(f"counts must be 1-D, got shape {counts.shape}")
    return counts >= min_count


def _check(E: np.ndarray, mask: np.ndarray | None, min_seen: int = 2):
    E = np.asarray(E, dtype=np.float64)
    mask = np.ones(len(E), bool) if mask is None else np.asarray(mask)
    if E.ndim != 2 or mask.dtype != bool or mask.shape != (len(E),):
        msg = f"E must be (pitches, dim) and mask a boolean ({len(E)},) array (seen_mask)"
        raise ValueError(msg)
    if mask.sum() < min_seen or not np.isfinite(E[mask]).all():
        raise ValueError(f"need at least {min_seen} seen pitches with finite vectors")
    return E, mask


def cosine_similarity_matrix(E: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Cosine similarity of every pair of rows ``(vocab, vocab)``; NaN outside ``mask``."""
    E, mask = _check(E, mask, 1)
    idx = np.flatnonzero(mask)
    with np.errstate(invalid="ignore", divide="ignore"):
        U = E[idx] / np.linalg.norm(E[idx], axis=1, keepdims=True)
    out = np.full((len(E), len(E)), np.nan)
    out[np.ix_(idx, idx)] = np.clip(U @ U.T, -1, 1)
    return out


def nearest_neighbours(
    E: np.ndarray, pitch: int, k: int = 5, mask: np.ndarray | None = None
) -> pd.DataFrame:
    """The ``k`` seen pitches most similar to ``pitch``: ``pitch, name, cosine, interval``."""
    E, mask = _check(E, mask)
    if not 0 <= int(pitch) < len(E) or not mask[int(pitch)]:
        raise ValueError(f"pitch {pitch} is not a seen pitch: its vector is still the random start")
    sims = cosine_similarity_matrix(E, mask)[int(pitch)]
    sims[int(pitch)] = np.nan
    cand = np.flatnonzero(~np.isnan(sims))
    order = cand[np.lexsort((cand, -sims[cand]))][:k]
    out = pd.DataFrame({"pitch": order, "name": [note_name(p) for p in order]})
    return out.assign(cosine=sims[order], interval=order - int(pitch))


def similarity_by_interval(
    E: np.ndarray, mask: np.ndarray | None, max_interval: int = 12
) -> pd.DataFrame:
    """Mean cosine similarity of the seen pairs ``(p, p + d)``, ``d = 1..max_interval``: ``name,
    mean, std, sem, n_pairs`` (pairs share pitches: ``sem`` is a rough guide)."""
    S = cosine_similarity_matrix(E, mask)
    rows = []
    for d in range(1, max_interval + 1):
        v = S[np.arange(len(S) - d), np.arange(d, len(S))]
        v, n = v[~np.isnan(v)], int((~np.isnan(v)).sum())
        sd = v.std(ddof=1) if n > 1 else np.nan
        name = INTERVAL_NAMES[d - 1] if d <= 12 else f"{d}st"
        mean = v.mean() if n else np.nan
        rows.append({"interval": d, "name": name, "mean": mean, "std": sd, "sem": sd / np.sqrt(n)})
        rows[-1]["n_pairs"] = n
    return pd.DataFrame(rows).set_index("interval")


def linear_probe(
    E: np.ndarray, mask, target: str = "pitch_class", cv: int = 5, seed: int = 0, C: float = 1.0
) -> dict:
    """Cross-validated accuracy of a logistic regression reading ``target`` (``"pitch_class"`` or
    ``"octave"``) off the seen vectors, with its chance level (most frequent class, same folds);
    classes with one seen pitch are dropped (``dropped_classes``)."""
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    E, mask = _check(E, mask)
    if target not in ("pitch_class", "octave"):
        raise ValueError(f"target must be 'pitch_class' or 'octave', got {target!r}")
    pitches = np.flatnonzero(mask)
    y = pitches % 12 if target == "pitch_class" else pitches // 12 - 1
    classes, sizes = np.unique(y, return_counts=True)
    dropped = classes[sizes < 2]  # before sizes is recounted below
    keep = ~np.isin(y, dropped)
    X, y = E[pitches[keep]], y[keep]
    sizes = np.unique(y, return_counts=True)[1]
    if len(sizes) < 2:
        raise ValueError(f"need 2 classes of {target} with 2+ seen pitches each, got {len(sizes)}")
    folds = StratifiedKFold(n_splits=int(min(cv, sizes.min())), shuffle=True, random_state=seed)
    with threadpool_limits(1):  # a few dozen samples: one BLAS thread is fastest
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000))
        acc = cross_val_score(probe, X, y, cv=folds)
        chance = cross_val_score(DummyClassifier(strategy="most_frequent"), X, y, cv=folds)
    out = {"target": target, "accuracy": float(acc.mean()), "accuracy_std": float(acc.std())}
    out.update(chance=float(chance.mean()), n_samples=len(y), n_classes=len(sizes))
    return {**out, "folds": folds.n_splits, "dropped_classes": [int(c) for c in dropped]}


def height_probe(E: np.ndarray, mask, cv: int = 5, seed: int = 0, alpha: float = 1.0) -> dict:
    """Cross-validated R² of a ridge regression reading the MIDI number off the seen vectors
    (1: a perfect read-out, 0: the mean, below 0: worse): ``r2, r2_std, n_samples, folds``."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    E, mask = _check(E, mask, 2 * cv)
    pitches = np.flatnonzero(mask)
    folds = KFold(n_splits=cv, shuffle=True, random_state=seed)
    with threadpool_limits(1):
        probe = make_pipeline(StandardScaler(), Ridge(alpha=alpha))
        r2 = cross_val_score(probe, E[pitches], pitches.astype(float), cv=folds, scoring="r2")
    return {
        "r2": float(r2.mean()),
        "r2_std": float(r2.std()),
        "n_samples": len(pitches),
        "folds": cv,
    }


def pitch_class_centroids(E: np.ndarray, mask, degree: int = 2) -> np.ndarray:
    """The mean vector ``(12, dim)`` of each pitch class once a least-squares polynomial of
    ``degree`` in the MIDI number is taken out (NaN rows for a class with no seen pitch)."""
    E, mask = _check(E, mask, degree + 2)
    pitches = np.flatnonzero(mask)
    P = np.vander((pitches - pitches.mean()) / max(pitches.std(), 1.0), degree + 1)
    resid = E[pitches] - P @ np.linalg.lstsq(P, E[pitches], rcond=None)[0]
    out = np.full((12, E.shape[1]), np.nan)
    for c in np.unique(pitches % 12):
        out[c] = resid[pitches % 12 == c].mean(0)
    return out


def pitch_class_circles(E: np.ndarray, mask, degree: int = 2) -> dict[str, float]:
    """How well the pitch classes, height removed, lie on the circle of fifths or the chromatic
    circle: the correlation over class pairs of their centroids' cosine with the cosine of their
    angle on each circle (1: exactly on it)."""
    E, mask = _check(E, mask, degree + 2)
    C = pitch_class_centroids(E, mask, degree)
    norm = np.linalg.norm(np.nan_to_num(C), axis=1)
    present = np.flatnonzero(norm > 1e-9 * max(np.median(np.linalg.norm(E[mask], axis=1)), 1e-300))
    if len(present) < 3:
        raise ValueError("need at least 3 pitch classes with a direction once height is removed")
    U = C[present] / norm[present, None]
    i, j = np.triu_indices(len(present), k=1)
    cos, k = (U[i] * U[j]).sum(1), (present[j] - present[i]) % 12
    circles = {"circle of fifths": np.asarray(FIFTH_STEPS)[k], "chromatic circle": k}
    return {
        name: float(np.corrcoef(cos, np.cos(np.deg2rad(30 * steps)))[0, 1])
        for name, steps in circles.items()
    }


def random_init_embedding(seed: int, like: MelodyLSTM | ModelConfig | None = None) -> np.ndarray:
    """The untrained embedding of the same design: :func:`~melody_utils.model.build_model`
    with ``seed``, exactly where a run seeded with ``seed`` started."""
    config = like.config if isinstance(like, MelodyLSTM) else like
    return embedding_table(build_model(config, seed))


def permuted_embedding(E: np.ndarray, mask, seed: int) -> np.ndarray:
    """``E`` with its seen rows shuffled among the seen pitches: the same set of vectors,
    every relation between a vector and its pitch destroyed."""
    E, mask = _check(E, mask)
    idx, out = np.flatnonzero(mask), E.copy()
    out[idx] = E[np.random.default_rng(seed).permutation(idx)]
    return out


def learned_update(
    E: np.ndarray, E_init: np.ndarray, mask, rtol: float = 1e-4
) -> tuple[np.ndarray, float]:
    """``(L, r)`` with ``E = r E_init + L``: ``r`` the weight decay measured on the unseen rows
    (exactly ``r E_init``), ``L`` what training wrote; ValueError if they are not (wrong seed)."""
    E, mask = _check(E, mask, 0)
    unseen = np.flatnonzero(~mask)
    if len(unseen) == 0:
        raise ValueError("every pitch is seen: no untouched row to measure the decay on")
    A, B = E[unseen], np.asarray(E_init, np.float64)[unseen]
    r = float((A * B).sum() / (B * B).sum())
    resid = np.linalg.norm(A - r * B, axis=1) / np.maximum(np.linalg.norm(A, axis=1), 1e-300)
    if resid.max() > rtol:
        msg = f"unseen row {unseen[resid.argmax()]} is not {r:.6g} x its start (residual "
        raise ValueError(msg + f"{resid.max():.2g}): E was not trained from E_init (wrong seed?)")
    return E - r * np.asarray(E_init, np.float64), r


def compare_with_controls(
    measure: Callable,
    E: np.ndarray,
    mask,
    *,
    n_permutations: int = 199,
    n_random: int = 49,
    seed: int = 0,
    like=None,
    higher_is_stronger: bool = True,
    level: float = 0.05,
) -> pd.DataFrame:
    """``measure(E, mask)`` (a number or dict) on the trained table, ``n_permutations`` label
    permutations and ``n_random`` untrained tables: means, stds, p-values ``(1 + #stronger) / (1
    + n)`` and ``beats_controls`` (both p-values at most ``level`` / number of values)."""
    E, mask = _check(E, mask)

    def run(table: np.ndarray) -> pd.Series:
        value = measure(table, mask)
        value = value if isinstance(value, dict | pd.Series) else {"value": value}
        return pd.Series(value, dtype=float)

    trained = run(E)
    rng = np.random.default_rng(seed)
    perm_seeds = rng.integers(0, 2**31 - 1, n_permutations)
    rand_seeds = rng.integers(0, 2**31 - 1, n_random)
    perm = pd.DataFrame([run(permuted_embedding(E, mask, s)) for s in perm_seeds])
    like = like if like is not None else ModelConfig(vocab_size=E.shape[0], embed_dim=E.shape[1])
    rand = pd.DataFrame([run(random_init_embedding(int(s), like)) for s in rand_seeds])
    alpha = level / len(trained)
    if 1 / (1 + min(n_permutations, n_random)) > alpha:
        msg = f"with {n_permutations} permutations and {n_random} random inits no p-value reaches "
        warnings.warn(msg + f"{alpha:.3g}: beats_controls can never be True; raise n", stacklevel=2)

    def p_value(control: pd.DataFrame) -> pd.Series:
        stronger = control.ge(trained) if higher_is_stronger else control.le(trained)
        return ((1 + stronger.sum()) / (1 + len(control))).where(trained.notna())

    out = pd.DataFrame({"trained": trained, "random_init_mean": rand.mean()})
    out = out.assign(random_init_std=rand.std(), permuted_mean=perm.mean(), permuted_std=perm.std())
    out["p_random_init"], out["p_permuted"] = p_value(rand), p_value(perm)
    out["beats_controls"] = (out["p_random_init"] <= alpha) & (out["p_permuted"] <= alpha)
    return out.rename_axis("measure")


def export_projector_tsv(
    E: np.ndarray,
    counts: np.ndarray,
    folder: str | Path,
    min_count: float = 1,
    include_unseen: bool = False,
) -> tuple[Path, Path]:
    """Write ``vectors.tsv`` and ``metadata.tsv`` (``name, pitch, pitch_class, octave, count,
    seen``) for projector.tensorflow.org; unseen pitches only with ``include_unseen``."""
    E, counts = np.asarray(E, np.float64), np.asarray(counts)
    if E.ndim != 2 or counts.shape != (len(E),):
        shapes = f"got {E.shape} and {counts.shape}"
        raise ValueError(f"E must be (pitches, dim) and counts (pitches,), {shapes}")
    seen = seen_mask(counts, min_count)
    rows = np.arange(len(E)) if include_unseen else np.flatnonzero(seen)
    if len(rows) == 0 or not np.isfinite(E[rows]).all():
        msg = "nothing to export: no seen pitch with a finite vector (include_unseen=True?)"
        raise ValueError(msg)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.savetxt(folder / "vectors.tsv", E[rows], fmt="%.8g", delimiter="\t")
    meta = pd.DataFrame({"name": [note_name(p) for p in rows], "pitch": rows})
    meta["pitch_class"], meta["octave"] = [NOTE_NAMES[p % 12] for p in rows], rows // 12 - 1
    meta["count"], meta["seen"] = counts[rows].astype(np.int64), seen[rows]
    meta.to_csv(folder / "metadata.tsv", sep="\t", index=False, lineterminator="\n")
    return folder / "vectors.tsv", folder / "metadata.tsv"
