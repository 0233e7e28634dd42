"""Tune groups: the rule on constructed melodies and on the real chorales, and the split by tune."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from melody_utils.data import Piece, split_pieces
from melody_utils.notes import note_table
from melody_utils.tunes import contour, tune_groups, tune_leak, tune_pairs


def melody(pitches, step=0.5) -> Piece:
    start = np.arange(len(pitches)) * step
    return note_table(pitches, start, start + step, np.full(len(pitches), 64))


def piece(pid, pitches, split=None) -> Piece:
    return Piece(pid, melody(pitches), split)


RNG = np.random.default_rng(7)
TUNE = list(60 + np.cumsum(RNG.choice([-2, -1, 1, 2, 3, -3, 4], 48)) % 24)
OTHER = list(55 + np.cumsum(RNG.choice([-2, -1, 1, 2, 3, -3, 5], 48)) % 24)
THIRD = list(50 + np.cumsum(RNG.choice([-4, -1, 1, 2, 5, -3, 7], 40)) % 30)


def test_the_contour_ignores_transposition_repeats_and_a_voice_moving_under_a_held_note():
    assert contour(melody([60, 62, 62, 64, 60])).tolist() == [2, 2, -4]
    assert contour(melody([67, 69, 69, 71, 67])).tolist() == [2, 2, -4]
    # soprano 72 held for two beats while the alto moves 64 -> 65: the top voice is 72, 74
    held = note_table([72, 64, 65, 74], [0, 0, 0.5, 1], [1, 0.5, 1, 1.5], [64] * 4)
    assert contour(held).tolist() == [2]


def test_a_tune_is_found_transposed_reharmonised_rerhythmed_and_with_notes_changed():
    changed = list(TUNE)
    for i in (10, 25, 40):
        changed[i] += 1
    twins = {
        "transposed": [p + 5 for p in TUNE],
        "changed": changed,
        "rerhythmed": [p for p in TUNE for _ in range(2)],
        "quoted": THIRD[:20] + TUNE + THIRD[20:],
    }
    pieces = [piece("a/tune", TUNE), piece("a/other", OTHER)]
    pieces += [piece(f"b/{k}", v) for k, v in twins.items()]
    # reharmonised: the tune on top, a random bass under every note
    bass = note_table(
        RNG.integers(36, 50, len(TUNE)),
        np.arange(48) * 0.5,
        np.arange(48) * 0.5 + 0.5,
        np.full(48, 64),
    )
    both = melody(TUNE).assign(part=0)
    table = pd.concat([both, bass.assign(part=1)]).sort_values(
        ["start", "pitch"], ignore_index=True
    )
    table["step"] = table["start"].diff().fillna(0)
    pieces.append(Piece("b/reharmonised", table))
    pairs = tune_pairs(pieces)
    with_tune = {
        b if a == "a/tune" else a
        for a, b in zip(pairs["a"], pairs["b"], strict=True)
        if "a/tune" in (a, b)
    }
    assert with_tune == {f"b/{k}" for k in (*twins, "reharmonised")}
    assert "a/other" not in set(pairs["a"]) | set(pairs["b"])
    groups = tune_groups(pieces)
    assert groups[0] == sorted(["a/tune", *(f"b/{k}" for k in (*twins, "reharmonised"))])
    assert groups[1:] == [["a/other"]]


def test_the_same_melody_backwards_or_another_tune_is_not_a_twin():
    backwards = piece("b", TUNE[::-1])
    assert tune_pairs([piece("a", TUNE), backwards, piece("c", OTHER)]).empty


def test_a_commonplace_run_shared_by_many_pieces_is_no_evidence():
    scale = [60, 62, 64, 65, 67, 69, 71, 72, 74]  # 8 intervals, in every piece below
    tails = [74 + np.cumsum([-i - 1] + [i % 6 + 3, -(i // 6 + 1)] * 5) for i in range(30)]  # unique
    pieces = [piece(f"p{i}", scale + list(t)) for i, t in enumerate(tails)]
    assert tune_pairs(pieces, min_shared=1, threshold=0.01).empty


def test_groups_chain_and_cover_every_piece_once():
    a, b = TUNE[:30], TUNE[18:]  # a ~ ab ~ b, although a and b share too little
    pieces = [piece("a", a), piece("ab", TUNE), piece("b", b), piece("o", OTHER)]
    pairs = tune_pairs(pieces)
    assert ("a", "b") not in set(zip(pairs["a"], pairs["b"], strict=True))
    assert tune_groups(pieces) == [["a", "ab", "b"], ["o"]]


def test_bad_rule_arguments_are_refused():
    for bad in ({"k": 0}, {"threshold": 0}, {"threshold": 1.5}, {"min_shared": 0}):
        with pytest.raises(ValueError):
            tune_pairs([piece("a", TUNE)], **bad)


def test_the_chorales_that_share_a_hymn_tune_are_found(bach):
    pairs = set(zip(*tune_pairs(bach)[["a", "b"]].to_numpy().T, strict=True))
    # the same tune, harmonised twice (checked against the hymnals)
    for twin in (
        ("bach/bwv227.1", "bach/bwv227.11"),
        ("bach/bwv176.6", "bach/bwv280"),
        ("bach/bwv244.15", "bach/bwv244.62"),
        ("bach/bwv154.3", "bach/bwv359"),
    ):
        assert twin in pairs
    groups = tune_groups(bach)
    assert sorted(sum(groups, [])) == sorted(p.id for p in bach)
    passion = next(g for g in groups if "bach/bwv244.54" in g)  # "O Haupt voll Blut und Wunden"
    assert {"bach/bwv244.15", "bach/bwv248.5", "bach/bwv271"} < set(passion)


def test_the_split_by_tune_keeps_every_tune_in_one_split(bach):
    by_piece = split_pieces(bach, seed=0)
    assert len(tune_leak(by_piece)) > 20  # the by-piece split leaks: the reason for the rule
    splits = split_pieces(bach, seed=0, by="tune")
    assert tune_leak(splits).empty
    where = {p.id: s for s, ps in splits.items() for p in ps}
    for g in tune_groups(bach):
        assert len({where[i] for i in g}) == 1
    assert sorted(where) == sorted(p.id for p in bach)
    sizes = [len(splits[s]) for s in ("train", "val", "test")]
    assert abs(sizes[0] - 328) <= 10 and min(sizes[1:]) >= 31
    assert split_pieces(list(reversed(bach)), seed=0, by="tune") == splits
    assert split_pieces(bach, seed=1, by="tune") != splits


def test_a_group_joins_the_split_its_source_fixed_and_small_sets_fill_every_split():
    pieces = [piece("t1", TUNE, split="test"), piece("t2", [p + 2 for p in TUNE])]
    pieces += [piece(f"o{i}", list(np.roll(OTHER, 5 * i) + i)) for i in range(6)]
    for seed in range(5):
        splits = split_pieces(pieces, seed=seed, by="tune")
        assert {p.id for p in splits["test"]} >= {"t1", "t2"}
    for seed in range(5):
        few = split_pieces(
            [
                piece("a", TUNE),
                piece("a2", [p - 3 for p in TUNE]),
                piece("b", OTHER),
                piece("c", OTHER[::-1]),
            ],
            seed=seed,
            by="tune",
        )
        assert all(few.values())
        assert len({s for s, ps in few.items() for p in ps if p.id in ("a", "a2")}) == 1


def test_split_by_must_be_piece_or_tune(bach):
    with pytest.raises(ValueError, match="by must be"):
        split_pieces(bach[:5], by="title")


def test_the_readme_and_the_stored_leak_report_are_what_the_rule_gives_today(bach):
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    stored = json.loads((root / "benchmarks" / "results" / "tune_leak.json").read_text())
    pairs, groups = tune_pairs(bach), tune_groups(bach)
    multi = [g for g in groups if len(g) > 1]
    assert (len(pairs), len(groups), multi) == (
        stored["pairs"],
        stored["groups"],
        stored["groups_of_2_plus"],
    )
    leak = tune_leak(split_pieces(bach, seed=0))
    test = leak[leak["split"] == "test"]
    assert (len(test), int(test["windows"].sum())) == (
        stored["leak"]["piece"]["test"]["pieces"],
        stored["leak"]["piece"]["test"]["windows"],
    )
    readme = " ".join((root / "README.md").read_text().split())
    piece, caught = stored["leak"]["piece"], stored["constructed_caught"]
    for claim in (
        f"{sum(map(len, multi))} of the 410 chorales share their hymn tune with another chorale "
        f"({len(multi)} tunes, up to {len(multi[0])} harmonisations",
        f"{len(test)} of the 41 test chorales ({int(test['windows'].sum()):,} of "
        f"{piece['test']['of_windows']:,} test windows) have a training twin",
        f"{piece['nll_twin']:.3f} on their windows against {piece['nll_rest']:.3f} on the rest",
        f"this rule passes {len(pairs)} pairs",
        f"{stored['chance_pairs']} of {stored['all_pairs']:,} pairs pass by chance",
        f"with 3 top-voice notes moved a semitone {caught['3 notes moved']:.0%}",
        f"and with 6 moved {caught['6 notes moved']:.0%}",
    ):
        assert claim in readme, claim
