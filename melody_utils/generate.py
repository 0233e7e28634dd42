"""Generating music with a trained :class:`~melody_utils.model.MelodyLSTM` (notebook 05).

Generation is autoregressive over the model's sliding window of 32 notes::

    window = last 32 notes of the primer (pitch, normalized step/duration/velocity)
    repeat n_notes times:
        pitch_logits, cont_pred = model(window)
        pitch  <- sample(pitch_logits / temperature, top-k, top-p)   (argmax if T = 0)
        raw    <- clamp(normalizer.inverse_transform(cont_pred))     (seconds, velocity)
        window <- window[1:] + [(pitch, normalizer.transform(raw))]

The window is re-run from an empty LSTM state at every step, exactly as in training
(carrying the LSTM state forward instead would let the model see more than 32 notes,
a different model from the one that was trained). All ``n_variations`` continuations
run as one batch. Each variation has its own ``torch.Generator``, seeded from
``seed`` through :class:`numpy.random.SeedSequence`, so the same seed gives the same
music, and variation ``i`` does not depend on how many variations were asked for.

The continuous head predicts a point estimate (no sampling), so step, duration and
velocity follow deterministically from the pitches chosen. Its outputs are clamped to
playable values (``0 <= step <= max_step``, ``min_duration <= duration <=
max_duration``, integer velocity in 1..127; a step under ``chord_snap`` = 10 ms
becomes 0, a chord tone) *before* they are fed back, so the model always reads the
notes that are actually played.
"""

from __future__ import annotations

import math
import numbers
import secrets
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .config import CHORD_SNAP, CONT_FEATURES, SEQ_LEN
from .corpus import Piece
from .data import Normalizer
from .metrics import CopyIndex, degeneration_stats, rhythm_stats, stats_table
from .model import MelodyLSTM
from .notes import PIANO_PROGRAM, check_pitch_range, midi_to_bytes, notes_to_midi

#: Clamps applied to every generated note (seconds).
MAX_STEP = 4.0
MIN_DURATION = 0.05
MAX_DURATION = 4.0
#: Velocities a note may have (MIDI).
VELOCITY_RANGE = (1, 127)


