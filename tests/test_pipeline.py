"""End to end on SpikeInterface ground truth: accuracy, outputs, templates in µV, multi-segment."""
import json

import numpy as np
import pytest
import torch

from crsae_sort import InputError, sort
from crsae_sort.demo import score

from conftest import matched_gt_templates


def test_accuracy_on_ground_truth_tetrode(sorted_demo):
    recording, gt_sorting, result = sorted_demo
    table, mean_acc = score(recording, gt_sorting, result.sorting)
    good = [row for row in table if row["snr"] >= 5]
    assert len(good) >= 5
    assert mean_acc >= 0.85, table
    assert min(row["accuracy"] for row in good) >= 0.7, table


def test_output_folder_round_trips(sorted_demo):
    import spikeinterface as si

    recording, _, result = sorted_demo
    folder = result.output_folder
    names = {p.name for p in folder.iterdir()}
    assert {"sorting", "templates.npy", "spikes.npy", "model.pt", "params.json", "summary.json",
            "crsae_sort.log", "training.json"} <= names
    loaded = si.load(folder / "sorting")
    assert list(loaded.unit_ids) == list(result.sorting.unit_ids)
    for u in loaded.unit_ids:
        assert np.array_equal(loaded.get_unit_spike_train(u), result.sorting.get_unit_spike_train(u))
    spikes = np.load(folder / "spikes.npy")
    assert len(spikes) == sum(len(loaded.get_unit_spike_train(u)) for u in loaded.unit_ids)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["num_spikes"] == len(spikes)
    assert set(summary["seconds"]) >= {"preprocess", "init", "train", "inference", "total"}
    assert summary["device"].startswith("cpu")
    log = (folder / "crsae_sort.log").read_text()
    assert "versions" in log and "stage inference" in log and "parameters" in log
    blob = torch.load(folder / "model.pt", weights_only=True)
    assert blob["dictionary"].shape[1] == recording.get_num_channels()
    assert blob["params"] == result.params.to_dict()


def test_templates_are_in_microvolts_and_match_ground_truth(sorted_demo):
    from spikeinterface.preprocessing import bandpass_filter

    recording, gt_sorting, result = sorted_demo
    tpl = np.load(result.output_folder / "templates.npy")
    assert tpl.shape[0] == len(result.sorting.unit_ids) and tpl.shape[2] == recording.get_num_channels()
    filtered = bandpass_filter(recording, freq_min=300.0, freq_max=6000.0)  # as the sorter sees it
    checked = 0
    for i, theirs in matched_gt_templates(gt_sorting, filtered, result.sorting):
        ours = tpl[i]
        peak_ours, peak_theirs = np.abs(ours).max(), np.abs(theirs).max()
        if peak_theirs < 20:  # ignore units buried in noise
            continue
        assert peak_ours == pytest.approx(peak_theirs, rel=0.2)
        best_channel = np.abs(theirs).max(axis=0).argmax()
        assert np.abs(ours).max(axis=0).argmax() == best_channel
        checked += 1
    assert checked >= 3


def test_multi_segment_recording(gt_tetrode, tmp_path):
    from spikeinterface.core import append_recordings

    recording, gt_sorting = gt_tetrode
    a = recording.frame_slice(0, 300000)
    b = recording.frame_slice(300000, 600000)
    multi = append_recordings([a, b])
    # cache_mb=0: the preprocessed segments go through the disk cache, which is gone once the sort is done
    result = sort(multi, tmp_path / "multi", {"max_epochs": 1, "cache_mb": 0}, progress=False)
    assert "cached on disk (float16)" in (tmp_path / "multi" / "crsae_sort.log").read_text()
    assert not list(tmp_path.rglob("crsae_cache_*")) and not list(tmp_path.rglob("*.raw"))
    assert result.sorting.get_num_segments() == 2
    n0 = sum(len(result.sorting.get_unit_spike_train(u, segment_index=0)) for u in result.sorting.unit_ids)
    n1 = sum(len(result.sorting.get_unit_spike_train(u, segment_index=1)) for u in result.sorting.unit_ids)
    assert n0 > 500 and n1 > 500
    for u in result.sorting.unit_ids:
        assert result.sorting.get_unit_spike_train(u, segment_index=1).max() < 300000


def test_failed_run_leaves_no_folder(gt_tetrode, tmp_path):
    recording, _ = gt_tetrode
    target = tmp_path / "out"
    for cache_mb in (2048, 0):  # held in memory, or in a disk cache inside the partial folder
        with pytest.raises(InputError, match="spikes detected"):
            sort(recording.frame_slice(0, 60000), target, {"detect_threshold": 50.0, "cache_mb": cache_mb},
                 progress=False)
        assert not target.exists()
        assert list(tmp_path.iterdir()) == []


