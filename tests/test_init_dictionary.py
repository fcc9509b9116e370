"""The initial dictionary: per-neighbourhood clustering on a dense probe, and the global path kept for small ones.

The dense-probe test scores atoms against ground truth the way crsae_sort/bench/init.py (scripts/benchmark_init.py) does: a
ground-truth unit is found when some atom has best-lag cosine similarity >= 0.9 with the unit's
mean waveform on the same preprocessed recording. Templates rather than spike-time agreement,
because the dictionary is what this stage hands to training: a cluster can agree with a unit's
spike times and still be a poor atom (misaligned, or the mean of two phases), and an atom that
matches the template is one training can start from.
"""

import numpy as np
import pytest

from crsae_sort import init_local
from crsae_sort.errors import InputError
from crsae_sort.init_dictionary import initial_dictionary, merge_similar, resolve_init_method, template_similarity
from crsae_sort.params import SortParams
from crsae_sort.preprocess import preprocess

def _bench():
    from crsae_sort.bench import init

    return init


@pytest.fixture(scope="module")
def dense_case():
    """A seeded 64-channel, 2-column, 24-unit ground truth, preprocessed, with its unit SNRs."""
    from crsae_sort.demo import unit_snrs

    bench = _bench()
    recording, gt_sorting = bench.make_case(64, 24, duration_s=15.0, seed=bench.SEED)
    recording = recording.save(format="memory", n_jobs=1, progress_bar=False)  # generated once, not per read
    params = SortParams()
    pre = preprocess(recording, params.preprocess, seed=0)
    pre.recording = pre.recording.save(format="memory", n_jobs=1, progress_bar=False)
    snrs = unit_snrs(recording, gt_sorting)
    return bench, pre, gt_sorting, np.array([snrs[u] for u in gt_sorting.unit_ids]), params


def test_local_init_finds_the_units_of_a_64_channel_probe(dense_case):
    bench, pre, gt_sorting, snr, params = dense_case
    assert resolve_init_method(pre.recording, params.init) == "local"
    init = initial_dictionary(pre.recording, params.init, seed=0)
    assert init.method == "local"
    n_atoms, n_channels, k = init.dictionary.shape
    assert n_channels == 64 and init.dictionary.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(init.dictionary.reshape(n_atoms, -1), axis=1), 1.0, atol=1e-5)
    templates = bench.gt_templates(pre.recording, gt_sorting, pre.decimation, init.n_before, k - init.n_before)
    best = bench.match_units(init.dictionary, templates)
    strong = snr >= bench.SNR_FOUND
    assert strong.sum() >= 15                                    # the case has enough units to mean something
    found = float(np.mean(best[strong] >= bench.MATCH_COSINE))
    assert found >= 0.9, f"found {found:.2f} of {strong.sum()} units with SNR >= 8; best cosines {best[strong]}"
    # the template count follows the units, not a cap: no unit split into many atoms
    assert strong.sum() * 0.9 <= n_atoms <= 1.5 * len(snr)
    # each found unit's best atom peaks near the unit's own peak channel
    locations = pre.recording.get_channel_locations()
    atoms = init.dictionary.transpose(0, 2, 1)
    sim = template_similarity(np.concatenate([templates, atoms]).astype(np.float64))[: len(templates), len(templates):]
    for u in np.flatnonzero(strong & (best >= bench.MATCH_COSINE)):
        unit_peak = np.abs(templates[u]).max(axis=0).argmax()
        atom_peak = init.peak_channels[sim[u].argmax()]
        assert np.linalg.norm(locations[unit_peak] - locations[atom_peak]) <= params.init.neighbourhood_radius_um
    assert init.outside_energy.shape == (n_atoms,) and np.all((init.outside_energy >= 0) & (init.outside_energy < 1))


@pytest.mark.slow
def test_global_init_of_the_same_probe_is_capped_and_misses_units(dense_case):
    """The reason for the local path, as a number: the global clustering on 64 channels finds fewer."""
    bench, pre, gt_sorting, snr, params = dense_case
    glob = SortParams.from_dict({"init_method": "global"}).init
    init = initial_dictionary(pre.recording, glob, seed=0)
    k = init.dictionary.shape[-1]
    templates = bench.gt_templates(pre.recording, gt_sorting, pre.decimation, init.n_before, k - init.n_before)
    best = bench.match_units(init.dictionary, templates)
    assert len(init.dictionary) <= glob.max_templates
    assert np.mean(best[snr >= bench.SNR_FOUND] >= bench.MATCH_COSINE) < 0.9


