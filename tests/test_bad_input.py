"""Every bad input: a clear message, a non-zero exit without traceback, and nothing left behind."""
import json
import logging

import numpy as np
import pytest
from click.testing import CliRunner

from crsae_sort import InputError, sort
from crsae_sort.cli import main
from crsae_sort.io.reading import open_recording

FS = 30000.0


def noise_recording(n_samples=60000, n_channels=4, dtype="float32", seed=0):
    from spikeinterface.core import NumpyRecording

    rng = np.random.default_rng(seed)
    traces = (10 * rng.standard_normal((n_samples, n_channels))).astype(dtype)
    return NumpyRecording([traces], FS)


def with_tetrode(recording):
    from crsae_sort.io.reading import _with_probe, load_probe

    return _with_probe(recording, load_probe("tetrode", recording.get_num_channels()))


def cli_fails(tmp_path, args, message):
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["sort", *map(str, args), "-o", str(out)])
    assert res.exit_code != 0, res.output
    assert message in res.output, res.output
    assert "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) <= 2
    assert not out.exists() and not list(tmp_path.glob(".out.partial*"))
    return res.output


def test_path_does_not_exist(tmp_path):
    cli_fails(tmp_path, [tmp_path / "missing"], "does not exist")


def test_format_not_recognised_lists_supported(tmp_path):
    odd = tmp_path / "notes.xyz"
    odd.write_text("hello")
    cli_fails(tmp_path, [odd], "Open Ephys")


def test_several_streams_and_none_chosen(tmp_path):
    from datetime import datetime, timezone

    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.ecephys import ElectricalSeries

    nwb = NWBFile(session_description="t", identifier="t", session_start_time=datetime(2020, 1, 1, tzinfo=timezone.utc))
    group = nwb.create_electrode_group(name="g", description="g", location="x", device=nwb.create_device(name="d"))
    for i in range(4):
        nwb.add_electrode(x=0.0, y=20.0 * i, z=0.0, imp=np.nan, location="x", filtering="none", group=group)
    region = nwb.create_electrode_table_region(list(range(4)), "all")
    data = np.random.default_rng(0).standard_normal((30000, 4)).astype("float32")
    for name in ("lfp", "wideband"):
        nwb.add_acquisition(ElectricalSeries(name=name, data=data, electrodes=region, rate=FS))
    path = tmp_path / "two.nwb"
    with NWBHDF5IO(path, "w") as io:
        io.write(nwb)
    out = cli_fails(tmp_path, [path], "acquisition/lfp")
    assert "--stream" in out
    chosen = open_recording(path, stream="acquisition/wideband", probe="tetrode")
    assert chosen.get_num_channels() == 4


def test_raw_binary_without_shape_or_probe(tmp_path):
    raw = tmp_path / "x.raw"
    (np.zeros((3000, 4), np.int16)).tofile(raw)
    cli_fails(tmp_path, [raw], "--sampling-frequency")
    cli_fails(tmp_path, [raw, "--sampling-frequency", FS, "--num-channels", 4, "--dtype", "int16",
                         "--gain-to-uv", 0.195], "no probe")
    cli_fails(tmp_path, [raw, "--sampling-frequency", FS, "--num-channels", 7, "--dtype", "int16"],
              "not a whole number")


def test_probe_channel_count_mismatch(tmp_path):
    noise_recording(n_channels=5).save(folder=tmp_path / "rec5")
    cli_fails(tmp_path, [tmp_path / "rec5", "--probe", "tetrode"], "4 contacts but the recording has 5")


