"""The model's peers on the same split and the same test windows: a Kneser-Ney n-gram and a
small decoder-only Transformer trained with the model's recipe.

    python benchmarks/peers.py [--by piece|tune] [--seeds 0] [--steps 800] [--lr 3e-3]
                               [--dropout 0.1] [--threads 2]

* **n-gram**: :class:`melody_utils.baselines.KneserNey`; its tuning budget is the grid below
  (context 3, 5, 7, 9, 12 notes before the last; discount 0.6, 0.75, 0.9, 0.95; relative or
  absolute with the recipe's transpositions -6..+5): 40 fits, chosen on validation, reported
  on test.
* **Transformer**: ``ModelConfig(cell="transformer")``, width 256, 3 layers, 4 heads,
  feed-forward 1024 (2.57 M parameters against the LSTM's 2.24 M), trained with the default
  recipe (``TrainConfig()``: 800 steps of 128 windows, every-step objective, the same
  transpositions); its tuning budget is what the command line sets (``--lr``, ``--dropout``).
* **LSTM**: the committed checkpoint, when ``--by piece`` (the split it was trained on).

Rows are appended to ``benchmarks/results/peers.csv`` with the machine and its load.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from melody_utils.baselines import KneserNey
from melody_utils.data import Normalizer, load_corpus, make_windows, split_pieces
from melody_utils.model import ModelConfig, build_model
from melody_utils.train import TrainConfig, evaluate, load_checkpoint, train

OUT = Path(__file__).resolve().parent / "results" / "peers.csv"
PEER = ModelConfig(cell="transformer", hidden_size=256, num_layers=3, n_heads=4, ff_size=1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--by", choices=("piece", "tune"), default="piece")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0], help="none: no Transformer")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--lr", type=float, default=TrainConfig().lr)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-ngram", action="store_true")
    args = parser.parse_args()
    if args.steps < 1 or args.threads < 1 or not 0 < args.lr < 1 or not 0 <= args.dropout < 1:
        parser.error("--steps and --threads must be >= 1, --lr in (0, 1), --dropout in [0, 1)")
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {args.threads} threads"
    print(f"{machine}, load {load:.2f}; split by {args.by}")
    corpus = load_corpus("bach", progress=False)
    splits = split_pieces(corpus, seed=0, by=args.by)
    norm = Normalizer.fit(splits["train"])
    windows = {k: make_windows(v, norm) for k, v in splits.items()}
    rows = []

    def add(peer: str, setting: str, seed, m: dict, seconds: float) -> None:
        row = {"peer": peer, "setting": setting, "seed": seed, "split_by": args.by}
        row |= {k: m.get(k) for k in ("pitch_nll", "pitch_top1", "pitch_top5")}
        row |= {"val_pitch_nll": m.get("val_pitch_nll"), "seconds": round(seconds, 1)}
        rows.append(row | {"machine": machine, "load_before": round(load, 2)})
        print({k: v for k, v in rows[-1].items() if k not in ("machine",)})

    if not args.skip_ngram:
        grid = itertools.product((3, 5, 7, 9, 12), (0.6, 0.75, 0.9, 0.95), (True, False))
        best = None
        t0 = time.perf_counter()
        for context, discount, relative in grid:
            shifts = (0,) if relative else range(-6, 6)
            kn = KneserNey(splits["train"], context, discount, relative, shifts)
            val = kn.evaluate(windows["val"])["pitch_nll"]
            if best is None or val < best[0]:
                best = (val, kn)
        val, kn = best
        setting = f"context {kn.context}, discount {kn.discount}, relative {kn.relative}"
        add(
            "Kneser-Ney n-gram",
            setting,
            None,
            kn.evaluate(windows["test"]) | {"val_pitch_nll": val},
            time.perf_counter() - t0,
        )

    if args.by == "piece":
        model, _, meta = load_checkpoint()
        t0 = time.perf_counter()
        add(
            "LSTM (committed)",
            "default recipe, 800 steps",
            0,
            evaluate(model, windows["test"]),
            time.perf_counter() - t0,
        )

    config = replace(PEER, lstm_dropout=args.dropout)
    recipe = replace(TrainConfig(), steps=args.steps, lr=args.lr)
    for seed in args.seeds:
        model = build_model(config, seed)
        t0 = time.perf_counter()
        result = train(
            model, windows["train"], windows["val"], replace(recipe, seed=seed), progress=True
        )
        at_best = result.history.set_index("step").loc[result.best_step, "val_pitch_loss"]
        m = evaluate(model, windows["test"]) | {"val_pitch_nll": float(at_best)}
        setting = f"{args.steps} steps, lr {args.lr}, dropout {args.dropout}"
        add("Transformer", setting, seed, m, time.perf_counter() - t0)

    pd.DataFrame(rows).to_csv(OUT, mode="a", header=not OUT.exists(), index=False)
    print(f"appended {len(rows)} rows to {OUT.relative_to(OUT.parents[2])}")


if __name__ == "__main__":
    main()
