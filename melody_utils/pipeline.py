"""The main job (``make run``): data → training → test metrics → checkpoint → music.

Each stage is a function the notebooks reuse; :func:`main` chains them and
writes everything under ``outputs/``.
"""

from __future__ import annotations

import argparse
import math
import os
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
    source: str  # the corpus's label: a corpus name or a folder's name, no machine path
    split_seed: int
    limit: int | None = None

    def summary(self) -> pd.DataFrame:
        return _split_summary(self.splits)

    def data_metadata(self) -> dict:
        """What identifies the data, for a checkpoint's sidecar (no machine path)."""
        return {
            "source": self.source,
            "data_fingerprint": self.corpus.fingerprint,
            "split_seed": self.split_seed,
            "limit": self.limit,
        }


def prepare(
    source: str | Path = "bach",
    split_seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
    use_cache: bool = True,
) -> Prepared:
    """Load, split by piece, fit the normalizer on train only, and cut windows."""
    corpus = load_corpus(source, limit=limit, progress=progress, use_cache=use_cache)
    splits = split_pieces(corpus, seed=split_seed)
    if not splits["train"] or not splits["val"] or not splits["test"]:
        raise ValueError(
            f"source {corpus.source!r} gave too few pieces for train/val/test "
            f"({ {k: len(v) for k, v in splits.items()} }); it needs at least 3 usable pieces"
        )
    normalizer = Normalizer.fit(splits["train"])
    windows = {k: make_windows(v, normalizer) for k, v in splits.items()}
    return Prepared(corpus, splits, normalizer, windows, corpus.source, split_seed, limit)


def test_report(
    model, prep: Prepared, device: torch.device | str | None = None
) -> tuple[dict, pd.DataFrame]:
    """Test metrics of the model and of every baseline, and the combined table."""
    from .baselines import fit_baselines
    from .train import evaluate, results_table

    metrics = evaluate(model, prep.windows["test"], device=device)
    base = fit_baselines(prep.splits["train"], prep.normalizer).evaluate(prep.windows["test"])
    return metrics, results_table(metrics, base)


class UsageError(Exception):
    """A command-line mistake: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump, exit 2
        raise UsageError(f"{message} (see --help)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must lie in 0..2**32-1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m melody_utils [run] [options]``."""
    from .train import PROFILES

    parser = _Parser(prog="python -m melody_utils", description="melody-lstm main job")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    run = sub.add_parser("run", help="train on a corpus and write outputs/ (the default)")
    run.add_argument(
        "--source", default="bach", help="'bach' (default), 'essen' or a folder of MIDI files"
    )
    run.add_argument(
        "--profile",
        default="default",
        choices=sorted(PROFILES),
        help="training profile (default: %(default)s)",
    )
    budget = run.add_mutually_exclusive_group()
    budget.add_argument(
        "--steps", type=_positive_int, default=None, help="override the profile's optimizer steps"
    )
    budget.add_argument(
        "--epochs",
        type=_positive_int,
        default=None,
        help="train for N passes over the training windows (sets --steps from the data)",
    )
    run.add_argument("--limit", type=_positive_int, default=None, help="use only the first N files")
    run.add_argument("--split-seed", type=_seed, default=0)
    run.add_argument("--out", type=Path, default=OUTPUT_DIR, help="output folder")
    run.add_argument(
        "--resume", action="store_true", help="continue an interrupted run from OUT/train/last.pt"
    )
    run.add_argument("--device", default=None, help="force cpu, cuda, cuda:N or mps")
    run.add_argument("--no-music", action="store_true", help="skip the generated pieces")
    run.add_argument("--no-cache", action="store_true", help="parse the corpus, cache nothing")
    run.add_argument(
        "--publish",
        action="store_true",
        help="also copy the checkpoint to melody_utils/pretrained/ (maintainers; Bach only)",
    )
    return parser


