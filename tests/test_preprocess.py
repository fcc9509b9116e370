"""Preprocessing decisions for dense probes: local whitening and motion correction (SpikeInterface)."""
import numpy as np
import pytest

from crsae_sort.params import PreprocessParams
from crsae_sort.errors import InputError
from crsae_sort.preprocess import check_cache_room, motion_preset, preprocess, whitening_mode


def _recording(num_channels, columns, duration_s=2.0, seed=0, fs=25000.0):
    from probeinterface import generate_multi_columns_probe
    from spikeinterface.core import generate_ground_truth_recording

    probe = None
    if columns:
        probe = generate_multi_columns_probe(num_columns=columns, num_contact_per_column=num_channels // columns,
                                             xpitch=20, ypitch=20)
        probe.set_device_channel_indices(np.arange(num_channels))
    rec, _ = generate_ground_truth_recording(durations=[duration_s], num_channels=num_channels, num_units=4,
                                             probe=probe, seed=seed, sampling_frequency=fs)
    return rec


def test_whitening_is_global_on_a_tetrode_and_local_on_a_long_probe():
    assert whitening_mode(_recording(4, 0), 100.0) == "global"
    assert whitening_mode(_recording(64, 2), 100.0) == "local"
    assert whitening_mode(_recording(64, 2), 0.0) == "global"
    assert whitening_mode(_recording(64, 2), 2000.0) == "global"  # every channel within the radius


def test_motion_correction_auto_only_on_long_single_shank_probes():
    assert motion_preset(_recording(4, 0), "auto") is None              # tetrode
    assert motion_preset(_recording(32, 2), "auto") is None             # 32 channels: too few
    assert motion_preset(_recording(64, 2), "auto") == "dredge_fast"    # 20 um wide, 620 um deep
    assert motion_preset(_recording(48, 8), "auto") is None             # 140 um wide: not one column of depth
    assert motion_preset(_recording(64, 2), "off") is None
    assert motion_preset(_recording(4, 0), "rigid_fast") == "rigid_fast"  # a named preset is obeyed


def test_local_whitening_matrix_is_sparse_and_noise_is_unit():
    rec = _recording(64, 2, duration_s=4.0)
    pre = preprocess(rec, PreprocessParams(motion_correction="off"), seed=0)
    xy = rec.get_channel_locations()
    far = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1)) > 100.0
    assert np.abs(pre.to_model[far]).max() == 0.0           # channels farther than the radius are not mixed
    assert np.abs(pre.to_model[~far]).max() > 0.0
    traces = pre.recording.get_traces(0, 0, 60000)
    mad = np.median(np.abs(traces - np.median(traces, 0)), 0) / 0.6745
    assert np.allclose(mad, 1.0, atol=0.1)


@pytest.mark.slow
def test_motion_correction_estimates_the_planted_drift():
    from crsae_sort.bench.sorters_cases import drifting

    rec, _ = drifting(64, 16, 60.0, seed=5)
    pre = preprocess(rec, PreprocessParams(), seed=0)
    assert pre.motion_preset == "dredge_fast"
    assert 10.0 <= pre.max_displacement_um <= 35.0  # planted: a zigzag of +-20 um


def test_motion_corrected_recording_is_the_same_held_in_memory_or_lazy():
    """With motion correction the band-passed recording is filtered once into memory before the motion
    estimate; that must change the time it takes, not the traces the model sees."""
    rec = _recording(32, 2, duration_s=4.0, seed=3)
    held = preprocess(rec, PreprocessParams(motion_correction="rigid_fast"), seed=0)
    lazy = preprocess(rec, PreprocessParams(motion_correction="rigid_fast", cache_mb=0, cache_on_disk=False), seed=0)
    assert held.max_displacement_um == pytest.approx(lazy.max_displacement_um, abs=1e-6)
    # filter margins differ between the 1-s chunks held and the random chunks read lazily: float32 rounding
    np.testing.assert_allclose(held.noise_uv, lazy.noise_uv, rtol=1e-4)
    np.testing.assert_allclose(held.to_model, lazy.to_model, rtol=1e-4, atol=1e-6)
    a = held.recording.get_traces(start_frame=1000, end_frame=30000)
    b = lazy.recording.get_traces(start_frame=1000, end_frame=30000)
    assert a.std() > 0.5  # unit noise, not an empty copy
    np.testing.assert_allclose(a, b, atol=1e-3)  # float32 rounding of sums over 10^4 samples


