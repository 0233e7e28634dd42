"""The main job (``make run``): data → training → test metrics → checkpoint → music.

Each stage is a function the notebooks reuse; :func:`main` chains them and
writes everything under ``outputs/``.
"""

from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from .config import OUTPUT_DIR, get_device, seed_everything
from .data import Corpus, Normalizer, Piece, Windows, load_corpus, make_windows, split_pieces
from .data import split_summary as _split_summary


@dataclass
class Prepared:
    """Everything the training stage needs, derived from one corpus and one split seed."""

    corpus: Corpus
    splits: dict[str, list[Piece]]
    normalizer: Normalizer
    windows: dict[str, Windows]
    source: str
    split_seed: int

    def summary(self) -> pd.DataFrame:
        return _split_summary(self.splits)


def prepare(
    source: str | Path = "bach",
    split_seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
) -> Prepared:
    """Load, split by piece, fit the normalizer on train only, and cut windows."""
    corpus = load_corpus(source, limit=limit, progress=progress)
    splits = split_pieces(corpus, seed=split_seed)
    if not splits["train"] or not splits["val"] or not splits["test"]:
        raise ValueError(
            f"source {str(source)!r} gave too few pieces for train/val/test "
            f"({ {k: len(v) for k, v in splits.items()} })"
        )
    normalizer = Normalizer.fit(splits["train"])
    windows = {k: make_windows(v, normalizer) for k, v in splits.items()}
    return Prepared(corpus, splits, normalizer, windows, str(source), split_seed)


def test_report(
    model, prep: Prepared, device: torch.device | str | None = None
) -> tuple[dict, pd.DataFrame]:
    """Test metrics of the model and of every baseline, and the combined table."""
    from .baselines import fit_baselines
    from .train import evaluate, results_table

    metrics = evaluate(model, prep.windows["test"], device=device)
    base = fit_baselines(prep.splits["train"], prep.normalizer).evaluate(prep.windows["test"])
    return metrics, results_table(metrics, base)


def main(argv: list[str] | None = None) -> int:
    """Command line of ``python -m melody_utils``."""
    parser = argparse.ArgumentParser(
        prog="python -m melody_utils", description="melody-lstm main job"
    )
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="train on a corpus and write outputs/ (the default)")
    run.add_argument(
        "--source", default="bach", help="'bach' (default), 'essen' or a folder of MIDI files"
    )
    run.add_argument("--profile", default="default", help="training profile: default or fast")
    run.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    run.add_argument("--limit", type=int, default=None, help="use only the first N files")
    run.add_argument("--split-seed", type=int, default=0)
    run.add_argument("--out", type=Path, default=OUTPUT_DIR, help="output folder")
    run.add_argument(
        "--resume", action="store_true", help="continue an interrupted run from OUT/train/last.pt"
    )
    run.add_argument("--device", default=None, help="force cpu/cuda/mps (default: auto)")
    run.add_argument("--no-music", action="store_true", help="skip the generated pieces")
    run.add_argument(
        "--publish",
        action="store_true",
        help="also copy the checkpoint to data/checkpoints/ (maintainers)",
    )
    args = parser.parse_args(argv)
    if args.command in (None, "run"):
        if args.command is None:
            args = parser.parse_args(["run", *(argv or [])])
        run_main(args)
        return 0
    parser.print_help()
    return 2


