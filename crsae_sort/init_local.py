"""Initial templates on dense probes: detection, features and clustering per channel neighbourhood.

The probe is cut into spatial bins (a ``spatial_bin_um`` grid over the contact positions, as
Kilosort4 clusters per bin). A peak belongs to the bin of its peak channel and is cut on that
bin's neighbourhood: the channels within ``neighbourhood_radius_um`` of any of the bin's
channels. Each bin's snippets are clustered on their own (PCA, then HDBSCAN, as the global path
does for the whole probe), so the cost grows with the number of bins, i.e. linearly with the
channels. Each cluster's template is then measured on every channel (median on the
neighbourhood, mean of up to ``MAX_TEMPLATE_SPIKES`` spikes elsewhere), and the same unit seen
from two neighbouring bins is merged by best-lag cosine similarity, compared only between
templates whose peak channels lie within the neighbourhood radius of each other.

Traces are ``(n_samples, n_channels)``; snippets ``(n_peaks, K, n_neighbourhood)``; templates
``(n_templates, K, n_channels)`` with ``K = n_before + n_after``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .groups import density_groups
from .units import same_unit

logger = logging.getLogger(__name__)

MAX_PEAKS_PER_BIN = 5000     # a bin's clustering sees at most this many peaks (random subset)
MAX_TEMPLATE_SPIKES = 300    # spikes averaged per template on the channels outside its neighbourhood
TRACE_CACHE_BYTES = 256 * 2**20  # slices kept in memory between the two passes; the rest are read again
MIN_CLUSTER_PEAKS = 20           # a bin's cluster needs this many peaks (collisions of two units form small ones)
UPSAMPLE = 2                 # merging compares templates at half-sample lags
PARALLEL_MIN_BINS = 8        # fewer bins are clustered in this process (starting workers costs ~0.3 s)


@dataclass
class Neighbourhoods:
    """Spatial bins of a probe and the channels each bin's peaks are cut on."""
    bin_of_channel: np.ndarray       # (n_channels,) bin index of each channel
    channels: list[np.ndarray]       # per bin: sorted channel indices within the radius of the bin


@dataclass
class LocalPeaks:
    """Peaks detected in the init slices, grouped by the bin of their peak channel."""
    slice_index: np.ndarray          # (n_peaks,) which slice each peak is in
    sample_index: np.ndarray         # (n_peaks,) sample within its slice
    channel_index: np.ndarray        # (n_peaks,) peak channel
    snippets: list[np.ndarray]       # per bin: (n_bin_peaks, K, len(channels[bin]))
    members: list[np.ndarray]        # per bin: indices into the peak arrays, in the order of snippets
    cached: dict[int, np.ndarray]    # traces of the slices kept for the template pass, by slice index

    @property
    def n_peaks(self) -> int:
        return len(self.sample_index)


def neighbourhoods(locations: np.ndarray, radius_um: float, bin_um: float) -> Neighbourhoods:
    """Bins of a ``bin_um`` grid over the contact ``locations`` ``(n_channels, 2)`` and their channels.

    A bin's neighbourhood is every channel within ``radius_um`` of one of the bin's own channels.
    """
    cells = np.floor((locations - locations.min(axis=0)) / bin_um).astype(np.int64)
    _, bin_of_channel = np.unique(cells, axis=0, return_inverse=True)
    bin_of_channel = bin_of_channel.ravel()
    dist = np.linalg.norm(locations[:, None, :] - locations[None, :, :], axis=2)
    channels = [np.flatnonzero((dist[bin_of_channel == b] <= radius_um).any(axis=0))
                for b in range(bin_of_channel.max() + 1)]
    return Neighbourhoods(bin_of_channel, channels)


