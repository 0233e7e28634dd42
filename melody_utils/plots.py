"""Plots shared by the notebooks and the main job (introduced in notebook 01)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.patches import Rectangle

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def note_name(pitch: int) -> str:
    """MIDI pitch -> scientific name, e.g. 60 -> ``"C4"``, 69 -> ``"A4"``."""
    if not 0 <= int(pitch) <= 127:
        raise ValueError(f"pitch must lie in 0..127, got {pitch}")
    return f"{NOTE_NAMES[int(pitch) % 12]}{int(pitch) // 12 - 1}"


def plot_piano_roll(notes: pd.DataFrame, ax: plt.Axes | None = None,
                    split_at: int | None = None, title: str | None = None,
                    colors: tuple[str, str] = ("tab:blue", "tab:orange"),
                    labels: tuple[str, str] = ("primer", "continuation")) -> plt.Axes:
    """Draw a note table as a piano roll (time in seconds across, pitch up).

    ``split_at`` colours notes from that row on in the second colour (e.g. a
    generated continuation after its primer). Velocity sets the opacity.
    """
    if not {"pitch", "start", "end"} <= set(notes.columns):
        raise ValueError("notes need the columns pitch, start and end")
    if ax is None:
        _, ax = plt.subplots(figsize=(12, 4))
    vel = notes["velocity"] if "velocity" in notes else pd.Series(100, index=notes.index)
    for i, (p, s, e, v) in enumerate(zip(notes["pitch"], notes["start"], notes["end"], vel,
                                         strict=True)):
        second = split_at is not None and i >= split_at
        ax.add_patch(Rectangle((s, p - 0.4), e - s, 0.8, color=colors[second],
                               alpha=0.35 + 0.65 * float(v) / 127, linewidth=0))
    if len(notes):
        lo, hi = int(notes["pitch"].min()), int(notes["pitch"].max())
        ax.set_xlim(float(notes["start"].min()), float(notes["end"].max()))
        ax.set_ylim(lo - 1.5, hi + 1.5)
        ticks = [p for p in range(lo, hi + 1) if p % 12 in (0, 7)] or [lo]
        ax.set_yticks(ticks, [note_name(p) for p in ticks])
    if split_at is not None:
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(color=c, label=lab) for c, lab in zip(colors, labels,
                                                                          strict=True)],
                  loc="upper right")
        if 0 < split_at < len(notes):
            ax.axvline(float(notes["start"].iloc[split_at]), color="grey", ls="--", lw=1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("pitch")
    if title:
        ax.set_title(title)
    return ax
