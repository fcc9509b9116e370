"""Initial dictionary from detected spikes: SpikeInterface peak detection, snippets, clustering.

Peaks are detected on random chunks of the preprocessed (white, unit-noise) recording,
snippets of ``K = before + after`` samples around each peak are clustered (PCA, then HDBSCAN for
an automatic number of templates or k-means for a fixed one), near-duplicate clusters are
merged by best-lag cosine similarity, and each cluster's median snippet, scaled to unit norm,
becomes an atom ``h_c`` ``(n_channels, n_times_atom)``.

``init_method=global`` clusters all-channel snippets at once (tetrodes, small probes);
``local`` clusters per spatial bin on the bin's channel neighbourhood and merges neighbouring
duplicates (dense probes, :mod:`crsae_sort.init_local`); ``auto`` picks by the probe's extent.
Atoms stay dense in both: every channel, as the model holds them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .errors import InputError, option
from .io.checkpoints import checkpointed
from .params import InitParams
from .groups import align_troughs, density_groups, principal_features, two_modes
from .units import REFRACTORY, UNKNOWN, same_unit, similarity_and_ratio, trains_relation
from .units import template_similarity  # noqa: F401  (where the clustering's users have always found it)

logger = logging.getLogger(__name__)

CHUNK_S = 1.0


@checkpointed
@dataclass
class InitialDictionary:
    dictionary: np.ndarray      # (n_atoms, n_channels, n_times_atom), unit-norm atoms
    amplitudes: np.ndarray      # (n_atoms,) median code amplitude <snippet, h_c> of each cluster
    n_before: int               # samples before the peak in an atom
    n_peaks: int                # peaks detected
    cluster_sizes: list[int]    # peaks per atom
    peak_channels: np.ndarray | None = None       # (n_atoms,) channel index of each atom's largest |value|
    outside_energy: np.ndarray | None = None      # (n_atoms,) fraction of each atom's energy on channels
                                                  # farther than neighbourhood_radius_um from its peak channel
    method: str = "global"                        # the init_method that ran ("global" or "local")


def initial_dictionary(recording, params: InitParams, seed: int) -> InitialDictionary:
    """Detect, cut and cluster spikes of ``recording`` (unit noise); return unit-norm atoms.

    ``params.init_method`` picks the clustering: ``global`` (all channels at once, the whole probe
    one neighbourhood), ``local`` (per spatial bin, :mod:`crsae_sort.init_local`) or ``auto``
    (``global`` when one neighbourhood holds every channel or ``n_templates`` is fixed).
    """
    fs = recording.get_sampling_frequency()
    n_before = max(1, int(round(params.template_ms_before * fs / 1000)))
    n_after = max(1, int(round(params.template_ms_after * fs / 1000)))
    method = resolve_init_method(recording, params)
    slices = random_slices(recording, params.init_duration_s, seed)
    if method == "global":
        atoms, sizes, n_peaks = _global_templates(recording, slices, params, seed, n_before, n_after)
    else:
        atoms, sizes, n_peaks = _local_templates(recording, slices, params, seed, n_before, n_after)
    norms = np.linalg.norm(atoms.reshape(len(atoms), -1), axis=1)
    weak = norms < params.detect_threshold
    if weak.any() and not weak.all() and params.n_templates == 0:
        # a cluster whose median snippet is weaker than one threshold crossing is noise, not a unit
        logger.info("dropped %d noise-like cluster(s) of amplitude %s", int(weak.sum()),
                    np.array2string(norms[weak], precision=1))
        atoms, norms = atoms[~weak], norms[~weak]
        sizes = [s for s, w in zip(sizes, weak) if not w]
    dictionary = np.ascontiguousarray(atoms.transpose(0, 2, 1)) / norms[:, None, None]  # (C, M, K)
    peaks = _peak_channels(dictionary)
    outside = _outside_energy(dictionary, peaks, channel_locations_um(recording), params.neighbourhood_radius_um)
    logger.info("initial dictionary (%s): %d peaks -> %d templates of %d samples (sizes %s, amplitudes %s, "
                "energy outside %g um of the peak channel: median %.3f, max %.3f)", method, n_peaks,
                len(dictionary), n_before + n_after, sizes, np.array2string(norms, precision=1),
                params.neighbourhood_radius_um, np.median(outside) if len(outside) else 0.0,
                outside.max() if len(outside) else 0.0)
    return InitialDictionary(dictionary.astype(np.float32), norms.astype(np.float32), n_before, n_peaks,
                             list(map(int, sizes)), peaks, outside.astype(np.float32), method)


def resolve_init_method(recording, params: InitParams) -> str:
    """``global`` or ``local``: what ``params.init_method`` means for this recording's probe."""
    if params.init_method == "local" and params.n_templates > 0:
        raise InputError(f"n_templates={params.n_templates} fixes the total number of templates, which only "
                         "init_method=global can do; set n_templates=0 or init_method=global")
    if params.init_method != "auto":
        return params.init_method
    if params.n_templates > 0:
        return "global"
    from .init_local import neighbourhoods

    hoods = neighbourhoods(channel_locations_um(recording), params.neighbourhood_radius_um, params.spatial_bin_um)
    n_channels = recording.get_num_channels()
    return "global" if all(len(c) == n_channels for c in hoods.channels) else "local"


