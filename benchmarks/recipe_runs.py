"""The runs that chose the default training recipe (issue 10), on the seed-0 Bach split.

Each run trains the SPEC model from the same seed with one recipe for the same number
of optimizer steps, then records the card's validation metrics (the prediction after
32 notes, untransposed) and the embedding's measures: how far the trained table moved
from its random start (median ||E - E0|| / ||E0|| over pitches seen at least 20 times,
counting transpositions) and how well a cross-validated ridge probe reads the pitch
height off E itself (R²).

    python benchmarks/recipe_runs.py                      # every recipe, one after another
    python benchmarks/recipe_runs.py --runs card,all --threads 1 --tag a   # a subset

Results are appended to ``benchmarks/results/recipes.csv`` (one row per run) and the
validation curves to ``benchmarks/results/recipe_history.csv``; ``--tag T`` writes
``recipes-T.csv`` instead, so that parallel processes keep apart. Wall times depend on
the machine and its load: the load average is recorded with each run.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from melody_utils.data import prepare
from melody_utils.embeddings import (
    embedding_table,
    height_probe,
    pitch_counts,
    random_init_embedding,
    seen_mask,
    similarity_by_interval,
)
from melody_utils.model import ModelConfig, build_model
from melody_utils.train import PROFILES, TrainConfig, train

RESULTS = Path(__file__).resolve().parent / "results"

BASE = TrainConfig(steps=800, eval_every=200)
#: name -> (TrainConfig, embedding init std). "all": loss at every step from position 8;
#: "tr": random transposition by -6..+5 semitones; "decayall": weight decay on every
#: parameter (the embedding included) instead of the 2-D weight matrices only.
RECIPES: dict[str, tuple[TrainConfig, float]] = {
    # the first version's recipe: the card's objective, constant-ish schedule, all decayed
    "card": (replace(PROFILES["card"], steps=800, eval_every=200), 1.0),
    "last": (replace(BASE, objective="last", transpose_min=0, transpose_max=0), 1.0),
    "all": (replace(BASE, transpose_min=0, transpose_max=0), 1.0),
    "all+tr": (BASE, 1.0),
    "all+tr+init0.05": (BASE, 0.05),
    "all+tr+init0.05+decayall": (replace(BASE, decay="all"), 0.05),
    "all+tr+init0.1": (BASE, 0.1),
}


def embedding_measures(model, config: TrainConfig, prep, seed: int) -> dict:
    E = embedding_table(model)
    E0 = random_init_embedding(seed, model.config)
    counts = pitch_counts(
        prep.splits["train"], transpose=(config.transpose_min, config.transpose_max)
    )
    mask = seen_mask(counts, 20)
    moved = np.linalg.norm(E - E0, axis=1) / np.linalg.norm(E0, axis=1)
    sims = similarity_by_interval(E, mask)["mean"]
    return {
        "seen_pitches": int(mask.sum()),
        "median_moved": float(np.median(moved[mask])),
        "height_r2": height_probe(E, mask)["r2"],
        "cos_semitone": float(sims.loc[1]),
        "cos_fifth": float(sims.loc[7]),
        "cos_octave": float(sims.loc[12]),
    }


def run(name: str, prep, steps: int | None, tag: str) -> tuple[dict, pd.DataFrame]:
    config, init = RECIPES[name]
    if steps is not None:
        config = replace(config, steps=steps)
    model = build_model(ModelConfig(embed_init_std=init), config.seed)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    result = train(
        model, prep.windows["train"], prep.windows["val"], config, device="cpu", progress=False
    )
    wall = time.perf_counter() - t0
    last = result.history.iloc[-1]
    row = {
        "recipe": name,
        "objective": config.objective,
        "transpose": f"{config.transpose_min}..{config.transpose_max}",
        "embed_init_std": init,
        "decay": config.decay,
        "lr": config.lr,
        "steps": config.steps,
        "batch_size": config.batch_size,
        "val_pitch_nll_last": float(last["val_pitch_loss"]),
        "val_pitch_nll_best": float(result.history["val_pitch_loss"].min()),
        "val_top1_last": float(last["val_pitch_top1"]),
        "val_cont_mse_last": float(last["val_cont_loss"]),
        "train_eval_nll_last": float(last.get("train_eval_pitch_nll", np.nan)),
        "train_seconds": result.train_seconds,
        "wall_seconds": wall,
        "seconds_per_step": result.train_seconds / config.steps,
        "threads": torch.get_num_threads(),
        "load_before": round(load, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "tag": tag,
    }
    row.update(embedding_measures(model, config, prep, config.seed))
    hist = result.history.assign(recipe=name, tag=tag)
    return row, hist


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default=",".join(RECIPES), help="comma-separated recipe names")
    ap.add_argument("--steps", type=int, default=None, help="override the steps of every run")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.runs.split(",") if n.strip()]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        ap.error(f"unknown recipes {unknown}; known: {list(RECIPES)}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {args.threads} torch "
        f"threads, torch {torch.__version__}",
        flush=True,
    )
    prep = prepare("bach", progress=False)
    RESULTS.mkdir(exist_ok=True)
    for name in names:
        row, hist = run(name, prep, args.steps, args.tag)
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        suffix = f"-{args.tag}" if args.tag else ""
        for frame, file in ((pd.DataFrame([row]), "recipes"), (hist, "recipe_history")):
            path = RESULTS / f"{file}{suffix}.csv"
            frame.to_csv(path, mode="a", header=not path.exists(), index=False)


if __name__ == "__main__":
    main()
