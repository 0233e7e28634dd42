"""Training throughput: the bare model step vs the real training loop.

(a) bare: forward + backward + AdamW step of MelodyLSTM on random tensors already on
    the device, nothing else;
(b) loop: ``melody_utils.train.train`` on the real Bach windows (index-select batches,
    both losses, clipping, LR schedule, metrics), its second epoch timed (the first is
    warm-up), validation excluded.

Prints windows/s for each and the ratio (b)/(a) (target >= 0.9). CPU always; CUDA too
when present, where it also compares fp32 and bf16 at batch 256 and 1024.

    python benchmarks/train_throughput.py [--steps 20] [--batch 256]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from melody_utils.data import make_windows
from melody_utils.model import MelodyLSTM
from melody_utils.pipeline import prepare
from melody_utils.train import TrainConfig, _autocast, train


def bare(device: torch.device, batch: int, steps: int, precision: str) -> float:
    torch.manual_seed(0)
    model = MelodyLSTM().to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator(device="cpu").manual_seed(0)
    p = torch.randint(0, 128, (batch, 32), generator=g).to(device)
    c = torch.randn(batch, 32, 3, generator=g).to(device)
    tp = torch.randint(0, 128, (batch,), generator=g).to(device)
    tc = torch.randn(batch, 3, generator=g).to(device)

    def step():
        with _autocast(device, precision):
            logits, cont = model(p, c, check=False)
        loss = torch.nn.functional.cross_entropy(logits.float(), tp) + torch.nn.functional.mse_loss(
            cont.float(), tc
        )
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
    val = make_windows(prep.splits["val"][:1], prep.normalizer)
    cfg = TrainConfig(
        epochs=2,
        batch_size=batch,
        max_steps_per_epoch=steps,
        warmup_steps=1,
        patience=99,
        precision=precision,
    )
    res = train(model, prep.windows["train"], val, cfg, device=device, progress=False)
    return float(res.history["train_windows_per_s"].iloc[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    prep = prepare("bach", progress=False)
    print(
        f"machine: {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}"
    )
    rows = []
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for dev in devices:
        configs = [(args.batch, "fp32")]
        if dev.type == "cuda":
            print(f"GPU: {torch.cuda.get_device_name()}")
            configs = [(b, p) for b in (256, 1024) for p in ("fp32", "bf16")]
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


if __name__ == "__main__":
    main()