def _global_templates(recording, slices, params: InitParams, seed: int, n_before: int,
                      n_after: int) -> tuple[np.ndarray, list[int], int]:
    """Templates ``(n, K, n_channels)`` from clustering all-channel snippets at once; sizes; peaks."""
    snippets, where = detect_and_cut(recording, slices, params.detect_threshold, n_before, n_after)
    n_peaks = len(snippets)
    _check_enough_peaks(n_peaks, recording, slices, params)
    labels = cluster_snippets(snippets, params, seed)
    atoms, sizes = _cluster_templates(snippets, labels)
    if params.n_templates == 0:
        ids = [u for u in np.unique(labels) if u >= 0]
        trains = [where[labels == u] for u in ids]
        seconds = sum(b - a for _, a, b in slices) / recording.get_sampling_frequency()
        flat = align_troughs(snippets).reshape(len(snippets), -1)
        times = where[:, 0] * 2**40 + where[:, 1]          # slices are in time order

        def apart(a, b):  # two sizes of one shape
            return two_modes(flat, a, b, seed, times)

        atoms, sizes = merge_similar(atoms, sizes, params.merge_similarity, params.merge_amplitude_ratio,
                                     trains, recording.get_sampling_frequency(), seconds,
                                     members=[np.flatnonzero(labels == u) for u in ids], apart=apart)
        if len(atoms) > params.max_templates:
            keep = np.argsort(sizes)[::-1][: params.max_templates]
            atoms, sizes = atoms[keep], [sizes[i] for i in keep]
    return atoms, sizes, n_peaks


def _local_templates(recording, slices, params: InitParams, seed: int, n_before: int,
                     n_after: int) -> tuple[np.ndarray, list[int], int]:
    """Templates from clustering per spatial bin, duplicates across neighbouring bins merged."""
    from . import init_local as loc

    locations = channel_locations_um(recording)
    hoods = loc.neighbourhoods(locations, params.neighbourhood_radius_um, params.spatial_bin_um)
    peaks = loc.detect_local(recording, slices, params.detect_threshold, n_before, n_after, hoods)
    _check_enough_peaks(peaks.n_peaks, recording, slices, params)
    import torch

    from .threads import worker_processes

    # as many worker processes as the run's CPU threads (configured once at the entry point); 1 in a daemon
    labels = loc.cluster_bins(peaks, params.min_cluster_fraction, params.max_templates, seed,
                              n_jobs=worker_processes(torch.get_num_threads()))
    if labels.max() < 0:  # no bin holds a cluster (a quiet recording): the whole probe at once
        logger.info("local clustering found no cluster in %d bins; clustering all channels at once",
                    len(hoods.channels))
        return _global_templates(recording, slices, params, seed, n_before, n_after)
    atoms, sizes = loc.full_templates(recording, slices, peaks, labels, hoods, n_before, n_after, seed)
    n_clusters = len(atoms)
    atoms, sizes = loc.merge_nearby(atoms, sizes, locations, params.neighbourhood_radius_um,
                                    params.merge_similarity, params.merge_amplitude_ratio)
    order = np.argsort(loc.peak_channels(atoms), kind="stable")  # atoms ordered along the probe
    logger.info("local clustering: %d bins, %d peaks -> %d clusters -> %d after merging neighbours",
                len(hoods.channels), peaks.n_peaks, n_clusters, len(atoms))
    return atoms[order], [sizes[i] for i in order], peaks.n_peaks