def detect_local(recording, slices, threshold: float, n_before: int, n_after: int,
                 hoods: Neighbourhoods) -> LocalPeaks:
    """Negative peaks (locally exclusive) of each slice, read once, and their snippets per bin."""
    from .peaks import spike_detector

    detect = spike_detector(recording, threshold)
    window = np.arange(-n_before, n_after)
    n_bins = len(hoods.channels)
    where, cuts, cached, cached_bytes = [], [[] for _ in range(n_bins)], {}, 0
    for s, (seg, start, end) in enumerate(slices):
        traces = recording.get_traces(segment_index=seg, start_frame=start, end_frame=end).astype(np.float32)
        if cached_bytes + traces.nbytes <= TRACE_CACHE_BYTES:
            cached[s], cached_bytes = traces, cached_bytes + traces.nbytes
        samples, chans = detect(traces)
        keep = (samples >= n_before) & (samples < len(traces) - n_after)
        samples, chans = samples[keep], chans[keep]
        bins = hoods.bin_of_channel[chans]
        where.append(np.stack([np.full(len(samples), s), samples, chans, bins]))
        for b in np.unique(bins):
            idx = samples[bins == b]
            cuts[b].append(traces[idx[:, None] + window[None, :]][:, :, hoods.channels[b]])
    where = np.concatenate(where, axis=1) if where else np.zeros((4, 0), dtype=np.int64)
    order = np.lexsort((np.arange(where.shape[1]), where[3]))  # by bin, slice order kept within a bin
    members = np.split(order, np.cumsum(np.bincount(where[3], minlength=n_bins))[:-1])
    snippets = [np.concatenate(c) if c else np.zeros((0, len(window), len(hoods.channels[b])), np.float32)
                for b, c in enumerate(cuts)]
    return LocalPeaks(where[0], where[1], where[2], snippets, members, cached)


def cluster_bins(peaks: LocalPeaks, min_cluster_fraction: float, max_per_bin: int,
                 seed: int, n_jobs: int = 1) -> np.ndarray:
    """Cluster each bin's snippets (PCA, HDBSCAN, splits); global labels per peak, ``-1`` for noise.

    The bins are independent, so with ``n_jobs > 1`` and at least :data:`PARALLEL_MIN_BINS` of them they are
    clustered in ``n_jobs`` worker processes (joblib's loky; the fits hold the GIL, so threads do not help):
    the same labels, as each bin's clustering is seeded alike wherever it runs."""
    labels = np.full(peaks.n_peaks, -1, dtype=np.int64)
    rng = np.random.default_rng(seed)
    tasks = []
    for snips, members in zip(peaks.snippets, peaks.members):
        if len(snips) < MIN_CLUSTER_PEAKS:
            continue
        pick = np.arange(len(snips))
        if len(pick) > MAX_PEAKS_PER_BIN:
            pick = np.sort(rng.choice(len(snips), MAX_PEAKS_PER_BIN, replace=False))
        when = peaks.slice_index[members[pick]] * 2**40 + peaks.sample_index[members[pick]]  # slices are in time order
        tasks.append((members[pick], snips[pick], when))
    jobs = [(snips, min_cluster_fraction, seed, when) for _, snips, when in tasks]
    if n_jobs > 1 and len(tasks) >= PARALLEL_MIN_BINS:
        from joblib import Parallel, delayed
        from joblib.externals.loky import get_reusable_executor

        logger.info("clustering %d bins in %d worker processes", len(tasks), n_jobs)
        try:  # max_nbytes=None: snippets travel pickled, no memory-mapped folder in /dev/shm to leave behind
            results = Parallel(n_jobs=n_jobs, backend="loky", max_nbytes=None)(
                delayed(_cluster_snippets)(*job) for job in jobs)
        finally:  # the workers' memory is not held through training
            get_reusable_executor().shutdown(wait=True)
    else:
        results = [_cluster_snippets(*job) for job in jobs]
    next_label = 0
    for (members, _, _), local in zip(tasks, results):
        ids, counts = np.unique(local[local >= 0], return_counts=True)
        ids = ids[np.argsort(counts)[::-1][:max_per_bin]]   # the largest clusters of the bin
        for u in ids:
            labels[members[local == u]] = next_label
            next_label += 1
    return labels


