"""Whether one group of snippets is several units: the clustering every stage reads snippets with.

:func:`density_groups` (principal features, HDBSCAN, then :func:`split_groups`) clusters snippets
``(n, K, M)`` for the initial dictionary (whole probe, :func:`~crsae_sort.init_dictionary.cluster_snippets`,
and per spatial bin, :mod:`crsae_sort.init_local`), growth and splits. Each density group is split as its
own snippets split it: a mixture's BIC, then recursive bisection with a valley test, on snippets aligned to
a fraction of a sample (:func:`align_troughs`), and, where the snippets' times are given, no cut whose parts
are apart in time (:func:`time_dependent`: a drifting unit). The other side of the question, whether two
templates are one unit, is :mod:`crsae_sort.units`.
"""
from __future__ import annotations

import numpy as np

SPLIT_COMPONENTS = 5   # principal components of a group's own snippets on which it is split
SPLIT_MAX = 4          # a group's first cut: a mixture of at most this many components, chosen by BIC
SPLIT_DEPTH = 3        # each part then bisected at most this deep
SPLIT_VALLEY = 0.25    # a bisection stands when the density between its halves dips this far below the lower mode
SPLIT_GRID = 256       # points at which the projected density is evaluated
TIME_BINS = 10         # a split's parts are compared over this many equal-count bins of time
TIME_P = 0.01          # ... and held apart in time when a chi-square test rejects homogeneity at this level
TIME_V = 0.3           # ... with at least this strength of association (Cramer's V)
MODES_APART = 2.0      # two sizes of one shape: medians this many pooled standard deviations apart


N_FEATURES = 10   # principal components the clustering of snippets reads


def principal_features(snippets: np.ndarray, seed: int) -> np.ndarray:
    """The first ``N_FEATURES`` principal components ``(n, d)`` of snippets ``(n, K, M)``."""
    from sklearn.decomposition import PCA

    flat = snippets.reshape(len(snippets), -1)
    n_comp = int(min(N_FEATURES, flat.shape[1], len(flat) - 1))
    return PCA(n_components=n_comp, random_state=seed).fit_transform(flat)


def density_groups(snippets: np.ndarray, min_size: int, seed: int, times: np.ndarray | None = None,
                   whole_from: int = 0) -> np.ndarray:
    """Labels (``-1`` = noise) of snippets ``(n, K, M)``: HDBSCAN (clusters of at least ``min_size``) on their
    principal features, one group when it finds none and there are at least ``whole_from`` snippets, then each
    group split as its own trough-aligned snippets split it (:func:`split_groups`, with the
    snippets' ``times`` where given). The global and the per-bin clustering both read snippets this way."""
    from sklearn.cluster import HDBSCAN

    feats = principal_features(snippets, seed)
    labels = HDBSCAN(min_cluster_size=min_size, min_samples=5, copy=True).fit_predict(feats)
    if labels.max() < 0 and len(snippets) >= whole_from:  # no structure found: one template
        labels = np.zeros(len(snippets), dtype=int)
    return split_groups(align_troughs(snippets).reshape(len(snippets), -1), labels, min_size, seed, times=times)


