"""The ablation and peer grid of notebook 06 at a budget the notebook cannot afford.

    python benchmarks/ablation_grid.py [--steps 150] [--seeds 0 1 2] [--threads 1]
                                       [--out benchmarks/results/ablation_grid.csv]

Notebook 06 runs :func:`melody_utils.ablation.run_grid` on the seed-0 Bach split with a
small budget (it must finish inside the notebook). This script runs the same grid, the
same variants (:func:`melody_utils.ablation.ablation_variants`), the same recipe
(``TrainConfig()`` with ``steps`` optimizer steps, warm-up ``steps // 8``, one evaluation
at the end on 4 validation chorales) and the same fixed 2,048 test windows
(``randperm(seed 1)``), with more steps. Rows are appended to ``--out`` run by run
(variant, seed, test metrics, parameters, times, the budget and the load average), so
several processes (one per seed, ``--seeds 1``) can share the work; rerunning a
(variant, seed, steps) that is already in the file skips it.
"""

from __future__ import annotations

import argparse
import os
import platform
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from melody_utils.ablation import GRID_FILE, ablation_variants, train_variant
from melody_utils.data import make_windows, prepare
from melody_utils.train import TrainConfig

GRID_TEST = 2048


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=GRID_FILE)
    args = ap.parse_args()
    if args.steps < 8:
        ap.error("--steps must be at least 8")
    if args.threads < 1:
        ap.error("--threads must be at least 1")
    if any(s < 0 for s in args.seeds):
        ap.error("--seeds must be non-negative integers")
    torch.set_num_threads(args.threads)
    prep = prepare("bach", split_seed=0, progress=False)
    train_w, test_w = prep.windows["train"], prep.windows["test"]
    val_small = make_windows(prep.splits["val"][:4], prep.normalizer)
    grid_idx = torch.randperm(len(test_w), generator=torch.Generator().manual_seed(1))[:GRID_TEST]
    recipe = replace(
        TrainConfig(),
        steps=args.steps,
        warmup_steps=args.steps // 8,
        eval_every=args.steps,
        train_eval_windows=0,
    )
    done = pd.read_csv(args.out) if args.out.exists() else pd.DataFrame()
    for seed in args.seeds:
        for name, config in ablation_variants().items():
            if (
                len(done)
                and (
                    (done["variant"] == name)
                    & (done["seed"] == seed)
                    & (done["steps"] == args.steps)
                ).any()
            ):
                continue
            load = os.getloadavg()[0]
            row, _ = train_variant(
                config, train_w, val_small, test_w, recipe, seed, name=name, test_indices=grid_idx
            )
            row |= {
                "batch_size": recipe.batch_size,
                "test_windows": GRID_TEST,
                "threads": args.threads,
                "load_before": load,
                "machine": f"{os.cpu_count()} cores {platform.machine()}",
            }
            print(
                f"{name:>20} seed {seed}: NLL {row['pitch_nll']:.3f} top-1 {row['pitch_top1']:.3f}"
                f" {row['train_seconds']:.0f} s (load {load:.1f})",
                flush=True,
            )
            args.out.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame([row]).to_csv(
                args.out, mode="a", header=not args.out.exists(), index=False
            )


if __name__ == "__main__":
    main()
