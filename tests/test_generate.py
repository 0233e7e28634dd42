"""melody_utils.generate with the committed checkpoint and real chorale primers: seeds,
sampling (temperature, top-k, top-p), clamps and feedback, the primer's checks and the
velocity rule, the program, MIDI files read back, the copy check and the primers."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from melody_utils.data import Normalizer, Piece
from melody_utils.generate import (
    MAX_DURATION,
    MAX_STEP,
    MAX_VELOCITY_Z,
    MIN_DURATION,
    GenerationResult,
    filter_logits,
    generate,
    primers_from_pieces,
    sampling_probs,
)
from melody_utils.metrics import MEASURES, CopyIndex, measures, reference_stats
from melody_utils.notes import CHURCH_ORGAN, PIANO, parse_midi
from melody_utils.train import load_checkpoint

COLUMNS = ["pitch", "start", "end", "step", "duration", "velocity", "program", "generated"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """These tiny batches run on one torch thread."""


@pytest.fixture(scope="module")
def trained():
    model, normalizer, _ = load_checkpoint()
    return model, normalizer


@pytest.fixture(scope="module")
def model(trained):
    return trained[0]


@pytest.fixture(scope="module")
def normalizer(trained):
    return trained[1]


@pytest.fixture(scope="module")
def primer(bach_splits):
    return bach_splits["test"][0]


def first_logits(model, normalizer, notes: pd.DataFrame) -> torch.Tensor:
    """The model's pitch logits for the first generated note, computed independently."""
    ctx = notes.iloc[-32:]
    pitch = torch.tensor(ctx["pitch"].to_numpy(np.int64))[None]
    raw = ctx[["step", "duration", "velocity"]].to_numpy(np.float64)
    cont = torch.from_numpy(normalizer.transform(raw))[None]
    with torch.no_grad():
        return model(pitch, cont)[0][0]


def pitches(result: GenerationResult, i: int = 0) -> list[int]:
    return result.continuation(i)["pitch"].tolist()


# --------------------------------------------------------------------------- the result


def test_result_tables_stats_and_settings(model, normalizer, primer):
    r = generate(model, normalizer, primer, 12, n_variations=3, seed=0)
    assert len(r) == r.n_variations == 3 and r.split_at == 32 and r.seed == 0
    assert r.device == "cpu" and r.messages == [] and r.copies == [] and r.seconds > 0
    assert r.settings["n_notes"] == 12 and r.settings["window"] == 32
    assert r.settings["time_head"] == "regression" and r.settings["temperature"] == 1.0
    ctx = primer.notes.iloc[-32:]
    for tab, st in zip(r.notes, r.stats, strict=True):
        assert list(tab.columns) == COLUMNS and len(tab) == 32 + 12
        assert tab["generated"].tolist() == [False] * 32 + [True] * 12
        assert tab["pitch"].iloc[:32].tolist() == ctx["pitch"].tolist()
        assert tab["pitch"].between(0, 127).all() and tab["velocity"].dtype == np.int64
        assert tab["start"].iloc[0] == 0  # times follow from the steps, from 0
        np.testing.assert_allclose(np.diff(tab["start"]), tab["step"].iloc[1:], atol=1e-9)
        np.testing.assert_allclose(tab["end"], tab["start"] + tab["duration"], atol=1e-12)
        np.testing.assert_allclose(tab["duration"].iloc[:32], ctx["duration"], atol=1e-12)
        assert st == measures(tab.iloc[32:]) and st["notes"] == 12
        assert set(st) == set(MEASURES) - {"copied_run"}
    pd.testing.assert_frame_equal(r.continuation(1), r.notes[1].iloc[32:])
    table = r.stats_table(reference_stats(primers_from_pieces([primer]), 12))
    assert list(table.columns)[:3] == ["variation 1", "variation 2", "variation 3"]
    assert table.notna().all().all()


