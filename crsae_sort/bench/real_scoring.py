"""How sorted spikes are matched to ground truth on the real clips (see :mod:`.real`).

* one cell (Harris): each unit's lag to the truth is estimated first (:func:`estimate_lag`),
  then spikes are paired one to one within a slack (:func:`score_unit`), and units split
  from one cell can be merged (:func:`best_merge`);
* several units (Quiroga): misses, false positives and classification errors, wave_clus
  style (:func:`detection_score`).

Times are sample indices; windows and slacks are in samples (the ``*_MS`` rules times the rate).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LAG_WINDOW_MS = 3.0       # lags are estimated from nearest spikes within this distance of a GT time
HARRIS_SLACK_MS = 1.5     # match tolerance after removing the lag
HARRIS_SLACK_CHECK_MS = (1.0, 2.0)
QUIROGA_SLACK_MS = 0.5


@dataclass
class UnitMatch:
    """One sorted unit (or a merge of units) against one ground-truth train."""
    unit: str
    n_spikes: int
    lag_samples: float | None      # unit spike time minus GT time; None: no spike within the lag window
    hits: int
    misses: int
    false_positives: int
    gt_hit: np.ndarray             # bool per GT spike
    spike_hit: np.ndarray          # bool per unit spike


@dataclass
class DetectionScore:
    """wave_clus-style errors of a whole sorting against a multi-unit ground truth."""
    n_gt: int
    offset_samples: float          # detected time minus GT onset (0-based)
    misses: int
    false_positives: int
    classification_errors: int
    majority_vote_errors: int
    confusion: np.ndarray          # (n_gt_units, n_sorted_units) matched pairs
    n_gt_per_unit: np.ndarray      # (n_gt_units,)
    fp_per_unit: np.ndarray        # (n_sorted_units,) unpaired spikes of each sorted unit
    gt_units: np.ndarray
    sorted_units: np.ndarray
    assignment: dict               # sorted unit -> GT unit (Hungarian)


def estimate_lag(gt: np.ndarray, spikes: np.ndarray, window: float) -> float | None:
    """Median over GT times of (nearest spike - GT time), among those within +-``window`` samples."""
    spikes = np.sort(spikes)
    if len(spikes) == 0 or len(gt) == 0:
        return None
    i = np.clip(np.searchsorted(spikes, gt), 1, len(spikes) - 1) if len(spikes) > 1 else np.zeros(len(gt), int)
    left, right = spikes[np.maximum(i - 1, 0)] - gt, spikes[i] - gt
    nearest = np.where(np.abs(left) <= np.abs(right), left, right)
    near = nearest[np.abs(nearest) <= window]
    return float(np.median(near)) if len(near) else None


def match(gt: np.ndarray, spikes: np.ndarray, slack: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one pairs (gt index, spike index) with |spike - gt| <= ``slack``, closest pairs first."""
    order = np.argsort(spikes, kind="stable")
    s = np.asarray(spikes, dtype=float)[order]
    pairs = []
    for g, t in enumerate(np.asarray(gt, dtype=float)):
        for j in range(np.searchsorted(s, t - slack), np.searchsorted(s, t + slack, side="right")):
            pairs.append((abs(s[j] - t), g, order[j]))
    gt_used, spike_used, out = set(), set(), []
    for _, g, j in sorted(pairs):
        if g not in gt_used and j not in spike_used:
            gt_used.add(g), spike_used.add(j), out.append((g, j))
    out.sort()
    return np.array([g for g, _ in out], dtype=int), np.array([j for _, j in out], dtype=int)


def score_unit(gt: np.ndarray, spikes: np.ndarray, *, lag_window: float, slack: float, unit: str = "",
               lag: float | None = None) -> UnitMatch:
    """Hits, misses and false positives of one unit after removing its lag (estimated unless given)."""
    lag = estimate_lag(gt, spikes, lag_window) if lag is None else lag
    gt_hit, spike_hit = np.zeros(len(gt), bool), np.zeros(len(spikes), bool)
    if lag is not None:
        g, j = match(gt, np.asarray(spikes, dtype=float) - lag, slack)
        gt_hit[g], spike_hit[j] = True, True
    return UnitMatch(unit, len(spikes), lag, int(gt_hit.sum()), int((~gt_hit).sum()), int((~spike_hit).sum()),
                     gt_hit, spike_hit)


def best_merge(gt: np.ndarray, trains: dict, *, lag_window: float, slack: float) -> UnitMatch:
    """Greedy merge: add units (each shifted by its own lag) while hits minus false positives grows."""
    lags = {u: estimate_lag(gt, t, lag_window) for u, t in trains.items()}
    chosen, best = [], None
    while True:
        trial = []
        for u in (u for u in trains if u not in chosen and lags[u] is not None):
            units = chosen + [u]
            merged = np.concatenate([trains[v] - lags[v] for v in units])
            m = score_unit(gt, merged, lag_window=lag_window, slack=slack, unit="+".join(map(str, units)), lag=0.0)
            trial.append((m.hits - m.false_positives, m.hits, u, m))
        if not trial:
            return best
        score, _, u, m = max(trial, key=lambda x: x[:2])
        if best is not None and score <= best.hits - best.false_positives:
            return best
        chosen, best = chosen + [u], m


def detection_score(gt: np.ndarray, gt_units: np.ndarray, spikes: np.ndarray, units: np.ndarray, *,
                    lag_window: float, slack: float) -> DetectionScore:
    """Misses, false positives (any unit, one to one within ``slack`` after the pooled offset) and
    classification errors: matched spikes whose unit's Hungarian-assigned GT unit is another one
    (spikes of units left unassigned count as errors). Majority-vote errors are kept for comparison."""
    from scipy.optimize import linear_sum_assignment

    offset = estimate_lag(gt, spikes, lag_window)
    offset = 0.0 if offset is None else offset  # nothing near any GT spike: all missed
    g, j = match(gt, spikes - offset, slack)
    gt_ids, sorted_ids = np.unique(gt_units), np.unique(units)
    confusion = np.zeros((len(gt_ids), len(sorted_ids)), dtype=int)
    np.add.at(confusion, (np.searchsorted(gt_ids, gt_units[g]), np.searchsorted(sorted_ids, units[j])), 1)
    rows, cols = linear_sum_assignment(-confusion)
    correct = int(confusion[rows, cols].sum())
    unpaired = np.ones(len(spikes), bool)
    unpaired[j] = False
    fp = np.array([(unpaired & (units == u)).sum() for u in sorted_ids])
    order = [c for _, c in sorted(zip(rows, cols))] + sorted(set(range(len(sorted_ids))) - set(cols))
    return DetectionScore(len(gt), offset, len(gt) - len(g), int(unpaired.sum()), len(g) - correct,
                          len(g) - int(confusion.max(axis=0).sum()), confusion[:, order],
                          np.array([(gt_units == u).sum() for u in gt_ids]), fp[order], gt_ids, sorted_ids[order],
                          {sorted_ids[c]: gt_ids[r] for r, c in zip(rows, cols)})
