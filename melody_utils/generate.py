"""Generating music (notebook 05): autoregressive over the model's 32-note window, the pitch
drawn (temperature, top-k, top-p), the times regressed (or drawn), clamped and fed back;
variations run as one batch, each with its own generator from ``SeedSequence(seed)``."""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .config import CHORD_SNAP, CONT_FEATURES, SEQ_LEN
from .data import Normalizer, Piece
from .metrics import CopyIndex, measures, stats_table
from .model import MelodyLSTM
from .notes import PIANO, PROGRAM, midi_bytes, write_midi

#: Clamps on every generated note (seconds).
MAX_STEP, MIN_DURATION, MAX_DURATION = 4.0, 0.05, 4.0
#: Primer velocities more than this many training sd from the mean are replaced.
MAX_VELOCITY_Z = 4.0


@dataclass
class GenerationResult:
    """What :func:`generate` returns: ``notes`` per variation (context rows ``0 .. split_at-1``,
    then the continuation), their ``stats`` (measures), ``messages`` (changes to the primer) and
    ``copies`` (with a copy index: each continuation's longest run in the training set)."""

    notes: list[pd.DataFrame]
    stats: list[dict[str, float]]
    split_at: int
    seed: int
    settings: dict = field(default_factory=dict)
    seconds: float = math.nan
    device: str = "cpu"
    messages: list[str] = field(default_factory=list)
    copies: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.notes)

    @property
    def n_variations(self) -> int:
        return len(self.notes)

    def continuation(self, i: int = 0) -> pd.DataFrame:
        """The generated notes of variation ``i`` only."""
        return self.notes[i].iloc[self.split_at :]

    def stats_table(self, reference: dict | None = None) -> pd.DataFrame:
        """The measures of every variation beside ``reference`` (from ``reference_stats``)."""
        return stats_table(self.stats, reference)

    def midi_bytes(self, i: int = 0) -> bytes:
        """Variation ``i`` as a standard MIDI file."""
        return midi_bytes(self.notes[i])

    def write_midi(self, folder: str | Path, stem: str = "variation") -> list[Path]:
        """Write ``<stem>_1.mid`` ... into ``folder``; return the paths."""
        folder = Path(folder)
        return [write_midi(t, folder / f"{stem}_{i + 1}.mid") for i, t in enumerate(self.notes)]


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None):
    """Logits outside the top-k and the nucleus (the fewest most likely tokens holding ``top_p``
    of the mass, Holtzman et al. 2020) set to ``-inf``; the most likely always survives."""
    out = logits
    if top_k is not None and top_k < logits.shape[-1]:
        out = out.masked_fill(out < torch.topk(out, top_k, dim=-1).values[..., -1:], float("-inf"))
    if top_p is not None and top_p < 1.0:
        ranked, order = torch.sort(out, dim=-1, descending=True)
        probs = ranked.softmax(dim=-1)
        drop = probs.cumsum(dim=-1) - probs >= top_p  # the mass ranked above reaches top_p
        drop[..., 0] = False
        out = out.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), float("-inf"))
    return out


def sampling_probs(logits: torch.Tensor, temperature: float, top_k=None, top_p=None):
    """The distribution a token is drawn from, ``(B, vocab)``: logits / temperature, tail cut
    (:func:`filter_logits`), softmax. ``T = 0`` puts all the mass on the first largest logit;
    a temperature too small for the dtype takes that limit too (ties share it)."""
    if temperature == 0:
        return torch.zeros_like(logits).scatter_(-1, logits.argmax(dim=-1, keepdim=True), 1.0)
    shifted = logits - logits.max(dim=-1, keepdim=True).values
    if temperature < torch.finfo(logits.dtype).tiny:
        scaled = torch.where(shifted == 0, 0.0, float("-inf")).to(logits.dtype)
    else:
        scaled = shifted / temperature
    return filter_logits(scaled, top_k, top_p).softmax(dim=-1)