def test_primer_as_piece_table_or_last_window_gives_the_same_music(model, normalizer, primer):
    a = generate(model, normalizer, primer, 6, seed=1)
    b = generate(model, normalizer, primer.notes, 6, seed=1)
    c = generate(model, normalizer, primer.notes.iloc[-32:].reset_index(drop=True), 6, seed=1)
    pd.testing.assert_frame_equal(a.notes[0], b.notes[0])
    pd.testing.assert_frame_equal(a.notes[0], c.notes[0])


# --------------------------------------------------------------------------- seeds


def test_same_seed_same_music_other_seeds_differ(model, normalizer, primer):
    a = generate(model, normalizer, primer, 16, n_variations=2, seed=42)
    b = generate(model, normalizer, primer, 16, n_variations=2, seed=42)
    c = generate(model, normalizer, primer, 16, n_variations=2, seed=43)
    for x, y in zip(a.notes, b.notes, strict=True):
        pd.testing.assert_frame_equal(x, y)
    assert pitches(a, 0) != pitches(c, 0)
    assert pitches(a, 0) != pitches(a, 1)  # variations differ from each other


def test_a_variation_does_not_depend_on_the_batch(model, normalizer, primer):
    one = generate(model, normalizer, primer, 10, n_variations=1, seed=5)
    three = generate(model, normalizer, primer, 10, n_variations=3, seed=5)
    assert pitches(one) == pitches(three)
    np.testing.assert_allclose(one.notes[0]["start"], three.notes[0]["start"], atol=1e-4)


def test_a_drawn_seed_is_recorded_and_reproduces(model, normalizer, primer):
    a = generate(model, normalizer, primer, 8)
    assert isinstance(a.seed, int) and 0 <= a.seed < 2**31 and a.settings["seed"] == a.seed
    assert pitches(generate(model, normalizer, primer, 8, seed=a.seed)) == pitches(a)


# --------------------------------------------------------------------------- sampling


def test_temperature_zero_is_the_argmax_whatever_the_seed(model, normalizer, primer):
    a = generate(model, normalizer, primer, 8, temperature=0, seed=1)
    b = generate(model, normalizer, primer, 8, temperature=0, seed=2, n_variations=3)
    assert pitches(a) == pitches(b, 0) == pitches(b, 1) == pitches(b, 2)
    assert pitches(a)[0] == int(first_logits(model, normalizer, primer.notes).argmax())
    # top-k 1 and a tiny nucleus leave only the argmax too
    assert pitches(generate(model, normalizer, primer, 8, top_k=1, seed=3)) == pitches(a)
    assert pitches(generate(model, normalizer, primer, 8, top_p=1e-6, seed=4)) == pitches(a)


def test_the_temperature_zero_rule_lives_in_sampling_probs():
    logits = torch.tensor([[1.0, 3.0, 3.0, -2.0], [0.0, -1.0, 5.0, 4.9]])
    probs = sampling_probs(logits, 0)
    torch.testing.assert_close(probs, torch.tensor([[0.0, 1, 0, 0], [0, 0, 1, 0]]))  # first max
    # top-k and top-p do not change the argmax
    torch.testing.assert_close(sampling_probs(logits, 0, top_k=3, top_p=0.5), probs)


@pytest.mark.parametrize("temperature", [1e-300, 2.3e-308, 1e-320, 5e-324])
def test_tiny_temperatures_take_the_limit(model, normalizer, primer, temperature):
    """Below ~2.3e-308 logits / T overflowed to inf and every note became 127."""
    greedy = generate(model, normalizer, primer, 4, temperature=0)
    tiny = generate(model, normalizer, primer, 4, temperature=temperature, n_variations=2)
    assert pitches(tiny, 0) == pitches(tiny, 1) == pitches(greedy)
    probs = sampling_probs(torch.tensor([[1.0, 3.0, 3.0, -2.0]]), temperature)
    torch.testing.assert_close(probs, torch.tensor([[0.0, 0.5, 0.5, 0.0]]))  # ties share


def test_a_huge_temperature_is_uniform():
    probs = sampling_probs(torch.tensor([[1.0, 30.0, -5.0, 0.0]], dtype=torch.float64), 1e300)
    torch.testing.assert_close(probs, torch.full((1, 4), 0.25, dtype=torch.float64))


