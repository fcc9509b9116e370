"""Quality labels (curate.py): clean ground-truth units are good, a unit of threshold noise is not, and
removal by label takes the unit out of every output."""
import numpy as np
import pytest

from crsae_sort.curate import GOOD, curate, label_units, presence_bin_s
from crsae_sort.params import CurationParams, SortParams
from crsae_sort.postprocess import SortResult
from crsae_sort.summary import Summary, UnitSummary

THRESHOLD_SIGMA = 2.5  # a noise unit: every negative peak of channel 0 below -2.5 MAD, 3 ms from real spikes


@pytest.fixture(scope="module")
def noise_case(gt_tetrode):
    """The demo tetrode band-passed in µV, its ground-truth units, plus a unit made of threshold crossings of
    the noise (unit id 99), with a spikes table whose amplitudes are the traces at the spike times."""
    from spikeinterface.core import NumpySorting
    from spikeinterface.preprocessing import bandpass_filter

    recording, gt = gt_tetrode
    filtered = bandpass_filter(recording, freq_min=300.0, freq_max=6000.0, dtype="float32")
    traces = filtered.get_traces(return_in_uV=True)
    fs = recording.get_sampling_frequency()
    x = traces[:, 0]
    mad = np.median(np.abs(x - np.median(x))) / 0.6745
    trough = np.flatnonzero((x[1:-1] < x[:-2]) & (x[1:-1] <= x[2:]) & (x[1:-1] < -THRESHOLD_SIGMA * mad)) + 1
    real = np.sort(np.concatenate([gt.get_unit_spike_train(u) for u in gt.unit_ids]))
    near = np.abs(real[np.clip(np.searchsorted(real, trough), 0, len(real) - 1)] - trough)
    near = np.minimum(near, np.abs(real[np.clip(np.searchsorted(real, trough) - 1, 0, len(real) - 1)] - trough))
    noise_times = trough[near > int(0.003 * fs)]
    trains = {int(u): gt.get_unit_spike_train(u) for u in gt.unit_ids}
    trains[99] = noise_times
    ids = np.array(sorted(trains))
    samples = np.concatenate([trains[u] for u in ids])
    labels = np.concatenate([np.full(len(trains[u]), u) for u in ids])
    order = np.argsort(samples, kind="stable")
    sorting = NumpySorting.from_samples_and_labels([samples[order]], [labels[order]], fs, unit_ids=ids)
    # each unit's main channel and the trace there at its spike times: the amplitudes a threshold read-out sees
    snippets = {u: traces[np.clip(trains[u], 0, len(traces) - 1)] for u in ids}
    main = np.array([int(np.abs(snippets[u].mean(axis=0)).argmax()) for u in ids])
    table = np.zeros(len(samples), dtype=[("sample_index", "i8"), ("segment_index", "i8"), ("unit_id", "i8"),
                                          ("amplitude", "f4"), ("amplitude_uv", "f4")])
    table["sample_index"], table["unit_id"] = samples, labels
    for u, m in zip(ids, main):
        table["amplitude_uv"][labels == u] = np.abs(snippets[u][:, m])
    return recording, gt, filtered, sorting, table, main


def test_clean_units_of_a_seeded_ground_truth_sort_are_good(sorted_demo):
    """The demo sort: every unit that matches a ground-truth unit with accuracy >= 0.95 is labelled good, and
    the label is the same in the sorting property and the summary."""
    from spikeinterface.comparison import compare_sorter_to_ground_truth

    _, gt, result = sorted_demo
    labels = dict(zip(result.sorting.unit_ids, result.sorting.get_property("quality")))
    assert [labels[u.unit_id] for u in result.summary.units] == [u.quality for u in result.summary.units]
    comparison = compare_sorter_to_ground_truth(gt, result.sorting, exhaustive_gt=True)
    perf = comparison.get_performance()
    clean = [comparison.hungarian_match_12[g] for g in gt.unit_ids if perf.loc[g, "accuracy"] >= 0.95]
    assert len(clean) >= 4
    assert all(labels[u] == "good" for u in clean), labels
    for unit in result.summary.units:  # never good with a contaminated or faint unit
        if unit.quality == "good":
            assert unit.quality_metrics["snr"] >= GOOD["min_snr"]
            assert unit.quality_metrics["isi_violations_ratio"] <= GOOD["max_isi_violations_ratio"]


def test_a_unit_of_threshold_noise_is_not_good(noise_case):
    recording, gt, filtered, sorting, table, main = noise_case
    found = label_units(sorting, filtered, spikes=table, main_channels=main)
    assert found.labels[99] in ("mua", "noise"), found.metrics.loc[99]
    assert found.metrics.loc[99, "amplitude_cutoff"] > 0.2  # its amplitude histogram is cut at the threshold
    from crsae_sort.demo import unit_snrs

    snrs = unit_snrs(recording, gt)
    for u in gt.unit_ids:  # the real units beside it: good when clearly above the noise
        if snrs[u] >= 8:
            assert found.labels[int(u)] == "good", found.metrics.loc[int(u)]
    assert found.labels[1] != "good"  # the demo's unit of SNR 0.9


def test_remove_labels_takes_the_units_out_of_the_result(noise_case):
    recording, gt, filtered, sorting, table, main = noise_case
    ids = list(sorting.unit_ids)
    units = [UnitSummary(unit_id=int(u), num_spikes=int(np.sum(table["unit_id"] == u)), firing_rate_hz=1.0,
                         lambda_=1.0, median_debiased_amplitude=1.0, peak_uv=1.0, peak_sample=0) for u in ids]
    templates = np.zeros((len(ids), 8, 4), np.float32)
    templates[np.arange(len(ids)), 4, main] = 1.0  # only the peak channel matters here
    summary = Summary(units=units, num_spikes=len(table), num_templates=len(ids), duration_s=30.0,
                      sampling_frequency_hz=30000.0, decimation=1, num_channels=4, device="cpu")
    result = SortResult(sorting=sorting, templates_uv=templates, spikes=table, model=None, params=SortParams(),
                        summary=summary)
    out = curate(result, filtered, CurationParams(remove_labels="noise,mua"))
    kept = [u.unit_id for u in out.summary.units]
    assert 99 not in kept and "99" in out.summary.removed_units and out.summary.removed_units["99"] != "good"
    assert kept == list(out.sorting.unit_ids) and set(out.sorting.get_property("quality")) == {"good"}
    assert set(np.unique(out.spikes["unit_id"])) == set(kept) and len(out.templates_uv) == len(kept)
    assert out.summary.num_spikes == len(out.spikes)
    back = Summary.from_dict(out.summary.to_dict())
    assert back.removed_units == out.summary.removed_units and [u.quality for u in back.units] == ["good"] * len(kept)


def test_presence_ratio_bins_are_a_round_tenth_of_a_short_recording():
    assert presence_bin_s(3.0624) == 0.3 and presence_bin_s(30.0) == 3.0 and presence_bin_s(45.0) == 4.0
    assert presence_bin_s(3600.0) == 60.0 and presence_bin_s(900.0) == 60.0


def test_remove_labels_is_checked():
    from crsae_sort.errors import InputError

    with pytest.raises(InputError, match="remove_labels"):
        SortParams.from_dict({"remove_labels": "good"})