def draw(
    logits: torch.Tensor, temperature: float, gens: list[torch.Generator], top_k=None, top_p=None
):
    """One class per row of ``logits``, each from its own generator (one uniform draw)."""
    dtype = torch.float32 if logits.device.type == "mps" else torch.float64  # exact CDF but on MPS
    cdf = sampling_probs(logits.to(dtype), temperature, top_k, top_p).cumsum(dim=-1)
    u = torch.cat([torch.rand(1, generator=g, device=logits.device, dtype=dtype) for g in gens])
    index = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1), right=True).squeeze(1)
    return index.clamp_(max=logits.shape[-1] - 1)


def _check_args(args: dict) -> None:
    """Raise a ValueError naming the first bad number among :func:`generate`'s ``args``."""
    rules = [  # names, number type, None allowed, lowest, highest, what it must be
        ("n_notes n_variations", Integral, False, 1, math.inf, "a positive integer"),
        ("temperature time_temperature", Real, False, 0, math.inf, "a number >= 0"),
        ("top_k", Integral, True, 1, math.inf, "None (off) or an integer >= 1"),
        ("top_p", Real, True, math.ulp(0.0), 1, "None (off) or in (0, 1]"),  # ulp: > 0
        ("seed", Integral, True, 0, math.inf, "None or a non-negative integer"),
        ("cpu_threads", Integral, True, 1, math.inf, "None or a positive integer"),
    ]
    for names, kind, optional, low, high, must in rules:
        for name in names.split():
            value = args[name]
            number = isinstance(value, kind) and not isinstance(value, bool)
            ok = number and low <= value <= high and (kind is Integral or math.isfinite(value))
            if not (ok or optional and value is None):
                raise ValueError(f"{name} must be {must}, got {value!r}")


def _primer(primer, window: int, normalizer: Normalizer) -> tuple[pd.DataFrame, list[str]]:
    """The primer's last ``window`` notes, checked; too long times, unseen velocities clamped."""
    table = primer.notes if isinstance(primer, Piece) else primer
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"primer must be a note DataFrame or a Piece, got {type(primer).__name__}")
    need = ["pitch", *CONT_FEATURES]
    if missing := [c for c in need if c not in table.columns]:
        raise ValueError(f"primer lacks the columns {missing} (pitch, step, duration, velocity)")
    if len(table) < window:
        raise ValueError(f"primer has {len(table)} notes; the model's window needs {window}")
    try:
        ctx = pd.DataFrame(table.iloc[-window:][need].to_numpy(np.float64), columns=need)
    except (TypeError, ValueError):
        raise ValueError("primer columns must hold numbers") from None
    if not np.isfinite(ctx.to_numpy()).all():
        raise ValueError("primer holds NaN or infinite values")
    if (ctx["pitch"] != ctx["pitch"].round()).any() or not ctx["pitch"].between(0, 127).all():
        raise ValueError("primer pitches must be whole MIDI numbers in 0..127")
    if (ctx["step"] < 0).any() or (ctx["duration"] < 0).any():
        raise ValueError("primer steps and durations must be non-negative")
    vel = ctx["velocity"]
    if not vel.between(1, 127).all():
        raise ValueError(f"primer velocities must be in 1..127, found {vel.min():g}..{vel.max():g}")
    messages = []
    for column, limit in (("step", MAX_STEP), ("duration", MAX_DURATION)):
        if (long := ctx[column] > limit).any():
            msg = f"primer: {int(long.sum())} {column}(s) longer than {limit:g} s (the longest "
            msg += f"{ctx[column].max():.4g} s) shortened to {limit:g} s, the longest generated"
            messages.append(msg)
            ctx.loc[long, column] = limit
    mean = normalizer.mean[2]
    spread = 0.0 if normalizer.degenerate[2] else MAX_VELOCITY_Z * normalizer.std[2]
    if (far := (vel - mean).abs() > spread).any():
        lo, hi = mean - spread, mean + spread  # a score's one velocity when degenerate
        seen = f"{lo:.0f}..{hi:.0f} (mean ± {MAX_VELOCITY_Z:g} sd)" if spread else f"all {mean:g}"
        msg = f"primer: {int(far.sum())} velocities ({vel[far].min():g}..{vel[far].max():g}) lie "
        msg += f"outside what the model was trained on ({seen}); set to {lo:.0f}..{hi:.0f}"
        messages.append(msg)
        ctx["velocity"] = vel.clip(round(lo), round(hi))
    ctx["pitch"] = ctx["pitch"].astype(np.int64)
    return ctx, messages


