"""melody_utils.embeddings on hand-built embeddings whose structure is known, and on a tiny
model trained on real chorales (its start, its update and the decay between them)."""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from melody_utils.data import Normalizer, Piece, make_windows
from melody_utils.embeddings import (
    FIFTH_STEPS,
    INTERVAL_NAMES,
    compare_with_controls,
    cosine_similarity_matrix,
    embedding_table,
    export_projector_tsv,
    height_probe,
    learned_update,
    linear_probe,
    nearest_neighbours,
    permuted_embedding,
    pitch_class_centroids,
    pitch_class_circles,
    pitch_counts,
    random_init_embedding,
    seen_mask,
    similarity_by_interval,
)
from melody_utils.model import MelodyLSTM, ModelConfig, build_model
from melody_utils.notes import note_table
from melody_utils.train import TrainConfig, lr_lambda, train

SEEN = np.arange(36, 85)  # C2..C6: 49 pitches, every pitch class 4 or 5 times
#: Controls of the card's embedding size; the embedding is drawn first, so small LSTM sizes
#: give the same table (checked below) and the controls stay fast.
LIKE = ModelConfig(hidden_size=4, num_layers=1)


def circle_embedding(steps, noise: float = 0.01, seed: int = 0, dim: int = 96) -> np.ndarray:
    """Pitch class on a circle (``steps(c)`` of 12 around it), an octave angle and a
    pitch-class identity, mapped into ``dim`` dimensions by a random orthonormal map.

    With ``steps(c) = 7c mod 12`` (the circle of fifths) a fifth or a fourth is 30° apart,
    a semitone 210°, a tritone 180°; pitches an octave apart share the circle and identity.
    """
    rng = np.random.default_rng(seed)
    p = np.arange(128)
    a = 2 * np.pi * steps(p % 12) / 12
    b = 0.8 * (p // 12 - 1)
    parts = [np.stack([np.cos(a), np.sin(a), np.cos(b), np.sin(b)], 1), 0.7 * np.eye(12)[p % 12]]
    core = np.concatenate(parts, axis=1)
    q, _ = np.linalg.qr(rng.normal(size=(dim, core.shape[1])))
    return core @ q.T + noise * rng.normal(size=(128, dim))


@pytest.fixture(scope="module")
def mask() -> np.ndarray:
    counts = np.zeros(128, dtype=np.int64)
    counts[SEEN] = 10
    return seen_mask(counts)


@pytest.fixture(scope="module")
def E() -> np.ndarray:
    return circle_embedding(lambda c: (7 * c) % 12)


def with_junk_on_unseen(E, mask, kind: str) -> np.ndarray:
    out = E.copy()
    rng = np.random.default_rng(42)
    if kind == "huge":
        out[~mask] = 1e6 * rng.normal(size=((~mask).sum(), E.shape[1]))
    elif kind == "copies":  # exact copies of C4's vector: cosine 1 with it
        out[~mask] = E[60]
    else:
        out[~mask] = np.nan
    return out


# --------------------------------------------------------------------------- inputs


def test_embedding_table_counts_and_mask():
    model = build_model(seed=0)
    table = embedding_table(model)
    assert table.shape == (128, 96) and table.dtype == np.float64
    np.testing.assert_array_equal(table, model.embedding.weight.detach().numpy())
    with pytest.raises(TypeError, match="nn.Embedding"):
        embedding_table(MelodyLSTM(pitch_input="onehot", hidden_size=4, num_layers=1))
    notes = note_table([60, 62, 60, 64], [0, 1, 2, 3], [1, 2, 3, 4], [64] * 4)
    counts = pitch_counts([Piece("a", notes), Piece("b", notes.iloc[:2])])
    assert counts.shape == (128,) and counts.sum() == 6
    assert (counts[60], counts[62], counts[64]) == (3, 2, 1)
    m = seen_mask(counts, min_count=2)
    assert m.dtype == bool and np.flatnonzero(m).tolist() == [60, 62]
    with pytest.raises(ValueError, match="boolean"):
        cosine_similarity_matrix(table, counts)  # counts passed where a mask belongs
    with pytest.raises(ValueError, match="1-D"):
        seen_mask(np.zeros((2, 64)))


def test_pitch_counts_with_transposition_are_expected_occurrences():
    notes = note_table([60, 62, 60, 64], [0, 1, 2, 3], [1, 2, 3, 4], [64] * 4)
    counts = pitch_counts([Piece("a", notes)], transpose=(-1, 1))
    plain = pitch_counts([Piece("a", notes)])
    for p in range(128):  # each shift of -1, 0, +1 a third of the time
        expected = sum(plain[p - s] for s in (-1, 0, 1) if 0 <= p - s < 128) / 3
        assert counts[p] == pytest.approx(expected)
    assert counts.sum() == pytest.approx(plain.sum())
    assert np.flatnonzero(counts).tolist() == [59, 60, 61, 62, 63, 64, 65]
    with pytest.raises(ValueError, match="holding 0"):
        pitch_counts([Piece("a", notes)], transpose=(1, 3))


def test_random_init_embedding_is_the_models_start():
    before = torch.get_rng_state()
    got = random_init_embedding(123)
    assert torch.equal(before, torch.get_rng_state())  # the global RNG untouched
    np.testing.assert_array_equal(got, embedding_table(build_model(seed=123)))
    torch.manual_seed(123)
    np.testing.assert_array_equal(got, MelodyLSTM().embedding.weight.detach().numpy())
    assert not np.array_equal(random_init_embedding(124), got)
    np.testing.assert_array_equal(random_init_embedding(123, LIKE), got)  # drawn first
    np.testing.assert_array_equal(random_init_embedding(123, build_model(LIKE, 5)), got)
    assert random_init_embedding(0, replace(LIKE, embed_dim=8)).shape == (128, 8)
    assert abs(got.std() / 0.1 - 1.0) < 0.05  # N(0, 0.1²)
    np.testing.assert_allclose(
        random_init_embedding(123, ModelConfig(embed_init_std=0.05)), 0.5 * got, rtol=1e-6
    )


# --------------------------------------------------------------------------- similarity


def test_cosine_matrix_masks_unseen(E, mask):
    S = cosine_similarity_matrix(E, mask)
    assert S.shape == (128, 128)
    assert np.isnan(S[~mask]).all() and np.isnan(S[:, ~mask]).all()
    seen = S[np.ix_(mask, mask)]
    np.testing.assert_allclose(np.diag(seen), 1.0)
    np.testing.assert_allclose(seen, seen.T)
    u, v = E[60] / np.linalg.norm(E[60]), E[67] / np.linalg.norm(E[67])
    assert S[60, 67] == pytest.approx(u @ v)
    assert not np.isnan(cosine_similarity_matrix(E)).any()  # no mask: every row


def test_nearest_neighbours(E, mask):
    nn = nearest_neighbours(E, 60, k=4, mask=mask)
    assert list(nn.columns) == ["pitch", "name", "cosine", "interval"]
    assert set(nn["pitch"][:2]) == {48, 72}  # octaves first, then the fourth and fifth
    assert set(nn["pitch"][2:]) == {65, 67}
    assert set(nn["name"]) == {"C3", "C5", "F4", "G4"}
    assert sorted(nn["interval"]) == [-12, 5, 7, 12]
    assert nn["cosine"].is_monotonic_decreasing and 60 not in set(nn["pitch"])
    with pytest.raises(ValueError, match="not a seen pitch"):
        nearest_neighbours(E, 20, mask=mask)


def test_never_seen_pitches_change_nothing(E, mask):
    base_nn = nearest_neighbours(E, 60, k=6, mask=mask)
    base_int = similarity_by_interval(E, mask)
    base_probe = linear_probe(E, mask, "pitch_class")
    for kind in ("huge", "copies", "nan"):
        J = with_junk_on_unseen(E, mask, kind)
        pd.testing.assert_frame_equal(nearest_neighbours(J, 60, k=6, mask=mask), base_nn)
        pd.testing.assert_frame_equal(similarity_by_interval(J, mask), base_int)
        assert linear_probe(J, mask, "pitch_class") == base_probe
        np.testing.assert_array_equal(
            permuted_embedding(J, mask, 0)[mask], permuted_embedding(E, mask, 0)[mask]
        )
    J = with_junk_on_unseen(E, mask, "copies")  # without the mask the copies take over
    assert nearest_neighbours(J, 60, k=3)["cosine"].min() == pytest.approx(1.0)


def test_similarity_by_interval_finds_fifths_and_octaves(E, mask):
    t = similarity_by_interval(E, mask)
    assert list(t.index) == list(range(1, 13)) and list(t["name"]) == list(INTERVAL_NAMES)
    assert list(t.columns) == ["name", "mean", "std", "sem", "n_pairs"]
    assert t.loc[1, "n_pairs"] == 48 and t.loc[12, "n_pairs"] == 37
    mean = t["mean"]
    assert set(mean.loc[1:11].nlargest(2).index) == {5, 7}
    assert mean[12] > 0.8 and mean[12] > mean[7]
    assert mean[1] < 0.2 and mean[6] < 0.1
    assert (t["sem"] > 0).all() and (t["sem"] < t["std"]).all()
    assert similarity_by_interval(E, mask, max_interval=14).loc[14, "name"] == "14st"


def test_similarity_by_interval_by_hand():
    E = np.zeros((128, 2))
    E[60], E[61], E[62] = [1, 0], [0, 1], [1, 1]
    m = np.zeros(128, dtype=bool)
    m[[60, 61, 62]] = True
    t = similarity_by_interval(E, m, max_interval=3)
    c = 1 / np.sqrt(2)
    assert t.loc[1, "mean"] == pytest.approx((0 + c) / 2) and t.loc[1, "n_pairs"] == 2
    assert t.loc[2, "mean"] == pytest.approx(c) and t.loc[2, "n_pairs"] == 1
    assert t.loc[3, "n_pairs"] == 0 and np.isnan(t.loc[3, "mean"])


# --------------------------------------------------------------------------- probes


def test_linear_probe_reads_structure_not_noise(E, mask):
    pc = linear_probe(E, mask, "pitch_class")
    assert (pc["target"], pc["n_samples"], pc["n_classes"]) == ("pitch_class", 49, 12)
    assert pc["folds"] == 4  # the smallest pitch class has 4 seen pitches
    assert pc["accuracy"] > 0.95 and pc["chance"] < 0.15 and pc["dropped_classes"] == []
    octave = linear_probe(E, mask, "octave")
    assert octave["dropped_classes"] == [6]  # C6 (MIDI 84) alone in its octave
    assert octave["n_classes"] == 4 and octave["accuracy"] > 0.9
    R = random_init_embedding(0)
    assert linear_probe(R, mask, "pitch_class")["accuracy"] < 0.3  # near chance, 1/12
    assert linear_probe(R, mask, "octave")["accuracy"] < 0.6
    with pytest.raises(ValueError, match="target"):
        linear_probe(E, mask, "key")


def test_height_probe_reads_a_height_direction_not_noise(mask):
    rng = np.random.default_rng(0)
    H = np.outer((np.arange(128) - 60) / 12, rng.normal(size=96)) + rng.normal(size=(128, 96))
    assert height_probe(H, mask)["r2"] > 0.9
    assert height_probe(random_init_embedding(0), mask)["r2"] < 0.2
    out = height_probe(H, mask, cv=4, seed=1)
    assert out["folds"] == 4 and out["n_samples"] == 49 and out["r2_std"] >= 0


def test_pitch_class_circles_tell_fifths_from_semitones(mask):
    fifths = pitch_class_circles(circle_embedding(lambda c: (7 * c) % 12), mask)
    chromatic = pitch_class_circles(circle_embedding(lambda c: c), mask)
    assert set(fifths) == {"circle of fifths", "chromatic circle"}
    assert fifths["circle of fifths"] > 0.95 and fifths["chromatic circle"] < 0.5
    assert chromatic["chromatic circle"] > 0.95 and chromatic["circle of fifths"] < 0.5
    assert abs(pitch_class_circles(random_init_embedding(0), mask)["circle of fifths"]) < 0.5
    # height taken out: a pure height direction leaves no pitch-class direction
    C = pitch_class_centroids(circle_embedding(lambda c: (7 * c) % 12), mask)
    assert C.shape == (12, 96) and np.isfinite(C).all()
    assert FIFTH_STEPS == (0, 5, 2, 3, 4, 1, 6, 1, 4, 3, 2, 5)
    few = np.zeros(128, bool)
    few[[60, 62, 64]] = True
    with pytest.raises(ValueError):
        pitch_class_circles(random_init_embedding(0), few)


# --------------------------------------------------------------------------- controls


def test_permuted_embedding_keeps_vectors_destroys_structure(E, mask):
    P = permuted_embedding(E, mask, seed=0)
    np.testing.assert_array_equal(P[~mask], E[~mask])
    np.testing.assert_allclose(np.sort(P[mask], axis=0), np.sort(E[mask], axis=0))
    assert (P[mask] != E[mask]).any(axis=1).mean() > 0.8
    np.testing.assert_array_equal(permuted_embedding(E, mask, 0), P)  # reproducible
    before, after = similarity_by_interval(E, mask)["mean"], similarity_by_interval(P, mask)["mean"]
    assert before[7] - after[7] > 0.4 and before[12] - after[12] > 0.4
    assert after.max() - after.min() < 0.3


def test_learned_update_recovers_what_training_wrote_by_hand(E, mask):
    E0 = random_init_embedding(3)
    L_true = np.where(mask[:, None], 0.2 * E, 0.0)
    trained = 0.97 * E0 + L_true
    L, r = learned_update(trained, E0, mask)
    assert r == pytest.approx(0.97, rel=1e-12)
    np.testing.assert_allclose(L, L_true, atol=1e-12)
    assert similarity_by_interval(L, mask)["mean"][12] > 0.8  # the structure the start hides
    assert abs(similarity_by_interval(trained, mask)["mean"][12]) < 0.2
    with pytest.raises(ValueError, match="wrong seed"):
        learned_update(trained, random_init_embedding(4), mask)
    with pytest.raises(ValueError, match="every pitch is seen"):
        learned_update(trained, E0, np.ones(128, dtype=bool))


@pytest.mark.parametrize("decay", ["weights", "all"])
def test_a_trained_table_is_its_start_plus_the_learned_update(bach_splits, one_torch_thread, decay):
    """E = r E0 + L with E0 = random_init_embedding(seed): exactly where the run started.
    Untouched rows only decay: by nothing when the embedding is exempt, else by the
    product of AdamW's factors (1 - lr_t * wd) over the steps."""
    config = ModelConfig(embed_dim=8, hidden_size=16, num_layers=1)
    pieces = bach_splits["train"][:6]
    norm = Normalizer.fit(pieces)
    tw, vw = make_windows(pieces, norm), make_windows(bach_splits["val"][:1], norm)
    recipe = TrainConfig(
        steps=6, batch_size=16, warmup_steps=2, eval_every=6, train_eval_windows=0,
        transpose_min=0, transpose_max=0, decay=decay, weight_decay=0.1, seed=7,
    )  # fmt: skip
    model = build_model(config, seed=7)
    train(model, tw, vw, recipe, device="cpu", progress=False)
    E, E0 = embedding_table(model), random_init_embedding(7, config)
    seen = seen_mask(pitch_counts(pieces))
    L, r = learned_update(E, E0, seen)
    f = lr_lambda(recipe.warmup_steps, recipe.steps, recipe.min_lr_ratio)
    want = 1.0 if decay == "weights" else math.prod(1 - recipe.lr * f(k) * 0.1 for k in range(6))
    assert r == pytest.approx(want, rel=1e-6)
    np.testing.assert_allclose(E, r * E0 + L, rtol=0, atol=1e-12)
    np.testing.assert_allclose(L[~seen], 0.0, atol=1e-7)
    assert np.abs(L[seen]).sum(axis=1).min() > 0  # every seen pitch was written to
    with pytest.raises(ValueError, match="wrong seed"):
        learned_update(E, random_init_embedding(8, config), seen)


def fifth(E_, m_):
    return similarity_by_interval(E_, m_, max_interval=7)["mean"][7]


def test_compare_with_controls_separates_real_from_random(E, mask):
    real = compare_with_controls(fifth, E, mask, n_permutations=49, n_random=19, like=LIKE)
    assert list(real.columns) == [
        "trained",
        "random_init_mean",
        "random_init_std",
        "permuted_mean",
        "permuted_std",
        "p_random_init",
        "p_permuted",
        "beats_controls",
    ]
    assert real.index.name == "measure" and list(real.index) == ["value"]
    row = real.loc["value"]
    assert row["beats_controls"] and row["trained"] == pytest.approx(fifth(E, mask))
    assert row["p_permuted"] == pytest.approx(1 / 50) and row["p_random_init"] == 1 / 20
    assert abs(row["random_init_mean"]) < 0.1
    fake = compare_with_controls(
        fifth, random_init_embedding(999), mask, n_permutations=49, n_random=19, like=LIKE
    )
    assert not fake.loc["value", "beats_controls"] and fake.loc["value", "p_permuted"] > 0.05
    # lower is stronger: the same measure now cannot beat the controls
    low = compare_with_controls(
        fifth, E, mask, n_permutations=19, n_random=19, like=LIKE, higher_is_stronger=False
    )
    assert not low.loc["value", "beats_controls"] and low.loc["value", "p_permuted"] == 1.0


def test_compare_with_controls_on_a_profile_and_its_warning(E, mask):
    def profile(E_, m_):
        return similarity_by_interval(E_, m_)["mean"]

    # Bonferroni over 12 intervals: 0.05 / 12 is below the smallest p, 1 / 40
    with pytest.warns(UserWarning, match="can never be True"):
        out = compare_with_controls(profile, E, mask, n_permutations=99, n_random=39, like=LIKE)
    assert list(out.index) == list(range(1, 13)) and not out["beats_controls"].any()
    assert out.loc[7, "p_random_init"] == pytest.approx(1 / 40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 1/240 <= 0.05/12: no warning
        out = compare_with_controls(
            profile, E, mask, n_permutations=239, n_random=239, like=LIKE, seed=1
        )
    # fifth, fourth and octave closer than chance; the semitone (210°) and tritone not
    assert out.loc[[5, 7, 12], "beats_controls"].all()
    assert not out.loc[[1, 6], "beats_controls"].any()


# --------------------------------------------------------------------------- export


def test_export_projector_tsv(tmp_path, E, mask):
    counts = np.where(mask, 7, 0)
    counts[60] = 11
    vec_path, meta_path = export_projector_tsv(E, counts, tmp_path / "proj")
    assert (vec_path.name, meta_path.name) == ("vectors.tsv", "metadata.tsv")
    vectors = np.loadtxt(vec_path, delimiter="\t")
    assert vectors.shape == (49, 96)  # unseen pitches left out by default
    np.testing.assert_allclose(vectors, E[mask], rtol=1e-7, atol=1e-12)
    first = vec_path.read_text().splitlines()[0].split("\t")
    assert len(first) == 96 and float(first[0]) == pytest.approx(E[36, 0])  # no header row
    lines = meta_path.read_text().splitlines()
    assert lines[0] == "name\tpitch\tpitch_class\toctave\tcount\tseen" and len(lines) == 50
    meta = pd.read_csv(meta_path, sep="\t")
    assert meta["pitch"].tolist() == SEEN.tolist() and meta["seen"].all()
    row = meta.set_index("pitch").loc[60]
    assert (row["name"], row["pitch_class"], row["octave"], row["count"]) == ("C4", "C", 4, 11)
    _, meta_all = export_projector_tsv(E, counts, tmp_path / "all", include_unseen=True)
    full = pd.read_csv(meta_all, sep="\t")
    assert len(full) == 128 and full["seen"].sum() == 49
    assert np.loadtxt(tmp_path / "all" / "vectors.tsv", delimiter="\t").shape == (128, 96)
    assert full.loc[61, "name"] == "C#4" and not full.loc[0, "seen"]
    with pytest.raises(ValueError, match="nothing to export"):
        export_projector_tsv(E, np.zeros(128), tmp_path / "none")
    with pytest.raises(ValueError, match="counts"):
        export_projector_tsv(E, counts[:10], tmp_path / "bad")
