"""Growth from the residual: a unit the initial clustering missed is found again; new atoms work with
dense and local dictionaries; the summary says where each unit came from and what the read-out dropped."""
import json
import logging

import numpy as np
import pytest
import torch

from crsae_sort import pipeline, sort
from crsae_sort.demo import score
from crsae_sort.model.crsae import CRsAE
from crsae_sort.model.local_operator import channel_supports, to_dense
from crsae_sort.model.operator import ConvOperator
from crsae_sort.summary import Summary

from conftest import random_dictionary

FAST = {"max_epochs": 1, "n_windows": 320, "seed": 3, "grow_duration_s": 12.0}


def _dense_norm_squared(dictionary: torch.Tensor, n: int = 200) -> float:
    """``||H||^2`` of the dense dictionary for signals of ``n`` code samples (power iteration on H^T H)."""
    op = ConvOperator(dictionary.double())
    z = torch.randn(1, dictionary.shape[0], n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for _ in range(300):
        z = op.H_adjoint(op.H(z))
        z = z / z.norm()
    return float(op.H_adjoint(op.H(z)).flatten() @ z.flatten())


@pytest.mark.parametrize("local", [False, True], ids=["dense", "local"])
def test_added_atoms_keep_the_old_ones_and_a_valid_step(local):
    n_channels, k = 8, 12
    locations = np.stack([np.repeat([0.0, 20.0], 4), np.tile(np.arange(4) * 20.0, 2)], axis=1)   # (8, 2) µm
    dense = random_dictionary(3, n_channels, k, dtype=torch.float32, seed=1)
    extra = {}
    if local:
        support, mask = channel_supports(locations, np.array([0, 3, 5]), 25.0)
        extra = dict(support=support, mask=mask, n_channels=n_channels)
        dense = to_dense(dense.gather(1, support[..., None].expand(-1, -1, k)) * mask[..., None], support, mask,
                         n_channels)
        dense = dense / dense.flatten(1).norm(dim=1)[:, None, None]
        start = dense.gather(1, support[..., None].expand(-1, -1, k)) * mask[..., None]
    else:
        start = dense
    model = CRsAE(start, torch.full((3,), 2.0), 10, **extra)
    new = random_dictionary(2, n_channels, k, dtype=torch.float32, seed=2)
    more = {}
    if local:
        more = dict(zip(("support", "mask"), channel_supports(locations, np.array([7, 1]), 45.0)))  # wider supports
    grown = model.with_atoms(new, torch.tensor([3.0, 4.0]), torch.tensor([9.0, 11.0]), "residual", **more)

    assert grown.origin == ["init"] * 3 + ["residual"] * 2
    assert torch.allclose(grown.dense_dictionary()[:3], model.dense_dictionary(), atol=1e-6)
    assert torch.allclose(grown.lam, torch.tensor([2.0, 2.0, 2.0, 3.0, 4.0]))
    assert torch.equal(grown.reference_amplitude[3:], torch.tensor([9.0, 11.0]))
    added = grown.dense_dictionary()[3:]
    assert torch.allclose(added.flatten(1).norm(dim=1), torch.ones(2), atol=1e-6)
    if local:  # the new atoms are the given ones restricted to their supports
        kept = to_dense(torch.ones(2, more["support"].shape[1], k), more["support"], more["mask"], n_channels) > 0
        assert torch.all(added[~kept] == 0) and (~kept).any()
    assert grown.lipschitz >= _dense_norm_squared(grown.dense_dictionary()) * (1 - 1e-4)
    again = CRsAE.from_state(grown.to_state())
    assert again.origin == grown.origin and torch.equal(again.dense_dictionary(), grown.dense_dictionary())
    y = torch.randn(2, n_channels, 80)
    assert grown.encode(y).shape == (2, 5, 80 - k + 1)


@pytest.mark.parametrize("encoder", ["reweighted", "learned-steps"])
def test_added_atoms_keep_the_encoders_learned_weights(encoder):
    """Growth on an encoder with learned weights: per-template weights (reweighted's g_l,c) gain a column per
    new atom, each layer's mean over the old ones; per-layer weights (learned-steps) carry over as they are."""
    dense = random_dictionary(3, 4, 12, dtype=torch.float32, seed=1)
    model = CRsAE(dense, torch.full((3,), 2.0), 5, encoder=encoder)
    model.encode(torch.randn(1, 4, 60))  # creates reweighted's weights on the first call
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.copy_(torch.linspace(-0.5, 0.5, p.numel()).view(p.shape))
    grown = model.with_atoms(random_dictionary(2, 4, 12, dtype=torch.float32, seed=2), torch.tensor([3.0, 4.0]),
                             torch.tensor([9.0, 11.0]), "residual")
    old, new = dict(model.encoder.named_parameters()), dict(grown.encoder.named_parameters())
    assert old.keys() == new.keys()
    for name, w in old.items():
        if encoder == "reweighted":
            assert new[name].shape == (5, 5)
            assert torch.equal(new[name][:, :3], w)
            assert torch.allclose(new[name][:, 3:], w.mean(1, keepdim=True).expand(-1, 2))
        else:
            assert torch.equal(new[name], w)
    assert grown.encode(torch.randn(1, 4, 60)).shape == (1, 5, 60 - 12 + 1)


@pytest.fixture(scope="module")
def missing_unit(gt_tetrode):
    """20 s of the demo tetrode sorted twice from an initial dictionary with one atom removed: without and
    with growth."""
    recording, gt_sorting = (x.frame_slice(0, 600000) for x in gt_tetrode)
    real = pipeline.initial_dictionary
    dropped = {}

    def without_one(rec, params, seed):
        init = real(rec, params, seed)
        drop = int(np.argsort(init.amplitudes)[len(init.amplitudes) // 2])  # the median-amplitude atom
        dropped["amplitude"] = float(init.amplitudes[drop])
        keep = np.arange(len(init.amplitudes)) != drop
        init.dictionary, init.amplitudes = init.dictionary[keep], init.amplitudes[keep]
        init.cluster_sizes = [s for s, k in zip(init.cluster_sizes, keep) if k]
        init.peak_channels = init.peak_channels[keep]
        init.outside_energy = init.outside_energy[keep]
        return init

    mp = pytest.MonkeyPatch()
    mp.setattr(pipeline, "initial_dictionary", without_one)
    try:
        before = sort(recording, None, dict(FAST, grow_rounds=0), progress=False)
        after = sort(recording, None, dict(FAST), progress=False)
    finally:
        mp.undo()
    return recording, gt_sorting, before, after, dropped


def test_growth_recovers_a_unit_missing_from_the_initial_dictionary(missing_unit):
    from spikeinterface.comparison import compare_sorter_to_ground_truth

    recording, gt_sorting, before, after, dropped = missing_unit
    table_before, _ = score(recording, gt_sorting, before.sorting)
    table_after, _ = score(recording, gt_sorting, after.sorting)
    missed = [row for row in table_before if row["snr"] >= 5 and row["accuracy"] < 0.5]
    assert len(missed) >= 1, table_before          # dropping the atom really loses a unit
    found = {row["unit_id"]: row for row in table_after}
    for row in table_before:                       # every unit of SNR >= 5 found, nothing got worse
        assert found[row["unit_id"]]["accuracy"] >= (0.9 if row["snr"] >= 5 else row["accuracy"] - 0.02), table_after
    comparison = compare_sorter_to_ground_truth(gt_sorting, after.sorting, exhaustive_gt=True)
    assert comparison.count_false_positive_units(0.2) == 0 and comparison.count_redundant_units(0.2) == 0

    match = comparison.hungarian_match_12
    origin = {u.unit_id: u.origin for u in after.summary.units}
    grown = {g.atom: g for g in after.summary.grown}
    assert set(grown) == {c for c, o in enumerate(after.model.origin) if o != "init"} and before.summary.grown == []
    recovered = [int(match[row["unit_id"]]) for row in table_after if row["accuracy"] >= 0.9
                 and origin.get(int(match[row["unit_id"]]), "init") != "init"]
    assert recovered, (origin, table_after)        # a new unit matches the truth, and says where it came from
    for unit in recovered:
        assert grown[unit].origin == origin[unit] and grown[unit].round == 1
        assert grown[unit].n_spikes >= 50 and grown[unit].isi_violations <= 0.02
    assert max(g.amplitude for g in grown.values()) >= 0.75 * dropped["amplitude"]
    assert after.summary.seconds["grow"] > 0 and "grow" not in before.summary.seconds


def test_summary_counts_what_the_read_out_discarded(missing_unit):
    _, _, _, after, _ = missing_unit
    s = after.summary
    assert [t.template for t in s.read_out] == list(range(s.num_templates))
    kept = {u.unit_id for u in s.units}
    for t in s.read_out:
        assert t.code_peaks == t.spikes + t.below_floor and t.unit_kept == (t.template in kept)
    assert sum(t.spikes for t in s.read_out if t.unit_kept) == s.num_spikes
    assert sum(t.below_floor for t in s.read_out) > 0      # the floor did discard small code peaks
    assert [t.origin for t in s.read_out] == after.model.origin and "init" in after.model.origin
    back = Summary.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back.read_out == s.read_out and back.grown == s.grown and back.units == s.units


def test_growth_adds_nothing_when_the_dictionary_is_complete(gt_tetrode, caplog):
    recording, gt_sorting = gt_tetrode
    with caplog.at_level(logging.INFO, logger="crsae_sort"):
        result = sort(recording.frame_slice(0, 450000), None, FAST, progress=False)
    assert result.summary.grown == []
    assert all(u.origin == "init" for u in result.summary.units)
    # a round that adds nothing ends growth: one round ran, not grow_rounds (its cost is the benchmark's business)
    rounds = [r.getMessage() for r in caplog.records if r.getMessage().startswith("growth round")]
    assert len(rounds) == 1, rounds


def _refractory_train(rng, n, length, refractory):
    """Spike samples of one unit: Poisson-like, no two closer than ``refractory`` samples."""
    t = np.sort(rng.choice(length, size=3 * n, replace=False))
    keep = [t[0]]
    for x in t[1:]:
        if x - keep[-1] >= refractory:
            keep.append(x)
    return np.array(keep[:n])


def test_amplitude_modes_separate_units_of_one_shape_and_keep_one_unit_whole():
    from crsae_sort.split import amplitude_modes

    rng = np.random.default_rng(0)
    k, m = 30, 4
    shape = rng.standard_normal((k, m))
    shape /= np.linalg.norm(shape)
    amps = np.concatenate([np.full(300, 7.0), np.full(300, 14.5), np.full(300, 19.5)])
    snippets = amps[:, None, None] * shape + rng.standard_normal((900, k, m))
    groups = amplitude_modes(snippets, shape, seed=0)
    assert len(groups) == 3 and all(abs(int(g.sum()) - 300) <= 10 for g in groups)  # a few noise tails cross
    one_unit = (12.0 + 1.5 * rng.standard_normal(900))[:, None, None] * shape + rng.standard_normal((900, k, m))
    assert len(amplitude_modes(one_unit, shape, seed=0)) == 1


def test_independence_counts_only_the_pairs_one_atoms_read_out_can_show():
    """Two units coded by one atom: the read-out keeps one peak per ``refractory_ms``, so their trains have
    no pairs closer than that; between it and 1.5 ms they still cross as independent trains do. Two
    halves of one unit (refractory 4 ms) never do."""
    from crsae_sort.units import trains_relation

    fs, seconds = 15000.0, 20.0
    length, r = int(fs * seconds), int(0.001 * fs)
    rng = np.random.default_rng(1)
    a, b = _refractory_train(rng, 400, length, 60), _refractory_train(rng, 400, length, 60)
    both = np.sort(np.concatenate([a, b]))
    read = [both[0]]
    for x in both[1:]:  # what one atom's read-out shows: one peak within r samples
        if x - read[-1] >= r:
            read.append(x)
    read = np.array(read)
    a_seen, b_seen = read[np.isin(read, a)], read[np.isin(read, b)]
    pair = lambda x: np.stack([np.zeros(len(x), np.int64), x], axis=1)  # noqa: E731
    assert trains_relation(pair(a_seen), pair(b_seen), fs, seconds, blind_ms=1.0) == "independent"
    unit = _refractory_train(rng, 800, length, 60)
    halves = rng.random(len(unit)) < 0.5
    assert trains_relation(pair(unit[halves]), pair(unit[~halves]), fs, seconds, blind_ms=1.0) != "independent"


def test_groups_of_one_shape_stay_apart_only_when_their_trains_are_independent():
    from crsae_sort.params import SortParams
    from crsae_sort.split import _merged_groups

    rng = np.random.default_rng(0)
    shape = np.zeros((20, 4))
    shape[5:9, 0] = [-3.0, -8.0, -5.0, -1.0]
    snippets = shape * rng.uniform(0.95, 1.05, (200, 1, 1)) + 0.3 * rng.standard_normal((200, 20, 4))
    halves = [np.arange(200) < 100, np.arange(200) >= 100]   # one shape, one amplitude
    params = SortParams()
    assert len(_merged_groups(snippets, halves, params)) == 1
    assert len(_merged_groups(snippets, halves, params, relation=lambda a, b: "independent")) == 2


def test_split_falls_back_to_amplitude_modes_when_one_shape_group_is_left(monkeypatch):
    """The snippets' clustering finds one big group and a small one that cannot be a unit (noise, fewer than
    grow_min_spikes): that is one shape, so the amplitude modes decide, and two independent units of one
    shape and different amplitudes coded by one atom are split."""
    import crsae_sort.split as split
    from crsae_sort.params import SortParams

    fs, seconds, k = 15000.0, 20.0, 36
    rng = np.random.default_rng(3)
    shape = np.zeros((k, 4))
    shape[10:14, 0] = [-3.0, -8.0, -5.0, -1.0]
    shape[10:14, 1] = [-1.0, -3.0, -2.0, -0.5]
    shape /= np.linalg.norm(shape)
    length = int(fs * seconds)
    trains = [_refractory_train(rng, 350, length - k, 60) for _ in range(2)]
    traces = rng.standard_normal((4, length))
    for amp, train in zip((14.0, 24.0), trains):
        for t in train:
            traces[:, t: t + k] += amp * shape.T
    both = np.sort(np.concatenate(trains))
    positions = both[np.concatenate([[True], np.diff(both) >= 15])]  # one code peak per refractory_ms
    noise = rng.choice(np.setdiff1d(np.arange(0, length - k, 97), np.concatenate([both + d for d in range(-k, k)])),
                       10, replace=False)                            # 10 code peaks on noise alone:
    positions = np.concatenate([positions, noise])                   # a group too small and too weak to be a
    codes = [(positions, np.zeros(len(positions), np.int64))]        # unit, and unlike the rest (not merged)
    labels = np.zeros(len(positions), np.int64)
    labels[-10:] = 1
    monkeypatch.setattr(split, "cluster_snippets", lambda snippets, p, seed: labels)
    found = split.find_splits(18.0 * shape.T[None], [traces], codes, SortParams(), fs, seconds)
    assert list(found) == [0] and len(found[0]) == 2
    sizes = sorted(ev.n_spikes for ev, _ in found[0])
    assert abs(sizes[0] - len(trains[0])) <= 30 and abs(sizes[1] - len(trains[1])) <= 30
    for _, child in found[0]:   # both children have the shape
        assert float(np.sum(child * shape.T)) > 0.95