@torch.no_grad()
def _continue(model, normalizer, ctx, sampling: dict) -> tuple[np.ndarray, np.ndarray]:
    """The loop: ``(pitches (B, n), raw step/duration/velocity (B, n, 3))`` for ``sampling``
    (generate's settings, time_temperature); child ``i`` of ``SeedSequence(seed)`` draws ``i``."""
    param, n_notes, batch = next(model.parameters()), sampling["n_notes"], sampling["n_variations"]
    device, dtype = param.device, param.dtype
    children = np.random.SeedSequence(sampling["seed"]).spawn(batch)
    child_seeds = [int(child.generate_state(1, np.uint64)[0]) >> 1 for child in children]
    gens = [torch.Generator(device=device).manual_seed(c) for c in child_seeds]
    temperature, top_k, top_p = sampling["temperature"], sampling["top_k"], sampling["top_p"]
    pitch = torch.tensor(ctx["pitch"].to_numpy(), device=device).repeat(batch, 1)
    z = normalizer.transform(ctx[list(CONT_FEATURES)].to_numpy())
    cont = torch.as_tensor(z, dtype=dtype, device=device).repeat(batch, 1, 1)
    out_pitch, out_raw = np.empty((batch, n_notes), np.int64), np.empty((batch, n_notes, 3))
    for t in range(n_notes):
        h = model.features(pitch, cont)
        logits, pred = model.next_note(h)
        if not (bool(torch.isfinite(logits).all()) and bool(torch.isfinite(pred).all())):
            raise RuntimeError(f"non-finite model outputs at generated note {t}: weights intact?")
        nxt = draw(logits.float(), temperature, gens, top_k, top_p)
        if model.categorical_time:  # draw the step and duration classes too
            pred = pred.clone()
            values = (model.step_values, model.duration_values)
            for col, (lg, v) in enumerate(zip(model.time_logits(h), values, strict=True)):
                index = draw(lg.float(), sampling["time_temperature"], gens)
                pred[:, col] = v[index].to(pred.dtype)
        raw = normalizer.inverse_transform(pred.float().cpu().numpy())
        step = np.clip(raw[:, 0], 0.0, sampling["max_step"])
        raw[:, 0] = np.where(step < CHORD_SNAP, 0.0, step)
        raw[:, 1] = np.clip(raw[:, 1], sampling["min_duration"], sampling["max_duration"])
        raw[:, 2] = np.clip(np.round(raw[:, 2]), 1, 127)
        out_pitch[:, t], out_raw[:, t] = nxt.cpu().numpy(), raw
        z = torch.as_tensor(normalizer.transform(raw), dtype=dtype, device=device)
        pitch = torch.cat([pitch[:, 1:], nxt.unsqueeze(1)], dim=1)
        cont = torch.cat([cont[:, 1:], z.unsqueeze(1)], dim=1)
    return out_pitch, out_raw


def _assemble(ctx: pd.DataFrame, pitches: np.ndarray, raw: np.ndarray, program: int):
    """The context and a continuation as one note table, timed from 0 by the steps."""
    step = np.r_[0.0, ctx["step"].to_numpy()[1:], raw[:, 0]]
    start, duration = np.cumsum(step), np.r_[ctx["duration"].to_numpy(), raw[:, 1]]
    pitch = np.r_[ctx["pitch"].to_numpy(), pitches]
    velocity = np.clip(np.round(np.r_[ctx["velocity"].to_numpy(), raw[:, 2]]), 1, 127)
    generated = np.arange(len(step)) >= len(ctx)
    names = ["pitch", "start", "end", "step", "duration", "velocity", PROGRAM, "generated"]
    values = [pitch, start, start + duration, step, duration, velocity.astype(np.int64)]
    return pd.DataFrame(dict(zip(names, [*values, program, generated], strict=True)))