@dataclass
class GenerationResult:
    """What :func:`generate` returns.

    Attributes:
        notes: one note table per variation: the primer's context window (rows
            ``0 .. split_at-1``) followed by the continuation. Columns ``pitch, start,
            end, step, duration, velocity, generated`` (``generated`` is True for the
            continuation). Times start at 0 and follow from the steps:
            ``start[i] = start[i-1] + step[i]``, ``end = start + duration``.
        midi: one ``pretty_midi.PrettyMIDI`` per variation (Acoustic Grand Piano),
            holding the same notes.
        stats: :func:`~melody_utils.metrics.degeneration_stats` of each continuation
            (the generated notes only).
        split_at: the row where the continuation starts (the context length, 32).
        seed: the seed actually used (drawn at random when none was given), so any
            result can be reproduced.
        settings: the sampling settings and clamps used.
        seconds: wall-clock time of the generation loop.
        device: the device the model ran on.
        messages: what was changed about the input (e.g. a primer's over-long steps
            shortened to the clamps); also issued as warnings.
        copies: with a ``copy_index``, the :class:`~melody_utils.metrics.CopyMatch` of
            each continuation: its longest run of pitches that also occurs in the training
            set, and where (the stats carry its length as ``copied_run``).
    """

    notes: list[pd.DataFrame]
    midi: list
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

    def stats_table(self, reference: dict[str, float] | None = None) -> pd.DataFrame:
        """The degeneration measures of every variation, next to ``reference`` if given
        (see :func:`~melody_utils.metrics.reference_stats`)."""
        return stats_table(self.stats, reference)

    def midi_bytes(self, i: int = 0) -> bytes:
        """The standard MIDI file of variation ``i`` as bytes."""
        return midi_to_bytes(self.midi[i])

    def write_midi(self, folder: str | Path, stem: str = "variation") -> list[Path]:
        """Write ``<stem>_1.mid`` ... into ``folder`` (created if needed); return the paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, pm in enumerate(self.midi):
            path = folder / f"{stem}_{i + 1}.mid"
            pm.write(str(path))
            paths.append(path)
        return paths


# --------------------------------------------------------------------------- helpers


def filter_logits(
    logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """Set to ``-inf`` the logits outside the top-k and outside the nucleus (top-p).

    ``top_k`` keeps the ``k`` largest logits per row. ``top_p`` keeps the smallest set
    of most likely tokens whose probability adds up to at least ``top_p`` (nucleus
    sampling, Holtzman et al. 2020); the most likely token is always kept. Apply the
    temperature first: the nucleus is taken on the tempered distribution.
    """
    out = logits
    vocab = logits.shape[-1]
    if top_k is not None and top_k < vocab:
        kth = torch.topk(out, top_k, dim=-1).values[..., -1:]
        out = out.masked_fill(out < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(out, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # mass of the tokens ranked higher
        drop_sorted = before >= top_p
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        out = out.masked_fill(drop, float("-inf"))
    return out


def sampling_probs(
    logits: torch.Tensor,
    temperature: float,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """The distribution the next pitch is drawn from, ``(B, vocab)``, rows summing to 1.

    The order matters and is this: divide the logits by the temperature, then cut the
    tail with :func:`filter_logits` (top-k, then the nucleus of the *tempered*
    distribution), then softmax. The logits are shifted so that their maximum is 0
    before dividing, so any temperature above 0 works, down to the smallest float
    (below the dtype's smallest normal number the limit ``T -> 0`` is used: the argmax,
    ties sharing it). ``T = 0`` is
    exactly greedy: all the mass on the first maximal logit.
    """
    if temperature == 0:
        out = torch.zeros_like(logits)
        return out.scatter_(-1, logits.argmax(dim=-1, keepdim=True), 1.0)
    shifted = logits - logits.max(dim=-1, keepdim=True).values  # <= 0, max exactly 0
    if temperature < torch.finfo(logits.dtype).tiny:  # T would underflow: take the limit
        scaled = torch.where(shifted == 0, 0.0, float("-inf")).to(logits.dtype)
    else:
        scaled = shifted / temperature
    probs = filter_logits(scaled, top_k, top_p).softmax(dim=-1)
    if not bool(torch.isfinite(probs).all()):
        raise RuntimeError(f"sampling probabilities are not finite at temperature {temperature}")
    return probs


def _check_args(
    n_notes: object,
    temperature: object,
    top_k: object,
    top_p: object,
    n_variations: object,
    seed: object,
) -> None:
    def is_int(x: object) -> bool:
        return isinstance(x, numbers.Integral) and not isinstance(x, bool)

    if not is_int(n_notes) or n_notes <= 0:
        raise ValueError(f"n_notes must be a positive integer, got {n_notes!r}")
    if not is_int(n_variations) or n_variations <= 0:
        raise ValueError(f"n_variations must be a positive integer, got {n_variations!r}")
    if (
        not isinstance(temperature, numbers.Real)
        or isinstance(temperature, bool)
        or not math.isfinite(temperature)
        or temperature < 0
    ):
        raise ValueError(
            f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}"
        )
    if top_k is not None and (not is_int(top_k) or top_k < 1):
        raise ValueError(f"top_k must be None (off) or an integer >= 1, got {top_k!r}")
    if top_p is not None and (
        not isinstance(top_p, numbers.Real) or isinstance(top_p, bool) or not 0 < top_p <= 1
    ):
        raise ValueError(f"top_p must be None (off) or a number in (0, 1], got {top_p!r}")
    if seed is not None and (not is_int(seed) or seed < 0):
        raise ValueError(f"seed must be None or a non-negative integer, got {seed!r}")


def _primer_table(
    primer: pd.DataFrame | Piece, window: int, vocab: int, max_step: float, max_duration: float
) -> tuple[pd.DataFrame, list[str]]:
    """The last ``window`` notes of the primer, validated; steps and durations longer than
    the clamps are shortened to them, and each such change is described in the messages."""
    table = primer.notes if isinstance(primer, Piece) else primer
    if not isinstance(table, pd.DataFrame):
        raise ValueError(
            f"primer must be a note table (DataFrame) or a Piece, got {type(primer).__name__}"
        )
    need = ["pitch", *CONT_FEATURES]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise ValueError(
            f"primer lacks the columns {missing} (a note table from "
            f"melody_utils.notes has pitch, start, end, step, duration, velocity)"
        )
    if len(table) < window:
        raise ValueError(
            f"primer has {len(table)} notes; the model needs at least {window} (its context window)"
        )
    ctx = table.iloc[-window:][need].reset_index(drop=True)
    try:
        values = ctx.to_numpy(np.float64)
    except (TypeError, ValueError):
        raise ValueError("primer columns must hold numbers") from None
    if not np.isfinite(values).all():
        raise ValueError("primer holds NaN or infinite values")
    ctx = pd.DataFrame(values, columns=need)
    pitch = ctx["pitch"].to_numpy()
    if (pitch != np.round(pitch)).any():
        raise ValueError("primer pitches must be whole MIDI numbers")
    check_pitch_range(pitch, "primer pitches", n_pitches=vocab)
    ctx["pitch"] = pitch.astype(np.int64)
    if (ctx["step"] < 0).any() or (ctx["duration"] < 0).any():
        raise ValueError("primer steps and durations must be non-negative")
    lo, hi = VELOCITY_RANGE
    vel = ctx["velocity"]
    if ((vel < lo) | (vel > hi)).any():
        raise ValueError(
            f"primer velocities must lie in {lo}..{hi} (MIDI), found {vel.min():g}..{vel.max():g}"
        )
    messages = []
    for column, limit in (("step", max_step), ("duration", max_duration)):
        long = ctx[column] > limit
        if long.any():
            messages.append(
                f"primer: {int(long.sum())} {column}(s) longer than {limit:g} s (the longest "
                f"{ctx[column].max():.4g} s) shortened to {limit:g} s, the longest the "
                f"generator writes"
            )
            ctx.loc[long, column] = limit
    return ctx, messages


def _draw(
    logits: torch.Tensor,
    temperature: float,
    gens: list[torch.Generator],
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """One class per row from ``logits`` at ``temperature`` (argmax at 0), one uniform
    draw per row from that row's generator."""
    if temperature == 0 or not gens:
        return logits.argmax(dim=-1)
    cdf = sampling_probs(logits, temperature).cumsum(dim=-1)
    u = torch.cat([torch.rand(1, generator=g, device=device, dtype=dtype) for g in gens])
    u = (u * cdf[:, -1]).unsqueeze(1)
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=logits.shape[-1] - 1)


