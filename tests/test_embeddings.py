"""Embedding analysis on hand-built embeddings whose structure is known."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from melody_utils.data import Piece, note_table
from melody_utils.embeddings import (
    compare_with_controls,
    cosine_similarity_matrix,
    embedding_table,
    export_projector_tsv,
    height_probe,
    learned_update,
    linear_probe,
    nearest_neighbours,
    permuted_embedding,
    pitch_counts,
    random_init_embedding,
    seen_mask,
    similarity_by_interval,
)
from melody_utils.model import MelodyLSTM, ModelConfig

SEEN = np.arange(36, 85)  # C2..C6: 49 pitches, every pitch class 4 or 5 times


def fifths_embedding(noise: float = 0.01, seed: int = 0, dim: int = 96) -> np.ndarray:
    """Pitch class on the circle of fifths, an octave angle and a pitch-class identity.

    Pitch ``p`` (class ``c = p % 12``, octave ``o = p // 12 - 1``) gets the 16 numbers
    ``[cos a, sin a, cos b, sin b, 0.7 * onehot(c)]`` with ``a = 2π·(7c mod 12)/12`` and
    ``b = 0.8·o``, mapped into ``dim`` dimensions by a random orthonormal matrix, plus
    noise. A fifth or a fourth is 30° apart on the circle, a semitone 210°, a tritone
    180°; pitches an octave apart share the circle and the identity part.
    """
    rng = np.random.default_rng(seed)
    p = np.arange(128)
    a = 2 * np.pi * ((7 * (p % 12)) % 12) / 12
    b = 0.8 * (p // 12 - 1)
    core = np.concatenate(
        [np.stack([np.cos(a), np.sin(a), np.cos(b), np.sin(b)], axis=1), 0.7 * np.eye(12)[p % 12]],
        axis=1,
    )
    q, _ = np.linalg.qr(rng.normal(size=(dim, core.shape[1])))
    return core @ q.T + noise * rng.normal(size=(128, dim))


@pytest.fixture(scope="module")
def mask() -> np.ndarray:
    counts = np.zeros(128, dtype=np.int64)
    counts[SEEN] = 10
    return seen_mask(counts)


@pytest.fixture(scope="module")
def E(mask) -> np.ndarray:
    return fifths_embedding()


def with_junk_on_unseen(E: np.ndarray, mask: np.ndarray, kind: str) -> np.ndarray:
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


def test_embedding_table_and_counts():
    torch.manual_seed(0)
    model = MelodyLSTM()
    table = embedding_table(model)
    assert table.shape == (128, 96) and table.dtype == np.float64
    np.testing.assert_array_equal(table, model.embedding.weight.detach().numpy())
    notes = note_table([60, 62, 60, 64], [0, 1, 2, 3], [1, 2, 3, 4], [64] * 4)
    counts = pitch_counts([Piece("a", notes), Piece("b", notes.iloc[:2])])
    assert counts.shape == (128,)
    assert counts[60] == 3 and counts[62] == 2 and counts[64] == 1 and counts.sum() == 6
    m = seen_mask(counts, min_count=2)
    assert m.dtype == bool and np.flatnonzero(m).tolist() == [60, 62]
    with pytest.raises(TypeError, match="boolean"):
        cosine_similarity_matrix(table, counts)  # counts passed where a mask belongs


def test_random_init_embedding_is_the_models_init():
    torch.manual_seed(123)
    expected = MelodyLSTM().embedding.weight.detach().numpy()
    state = torch.get_rng_state()
    got = random_init_embedding(123)
    assert torch.equal(state, torch.get_rng_state())  # global RNG untouched
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(random_init_embedding(124), got)
    small = random_init_embedding(0, like=np.zeros((128, 8)))
    assert small.shape == (128, 8)
    scale = MelodyLSTM().config.embed_init_std
    assert abs(got.std() / scale - 1.0) < 0.05  # N(0, scale²)
    small_start = random_init_embedding(123, like=ModelConfig(embed_init_std=0.05))
    np.testing.assert_allclose(small_start, 0.05 / scale * got, rtol=1e-6)


# --------------------------------------------------------------------------- similarity


def test_cosine_matrix_masks_unseen(E, mask):
    S = cosine_similarity_matrix(E, mask)
    assert S.shape == (128, 128)
    assert np.isnan(S[~mask]).all() and np.isnan(S[:, ~mask]).all()
    seen = S[np.ix_(mask, mask)]
    np.testing.assert_allclose(np.diag(seen), 1.0)
    np.testing.assert_allclose(seen, seen.T)
    u = E[60] / np.linalg.norm(E[60])
    v = E[67] / np.linalg.norm(E[67])
    assert S[60, 67] == pytest.approx(u @ v)


def test_nearest_neighbours(E, mask):
    nn = nearest_neighbours(E, 60, k=4, mask=mask)
    assert list(nn.columns) == ["pitch", "name", "cosine", "interval"]
    # Octaves are the closest (same pitch class, next octave angle), then F4 and G4.
    assert set(nn["pitch"][:2]) == {48, 72}
    assert set(nn["pitch"][2:]) == {65, 67}
    assert set(nn["name"]) == {"C3", "C5", "F4", "G4"}
    assert sorted(nn["interval"]) == [-12, 5, 7, 12]
    assert nn["cosine"].is_monotonic_decreasing
    assert 60 not in set(nn["pitch"])
    with pytest.raises(ValueError, match="not a seen pitch"):
        nearest_neighbours(E, 20, mask=mask)


def test_never_seen_pitches_change_nothing(E, mask):
    """Wild vectors on unseen pitches (huge, exact copies of C4, NaN) change no result."""
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
    # Without the mask the copies of C4 would take over its neighbourhood: the mask matters.
    J = with_junk_on_unseen(E, mask, "copies")
    assert nearest_neighbours(J, 60, k=3)["cosine"].min() == pytest.approx(1.0)


def test_similarity_by_interval_finds_fifths_and_octaves(E, mask):
    table = similarity_by_interval(E, mask)
    assert list(table.index) == list(range(1, 13))
    assert table.loc[7, "name"] == "P5" and table.loc[12, "name"] == "P8"
    assert table.loc[1, "n_pairs"] == 48 and table.loc[12, "n_pairs"] == 37
    mean = table["mean"]
    below_octave = mean.loc[1:11]
    assert set(below_octave.nlargest(2).index) == {5, 7}
    assert mean[12] > 0.8 and mean[12] > mean[7]
    assert mean[1] < 0.2 and mean[6] < 0.1  # semitone and tritone are far apart
    assert (table["sem"] > 0).all() and (table["sem"] < table["std"]).all()


def test_similarity_by_interval_by_hand():
    # Three seen pitches, 2-D vectors: 60 -> (1, 0), 61 -> (0, 1), 62 -> (1, 1)/√2.
    E = np.zeros((128, 2))
    E[60], E[61], E[62] = [1, 0], [0, 1], [1, 1]
    m = np.zeros(128, dtype=bool)
    m[[60, 61, 62]] = True
    table = similarity_by_interval(E, m, max_interval=3)
    c = 1 / np.sqrt(2)
    assert table.loc[1, "mean"] == pytest.approx((0 + c) / 2)  # pairs (60,61), (61,62)
    assert table.loc[2, "mean"] == pytest.approx(c)  # pair (60,62)
    assert table.loc[1, "n_pairs"] == 2 and table.loc[2, "n_pairs"] == 1
    assert table.loc[3, "n_pairs"] == 0 and np.isnan(table.loc[3, "mean"])


# --------------------------------------------------------------------------- probes


def test_linear_probe_reads_structure_not_noise(E, mask):
    pc = linear_probe(E, mask, "pitch_class")
    assert pc["n_samples"] == 49 and pc["n_classes"] == 12
    assert pc["folds"] == 4  # smallest pitch class has 4 seen pitches
    assert pc["accuracy"] > 0.95
    assert pc["chance"] < 0.15 and pc["uniform_chance"] == pytest.approx(1 / 12)

    octave = linear_probe(E, mask, "octave")
    assert octave["dropped_classes"] == [6]  # C6 alone in its octave
    assert octave["n_classes"] == 4 and octave["accuracy"] > 0.9

    R = random_init_embedding(0)
    rnd = linear_probe(R, mask, "pitch_class")
    assert rnd["accuracy"] < 0.3  # near chance (1/12) on random vectors
    assert linear_probe(R, mask, "octave")["accuracy"] < 0.6  # majority class is 12/48


def test_height_probe_reads_a_height_direction_not_noise(mask):
    rng = np.random.default_rng(0)
    direction = rng.normal(size=96)
    heights = np.arange(128, dtype=np.float64)
    H = np.outer((heights - 60) / 12, direction) + rng.normal(size=(128, 96))
    assert height_probe(H, mask)["r2"] > 0.9
    noise = random_init_embedding(0)
    r2 = height_probe(noise, mask)["r2"]
    assert r2 < 0.2
    out = height_probe(H, mask, cv=4, seed=1)
    assert out["folds"] == 4 and out["n_samples"] == 49


def test_pitch_counts_with_transposition_are_expected_occurrences():
    notes = note_table([60, 62, 60, 64], [0, 1, 2, 3], [1, 2, 3, 4], [64] * 4)
    counts = pitch_counts([Piece("a", notes)], transpose=(-1, 1))
    plain = pitch_counts([Piece("a", notes)])
    # each shift of -1, 0, +1 is drawn a third of the time
    for p in range(128):
        expected = sum(plain[p - s] for s in (-1, 0, 1) if 0 <= p - s < 128) / 3
        assert counts[p] == pytest.approx(expected)
    assert counts.sum() == pytest.approx(plain.sum())
    assert np.flatnonzero(counts).tolist() == [59, 60, 61, 62, 63, 64, 65]
    with pytest.raises(ValueError, match="holding 0"):
        pitch_counts([Piece("a", notes)], transpose=(1, 3))


def test_linear_probe_bad_target(E, mask):
    with pytest.raises(ValueError, match="target"):
        linear_probe(E, mask, "key")


# --------------------------------------------------------------------------- controls


def test_permuted_embedding_keeps_vectors_destroys_structure(E, mask):
    P = permuted_embedding(E, mask, seed=0)
    np.testing.assert_array_equal(P[~mask], E[~mask])
    # Same set of seen vectors, different owners.
    np.testing.assert_allclose(np.sort(P[mask], axis=0), np.sort(E[mask], axis=0))
    assert (P[mask] != E[mask]).any(axis=1).mean() > 0.8
    np.testing.assert_array_equal(permuted_embedding(E, mask, 0), P)  # reproducible
    before = similarity_by_interval(E, mask)["mean"]
    after = similarity_by_interval(P, mask)["mean"]
    assert before[7] - after[7] > 0.4 and before[12] - after[12] > 0.4
    assert after.max() - after.min() < 0.3  # the interval profile flattens


def _train_rows(optimizer, steps: int):
    """Train a 6x4 Embedding whose rows 1 and 3 are never looked up; (weight, start)."""
    emb = torch.nn.Embedding(6, 4)
    start = emb.weight.detach().numpy().astype(np.float64).copy()
    opt = optimizer(emb.parameters(), lr=0.05, weight_decay=0.1)
    for _ in range(steps):
        opt.zero_grad()
        emb(torch.tensor([0, 2, 4, 5])).pow(2).sum().backward()
        opt.step()
    return emb.weight.detach().numpy(), start


def test_learned_update_recovers_what_training_wrote(E, mask):
    E0 = random_init_embedding(3)
    L_true = np.where(mask[:, None], 0.2 * E, 0.0)
    trained = 0.97 * E0 + L_true
    L, r = learned_update(trained, E0, mask)
    assert r == pytest.approx(0.97, rel=1e-12)
    np.testing.assert_allclose(L, L_true, atol=1e-12)
    # The update carries the structure the raw table hides under its random start.
    assert similarity_by_interval(L, mask)["mean"][12] > 0.8
    assert abs(similarity_by_interval(trained, mask)["mean"][12]) < 0.2

    # A real AdamW run: an Embedding whose rows 1 and 3 are never looked up.
    torch.manual_seed(5)
    weight, start = _train_rows(torch.optim.AdamW, steps=20)
    seen_rows = np.array([True, False, True, False, True, True])
    L, r = learned_update(weight, start, seen_rows)
    assert r == pytest.approx((1 - 0.05 * 0.1) ** 20, rel=1e-5)
    np.testing.assert_allclose(L[~seen_rows], 0.0, atol=1e-6)
    assert np.abs(L[seen_rows]).min() > 1e-3
    # Adam with coupled L2 decay moves unseen rows by non-proportional steps: refused.
    weight, start = _train_rows(torch.optim.Adam, steps=5)
    with pytest.raises(ValueError, match="decoupled weight decay"):
        learned_update(weight, start, seen_rows)

    with pytest.raises(ValueError, match="wrong seed"):
        learned_update(trained, random_init_embedding(4), mask)
    with pytest.raises(ValueError, match="every pitch is seen"):
        learned_update(trained, E0, np.ones(128, dtype=bool))
    with pytest.raises(ValueError, match="shape"):
        learned_update(trained, E0[:, :5], mask)


def test_compare_with_controls_separates_real_from_random(E, mask):
    def fifth(E_, m_):
        return similarity_by_interval(E_, m_, max_interval=7)["mean"][7]

    real = compare_with_controls(fifth, E, mask, n_permutations=49, n_random=19, seed=0)
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
    row = real.loc["value"]
    assert row["beats_controls"]
    assert row["p_permuted"] == pytest.approx(1 / 50) and row["p_random_init"] == 1 / 20
    assert abs(row["random_init_mean"]) < 0.1

    R = random_init_embedding(999)
    fake = compare_with_controls(fifth, R, mask, n_permutations=49, n_random=19, seed=0)
    assert not fake.loc["value", "beats_controls"]
    assert fake.loc["value", "p_permuted"] > 0.05


def test_compare_with_controls_vector_measure_and_probe(E, mask):
    def profile(E_, m_):
        return similarity_by_interval(E_, m_)["mean"]

    table = compare_with_controls(
        profile, E, mask, n_permutations=99, n_random=39, seed=1, correction=None
    )
    assert list(table.index) == list(range(1, 13))
    # Fifth, fourth, whole tone, minor seventh and octave are closer than chance;
    # the semitone (210° on the circle of fifths) is not: "C# near C" fails here.
    assert table.loc[[5, 7, 12], "beats_controls"].all()
    assert not table.loc[1, "beats_controls"]
    assert not table.loc[6, "beats_controls"]

    def probe(E_, m_):
        return linear_probe(E_, m_, "pitch_class")["accuracy"]

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 1/20 <= 0.05: no warning expected
        res = compare_with_controls(probe, E, mask, n_permutations=19, n_random=19)
    assert res.loc["value", "beats_controls"]
    assert res.loc["value", "permuted_mean"] < 0.3


def test_compare_with_controls_warns_when_it_cannot_succeed(E, mask):
    def profile(E_, m_):
        return similarity_by_interval(E_, m_)["mean"]

    # Bonferroni over 12 intervals: level 0.05 / 12, below the smallest p = 1 / 40.
    with pytest.warns(UserWarning, match="can never be True"):
        out = compare_with_controls(profile, E, mask, n_permutations=99, n_random=39)
    assert not out["beats_controls"].any()
    assert out.loc[7, "p_random_init"] == pytest.approx(1 / 40)
    with pytest.raises(ValueError, match="correction"):
        compare_with_controls(profile, E, mask, n_permutations=1, n_random=1, correction="holm")


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
    assert len(first) == 96 and all(
        float(x) == pytest.approx(v) for x, v in zip(first, E[36], strict=True)
    )  # no header row
    lines = meta_path.read_text().splitlines()
    assert lines[0] == "name\tpitch\tpitch_class\toctave\tcount\tseen"
    assert len(lines) == 1 + 49
    meta = pd.read_csv(meta_path, sep="\t")
    assert meta["pitch"].tolist() == SEEN.tolist()
    row = meta.set_index("pitch").loc[60]
    assert (row["name"], row["pitch_class"], row["octave"], row["count"]) == ("C4", "C", 4, 11)
    assert meta["seen"].all()

    _, meta_all = export_projector_tsv(E, counts, tmp_path / "all", include_unseen=True)
    full = pd.read_csv(meta_all, sep="\t")
    assert len(full) == 128 and full["seen"].sum() == 49
    assert np.loadtxt(tmp_path / "all" / "vectors.tsv", delimiter="\t").shape == (128, 96)
    assert full.loc[61, "name"] == "C#4" and not full.loc[0, "seen"]


# --------------------------------------------------------------------------- plots


def test_plot_pitch_scatter_2d_and_3d():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba

    from melody_utils.embeddings import plot_pitch_scatter

    pitches = np.array([60, 61, 72, 48, 67])
    xy = np.arange(10, dtype=float).reshape(5, 2)
    ax = plot_pitch_scatter(xy, pitches, color_by="pitch_class", title="t")
    # one scatter per pitch class present, points where they were given
    by_label = {
        t.get_text(): h
        for t, h in zip(ax.get_legend().get_texts(), ax.get_legend().legend_handles, strict=True)
    }
    assert list(by_label) == ["C", "C#", "G"]
    offsets = {c.get_label(): c.get_offsets() for c in ax.collections}
    np.testing.assert_array_equal(offsets["C"], xy[[0, 2, 3]])
    np.testing.assert_array_equal(offsets["G"], xy[[4]])
    c_colour = ax.collections[0].get_facecolor()[0]
    assert tuple(c_colour) == pytest.approx(to_rgba(plt.get_cmap("hsv")(0.0)))
    texts = sorted(t.get_text().strip() for t in ax.texts)
    assert texts == ["C#4", "C3", "C4", "C5", "G4"]
    assert ax.get_title() == "t"

    octave = plot_pitch_scatter(xy, pitches, color_by="octave", annotate=False)
    assert [t.get_text() for t in octave.get_legend().get_texts()] == [
        "octave 3",
        "octave 4",
        "octave 5",
    ]
    assert not octave.texts
    np.testing.assert_array_equal(octave.collections[1].get_offsets(), xy[[0, 1, 4]])

    xyz = np.arange(15, dtype=float).reshape(5, 3)
    ax3 = plot_pitch_scatter(xyz, pitches)
    assert ax3.name == "3d" and len(ax3.texts) == 5
    with pytest.raises(ValueError, match="projection='3d'"):
        plot_pitch_scatter(xyz, pitches, ax=plt.subplots()[1])
    with pytest.raises(ValueError, match="color_by"):
        plot_pitch_scatter(xy, pitches, color_by="key")
    with pytest.raises(ValueError, match="5 points but 4"):
        plot_pitch_scatter(xy, pitches[:4])
    with pytest.raises(ValueError, match=r"\(n, 2\) or \(n, 3\)"):
        plot_pitch_scatter(np.zeros((5, 4)), pitches)
    plt.close("all")
