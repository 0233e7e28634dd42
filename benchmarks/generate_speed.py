"""How fast is generation on this machine? Notes per second, and click-to-audio time.

Measures, for each torch thread count asked for (median of ``--runs`` timed runs after
``--warmup`` untimed ones):

* ``generate``: :func:`melody_utils.generate.generate` of ``--notes`` notes for each
  batch size in ``--variations`` (all variations in one batch): seconds, generated
  notes per second, milliseconds per autoregressive step;
* ``click->audio``: what a click must do before sound can play, for one variation:
  generate + render (:func:`melody_utils.audio.render`) + WAV bytes;
* ``UI click``: the whole :class:`melody_utils.widgets.GenerationUI` button handler
  (also draws the piano roll and builds the HTML), one variation.

It loads the committed checkpoint (``melody_utils.load_checkpoint``) when there is one;
otherwise an untrained MelodyLSTM with a normalizer fitted on a few chorales. The
weights do not change the amount of work, so the speed is the same. Nothing is written
unless ``--csv PATH`` is given.

    python benchmarks/generate_speed.py                  # torch's default threads
    python benchmarks/generate_speed.py --threads 1 2    # compare thread counts
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--notes", type=int, default=128, help="notes generated per variation")
    ap.add_argument(
        "--variations",
        type=int,
        nargs="+",
        default=[1, 16],
        help="batch sizes (variations) to time",
    )
    ap.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=None,
        help="torch intra-op thread counts to time (default: torch's own)",
    )
    ap.add_argument("--runs", type=int, default=5, help="timed runs per measurement")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    ap.add_argument("--device", default="cpu", help="torch device (default cpu)")
    ap.add_argument(
        "--checkpoint", default=None, help="checkpoint path (default: the committed one, if any)"
    )
    ap.add_argument("--no-ui", action="store_true", help="skip the full UI-click timing")
    ap.add_argument("--csv", default=None, help="also write the table to this CSV file")
    args = ap.parse_args(argv)
    if args.notes < 1 or args.runs < 1 or args.warmup < 0 or min(args.variations) < 1:
        ap.error("--notes, --runs and --variations must be positive, --warmup >= 0")
    return args


def load_model(checkpoint: str | None, device: str):
    """``(model, normalizer, primer notes, description)``; untrained when no checkpoint."""
    from melody_utils.data import Normalizer, load_corpus, split_pieces
    from melody_utils.model import MelodyLSTM

    # a few real chorales: the primer (and the normalizer when there is no checkpoint);
    # parsed without the cache so that nothing is written into the repository
    pieces = load_corpus("bach", limit=8, use_cache=False, progress=False)
    splits = split_pieces(pieces, seed=0, fractions=(0.75, 0.125, 0.125))
    primer = max(splits["test"] + splits["val"], key=len)
    try:
        from melody_utils import load_checkpoint

        model, normalizer, _meta = load_checkpoint(checkpoint, device=device)
        what = f"checkpoint {checkpoint or 'committed (melody_utils/pretrained)'}"
    except (ImportError, FileNotFoundError) as exc:
        torch.manual_seed(0)
        model = MelodyLSTM().to(device)
        normalizer = Normalizer.fit(splits["train"])
        what = (
            f"UNTRAINED MelodyLSTM, normalizer fitted on {len(splits['train'])} "
            f"chorales (no checkpoint: {type(exc).__name__}: {exc}); "
            f"speed does not depend on the weights"
        )
    return model.eval(), normalizer, primer, what


def timed(fn: Callable[[int], object], runs: int, warmup: int) -> list[float]:
    for i in range(warmup):
        fn(10_000 + i)
    out = []
    for i in range(runs):
        t0 = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from melody_utils.audio import audio_backend, render, wav_bytes
    from melody_utils.generate import generate

    model, normalizer, primer, what = load_model(args.checkpoint, args.device)
    threads = args.threads or [torch.get_num_threads()]
    print(f"model:   {what}")
    print(
        f"primer:  {primer.id} ({len(primer)} notes); device {args.device}; "
        f"torch {torch.__version__}; audio backend {audio_backend()}"
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} "
        f"logical CPUs; median of {args.runs} runs after {args.warmup} warm-up\n"
    )

    rows = []

    def add(n_threads: int, what: str, batch: int, times: list[float], notes: int) -> None:
        med = statistics.median(times)
        rows.append(
            {
                "threads": n_threads,
                "measurement": what,
                "variations": batch,
                "notes": notes,
                "median_s": med,
                "min_s": min(times),
                "max_s": max(times),
                "notes_per_s": notes * batch / med,
                "ms_per_step": 1000 * med / notes,
            }
        )
        r = rows[-1]
        print(
            f"{n_threads:>7} {what:<13} {batch:>4} {notes:>5} {med:>9.3f} "
            f"{min(times):>7.3f} {max(times):>7.3f} {r['notes_per_s']:>9.0f} "
            f"{r['ms_per_step']:>8.1f}",
            flush=True,
        )

    print(
        f"{'threads':>7} {'measurement':<13} {'var':>4} {'notes':>5} {'median s':>9} "
        f"{'min s':>7} {'max s':>7} {'notes/s':>9} {'ms/step':>8}"
    )
    old = torch.get_num_threads()
    try:
        for n_threads in threads:
            torch.set_num_threads(n_threads)
            for batch in args.variations:
                times = timed(
                    lambda s, b=batch: generate(
                        model, normalizer, primer, args.notes, n_variations=b, seed=s
                    ),
                    args.runs,
                    args.warmup,
                )
                add(n_threads, "generate", batch, times, args.notes)

            def click_to_audio(seed: int) -> bytes:
                result = generate(model, normalizer, primer, args.notes, seed=seed)
                return wav_bytes(render(result.midi[0]))

            add(
                n_threads,
                "click->audio",
                1,
                timed(click_to_audio, args.runs, args.warmup),
                args.notes,
            )
            if not args.no_ui:
                from melody_utils.widgets import GenerationUI

                ui = GenerationUI(
                    model,
                    normalizer,
                    {primer.id: primer.notes},
                    n_notes=args.notes,
                    cpu_threads=None,
                )

                def ui_click(seed: int, ui: GenerationUI = ui) -> None:
                    ui.seed.value = seed
                    ui.generate_button.click()
                    if ui.last_error:
                        raise RuntimeError(ui.last_error)

                add(n_threads, "UI click", 1, timed(ui_click, args.runs, args.warmup), args.notes)
    finally:
        torch.set_num_threads(old)

    if args.csv:
        import pandas as pd

        pd.DataFrame(rows).to_csv(args.csv, index=False)
        print(f"\nwrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
