"""Why the categorical time head costs pitch NLL: the same variant trained several ways.

    python benchmarks/rhythm_head.py [--runs recipe weight detach] [--time-weight 0.25]
                                     [--seed 0] [--threads 2] [--steps 800]

Every run is the card's model with ``time_head="categorical"`` (32 classes), the default recipe
(``TrainConfig()``, 800 steps) and the by-piece split of the committed checkpoint, changed in
one thing:

* ``recipe``: as notebook 06 trains it (loss = pitch CE + 1.0 x time loss);
* ``weight``: the time loss weighted by ``--time-weight`` (its CE over 32 classes is several
  times the regression head's MSE, so at weight 1 it may crowd out the pitch in the shared
  layers);
* ``detach``: the time heads read the LSTM's state but send no gradient into it (the shared
  layers learn for the pitch alone; the time heads are fitted on top).

Each run reports test pitch NLL (every test window), the step and duration MSE, and the rhythm
of 8 held-out primers x 4 continuations of 128 notes (flam rate against real, chord-tone share
in points from real). The committed card model is the reference row. Rows are appended to
``benchmarks/results/rhythm_head.csv`` with the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import platform
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from melody_utils.ablation import continuations, rhythm_table, sample_continuations
from melody_utils.data import prepare
from melody_utils.generate import primers_from_pieces
from melody_utils.model import MelodyLSTM, build_model, fit_time_classes
from melody_utils.train import TrainConfig, evaluate, load_checkpoint, train

OUT = Path(__file__).resolve().parent / "results" / "rhythm_head.csv"


class DetachedTime(MelodyLSTM):
    """The time heads trained on the shared state without sending it a gradient."""

    def head_loss(self, h, target_pitch, target_cont):
        ce, _ = super().head_loss(h, target_pitch, target_cont)
        return ce, super().head_loss(h.detach(), target_pitch, target_cont)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--runs",
        nargs="+",
        default=["recipe", "weight", "detach"],
        choices=("recipe", "weight", "detach"),
    )
    parser.add_argument("--time-weight", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=TrainConfig().steps)
    args = parser.parse_args()
    if not 0 < args.time_weight <= 10 or args.threads < 1 or args.steps < 1:
        parser.error("--time-weight must be in (0, 10], --threads and --steps >= 1")
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {args.threads} threads"
    print(f"{machine}, load {load:.2f}")
    prep = prepare("bach", progress=False)
    train_p, test_p = prep.splits["train"], prep.splits["test"]
    w = prep.windows
    openings = primers_from_pieces(test_p)
    ids = list(openings)[:: max(1, len(openings) // 8)][:8]
    primers = {pid: openings[pid] for pid in ids}
    real = rhythm_table({"real test chorales": test_p}, real=test_p).iloc[0]
    card, normalizer, _ = load_checkpoint()
    classes = fit_time_classes(train_p, prep.normalizer, 32)
    config = replace(card.config, time_head="categorical", time_classes=32)
    rows = []

    def report(name: str, model, seconds: float, weight: float) -> None:
        m = evaluate(model, w["test"])
        tables = continuations(
            sample_continuations(model, normalizer, primers, 128, n_variations=4, seed=args.seed)
        )
        r = rhythm_table({name: tables}, real=test_p).iloc[0]
        row = {"run": name, "seed": args.seed, "time_weight": weight}
        row |= {k: m[k] for k in ("pitch_nll", "pitch_top1", "mse_step", "mse_duration")}
        row |= {
            "flam_rate": float(r["flam_rate"]),
            "real_flam_rate": float(real["flam_rate"]),
            "chord_share_gap": float(r["chord_share_gap"]),
            "train_seconds": round(seconds, 1),
        }
        rows.append(row | {"machine": machine, "load_before": round(load, 2)})
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})

    report("card model (committed)", card, 0.0, 1.0)
    for run in args.runs:
        model = build_model(config, args.seed, classes)
        if run == "detach":
            model.__class__ = DetachedTime
        weight = args.time_weight if run == "weight" else 1.0
        recipe = replace(TrainConfig(), seed=args.seed, cont_weight=weight, steps=args.steps)
        result = train(model, w["train"], w["val"], recipe, progress=True)
        model.__class__ = MelodyLSTM
        report(run, model, result.train_seconds, weight)

    pd.DataFrame(rows).to_csv(OUT, mode="a", header=not OUT.exists(), index=False)
    print(f"appended {len(rows)} rows to {OUT.relative_to(OUT.parents[2])}")


if __name__ == "__main__":
    main()
