"""The computed verdict of notebook 04 and its pitch-class measures, on hand-made inputs.

``judge_claims`` / ``verdict_markdown`` are checked on hand-written results tables (the
shape :func:`compare_with_controls` returns) whose verdicts are known: a claim that beats
both controls holds, one that does not is not established, and one whose p-value lies
between half the corrected level and the level holds narrowly. The pitch-class measures
are checked on embeddings built to lie on the circle of fifths or the chromatic circle.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from melody_utils.embeddings import (
    FIFTH_STEPS,
    Claim,
    compare_with_controls,
    describe_profile,
    judge_claims,
    pitch_class_centroids,
    pitch_class_circles,
    pitches_to_notes,
    rank_against_controls,
    verdict_markdown,
)

SEEN = np.arange(36, 85)  # C2..C6


def result(rows: dict, level: float = 0.05) -> pd.DataFrame:
    """A compare_with_controls-shaped table: ``{key: (trained, p_permuted, p_random)}``.

    ``beats_controls`` is computed as compare_with_controls does (Bonferroni over the rows).
    """
    alpha = level / len(rows)
    out = pd.DataFrame(
        {
            "trained": {k: v[0] for k, v in rows.items()},
            "random_init_mean": {k: 0.0 for k in rows},
            "random_init_std": {k: 0.1 for k in rows},
            "permuted_mean": {k: 0.05 for k in rows},
            "permuted_std": {k: 0.1 for k in rows},
            "p_random_init": {k: v[2] for k, v in rows.items()},
            "p_permuted": {k: v[1] for k, v in rows.items()},
        }
    )
    out["beats_controls"] = (out["p_random_init"] <= alpha) & (out["p_permuted"] <= alpha)
    out.index.name = "measure"
    return out


@pytest.fixture()
def family() -> pd.DataFrame:
    # two values: corrected level 0.025, "narrowly" above 0.0125
    return result({"strong": (0.8, 0.002, 0.002), "weak": (0.1, 0.30, 0.01)})


# --------------------------------------------------------------------------- judge_claims


def test_a_claim_that_beats_both_controls_holds(family):
    judged = judge_claims({"strong claim": Claim(family, "strong")})
    row = judged.loc[("strong claim", "")]
    assert row["holds"] and not row["narrow"]
    assert row["verdict"] == "holds"
    assert row["alpha"] == pytest.approx(0.025)
    assert row["value"] == pytest.approx(0.8)
    assert row["z_permuted"] == pytest.approx((0.8 - 0.05) / 0.1)


def test_a_claim_that_does_not_beat_a_control_is_not_established(family):
    judged = judge_claims({"weak claim": Claim(family, "weak")})
    row = judged.loc[("weak claim", "")]
    assert not row["holds"] and not row["narrow"]
    assert row["verdict"] == "not established"


@pytest.mark.parametrize(
    ("p", "verdict"),
    [
        (0.002, "holds"),
        (0.0125, "holds"),  # exactly half the corrected level: not narrow
        (0.02, "holds, narrowly"),  # above half the level, below the level
        (0.025, "holds, narrowly"),  # at the level
        (0.03, "not established"),  # above the level
    ],
)
def test_the_narrow_case(p, verdict):
    res = result({"a": (0.5, p, 0.002), "b": (0.5, 0.002, 0.002)})
    assert judge_claims({"c": Claim(res, "a")}).loc[("c", ""), "verdict"] == verdict


def test_narrow_uses_the_larger_of_the_two_p_values():
    res = result({"a": (0.5, 0.002, 0.02), "b": (0.5, 0.002, 0.002)})
    assert judge_claims({"c": Claim(res, "a")}).loc[("c", ""), "verdict"] == "holds, narrowly"


def test_a_positive_claim_needs_a_positive_value():
    # a "peak" below 0 that still beats controls whose peaks are more negative
    res = result({"P8": (-0.01, 0.002, 0.002), "P5": (0.2, 0.002, 0.002)})
    claims = {
        "octave peak": Claim(res, "P8", positive=True),
        "fifth peak": Claim(res, "P5", positive=True),
        "octave value": Claim(res, "P8"),
    }
    judged = judge_claims(claims)
    assert judged.loc[("octave peak", ""), "verdict"] == "not established"
    assert judged.loc[("fifth peak", ""), "verdict"] == "holds"
    assert judged.loc[("octave value", ""), "verdict"] == "holds"


def test_stacked_tables_are_judged_separately_with_their_own_family_size():
    E = result({1: (0.4, 0.002, 0.002), 2: (0.1, 0.5, 0.5), 3: (0.0, 0.9, 0.9)})
    L = result({1: (0.1, 0.4, 0.3), 2: (0.1, 0.5, 0.5), 3: (0.0, 0.9, 0.9)})
    stacked = pd.concat({"E (trained)": E, "L (update)": L}, names=["table"])
    judged = judge_claims(
        {"semitone": Claim(stacked, 1, group="height")},
        start={"semitone": 0.01},
        start_table="E (trained)",
    )
    assert list(judged.index) == [("semitone", "E (trained)"), ("semitone", "L (update)")]
    assert list(judged["verdict"]) == ["holds", "not established"]
    assert judged["alpha"].tolist() == pytest.approx([0.05 / 3] * 2)
    assert judged.loc[("semitone", "E (trained)"), "start"] == pytest.approx(0.01)
    assert np.isnan(judged.loc[("semitone", "L (update)"), "start"])
    assert set(judged["group"]) == {"height"}


def test_claims_keep_their_order_and_short_names(family):
    claims = {
        "z weak": Claim(family, "weak", short="weak"),
        "a strong": Claim(family, "strong"),
    }
    judged = judge_claims(claims)
    assert list(judged.index.get_level_values("claim")) == ["z weak", "a strong"]
    assert list(judged["short"]) == ["weak", "a strong"]


def test_judge_claims_rejects_bad_input(family):
    with pytest.raises(KeyError, match="no row"):
        judge_claims({"c": Claim(family, "missing")})
    with pytest.raises(TypeError, match="must be a Claim"):
        judge_claims({"c": (family, "strong")})
    with pytest.raises(ValueError, match="missing columns"):
        judge_claims({"c": Claim(family.drop(columns="p_permuted"), "strong")})
    with pytest.raises(ValueError, match="unknown claims"):
        judge_claims({"c": Claim(family, "strong")}, start={"other": 0.0})
    with pytest.raises(ValueError, match="level"):
        judge_claims({"c": Claim(family, "strong")}, level=1.5)
    with pytest.raises(ValueError, match="no claims"):
        judge_claims({})


# --------------------------------------------------------------------------- verdict_markdown


def test_verdict_markdown_lists_every_claim_with_its_numbers_and_a_summary():
    E = result({"x": (0.8, 0.002, 0.002), "y": (0.3, 0.012, 0.002), "z": (0.0, 0.6, 0.7)})
    stacked = pd.concat({"E (trained table)": E}, names=["table"])
    claims = {
        "x is strong": Claim(stacked, "x", group="height", short="x"),
        "y is narrow": Claim(stacked, "y", percent=True, group="music", short="y"),
        "z is absent": Claim(stacked, "z", group="music", short="z"),
    }
    judged = judge_claims(claims, start={"x is strong": 0.1})
    text = verdict_markdown(
        judged, intro="Intro line.", notes=["First note.", "Second note."], start_label="E0"
    )
    assert text.startswith("Intro line.")
    assert "* **x is strong**" in text
    assert (
        "  * E: 0.800 (permuted 0.050 ± 0.100, untrained 0.000 ± 0.100; "
        "p = 0.002 / 0.002; E0: 0.100): **holds**"
    ) in text
    assert "30% (permuted 5% ± 10%" in text  # percentages
    assert "**holds, narrowly** (a p-value above half the corrected level 0.0167)" in text
    assert "): not established" in text
    assert "* *E · height*: holds: x." in text
    assert "* *E · music*: holds narrowly: y; not established: z." in text
    assert text.rstrip().endswith("First note. Second note.")


def test_verdict_markdown_puts_a_warning_first_and_handles_unstacked_results(family):
    judged = judge_claims({"strong claim": Claim(family, "strong")})
    text = verdict_markdown(judged, warning="FAST mode: nothing can hold")
    assert text.startswith("> **FAST mode: nothing can hold**")
    assert "  * 0.800 (permuted" in text  # no table name for an unstacked result
    assert "* holds: strong claim." in text


def test_verdict_markdown_rejects_other_tables(family):
    with pytest.raises(ValueError, match="judge_claims"):
        verdict_markdown(family)


# --------------------------------------------------------------------------- profiles


def test_rank_against_controls_sorts_by_z_and_describe_profile_says_it():
    res = result(
        {
            1: (0.35, 0.002, 0.002),
            3: (0.45, 0.002, 0.002),
            6: (0.06, 0.3, 0.2),
            12: (0.40, 0.002, 0.002),
        }
    )
    res.loc[3, "permuted_std"] = 0.05  # m3: z = 8, P8: z = 3.5, m2: z = 3
    names = {1: "m2", 3: "m3", 6: "TT", 12: "P8"}
    ranked = rank_against_controls(res, names)
    assert list(ranked["name"]) == ["m3", "P8", "m2", "TT"]
    assert ranked.loc[3, "z"] == pytest.approx(8.0)
    text = describe_profile(res, names, what="intervals in E")
    assert text == (
        "Intervals in E that beat both controls, strongest first (z against permuted "
        "labels): m3 (0.450, z = 8.0), P8 (0.400, z = 3.5), m2 (0.350, z = 3.0); "
        "not beating them: TT."
    )
    assert "and 2 more" in describe_profile(res, names, top=1)
    random_init = describe_profile(res, names, control="random_init")
    assert "z against untrained tables" in random_init
    assert random_init.index("m3") < random_init.index("P8")  # 4.5 sd before 4.0 sd


def test_describe_profile_without_winners():
    res = result({1: (0.0, 0.5, 0.5), 2: (0.1, 0.3, 0.4)})
    assert describe_profile(res) == "No intervals beat both controls."


def test_rank_against_controls_rejects_stacked_results_and_unknown_controls(family):
    stacked = pd.concat({"E": family}, names=["table"])
    with pytest.raises(ValueError, match="one table"):
        rank_against_controls(stacked)
    with pytest.raises(ValueError, match="control"):
        rank_against_controls(family, control="other")


# --------------------------------------------------------------------------- pitch classes


def circle_embedding(order: str, height: float = 0.0, noise: float = 0.01, seed: int = 0):
    """Pitch class on a circle (fifths or chromatic order) plus an optional height trend."""
    rng = np.random.default_rng(seed)
    p = np.arange(128)
    step = (7 * (p % 12)) % 12 if order == "fifths" else p % 12
    a = 2 * np.pi * step / 12
    x = (p - 60) / 12
    core = np.stack([np.cos(a), np.sin(a), height * x, height * x**2], axis=1)
    q, _ = np.linalg.qr(rng.normal(size=(96, core.shape[1])))
    return core @ q.T + noise * rng.normal(size=(128, 96))


@pytest.fixture(scope="module")
def mask() -> np.ndarray:
    m = np.zeros(128, dtype=bool)
    m[SEEN] = True
    return m


def test_fifth_steps():
    assert FIFTH_STEPS == (0, 5, 2, 3, 4, 1, 6, 1, 4, 3, 2, 5)


@pytest.mark.parametrize("order", ["fifths", "chromatic"])
def test_pitch_class_circles_recognises_each_circle(order, mask):
    r = pitch_class_circles(circle_embedding(order), mask)
    this, other = (
        ("circle of fifths", "chromatic circle")
        if order == "fifths"
        else ("chromatic circle", "circle of fifths")
    )
    assert r[this] > 0.99
    assert r[other] < 0.5


def test_height_is_removed_before_the_pitch_classes_are_compared(mask):
    E = circle_embedding("fifths", height=5.0)  # a strong quadratic trend in pitch
    assert pitch_class_circles(E, mask)["circle of fifths"] > 0.99
    C = pitch_class_centroids(E, mask)
    assert C.shape == (12, 96)
    # the centroids are what is left of the circle: 12 vectors of about unit length
    assert np.linalg.norm(C, axis=1) == pytest.approx(np.ones(12), abs=0.05)


def test_pure_height_leaves_no_pitch_class_direction(mask):
    p = np.arange(128, dtype=float)
    E = np.outer(p, np.ones(96)) + np.outer(p**2, np.linspace(0, 1, 96))
    with pytest.raises(ValueError, match="direction"):
        pitch_class_circles(E, mask)


def test_pitch_class_measures_read_only_seen_rows(mask):
    E = circle_embedding("fifths")
    junk = E.copy()
    junk[~mask] = 1e6
    assert pitch_class_circles(junk, mask) == pitch_class_circles(E, mask)


def test_missing_pitch_classes_are_nan_and_too_few_classes_fail():
    E = circle_embedding("fifths")
    m = np.zeros(128, dtype=bool)
    m[[60, 62, 64, 65, 67, 72, 74, 76]] = True  # C D E F G only
    C = pitch_class_centroids(E, m, degree=1)
    assert np.isnan(C[[1, 3, 6, 8, 9, 10, 11]]).all()
    assert not np.isnan(C[[0, 2, 4, 5, 7]]).any()
    few = np.zeros(128, dtype=bool)
    few[[60, 72, 62, 74]] = True
    with pytest.raises(ValueError, match="at least 3 pitch classes"):
        pitch_class_circles(E, few, degree=1)
    with pytest.raises(ValueError, match="degree"):
        pitch_class_centroids(E, m, degree=-1)
    with pytest.raises(ValueError, match="degree"):
        pitch_class_circles(E, m, degree="2")


def test_the_circle_of_fifths_beats_its_controls_and_the_chromatic_circle_does_not(mask):
    E = circle_embedding("fifths", height=2.0, noise=0.05)
    res = compare_with_controls(pitch_class_circles, E, mask, n_permutations=99, n_random=99)
    judged = judge_claims(
        {
            "fifths": Claim(res, "circle of fifths"),
            "chromatic": Claim(res, "chromatic circle"),
        }
    )
    assert judged.loc[("fifths", ""), "verdict"] == "holds"
    assert judged.loc[("chromatic", ""), "verdict"] == "not established"


# --------------------------------------------------------------------------- listening


def test_pitches_to_notes_is_an_arpeggio_with_rests():
    notes = pitches_to_notes([60, 48, 36], step=0.5, rest_after=[0])
    assert list(notes.columns) == ["pitch", "start", "end", "step", "duration", "velocity"]
    assert notes["pitch"].tolist() == [60, 48, 36]
    assert notes["start"].tolist() == pytest.approx([0.0, 1.0, 1.5])
    assert notes["duration"].tolist() == pytest.approx([0.45] * 3)
    assert notes["end"].tolist() == pytest.approx([0.45, 1.45, 1.95])
    assert notes["step"].tolist() == pytest.approx([0.0, 1.0, 0.5])


def test_pitches_to_notes_plays():
    from melody_utils.notes import notes_to_midi

    pm = notes_to_midi(pitches_to_notes([60, 67, 72], step=0.25, hold=0.2, velocity=90))
    played = pm.instruments[0].notes
    assert [n.pitch for n in played] == [60, 67, 72]
    assert [n.velocity for n in played] == [90] * 3
    assert pm.get_end_time() == pytest.approx(0.7)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pitches": []}, "non-empty"),
        ({"pitches": [60, 128]}, "pitch"),
        ({"pitches": [60], "step": 0}, "step"),
        ({"pitches": [60], "hold": -1}, "hold"),
        ({"pitches": [60], "rest": -1}, "rest"),
        ({"pitches": [60, 62], "rest_after": [2]}, "rest_after"),
    ],
)
def test_pitches_to_notes_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pitches_to_notes(**kwargs)