def _check_enough_peaks(n_peaks: int, recording, slices, params: InitParams) -> None:
    min_peaks = max(10, params.n_templates)
    if n_peaks < min_peaks:
        fs = recording.get_sampling_frequency()
        strongest = _strongest_negative_peak(recording, slices)
        seconds = sum(end - start for _, start, end in slices) / fs
        suggestion = max(2.0, float(np.floor(10 * 0.9 * strongest) / 10))
        setting = option(f"detect_threshold={suggestion:g}", f"--set detect_threshold={suggestion:g}")
        raise InputError(f"only {n_peaks} spikes detected at detect_threshold={params.detect_threshold} in "
                         f"{seconds:.1f} s of recording; the strongest negative peak is {strongest:.1f} noise "
                         f"sigma: try {setting}, or check that the recording holds spikes")


def channel_locations_um(recording) -> np.ndarray:
    """Contact positions ``(n_channels, 2)`` in µm; a recording without them is one point."""
    try:
        return np.asarray(recording.get_channel_locations(), dtype=np.float64)[:, :2]
    except ValueError:  # no probe attached: every channel in one neighbourhood
        return np.zeros((recording.get_num_channels(), 2))


def _peak_channels(dictionary: np.ndarray) -> np.ndarray:
    """Channel of each atom's largest absolute value; ``dictionary`` is ``(n_atoms, n_channels, K)``."""
    return np.abs(dictionary).max(axis=2).argmax(axis=1).astype(np.int64)


def _outside_energy(dictionary: np.ndarray, peaks: np.ndarray, locations: np.ndarray, radius_um: float) -> np.ndarray:
    """Fraction of each atom's energy on channels farther than ``radius_um`` from its peak channel."""
    energy = (dictionary.astype(np.float64) ** 2).sum(axis=2)                  # (n_atoms, n_channels)
    far = np.linalg.norm(locations[None, :, :] - locations[peaks][:, None, :], axis=2) > radius_um
    return (energy * far).sum(axis=1) / np.maximum(energy.sum(axis=1), 1e-30)


def random_slices(recording, duration_s: float, seed: int) -> list[tuple[int, int, int]]:
    """Non-overlapping ``(segment, start, end)`` chunks of ~1 s totalling ``duration_s``, seeded."""
    fs = recording.get_sampling_frequency()
    chunk = int(CHUNK_S * fs)
    candidates = []
    for seg in range(recording.get_num_segments()):
        n = recording.get_num_samples(seg)
        candidates += [(seg, s, min(s + chunk, n)) for s in range(0, n, chunk)]
    rng = np.random.default_rng(seed)
    n_pick = min(len(candidates), max(1, int(np.ceil(duration_s / CHUNK_S))))
    picked = rng.choice(len(candidates), size=n_pick, replace=False)
    return sorted(candidates[i] for i in picked)


def detect_and_cut(recording, slices, threshold: float, n_before: int,
                   n_after: int) -> tuple[np.ndarray, np.ndarray]:
    """Snippets ``(n_peaks, n_before + n_after, n_channels)`` around negative peaks of the ``slices``
    ``[(segment, start, end), ...]``, and where each peak is: ``(n_peaks, 2)`` int64 rows of (slice
    index, sample within the slice's segment).

    Peaks come from :func:`crsae_sort.peaks.spike_detector` (locally exclusive: one per spike within
    100 µm and 0.5 ms); the data has unit noise, so ``threshold`` is in noise standard deviations.
    """
    from .peaks import spike_detector

    n_channels = recording.get_num_channels()
    detect = spike_detector(recording, threshold)
    window = np.arange(-n_before, n_after)
    out, where = [], []
    for i, (seg, start, end) in enumerate(slices):
        traces = np.asarray(recording.get_traces(segment_index=seg, start_frame=start, end_frame=end), np.float32)
        idx, _ = detect(traces)
        idx = idx[(idx >= n_before) & (idx < len(traces) - n_after)]
        if len(idx) == 0:
            continue
        out.append(traces[idx[:, None] + window[None, :], :])
        where.append(np.stack([np.full(len(idx), i), start + idx], axis=1).astype(np.int64))
    if not out:
        return np.zeros((0, n_before + n_after, n_channels), dtype=np.float32), np.zeros((0, 2), np.int64)
    return np.concatenate(out), np.concatenate(where)


def _strongest_negative_peak(recording, slices) -> float:
    """Largest ``-min(y)`` over the slices, in noise standard deviations (the data has unit noise)."""
    return float(max(-recording.get_traces(segment_index=seg, start_frame=a, end_frame=b).min()
                     for seg, a, b in slices))