def split_groups(flat: np.ndarray, labels: np.ndarray, min_size: int, seed: int,
                 times: np.ndarray | None = None) -> np.ndarray:
    """Each group of ``labels`` split as its own snippets ``flat`` ``(n, K M)`` split it, on the group's own
    principal components: first a Gaussian mixture of 1 to ``SPLIT_MAX`` components chosen by BIC (the
    coarse cut of a group of many units), then each part by recursive bisection, as tridesclous2's
    iterative isosplit and Kilosort4's splits do: a two-component mixture proposes two halves, and they
    stand when both hold at least ``min_size`` snippets and the snippets' density along the line through
    the halves' means is bimodal (:func:`valley_depth` at least ``SPLIT_VALLEY``); each half is split
    the same way on its own components, ``SPLIT_DEPTH`` deep. The group's own components are the directions
    in which its snippets differ, so two units that the whole set's components blur (a weaker unit beside
    a stronger one of a similar shape, amplitude bands of two cells) come apart. Callers pass snippets
    aligned to a fraction of a sample (:func:`align_troughs`): a trough that
    lands on either of two samples is a bimodality of its own. Returns the new labels (``-1`` kept).

    With each snippet's time ``times`` ``(n,)`` (any increasing key), a cut whose parts hold the group's
    snippets at different times (:func:`time_dependent`) is not made: that is one unit whose waveform drifts
    (two cells both fire throughout). On SpikeInterface's drifting 128-channel case, splits without this test
    cut drifting units into pieces (57 units for 48, 7 redundant); the pieces' membership depended on time at
    p < 0.01 in 11 of 12 splits, while none of 12 splits on the Open Ephys hybrids did (p >= 0.02).

    (The BIC alone, with 20 parameters per full-covariance component, kept two units of 77 and 65 snippets
    whole although two components separated them cleanly; bisection alone, on a group of many units, can
    cut across them and find no valley.)"""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # small mixtures: two BLAS threads cost more than they save (3x here)
        out, next_label = labels.copy(), 0
        for u in [u for u in np.unique(labels) if u >= 0]:
            idx = np.flatnonzero(labels == u)
            group = flat[idx].astype(np.float64)
            gtimes = None if times is None else times[idx]
            parts, halves = _mixture_parts(group, min_size, seed, gtimes)
            if parts.max() > 0:
                halves = None                              # the two-component fit was of the whole group only
            for p in np.unique(parts):
                _bisect(group, parts, np.flatnonzero(parts == p), min_size, seed, SPLIT_DEPTH, gtimes, halves)
            _, parts = np.unique(parts, return_inverse=True)
            out[idx] = next_label + parts
            next_label += int(parts.max()) + 1
    return out


def align_troughs(snippets: np.ndarray) -> np.ndarray:
    """Snippets ``(n, K, M)`` shifted by a fraction of a sample so that each one's trough falls on the sample
    ``t0`` where the mean snippet's trough is: ``x'(t) = x(t + d)`` by linear interpolation, ``d`` in
    [-0.5, 0.5] from the parabola through the snippet's samples ``t0 - 1, t0, t0 + 1`` on its own most
    negative channel at ``t0``, ``d = (x[t0-1] - x[t0+1]) / (2 (x[t0-1] - 2 x[t0] + x[t0+1]))``.

    Peaks are found on samples: a trough between two samples lands on either, and one unit's snippets
    then fall into two groups one sample apart, a bimodality that a split takes for two units (on a
    locust hybrid, one unit's 196 snippets split 114 / 82 with a deep valley between them; aligned, no
    valley). Clustering reads aligned snippets; templates are still the medians of the snippets as cut."""
    n, k, _ = snippets.shape
    if n == 0 or k < 3:
        return snippets
    t0 = int(np.clip(snippets.mean(axis=0).min(axis=1).argmin(), 1, k - 2))
    x = snippets[np.arange(n), :, snippets[:, t0, :].argmin(axis=1)].astype(np.float64)     # (n, K)
    before, at, after = x[:, t0 - 1], x[:, t0], x[:, t0 + 1]
    curve = before - 2 * at + after
    d = np.clip(np.where(curve > 1e-12, 0.5 * (before - after) / np.where(curve > 1e-12, curve, 1.0), 0.0), -0.5, 0.5)
    low = np.floor(d).astype(int)                                              # -1 or 0
    frac = (d - low)[:, None, None]
    t = np.arange(k)[None, :] + low[:, None]                                   # (n, K)
    rows = np.arange(n)[:, None]
    first = snippets[rows, np.clip(t, 0, k - 1)]
    second = snippets[rows, np.clip(t + 1, 0, k - 1)]
    return ((1 - frac) * first + frac * second).astype(snippets.dtype)