@pytest.mark.parametrize("fs", [500.0, 200000.0])
def test_implausible_sampling_rate(tmp_path, fs):
    from spikeinterface.core import NumpyRecording

    rec = with_tetrode(NumpyRecording([np.zeros((60000, 4), np.float32)], fs))
    with pytest.raises(InputError, match="implausible"):
        sort(rec, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_model_at_another_rate_is_refused(tmp_path, sorted_demo):
    _, _, result = sorted_demo
    from spikeinterface.core import NumpyRecording

    # 30 kHz -> the model runs at 15 kHz; 29,000.5 Hz would run at 14,500.25 Hz: refuse, do not round
    rec = with_tetrode(NumpyRecording([np.random.default_rng(1).standard_normal((90000, 4)).astype("float32")],
                                      29000.5))
    with pytest.raises(InputError, match="train a new model"):
        sort(rec, tmp_path / "out", model_path=result.output_folder / "model.pt", progress=False)


def test_integer_data_without_gain(tmp_path):
    rec = with_tetrode(noise_recording(dtype="int16"))
    with pytest.raises(InputError, match="without a gain to µV; any gain finds the same spikes"):
        sort(rec, tmp_path / "out", progress=False)


def test_nan_and_inf_samples_are_counted_and_located(tmp_path):
    from spikeinterface.core import NumpyRecording

    traces = np.random.default_rng(0).standard_normal((60000, 4)).astype("float32")
    traces[45000, 2] = np.nan
    traces[45001:45003, 2] = np.inf
    traces[50000, 0] = np.nan
    rec = with_tetrode(NumpyRecording([traces], FS))
    with pytest.raises(InputError) as err:
        sort(rec, tmp_path / "out", progress=False)
    text = str(err.value)
    assert "4 NaN/Inf samples" in text and "sample 45000" in text and "channel 2" in text
    assert not (tmp_path / "out").exists()


def test_recording_too_short(tmp_path):
    rec = with_tetrode(noise_recording(n_samples=500))
    with pytest.raises(InputError, match="ten template lengths"):
        sort(rec, tmp_path / "out", progress=False)


def test_dead_channel_is_excluded_with_a_warning(tmp_path, gt_tetrode, caplog):
    from spikeinterface.core import NumpyRecording

    recording, _ = gt_tetrode
    traces = recording.get_traces(start_frame=0, end_frame=300000).copy()
    traces = np.concatenate([traces, np.full((len(traces), 1), 7.0, np.float32)], axis=1)
    import probeinterface as pi

    rec = NumpyRecording([traces], FS)
    probe = pi.generate_linear_probe(num_elec=5, ypitch=20)
    probe.set_device_channel_indices(np.arange(5))
    rec.set_probe(probe, in_place=True)
    with caplog.at_level(logging.WARNING, logger="crsae_sort"):
        result = sort(rec, tmp_path / "out", {"max_epochs": 0}, progress=False)
    assert "dead (constant) channel" in caplog.text
    assert result.templates_uv.shape[2] == 4
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["dead_channels_excluded"] == ["4"]


def test_no_spikes_detected_suggests_a_threshold(tmp_path):
    rec = with_tetrode(noise_recording(n_samples=150000))
    with pytest.raises(InputError) as err:
        sort(rec, tmp_path / "out", progress=False)
    assert "detect_threshold" in str(err.value) and "strongest" in str(err.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("setting, message", [("n_iterations=0", "outside the allowed range"),
                                              ("bogus=1", "unknown parameter"),
                                              ("refractory_ms=-1", "outside the allowed range"),
                                              ("whiten=perhaps", "must be of type bool")])
def test_parameter_out_of_range_or_unknown(tmp_path, setting, message):
    noise_recording().save(folder=tmp_path / "rec")
    cli_fails(tmp_path, [tmp_path / "rec", "--probe", "tetrode", "--set", setting], message)


def test_cuda_requested_without_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    noise_recording().save(folder=tmp_path / "rec")
    cli_fails(tmp_path, [tmp_path / "rec", "--probe", "tetrode", "--device", "cuda"], "no CUDA GPU")


def test_model_for_another_channel_count(tmp_path, sorted_demo):
    _, _, result = sorted_demo
    noise_recording(n_channels=5).save(folder=tmp_path / "rec5")
    import probeinterface as pi

    probe_file = tmp_path / "five.json"
    probe = pi.generate_linear_probe(num_elec=5, ypitch=20)
    probe.set_device_channel_indices(np.arange(5))
    pi.write_probeinterface(probe_file, probe)
    cli_fails(tmp_path, [tmp_path / "rec5", "--probe", probe_file, "--model", result.output_folder / "model.pt"],
              "trained on 4 channels")


def test_output_exists_without_overwrite(tmp_path):
    noise_recording().save(folder=tmp_path / "rec")
    (tmp_path / "out").mkdir()
    res = CliRunner().invoke(main, ["sort", str(tmp_path / "rec"), "--probe", "tetrode", "-o", str(tmp_path / "out")])
    assert res.exit_code != 0 and "--overwrite" in res.output and "Traceback" not in res.output


def test_plugin_style_call_raises_the_same_messages(tmp_path):
    rec = with_tetrode(noise_recording())
    with pytest.raises(InputError, match="unknown parameter"):
        sort(rec, tmp_path / "out", {"bogus": 1})