def test_filter_logits_on_a_known_distribution():
    logits = torch.tensor([[0.05, 0.5, 0.15, 0.3]]).log()

    def kept(out):
        return set(torch.isfinite(out[0]).nonzero().flatten().tolist())

    assert kept(filter_logits(logits, top_k=2)) == {1, 3}
    assert kept(filter_logits(logits, top_k=1)) == {1}
    assert kept(filter_logits(logits, top_k=10)) == {0, 1, 2, 3}
    assert kept(filter_logits(logits, top_p=0.4)) == {1}
    assert kept(filter_logits(logits, top_p=0.75)) == {1, 3}
    assert kept(filter_logits(logits, top_p=0.85)) == {1, 2, 3}
    assert kept(filter_logits(logits, top_p=1.0)) == {0, 1, 2, 3}
    assert kept(filter_logits(logits, top_k=3, top_p=0.75)) == {1, 3}
    assert kept(filter_logits(logits, top_p=1e-9)) == {1}  # the most likely always survives
    out = filter_logits(logits, top_k=2)
    torch.testing.assert_close(out[0, [1, 3]], logits[0, [1, 3]])  # survivors unchanged


def test_top_k_and_top_p_restrict_the_first_note(model, normalizer, primer):
    logits = first_logits(model, normalizer, primer.notes).double() / 2.0
    top3 = set(torch.topk(logits, 3).indices.tolist())
    probs = logits.softmax(-1)
    order = torch.argsort(probs, descending=True)
    nucleus = set(order[: int((probs[order].cumsum(0) < 0.5).sum()) + 1].tolist())

    def firsts(**kw):
        r = generate(model, normalizer, primer, 1, temperature=2.0, n_variations=64, seed=0, **kw)
        return {pitches(r, i)[0] for i in range(64)}

    free = firsts()
    assert len(free) > max(3, len(nucleus))  # unfiltered sampling spreads
    assert firsts(top_k=3) <= top3
    assert firsts(top_p=0.5) <= nucleus


def test_temperature_comes_before_the_nucleus(model, normalizer, primer):
    logits = first_logits(model, normalizer, primer.notes).double()

    def nucleus(scaled, p):
        probs = scaled.softmax(-1)
        order = torch.argsort(probs, descending=True)
        return set(order[(probs[order].cumsum(0) - probs[order]) < p].tolist())

    tempered, untempered = nucleus(logits / 2.0, 0.9), nucleus(logits, 0.9)
    assert len(tempered) > len(untempered), "the test needs the two nuclei to differ"
    probs = sampling_probs(logits[None], 2.0, None, 0.9)[0]
    expected = torch.zeros(128, dtype=torch.float64)
    idx = torch.tensor(sorted(tempered))
    expected[idx] = (logits[idx] / 2.0).softmax(-1)
    torch.testing.assert_close(probs, expected)


# --------------------------------------------------------------------------- arguments