def test_auto_keeps_the_global_path_on_a_tetrode(gt_tetrode):
    recording, _ = gt_tetrode
    params = SortParams()
    pre = preprocess(recording.frame_slice(0, 300000), params.preprocess, seed=0)
    assert resolve_init_method(pre.recording, params.init) == "global"
    auto = initial_dictionary(pre.recording, params.init, seed=0)
    glob = initial_dictionary(pre.recording, SortParams.from_dict({"init_method": "global"}).init, seed=0)
    np.testing.assert_array_equal(auto.dictionary, glob.dictionary)
    assert auto.method == "global" and auto.peak_channels.shape == (len(auto.dictionary),)


def test_local_with_a_fixed_template_count_is_refused(gt_tetrode):
    recording, _ = gt_tetrode
    params = SortParams.from_dict({"init_method": "local", "n_templates": 4}).init
    with pytest.raises(InputError, match="n_templates=4 fixes the total"):
        resolve_init_method(recording, params)


def test_neighbourhoods_of_a_two_column_probe():
    y = np.repeat(np.arange(16) * 20.0, 2)
    locations = np.stack([np.tile([0.0, 20.0], 16), y], axis=1)           # 32 contacts, 20 um pitch
    hoods = init_local.neighbourhoods(locations, radius_um=60.0, bin_um=40.0)
    assert len(hoods.channels) == 8                                          # 2 rows x 2 columns per bin
    assert np.bincount(hoods.bin_of_channel).tolist() == [4] * 8
    middle = hoods.channels[4]                                               # rows 8-9: rows 5-12 are within 60 um
    assert set(middle) >= set(np.flatnonzero(hoods.bin_of_channel == 4))
    assert np.ptp(locations[middle, 1]) <= 40.0 + 2 * 60.0 and len(middle) < 32
    one = init_local.neighbourhoods(locations[:4], radius_um=60.0, bin_um=40.0)
    assert len(one.channels) == 1 and len(one.channels[0]) == 4


