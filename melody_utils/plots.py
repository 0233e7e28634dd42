"""Note names and the piano roll, shared by the notebooks, the widget and the main job."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
#: The four parts of a chorale, top staff first (the ``part`` column's order).
CHORALE_VOICES = ("soprano", "alto", "tenor", "bass")


def note_name(pitch: int) -> str:
    """MIDI pitch -> scientific name: 60 -> ``"C4"``, 69 -> ``"A4"``."""
    if not 0 <= int(pitch) <= 127:
        raise ValueError(f"pitch must lie in 0..127 (MIDI pitch), found {pitch}")
    return f"{NOTE_NAMES[int(pitch) % 12]}{int(pitch) // 12 - 1}"


def plot_piano_roll(
    notes: pd.DataFrame,
    ax: plt.Axes | None = None,
    split_at: int | None = None,
    title: str | None = None,
    labels: tuple[str, str] = ("primer", "continuation"),
    color_by: str | None = None,
) -> plt.Axes:
    """A note table as a piano roll (time across, pitch up, velocity as opacity); ``split_at``
    colours the rows from there on, ``color_by="part"`` each note by its part (voice or track)."""
    from matplotlib.collections import PatchCollection
    from matplotlib.colors import to_rgba
    from matplotlib.patches import Patch, Rectangle

    if not {"pitch", "start", "end"} <= set(notes.columns):
        raise ValueError("notes need the columns pitch, start and end")
    if color_by not in (None, "part") or color_by and "part" not in notes:
        raise ValueError("color_by must be None or 'part' (for a table with a part column)")
    ax = ax or plt.subplots(figsize=(12, 4))[1]
    palette = plt.get_cmap("tab10")
    if color_by:
        parts = notes["part"].to_numpy(np.int64)
        present = sorted(set(parts.tolist()))
        names = CHORALE_VOICES if len(present) == 4 and max(present) < 4 else ()
        base = [palette(k % 10) for k in parts]
        legend = [
            Patch(color=palette(k % 10), label=names[k] if names else f"part {k}") for k in present
        ]
    else:
        colours = ("tab:blue", "tab:orange")
        base = [colours[int(split_at is not None and i >= split_at)] for i in range(len(notes))]
        legend = [Patch(color=c, label=lab) for c, lab in zip(colours, labels, strict=True)]
        legend = legend if split_at is not None else []
    vel = notes["velocity"].to_numpy() if "velocity" in notes else np.full(len(notes), 100)
    cols = zip(notes["pitch"], notes["start"], notes["end"], strict=True)
    rects = [Rectangle((s, p - 0.4), e - s, 0.8) for p, s, e in cols]
    face = [to_rgba(c, 0.35 + 0.65 * float(v) / 127) for c, v in zip(base, vel, strict=True)]
    ax.add_collection(PatchCollection(rects, facecolors=face, linewidths=0))  # one artist: fast
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
    ax.set(xlabel="time (s)", ylabel="pitch", title=title or "")
    return ax