def _mixture_parts(group: np.ndarray, min_size: int, seed: int,
                   times: np.ndarray | None = None) -> tuple[np.ndarray, tuple | None]:
    """Labels ``(n,)`` of a Gaussian mixture of 1 to ``SPLIT_MAX`` components on the group's own principal
    components, the count with the lowest BIC among those whose every part holds ``min_size`` snippets:
    the first cut of a group of many units, which a bisection's two halves could cut across. With ``times``
    ``(n,)``, counts whose parts are apart in time (:func:`time_dependent`) are passed over. Also returns
    the components and the two-component fit's labels ``(feats, half)`` (None when not fitted): the first
    bisection of a group left whole would fit the same mixture to the same components again."""
    from sklearn.mixture import GaussianMixture

    best, halves = np.zeros(len(group), dtype=int), None
    if len(group) < 2 * min_size:
        return best, halves
    feats = _own_components(group, seed)
    best_bic = np.inf
    for k in range(1, SPLIT_MAX + 1):
        if len(group) < k * min_size:
            break
        mix = GaussianMixture(k, random_state=seed, n_init=2, reg_covar=1e-3).fit(feats)
        part = mix.predict(feats)
        if k == 2:
            halves = (feats, part)
        if np.bincount(part, minlength=k).min() < min_size:
            continue
        if k > 1 and times is not None and time_dependent(times, part):
            continue
        bic = mix.bic(feats)
        if bic < best_bic:
            best_bic, best = bic, part
    return best, halves


def _bisect(flat: np.ndarray, parts: np.ndarray, members: np.ndarray, min_size: int, seed: int, depth: int,
            times: np.ndarray | None = None, halves: tuple | None = None) -> None:
    """Split ``members`` (rows of ``flat``) in two where their density is bimodal; recurse into each half.
    New halves get fresh labels in ``parts`` (in place). ``halves``: ``(feats, half)`` of these members
    already fitted (:func:`_mixture_parts`)."""
    if depth == 0 or len(members) < 2 * min_size:
        return
    from sklearn.mixture import GaussianMixture

    if halves is None:
        feats = _own_components(flat[members], seed)
        half = GaussianMixture(2, random_state=seed, n_init=2, reg_covar=1e-3).fit(feats).predict(feats)
    else:
        feats, half = halves
    if np.bincount(half, minlength=2).min() < min_size or valley_depth(feats, half) < SPLIT_VALLEY:
        return
    if times is not None and time_dependent(times[members], half):
        return
    second = members[half == 1]
    parts[second] = parts.max() + 1
    _bisect(flat, parts, members[half == 0], min_size, seed, depth - 1, times)
    _bisect(flat, parts, second, min_size, seed, depth - 1, times)