def test_disk_cache_holds_the_same_traces_in_float16(tmp_path):
    """A recording larger than cache_mb is computed once into a float16 file in the scratch folder; what the
    model reads from it is the held recording up to float16 rounding (2^-11 of each value)."""
    rec = _recording(32, 2, duration_s=3.0, seed=4)
    held = preprocess(rec, PreprocessParams(motion_correction="off"), seed=0)
    disk = preprocess(rec, PreprocessParams(motion_correction="off", cache_mb=0), seed=0, scratch=tmp_path)
    lazy = preprocess(rec, PreprocessParams(motion_correction="off", cache_mb=0), seed=0)  # no scratch: lazy
    files = sorted(p for p in tmp_path.rglob("*.raw"))
    assert len(files) == 1
    n_model = -(-rec.get_num_samples() // held.decimation)
    assert files[0].stat().st_size == 2 * 32 * n_model            # float16, model rate
    assert disk.recording.get_dtype() == np.float32
    a = held.recording.get_traces(start_frame=100, end_frame=40000)
    b = disk.recording.get_traces(start_frame=100, end_frame=40000)
    c = lazy.recording.get_traces(start_frame=100, end_frame=40000)
    assert a.std() > 0.5 and np.abs(a).max() > 5.0                  # unit noise and spikes
    err = np.abs(b - a)
    assert err.max() > 0.0                                          # it is float16 ...
    assert np.all(err <= 2.0**-11 * np.abs(a) + 1e-6)               # ... rounded once, same 1-s chunks
    np.testing.assert_allclose(c, a, atol=1e-3)  # lazy: other filter margins than the 1-s chunks, float32 rounding
    assert list(tmp_path.iterdir())[0].name == "preprocessed"


def test_disk_cache_room_and_folder_are_checked_before_any_work(tmp_path, monkeypatch):
    import collections
    import shutil

    from spikeinterface.core import generate_recording

    hour = generate_recording(num_channels=384, durations=[3600.0], sampling_frequency=30000.0)  # lazy: no samples
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(100e9, 70e9, 30e9))
    two_copies = r"needs 82\.9 GB \(two copies during motion correction\) in .* 30\.0 GB free.*cache_dir.*cache_on_disk=false"
    with pytest.raises(InputError, match=two_copies):
        check_cache_room(hour, PreprocessParams(), tmp_path / "not_yet" / "made")   # checked where it will be made
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(100e9, 50e9, 50e9))
    check_cache_room(hour, PreprocessParams(motion_correction="off"), tmp_path)     # one copy: 41.5 GB of 50 free
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(100e9, 10e9, 90e9))
    check_cache_room(hour, PreprocessParams(), tmp_path)                            # 82.9 GB of 90 free: room
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(100e9, 99e9, 1e9))
    check_cache_room(hour, PreprocessParams(cache_on_disk=False), tmp_path)          # lazy: no disk needed
    check_cache_room(hour, PreprocessParams(cache_mb=1e6), tmp_path)                 # fits in memory
    with pytest.raises(InputError, match="not an existing folder"):
        check_cache_room(hour, PreprocessParams(cache_dir=str(tmp_path / "missing")), tmp_path)


def test_decimating_first_gives_the_traces_of_filter_reference_whiten_then_decimate():
    """Decimation comes right after the band-pass: the median reference, whitening and scaling act on each sample
    alone, so the model sees what SpikeInterface's chain in the textbook order (decimation last) gives with the
    same matrix A; and filtered_uv reads the µV traces back (y A^-1) at the model rate."""
    import spikeinterface.preprocessing as spre

    rec = _recording(32, 2, duration_s=3.0, seed=6, fs=30000.0)
    pre = preprocess(rec, PreprocessParams(motion_correction="off"), seed=0)
    assert pre.decimation == 2
    band = spre.common_reference(spre.bandpass_filter(rec, freq_min=300.0, freq_max=6000.0, dtype="float32"),
                                 reference="global", operator="median")
    late = spre.decimate(spre.whiten(band, W=pre.to_model.astype(np.float32), M=None, dtype="float32"), 2,
                         antialias=False)
    a = pre.recording.get_traces(start_frame=500, end_frame=40000)
    b = late.get_traces(start_frame=500, end_frame=40000)
    assert a.std() > 0.5 and np.abs(a).max() > 5.0          # unit noise and spikes
    np.testing.assert_allclose(a, b, atol=2e-3)               # filter margins of other chunks, float32 rounding
    x = pre.filtered_uv.get_traces(start_frame=500, end_frame=40000)
    assert pre.filtered_uv.get_sampling_frequency() == pre.recording.get_sampling_frequency()
    np.testing.assert_allclose(x, band.get_traces(start_frame=1000, end_frame=80000)[::2], atol=2e-2)  # µV


def test_motion_correction_reads_the_raw_samples_once_and_its_disk_copy_is_removed(tmp_path):
    """Larger than cache_mb with motion correction: the band-passed traces go to a float16 file once, the motion
    estimate and the result read it, and it is deleted once the result is written; the result is the one held in
    memory up to float16 rounding."""
    rec = _recording(32, 2, duration_s=4.0, seed=3)
    held = preprocess(rec, PreprocessParams(motion_correction="rigid_fast"), seed=0)
    disk = preprocess(rec, PreprocessParams(motion_correction="rigid_fast", cache_mb=0), seed=0, scratch=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["preprocessed"]   # the band-passed copy is gone
    assert disk.max_displacement_um == pytest.approx(held.max_displacement_um, abs=1.0)
    a = held.recording.get_traces(start_frame=1000, end_frame=30000)
    b = disk.recording.get_traces(start_frame=1000, end_frame=30000)
    assert a.std() > 0.5
    np.testing.assert_allclose(b, a, rtol=4e-3, atol=0.01)   # two float16 roundings (µV copy, result), mixed by A


def test_long_recordings_estimate_motion_in_dredges_online_mode(monkeypatch, caplog):
    """Beyond DREDGE_ONLINE_S DREDge solves batches in turn (memory flat in length): here the limit is lowered
    so that a 6-s recording takes that path, in 3-s batches, and still gets its displacement estimate."""
    import logging

    import crsae_sort.preprocess as pp

    monkeypatch.setattr(pp, "DREDGE_ONLINE_S", 1.0)
    monkeypatch.setattr(pp, "DREDGE_CHUNK_S", 3)
    rec = _recording(64, 2, duration_s=6.0, seed=2)
    with caplog.at_level(logging.INFO, logger="crsae_sort.preprocess"):
        pre = preprocess(rec, PreprocessParams(motion_correction="dredge_fast"), seed=0)
    assert "online mode, 3-s batches" in caplog.text
    assert pre.max_displacement_um is not None and pre.max_displacement_um < 20.0   # no drift was planted
