"""A code peak goes to the alike atom whose size fits it (crsae_sort.assign)."""
import numpy as np
import pytest
import torch

from crsae_sort.assign import alike_atoms, assign_by_size, one_per_refractory
from crsae_sort.infer import detect_spikes, peak_offsets
from crsae_sort.model.crsae import CRsAE
from crsae_sort.params import InferenceParams

FS = 15000.0
K = 30


def two_units(seed=0, n_spikes=150, big=20.0, small=9.0):
    """Two-channel white noise; unit 0 (amplitude ``big``) and unit 1 (``small``) of nearly the same shape
    (best-lag cosine ~0.97), each firing ``n_spikes`` times, never within 5 ms of each other."""
    from spikeinterface.core import NumpyRecording

    t = np.arange(K)
    a = np.stack([-np.exp(-((t - 9) / 2.5) ** 2) + 0.4 * np.exp(-((t - 16) / 4.0) ** 2),
                  -0.6 * np.exp(-((t - 10) / 3.0) ** 2)])
    b = a + 0.25 * np.stack([np.zeros(K), -np.exp(-((t - 10) / 3.0) ** 2)])
    atoms = np.stack([x / np.linalg.norm(x) for x in (a, b)]).astype(np.float32)
    rng = np.random.default_rng(seed)
    n = 4 * n_spikes * 150 + 1000
    starts = np.sort(rng.choice(np.arange(100, n - 100, 150), size=2 * n_spikes, replace=False))
    units = rng.permutation(np.repeat([0, 1], n_spikes))
    traces = rng.standard_normal((n, 2)).astype(np.float32)
    for s, u in zip(starts, units):
        traces[s: s + K] += (big if u == 0 else small) * rng.uniform(0.9, 1.1) * atoms[u].T
    model = CRsAE(torch.from_numpy(atoms), torch.full((2,), 4.0), n_iter=50,
                  reference_amplitude=torch.tensor([big, small]))
    offsets = peak_offsets(model.dictionary)
    truth = [starts[units == u] + offsets[u] for u in (0, 1)]
    return NumpyRecording([traces], sampling_frequency=FS), model, truth


def found(spikes, truth, unit, tol=3):
    t = np.sort(spikes.sample_index[spikes.unit_index == unit])
    hits = sum(np.any(np.abs(t - s) <= tol) for s in truth[unit])
    return hits, len(t)


def test_two_units_of_one_shape_are_told_apart_by_size():
    rec, model, truth = two_units()
    sim = alike_atoms(model.dense_dictionary())
    assert sim[0, 1] and sim[1, 0] and not sim[0, 0]
    shape_only = detect_spikes(model, rec, InferenceParams(amplitude_spread=0.0))
    by_size = detect_spikes(model, rec, InferenceParams(amplitude_spread=0.2))
    hits0, n0 = found(shape_only, truth, 1)
    hits1, n1 = found(by_size, truth, 1)
    big0, nb0 = found(shape_only, truth, 0)
    big1, nb1 = found(by_size, truth, 0)
    # by shape alone the large atom codes some of the small unit's spikes, at a fraction of its size: dropped
    assert hits0 < 0.75 * len(truth[1])
    # by size the small unit gets them back (the rest sit under the amplitude floor), with few false ones, and
    # the large unit loses none
    assert hits1 >= hits0 + 0.12 * len(truth[1]) and n1 - hits1 <= 0.07 * n1
    assert big1 >= big0 - 3 and nb1 - big1 <= 3


def test_spread_zero_changes_nothing_and_a_moved_peak_lands_on_the_new_atoms_time():
    rec, model, truth = two_units(seed=1, n_spikes=40)
    y = torch.from_numpy(rec.get_traces().T.copy())
    with torch.no_grad():
        z = model.encode(y[None])[0]
    from crsae_sort.infer import read_out

    pos, unit, amp = read_out(z, 15)
    residual = y - model.decode(z[None])[0]
    offsets = peak_offsets(model.dictionary)
    args = (model.dense_dictionary(), model.lam, model.reference_amplitude.numpy(), offsets,
            alike_atoms(model.dense_dictionary()))
    same = assign_by_size(residual, z, pos, unit, amp, *args, spread=0.0)
    assert all(np.array_equal(a, b) for a, b in zip(same, (pos, unit, amp)))
    p2, u2, a2 = assign_by_size(residual, z, pos, unit, amp, *args, spread=0.2)
    moved = u2 != unit
    assert moved.any()
    # the spike time (code position + peak offset) stays within the lag search of where it was
    assert np.all(np.abs((p2 + offsets[u2]) - (pos + offsets[unit]))[moved] <= 2)
    # a moved peak's amplitude is the new atom's fit minus its lambda: the small unit's spikes among them (above
    # the amplitude floor; the rest are noise peaks) code near its size minus lambda
    spikes = moved & (u2 == 1) & (a2 >= 0.3 * 9.0)
    assert spikes.sum() >= 5 and np.median(a2[spikes]) == pytest.approx(9.0 - 4.0, abs=1.0)


def test_one_peak_per_atom_within_the_refractory_period():
    pos = np.array([100, 103, 100, 300])
    unit = np.array([1, 1, 0, 1])
    amp = np.array([2.0, 5.0, 1.0, 3.0], np.float32)
    keep = one_per_refractory(pos, unit, amp, np.zeros(2, np.int64), refractory=15)
    assert keep.tolist() == [False, True, True, True]
