"""Chunked, screened inference: boundaries, screening equivalence, read-out."""
import numpy as np
import pytest
import torch

from crsae_sort.infer import Spikes, detect_spikes, encode_screened, read_out
from crsae_sort.model.crsae import CRsAE
from crsae_sort.params import InferenceParams

FS = 15000.0


def planted_recording(spike_times, amplitude=20.0, n_samples=60000, seed=0):
    """Two-channel white noise with one template planted (peak at the given sample indices)."""
    from spikeinterface.core import NumpyRecording

    k = 30
    t = np.arange(k)
    atom = np.stack([-np.exp(-((t - 9) / 2.5) ** 2) + 0.4 * np.exp(-((t - 16) / 4.0) ** 2),
                     -0.6 * np.exp(-((t - 10) / 3.0) ** 2)])
    atom /= np.linalg.norm(atom)
    peak = int(np.abs(atom).max(axis=0).argmax())
    rng = np.random.default_rng(seed)
    traces = rng.standard_normal((n_samples, 2)).astype(np.float32)
    for s in spike_times:
        traces[s - peak: s - peak + k] += amplitude * atom.T
    model = CRsAE(torch.from_numpy(atom[None].astype(np.float32)), torch.tensor([4.0]), n_iter=50,
                  reference_amplitude=torch.tensor([amplitude]))
    return NumpyRecording([traces], sampling_frequency=FS), model


@pytest.mark.parametrize("offset", [-2, -1, 0, 1, 2])
def test_spike_on_chunk_boundary_is_found_once(offset):
    chunk = 15000  # chunk_duration_s = 1.0 at 15 kHz
    times = [5000, chunk + offset, 2 * chunk + 7000, 3 * chunk + offset]
    recording, model = planted_recording(times)
    params = InferenceParams(chunk_duration_s=1.0)
    spikes = detect_spikes(model, recording, params)
    assert sorted(spikes.sample_index.tolist()) == times
    # the same spikes as one chunk covering everything
    whole = detect_spikes(model, recording, InferenceParams(chunk_duration_s=10.0))
    assert np.array_equal(np.sort(whole.sample_index), np.sort(spikes.sample_index))
    assert np.allclose(np.sort(whole.amplitude), np.sort(spikes.amplitude), rtol=1e-4)


def test_screened_encoding_matches_dense_encoding():
    rng = np.random.default_rng(1)
    times = np.sort(rng.choice(np.arange(100, 59000), size=120, replace=False))
    times = times[np.concatenate([[True], np.diff(times) > 40])]
    recording, model = planted_recording(times.tolist(), amplitude=12.0)
    y = torch.from_numpy(recording.get_traces().T.copy())
    dense = encode_screened(model, y, 0.0)
    screened = encode_screened(model, y, 0.6)
    assert (dense > 0).sum() > 0
    assert torch.allclose(dense, screened, atol=1e-3)
    p_dense = read_out(dense, 15)
    p_screened = read_out(screened, 15)
    assert np.array_equal(p_dense[0], p_screened[0])


def test_every_planted_spike_found_and_nothing_else():
    rng = np.random.default_rng(2)
    times = np.sort(rng.choice(np.arange(100, 59000), size=150, replace=False))
    times = times[np.concatenate([[True], np.diff(times) > 40])]
    recording, model = planted_recording(times.tolist(), amplitude=15.0)
    spikes = detect_spikes(model, recording, InferenceParams(chunk_duration_s=0.7))
    found = np.sort(spikes.sample_index)
    assert len(found) == len(times)
    assert np.abs(found - times).max() <= 1  # noise can move a code peak by one sample
    assert np.all(np.abs(spikes.amplitude - 15.0) < 6.0)  # lasso shrinks amplitudes by about lambda


def test_read_out_merges_code_mass_and_respects_refractory():
    z = torch.zeros(2, 100)
    z[0, 10], z[0, 11] = 3.0, 1.0      # one spike spread over two samples
    z[0, 40] = 2.0                      # a second spike
    z[0, 45] = 1.0                      # too close to the previous one: not a new spike
    z[1, 70] = 5.0
    pos, unit, amp = read_out(z, refractory=10)
    assert pos.tolist() == [10, 40, 70]
    assert unit.tolist() == [0, 0, 1]
    assert amp.tolist() == pytest.approx([4.0, 2.0, 5.0])


def test_spikes_concatenate_and_select():
    a = Spikes(np.array([1, 2]), np.array([0, 0]), np.array([0, 1]), np.array([1.0, 2.0], np.float32))
    b = Spikes.concatenate([a, a.select(np.array([False, True]))])
    assert b.sample_index.tolist() == [1, 2, 2]
    assert Spikes.concatenate([]).sample_index.size == 0


def test_a_misfit_coded_by_a_similar_atom_is_dropped_and_two_unlike_units_firing_together_are_kept():
    from crsae_sort.infer import drop_duplicates

    t = np.arange(30)
    a = np.stack([-np.exp(-((t - 9) / 2.5) ** 2), -0.5 * np.exp(-((t - 10) / 3.0) ** 2)])
    alike = a + 0.2 * np.stack([np.exp(-((t - 14) / 3.0) ** 2), np.zeros(30)])    # cosine ~0.95 with a
    unlike = np.stack([np.zeros(30), np.exp(-((t - 20) / 2.0) ** 2)])                # another channel, later
    atoms = np.stack([x / np.linalg.norm(x) for x in (a, alike, unlike)]).astype(np.float32)
    model = CRsAE(torch.from_numpy(atoms), torch.full((3,), 4.0), n_iter=10)
    from crsae_sort.units import template_similarity

    sim = template_similarity(atoms.transpose(0, 2, 1).astype(np.float64))
    assert sim[0, 1] > 0.9 and sim[0, 2] < 0.7
    # (sample, unit, amplitude): a spike of atom 0 read out by atom 1 too, 3 samples later and smaller;
    # atom 2 firing 2 samples after atom 0 elsewhere; a spike of atom 1 alone; the same pair 20 samples apart
    rows = [(1000, 0, 20.0), (1003, 1, 6.0), (5000, 0, 18.0), (5002, 2, 15.0), (9000, 1, 12.0),
            (12000, 0, 19.0), (12020, 1, 7.0)]
    spikes = Spikes(np.array([r[0] for r in rows]), np.zeros(len(rows), np.int64), np.array([r[1] for r in rows]),
                    np.array([r[2] for r in rows], np.float32))
    kept = drop_duplicates(spikes, model, within=5)
    assert list(zip(kept.sample_index, kept.unit_index)) == [(1000, 0), (5000, 0), (5002, 2), (9000, 1),
                                                            (12000, 0), (12020, 1)]
    # the larger amplitude wins whichever atom it belongs to; within=0 keeps everything
    spikes.amplitude[1] = 30.0
    assert drop_duplicates(spikes, model, within=5).sample_index[0] == 1003
    assert len(drop_duplicates(spikes, model, within=0).sample_index) == len(rows)