def generate(
    model: MelodyLSTM,
    normalizer: Normalizer,
    primer: pd.DataFrame | Piece,
    n_notes: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    n_variations: int = 1,
    seed: int | None = None,
    *,
    max_step: float = MAX_STEP,
    min_duration: float = MIN_DURATION,
    max_duration: float = MAX_DURATION,
    program: int | None = None,
    cpu_threads: int | None = None,
    time_temperature: float = 1.0,
    copy_index: CopyIndex | None = None,
) -> GenerationResult:
    """Continue ``primer`` (a table or Piece; its last 32 notes are the context) with ``n_notes``
    notes, ``n_variations`` times: ``temperature`` 0 takes the most likely pitch, ``top_k`` and
    ``top_p`` cut the tail (None: off), the same ``seed`` gives the same music (None draws one).
    ValueError for a bad argument or primer, RuntimeError for non-finite model outputs."""
    args = dict(locals())  # the arguments: nothing else is defined yet
    _check_args(args)
    if not 0 <= min_duration <= max_duration or not max_step >= 0:
        raise ValueError("clamps need 0 <= min_duration <= max_duration and max_step >= 0")
    if program is None:
        table = getattr(primer, "notes", primer)
        has_program = PROGRAM in getattr(table, "columns", ())
        program = int(table[PROGRAM].mode().iloc[0]) if has_program else PIANO
    if not isinstance(program, int | np.integer) or not 0 <= program <= 127:
        raise ValueError(f"program must be a General MIDI program in 0..127, got {program!r}")
    window = model.config.seq_len or SEQ_LEN
    ctx, messages = _primer(primer, window, normalizer)
    seed = secrets.randbits(31) if seed is None else int(seed)
    names = "n_notes temperature top_k top_p n_variations seed max_step min_duration max_duration"
    settings = {name: args[name] for name in names.split()}
    settings |= {"temperature": float(temperature), "seed": seed, "window": window}
    settings["time_head"] = model.config.time_head
    sampling = dict(settings, time_temperature=float(time_temperature))
    device = next(model.parameters()).device
    was_training, threads = model.training, torch.get_num_threads()
    if cpu_threads is not None and device.type == "cpu":
        torch.set_num_threads(cpu_threads)
    model.eval()
    t0 = time.perf_counter()
    try:
        pitches, raw = _continue(model, normalizer, ctx, sampling)
    finally:
        model.train(was_training)
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - t0
    tables = [_assemble(ctx, pitches[b], raw[b], int(program)) for b in range(n_variations)]
    generated = [t.iloc[window:] for t in tables]
    stats = [measures(notes) for notes in generated]
    copies = [copy_index.longest_match(c) for c in generated] if copy_index is not None else []
    for row, match in zip(stats, copies, strict=False):
        row["copied_run"] = float(match.length)
    result = (tables, stats, window, seed, settings, seconds, str(device), messages, copies)
    return GenerationResult(*result)


def primers_from_pieces(
    pieces: Sequence[Piece], n_notes: int | None = 2 * SEQ_LEN
) -> dict[str, pd.DataFrame]:
    """``{piece id: its first n_notes notes}`` of the pieces long enough to prime the model
    (``None``: whole pieces); 64 puts the context in the first phrases, not the cadence."""
    if n_notes is not None and n_notes < SEQ_LEN:
        raise ValueError(f"n_notes ({n_notes}) must be at least the window, {SEQ_LEN}")
    long_enough = [p for p in pieces if len(p) >= SEQ_LEN]
    return {p.id: p.notes.iloc[:n_notes].reset_index(drop=True) for p in long_enough}
