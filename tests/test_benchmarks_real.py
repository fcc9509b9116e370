"""crsae_sort.bench.real: its matching rules (real_scoring) on hand-made trains, and its Quiroga part end to end."""
import numpy as np

from conftest import SHARED_DATA
from crsae_sort.bench import real
from crsae_sort.bench.real_report import render_quiroga
from crsae_sort.bench.real_scoring import best_merge, detection_score, match, score_unit
from test_formats import QUIROGA, needs


def test_lag_then_hits_misses_false_positives():
    gt = np.array([1000, 2000, 3000, 4000, 5000])
    # the unit fires 28 samples before each GT spike (one jittered by 5), misses the 4th, adds 2 of its own
    unit = np.array([972, 1972, 2977, 4972, 2500, 6000])
    m = score_unit(gt, unit, lag_window=30, slack=10)
    assert m.lag_samples == -28
    assert (m.hits, m.misses, m.false_positives, m.n_spikes) == (4, 1, 2, 6)
    assert m.gt_hit.tolist() == [True, True, True, False, True]
    assert score_unit(gt, unit, lag_window=30, slack=3).hits == 3  # the jittered spike falls outside
    assert score_unit(gt, np.array([9000]), lag_window=30, slack=10).lag_samples is None


def test_matching_is_one_to_one_and_closest_first():
    g, j = match(np.array([100, 110]), np.array([104, 105, 300]), slack=6)
    assert g.tolist() == [0, 1] and j.tolist() == [0, 1]  # 104 -> 100, 105 -> 110; 300 stays unpaired
    g, j = match(np.array([100]), np.array([99, 101]), slack=6)
    assert len(g) == 1  # a double detection: one hit, one false positive


def test_merge_of_a_split_cell():
    gt = np.arange(10) * 1000 + 500
    trains = {0: gt[:6] - 20, 1: gt[6:] + 5, 2: np.array([250, 7250, 9900])}
    merge = best_merge(gt, trains, lag_window=30, slack=10)
    assert merge.unit == "0+1" and (merge.hits, merge.misses, merge.false_positives) == (10, 0, 0)


def test_detection_and_classification_errors():
    gt = np.arange(1, 11) * 1000
    gt_units = np.array([1, 1, 1, 1, 1, 2, 2, 2, 2, 2])
    # detected 22 samples after each onset; GT spike 10 missed; one extra spike; unit 7 holds GT unit 1
    # except one spike that belongs to GT unit 2; unit 8 holds GT unit 2
    spikes = np.r_[gt[:9] + 22, 5500]
    units = np.array([7, 7, 7, 7, 7, 7, 8, 8, 8, 8])
    s = detection_score(gt, gt_units, spikes, units, lag_window=30, slack=5)
    assert s.offset_samples == 22
    assert (s.misses, s.false_positives, s.classification_errors) == (1, 1, 1)
    assert s.assignment == {7: 1, 8: 2}
    assert s.confusion.tolist() == [[5, 0], [1, 3]] and s.fp_per_unit.tolist() == [0, 1]


@needs(QUIROGA)
def test_quiroga_end_to_end(capsys):
    q = real.run_quiroga(SHARED_DATA, repeats=1)
    s = q["score"]
    assert s.n_gt == 121 and abs(s.offset_samples - 22) <= 2  # the peak follows the onset by ~22 samples
    assert s.misses < 0.3 * 121 and s.false_positives < 0.3 * 121
    assert s.classification_errors < 0.1 * 121
    assert len(s.sorted_units) >= 3 and sorted(s.assignment.values()) == [1, 2, 3]
    text = "\n".join(render_quiroga(q))
    assert "wave_clus" in text and "374 (10.6 %)" in text