def _check_args(args: argparse.Namespace) -> torch.device:
    """Every check that can fail before any work or write; returns the device."""
    from .corpus import builtin_corpora

    if not str(args.source).strip():
        raise UsageError("--source is empty; pass 'bach', 'essen' or a folder of MIDI files")
    if args.publish and args.source != "bach":
        raise UsageError(
            "--publish replaces the committed Bach checkpoint: use it with --source bach only"
        )
    if args.source not in builtin_corpora():
        folder = Path(args.source).expanduser()
        if not folder.exists():
            import difflib

            close = difflib.get_close_matches(args.source.lower(), list(builtin_corpora()), 1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UsageError(
                f"--source {args.source!r} is neither 'bach', 'essen' nor an existing folder{hint}"
            )
        if not folder.is_dir():
            raise UsageError(f"--source {args.source!r} is a file; pass the folder that holds it")
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file, not a folder")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise UsageError(f"--out {str(out)!r} is not writable")
    if args.resume and not (out / "train" / "last.pt").is_file():
        raise UsageError(
            f"--resume: no interrupted run to resume in {out.name}/train/ (last.pt is missing)"
        )
    try:
        return get_device(args.device)
    except (ValueError, RuntimeError) as exc:
        raise UsageError(f"--device: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    """Command line of ``python -m melody_utils``: returns the exit status.

    ``run`` is the default command (``python -m melody_utils --steps 100`` works). A
    mistake on the command line, or in the data it names, is one line on stderr and
    exit status 2; ``MELODY_DEBUG=1`` shows the traceback instead.
    """
    import sys

    from .checkpoint import CheckpointError
    from .notes import BadInputError

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "-h", "--help"):
        argv = ["run", *argv]
    prog = "python -m melody_utils"
    try:
        args = build_parser().parse_args(argv)
        device = _check_args(args)
        run_main(args, device)
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except (
        BadInputError,
        FileNotFoundError,
        NotADirectoryError,
        CheckpointError,
        ValueError,
    ) as exc:
        if os.environ.get("MELODY_DEBUG"):
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"\n{prog}: interrupted; `--resume` continues from the last finished epoch",
            file=sys.stderr,
        )
        return 130
    return 0


def run_main(args: argparse.Namespace, device: torch.device | None = None) -> None:
    """The main job: see the module docstring."""
    from dataclasses import replace

    from .checkpoint import PRETRAINED, checkpoint_files, save_checkpoint
    from .model import MelodyLSTM
    from .train import PROFILES, plot_history, train

    t_start = time.perf_counter()
    device = device or get_device(args.device)
    config = PROFILES[args.profile]
    if args.steps is not None:
        config = replace(config, steps=args.steps)
    print(
        f"== melody-lstm main job: source={args.source!r}, profile={args.profile!r}, "
        f"device={device.type}"
    )

    prep = prepare(args.source, args.split_seed, args.limit, use_cache=not args.no_cache)
    print(prep.corpus.report(max_rows=10))
    print(
        f"loaded in {prep.corpus.load_seconds:.1f}s "
        f"({'cache' if prep.corpus.from_cache else 'parsed'})"
    )
    print(prep.summary().to_string())
    print(prep.normalizer)

    if args.epochs is not None:
        n_windows = len(prep.windows["train"])
        config = replace(
            config, steps=max(1, math.ceil(args.epochs * n_windows / config.batch_size))
        )
        print(f"--epochs {args.epochs}: {config.steps} steps of {config.batch_size} windows")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    model = MelodyLSTM()
    meta = {**prep.data_metadata(), "profile": args.profile}
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
        f"best step {result.best_step} of {config.steps}, validation loss "
        f"{result.best_val_loss:.4f}, {result.train_seconds:.0f} s of training"
        + (" (stopped early)" if result.stopped_early else "")
    )

    metrics, table = test_report(model, prep, device)
    print("\nTest split (pitch NLL in nats; MSE in normalized units):")
    print(table.round(4).to_string())
    history = result.history
    meta.update(
        {
            "train_config": config.to_dict(),
            "best_step": result.best_step,
            "device": result.device,
            "train_seconds": result.train_seconds,
            "machine": _machine(),
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
        for src, dst in zip(checkpoint_files(stem), checkpoint_files(PRETRAINED), strict=True):
            shutil.copyfile(src, dst)
        print(f"published to melody_utils/pretrained/{PRETRAINED.name}")
    if not args.no_music:
        write_music(model, prep, out / "music")
    print(f"\ndone in {time.perf_counter() - t_start:.0f}s")


def _machine() -> dict:
    """Where a run happened: CPU cores and threads, GPU name (no host name, no path)."""
    import platform

    info = {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "processor": platform.machine(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    try:
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    return info


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
    """Continue a few held-out pieces; write ``.mid``, ``.wav`` and a piano-roll PNG each.

    Each primer is the piece's opening 64 notes (:func:`~melody_utils.generate.
    primers_from_pieces`), so the model continues mid-phrase, not after the final cadence.
    """
    import matplotlib.pyplot as plt

    from .audio import audio_backend, render, write_wav
    from .generate import generate, primers_from_pieces
    from .metrics import CopyIndex, copy_reference, reference_stats
    from .notes import file_stem
    from .plots import plot_piano_roll

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    primers = list(primers_from_pieces(prep.splits["test"]).items())[:n_pieces]
    print(
        f"\nGenerating {len(primers)} continuations of held-out pieces from their opening "
        f"notes ({n_notes} notes, temperature {temperature}, audio: {audio_backend()})"
    )
    reference = reference_stats(prep.splits["test"], n_notes)
    # the copy check: each continuation's longest run of pitches also in the training
    # set, against the median real held-out window of the same length
    index = CopyIndex(prep.splits["train"])
    runs = copy_reference(index, prep.splits["test"], n_notes)
    reference["copied_run"] = runs.summary()["median"]
    for i, (piece_id, primer) in enumerate(primers):
        res = generate(
            model,
            prep.normalizer,
            primer,
            n_notes,
            temperature=temperature,
            seed=seed + i,
            copy_index=index,
        )
        name = file_stem(piece_id) + "_continued"
        mid = folder / f"{name}.mid"
        res.midi[0].write(str(mid))
        write_wav(render(res.midi[0]), folder / f"{name}.wav")
        fig, ax = plt.subplots(figsize=(12, 4))
        plot_piano_roll(
            res.notes[0],
            ax=ax,
            split_at=res.split_at,
            title=f"{piece_id}: notes {len(primer) - res.split_at + 1}-{len(primer)} and the "
            f"generated continuation",
        )
        fig.savefig(folder / f"{name}.png", dpi=100)
        plt.close(fig)
        print(f"  {mid.name}:")
        print(res.stats_table(reference).round(3).to_string())
        match = res.copies[0]
        if match.length:
            print(
                f"  longest run shared with the training set: {match.length} notes "
                f"(at {match.piece_id}, note {match.note_index}; real held-out windows of "
                f"{n_notes} notes: median {runs.summary()['median']:.0f}, "
                f"{runs.share_at_least(match.length):.0%} share a run at least as long)"
            )
        written.append(mid)
    return written
