"""The headline figure with its uncertainty: test pitch NLL over training seeds and pieces.

    python benchmarks/headline.py [--by piece|tune] [--seeds 0 1 2] [--threads 2]

For each seed, the card's model is trained with the default recipe (``TrainConfig()``, 800
steps) on the split ``--by`` (seed 0 of the by-piece split is the committed checkpoint, not
retrained); each trained model is kept in ``outputs/seeds/by-SPLIT/seedN`` (git-ignored) for
other analyses. Reported per seed and as the mean and spread over seeds:

* test pitch NLL (nats), bits per note and perplexity, with a 95 % interval from resampling the
  test *pieces* (:func:`melody_utils.train.piece_bootstrap`);
* NLL and top-1 on chord tones (targets that start with the previous note) and on new onsets;
* step and duration MSE (normalized units), separately.

Results go to ``benchmarks/results/headline_by-SPLIT.json`` with the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from melody_utils.config import REPO_ROOT
from melody_utils.data import prepare
from melody_utils.model import build_model
from melody_utils.train import (
    TrainConfig,
    load_checkpoint,
    piece_bootstrap,
    save_checkpoint,
    train,
    window_scores,
)

RESULTS = Path(__file__).resolve().parent / "results"


def summarise(scores) -> dict:
    nll, low, high = piece_bootstrap(scores)
    row = {"pitch_nll": nll, "pitch_nll_95": [low, high], "bits_per_note": nll / math.log(2)}
    row |= {"perplexity": math.exp(nll), "top1": float(scores["top1"].mean())}
    for name, part in (
        ("chord_tones", scores[scores["chord_tone"]]),
        ("new_onsets", scores[~scores["chord_tone"]]),
    ):
        row[name] = {
            "share": len(part) / len(scores),
            "pitch_nll": float(part["pitch_nll"].mean()),
            "top1": float(part["top1"].mean()),
        }
    row |= {
        "mse_step": float(scores["se_step"].mean()),
        "mse_duration": float(scores["se_duration"].mean()),
    }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--by", choices=("piece", "tune"), default="piece")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.threads < 1 or min(args.seeds) < 0 or len(set(args.seeds)) != len(args.seeds):
        parser.error("--threads must be >= 1 and --seeds distinct numbers >= 0")
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {args.threads} threads"
    print(f"{machine}, load {load:.2f}; split by {args.by}")
    prep = prepare("bach", progress=False, split_by=args.by)
    runs = {}
    for seed in args.seeds:
        t0 = time.perf_counter()
        if seed == 0 and args.by == "piece":
            model, normalizer, _ = load_checkpoint()
            how = "the committed checkpoint"
        else:
            model, normalizer = build_model(seed=seed), prep.normalizer
            result = train(
                model,
                prep.windows["train"],
                prep.windows["val"],
                replace(TrainConfig(), seed=seed),
                progress=True,
            )
            stem = REPO_ROOT / "outputs" / "seeds" / f"by-{args.by}" / f"seed{seed}"
            stem.parent.mkdir(parents=True, exist_ok=True)
            save_checkpoint(
                stem,
                model,
                normalizer,
                {
                    **prep.data_metadata(),
                    "profile": "default",
                    "train_config": TrainConfig().to_dict(),
                },
            )
            how = f"trained, best step {result.best_step}, {result.train_seconds:.0f} s"
        runs[seed] = summarise(window_scores(model, prep.windows["test"], normalizer))
        runs[seed]["how"], runs[seed]["seconds"] = how, round(time.perf_counter() - t0, 1)
        r = runs[seed]
        print(
            f"seed {seed} ({how}): test pitch NLL {r['pitch_nll']:.3f} "
            f"[{r['pitch_nll_95'][0]:.3f}, {r['pitch_nll_95'][1]:.3f}] over pieces; chord tones "
            f"{r['chord_tones']['pitch_nll']:.3f}, new onsets {r['new_onsets']['pitch_nll']:.3f}"
        )
    nlls = np.array([r["pitch_nll"] for r in runs.values()])
    over = {
        "mean": float(nlls.mean()),
        "sd": float(nlls.std(ddof=1)) if len(nlls) > 1 else None,
        "min": float(nlls.min()),
        "max": float(nlls.max()),
    }
    print(
        f"over {len(nlls)} seeds: {over['mean']:.3f} (sd {over['sd'] or 0:.3f}, "
        f"{over['min']:.3f}..{over['max']:.3f})"
    )
    out = RESULTS / f"headline_by-{args.by}.json"
    out.write_text(
        json.dumps(
            {
                "machine": machine,
                "load_before": load,
                "split_by": args.by,
                "seeds": runs,
                "over_seeds": over,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {out.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
