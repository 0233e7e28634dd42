"""The main job, ``python -m melody_utils [run] [options]`` (``make run``): train, test, write the
checkpoint, history, loss curves and continuations under ``outputs/``. A command-line or data
mistake is one line on stderr and exit 2, before any write (``MELODY_DEBUG=1``: traceback)."""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from .config import OUTPUT_DIR, SPLIT_BY, get_device
from .data import BUILTIN, Prepared, prepare
from .notes import BadInputError, file_stem

PROG = "python -m melody_utils"


class UsageError(Exception):
    """A command-line mistake: one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        raise UsageError(f"{message} (see --help)")


def _whole(low: int, high: int | None = None):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low or high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must lie in {low}..{high or 'inf'}, got {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    from .train import PROFILES

    parser = _Parser(prog=PROG, description="melody-lstm main job")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    run = sub.add_parser("run", help="train on a corpus and write outputs/ (the default command)")
    add, flag = run.add_argument, {"action": "store_true"}
    add("--source", default="bach", help="'bach' (default), 'essen' or a folder of MIDI files")
    add("--profile", default="default", choices=sorted(PROFILES), help="training recipe")
    budget = run.add_mutually_exclusive_group().add_argument
    budget("--steps", type=_whole(1), help="override the profile's optimizer steps")
    budget("--epochs", type=_whole(1), help="N passes over the training windows (sets --steps)")
    add("--limit", type=_whole(1), help="use only the first N files")
    add("--split-seed", type=_whole(0, 2**32 - 1), default=0)
    add(
        "--split-by",
        choices=("piece", "tune"),
        default=SPLIT_BY,
        help=f"keep pieces that share a tune in one split with 'tune' (default {SPLIT_BY!r})",
    )
    add("--out", type=Path, default=OUTPUT_DIR, help="output folder")
    add("--resume", **flag, help="continue an interrupted run from OUT/train/last.pt")
    add("--device", default=None, help="force cpu, cuda, cuda:N or mps")
    add("--no-music", **flag, help="skip the generated pieces")
    add("--no-cache", **flag, help="parse the corpus, cache nothing")
    publish = "copy the checkpoint to melody_utils/pretrained/ (maintainers; Bach only)"
    add("--publish", **flag, help=publish)
    return parser


def _check(args: argparse.Namespace) -> torch.device:
    """Every check that can fail before any work or write; returns the device."""
    source = str(args.source).strip()
    if not source:
        raise UsageError("--source is empty; pass 'bach', 'essen' or a folder of MIDI files")
    if args.publish and source != "bach":
        raise UsageError(
            "--publish replaces the committed Bach checkpoint: use it with --source bach only"
        )
    if source not in BUILTIN and Path(source).expanduser().is_file():
        raise UsageError(f"--source {source!r} is a file; pass the folder that holds it")
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file, not a folder")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise UsageError(f"--out {str(out)!r} is not writable")
    if args.resume and not (out / "train" / "last.pt").is_file():
        raise UsageError(f"--resume: no interrupted run in {out.name}/train/ (last.pt is missing)")
    try:
        return get_device(args.device)
    except (ValueError, RuntimeError) as exc:
        raise UsageError(f"--device: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    """The command line: returns the exit status. ``run`` is the default command."""
    from .train import CheckpointError

    errors = (BadInputError, FileNotFoundError, NotADirectoryError, CheckpointError, ValueError)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "-h", "--help"):
        argv = ["run", *argv]
    try:
        args = build_parser().parse_args(argv)
        run_main(args, _check(args))
    except (UsageError, *errors) as exc:
        if not isinstance(exc, UsageError) and os.environ.get("MELODY_DEBUG"):
            raise
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"\n{PROG}: interrupted; `--resume` continues from the last evaluation", file=sys.stderr
        )
        return 130
    return 0


def run_main(args: argparse.Namespace, device: torch.device) -> None:
    """The main job (module docstring)."""
    from .baselines import fit_baselines
    from .model import build_model
    from .train import (
        PRETRAINED,
        PROFILES,
        checkpoint_files,
        evaluate,
        plot_history,
        results_table,
        save_checkpoint,
        train,
    )

    t_start, config = time.perf_counter(), PROFILES[args.profile]
    config = config if args.steps is None else replace(config, steps=args.steps)
    head = f"source={args.source!r}, profile={args.profile!r}, device={device.type}"
    print(f"== melody-lstm main job: {head}")
    prep = prepare(
        args.source,
        args.split_seed,
        args.limit,
        use_cache=not args.no_cache,
        split_by=args.split_by,
    )
    corpus = prep.corpus
    print(corpus.report(max_rows=10))
    print(f"loaded in {corpus.load_seconds:.1f}s ({'cache' if corpus.from_cache else 'read'})")
    print(prep.summary().to_string())
    print(prep.normalizer)
    tr, val, test = (prep.windows[k] for k in ("train", "val", "test"))
    if args.epochs is not None:
        config = replace(config, steps=math.ceil(args.epochs * len(tr) / config.batch_size))
        print(f"--epochs {args.epochs}: {config.steps} steps of {config.batch_size} windows")
    out: Path = args.out
    model = build_model(seed=config.seed)
    meta = {**prep.data_metadata(), "profile": args.profile}
    kw = {"resume": args.resume, "device": device, "normalizer": prep.normalizer, "metadata": meta}
    result = train(model, tr, val, config, out_dir=out / "train", **kw)
    line = f"best step {result.best_step} of {config.steps}, "
    line += f"validation loss {result.best_val_loss:.4f}, {result.train_seconds:.0f} s of training"
    print(line + (" (stopped early)" if result.stopped_early else ""))
    metrics = evaluate(model, test, device=device)
    baselines = fit_baselines(prep.splits["train"], prep.normalizer).evaluate(test)
    table = results_table(metrics, baselines)
    print("\nTest split (pitch NLL in nats; MSE in normalized units):")
    print(table.round(4).to_string())
    machine = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        machine["gpu"] = torch.cuda.get_device_name()
    load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    meta.update(train_config=config.to_dict(), best_step=result.best_step, device=result.device)
    meta.update(train_seconds=result.train_seconds, machine={**machine, "load_average_1min": load})
    meta.update(test_metrics=metrics, history=result.history.to_dict(orient="records"))
    meta["baselines"] = {
        k: {c: None if v != v else float(v) for c, v in r.items()} for k, r in baselines.iterrows()
    }
    meta["split_summary"] = prep.summary().to_dict(orient="index")
    name = "melody_lstm_" + (prep.source if prep.source in BUILTIN else file_stem(prep.source))
    stem = save_checkpoint(out / "checkpoints" / name, model, prep.normalizer, meta)
    result.history.to_csv(out / "history.csv", index=False)
    table.to_csv(out / "test_metrics.csv")
    fig = plot_history(result.history, f"MelodyLSTM on {prep.source} ({args.profile} profile)")
    fig.savefig(out / "loss_curves.png", dpi=110)
    files = "(+ .json), history.csv, test_metrics.csv, loss_curves.png"
    print(f"\nwrote {out.name}/checkpoints/{stem.name}.safetensors {files}")
    if args.publish:
        for src, dst in zip(checkpoint_files(stem), checkpoint_files(PRETRAINED), strict=True):
            shutil.copyfile(src, dst)
        print(f"published to melody_utils/pretrained/{PRETRAINED.name}")
    if not args.no_music:
        write_music(model, prep, out / "music")
    print(f"\ndone in {time.perf_counter() - t_start:.0f}s")


def write_music(
    model, prep: Prepared, folder: Path, n_pieces: int = 3, n_notes: int = 128, seed: int = 0
) -> list[Path]:
    """Continue a few held-out pieces' openings at temperature 1: write a ``.mid``, ``.wav`` and
    piano-roll ``.png`` of each, print its measures beside real pieces' and its copy check."""
    import matplotlib.pyplot as plt

    from .audio import audio_backend, write_wav
    from .generate import generate, primers_from_pieces
    from .metrics import CopyIndex, copy_reference, reference_stats
    from .plots import plot_piano_roll

    primers = list(primers_from_pieces(prep.splits["test"]).items())[:n_pieces]
    how = f"({n_notes} notes, temperature 1, audio: {audio_backend()})"
    print(f"\nContinuing {len(primers)} held-out pieces from their opening notes {how}")
    index = CopyIndex(prep.splits["train"])
    try:
        reference = reference_stats(prep.splits["test"], n_notes, index)
        runs = copy_reference(index, prep.splits["test"], n_notes)
    except ValueError as exc:  # no held-out piece that long
        reference, runs = None, None
        print(f"  no real reference: {exc}")
    written = []
    for i, (piece_id, primer) in enumerate(primers):
        res = generate(model, prep.normalizer, primer, n_notes, seed=seed + i, copy_index=index)
        stem = folder / (file_stem(piece_id) + "_continued")
        written += res.write_midi(folder, stem.name)[:1]
        write_wav(res.notes[0], stem.with_suffix(".wav"))
        fig, ax = plt.subplots(figsize=(12, 4))
        first = len(primer) - res.split_at + 1
        title = f"{piece_id}: its notes {first}-{len(primer)} and the continuation"
        plot_piano_roll(res.notes[0], ax=ax, split_at=res.split_at, title=title)
        fig.savefig(stem.with_suffix(".png"), dpi=100)
        plt.close(fig)
        print(f"  {stem.name}_1.mid:" + "".join(f"\n  ({m})" for m in res.messages))
        print(res.stats_table(reference).to_string())
        match = res.copies[0]
        if runs is not None and match.length:
            at = f"{match.length} notes (at {match.piece_id}, note {match.note_index})"
            msg = f"  longest run shared with the training set: {at}; "
            msg += f"{runs.share_at_least(match.length):.0%} of the real held-out windows of "
            print(msg + f"{n_notes} notes share a run at least as long")
    return written


if __name__ == "__main__":
    sys.exit(main())