def test_too_short_and_no_probe(gt_tetrode, tmp_path):
    from spikeinterface.core import NumpyRecording

    recording, _ = gt_tetrode
    with pytest.raises(InputError, match="only"):
        sort(recording.frame_slice(0, 300), tmp_path / "o", progress=False)
    from crsae_sort.io.reading import open_recording

    bare = NumpyRecording([np.zeros((30000, 4), np.float32)], 30000.0)
    bare.save(folder=tmp_path / "bare")
    with pytest.raises(InputError, match="no probe"):
        open_recording(tmp_path / "bare")
    assert open_recording(tmp_path / "bare", probe="tetrode").get_probe().get_contact_count() == 4


def test_same_seed_gives_identical_spikes_on_cpu(gt_tetrode):
    recording, _ = gt_tetrode
    short = recording.frame_slice(0, 300000)
    a = sort(short, None, {"max_epochs": 1, "seed": 5}, progress=False)
    b = sort(short, None, {"max_epochs": 1, "seed": 5}, progress=False)
    assert np.array_equal(a.spikes, b.spikes)
    assert np.array_equal(a.templates_uv, b.templates_uv)


def test_channel_groups_are_sorted_apart_and_aggregated(tmp_path):
    import probeinterface as pi
    import spikeinterface as si
    from spikeinterface.core import generate_ground_truth_recording

    group = pi.ProbeGroup()
    for shift in (0, 300):
        tetrode = pi.generate_tetrode()
        tetrode.move([shift, 0])
        group.add_probe(tetrode)
    group.set_global_device_channel_indices(np.arange(8))
    one = pi.combine_probes(group.probes)
    one.set_device_channel_indices(np.arange(8))
    recording, gt = generate_ground_truth_recording(durations=[20.0], sampling_frequency=30000.0, num_channels=8,
                                                    num_units=6, seed=3, probe=one)
    recording = recording.select_channels(recording.channel_ids)
    recording.set_probegroup(group, in_place=True)
    assert len(np.unique(recording.get_channel_groups())) == 2
    sort(recording, tmp_path / "out", {"max_epochs": 0}, progress=False)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert set(summary["groups"]) == {"0", "1"}
    assert (tmp_path / "out" / "group_0" / "model.pt").exists() and (tmp_path / "out" / "group_1" / "model.pt").exists()
    tpl = np.load(tmp_path / "out" / "templates.npy")
    groups = recording.get_channel_groups()
    for unit in summary["units"]:
        outside = groups != int(unit["group"])
        assert np.all(tpl[unit["unit_id"]][:, outside] == 0)
    loaded = si.load(tmp_path / "out" / "sorting")
    assert len(loaded.unit_ids) == len(summary["units"]) == tpl.shape[0]
    # each group's quality labels survive the combination, unit by unit
    assert list(loaded.get_property("quality")) == [u["quality"] for u in summary["units"]]
    assert summary["presence_ratio_bin_s"] == 2.0
    assert not list((tmp_path / "out").rglob("checkpoint"))


@pytest.mark.gpu
def test_sort_on_the_gpu_matches_the_cpu(gt_tetrode):
    """The whole sort on CUDA: the same units and nearly the same spikes as on the CPU."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from crsae_sort import sort
    from crsae_sort.demo import score

    recording, gt_sorting = gt_tetrode
    short = recording.frame_slice(0, 300000)
    gt_short = gt_sorting.frame_slice(0, 300000)
    cpu = sort(short, None, {"device": "cpu"}, progress=False)
    gpu = sort(short, None, {"device": "cuda"}, progress=False)
    assert gpu.summary.device.startswith("cuda")
    _, acc_cpu = score(short, gt_short, cpu.sorting)
    _, acc_gpu = score(short, gt_short, gpu.sorting)
    assert acc_gpu >= acc_cpu - 0.02 and acc_gpu >= 0.9
    assert abs(len(gpu.spikes) - len(cpu.spikes)) <= 0.02 * len(cpu.spikes)


def test_training_windows_lie_in_their_own_segment_and_match_single_reads():
    """Segments of unequal length: every window lies inside its segment and equals a read of that
    window alone."""
    from spikeinterface.core import NumpyRecording

    from crsae_sort.train import sample_windows

    rng = np.random.default_rng(0)
    segments = [rng.standard_normal((n, 3)).astype(np.float32) for n in (30000, 4000, 90000)]
    for k, s in enumerate(segments):
        s[:, 0] = k * 1e6 + np.arange(len(s))                     # channel 0 says where a sample is
    rec = NumpyRecording(segments, sampling_frequency=10000.0)
    windows = sample_windows(rec, 300, 500, seed=3)
    assert windows.shape == (300, 3, 500)
    seg = (windows[:, 0, 0] // 1e6).astype(int)
    start = (windows[:, 0, 0] - seg * 1e6).astype(int)
    assert set(seg) == {0, 1, 2}
    for w, g, a in zip(windows, seg, start):
        assert a + 500 <= len(segments[g])
        np.testing.assert_array_equal(w.T, segments[g][a: a + 500])