def cluster_snippets(snippets: np.ndarray, params: InitParams, seed: int) -> np.ndarray:
    """Cluster labels (``-1`` = noise) of snippets ``(n, K, M)``, on their first principal components.

    With ``n_templates`` fixed: k-means. Otherwise HDBSCAN finds the dense groups, and each group is then
    split as its own data splits it (:func:`~crsae_sort.groups.split_groups`): on real noise two units of
    nearby shapes sit in one density group, which HDBSCAN on the whole set's components does not separate.
    Groups of one unit that this over-splits are merged back by :func:`merge_similar` (and by the callers' own merges).
    """
    from sklearn.cluster import KMeans

    if params.n_templates > 0:
        feats = principal_features(snippets, seed)
        return KMeans(n_clusters=params.n_templates, n_init=4, random_state=seed).fit_predict(feats)
    return density_groups(snippets, max(10, int(params.min_cluster_fraction * len(snippets))), seed)


def _cluster_templates(snippets: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, list[int]]:
    ids = [u for u in np.unique(labels) if u >= 0]
    atoms = np.stack([np.median(snippets[labels == u], axis=0) for u in ids])
    return atoms, [int((labels == u).sum()) for u in ids]


def merge_similar(atoms: np.ndarray, sizes: list[int], threshold: float, max_ratio: float,
                  trains: list[np.ndarray] | None = None, fs: float = 0.0,
                  seconds: float = 0.0, members: list[np.ndarray] | None = None,
                  apart=None) -> tuple[np.ndarray, list[int]]:
    """Greedily merge templates ``(n, K, M)`` that are one unit, most similar pair first.

    One unit: :func:`~crsae_sort.units.same_unit` (best-lag cosine similarity above ``threshold``, ratio of
    norms at most ``max_ratio``: two neurons can share a shape at different distances from the probe; and,
    with each cluster's peaks ``trains`` ``[(n_i, 2) (slice, sample)]`` over ``seconds`` of slices at
    ``fs``, trains that are not independent, or refractory whatever the amplitudes). The larger cluster's
    template is kept.

    With each cluster's snippet indices ``members`` and ``apart(a, b)``, a pair that is one unit by those rules
    but whose sizes are two modes (``apart``: :func:`~crsae_sort.groups.two_modes`) stays apart unless their
    trains are refractory: two cells of one shape and nearly one amplitude that the split separated (on a
    locust hybrid, units of SNR 7.5 and 10 with cosine 0.95 and norms 1.17 apart, 164 and 160 snippets, each
    split out cleanly, were merged back into one unit here).
    """
    atoms, sizes = list(atoms), list(sizes)
    trains = list(trains) if trains is not None else None
    members = list(members) if members is not None and apart is not None else None
    held = np.zeros((len(atoms), len(atoms)), dtype=bool)       # pairs found to be two modes
    while len(atoms) > 1:
        sim, ratio = similarity_and_ratio(np.stack(atoms))
        relation = None
        if trains is not None:  # the trains only where the shapes agree; the detector keeps one peak per 0.5 ms
            relation = np.full(sim.shape, UNKNOWN, dtype=object)
            for i, j in zip(*np.nonzero(np.triu(sim > threshold, k=1))):
                relation[i, j] = relation[j, i] = trains_relation(trains[i], trains[j], fs, seconds, blind_ms=0.5)
        same = same_unit(sim, ratio, threshold, max_ratio, relation) & ~held
        np.fill_diagonal(same, False)
        if not same.any():
            break
        i, j = np.unravel_index(np.argmax(np.where(same, sim, -np.inf)), sim.shape)
        if members is not None and (relation is None or relation[i, j] != REFRACTORY) and apart(members[i], members[j]):
            held[i, j] = held[j, i] = True
            continue
        keep, drop = (i, j) if sizes[i] >= sizes[j] else (j, i)
        sizes[keep] += sizes[drop]
        if trains is not None:
            trains[keep] = np.concatenate([trains[keep], trains[drop]])
            del trains[drop]
        if members is not None:
            members[keep] = np.concatenate([members[keep], members[drop]])
            del members[drop]
        held[keep, :] = held[:, keep] = False                    # a new group: its pairs are asked again
        held = np.delete(np.delete(held, drop, axis=0), drop, axis=1)
        del atoms[drop], sizes[drop]
    return np.stack(atoms), sizes
