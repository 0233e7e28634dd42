"""The piano roll and note names: the drawing must show the right notes in the right place
and colour."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from melody_utils.notes import note_table  # noqa: E402
from melody_utils.plots import CHORALE_VOICES, NOTE_NAMES, note_name, plot_piano_roll  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def scale(n: int, velocity=64) -> pd.DataFrame:
    start = np.arange(n) * 0.5
    return note_table(60 + (np.arange(n) * 5) % 17, start, start + 0.4, np.full(n, velocity))


@pytest.mark.parametrize(
    "pitch, name",
    [(60, "C4"), (69, "A4"), (0, "C-1"), (127, "G9"), (61, "C#4"), (59, "B3"), (21, "A0")],
)
def test_note_name(pitch, name):
    assert note_name(pitch) == name
    assert note_name(np.int64(pitch)) == name


def test_note_name_rejects_keys_outside_midi():
    for bad in (128, -1):
        with pytest.raises(ValueError, match="0..127"):
            note_name(bad)
    assert len(NOTE_NAMES) == 12 and NOTE_NAMES[0] == "C"


def test_piano_roll_draws_one_rectangle_per_note_where_it_sounds():
    notes = scale(10)
    ax = plot_piano_roll(notes, title="ten notes")
    (drawn,) = ax.collections  # one collection of rectangles, one per note
    paths = drawn.get_paths()
    assert len(paths) == 10
    for path, (_, row) in zip(paths, notes.iterrows(), strict=True):
        (x0, y0), (x1, y1) = path.get_extents().get_points()
        assert (x0, x1) == pytest.approx((row["start"], row["end"]))
        assert (y0 + y1) / 2 == pytest.approx(row["pitch"])
    assert ax.get_xlim() == pytest.approx((0.0, notes["end"].max()))
    lo, hi = ax.get_ylim()
    assert lo < notes["pitch"].min() and hi > notes["pitch"].max()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["C4", "G4", "C5"]
    assert ax.get_title() == "ten notes" and ax.get_xlabel() == "time (s)"
    assert ax.get_legend() is None and not ax.lines  # no split: one colour, no marker
    rgb = {tuple(c[:3]) for c in drawn.get_facecolor()}
    assert rgb == {to_rgba("tab:blue")[:3]}


def test_split_at_colours_the_continuation_and_marks_where_it_starts():
    notes = scale(10)
    ax = plot_piano_roll(notes, split_at=6, labels=("given", "made up"))
    faces = ax.collections[0].get_facecolor()
    rgb = [tuple(c[:3]) for c in faces]
    assert rgb == [to_rgba("tab:blue")[:3]] * 6 + [to_rgba("tab:orange")[:3]] * 4
    (line,) = ax.lines
    assert line.get_xdata()[0] == pytest.approx(notes["start"].iloc[6])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["given", "made up"]
    for k in (0, 10):  # nothing before, or nothing after: no marker
        assert not plot_piano_roll(notes, split_at=k).lines


def test_velocity_is_opacity():
    notes = scale(3).assign(velocity=[1, 64, 127])
    alpha = plot_piano_roll(notes).collections[0].get_facecolor()[:, 3]
    assert alpha[0] < alpha[1] < alpha[2] == pytest.approx(1.0)
    no_velocity = notes.drop(columns="velocity")
    assert len(plot_piano_roll(no_velocity).collections[0].get_paths()) == 3


def test_piano_roll_colours_each_voice_of_a_chorale(bach):
    notes = next(p for p in bach if p.id == "bach/bwv66.6").notes.iloc[:60]
    ax = plot_piano_roll(notes, color_by="part")
    faces = ax.collections[0].get_facecolors()
    palette = plt.get_cmap("tab10")
    for i, part in enumerate(notes["part"]):
        np.testing.assert_allclose(faces[i][:3], palette(int(part))[:3])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == list(CHORALE_VOICES) == ["soprano", "alto", "tenor", "bass"]
    # other tables name their parts by number
    tracks = scale(6).assign(part=[0, 2, 0, 2, 5, 5])
    labels = [
        t.get_text() for t in plot_piano_roll(tracks, color_by="part").get_legend().get_texts()
    ]
    assert labels == ["part 0", "part 2", "part 5"]


def test_piano_roll_draws_into_a_given_axes_and_copes_with_no_notes():
    fig, (a, b) = plt.subplots(1, 2)
    assert plot_piano_roll(scale(4), ax=b) is b
    assert not a.collections and len(b.collections) == 1
    empty = plot_piano_roll(scale(4).iloc[:0])
    assert len(empty.collections[0].get_paths()) == 0


def test_piano_roll_rejects_bad_tables():
    with pytest.raises(ValueError, match="pitch, start and end"):
        plot_piano_roll(pd.DataFrame({"pitch": [60]}))
    with pytest.raises(ValueError, match="color_by"):
        plot_piano_roll(scale(4), color_by="part")  # no part column
    with pytest.raises(ValueError, match="color_by"):
        plot_piano_roll(scale(4).assign(part=0), color_by="velocity")
