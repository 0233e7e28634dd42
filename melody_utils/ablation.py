"""What each part of the model buys (notebook 06 and ``benchmarks/ablation_grid.py``).

Variants of the card's model trained with one recipe on one split, over seeds
(:func:`run_grid`), compared with the card's model paired by seed
(:func:`paired_differences`); continuations of several primers under one setting
(:func:`sample_continuations`), their rhythm (:func:`rhythm_table`) and their measures
against real music of the same length (:func:`compare_sets`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from .config import CHORD_SNAP, FLAM_MAX, IN_CHECKOUT, REPO_ROOT
from .generate import GenerationResult, generate
from .metrics import (
    MEASURES,
    _tables,
    distribution_distance,
    duration_histogram,
    interval_histogram,
    measures,
    pitch_class_histogram,
    real_windows,
    step_histogram,
)
from .model import ModelConfig, build_model
from .train import TrainConfig, evaluate, train

#: The grid's stored runs (one row per run), which notebook 06 reads instead of retraining.
GRID_FILE = REPO_ROOT / "benchmarks" / "results" / "ablation_grid.csv" if IN_CHECKOUT else None
RUN_METRICS = ("pitch_nll", "pitch_top1", "pitch_top5", "mse_step", "mse_duration", "mse_velocity")


def ablation_variants(card: ModelConfig | None = None) -> dict[str, ModelConfig]:
    """The card's model, one-hot pitch input, pitch only (no time inputs), no LayerNorm, a
    GRU of the same sizes, and the TensorFlow music tutorial's model (LSTM(128), pitch as
    a scalar, no LayerNorm, no embedding dropout)."""
    card = card or ModelConfig()
    return {
        "card model": card,
        "one-hot pitch": replace(card, pitch_input="onehot"),
        "pitch only": replace(card, cont_inputs=False),
        "no LayerNorm": replace(card, layer_norm=False),
        "GRU": replace(card, cell="gru"),
        "TF tutorial's model": ModelConfig(
            pitch_input="scalar", hidden_size=128, num_layers=1, layer_norm=False, embed_dropout=0.0
        ),
    }


def train_variant(
    config,
    train_w,
    val_w,
    test_w,
    recipe: TrainConfig,
    seed: int = 0,
    *,
    name: str = "variant",
    time_classes=None,
    test_indices=None,
    progress: bool = False,
    device=None,
) -> tuple[dict, object]:
    """Build (:func:`~melody_utils.model.build_model` with ``seed``), train (the recipe with
    ``seed``) and test one variant the card's way: ``(row, model)``, the row holding the
    variant, seed, :data:`RUN_METRICS`, parameters, steps and seconds."""
    model = build_model(config, seed, time_classes)
    result = train(
        model, train_w, val_w, replace(recipe, seed=seed), progress=progress, device=device
    )
    t0 = time.perf_counter()
    metrics = evaluate(
        model, test_w, recipe.eval_batch_size, recipe.cont_weight, indices=test_indices
    )
    steps = int(result.history["step"].iloc[-1])
    row = {
        "variant": name,
        "seed": seed,
        **{m: metrics[m] for m in RUN_METRICS},
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": steps,
        "train_seconds": result.train_seconds,
        "seconds_per_step": result.train_seconds / steps,
        "eval_seconds": time.perf_counter() - t0,
    }
    return row, model


def run_grid(
    variants: Mapping[str, ModelConfig],
    seeds: Sequence[int],
    train_w,
    val_w,
    test_w,
    recipe: TrainConfig,
    *,
    test_indices=None,
    progress: bool = True,
    device=None,
) -> pd.DataFrame:
    """Every variant with every seed, seed by seed (an interrupted grid still has every
    variant), with a progress bar: one row per run (:func:`train_variant`)."""
    from tqdm.auto import tqdm

    if not variants or not seeds:
        raise ValueError("run_grid needs at least one variant and one seed")
    rows = []
    with tqdm(
        [(s, n) for s in seeds for n in variants],
        desc="ablation grid",
        unit="run",
        disable=not progress,
    ) as bar:
        for seed, name in bar:
            bar.set_postfix_str(f"{name}, seed {seed}")
            rows.append(
                train_variant(
                    variants[name],
                    train_w,
                    val_w,
                    test_w,
                    recipe,
                    seed,
                    name=name,
                    test_indices=test_indices,
                    device=device,
                )[0]
            )
    return pd.DataFrame(rows)


def summarise_runs(runs: pd.DataFrame, metrics: Sequence[str] = RUN_METRICS) -> pd.DataFrame:
    """Per variant: ``seeds``, each metric's mean and ``_sd`` (over seeds, ddof 1),
    ``parameters`` and the mean ``train_seconds`` and ``seconds_per_step``."""
    g = runs.groupby("variant", sort=False)
    out = g[list(metrics)].mean().join(g[list(metrics)].std().add_suffix("_sd"))
    out.insert(0, "seeds", g.size())
    return out.join(g[["parameters"]].first()).join(g[["train_seconds", "seconds_per_step"]].mean())


def paired_differences(
    runs: pd.DataFrame, reference: str, metric: str = "pitch_nll"
) -> pd.DataFrame:
    """Each variant minus ``reference`` on ``metric``, paired by seed (runs of one seed draw
    the same batches and transpositions): ``seeds``, ``mean``, ``sd``, the 95 % Student-t
    interval ``ci_low``..``ci_high`` and ``clear`` (the interval excludes 0)."""
    from scipy.stats import t as student

    table = runs.pivot(index="seed", columns="variant", values=metric)
    if reference not in table:
        raise ValueError(f"no runs of the reference {reference!r}")
    rows = {}
    for name in (n for n in dict.fromkeys(runs["variant"]) if n != reference):
        d = (table[name] - table[reference]).dropna()
        half = (
            student.ppf(0.975, len(d) - 1) * d.std() / math.sqrt(len(d)) if len(d) > 1 else math.nan
        )
        rows[name] = {
            "seeds": len(d),
            "mean": d.mean(),
            "sd": d.std(),
            "ci_low": d.mean() - half,
            "ci_high": d.mean() + half,
        }
        rows[name]["clear"] = bool(rows[name]["ci_low"] > 0 or rows[name]["ci_high"] < 0)
    return pd.DataFrame(rows).T.rename_axis("variant")


def sample_continuations(
    model,
    normalizer,
    primers: Mapping[str, pd.DataFrame],
    n_notes: int,
    *,
    n_variations: int = 1,
    seed: int = 0,
    **settings,
) -> dict[str, GenerationResult]:
    """``{primer id: GenerationResult}``: every primer continued with the same settings
    (those of :func:`~melody_utils.generate.generate`) and the same seed."""
    if not primers:
        raise ValueError("need at least one primer")
    settings.setdefault("cpu_threads", 1)
    return {
        pid: generate(
            model, normalizer, p, n_notes, n_variations=n_variations, seed=seed, **settings
        )
        for pid, p in primers.items()
    }


def continuations(results: Mapping[str, GenerationResult]) -> list[pd.DataFrame]:
    """The generated notes (primer excluded) of every variation of every result."""
    return [r.continuation(i) for r in results.values() for i in range(len(r))]


def rhythm_table(sets: Mapping[str, object], real: object, metric: str = "tv") -> pd.DataFrame:
    """Per set of note tables, its steps pooled: ``tables``, ``notes``, ``steps``, ``flams``,
    ``flam_rate``, ``chord_share``, ``median_onset_step``, the distance of its step and
    duration histograms from ``real``'s (0: the same, 1: nothing in common) and
    ``chord_share_gap`` (points of 100 above real's)."""
    rows = {}
    for label, tables in {"real": real, **sets}.items():
        ts = _tables(tables)
        s = np.concatenate([t["step"].to_numpy(np.float64)[1:] for t in ts])
        rows[label] = {
            "tables": len(ts),
            "notes": sum(map(len, ts)),
            "steps": len(s),
            "flams": int(((s >= CHORD_SNAP) & (s < FLAM_MAX)).sum()),
            "chord_share": float((s < CHORD_SNAP).mean()),
            "median_onset_step": float(np.median(s[s >= CHORD_SNAP])),
            "step_distance": distribution_distance(
                step_histogram(ts), step_histogram(real), metric
            ),
            "duration_distance": distribution_distance(
                duration_histogram(ts), duration_histogram(real), metric
            ),
        }
    out = pd.DataFrame(rows).T.drop(index="real").rename_axis("set")
    out.insert(4, "flam_rate", out["flams"] / out["steps"])
    out["chord_share_gap"] = 100 * (out["chord_share"] - rows["real"]["chord_share"])
    return out.astype(float)


def compare_sets(
    generated: Mapping[str, object], real: object, length: int, metric: str = "tv"
) -> pd.DataFrame:
    """Per setting, the mean :func:`~melody_utils.metrics.measures` of its generated tables,
    and the distance of its pitch-class, interval, step and duration histograms from those
    of real pieces cut into windows of ``length`` notes; beside them ``real`` (mean over
    the windows of each piece, then pieces) and ``real_sd`` (over windows: how much one real
    window varies)."""
    windows = real_windows(real, length)
    real_rows = pd.DataFrame([measures(w) for _, _, w in windows])
    out = pd.DataFrame(
        {
            "real": real_rows.groupby([p for p, _, _ in windows], sort=False).mean().mean(),
            "real_sd": real_rows.std(ddof=0),
        }
    )
    hists = {
        "pitch-class histogram": pitch_class_histogram,
        "interval histogram": interval_histogram,
        "top-voice interval histogram": lambda t: interval_histogram(t, "top"),
        "step histogram": step_histogram,
        "duration histogram": duration_histogram,
    }
    real_tables = [w for _, _, w in windows]
    for h, f in hists.items():
        out.loc[h] = math.nan
    for label, tables in generated.items():
        ts = _tables(tables)
        col = pd.DataFrame([measures(t) for t in ts]).mean()
        for h, f in hists.items():
            col[h] = distribution_distance(f(ts), f(real_tables), metric)
        out[label] = col
    out = out.drop(index="copied_run", errors="ignore")
    out.insert(
        0, "description", [MEASURES.get(m, f"{metric} distance from real") for m in out.index]
    )
    out.attrs.update(
        length=length, real_windows=len(windows), real_pieces=len({p for p, _, _ in windows})
    )
    return out