def run_main(args: argparse.Namespace) -> None:
    """The main job: see the module docstring."""
    from .checkpoint import PRETRAINED, save_checkpoint
    from .model import MelodyLSTM
    from .train import PROFILES, plot_history, train, with_overrides

    t_start = time.perf_counter()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    device = get_device(args.device)
    if args.profile not in PROFILES:
        raise SystemExit(f"unknown profile {args.profile!r}; choose from {sorted(PROFILES)}")
    config = PROFILES[args.profile]
    if args.epochs is not None:
        config = with_overrides(config, epochs=args.epochs)
    print(
        f"== melody-lstm main job: source={args.source!r}, profile={args.profile!r}, "
        f"device={device.type}"
    )

    prep = prepare(args.source, args.split_seed, args.limit)
    print(prep.corpus.report(max_rows=10))
    print(
        f"loaded in {prep.corpus.load_seconds:.1f}s "
        f"({'cache' if prep.corpus.from_cache else 'parsed'})"
    )
    print(prep.summary().to_string())
    print(prep.normalizer)

    seed_everything(config.seed)
    model = MelodyLSTM()
    meta = {"source": prep.source, "split_seed": prep.split_seed, "profile": args.profile}
    result = train(
        model,
        prep.windows["train"],
        prep.windows["val"],
        config,
        out_dir=out / "train",
        resume=args.resume,
        device=device,
        normalizer=prep.normalizer,
        metadata=meta,
    )
    print(
        f"best epoch {result.best_epoch}, validation loss {result.best_val_loss:.4f}"
        + (" (stopped early)" if result.stopped_early else "")
    )

    metrics, table = test_report(model, prep, device)
    print("\nTest split (pitch NLL in nats; MSE in normalized units):")
    print(table.round(4).to_string())
    history = result.history
    total_seconds = float(history["seconds"].sum()) if len(history) else 0.0
    meta.update(
        {
            "train_config": config.to_dict(),
            "best_epoch": result.best_epoch,
            "device": result.device,
            "train_seconds": total_seconds,
            "history": history.to_dict(orient="records"),
            "test_metrics": metrics,
            "baselines": _json_table(table.drop(index="MelodyLSTM")),
            "split_summary": prep.summary().to_dict(orient="index"),
        }
    )
    stem = save_checkpoint(
        out / "checkpoints" / f"melody_lstm_{_slug(prep.source)}", model, prep.normalizer, meta
    )
    history.to_csv(out / "history.csv", index=False)
    table.to_csv(out / "test_metrics.csv")
    fig = plot_history(history, title=f"MelodyLSTM on {prep.source} ({args.profile} profile)")
    fig.savefig(out / "loss_curves.png", dpi=110)
    print(
        f"\nwrote {out.name}/checkpoints/{stem.name}.safetensors (+ .json), history.csv, "
        f"test_metrics.csv, loss_curves.png"
    )
    if args.publish:
        PRETRAINED.parent.mkdir(parents=True, exist_ok=True)
        for suffix in (".safetensors", ".json"):
            shutil.copyfile(stem.with_suffix(suffix), PRETRAINED.with_suffix(suffix))
        print(f"published to data/checkpoints/{PRETRAINED.name}")
    if not args.no_music:
        write_music(model, prep, out / "music")
    print(f"\ndone in {time.perf_counter() - t_start:.0f}s")


def _json_table(table: pd.DataFrame) -> dict:
    """``{row: {column: value}}`` with NaN as None, so the JSON sidecar stays strict JSON."""
    return {
        str(k): {c: (None if pd.isna(v) else float(v)) for c, v in row.items()}
        for k, row in table.iterrows()
    }


def _slug(source: str) -> str:
    return source if source in ("bach", "essen") else "midi"


def write_music(
    model,
    prep: Prepared,
    folder: Path,
    n_pieces: int = 3,
    n_notes: int = 128,
    temperature: float = 1.0,
    seed: int = 0,
) -> list[Path]:
    """Continue a few held-out pieces; write ``.mid``, ``.wav`` and a piano-roll PNG each."""
    import matplotlib.pyplot as plt

    from .audio import audio_backend, render, write_wav
    from .generate import generate
    from .plots import plot_piano_roll

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    primers = [p for p in prep.splits["test"] if len(p) >= 32][:n_pieces]
    print(
        f"\nGenerating {len(primers)} continuations of held-out pieces "
        f"({n_notes} notes, temperature {temperature}, audio: {audio_backend()})"
    )
    from .metrics import reference_stats

    reference = reference_stats(prep.splits["test"], n_notes)
    for i, piece in enumerate(primers):
        res = generate(
            model, prep.normalizer, piece, n_notes, temperature=temperature, seed=seed + i
        )
        name = piece.id.replace("/", "_")
        mid = folder / f"{name}_continued.mid"
        res.midi[0].write(str(mid))
        write_wav(render(res.midi[0]), folder / f"{name}_continued.wav")
        fig, ax = plt.subplots(figsize=(12, 4))
        plot_piano_roll(
            res.notes[0],
            ax=ax,
            split_at=res.split_at,
            title=f"{piece.id}: last 32 notes and the generated continuation",
        )
        fig.savefig(folder / f"{name}_continued.png", dpi=100)
        plt.close(fig)
        print(f"  {mid.name}:")
        print(res.stats_table(reference).round(3).to_string())
        written.append(mid)
    return written