def _cluster_snippets(snippets: np.ndarray, min_cluster_fraction: float, seed: int,
                      times: np.ndarray | None = None) -> np.ndarray:
    """Labels of one bin's snippets ``(n, K, m)``: HDBSCAN on their first principal components, each group
    then split as the global path's are (:func:`~crsae_sort.groups.split_groups`, on trough-aligned
    snippets), except where its parts are apart in time (``times`` ``(n,)``, increasing with the peaks'
    times): a drifting unit. Without the time test the drifting 128-channel case came out as 57 units for
    48 (7 redundant), and the per-bin path has no trains to merge the pieces back by."""
    min_size = max(MIN_CLUSTER_PEAKS, int(min_cluster_fraction * len(snippets)))
    return density_groups(snippets, min_size, seed, times=times, whole_from=2 * min_size)  # a lone blob: one template


def full_templates(recording, slices, peaks: LocalPeaks, labels: np.ndarray, hoods: Neighbourhoods,
                   n_before: int, n_after: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """Each cluster's template on every channel ``(n_clusters, K, n_channels)`` and its size.

    Median of the cluster's snippets on its bin's neighbourhood; elsewhere the mean of up to
    ``MAX_TEMPLATE_SPIKES`` of its spikes, in a second pass over the slices (those not cached by
    :func:`detect_local` are read again).
    """
    n_clusters = int(labels.max()) + 1
    k, n_channels = n_before + n_after, recording.get_num_channels()
    rng = np.random.default_rng(seed)
    chosen = np.zeros(peaks.n_peaks, dtype=bool)
    sizes = np.bincount(labels[labels >= 0], minlength=n_clusters)
    for u in range(n_clusters):
        idx = np.flatnonzero(labels == u)
        chosen[rng.choice(idx, min(len(idx), MAX_TEMPLATE_SPIKES), replace=False)] = True
    sums = np.zeros((n_clusters, k, n_channels))
    counts = np.zeros(n_clusters)
    window = np.arange(-n_before, n_after)
    for s, (seg, start, end) in enumerate(slices):
        sel = np.flatnonzero(chosen & (peaks.slice_index == s))
        if len(sel) == 0:
            continue
        traces = peaks.cached.get(s)
        if traces is None:
            traces = recording.get_traces(segment_index=seg, start_frame=start, end_frame=end)
        cut = traces[peaks.sample_index[sel][:, None] + window[None, :]].reshape(len(sel), -1)
        present, which = np.unique(labels[sel], return_inverse=True)
        onehot = np.zeros((len(present), len(sel)), dtype=cut.dtype)
        onehot[which.ravel(), np.arange(len(sel))] = 1.0
        sums[present] += (onehot @ cut).reshape(len(present), k, n_channels)   # sum per cluster, by BLAS
        counts[present] += onehot.sum(axis=1)
    templates = sums / counts[:, None, None]
    for b, (snips, members) in enumerate(zip(peaks.snippets, peaks.members)):
        bin_labels = labels[members]
        for u in np.unique(bin_labels[bin_labels >= 0]):
            templates[u][:, hoods.channels[b]] = np.median(snips[bin_labels == u], axis=0)
    return templates.astype(np.float32), sizes.tolist()


def peak_channels(templates: np.ndarray) -> np.ndarray:
    """The channel of largest absolute value of each template ``(n, K, n_channels)``."""
    return np.abs(templates).max(axis=1).argmax(axis=1)


def merge_nearby(templates: np.ndarray, sizes: list[int], locations: np.ndarray, radius_um: float,
                 threshold: float, max_ratio: float, upsample: int = UPSAMPLE) -> tuple[np.ndarray, list[int]]:
    """Merge templates ``(n, K, M)`` of one unit seen from neighbouring bins.

    As the global path's greedy merge (one unit by :func:`~crsae_sort.units.same_unit`: best-lag
    cosine similarity above ``threshold``, norms within ``max_ratio``; the larger cluster's template
    kept; lags at ``1 / upsample`` sample), but only pairs whose peak channels lie within ``radius_um``
    are compared, so the cost grows with the number of templates, not its square. Similarity and norms are taken on the channels within ``radius_um`` of either peak
    channel: elsewhere a template is the mean of a few hundred spikes (:func:`full_templates`), whose
    noise on a long probe (hundreds of channels) outweighs a small unit's waveform and pulled two
    templates of one unit below the threshold (a 384-channel probe kept ~70 such pairs, each unit's
    spikes then split between two atoms). Taking pairs in decreasing similarity and skipping any whose
    member was already merged away is the same greedy order as merging the most similar remaining pair
    each time.
    """
    n = len(templates)
    if n < 2:
        return templates, list(sizes)
    peak = locations[peak_channels(templates)]
    i, j = np.nonzero(np.triu(np.linalg.norm(peak[:, None] - peak[None, :], axis=2) <= radius_um, k=1))
    near = np.linalg.norm(peak[:, None, :] - locations[None, :, :], axis=2) <= radius_um   # (n, M)
    sim, ratio = pair_similarity(templates, i, j, upsample=upsample, channels=near)
    ok = same_unit(sim, ratio, threshold, max_ratio)   # the one rule of crsae_sort.units (no trains here)
    i, j, sim = i[ok], j[ok], sim[ok]
    sizes = np.asarray(sizes, dtype=np.int64).copy()
    alive = np.ones(n, dtype=bool)
    for p in np.argsort(-sim, kind="stable"):
        a, b = i[p], j[p]
        if not (alive[a] and alive[b]):
            continue
        keep, drop = (a, b) if sizes[a] >= sizes[b] else (b, a)
        sizes[keep] += sizes[drop]
        alive[drop] = False
    return templates[alive], sizes[alive].tolist()


def pair_similarity(templates: np.ndarray, i: np.ndarray, j: np.ndarray, max_lag: int | None = None,
                    upsample: int = UPSAMPLE, batch: int = 256,
                    channels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Best-lag cosine similarity of the template pairs ``(i[p], j[p])`` over lags ``|l| <= K // 4``,
    and the ratio of the pair's norms (larger over smaller).

    Lags step by ``1 / upsample`` of a sample (templates resampled with a polyphase filter): one
    unit's spikes at two sub-sample phases (decimation to the model rate makes two) otherwise look
    like two templates of cosine similarity below 0.9. With ``channels`` ``(n, M)`` bool, each pair is
    compared (and its norms taken) on the channels of either template only; by default on all.
    """
    from scipy.signal import resample_poly

    n, k, _ = templates.shape
    max_lag = (k // 4 if max_lag is None else max_lag) * upsample
    fine = resample_poly(templates.astype(np.float64), upsample, 1, axis=1) if upsample > 1 else templates
    k = fine.shape[1]
    out = np.full(len(i), -np.inf)
    ratio = np.ones(len(i))
    for s in range(0, len(i), batch):
        ii, jj = i[s: s + batch], j[s: s + batch]
        a, b = fine[ii], fine[jj]
        if channels is not None:
            on = (channels[ii] | channels[jj])[:, None, :]                   # (p, 1, M)
            a, b = a * on, b * on
        na, nb = np.linalg.norm(a.reshape(len(ii), -1), axis=1), np.linalg.norm(b.reshape(len(ii), -1), axis=1)
        ratio[s: s + batch] = np.maximum(na, nb) / np.maximum(np.minimum(na, nb), 1e-30)
        a, b = a / np.maximum(na, 1e-30)[:, None, None], b / np.maximum(nb, 1e-30)[:, None, None]
        for lag in range(-max_lag, max_lag + 1):
            dot = np.einsum("pkm,pkm->p", a[:, max(lag, 0): k + min(lag, 0)], b[:, max(-lag, 0): k + min(-lag, 0)])
            out[s: s + batch] = np.maximum(out[s: s + batch], dot)
    return out, ratio
