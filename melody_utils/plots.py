"""Plots shared by the notebooks and the main job (introduced in notebook 01)."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle

from .notes import check_pitch_range

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def note_name(pitch: int) -> str:
    """MIDI pitch -> scientific name, e.g. 60 -> ``"C4"``, 69 -> ``"A4"``."""
    check_pitch_range(int(pitch), "pitch")
    return f"{NOTE_NAMES[int(pitch) % 12]}{int(pitch) // 12 - 1}"


#: Names of the four parts of a chorale, top staff first (the ``part`` column's order).
CHORALE_VOICES = ("soprano", "alto", "tenor", "bass")


def plot_piano_roll(
    notes: pd.DataFrame,
    ax: plt.Axes | None = None,
    split_at: int | None = None,
    title: str | None = None,
    colors: tuple[str, str] = ("tab:blue", "tab:orange"),
    labels: tuple[str, str] = ("primer", "continuation"),
    color_by: str | None = None,
    part_names: tuple[str, ...] | None = None,
) -> plt.Axes:
    """Draw a note table as a piano roll (time in seconds across, pitch up).

    ``split_at`` colours notes from that row on in the second colour (e.g. a generated
    continuation after its primer). ``color_by="part"`` colours each note by the part
    (voice) it came from instead (the table's ``part`` column; ``part_names`` label the
    legend, by default soprano/alto/tenor/bass for four parts): it shows how the model's
    single stream of notes interleaves the voices. Velocity sets the opacity.
    """
    if not {"pitch", "start", "end"} <= set(notes.columns):
        raise ValueError("notes need the columns pitch, start and end")
    if color_by not in (None, "part"):
        raise ValueError(f"color_by must be None or 'part', got {color_by!r}")
    if color_by == "part" and "part" not in notes.columns:
        raise ValueError("color_by='part' needs a 'part' column (scores and MIDI tracks have it)")
    if ax is None:
        _, ax = plt.subplots(figsize=(12, 4))
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Patch

    vel = notes["velocity"] if "velocity" in notes else pd.Series(100, index=notes.index)
    if color_by == "part":
        parts = notes["part"].to_numpy(np.int64)
        present = sorted(set(parts.tolist()))
        names = part_names or (CHORALE_VOICES if len(present) == 4 else None)
        palette = plt.get_cmap("tab10")
        legend = [
            Patch(
                color=palette(k % 10), label=names[k] if names and k < len(names) else f"part {k}"
            )
            for k in present
        ]
        base = [palette(int(k) % 10) for k in parts]
    else:
        base = [colors[split_at is not None and i >= split_at] for i in range(len(notes))]
        legend = (
            [Patch(color=c, label=lab) for c, lab in zip(colors, labels, strict=True)]
            if split_at is not None
            else []
        )
    rects, face = [], []
    for c, p, s, e, v in zip(base, notes["pitch"], notes["start"], notes["end"], vel, strict=True):
        rects.append(Rectangle((s, p - 0.4), e - s, 0.8))
        face.append(matplotlib.colors.to_rgba(c, 0.35 + 0.65 * float(v) / 127))
    # one collection instead of one artist per note: fast for long generations
    ax.add_collection(PatchCollection(rects, facecolors=face, linewidths=0))
    if len(notes):
        lo, hi = int(notes["pitch"].min()), int(notes["pitch"].max())
        ax.set_xlim(float(notes["start"].min()), float(notes["end"].max()))
        ax.set_ylim(lo - 1.5, hi + 1.5)
        ticks = [p for p in range(lo, hi + 1) if p % 12 in (0, 7)] or [lo]
        ax.set_yticks(ticks, [note_name(p) for p in ticks])
    if legend:
        ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    if split_at is not None and 0 < split_at < len(notes):
        ax.axvline(float(notes["start"].iloc[split_at]), color="grey", ls="--", lw=1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("pitch")
    if title:
        ax.set_title(title)
    return ax


def _draw_notes(ax: plt.Axes, notes: pd.DataFrame, color: str, alpha: float = 0.9) -> None:
    for p, s, e in zip(notes["pitch"], notes["start"], notes["end"], strict=True):
        ax.add_patch(Rectangle((s, p - 0.4), e - s, 0.8, color=color, alpha=alpha, linewidth=0))


def plot_window(
    notes: pd.DataFrame,
    start: int = 0,
    seq_len: int = 32,
    context: int = 0,
    axes: tuple[plt.Axes, plt.Axes] | None = None,
    colors: tuple[str, str, str] = ("tab:blue", "tab:red", "lightgrey"),
) -> tuple[plt.Axes, plt.Axes]:
    """Draw one training window of a note table: its ``seq_len`` inputs and its target.

    Introduced in notebook 01. Window ``start`` holds rows ``start .. start+seq_len-1``
    (the inputs, first colour) and its target is row ``start+seq_len`` (second colour),
    exactly as :func:`melody_utils.data.make_windows` cuts them; ``context`` more rows
    after the target are drawn in the third colour to show what the model does not see.

    Two views: the top axes is a piano roll in seconds (chord tones stack up), the
    bottom one the same notes as the sequence the model reads, one note per index.

    Returns:
        ``(roll_ax, sequence_ax)``.

    Raises:
        ValueError: missing columns, or the window and its target do not fit in ``notes``.
    """
    if not {"pitch", "start", "end"} <= set(notes.columns):
        raise ValueError("notes need the columns pitch, start and end")
    if seq_len < 1 or start < 0 or context < 0:
        raise ValueError("seq_len must be positive, start and context non-negative")
    target = start + seq_len
    if target >= len(notes):
        raise ValueError(
            f"window {start}..{target - 1} plus its target (row {target}) "
            f"needs {target + 1} notes, the table has {len(notes)}"
        )
    stop = min(target + 1 + context, len(notes))
    inputs = notes.iloc[start:target]
    tgt = notes.iloc[target : target + 1]
    after = notes.iloc[target + 1 : stop]
    if axes is None:
        _, axes = plt.subplots(2, 1, figsize=(12, 6.5), constrained_layout=True)
    roll_ax, seq_ax = axes
    shown = notes.iloc[start:stop]
    lo, hi = int(shown["pitch"].min()), int(shown["pitch"].max())
    ticks = [p for p in range(lo, hi + 1) if p % 12 in (0, 4, 7)] or [lo]
    tgt_pitch = int(tgt["pitch"].iloc[0])
    input_label = f"{seq_len} input notes (rows {start}..{target - 1})"
    target_label = f"target: row {target}, {note_name(tgt_pitch)}"

    _draw_notes(roll_ax, after, colors[2])
    _draw_notes(roll_ax, inputs, colors[0])
    _draw_notes(roll_ax, tgt, colors[1], alpha=1.0)
    roll_ax.set_xlim(float(shown["start"].min()), float(shown["end"].max()))
    roll_ax.set_ylim(lo - 1.5, hi + 1.5)
    roll_ax.set_yticks(ticks, [note_name(p) for p in ticks])
    roll_ax.set_xlabel("time (s)")
    roll_ax.set_ylabel("pitch")
    roll_ax.set_title("piano roll (time in seconds)")

    idx = range(start, stop)
    seq_ax.axvspan(start - 0.5, target - 0.5, color=colors[0], alpha=0.08)
    seq_ax.scatter(
        list(idx)[:seq_len], inputs["pitch"], color=colors[0], marker="s", s=40, label=input_label
    )
    seq_ax.scatter(
        [target], [tgt_pitch], color=colors[1], marker="*", s=260, zorder=3, label=target_label
    )
    if len(after):
        seq_ax.scatter(
            list(idx)[seq_len + 1 :],
            after["pitch"],
            color=colors[2],
            marker="s",
            s=40,
            label="later notes (not in this example)",
        )
    seq_ax.set_xlim(start - 1, stop)
    seq_ax.set_ylim(lo - 1.5, hi + 1.5)
    seq_ax.set_yticks(ticks, [note_name(p) for p in ticks])
    seq_ax.set_xlabel("row of the note table (the order the model reads)")
    seq_ax.set_ylabel("pitch")
    seq_ax.set_title("the same notes as a sequence")
    seq_ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    return roll_ax, seq_ax


def plot_feature_distributions(
    notes: pd.DataFrame,
    columns: tuple[str, ...] = ("pitch", "step", "duration", "velocity"),
    axes: np.ndarray | None = None,
    color: str = "tab:blue",
    bins: int = 60,
    suptitle: str | None = None,
    xlabels: dict[str, str] | None = None,
) -> np.ndarray:
    """One seaborn histogram per column of a note table (or of normalized features).

    Introduced in notebook 01 to show why step and duration are log-transformed. Each
    panel's title gives the column's skewness, or says the column is constant; integer
    columns (pitch, velocity) get one bar per value. ``xlabels`` maps a column to its
    axis label (default: the column name).

    Returns:
        The array of axes, one per column.
    """
    import seaborn as sns

    missing = [c for c in columns if c not in notes.columns]
    if missing:
        raise ValueError(f"notes lack the columns {missing}")
    if axes is None:
        _, axes = plt.subplots(
            1, len(columns), figsize=(3.6 * len(columns), 3.2), constrained_layout=True
        )
    axes = np.atleast_1d(axes)
    if len(axes) != len(columns):
        raise ValueError(f"got {len(axes)} axes for {len(columns)} columns")
    for ax, col in zip(axes, columns, strict=True):
        values = notes[col].to_numpy()
        if len(values) and np.ptp(values) == 0:
            ax.bar([values[0]], [len(values)], width=1.0, color=color, alpha=0.75)
            ax.set_xlim(values[0] - 5, values[0] + 5)
            ax.set_title(f"{col}: constant = {values[0]:g}")
        else:
            discrete = bool(np.issubdtype(values.dtype, np.integer))
            sns.histplot(
                x=values, ax=ax, color=color, discrete=discrete, bins="auto" if discrete else bins
            )
            skew = float(pd.Series(values).skew())
            ax.set_title(f"{col} (skew {skew:.1f})")
        ax.set_xlabel((xlabels or {}).get(col, col))
        ax.set_ylabel("notes")
    if suptitle:
        axes[0].figure.suptitle(suptitle)
    return axes
