"""Splits, the normalizer and windows, on the real Bach corpus."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from melody_utils.corpus import Piece
from melody_utils.data import Normalizer, make_windows, split_pieces, split_summary
from melody_utils.notes import note_table


def test_split_is_by_piece_and_reproducible(bach, bach_splits):
    ids = {k: {p.id for p in v} for k, v in bach_splits.items()}
    assert not ids["train"] & ids["val"]
    assert not ids["train"] & ids["test"]
    assert not ids["val"] & ids["test"]
    assert set().union(*ids.values()) == {p.id for p in bach}
    assert len(ids["train"]) > len(ids["val"]) > 0 and len(ids["test"]) > 0
    again = split_pieces(list(reversed(bach)), seed=0)
    assert {k: [p.id for p in v] for k, v in again.items()} == {
        k: [p.id for p in v] for k, v in bach_splits.items()
    }
    other = split_pieces(bach, seed=1)
    assert {p.id for p in other["test"]} != ids["test"]


def test_split_rejects_bad_fractions(bach):
    with pytest.raises(ValueError, match="fractions"):
        split_pieces(bach, fractions=(0.5, 0.5, 0.5))


def test_normalizer_round_trip_and_json(bach_splits, tmp_path):
    norm = Normalizer.fit(bach_splits["train"])
    raw = np.concatenate(
        [p.notes[["step", "duration", "velocity"]].to_numpy() for p in bach_splits["test"]]
    )
    z = norm.transform(raw)
    assert z.dtype == np.float32
    back = norm.inverse_transform(z)
    np.testing.assert_allclose(back, raw, rtol=1e-5, atol=1e-6)
    # fitted on train only: train features are standardised, velocity is flagged constant
    ztrain = norm.transform(
        np.concatenate(
            [p.notes[["step", "duration", "velocity"]].to_numpy() for p in bach_splits["train"]]
        )
    )
    np.testing.assert_allclose(ztrain[:, :2].mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(ztrain[:, :2].std(0), 1, atol=1e-3)
    assert norm.degenerate == (False, False, True)
    stored = json.loads(json.dumps(norm.to_dict()))  # as in a checkpoint's sidecar
    assert stored["features"] == ["step", "duration", "velocity"]
    np.testing.assert_array_equal(Normalizer.from_dict(stored).transform(raw), z)


def test_normalizer_uses_training_split_only():
    train = np.array([[0.0, 0.5, 60], [0.5, 0.5, 80], [0.25, 1.0, 100]])
    test = np.array([[4.0, 8.0, 20]])
    a = Normalizer.fit(train)
    b = Normalizer.fit(np.concatenate([train, test]))
    assert not np.allclose(a.mean, b.mean)
    with pytest.raises(ValueError, match="non-negative"):
        a.transform(np.array([[-1.0, 0.5, 60]]))


def test_windows_line_up_with_the_note_table(bach_splits):
    norm = Normalizer.fit(bach_splits["train"])
    pieces = bach_splits["val"][:5]
    w = make_windows(pieces, norm)
    assert w.pitch_seq.dtype == torch.int64 and w.target_pitch.dtype == torch.int64
    assert w.cont_seq.dtype == torch.float32 and w.target_cont.dtype == torch.float32
    n = sum(len(p) - 32 for p in pieces)
    assert w.pitch_seq.shape == (n, 32) and w.cont_seq.shape == (n, 32, 3)
    assert w.target_pitch.shape == (n,) and w.target_cont.shape == (n, 3)
    # window k of the second piece: the target is really its (k+33)-th note
    first = len(pieces[0]) - 32
    notes = pieces[1].notes
    for k in (0, 5, len(notes) - 33):
        i = first + k
        assert w.pitch_seq[i].tolist() == notes["pitch"].iloc[k : k + 32].tolist()
        assert int(w.target_pitch[i]) == int(notes["pitch"].iloc[k + 32])
        raw = norm.inverse_transform(w.target_cont[i].numpy())
        np.testing.assert_allclose(
            raw,
            notes[["step", "duration", "velocity"]].iloc[k + 32].to_numpy(),
            rtol=1e-4,
            atol=1e-5,
        )


def test_split_summary_counts(bach_splits):
    table = split_summary(bach_splits)
    assert table.loc["total", "pieces"] == sum(len(v) for v in bach_splits.values())
    assert table.loc["val", "windows"] == sum(len(p) - 32 for p in bach_splits["val"])


def test_pieces_shorter_than_a_window_give_no_windows():
    notes = note_table(
        list(range(60, 80)), np.arange(20) * 0.5, np.arange(20) * 0.5 + 0.4, [80] * 20
    )
    norm = Normalizer.fit(notes[["step", "duration", "velocity"]].to_numpy())
    w = make_windows([Piece("short", notes)], norm)
    assert w.pitch_seq.shape == (0, 32)


def test_gathered_windows_equal_materialised_ones_for_every_index(bach_splits):
    norm = Normalizer.fit(bach_splits["train"])
    pieces = bach_splits["val"]
    w = make_windows(pieces, norm)
    # the first version's way: every stride-1 window written out, piece after piece
    pitch, cont, tp, tc = [], [], [], []
    for p in pieces:
        pp = p.notes["pitch"].to_numpy(np.int64)
        cc = norm.transform(p.notes[["step", "duration", "velocity"]].to_numpy(np.float64))
        for i in range(len(pp) - 32):
            pitch.append(pp[i : i + 32])
            cont.append(cc[i : i + 32])
            tp.append(pp[i + 32])
            tc.append(cc[i + 32])
    assert len(w) == len(pitch)
    every = torch.arange(len(w))
    ps, cs, tps, tcs = w.batch(every)
    assert torch.equal(ps, torch.from_numpy(np.stack(pitch)))
    assert torch.equal(cs, torch.from_numpy(np.stack(cont)))
    assert torch.equal(tps, torch.from_numpy(np.array(tp)))
    assert torch.equal(tcs, torch.from_numpy(np.stack(tc)))
    # in any order, and chunk by chunk
    perm = torch.randperm(len(w), generator=torch.Generator().manual_seed(0))
    assert torch.equal(w.batch(perm)[0], ps[perm])
    chunks = list(w.chunks(1000))
    assert torch.equal(torch.cat([c[0] for c in chunks]), ps)


def test_windows_take_at_most_16_bytes_per_note(bach_splits):
    norm = Normalizer.fit(bach_splits["train"])
    w = make_windows(bach_splits["train"], norm)
    assert w.nbytes / w.n_notes <= 16
    assert w.pitch.dtype == torch.uint8 and w.cont.dtype == torch.float32
    assert "windows of 32+1 notes" in repr(w)


def test_windows_reject_bad_input(bach_splits):
    norm = Normalizer.fit(bach_splits["train"])
    with pytest.raises(ValueError, match="seq_len"):
        make_windows(bach_splits["val"], norm, seq_len=0)
    bad = Piece("bad", bach_splits["val"][0].notes.assign(pitch=200))
    with pytest.raises(ValueError, match="0..127"):
        make_windows([bad], norm)


def test_windows_take_numpy_and_list_indices_and_refuse_bad_ones(bach_splits):
    norm = Normalizer.fit(bach_splits["train"])
    w = make_windows(bach_splits["val"][:3], norm)
    want = w.batch(torch.tensor([0, 5, len(w) - 1]))
    for idx in (
        np.array([0, 5, len(w) - 1]),
        [0, 5, len(w) - 1],
        np.array([0, 5, len(w) - 1], np.int32),
    ):
        got = w.batch(idx)
        assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    for bad in ([-1], [len(w)], torch.tensor([0, len(w) + 7])):
        with pytest.raises(IndexError, match="out of range"):
            w.gather(bad)
    with pytest.raises(TypeError, match="integers"):
        w.gather(np.array([0.0, 1.5]))
