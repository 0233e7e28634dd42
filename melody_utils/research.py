"""Helpers for notebook 06 ("beyond the card"): variants trained on one split, seeds and
their spread, and generations measured against held-out music.

The notebook answers the questions the model card leaves open with measurements; the
code it would otherwise repeat lives here:

* :func:`build_variant` and :func:`train_variant`: one model of a given
  :class:`~melody_utils.model.ModelConfig`, seeded the way ``make run`` seeds the card's
  model, trained by :func:`melody_utils.train.train` and evaluated on the test split the
  card's way (:func:`melody_utils.train.evaluate`), with its training time;
* :func:`run_grid`: every variant × every seed, with a progress bar, one row per run;
  :func:`summarise_runs`: mean, spread and range over the seeds of each variant;
  :func:`paired_differences`: each variant against a reference, paired by seed;
* :func:`sample_continuations` and :func:`continuations`: several primers continued
  with the same settings and seed;
* :func:`rhythm_summary` and :func:`rhythm_table`: flam rate, share of chord tones and
  the distance of the step and duration histograms from real music, for several sets;
* :func:`compare_settings`: :func:`melody_utils.metrics.compare_sets` of several
  sampling settings side by side.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .baselines import METRIC_COLUMNS
from .config import CHORD_SNAP
from .data import Windows
from .generate import GenerationResult, generate
from .metrics import (
    FLAM_MAX,
    FLAM_MIN,
    _tables,
    compare_sets,
    distribution_distance,
    duration_histogram,
    step_histogram,
)
from .model import MelodyLSTM, ModelConfig
from .train import TrainConfig, evaluate, train

#: Where ``benchmarks/ablation_grid.py`` stores the grid's runs (one row per run) in a
#: checkout of the repository; notebook 06 reads it instead of training the grid again.
GRID_FILE = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "ablation_grid.csv"

#: The test metrics a run reports (keys of :func:`melody_utils.train.evaluate`).
RUN_METRICS = METRIC_COLUMNS


def ablation_variants(card: ModelConfig | None = None) -> dict[str, ModelConfig]:
    """Notebook 06's ablation and peer grid: the card model (``card``, default
    ``ModelConfig()``), one-hot pitch input, pitch only (no continuous inputs), no
    LayerNorm, a GRU of the same sizes, and the TensorFlow music tutorial's model
    (LSTM(128), pitch as a scalar, no LayerNorm, no embedding dropout)."""
    card = ModelConfig() if card is None else card
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


# --------------------------------------------------------------------------- one variant


def build_variant(
    config: ModelConfig, seed: int, time_classes: Mapping[str, torch.Tensor] | None = None
) -> MelodyLSTM:
    """A fresh :class:`MelodyLSTM` of ``config``, its weights drawn after
    ``torch.manual_seed(seed)``, as ``make run`` builds the card's model (so the card's
    config with seed 0 starts from the committed checkpoint's initial weights).

    A categorical time head needs ``time_classes``
    (:func:`melody_utils.data.fit_time_classes`); they are installed before training.
    The global torch RNG is left seeded (training reseeds it anyway).
    """
    torch.manual_seed(seed)
    model = MelodyLSTM(config)
    if model.categorical_time:
        if time_classes is None:
            raise ValueError("a categorical time head needs time_classes (fit_time_classes)")
        model.set_time_classes(dict(time_classes))
    return model


@dataclass
class VariantRun:
    """One trained variant and what it measured.

    Attributes:
        name: the variant's label.
        seed: the seed of its initial weights, batch order, transpositions and dropout.
        model: the trained model (eval mode; the weights of its best evaluation).
        metrics: test metrics the card's way (:func:`melody_utils.train.evaluate`).
        train_seconds: wall-clock seconds of the training steps (evaluations excluded).
        eval_seconds: wall-clock seconds of the test evaluation.
        parameters: trainable parameters.
        history: one row per evaluation during training (see :func:`train`).
        steps: optimizer steps taken.
    """

    name: str
    seed: int
    model: MelodyLSTM
    metrics: dict[str, float]
    train_seconds: float
    eval_seconds: float
    parameters: int
    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    steps: int = 0

    def row(self) -> dict:
        """A flat dict: name, seed, the :data:`RUN_METRICS`, parameters and times."""
        out: dict = {"variant": self.name, "seed": self.seed}
        out.update({m: self.metrics.get(m, math.nan) for m in RUN_METRICS})
        out.update(
            {
                "parameters": self.parameters,
                "steps": self.steps,
                "train_seconds": self.train_seconds,
                "seconds_per_step": self.train_seconds / self.steps if self.steps else math.nan,
                "eval_seconds": self.eval_seconds,
            }
        )
        return out


def train_variant(
    config: ModelConfig,
    train_windows: Windows,
    val_windows: Windows,
    test_windows: Windows,
    train_config: TrainConfig,
    seed: int = 0,
    *,
    name: str = "variant",
    time_classes: Mapping[str, torch.Tensor] | None = None,
    test_indices: torch.Tensor | None = None,
    progress: bool = False,
    device: str | torch.device | None = None,
) -> VariantRun:
    """Build, train and test one variant with ``train_config`` and ``seed``.

    Args:
        config: the architecture.
        train_windows, val_windows: for :func:`melody_utils.train.train` (the validation
            windows choose the best evaluation; with ``eval_every >= steps`` there is one
            evaluation, at the end, and they choose nothing).
        test_windows: the test split; ``test_indices`` restricts the evaluation to some
            of its windows (a quick check; the reported figures use them all).
        train_config: the recipe; its ``seed`` is replaced by ``seed``.
        seed: seeds the initial weights (:func:`build_variant`) and the run.
        name, time_classes, progress, device: as in :func:`build_variant` and
            :func:`melody_utils.train.train`.
    """
    model = build_variant(config, seed, time_classes)
    cfg = replace(train_config, seed=seed)
    result = train(model, train_windows, val_windows, cfg, progress=progress, device=device)
    t0 = time.perf_counter()
    metrics = evaluate(
        model, test_windows, cfg.eval_batch_size, cfg.cont_weight, indices=test_indices
    )
    eval_seconds = time.perf_counter() - t0
    steps = int(result.history["step"].iloc[-1]) if len(result.history) else 0
    return VariantRun(
        name,
        seed,
        model,
        metrics,
        result.train_seconds,
        eval_seconds,
        sum(p.numel() for p in model.parameters()),
        result.history,
        steps,
    )


# --------------------------------------------------------------------------- the grid


def run_grid(
    variants: Mapping[str, ModelConfig],
    seeds: Sequence[int],
    train_windows: Windows,
    val_windows: Windows,
    test_windows: Windows,
    train_config: TrainConfig,
    *,
    time_classes: Mapping[str, torch.Tensor] | None = None,
    test_indices: torch.Tensor | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> pd.DataFrame:
    """Train and test every variant with every seed, one after the other.

    A progress bar counts the runs (variant and seed in its label) and says how long
    the last one took. Runs are ordered seed by seed (every variant with seed 0, then
    seed 1, ...), so an interrupted grid still has every variant.

    Returns:
        One row per run (:meth:`VariantRun.row`): ``variant``, ``seed``, the
        :data:`RUN_METRICS`, ``parameters``, ``steps``, ``train_seconds``,
        ``seconds_per_step``, ``eval_seconds``. ``attrs["seconds"]`` holds the grid's
        wall-clock time.
    """
    if not variants or not seeds:
        raise ValueError("run_grid needs at least one variant and one seed")
    from tqdm.auto import tqdm

    jobs = [(s, name) for s in seeds for name in variants]
    rows = []
    t0 = time.perf_counter()
    bar = tqdm(total=len(jobs), desc="ablation grid", unit="run", disable=not progress)
    try:
        for seed, name in jobs:
            bar.set_postfix_str(f"{name}, seed {seed}")
            run = train_variant(
                variants[name],
                train_windows,
                val_windows,
                test_windows,
                train_config,
                seed,
                name=name,
                time_classes=time_classes,
                test_indices=test_indices,
                device=device,
            )
            rows.append(run.row())
            bar.update(1)
    finally:
        bar.close()
    table = pd.DataFrame(rows)
    table.attrs["seconds"] = time.perf_counter() - t0
    return table


def summarise_runs(
    runs: pd.DataFrame, metrics: Sequence[str] = RUN_METRICS, order: Sequence[str] | None = None
) -> pd.DataFrame:
    """Mean and spread over the seeds of each variant.

    Args:
        runs: rows of :func:`run_grid` (columns ``variant``, ``seed`` and ``metrics``).
        metrics: the columns to summarise.
        order: the variants' order in the result (default: first appearance).

    Returns:
        One row per variant: ``seeds``; for each metric ``<m>`` its mean, ``<m>_sd``
        (sample standard deviation over seeds, ddof 1; NaN for one seed), ``<m>_min``
        and ``<m>_max``; ``parameters``; ``train_seconds`` and ``seconds_per_step``
        (means).
    """
    if len(runs) == 0:
        raise ValueError("no runs to summarise")
    names = list(order) if order is not None else list(dict.fromkeys(runs["variant"]))
    out = []
    for name in names:
        g = runs[runs["variant"] == name]
        if len(g) == 0:
            raise ValueError(f"no runs of variant {name!r}")
        row: dict = {"variant": name, "seeds": len(g)}
        for m in metrics:
            v = g[m].to_numpy(np.float64)
            row[m] = float(v.mean())
            row[f"{m}_sd"] = float(v.std(ddof=1)) if len(v) > 1 else math.nan
            row[f"{m}_min"] = float(v.min())
            row[f"{m}_max"] = float(v.max())
        row["parameters"] = int(g["parameters"].iloc[0])
        for col in ("train_seconds", "seconds_per_step"):
            if col in g:
                row[col] = float(g[col].mean())
        out.append(row)
    return pd.DataFrame(out).set_index("variant")


#: Student's t 97.5 % quantiles for 1..30 degrees of freedom (two-sided 95 % intervals).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


def t_quantile_975(df: int) -> float:
    """Student's t quantile at 0.975 for ``df`` degrees of freedom (the half-width factor
    of a two-sided 95 % interval): a table up to 30, then the normal quantile with two
    Cornish-Fisher corrections (within 0.001 of the exact value)."""
    if isinstance(df, bool) or not isinstance(df, int | np.integer) or df < 1:
        raise ValueError(f"degrees of freedom must be a positive integer, got {df!r}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def paired_differences(
    runs: pd.DataFrame,
    reference: str,
    metric: str = "pitch_nll",
) -> pd.DataFrame:
    """Each variant minus ``reference`` on ``metric``, paired by seed.

    Runs of :func:`run_grid` with the same seed draw the same batches and the same
    transpositions (the recipe's generator does not depend on the model), so the
    difference of two variants at one seed is a paired measurement; the spread of the
    paired differences over seeds is what tells a real effect from seed noise.

    Returns:
        One row per variant other than ``reference``: ``seeds`` (paired), ``mean``,
        ``sd`` (ddof 1), ``min``, ``max`` of the paired differences, ``ci_low`` and
        ``ci_high`` (the 95 % Student-t interval of the mean; NaN with one seed), and
        ``clear``: True when that interval excludes 0.
    """
    ref = runs[runs["variant"] == reference].set_index("seed")[metric]
    if ref.empty:
        raise ValueError(f"no runs of the reference {reference!r}")
    rows = []
    for name in dict.fromkeys(runs["variant"]):
        if name == reference:
            continue
        own = runs[runs["variant"] == name].set_index("seed")[metric]
        d = (own - ref).dropna().to_numpy(np.float64)
        n = len(d)
        row = {"variant": name, "seeds": n, "mean": math.nan, "sd": math.nan}
        row.update({"min": math.nan, "max": math.nan, "ci_low": math.nan, "ci_high": math.nan})
        if n:
            row.update(mean=float(d.mean()), min=float(d.min()), max=float(d.max()))
        if n > 1:
            sd = float(d.std(ddof=1))
            half = t_quantile_975(n - 1) * sd / math.sqrt(n)
            row.update(sd=sd, ci_low=row["mean"] - half, ci_high=row["mean"] + half)
        row["clear"] = bool(n > 1 and (row["ci_low"] > 0 or row["ci_high"] < 0))
        rows.append(row)
    table = pd.DataFrame(rows).set_index("variant")
    table.attrs.update(reference=reference, metric=metric, confidence=0.95)
    return table


# --------------------------------------------------------------------------- generation


def sample_continuations(
    model: MelodyLSTM,
    normalizer,
    primers: Mapping[str, pd.DataFrame],
    n_notes: int,
    *,
    n_variations: int = 1,
    seed: int = 0,
    temperature: float = 1.0,
    top_p: float | None = None,
    time_temperature: float = 1.0,
    copy_index=None,
    cpu_threads: int | None = 1,
) -> dict[str, GenerationResult]:
    """``{primer id: GenerationResult}``: every primer continued with the same settings
    and the same ``seed`` (so two models given the same primers and seed are compared on
    equal terms). Arguments as in :func:`melody_utils.generate.generate`."""
    if not primers:
        raise ValueError("need at least one primer")
    return {
        pid: generate(
            model,
            normalizer,
            primer,
            n_notes,
            temperature=temperature,
            top_p=top_p,
            n_variations=n_variations,
            seed=seed,
            time_temperature=time_temperature,
            copy_index=copy_index,
            cpu_threads=cpu_threads,
        )
        for pid, primer in primers.items()
    }


def continuations(results: Mapping[str, GenerationResult]) -> list[pd.DataFrame]:
    """The generated notes (primer excluded) of every variation of every result."""
    return [r.continuation(i) for r in results.values() for i in range(r.n_variations)]


# --------------------------------------------------------------------------- rhythm


def rhythm_summary(notes: object) -> dict[str, float]:
    """Rhythm measures pooled over one or more note tables.

    Every step after a table's first note counts once (pooled, so long tables weigh
    more; :func:`melody_utils.metrics.flam_rate` is the same per table).

    Returns:
        ``tables``, ``notes``, ``steps`` (steps counted), ``flams`` (steps of
        ``FLAM_MIN``..``FLAM_MAX``, 10-100 ms), ``flam_rate`` (flams / steps),
        ``chord_share`` (steps under ``CHORD_SNAP``), ``median_onset_step`` (median
        of the steps that start a new onset, in seconds).
    """
    tables = _tables(notes)
    steps = [t["step"].to_numpy(np.float64)[1:] for t in tables]
    s = np.concatenate(steps) if steps else np.zeros(0)
    flams = int(((s >= FLAM_MIN) & (s < FLAM_MAX)).sum())
    onsets = s[s >= CHORD_SNAP]
    n = len(s)
    return {
        "tables": float(len(tables)),
        "notes": float(sum(len(t) for t in tables)),
        "steps": float(n),
        "flams": float(flams),
        "flam_rate": flams / n if n else math.nan,
        "chord_share": float((s < CHORD_SNAP).mean()) if n else math.nan,
        "median_onset_step": float(np.median(onsets)) if len(onsets) else math.nan,
    }


def rhythm_table(sets: Mapping[str, object], real: object, metric: str = "tv") -> pd.DataFrame:
    """:func:`rhythm_summary` of each set, and how far its step and duration histograms
    are from ``real``'s.

    Args:
        sets: ``{label: note tables}`` (generated sets, or a second real sample as a
            yardstick: two real samples differ by sampling noise alone).
        real: the real reference (e.g. the held-out pieces).
        metric: ``"tv"`` or ``"js"`` (:func:`melody_utils.metrics.distribution_distance`).

    Returns:
        One row per set, the :func:`rhythm_summary` columns, then ``step_distance`` and
        ``duration_distance`` (0 = the same histogram, 1 = nothing in common), and
        ``chord_share_gap`` (the set's chord share minus real's, in points of 100).
    """
    real_step, real_dur = step_histogram(real), duration_histogram(real)
    real_chord = rhythm_summary(real)["chord_share"]
    rows = []
    for label, tables in sets.items():
        row = {"set": label, **rhythm_summary(tables)}
        row["step_distance"] = distribution_distance(step_histogram(tables), real_step, metric)
        row["duration_distance"] = distribution_distance(
            duration_histogram(tables), real_dur, metric
        )
        row["chord_share_gap"] = 100 * (row["chord_share"] - real_chord)
        rows.append(row)
    table = pd.DataFrame(rows).set_index("set")
    table.attrs["metric"] = metric
    return table


# --------------------------------------------------------------------------- objective metrics


def compare_settings(
    generated: Mapping[str, object], real: object, length: int | None = None, metric: str = "tv"
) -> pd.DataFrame:
    """:func:`melody_utils.metrics.compare_sets` for several generated sets, side by side.

    Args:
        generated: ``{setting label: generated note tables}`` (continuations only).
        real: the held-out pieces, cut into windows of ``length`` notes (default: the
            median length of the first set's tables).

    Returns:
        Indexed by measure: ``description``, ``real`` (mean over real windows), ``real_sd``
        (their standard deviation), then one column per setting: the generated mean for
        a scalar measure, the histogram distance from the real windows for a histogram
        (see :func:`compare_sets`). ``attrs`` holds ``length``, ``real_windows``,
        ``real_pieces`` and ``metric``.
    """
    if not generated:
        raise ValueError("need at least one generated set")
    out = None
    for label, tables in generated.items():
        table = compare_sets(tables, real, length=length, metric=metric)
        if out is None:
            out = table[["description", "real", "real_sd"]].copy()
            out.attrs.update(table.attrs)
            length = table.attrs["length"]
        out[label] = table["generated"].where(table["distance"].isna(), table["distance"])
    return out