def two_modes(flat: np.ndarray, a: np.ndarray, b: np.ndarray, seed: int, times: np.ndarray | None = None) -> bool:
    """Whether the groups ``a`` and ``b`` (row indices of aligned snippets ``flat`` ``(n, K M)``) are two sizes
    of one shape: their amplitudes along the pair's mean snippet (projections on it, unit norm) are better
    explained by two Gaussians than by one (a mixture's BIC, as :func:`crsae_sort.split.amplitude_modes` decides
    between amplitude modes) and the groups' median amplitudes lie ``MODES_APART`` pooled standard deviations
    apart or more (a BIC also prefers two Gaussians for one unit's skewed amplitudes), and, with ``times``, the
    groups are not apart in time (:func:`time_dependent`: one unit whose amplitude drifts). Halves of one unit
    that differ in shape or timing, not in size, are one mode.

    On a locust hybrid, the two injected units of one shape (cosine 0.95) and norms 1.17 apart that the split had
    separated gave a BIC difference of 33.8 in favour of two; the pairs of clusters of one unit there, and each
    cluster alone, -16 to -1 (medians 3.0 pooled deviations apart against 0.1-0.3); on another draw two clusters
    of one injected unit gave +10.1, their medians 0.4 deviations apart."""
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits

    if min(len(a), len(b)) < 2:
        return False
    x = flat[np.concatenate([a, b])].astype(np.float64)
    direction = x.mean(axis=0)
    amplitude = (x @ (direction / max(np.linalg.norm(direction), 1e-12)))[:, None]
    half = np.concatenate([np.zeros(len(a), dtype=int), np.ones(len(b), dtype=int)])
    first, second = amplitude[half == 0, 0], amplitude[half == 1, 0]
    spread = np.sqrt((first.var() + second.var()) / 2)
    if abs(np.median(first) - np.median(second)) < MODES_APART * spread:
        return False
    with threadpool_limits(1):
        one = GaussianMixture(1, random_state=seed).fit(amplitude).bic(amplitude)
        two = GaussianMixture(2, random_state=seed, n_init=2).fit(amplitude).bic(amplitude)
    if two >= one:
        return False
    return times is None or not time_dependent(times[np.concatenate([a, b])], half)


def time_dependent(times: np.ndarray, part: np.ndarray) -> bool:
    """Whether the parts ``part`` ``(n,)`` of a group hold its snippets at different times ``times`` ``(n,)``
    (any increasing key): a chi-square test of homogeneity of the parts over ``TIME_BINS`` equal-count time
    bins rejects at ``TIME_P`` and the association is strong (Cramer's V above ``TIME_V``)."""
    from scipy.stats import chi2_contingency
    from scipy.stats.contingency import association

    n = len(times)
    b = int(min(TIME_BINS, n // 10))
    if b < 2 or len(np.unique(part)) < 2:
        return False
    order = np.argsort(times, kind="stable")
    bin_of = np.empty(n, dtype=np.int64)
    bin_of[order] = np.arange(n) * b // n
    table = np.zeros((int(part.max()) + 1, b), dtype=np.int64)
    np.add.at(table, (part, bin_of), 1)
    table = table[table.sum(axis=1) > 0]                   # (parts, time bins)
    p_value = chi2_contingency(table, correction=False).pvalue
    return bool(p_value < TIME_P and association(table, method="cramer") > TIME_V)


def _own_components(snippets: np.ndarray, seed: int) -> np.ndarray:
    """The first ``SPLIT_COMPONENTS`` principal components of these snippets ``(n, K M)`` alone, ``(n, d)``."""
    from sklearn.decomposition import PCA

    return PCA(n_components=int(min(SPLIT_COMPONENTS, len(snippets) - 1)), random_state=seed).fit_transform(snippets)


def valley_depth(feats: np.ndarray, half: np.ndarray) -> float:
    """How bimodal points ``feats`` ``(n, d)`` are along the line through the means of their two halves
    (``half`` in {0, 1}): ``1 - valley / min(mode_0, mode_1)`` of the projections' kernel density estimate,
    the valley being the lowest density between the two means and each mode the highest density beyond
    its mean. About 0 for one unimodal group cut in two, up to 1 for two groups with nothing between."""
    from scipy.stats import gaussian_kde

    axis = feats[half == 0].mean(axis=0) - feats[half == 1].mean(axis=0)
    x = feats @ (axis / max(np.linalg.norm(axis), 1e-12))
    lo, hi = sorted((x[half == 0].mean(), x[half == 1].mean()))
    grid = np.linspace(x.min(), x.max(), SPLIT_GRID)
    density = gaussian_kde(x)(grid)
    between = (grid >= lo) & (grid <= hi)
    if not between.any():
        return 0.0
    left, right = density[grid <= lo], density[grid >= hi]
    mode = min(left.max() if left.size else density[between][0], right.max() if right.size else density[between][-1])
    return float(1.0 - density[between].min() / max(mode, 1e-12))
