"""Locally exclusive peak detection in NumPy: one peak per spike within a radius and a time sweep.

A sample ``(s, m)`` of ``traces`` ``(n_samples, n_channels)`` is a candidate when it crosses its
channel's threshold ``theta_m`` and is a local extremum in time (negative peaks:
``x[s, m] <= -theta_m``, ``x[s, m] < x[s-1, m]``, ``x[s, m] <= x[s+1, m]``; positive mirrored). A
candidate is kept when no other candidate ``(s', m')`` with ``m'`` a neighbour of ``m`` and
``|s - s'| <= sweep`` is larger in threshold units (``|x[s', m']| / theta_m' > |x[s, m]| / theta_m``,
ties going to the earlier sample), and it lies more than ``sweep`` samples inside the chunk.

This is the rule of SpikeInterface's ``locally_exclusive`` detector (same peaks, tested), written
with array operations over candidate pairs so that no JIT compilation (several seconds per
process with numba) is paid by every sort.
"""
from __future__ import annotations

import numpy as np

DETECT_RADIUS_UM = 100.0   # the initial dictionary's detection: one peak per spike within this radius ...
DETECT_SWEEP_MS = 0.5      # ... and this many ms either side


def spike_detector(recording, threshold: float):
    """The initial dictionary's detector on ``recording`` (unit noise): a function of ``traces``
    ``(n_samples, n_channels)`` returning the sample and channel indices of its negative peaks at
    ``threshold`` noise sd, one per spike within ``DETECT_RADIUS_UM`` and ``DETECT_SWEEP_MS``."""
    from spikeinterface.core import get_channel_distances

    neighbours = get_channel_distances(recording) <= DETECT_RADIUS_UM
    thresholds = np.full(recording.get_num_channels(), threshold, dtype=np.float32)
    sweep = int(DETECT_SWEEP_MS * recording.get_sampling_frequency() / 1000.0)
    return lambda traces: locally_exclusive(traces, thresholds, sweep, neighbours)


def locally_exclusive(traces: np.ndarray, thresholds: np.ndarray, sweep: int, neighbours: np.ndarray,
                      peak_sign: str = "neg") -> tuple[np.ndarray, np.ndarray]:
    """Sample and channel indices ``(P,)``, ``(P,)`` of the kept peaks, ordered by sample then channel.

    ``thresholds`` ``(n_channels,)`` are absolute (noise x detection threshold); ``neighbours``
    ``(n_channels, n_channels)`` bool says which channels exclude each other (symmetric, diagonal
    True); ``sweep`` is the exclusion half-width in samples.
    """
    if peak_sign not in ("neg", "pos", "both"):
        raise ValueError(f"peak_sign must be 'neg', 'pos' or 'both', got {peak_sign!r}")
    n_samples = traces.shape[0]
    if n_samples < 3:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    thr = np.asarray(thresholds)  # the peak values below in the traces' and thresholds' precision, as numba's
    # threshold crossings first (one pass over the chunk), then the local-extremum test on those alone
    inner = traces[1:-1]
    if peak_sign == "neg":
        crossing = inner <= -thr
    elif peak_sign == "pos":
        crossing = inner >= thr
    else:
        crossing = np.abs(inner) >= thr
    s, m = np.nonzero(crossing)
    s = s + 1
    x, before, after = traces[s, m], traces[s - 1, m], traces[s + 1, m]
    extremum = np.zeros(len(s), dtype=bool)
    if peak_sign in ("neg", "both"):
        extremum |= (x <= -thr[m]) & (x < before) & (x <= after)
    if peak_sign in ("pos", "both"):
        extremum |= (x >= thr[m]) & (x > before) & (x >= after)
    s, m = s[extremum], m[extremum]
    value = np.abs(traces[s, m]) / thr[m]
    keep = (s >= sweep + 1) & (s < n_samples - sweep - 1)
    # pairs (i, j = i + k) in sample order: for a fixed i, s[i + k] - s[i] grows with k, so the offsets
    # stop at the first k where no pair is within the sweep
    for k in range(1, len(s)):
        gap = s[k:] - s[:-k]
        close = gap <= sweep
        if not close.any():
            break
        close &= neighbours[m[:-k], m[k:]]
        first, second = value[:-k], value[k:]
        keep[:-k] &= ~(close & (second > first))                                   # a later, larger peak
        keep[k:] &= ~(close & ((first > second) | ((first == second) & (gap > 0))))  # an earlier one, larger or tied
    return s[keep].astype(np.int64), m[keep].astype(np.int64)
