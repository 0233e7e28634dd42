"""What each part of the model buys (notebook 06, ``benchmarks/ablation_grid.py``): variants
trained over seeds (:func:`run_grid`), compared by seed (:func:`paired_differences`); their
continuations against real music (:func:`rhythm_table`, :func:`compare_sets`)."""

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
    _window_measures,
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
    """The card's model, one-hot pitch, pitch only (no time inputs), no LayerNorm, a GRU, and the
    TensorFlow tutorial's model (LSTM(128), scalar pitch, no LayerNorm or embedding dropout)."""
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
    run = replace(recipe, seed=seed)
    result = train(model, train_w, val_w, run, progress=progress, device=device)
    t0 = time.perf_counter()
    m = evaluate(model, test_w, recipe.eval_batch_size, recipe.cont_weight, indices=test_indices)
    steps, secs = int(result.history["step"].iloc[-1]), result.train_seconds
    row = {"variant": name, "seed": seed, **{k: m[k] for k in RUN_METRICS}}
    row.update(parameters=sum(p.numel() for p in model.parameters()), steps=steps)
    row.update(train_seconds=secs, seconds_per_step=secs / steps)
    return {**row, "eval_seconds": time.perf_counter() - t0}, model


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
    rows, runs = [], [(s, n) for s in seeds for n in variants]
    kw = {"test_indices": test_indices, "device": device}
    with tqdm(runs, desc="ablation grid", unit="run", disable=not progress) as bar:
        for seed, name in bar:
            bar.set_postfix_str(f"{name}, seed {seed}")
            data = (train_w, val_w, test_w, recipe, seed)
            rows.append(train_variant(variants[name], *data, name=name, **kw)[0])
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
    """Each variant minus ``reference`` on ``metric``, paired by seed: ``seeds``, ``mean``, ``sd``,
    the 95 % Student-t interval ``ci_low``..``ci_high`` and ``clear`` (it excludes 0)."""
    from scipy.stats import t as student

    table = runs.pivot(index="seed", columns="variant", values=metric)
    if reference not in table:
        raise ValueError(f"no runs of the reference {reference!r}")
    rows = {}
    for name in (n for n in dict.fromkeys(runs["variant"]) if n != reference):
        d = (table[name] - table[reference]).dropna()
        n, mean, sd = len(d), d.mean(), d.std()
        half = student.ppf(0.975, n - 1) * sd / math.sqrt(n) if n > 1 else math.nan
        low, high = mean - half, mean + half
        rows[name] = {"seeds": n, "mean": mean, "sd": sd, "ci_low": low, "ci_high": high}
        rows[name]["clear"] = bool(low > 0 or high < 0)
    return pd.DataFrame(rows).T.infer_objects().rename_axis("variant")


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
    settings = {"cpu_threads": 1, **settings, "n_variations": n_variations, "seed": seed}
    return {pid: generate(model, normalizer, p, n_notes, **settings) for pid, p in primers.items()}


def continuations(results: Mapping[str, GenerationResult]) -> list[pd.DataFrame]:
    """The generated notes (primer excluded) of every variation of every result."""
    return [r.continuation(i) for r in results.values() for i in range(len(r))]


def rhythm_table(sets: Mapping[str, object], real: object, metric: str = "tv") -> pd.DataFrame:
    """Per set of note tables, steps pooled: counts, ``flam_rate``, ``chord_share``,
    ``median_onset_step``, step and duration histogram distances from ``real`` (0: the same,
    1: nothing in common) and ``chord_share_gap`` (points of 100 above real's)."""
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
        }
        for key, hist in (("step", step_histogram), ("duration", duration_histogram)):
            rows[label][f"{key}_distance"] = distribution_distance(hist(ts), hist(real), metric)
    out = pd.DataFrame(rows).T.drop(index="real").rename_axis("set")
    out.insert(4, "flam_rate", out["flams"] / out["steps"])
    out["chord_share_gap"] = 100 * (out["chord_share"] - rows["real"]["chord_share"])
    return out.astype(float)


def compare_sets(
    generated: Mapping[str, object], real: object, length: int, metric: str = "tv"
) -> pd.DataFrame:
    """Per setting, the mean :func:`~melody_utils.metrics.measures` of its tables and its
    histograms' distances from real windows of ``length`` notes; beside them ``real`` (mean over
    each piece's windows, then pieces) and ``real_sd`` (over windows)."""
    windows = real_windows(real, length)
    real_rows = _window_measures(windows)
    real_mean = real_rows.groupby(level=0, sort=False).mean().mean()
    out = pd.DataFrame({"real": real_mean, "real_sd": real_rows.std(ddof=0)})
    hists = {
        "pitch-class histogram": pitch_class_histogram,
        "interval histogram": interval_histogram,
        "top-voice interval histogram": lambda t: interval_histogram(t, "top"),
        "step histogram": step_histogram,
        "duration histogram": duration_histogram,
    }
    real_tables = [w for _, _, w in windows]
    for h in hists:
        out.loc[h] = math.nan
    for label, tables in generated.items():
        ts = _tables(tables)
        col = pd.DataFrame([measures(t) for t in ts]).mean()
        for h, f in hists.items():
            col[h] = distribution_distance(f(ts), f(real_tables), metric)
        out[label] = col
    out = out.drop(index="copied_run", errors="ignore")
    about = [MEASURES.get(m, f"{metric} distance from real") for m in out.index]
    out.insert(0, "description", about)
    n_pieces = real_rows.index.nunique()
    out.attrs.update(length=length, real_windows=len(windows), real_pieces=n_pieces)
    return out