def _variation_generators(seed: int, n: int, device: torch.device) -> list[torch.Generator]:
    """One generator per variation; child ``i`` of ``SeedSequence(seed)`` seeds variation i."""
    gens = []
    for child in np.random.SeedSequence(seed).spawn(n):
        g = torch.Generator(device=device)
        g.manual_seed(int(child.generate_state(1, np.uint64)[0]) >> 1)
        gens.append(g)
    return gens


def _clamp(
    raw: np.ndarray, max_step: float, min_duration: float, max_duration: float, chord_snap: float
) -> np.ndarray:
    out = np.empty_like(raw)
    step = np.clip(raw[:, 0], 0.0, max_step)
    out[:, 0] = np.where(step < chord_snap, 0.0, step)
    out[:, 1] = np.clip(raw[:, 1], min_duration, max_duration)
    out[:, 2] = np.clip(np.round(raw[:, 2]), 1, 127)
    return out


def _assemble(ctx: pd.DataFrame, pitches: np.ndarray, raw: np.ndarray) -> pd.DataFrame:
    pitch = np.concatenate([ctx["pitch"].to_numpy(np.int64), pitches.astype(np.int64)])
    step = np.concatenate([ctx["step"].to_numpy(np.float64), raw[:, 0]])
    duration = np.concatenate([ctx["duration"].to_numpy(np.float64), raw[:, 1]])
    velocity = np.concatenate([ctx["velocity"].to_numpy(np.float64), raw[:, 2]])
    step[0] = 0.0  # the context starts at time 0
    start = np.cumsum(step)
    generated = np.arange(len(pitch)) >= len(ctx)
    return pd.DataFrame(
        {
            "pitch": pitch,
            "start": start,
            "end": start + duration,
            "step": step,
            "duration": duration,
            "velocity": np.clip(np.round(velocity), 1, 127).astype(np.int64),
            "generated": generated,
        }
    )