BAD_ARGS = [
    ({"n_notes": 0}, "n_notes"),
    ({"n_notes": -4}, "n_notes"),
    ({"n_notes": 3.5}, "n_notes"),
    ({"n_notes": True}, "n_notes"),
    ({"temperature": -0.1}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"temperature": float("inf")}, "temperature"),
    ({"temperature": True}, "temperature"),
    ({"temperature": "1"}, "temperature"),
    ({"top_k": 0}, "top_k"),
    ({"top_k": -3}, "top_k"),
    ({"top_k": 2.5}, "top_k"),
    ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"top_p": -0.2}, "top_p"),
    ({"top_p": float("nan")}, "top_p"),
    ({"n_variations": 0}, "n_variations"),
    ({"n_variations": 1.0}, "n_variations"),
    ({"seed": -1}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"program": 128}, "program"),
    ({"program": -1}, "program"),
    ({"program": "piano"}, "program"),
    ({"min_duration": 5.0}, "clamps"),
    ({"min_duration": -0.1}, "clamps"),
    ({"max_step": -1.0}, "clamps"),
    ({"cpu_threads": 0}, "cpu_threads"),
    ({"time_temperature": -1.0}, "time_temperature"),
]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    BAD_ARGS,
    ids=[f"{next(iter(k))}={next(iter(k.values()))}" for k, _ in BAD_ARGS],
)
def test_bad_arguments_are_value_errors(model, normalizer, primer, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate(model, normalizer, primer, **{"n_notes": 4, **kwargs})


def test_bad_primers_are_value_errors(model, normalizer, primer):
    notes = primer.notes
    with pytest.raises(ValueError, match="primer has 31 notes; the model's window needs 32"):
        generate(model, normalizer, notes.iloc[:31], 4)
    with pytest.raises(ValueError, match="lacks the columns"):
        generate(model, normalizer, notes.drop(columns=["duration"]), 4)
    bad = notes.copy()
    bad.loc[bad.index[-1], "pitch"] = 200
    with pytest.raises(ValueError, match="whole MIDI numbers in 0..127"):
        generate(model, normalizer, bad, 4)
    bad = notes.astype({"pitch": float})
    bad.loc[bad.index[-1], "pitch"] = 60.5
    with pytest.raises(ValueError, match="whole MIDI numbers"):
        generate(model, normalizer, bad, 4)
    for velocity in (0, 300, -5):
        bad = notes.copy()
        bad.loc[bad.index[-2], "velocity"] = velocity
        with pytest.raises(ValueError, match="velocities must be in 1..127"):
            generate(model, normalizer, bad, 4)
    bad = notes.copy()
    bad.loc[bad.index[-1], "step"] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        generate(model, normalizer, bad, 4)
    bad = notes.copy()
    bad.loc[bad.index[-1], "duration"] = -0.5
    with pytest.raises(ValueError, match="non-negative"):
        generate(model, normalizer, bad, 4)
    with pytest.raises(ValueError, match="numbers"):
        generate(model, normalizer, notes.assign(step="x"), 4)
    with pytest.raises(ValueError, match="note DataFrame or a Piece"):
        generate(model, normalizer, [60] * 40, 4)


# --------------------------------------------------------------------------- the primer's rules


def test_primer_velocities_outside_the_training_range_are_replaced(model, normalizer, primer):
    """The chorales are all velocity 64: a primer at 80 would ask the model about a value
    it never saw. It is replaced by the training value, and the result says so."""
    assert normalizer.degenerate[2] and normalizer.mean[2] == 64
    loud = primer.notes.assign(velocity=80)
    r = generate(model, normalizer, loud, 8, seed=0)
    assert (r.notes[0]["velocity"].iloc[:32] == 64).all()
    assert len(r.messages) == 1
    msg = r.messages[0]
    assert "32 velocities (80..80)" in msg and "all 64" in msg and "set to 64..64" in msg
    same = generate(model, normalizer, primer.notes, 8, seed=0)
    pd.testing.assert_frame_equal(r.notes[0], same.notes[0])  # the same music as at 64
    assert same.messages == []


def test_velocity_rule_with_a_spread_of_training_velocities(model, normalizer, primer):
    mean, std = normalizer.mean.copy(), normalizer.std.copy()
    std[2] = 2.0  # training velocities 64 ± 2: 4 sd is 56..72
    spread = Normalizer(mean, std, normalizer.eps, (False, False, False))
    notes = primer.notes.copy()
    velocity = np.full(len(notes), 64)
    velocity[-32:-29] = [50, 60, 90]  # too soft, inside, too loud
    r = generate(model, spread, notes.assign(velocity=velocity), 4, seed=0)
    ctx = r.notes[0]["velocity"].iloc[:32].tolist()
    lo, hi = 64 - MAX_VELOCITY_Z * 2, 64 + MAX_VELOCITY_Z * 2
    assert ctx[:3] == [lo, 60, hi] and ctx[3:] == [64] * 29
    assert len(r.messages) == 1 and "2 velocities (50..90)" in r.messages[0]
    assert "(mean ± 4 sd)" in r.messages[0]


@pytest.mark.parametrize(
    "column, value, limit", [("step", 1e9, MAX_STEP), ("duration", 600.0, MAX_DURATION)]
)
def test_implausible_primer_times_are_shortened_with_a_message(
    model, normalizer, primer, column, value, limit
):
    bad = primer.notes.copy()
    bad.loc[bad.index[-5], column] = value
    r = generate(model, normalizer, bad, 4, seed=0)
    assert len(r.messages) == 1 and column in r.messages[0] and "shortened" in r.messages[0]
    assert r.notes[0][column].iloc[:32].max() == limit


def test_the_program_is_the_primers_else_piano(model, normalizer, primer):
    assert (primer.notes["program"] == CHURCH_ORGAN).all()
    organ = generate(model, normalizer, primer, 4, seed=0)
    assert (organ.notes[0]["program"] == CHURCH_ORGAN).all()
    bare = generate(model, normalizer, primer.notes.drop(columns="program"), 4, seed=0)
    assert (bare.notes[0]["program"] == PIANO).all()
    chosen = generate(model, normalizer, primer, 4, seed=0, program=40)
    assert (chosen.notes[0]["program"] == 40).all()
    assert pitches(chosen) == pitches(organ)  # the instrument is not an input of the model


# --------------------------------------------------------------------------- clamps and feedback


def forced(model, value: float):
    """A copy whose continuous head always outputs ``value`` (normalized units)."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        m.cont_head.weight.zero_()
        m.cont_head.bias.fill_(value)
    return m


@pytest.mark.parametrize("value", [1e4, -1e4])
def test_clamps_hold_for_extreme_outputs(model, normalizer, primer, value):
    r = generate(forced(model, value), normalizer, primer, 6, n_variations=2, seed=0)
    for tab in r.notes:
        gen = tab.iloc[32:]
        assert np.isfinite(tab[["start", "end"]].to_numpy()).all()
        if value > 0:
            assert (gen["step"] == MAX_STEP).all() and (gen["duration"] == MAX_DURATION).all()
            assert (gen["velocity"] == 127).all()
        else:
            assert (gen["step"] == 0).all() and (gen["duration"] == MIN_DURATION).all()
            assert (gen["velocity"] == 1).all()
    tight = generate(
        forced(model, 1e4), normalizer, primer, 3, seed=0, max_step=1.0, max_duration=0.5
    )
    assert (tight.continuation()["step"] == 1.0).all()
    assert (tight.continuation()["duration"] == 0.5).all()


def test_tiny_steps_snap_to_chord_tones(model, normalizer, primer):
    z = (np.log(0.005 + normalizer.eps) - normalizer.mean[0]) / normalizer.std[0]  # ~5 ms
    r = generate(forced(model, float(z)), normalizer, primer, 4, seed=0)
    assert (r.continuation()["step"] == 0).all()
    z = (np.log(0.02 + normalizer.eps) - normalizer.mean[0]) / normalizer.std[0]  # 20 ms
    r = generate(forced(model, float(z)), normalizer, primer, 4, seed=0)
    np.testing.assert_allclose(r.continuation()["step"], 0.02, rtol=1e-4)


def test_the_next_window_reads_the_clamped_notes(model, normalizer, primer):
    m = forced(model, 1e4)
    calls = []
    features = m.features

    def recording(pitch_seq, cont_seq, from_step=None):
        calls.append((pitch_seq.clone(), cont_seq.clone()))
        return features(pitch_seq, cont_seq, from_step)

    m.features = recording
    r = generate(m, normalizer, primer, 3, n_variations=2, seed=0)
    assert len(calls) == 3
    clamped = normalizer.transform(np.array([[MAX_STEP, MAX_DURATION, 127.0]]))[0]
    for step in (1, 2):
        pitch_seq, cont_seq = calls[step]
        assert pitch_seq.shape == (2, 32) and cont_seq.shape == (2, 32, 3)
        for b in range(2):
            assert int(pitch_seq[b, -1]) == pitches(r, b)[step - 1]
            np.testing.assert_allclose(cont_seq[b, -1].numpy(), clamped, rtol=1e-6)
        assert torch.equal(pitch_seq[:, :-1], calls[step - 1][0][:, 1:])  # slid by one note


def test_threads_and_mode_are_restored_and_dropout_is_off(model, normalizer, primer):
    m = copy.deepcopy(model).train()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        a = generate(m, normalizer, primer, 6, temperature=0, cpu_threads=1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert m.training
    assert pitches(a) == pitches(generate(model, normalizer, primer, 6, temperature=0))


def test_non_finite_model_outputs_raise(model, normalizer, primer):
    m = copy.deepcopy(model)
    with torch.no_grad():
        m.pitch_head.bias.fill_(float("nan"))
    with pytest.raises(RuntimeError, match="non-finite"):
        generate(m, normalizer, primer, 3, seed=0)


# --------------------------------------------------------------------- MIDI and the copy check


def test_midi_bytes_and_files_read_back(model, normalizer, primer, tmp_path):
    r = generate(model, normalizer, primer, 24, n_variations=2, seed=3)
    paths = r.write_midi(tmp_path / "out", stem="gen")
    assert [p.name for p in paths] == ["gen_1.mid", "gen_2.mid"]
    for i, (path, tab) in enumerate(zip(paths, r.notes, strict=True)):
        assert path.read_bytes() == r.midi_bytes(i) and r.midi_bytes(i)[:4] == b"MThd"
        back = parse_midi(path).notes
        assert len(back) == len(tab) == 56
        assert (back["program"] == CHURCH_ORGAN).all()
        key = ["start", "pitch"]
        got = back.sort_values(key)[["pitch", "start", "velocity"]].to_numpy(float)
        want = tab.sort_values(key)[["pitch", "start", "velocity"]].to_numpy(float)
        np.testing.assert_allclose(got, want, atol=2e-3)


def test_the_copy_check_adds_copied_run(model, normalizer, primer, bach_splits):
    index = CopyIndex(bach_splits["train"][:60])
    r = generate(model, normalizer, primer, 24, n_variations=3, seed=2, copy_index=index)
    assert len(r.copies) == 3
    for i, match in enumerate(r.copies):
        assert match == index.longest_match(r.continuation(i))
        assert r.stats[i]["copied_run"] == match.length >= 1
        assert set(r.stats[i]) == set(MEASURES)
    assert MEASURES["copied_run"] in r.stats_table().index
    plain = generate(model, normalizer, primer, 24, n_variations=3, seed=2)
    assert plain.copies == [] and MEASURES["copied_run"] not in plain.stats_table().index
    assert [pitches(plain, i) for i in range(3)] == [pitches(r, i) for i in range(3)]


def test_primers_from_pieces(bach_splits):
    pieces = bach_splits["test"][:3]
    short = Piece("short", pieces[0].notes.iloc[:20])
    primers = primers_from_pieces([*pieces, short])
    assert list(primers) == [p.id for p in pieces]  # too short to prime: left out
    pd.testing.assert_frame_equal(
        primers[pieces[0].id], pieces[0].notes.iloc[:64].reset_index(drop=True)
    )
    whole = primers_from_pieces(pieces, n_notes=None)
    assert len(whole[pieces[0].id]) == len(pieces[0])
    assert len(primers_from_pieces(pieces, n_notes=32)[pieces[1].id]) == 32
    with pytest.raises(ValueError, match="at least the window"):
        primers_from_pieces(pieces, n_notes=10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_generation_on_cuda(model, normalizer, primer):
    m = copy.deepcopy(model).to("cuda")
    a = generate(m, normalizer, primer, 12, n_variations=4, seed=9)
    b = generate(m, normalizer, primer, 12, n_variations=4, seed=9)
    assert a.device.startswith("cuda")
    for x, y in zip(a.notes, b.notes, strict=True):
        pd.testing.assert_frame_equal(x, y)
    greedy_gpu = generate(m, normalizer, primer, 4, temperature=0)
    assert pitches(greedy_gpu) == pitches(generate(model, normalizer, primer, 4, temperature=0))
