"""Generation: sampling, seeds, clamps, feedback, argument checks, MIDI round trips, metrics.

An untrained MelodyLSTM (seeded) stands in for the trained one: generation is the same
code whatever the weights, and its near-uniform pitch distribution makes the sampling
tests sharper. The normalizer and primers are real Bach chorales.
"""

from __future__ import annotations

import copy
import math

import music21
import numpy as np
import pandas as pd
import pretty_midi
import pytest
import torch

from melody_utils.data import Normalizer
from melody_utils.generate import (
    CHORD_SNAP,
    MAX_DURATION,
    MAX_STEP,
    MIN_DURATION,
    GenerationResult,
    filter_logits,
    generate,
    primers_from_pieces,
    sampling_probs,
)
from melody_utils.metrics import (
    MEASURES,
    degeneration_stats,
    flam_rate,
    reference_stats,
    stats_table,
)
from melody_utils.model import MelodyLSTM

COLUMNS = ["pitch", "start", "end", "step", "duration", "velocity", "generated"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """These tiny batches run on one torch thread (see conftest.one_torch_thread)."""


@pytest.fixture(scope="module")
def normalizer(bach_splits):
    return Normalizer.fit(bach_splits["train"])


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MelodyLSTM().eval()


@pytest.fixture(scope="module")
def primer(bach_splits):
    return bach_splits["test"][0]


def first_window(primer, normalizer):
    """The model inputs generate() builds for the first step, for independent checks."""
    ctx = primer.notes.iloc[-32:]
    pitch = torch.tensor(ctx["pitch"].to_numpy(np.int64))[None]
    cont = torch.from_numpy(
        normalizer.transform(ctx[["step", "duration", "velocity"]].to_numpy(np.float64))
    )[None]
    return pitch, cont


def count_music21_notes(path) -> int:
    """Notes in ``music21.converter.parse(path)``: chord tones count one each, and a note
    that music21 split across a barline (tie start ... stop) counts once."""
    n = 0
    for el in music21.converter.parse(path).recurse().notes:
        for sub in el.notes if el.isChord else [el]:
            tie = sub.tie if sub.tie is not None else el.tie
            n += tie is None or tie.type == "start"
    return n


def pitches(result: GenerationResult, i: int = 0) -> list[int]:
    return result.continuation(i)["pitch"].tolist()


# --------------------------------------------------------------------------- structure


def test_result_tables_midi_and_stats(model, normalizer, primer):
    r = generate(model, normalizer, primer, 12, n_variations=3, seed=0)
    assert len(r) == r.n_variations == 3 and r.split_at == 32 and r.seed == 0
    ctx = primer.notes.iloc[-32:]
    for tab, pm, st in zip(r.notes, r.midi, r.stats, strict=True):
        assert list(tab.columns) == COLUMNS and len(tab) == 32 + 12
        assert tab["generated"].tolist() == [False] * 32 + [True] * 12
        assert tab["pitch"].iloc[:32].tolist() == ctx["pitch"].tolist()
        assert tab["pitch"].between(0, 127).all()
        # times follow from the steps, starting at 0
        assert tab["start"].iloc[0] == 0
        np.testing.assert_allclose(np.diff(tab["start"]), tab["step"].iloc[1:], atol=1e-9)
        np.testing.assert_allclose(tab["end"], tab["start"] + tab["duration"], atol=1e-12)
        np.testing.assert_allclose(tab["duration"].iloc[:32], ctx["duration"], atol=1e-12)
        # one piano track holding the same notes
        assert len(pm.instruments) == 1
        inst = pm.instruments[0]
        assert inst.program == 0 and not inst.is_drum
        assert [n.pitch for n in inst.notes] == tab["pitch"].tolist()
        assert [n.velocity for n in inst.notes] == tab["velocity"].tolist()
        # stats are those of the continuation only
        assert set(st) == {*MEASURES, "flam_rate"} and st["notes"] == 12
        assert {k: st[k] for k in MEASURES} == degeneration_stats(tab.iloc[32:])
        assert st["flam_rate"] == flam_rate(tab.iloc[32:])
    table = r.stats_table(reference_stats(primers_from_pieces([primer]), 12))
    assert table.shape == (len(MEASURES) + 1, 4)
    assert table.notna().all().all()


def test_primer_as_table_or_piece_same_result(model, normalizer, primer):
    a = generate(model, normalizer, primer, 6, seed=1)
    b = generate(model, normalizer, primer.notes, 6, seed=1)
    # only the last 32 notes matter
    c = generate(model, normalizer, primer.notes.iloc[-32:].reset_index(drop=True), 6, seed=1)
    pd.testing.assert_frame_equal(a.notes[0], b.notes[0])
    pd.testing.assert_frame_equal(a.notes[0], c.notes[0])


# --------------------------------------------------------------------------- seeds


def test_same_seed_same_music_different_seed_different(model, normalizer, primer):
    a = generate(model, normalizer, primer, 16, n_variations=2, seed=42)
    b = generate(model, normalizer, primer, 16, n_variations=2, seed=42)
    c = generate(model, normalizer, primer, 16, n_variations=2, seed=43)
    for x, y in zip(a.notes, b.notes, strict=True):
        pd.testing.assert_frame_equal(x, y)
    assert pitches(a, 0) != pitches(c, 0)
    assert pitches(a, 0) != pitches(a, 1)  # variations differ from each other


def test_variation_does_not_depend_on_batch_size(model, normalizer, primer):
    one = generate(model, normalizer, primer, 10, n_variations=1, seed=5)
    three = generate(model, normalizer, primer, 10, n_variations=3, seed=5)
    assert pitches(one) == pitches(three)
    np.testing.assert_allclose(one.notes[0]["start"], three.notes[0]["start"], atol=1e-4)


def test_random_seed_is_recorded_and_reproduces(model, normalizer, primer):
    a = generate(model, normalizer, primer, 8)
    assert isinstance(a.seed, int) and a.seed >= 0
    b = generate(model, normalizer, primer, 8, seed=a.seed)
    assert pitches(a) == pitches(b)


# --------------------------------------------------------------------------- sampling


def test_greedy_is_argmax_and_ignores_seed(model, normalizer, primer):
    a = generate(model, normalizer, primer, 8, temperature=0, seed=1)
    b = generate(model, normalizer, primer, 8, temperature=0, seed=2, n_variations=2)
    assert pitches(a) == pitches(b, 0) == pitches(b, 1)
    with torch.no_grad():
        logits, _ = model(*first_window(primer, normalizer))
    assert pitches(a)[0] == int(logits.argmax())
    # top-k 1 and a tiny nucleus both leave only the argmax
    assert pitches(generate(model, normalizer, primer, 8, top_k=1, seed=3)) == pitches(a)
    assert pitches(generate(model, normalizer, primer, 8, top_p=1e-6, seed=4)) == pitches(a)


def test_top_k_and_top_p_restrict_the_first_note(model, normalizer, primer):
    with torch.no_grad():
        logits, _ = model(*first_window(primer, normalizer))
    logits = logits[0].double() / 2.0
    top3 = set(torch.topk(logits, 3).indices.tolist())
    probs = logits.softmax(-1)
    order = torch.argsort(probs, descending=True)
    mass = probs[order].cumsum(0)
    nucleus = set(order[: int((mass < 0.2).sum()) + 1].tolist())  # smallest set with >= 0.2

    free = generate(model, normalizer, primer, 1, temperature=2.0, n_variations=64, seed=0)
    firsts = {pitches(free, i)[0] for i in range(64)}
    assert len(firsts) > len(nucleus) and len(firsts) > 3  # unfiltered sampling spreads
    k = generate(model, normalizer, primer, 1, temperature=2.0, top_k=3, n_variations=64, seed=0)
    assert {pitches(k, i)[0] for i in range(64)} <= top3
    p = generate(model, normalizer, primer, 1, temperature=2.0, top_p=0.2, n_variations=64, seed=0)
    assert {pitches(p, i)[0] for i in range(64)} <= nucleus


def test_temperature_is_applied_before_the_nucleus(model, normalizer, primer):
    """top-p is taken on the *tempered* distribution: at T = 0.5 the nucleus is smaller
    than at T = 1, and no sample may fall outside it."""
    with torch.no_grad():
        logits, _ = model(*first_window(primer, normalizer))

    def nucleus(scaled: torch.Tensor, p: float) -> set[int]:
        probs = scaled.softmax(-1)
        order = torch.argsort(probs, descending=True)
        before = probs[order].cumsum(0) - probs[order]
        return set(order[before < p].tolist())

    tempered = nucleus(logits[0].double() / 0.5, 0.5)
    untempered = nucleus(logits[0].double(), 0.5)
    assert len(tempered) < len(untempered), "the test needs the two nuclei to differ"
    r = generate(model, normalizer, primer, 1, temperature=0.5, top_p=0.5, n_variations=400)
    drawn = {pitches(r, i)[0] for i in range(400)}
    assert drawn <= tempered
    assert len(drawn) >= len(tempered) - 1  # and the nucleus is really sampled
    # the distribution itself, exactly
    probs = sampling_probs(logits.double(), 0.5, None, 0.5)[0]
    expected = torch.zeros(128, dtype=torch.float64)
    idx = torch.tensor(sorted(tempered))
    expected[idx] = (logits[0].double()[idx] / 0.5).softmax(-1)
    torch.testing.assert_close(probs, expected)


@pytest.mark.parametrize("temperature", [1e-300, 2.3e-308, 1e-320, 5e-324])
def test_tiny_temperatures_sample_the_argmax(model, normalizer, primer, temperature):
    """Below ~2.3e-308 the logits / T overflowed to inf and every note became 127."""
    greedy = generate(model, normalizer, primer, 6, temperature=0)
    tiny = generate(model, normalizer, primer, 6, temperature=temperature, n_variations=3)
    for i in range(3):
        assert pitches(tiny, i) == pitches(greedy)
    probs = sampling_probs(torch.tensor([[1.0, 3.0, 3.0, -2.0]]), temperature)
    torch.testing.assert_close(probs, torch.tensor([[0.0, 0.5, 0.5, 0.0]]))


def test_huge_temperature_is_uniform():
    probs = sampling_probs(torch.tensor([[1.0, 30.0, -5.0, 0.0]], dtype=torch.float64), 1e300)
    torch.testing.assert_close(probs, torch.full((1, 4), 0.25, dtype=torch.float64))


@pytest.mark.parametrize("column, value", [("step", 1e9), ("step", 600.0), ("duration", 1e6)])
def test_implausible_primer_timing_is_clamped_with_a_message(
    model, normalizer, primer, column, value
):
    bad = primer.notes.copy()
    bad.loc[bad.index[-5], column] = value
    with pytest.warns(UserWarning, match=f"{column}.*shortened"):
        r = generate(model, normalizer, bad, 4, seed=0)
    assert r.messages and column in r.messages[0]
    ctx = r.notes[0].iloc[:32]
    assert ctx["step"].max() <= MAX_STEP and ctx["duration"].max() <= MAX_DURATION
    assert r.notes[0]["end"].max() < 32 * MAX_STEP + 4 * MAX_STEP + MAX_DURATION


def test_bool_temperature_is_refused(model, normalizer, primer):
    with pytest.raises(ValueError, match="temperature"):
        generate(model, normalizer, primer, 2, temperature=True)


def test_filter_logits_on_a_known_distribution():
    probs = torch.tensor([[0.05, 0.5, 0.15, 0.3]])
    logits = probs.log()
    kept = lambda out: set(torch.isfinite(out[0]).nonzero().flatten().tolist())  # noqa: E731
    assert kept(filter_logits(logits, top_k=2)) == {1, 3}
    assert kept(filter_logits(logits, top_p=0.4)) == {1}
    assert kept(filter_logits(logits, top_p=0.75)) == {1, 3}
    assert kept(filter_logits(logits, top_p=0.85)) == {1, 2, 3}
    assert kept(filter_logits(logits, top_p=1.0)) == {0, 1, 2, 3}
    assert kept(filter_logits(logits, top_k=3, top_p=0.75)) == {1, 3}


# --------------------------------------------------------------------------- clamps


def forced(model: MelodyLSTM, value: float) -> MelodyLSTM:
    """A copy whose continuous head always outputs ``value`` (normalized units)."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        m.cont_head.weight.zero_()
        m.cont_head.bias.fill_(value)
    return m


@pytest.mark.parametrize("value", [1e4, -1e4, 50.0, -50.0])
def test_clamps_hold_for_extreme_outputs(model, normalizer, primer, value):
    r = generate(forced(model, value), normalizer, primer, 6, n_variations=2, seed=0)
    for tab in r.notes:
        gen = tab.iloc[32:]
        assert gen["step"].between(0, MAX_STEP).all()
        assert gen["duration"].between(MIN_DURATION, MAX_DURATION).all()
        assert gen["velocity"].between(1, 127).all()
        assert gen["velocity"].dtype == np.int64
        assert np.isfinite(tab[["start", "end"]].to_numpy()).all()
        if abs(value) < 1e3:
            continue
        if value > 0:
            assert (gen["step"] == MAX_STEP).all() and (gen["duration"] == MAX_DURATION).all()
            assert (gen["velocity"] == 127).all()
        else:
            assert (gen["step"] == 0).all() and (gen["duration"] == MIN_DURATION).all()
            assert (gen["velocity"] == 1).all()
    notes = r.midi[0].instruments[0].notes
    assert all(n.end > n.start and 1 <= n.velocity <= 127 for n in notes)


def test_tiny_steps_snap_to_chord_tones(model, normalizer, primer):
    # normalized step that de-normalizes to ~5 ms, below the 10 ms snap
    z = (np.log(0.005 + normalizer.eps) - normalizer.mean[0]) / normalizer.std[0]
    r = generate(forced(model, float(z)), normalizer, primer, 4, seed=0)
    assert (r.continuation()["step"] == 0).all()
    r = generate(forced(model, float(z)), normalizer, primer, 4, seed=0, chord_snap=0)
    assert np.allclose(r.continuation()["step"], 0.005, atol=1e-6)
    assert CHORD_SNAP == pytest.approx(0.01)


def test_next_window_reads_the_clamped_notes(model, normalizer, primer):
    m = forced(model, 1e4)
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    m.register_forward_pre_hook(lambda _m, args: calls.append((args[0].clone(), args[1].clone())))
    r = generate(m, normalizer, primer, 3, n_variations=2, seed=0)
    assert len(calls) == 3
    clamped = normalizer.transform(np.array([[MAX_STEP, MAX_DURATION, 127.0]]))[0]
    for step in (1, 2):
        pitch_seq, cont_seq = calls[step]
        assert pitch_seq.shape == (2, 32) and cont_seq.shape == (2, 32, 3)
        for b in range(2):
            assert int(pitch_seq[b, -1]) == pitches(r, b)[step - 1]
            np.testing.assert_allclose(cont_seq[b, -1].numpy(), clamped, rtol=1e-6)
        # the window slid by one note
        assert torch.equal(pitch_seq[:, :-1], calls[step - 1][0][:, 1:])


# --------------------------------------------------------------------------- modes, errors


def test_cpu_threads_is_restored(model, normalizer, primer):
    torch.set_num_threads(2)
    try:
        a = generate(model, normalizer, primer, 3, seed=0, cpu_threads=1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    assert pitches(a) == pitches(generate(model, normalizer, primer, 3, seed=0))


def test_model_mode_restored_and_dropout_off(model, normalizer, primer):
    m = copy.deepcopy(model).train()
    a = generate(m, normalizer, primer, 6, temperature=0)
    b = generate(m, normalizer, primer, 6, temperature=0)
    assert m.training  # restored
    assert pitches(a) == pitches(b)  # dropout was off during generation
    assert pitches(a) == pitches(generate(model, normalizer, primer, 6, temperature=0))


def test_non_finite_model_outputs_raise(model, normalizer, primer):
    m = copy.deepcopy(model)
    with torch.no_grad():
        m.pitch_head.bias.fill_(float("nan"))
    with pytest.raises(RuntimeError, match="NaN or infinite"):
        generate(m, normalizer, primer, 3, seed=0)


BAD_ARGS = [
    ({"temperature": -0.1}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"top_p": -0.2}, "top_p"),
    ({"top_k": 0}, "top_k"),
    ({"top_k": -3}, "top_k"),
    ({"top_k": 2.5}, "top_k"),
    ({"n_notes": 0}, "n_notes"),
    ({"n_notes": -4}, "n_notes"),
    ({"n_notes": 3.5}, "n_notes"),
    ({"n_variations": 0}, "n_variations"),
    ({"n_variations": -1}, "n_variations"),
    ({"seed": -1}, "seed"),
    ({"min_duration": 5.0}, "clamps"),
    ({"cpu_threads": 0}, "cpu_threads"),
]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    BAD_ARGS,
    ids=[f"{next(iter(k))}={next(iter(k.values()))}" for k, _ in BAD_ARGS],
)
def test_bad_arguments_raise(model, normalizer, primer, kwargs, match):
    args = {"n_notes": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        generate(model, normalizer, primer, **args)


def test_bad_primers_raise(model, normalizer, primer):
    notes = primer.notes
    with pytest.raises(ValueError, match="has 31 notes; the model needs at least 32"):
        generate(model, normalizer, notes.iloc[:31], 4)
    with pytest.raises(ValueError, match="lacks the columns"):
        generate(model, normalizer, notes.drop(columns=["duration"]), 4)
    bad = notes.copy()
    bad.loc[bad.index[-1], "pitch"] = 200
    with pytest.raises(ValueError, match="primer pitches must lie in 0..127"):
        generate(model, normalizer, bad, 4)
    bad = notes.astype({"pitch": float, "velocity": float})
    bad.loc[bad.index[-1], "pitch"] = 60.5
    with pytest.raises(ValueError, match="whole MIDI numbers"):
        generate(model, normalizer, bad, 4)
    for velocity in (0, 300, -5, 64.5e9):
        bad = notes.astype({"velocity": float})
        bad.loc[bad.index[-2], "velocity"] = velocity
        with pytest.raises(ValueError, match="velocities must lie in 1..127"):
            generate(model, normalizer, bad, 4)
    bad = notes.copy()
    bad.loc[bad.index[-1], "step"] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        generate(model, normalizer, bad, 4)
    with pytest.raises(ValueError, match="note table"):
        generate(model, normalizer, [60] * 40, 4)


# --------------------------------------------------------------------------- MIDI files


def test_midi_file_read_back_by_pretty_midi_and_music21(model, normalizer, primer, tmp_path):
    r = generate(model, normalizer, primer, 24, n_variations=2, seed=3)
    paths = r.write_midi(tmp_path, stem="gen")
    assert [p.name for p in paths] == ["gen_1.mid", "gen_2.mid"]
    for path, tab in zip(paths, r.notes, strict=True):
        pm = pretty_midi.PrettyMIDI(str(path))
        notes = [n for inst in pm.instruments for n in inst.notes]
        assert len(notes) == len(tab) == 56
        assert sorted(n.pitch for n in notes) == sorted(tab["pitch"])
        assert pm.instruments[0].program == 0
        assert count_music21_notes(path) == len(tab)
    assert r.midi_bytes(0)[:4] == b"MThd"
    assert paths[0].read_bytes() == r.midi_bytes(0)


# --------------------------------------------------------------------------- metrics


def test_degeneration_stats_by_hand():
    st = degeneration_stats([60, 60, 60, 62, 64])
    assert st["notes"] == 5 and st["repeat_share"] == pytest.approx(2 / 4)
    assert st["longest_run"] == 3 and st["pitch_range"] == 4 and st["unique_pitches"] == 3
    h = -(0.6 * math.log2(0.6) + 2 * 0.2 * math.log2(0.2))
    assert st["pitch_class_entropy"] == pytest.approx(h)
    assert math.isnan(st["chord_share"])  # no steps in a plain pitch list
    # twelve pitch classes once each: maximal entropy, no repeats
    st = degeneration_stats(list(range(60, 72)))
    assert st["pitch_class_entropy"] == pytest.approx(math.log2(12))
    assert st["repeat_share"] == 0 and st["longest_run"] == 1
    table = pd.DataFrame({"pitch": [60, 64, 67, 72], "step": [0.5, 0.0, 0.005, 0.5]})
    assert degeneration_stats(table)["chord_share"] == pytest.approx(2 / 3)
    empty = degeneration_stats([])
    assert empty["notes"] == 0 and math.isnan(empty["repeat_share"])


def test_reference_stats_windows_and_means():
    a = pd.DataFrame({"pitch": [60] * 10, "step": [0.5] * 10})  # 2 windows of 5
    b = pd.DataFrame({"pitch": list(range(60, 85)), "step": [0.5] * 25})  # 5 windows
    ref = reference_stats([a, b], 5)
    assert ref["pieces"] == 2 and ref["windows"] == 7 and ref["notes"] == 5
    assert ref["repeat_share"] == pytest.approx((1.0 + 0.0) / 2)  # mean over pieces
    assert ref["pitch_range"] == pytest.approx((0 + 4) / 2)
    # longer than every piece: the longest available window is used, and says so
    long = reference_stats({"a": a, "b": b}, 100)
    assert long["notes"] == 25 and long["pieces"] == 1
    table = stats_table([degeneration_stats([60, 62])], ref)
    assert list(table.columns) == ["variation 1", "real (mean of 2 pieces)"]
    with pytest.raises(ValueError):
        reference_stats([], 5)


def test_real_chorales_are_not_degenerate(bach_splits):
    ref = reference_stats(bach_splits["test"], 64)
    assert ref["pieces"] > 10
    assert ref["repeat_share"] < 0.2 and ref["pitch_class_entropy"] > 2.0
    assert 0.3 < ref["chord_share"] < 0.95  # four voices: many chord tones


def test_primers_from_pieces_skips_short(bach_splits):
    pieces = bach_splits["test"][:3]
    primers = primers_from_pieces(pieces, min_notes=10_000, n_notes=None)
    assert primers == {}
    primers = primers_from_pieces(pieces)
    assert list(primers) == [p.id for p in pieces]
    # the opening 64 notes: the context sits mid-chorale, not after the final cadence
    first = pieces[0].notes
    pd.testing.assert_frame_equal(primers[pieces[0].id], first.iloc[:64].reset_index(drop=True))
    whole = primers_from_pieces(pieces, n_notes=None)
    assert len(whole[pieces[0].id]) == len(first)
    with pytest.raises(ValueError, match="at least min_notes"):
        primers_from_pieces(pieces, n_notes=10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_generation_on_cuda(model, normalizer, primer):
    m = copy.deepcopy(model).to("cuda")
    a = generate(m, normalizer, primer, 12, n_variations=4, seed=9)
    b = generate(m, normalizer, primer, 12, n_variations=4, seed=9)
    assert a.device.startswith("cuda") and next(m.parameters()).is_cuda
    for x, y in zip(a.notes, b.notes, strict=True):
        pd.testing.assert_frame_equal(x, y)
    greedy_gpu = generate(m, normalizer, primer, 4, temperature=0)
    greedy_cpu = generate(model, normalizer, primer, 4, temperature=0)
    assert pitches(greedy_gpu) == pitches(greedy_cpu)
    for tab in generate(forced(m, 1e4), normalizer, primer, 4, seed=0).notes:
        assert (tab["velocity"] == 127).all() and (tab["step"].iloc[32:] == MAX_STEP).all()


def test_copy_check_is_reported_for_every_variation(model, normalizer, primer, bach_splits):
    from melody_utils.metrics import CopyIndex

    index = CopyIndex(bach_splits["train"])
    r = generate(model, normalizer, primer, 24, n_variations=3, seed=2, copy_index=index)
    assert len(r.copies) == 3
    for i, match in enumerate(r.copies):
        assert match == index.longest_match(r.continuation(i))
        assert r.stats[i]["copied_run"] == match.length
        assert 1 <= match.length <= 24
    table = r.stats_table()
    assert "longest run of pitches also in the training set (notes)" in table.index
    assert "share of steps between 10 and 100 ms (flams)" in table.index
    assert generate(model, normalizer, primer, 4, seed=2).copies == []