# --------------------------------------------------------------------------- generate


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
    chord_snap: float = CHORD_SNAP,
    program: int = PIANO_PROGRAM,
    cpu_threads: int | None = None,
    time_temperature: float = 1.0,
    copy_index: CopyIndex | None = None,
) -> GenerationResult:
    """Continue a primer with ``n_notes`` generated notes, ``n_variations`` times.

    Args:
        model: the trained model; it is run in eval mode on its own device, under
            ``torch.no_grad()``, and its train/eval mode is restored afterwards.
        normalizer: the :class:`~melody_utils.data.Normalizer` stored with the model.
        primer: a note table or a :class:`~melody_utils.data.Piece`; its last 32 notes
            (the model's window) are the context.
        n_notes: notes to generate per variation (> 0).
        temperature: divides the pitch logits; 0 means greedy (always the most likely
            pitch), 1 samples the model's distribution, above 1 flattens it.
        top_k: sample only among the ``k`` most likely pitches (None: off).
        top_p: nucleus sampling: only the most likely pitches whose probability adds
            up to ``top_p`` (None or 1: off).
        n_variations: continuations sampled in one batch.
        seed: same seed, same music; None draws one (``result.seed`` records it).
        max_step, min_duration, max_duration: clamps in seconds (see module docstring).
        chord_snap: a generated step shorter than this many seconds becomes exactly 0
            (a chord tone, as in the data); 0 turns snapping off.
        program: General MIDI program of the MIDI output (0: Acoustic Grand Piano).
        copy_index: a :class:`~melody_utils.metrics.CopyIndex` of the training pieces:
            each continuation's longest run shared with the training set is then reported
            (``result.copies``, and ``copied_run`` in the stats).
        time_temperature: for a model with a categorical time head (notebook 06), the
            temperature of its step and duration classes (0: the most likely class;
            ignored by the card's regression head).
        cpu_threads: when set and the model is on the CPU, torch's intra-op thread count
            for the duration of the call (restored afterwards). 1 is usually fastest for
            this small model, whose per-step matrices are too small to split, and avoids
            a large slowdown when other processes share the cores. None leaves torch's
            setting alone.

    Returns:
        A :class:`GenerationResult`.

    Raises:
        ValueError: a bad argument (temperature < 0, top_p outside (0, 1], top_k < 1,
            n_notes or n_variations <= 0, a primer shorter than the window, ...).
        RuntimeError: the model produced NaN or infinite outputs.
    """
    _check_args(n_notes, temperature, top_k, top_p, n_variations, seed)
    if cpu_threads is not None and (not isinstance(cpu_threads, int) or cpu_threads < 1):
        raise ValueError(f"cpu_threads must be None or a positive integer, got {cpu_threads!r}")
    if not (0 <= min_duration <= max_duration and max_step >= 0 and chord_snap >= 0):
        raise ValueError(
            "clamps need 0 <= min_duration <= max_duration, max_step >= 0 and chord_snap >= 0"
        )
    if (
        not isinstance(time_temperature, numbers.Real)
        or isinstance(time_temperature, bool)
        or not math.isfinite(time_temperature)
        or time_temperature < 0
    ):
        raise ValueError(f"time_temperature must be a finite number >= 0, got {time_temperature!r}")
    categorical = getattr(model, "categorical_time", False)
    window = model.config.seq_len or SEQ_LEN
    vocab = model.config.vocab_size
    ctx, messages = _primer_table(primer, window, vocab, max_step, max_duration)
    for message in messages:
        warnings.warn(message, UserWarning, stacklevel=2)
    if seed is None:
        seed = secrets.randbits(31)
    param = next(model.parameters())
    device, dtype = param.device, param.dtype
    # sampling arithmetic in float64 (an exact nucleus and CDF), except on Apple's MPS,
    # which has no float64
    sdtype = torch.float32 if device.type == "mps" else torch.float64
    greedy = temperature == 0
    k = None if top_k is None or top_k >= vocab else int(top_k)
    p = None if top_p is None or top_p >= 1 else float(top_p)

    pitch_win = torch.tensor(ctx["pitch"].to_numpy(np.int64), device=device)
    pitch_win = pitch_win.unsqueeze(0).repeat(n_variations, 1)  # (B, W)
    cont0 = normalizer.transform(ctx[list(CONT_FEATURES)].to_numpy(np.float64))
    cont_win = torch.as_tensor(cont0, dtype=dtype, device=device)
    cont_win = cont_win.unsqueeze(0).repeat(n_variations, 1, 1)  # (B, W, 3)
    gens = [] if greedy and not categorical else _variation_generators(seed, n_variations, device)
    out_pitch = np.empty((n_variations, n_notes), dtype=np.int64)
    out_raw = np.empty((n_variations, n_notes, 3), dtype=np.float64)

    was_training = model.training
    old_threads = torch.get_num_threads()
    if cpu_threads is not None and device.type == "cpu":
        torch.set_num_threads(cpu_threads)
    model.eval()
    t0 = time.perf_counter()
    try:
        with torch.no_grad():
            for t in range(n_notes):
                if categorical:
                    h = model.features(pitch_win, cont_win)
                    logits, cont = model.pitch_head(h), model.cont_prediction(h)
                else:
                    logits, cont = model(pitch_win, cont_win, check=False)
                logits = logits.float()
                if not (bool(torch.isfinite(logits).all()) and bool(torch.isfinite(cont).all())):
                    raise RuntimeError(
                        f"the model produced NaN or infinite outputs at "
                        f"generated note {t}; are its weights intact?"
                    )
                if greedy:
                    nxt = logits.argmax(dim=-1)
                else:
                    cdf = sampling_probs(logits.to(sdtype), temperature, k, p).cumsum(dim=-1)
                    u = torch.cat(
                        [torch.rand(1, generator=g, device=device, dtype=sdtype) for g in gens]
                    )  # one draw per variation
                    u = (u * cdf[:, -1]).unsqueeze(1)  # stay inside the total mass
                    nxt = torch.searchsorted(cdf, u, right=True).squeeze(1)
                    nxt = nxt.clamp_(max=vocab - 1)
                if categorical:  # draw the step and duration classes too
                    cont = cont.clone()
                    for col, (time_logits, values) in enumerate(
                        zip(
                            model.time_logits(h),
                            (model.step_values, model.duration_values),
                            strict=True,
                        )
                    ):
                        cls = _draw(
                            time_logits.float().to(sdtype), time_temperature, gens, device, sdtype
                        )
                        cont[:, col] = values[cls].to(cont.dtype)
                nxt_np = nxt.cpu().numpy()
                cont_np = cont.float().cpu().numpy().astype(np.float64)
                with np.errstate(over="ignore", invalid="ignore"):
                    raw = _clamp(
                        normalizer.inverse_transform(cont_np),
                        max_step,
                        min_duration,
                        max_duration,
                        chord_snap,
                    )
                out_pitch[:, t] = nxt_np
                out_raw[:, t] = raw
                z = torch.as_tensor(normalizer.transform(raw), dtype=dtype, device=device)
                pitch_win = torch.cat([pitch_win[:, 1:], nxt.unsqueeze(1)], dim=1)
                cont_win = torch.cat([cont_win[:, 1:], z.unsqueeze(1)], dim=1)
    finally:
        model.train(was_training)
        if torch.get_num_threads() != old_threads:
            torch.set_num_threads(old_threads)
    seconds = time.perf_counter() - t0

    tables = [_assemble(ctx, out_pitch[b], out_raw[b]) for b in range(n_variations)]
    midis = [notes_to_midi(tab, program=program) for tab in tables]
    stats = []
    copies = []
    for tab in tables:
        cont = tab.iloc[window:]
        row = {**degeneration_stats(cont), **rhythm_stats(cont)}
        if copy_index is not None:
            copies.append(copy_index.longest_match(cont))
            row["copied_run"] = float(copies[-1].length)
        stats.append(row)
    settings = {
        "n_notes": n_notes,
        "temperature": float(temperature),
        "top_k": top_k,
        "top_p": top_p,
        "n_variations": n_variations,
        "seed": seed,
        "max_step": max_step,
        "min_duration": min_duration,
        "max_duration": max_duration,
        "chord_snap": chord_snap,
        "window": window,
        "time_head": model.config.time_head,
        "time_temperature": time_temperature if categorical else None,
    }
    return GenerationResult(
        tables, midis, stats, window, seed, settings, seconds, str(device), messages, copies
    )


def primers_from_pieces(
    pieces: Sequence[Piece], min_notes: int = SEQ_LEN, n_notes: int | None = 2 * SEQ_LEN
) -> dict[str, pd.DataFrame]:
    """``{piece id: note table}`` of the pieces long enough to prime the model.

    Each primer is the piece's opening ``n_notes`` notes (``None``: the whole piece).
    Generation continues from a primer's last 32 notes, so the default of 64 puts the
    context in the middle of the chorale's first phrases rather than after its final
    cadence.
    """
    if n_notes is not None and n_notes < min_notes:
        raise ValueError(f"n_notes ({n_notes}) must be at least min_notes ({min_notes})")
    return {
        p.id: p.notes.iloc[:n_notes].reset_index(drop=True)
        for p in pieces
        if len(p.notes) >= min_notes
    }
