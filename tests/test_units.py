"""The one rule that decides whether two templates are one unit (crsae_sort.units), and the clustering that
splits a density group as its own snippets split it."""
from __future__ import annotations

import numpy as np

from crsae_sort.init_dictionary import merge_similar
from crsae_sort.units import same_unit, similarity_and_ratio, split_groups, trains_relation


def _shape(k: int = 30, m: int = 4, seed: int = 0) -> np.ndarray:
    t = np.arange(k)
    wave = -np.exp(-0.5 * ((t - 10) / 2.0) ** 2) + 0.4 * np.exp(-0.5 * ((t - 16) / 3.0) ** 2)
    gains = np.random.default_rng(seed).uniform(0.2, 1.0, m)
    return wave[:, None] * gains[None, :]                                     # (K, M)


def _train(rate_hz: float, seconds: float, fs: float, seed: int, refractory_s: float = 0.002) -> np.ndarray:
    rng = np.random.default_rng(seed)
    isi = refractory_s + rng.exponential(1 / rate_hz, int(2 * rate_hz * seconds))
    t = np.cumsum(isi)
    t = t[t < seconds]
    return np.stack([np.zeros(len(t), np.int64), (t * fs).astype(np.int64)], axis=1)


def test_same_unit_needs_shape_amplitude_and_trains_that_are_not_independent():
    a = _shape(seed=1)
    templates = np.stack([a, 1.1 * a, 2.0 * a, _shape(seed=2)])
    sim, ratio = similarity_and_ratio(templates)
    same = same_unit(sim, ratio, 0.9, 1.3)
    assert same[0, 1] and not same[0, 2] and not same[0, 3]                    # amplitude, then shape
    relation = np.full(same.shape, "unknown", dtype=object)
    relation[0, 1] = relation[1, 0] = "independent"
    relation[0, 2] = relation[2, 0] = "refractory"
    with_trains = same_unit(sim, ratio, 0.9, 1.3, relation)
    assert not with_trains[0, 1]                                              # independent trains: two cells
    assert with_trains[0, 2]                                                  # refractory: one cell, two amplitudes
    assert not with_trains[0, 3]                                              # never across shapes


def test_independent_trains_are_two_cells_and_halves_of_one_train_are_not():
    fs, seconds = 15000.0, 60.0
    a, b = _train(20, seconds, fs, 1), _train(20, seconds, fs, 2)
    assert trains_relation(a, b, fs, seconds) == "independent"
    one = _train(40, seconds, fs, 3)
    half = np.random.default_rng(4).random(len(one)) < 0.5
    assert trains_relation(one[half], one[~half], fs, seconds) != "independent"
    assert trains_relation(one[half], one[~half], fs, seconds) == "refractory"
    assert trains_relation(a[::25], b[::25], fs, seconds) == "unknown"        # too few spikes to tell


def test_merge_similar_keeps_two_cells_of_one_shape_and_amplitude_apart_by_their_trains():
    fs, seconds = 15000.0, 60.0
    a = _shape(seed=1)
    atoms = np.stack([a, 1.05 * a])
    trains = [_train(20, seconds, fs, 1), _train(20, seconds, fs, 2)]
    kept, _ = merge_similar(atoms, [100, 90], 0.9, 1.3, trains, fs, seconds)
    assert len(kept) == 2
    one = _train(40, seconds, fs, 3)
    half = np.random.default_rng(4).random(len(one)) < 0.5
    kept, sizes = merge_similar(atoms, [100, 90], 0.9, 1.3, [one[half], one[~half]], fs, seconds)
    assert len(kept) == 1 and sizes == [190]
    kept, _ = merge_similar(atoms, [100, 90], 0.9, 1.3)                       # no trains: shape and amplitude
    assert len(kept) == 1


def test_a_density_group_of_two_units_is_split_and_one_unit_is_left_whole():
    rng = np.random.default_rng(0)
    k, m = 30, 4
    big, small = 12 * _shape(k, m, seed=1), 7 * _shape(k, m, seed=2)
    noise = lambda n: rng.standard_normal((n, k, m))                          # noqa: E731
    two = np.concatenate([big + noise(300), small + noise(200)]).reshape(500, -1)
    labels = split_groups(two, np.zeros(500, dtype=int), 10, seed=0)
    first, second = labels[:300], labels[300:]
    assert len(np.unique(labels)) >= 2
    assert np.bincount(first).max() / 300 > 0.95 and np.bincount(second).max() / 200 > 0.95
    assert np.bincount(first).argmax() != np.bincount(second).argmax()
    one = (big + noise(500)).reshape(500, -1)
    assert len(np.unique(split_groups(one, np.zeros(500, dtype=int), 10, seed=0))) == 1