def _random_templates(n, k=30, m=12, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.standard_normal((n, k, m)).cumsum(axis=1)
    return t * np.hanning(k)[None, :, None]


def test_pair_similarity_without_upsampling_is_template_similarity():
    t = _random_templates(6)
    i, j = np.triu_indices(6, k=1)
    np.testing.assert_allclose(init_local.pair_similarity(t, i, j, upsample=1)[0], template_similarity(t)[i, j],
                               rtol=1e-10)


def test_half_sample_shift_of_one_unit_is_merged():
    """One unit at two sub-sample phases: integer lags see two templates, half-sample lags one."""
    from scipy.signal import resample_poly

    k, m = 30, 8
    t = np.arange(4 * k) / 4.0
    wave = -np.exp(-((t - 10.0) / 0.6) ** 2) + 0.4 * np.exp(-((t - 13.0) / 1.5) ** 2)
    fine = wave[:, None] * np.exp(-np.arange(m) / 2.0)[None, :]              # 4x oversampled, (4K, M)
    a, b = fine[0::4], fine[2::4]                                            # phases 0 and 1/2 sample
    pair = np.stack([a, b])
    assert template_similarity(pair)[0, 1] < 0.9
    assert init_local.pair_similarity(pair, np.array([0]), np.array([1]))[0][0] > 0.93
    assert resample_poly(a, 2, 1, axis=0).shape == (2 * k, m)
    locations = np.stack([np.zeros(m), np.arange(m) * 20.0], axis=1)
    merged, sizes = init_local.merge_nearby(pair, [100, 120], locations, 60.0, 0.9, 1.3)
    assert len(merged) == 1 and sizes == [220]
    np.testing.assert_array_equal(merged[0], b)                              # the larger cluster's template


def test_merge_nearby_is_the_global_greedy_merge_restricted_to_neighbours():
    base = _random_templates(5, seed=1)
    noisy = base + 0.03 * np.random.default_rng(2).standard_normal(base.shape) * np.abs(base).max()
    t = np.concatenate([base, noisy, 1.5 * base[:2]])                       # near-duplicates; 2 louder copies
    sizes = list(range(10, 10 + len(t)))
    locations = np.stack([np.zeros(12), np.arange(12) * 20.0], axis=1)
    ref, ref_sizes = merge_similar(t, sizes, 0.9, 1.3)
    got, got_sizes = init_local.merge_nearby(t, sizes, locations, 1e9, 0.9, 1.3, upsample=1)
    assert len(ref) < len(t)
    np.testing.assert_array_equal(np.sort(got.reshape(len(got), -1), axis=0), np.sort(ref.reshape(len(ref), -1), axis=0))
    assert sorted(got_sizes) == sorted(ref_sizes)
    # far apart on the probe, the same templates are never compared
    far = np.stack([np.zeros(12), np.arange(12) * 1000.0], axis=1)
    spread = t.copy()
    for n in range(len(t)):                                                  # move template n's peak to channel n
        spread[n] = np.roll(t[n], n - int(np.abs(t[n]).max(axis=0).argmax()), axis=1)
    kept, _ = init_local.merge_nearby(spread, sizes, far, 60.0, 0.9, 1.3, upsample=1)
    assert len(kept) == len(t)


def test_one_units_templates_merge_despite_far_channel_noise():
    """On a long probe a template is a few hundred spikes' mean away from its bin (noise on hundreds of
    channels): two templates of one small unit must still merge, compared near their peak channels."""
    rng = np.random.default_rng(5)
    k, m = 30, 192
    locations = np.stack([np.zeros(m), np.arange(m) * 20.0], axis=1)
    t = np.arange(k)
    wave = -np.exp(-((t - 10.0) / 1.2) ** 2) + 0.3 * np.exp(-((t - 15.0) / 3.0) ** 2)
    unit = np.zeros((k, m))
    unit[:, 90:95] = 6.0 * wave[:, None] * np.array([0.4, 0.8, 1.0, 0.8, 0.4])[None, :]   # 6 noise sd at the peak
    copies = np.stack([unit + rng.standard_normal((k, m)) / np.sqrt(50) for _ in range(2)])  # 50-spike means
    assert template_similarity(copies)[0, 1] < 0.8                       # on every channel: two units
    merged, sizes = init_local.merge_nearby(copies, [50, 60], locations, 60.0, 0.9, 1.3, upsample=1)
    assert len(merged) == 1 and sizes == [110]
    other = copies[1].copy()
    other[:, 90:95] = 6.0 * np.roll(wave, 6)[:, None] * np.array([1.0, 0.8, 0.4, 0.2, 0.1])[None, :]
    kept, _ = init_local.merge_nearby(np.stack([copies[0], other]), [50, 60], locations, 60.0, 0.9, 1.3,
                                      upsample=1)
    assert len(kept) == 2                                                # another shape stays apart


def test_align_troughs_brings_one_spike_cut_a_sample_apart_onto_one_waveform():
    from crsae_sort.groups import align_troughs

    t = np.arange(30.0)

    def spike(centre):                                                        # (K, 2): one unit on two channels
        wave = -np.exp(-0.5 * ((t - centre) / 1.5) ** 2) + 0.3 * np.exp(-0.5 * ((t - centre - 5) / 2.5) ** 2)
        return np.stack([wave, 0.5 * wave], axis=1)

    # a trough between samples 9 and 10 detected on either: the snippets differ by a 0.6-sample shift
    snippets = np.stack([spike(10.3), spike(9.7), spike(10.0)]).astype(np.float32)
    aligned = align_troughs(snippets)
    before = np.abs(snippets[0] - snippets[1]).max()
    after = np.abs(aligned[0] - aligned[1]).max()
    assert after < 0.15 * before
    assert np.abs(aligned[2] - snippets[2]).max() < 0.05                      # trough on the sample: barely moved
    assert aligned.shape == snippets.shape and aligned.dtype == snippets.dtype


def _two_unit_bins(n_bins=9, seed=0):
    """LocalPeaks of ``n_bins`` bins, each holding two units' noisy snippets (60 each, 3 channels)."""
    from crsae_sort.init_local import LocalPeaks

    rng = np.random.default_rng(seed)
    t = np.arange(20)
    shapes = [-8 * np.exp(-((t - 7) / 2.0) ** 2), -5 * np.exp(-((t - 9) / 3.0) ** 2)]
    snippets, members, start = [], [], 0
    for b in range(n_bins):
        units = [np.stack([s * g for g in (1.0, 0.5 + 0.1 * b % 3, 0.2)], axis=1) for s in shapes]
        snips = np.concatenate([u[None] + rng.standard_normal((60, 20, 3)) for u in units]).astype(np.float32)
        snippets.append(snips)
        members.append(np.arange(start, start + len(snips)))
        start += len(snips)
    n = start
    return LocalPeaks(np.zeros(n, np.int64), np.arange(n) * 100, np.zeros(n, np.int64), snippets, members, {})


def test_bins_clustered_in_worker_processes_get_the_same_labels():
    from crsae_sort.init_local import cluster_bins

    peaks = _two_unit_bins()
    one = cluster_bins(peaks, 0.01, 24, seed=0, n_jobs=1)
    two = cluster_bins(peaks, 0.01, 24, seed=0, n_jobs=2)
    assert np.array_equal(one, two)
    assert len(np.unique(one[one >= 0])) == 2 * len(peaks.snippets)   # each bin's two units


def test_a_daemonic_process_starts_no_workers():
    import multiprocessing

    from crsae_sort.threads import worker_processes

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:   # Pool workers are daemonic
        assert pool.apply(worker_processes, (2,)) == 1
    assert worker_processes(2) == 2
