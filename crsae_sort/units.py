"""The one place that decides whether two templates are one unit.

The initial clustering (:func:`~crsae_sort.init_dictionary.merge_similar` and, on dense probes,
:func:`~crsae_sort.init_local.merge_nearby`), growth (:mod:`crsae_sort.grow`: is a residual cluster an
existing atom?) and splits (:mod:`crsae_sort.split`: are two groups of an atom's spikes one unit?) all
ask :func:`same_unit`. Two templates are one unit when

* their shapes match: best-lag cosine similarity above ``merge_similarity``
  (:func:`template_similarity`);
* their amplitudes match: the ratio of their norms is at most ``merge_amplitude_ratio`` (one shape at two
  amplitudes is two neurons at two distances from the probe);
* and, where their spike trains are known (:func:`trains_relation`), the trains are not independent: two
  neurons' trains break each other's refractory period by chance, pieces of one neuron's train do not.
  Trains that are clearly refractory to each other make one unit even when the amplitudes differ (one
  cell's amplitude drifts or falls within a burst); when there are too few spikes to tell, shape and
  amplitude decide (Kilosort4 and tridesclous2 likewise merge on template similarity *and* spike-train
  evidence).

Trains are ``(n, 2)`` int64 rows of ``(slice, sample)``: where a spike is, in slices of the recording.

The other side of the question, whether one group of snippets is several units, is
:mod:`crsae_sort.groups`.
"""
from __future__ import annotations

import numpy as np

REFRACTORY_MS = 1.5       # inter-spike intervals shorter than this violate a unit's refractory period
MIN_CROSS_FRACTION = 0.3  # two trains are two units when they come this close to independence
MIN_EXPECTED = 5.0        # chance coincidences needed before a lack of them says "one cell"
INDEPENDENT, REFRACTORY, UNKNOWN = "independent", "refractory", "unknown"


def same_unit(similarity: np.ndarray, ratio: np.ndarray, threshold: float, max_ratio: float,
              relation: np.ndarray | None = None) -> np.ndarray:
    """Whether each pair is one unit, ``(n, m)`` bool, from the pairs' best-lag cosine ``similarity``
    ``(n, m)``, the ratio of their norms (larger over smaller) ``ratio`` ``(n, m)`` and, where the trains
    are known, their ``relation`` ``(n, m)`` (:func:`trains_relation`: ``"independent"``, ``"refractory"``
    or ``"unknown"``).

    ``similarity > threshold`` and not independent, and ``ratio <= max_ratio`` or refractory.
    """
    same_amplitude = np.asarray(ratio) <= max_ratio
    same = np.asarray(similarity) > threshold
    if relation is not None:
        relation = np.asarray(relation)
        same &= relation != INDEPENDENT
        same_amplitude |= relation == REFRACTORY
    return same & same_amplitude


def similarity_and_ratio(templates: np.ndarray, others: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Best-lag cosine similarity and norm ratio (larger over smaller) of templates ``(n, K, M)`` with
    ``others`` ``(m, K, M)`` (default: with themselves), both ``(n, m)``."""
    both = templates if others is None else np.concatenate([templates, others])
    both = np.asarray(both, dtype=np.float64)
    sim = template_similarity(both)
    norms = np.linalg.norm(both.reshape(len(both), -1), axis=1)
    ratio = np.maximum(norms[:, None], norms[None, :]) / np.maximum(np.minimum(norms[:, None], norms[None, :]), 1e-12)
    if others is None:
        return sim, ratio
    n = len(templates)
    return sim[:n, n:], ratio[:n, n:]


def trains_relation(a: np.ndarray, b: np.ndarray, fs: float, seconds: float, blind_ms: float = 0.0) -> str:
    """How trains ``a`` and ``b`` ``(n, 2)`` (slice, sample) over ``seconds`` of slices relate.

    Independent trains (two cells) put ``E = n_a n_b 2 (tau - r) / T`` pairs between ``r`` and ``tau =
    REFRACTORY_MS`` apart by chance; pieces of one cell's train put none there. ``"independent"``: at least
    ``MIN_CROSS_FRACTION`` of ``E`` such pairs, and at least 2; ``"refractory"``: fewer, where ``E`` is at least
    ``MIN_EXPECTED`` (enough spikes to tell); ``"unknown"`` otherwise. ``r = blind_ms``: pairs closer than that
    cannot be seen (both trains from one atom's read-out, which keeps one code peak within ``refractory_ms``;
    or from one detector, which keeps one peak per spike) and are not counted."""
    tau, r = REFRACTORY_MS * fs / 1000, blind_ms * fs / 1000
    if r >= tau or not len(a) or not len(b):
        return UNKNOWN
    close = 0
    for s in np.intersect1d(a[:, 0], b[:, 0]):
        x, y = np.sort(a[a[:, 0] == s, 1]), np.sort(b[b[:, 0] == s, 1])
        i = np.searchsorted(x, y)
        left, right = x[np.clip(i - 1, 0, len(x) - 1)], x[np.clip(i, 0, len(x) - 1)]
        gap = np.minimum(np.abs(y - left), np.abs(y - right))
        close += int(np.sum((gap < tau) & (gap >= r)))
    expected = len(a) * len(b) * 2 * (tau - r) / (seconds * fs)
    if close >= max(2.0, MIN_CROSS_FRACTION * expected):
        return INDEPENDENT
    return REFRACTORY if expected >= MIN_EXPECTED else UNKNOWN


def isi_violations(where: np.ndarray, fs: float) -> float:
    """Fraction of the inter-spike intervals (within each slice) of spikes ``where`` ``(n, 2)`` (slice,
    sample) shorter than ``REFRACTORY_MS``."""
    limit = REFRACTORY_MS * fs / 1000
    isi = [np.diff(np.sort(where[where[:, 0] == s, 1])) for s in np.unique(where[:, 0])]
    isi = np.concatenate(isi) if isi else np.zeros(0)
    return float(np.mean(isi < limit)) if len(isi) else 0.0


def template_similarity(atoms: np.ndarray, max_lag: int | None = None) -> np.ndarray:
    """Best-lag cosine similarity between templates ``(n, K, M)`` over lags ``|l| <= max_lag``."""
    n, k, _ = atoms.shape
    max_lag = k // 4 if max_lag is None else max_lag
    unit = atoms / np.linalg.norm(atoms.reshape(n, -1), axis=1)[:, None, None]
    best = np.full((n, n), -np.inf)
    for lag in range(-max_lag, max_lag + 1):
        a = unit[:, max(lag, 0): k + min(lag, 0)]
        b = unit[:, max(-lag, 0): k + min(-lag, 0)]
        best = np.maximum(best, a.reshape(n, -1) @ b.reshape(n, -1).T)  # a matrix product (BLAS), not einsum
    return best
