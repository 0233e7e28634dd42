"""Training throughput and windows memory: the bare model step vs the real training loop.

(a) bare: forward + backward + AdamW step of MelodyLSTM on tensors already on the
    device, with the default objective (loss at every step from position 8), nothing else;
(b) loop: ``melody_utils.train.train`` on the real Bach windows with the default recipe
    (batches gathered from the flat note arrays, random transposition, both losses,
    clipping, the LR schedule), its steps timed without the evaluations.

Prints windows/s for each and the ratio (b)/(a) (target >= 0.9), then the memory the
windows take: bytes per note of the flat arrays against the materialised windows of the
first version, for the Bach training split and projected to MAESTRO v3's ~7 M notes.
CPU always; CUDA too when present, where fp32 and bf16 are compared at batch 128 and 512.

    python benchmarks/train_throughput.py [--steps 30] [--batch 128] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import replace

import torch

from melody_utils.data import prepare
from melody_utils.model import MelodyLSTM
from melody_utils.train import PROFILES, autocast, objective_loss, train

#: Notes in MAESTRO v3 (about 7 million), for the memory projection.
MAESTRO_NOTES = 7_000_000


def bare(device: torch.device, batch: int, steps: int, precision: str) -> float:
    torch.manual_seed(0)
    model = MelodyLSTM().to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    config = replace(PROFILES["default"], precision=precision)
    g = torch.Generator(device="cpu").manual_seed(0)
    pitch = torch.randint(0, 128, (batch, 33), generator=g).to(device)
    cont = torch.randn(batch, 33, 3, generator=g).to(device)

    def step():
        with autocast(device, precision):
            loss, _, _ = objective_loss(model, pitch, cont, config)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t0)


def loop(device: torch.device, batch: int, steps: int, precision: str, prep) -> float:
    torch.manual_seed(0)
    model = MelodyLSTM()
    config = replace(
        PROFILES["default"],
        steps=steps + 3,
        batch_size=batch,
        eval_every=3,  # the first 3 steps warm up; the last row times the rest
        warmup_steps=1,
        train_eval_windows=0,
        precision=precision,
    )
    val = prep.windows["val"]
    tiny_val = type(val)(val.pitch[:40], val.cont[:40], torch.tensor([0, 40]), val.seq_len)
    res = train(model, prep.windows["train"], tiny_val, config, device=device, progress=False)
    timed = res.history.iloc[1:]
    return float((timed["windows_per_s"] * timed["seconds"]).sum() / timed["seconds"].sum())


def memory(prep) -> None:
    w = prep.windows["train"]
    per_note = w.nbytes / w.n_notes
    # the first version stored every window: 32 int64 pitches, 32x3 float32 features,
    # an int64 target pitch and 3 float32 target features
    per_window_old = 32 * 8 + 32 * 3 * 4 + 8 + 3 * 4
    old = per_window_old * len(w)
    print(f"\nwindows memory, Bach training split ({w.n_notes:,} notes, {len(w):,} windows):")
    print(f"  flat arrays (now):        {w.nbytes / 2**20:8.2f} MiB = {per_note:.1f} bytes/note")
    print(f"  materialised (before):    {old / 2**20:8.2f} MiB = {old / w.n_notes:.0f} bytes/note")
    print(f"MAESTRO v3 projection ({MAESTRO_NOTES:,} notes, windows ~ notes):")
    print(f"  flat arrays:              {MAESTRO_NOTES * per_note / 2**30:8.3f} GiB")
    print(f"  materialised:             {MAESTRO_NOTES * per_window_old / 2**30:8.3f} GiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    prep = prepare("bach", progress=False)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {args.threads} torch threads, "
        f"torch {torch.__version__}, load average {os.getloadavg()[0]:.2f}"
    )
    rows = []
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for dev in devices:
        configs = [(args.batch, "fp32")]
        if dev.type == "cuda":
            print(f"GPU: {torch.cuda.get_device_name()}")
            configs = [(b, p) for b in (128, 512) for p in ("fp32", "bf16")]
        for batch, precision in configs:
            a = bare(dev, batch, args.steps, precision)
            b = loop(dev, batch, args.steps, precision, prep)
            rows.append((dev.type, batch, precision, a, b, b / a))
    print(
        f"\n{'device':6} {'batch':>5} {'prec':>5} {'bare win/s':>11} {'loop win/s':>11} "
        f"{'loop/bare':>9}"
    )
    for d, bt, pr, a, b, r in rows:
        print(f"{d:6} {bt:5d} {pr:>5} {a:11.0f} {b:11.0f} {r:9.2f}")
    memory(prep)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
