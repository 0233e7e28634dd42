"""Tests of melody_utils.plots: the drawings must show the right notes in the right place."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from melody_utils.plots import (  # noqa: E402
    note_name,
    plot_feature_distributions,
    plot_piano_roll,
    plot_window,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _table(n: int) -> pd.DataFrame:
    start = np.arange(n) * 0.5
    return pd.DataFrame(
        {
            "pitch": 60 + (np.arange(n) * 5) % 17,
            "start": start,
            "end": start + 0.4,
            "step": np.r_[0.0, np.full(n - 1, 0.5)],
            "duration": np.full(n, 0.4),
            "velocity": np.full(n, 64),
        }
    )


def test_note_name():
    assert note_name(60) == "C4"
    assert note_name(69) == "A4"
    assert note_name(0) == "C-1"
    with pytest.raises(ValueError, match="0..127"):
        note_name(128)


def test_piano_roll_draws_one_rectangle_per_note():
    notes = _table(10)
    ax = plot_piano_roll(notes, split_at=6)
    (notes_drawn,) = ax.collections  # one collection of rectangles, one per note
    assert len(notes_drawn.get_paths()) == 10
    rgb = [tuple(c[:3]) for c in notes_drawn.get_facecolor()]
    assert rgb.count(to_rgba("tab:orange")[:3]) == 4


def test_plot_window_marks_inputs_target_and_context():
    notes = _table(40)
    roll, seq = plot_window(notes, start=3, seq_len=32, context=2)
    # piano roll: 32 inputs + 1 target + 2 later notes, each one rectangle
    assert len(roll.patches) == 35
    colours = [p.get_facecolor()[:3] for p in roll.patches]
    assert colours.count(to_rgba("tab:blue")[:3]) == 32
    assert colours.count(to_rgba("tab:red")[:3]) == 1
    red = next(p for p in roll.patches if p.get_facecolor()[:3] == to_rgba("tab:red")[:3])
    assert red.get_x() == pytest.approx(notes["start"].iloc[35])
    assert red.get_y() == pytest.approx(notes["pitch"].iloc[35] - 0.4)
    # sequence view: the target star sits at row 35 and its pitch
    offsets = [c.get_offsets() for c in seq.collections]
    inputs, target, later = offsets
    assert inputs[:, 0].tolist() == list(range(3, 35))
    assert inputs[:, 1].tolist() == notes["pitch"].iloc[3:35].tolist()
    assert target.tolist() == [[35, notes["pitch"].iloc[35]]]
    assert later[:, 0].tolist() == [36, 37]
    labels = [t.get_text() for t in seq.get_legend().get_texts()]
    assert labels[1] == f"target: row 35, {note_name(int(notes['pitch'].iloc[35]))}"


def test_plot_window_needs_room_for_the_target():
    with pytest.raises(ValueError, match="needs 33 notes"):
        plot_window(_table(32), start=0, seq_len=32)
    with pytest.raises(ValueError, match="columns"):
        plot_window(pd.DataFrame({"pitch": [60] * 40}))


def test_feature_distributions_counts_every_note():
    notes = _table(50)
    axes = plot_feature_distributions(notes, xlabels={"step": "step (s)"})
    assert len(axes) == 4
    titles = [ax.get_title() for ax in axes]
    assert titles[0].startswith("pitch (skew ")
    assert titles[3] == "velocity: constant = 64"
    assert axes[1].get_xlabel() == "step (s)"
    # every note lands in exactly one bar of each histogram
    for ax in axes:
        assert sum(p.get_height() for p in ax.patches) == pytest.approx(len(notes))


def test_feature_distributions_rejects_missing_columns():
    with pytest.raises(ValueError, match="lack the columns"):
        plot_feature_distributions(_table(5)[["pitch"]])


def test_piano_roll_colours_each_part(bach):
    notes = next(p for p in bach if p.id == "bach/bwv66.6").notes.iloc[:60]
    ax = plot_piano_roll(notes, color_by="part")
    faces = ax.collections[0].get_facecolors()
    palette = plt.get_cmap("tab10")
    for i, part in enumerate(notes["part"]):
        np.testing.assert_allclose(faces[i][:3], palette(int(part))[:3])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["soprano", "alto", "tenor", "bass"]
    with pytest.raises(ValueError, match="part"):
        plot_piano_roll(notes.drop(columns="part"), color_by="part")
