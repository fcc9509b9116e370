"""Real recordings from ../shared/data through each reading path (skipped when the data is absent)."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import SHARED_DATA
from crsae_sort.cli import main
from crsae_sort.io.reading import open_recording

OPENEPHYS = SHARED_DATA / "openephys_legacy_v067_16ch" / "v0.6.7_OpenEphys" / "Record Node 101"
LOCUST = SHARED_DATA / "tridesclous_locust_tetrode" / "locust_trial_01.raw"
HARRIS = SHARED_DATA / "hc1_d533101_harris_cbp_5sec" / "harris_d533101_5sec.mat"
QUIROGA = SHARED_DATA / "quiroga2004_C_Easy1_noise015_cbp_trunc" / "C_Easy1_noise015_5sec.mat"


def needs(path):
    return pytest.mark.skipif(not path.exists(), reason=f"{path} not present")


@needs(OPENEPHYS)
def test_open_ephys_legacy_folder_through_neo(tmp_path):
    rec = open_recording(OPENEPHYS, probe="linear16")
    assert rec.get_num_channels() == 16
    assert rec.get_sampling_frequency() == 40000.0 and rec.get_num_samples() == 133120
    res = CliRunner().invoke(main, ["sort", str(OPENEPHYS), "--probe", "linear16", "-o", str(tmp_path / "oe"),
                                    "--set", "max_epochs=0"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "oe" / "summary.json").read_text())
    assert summary["num_channels"] == 16 and summary["decimation"] == 2 and summary["num_spikes"] > 0


@needs(LOCUST)
def test_locust_tetrode_as_raw_binary(tmp_path):
    args = ["--sampling-frequency", "15000", "--num-channels", "4", "--dtype", "int16", "--gain-to-uv", "1",
            "--offset-to-uv", "-2048", "--probe", "tetrode"]
    res = CliRunner().invoke(main, ["sort", str(LOCUST), "-o", str(tmp_path / "locust"), *args,
                                    "--set", "max_epochs=1"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "locust" / "summary.json").read_text())
    assert summary["duration_s"] == pytest.approx(431548 / 15000)
    assert len(summary["units"]) >= 3  # a well-isolated, busy recording
    tpl = np.load(tmp_path / "locust" / "templates.npy")
    assert tpl.shape[1:] == (36, 4)  # template_ms_before + template_ms_after = 1.0 + 1.4 ms at 15 kHz
    # channel 4 is nearly silent on this tetrode: no template peaks there
    assert np.all(np.abs(tpl).max(axis=1).argmax(axis=1) != 3)


@needs(HARRIS)
def test_harris_tetrode_mat_array(tmp_path):
    rec = open_recording(HARRIS, sampling_frequency_hz=10000, gain_to_uv=1.0, offset_to_uv=-2048, probe="tetrode")
    assert rec.get_num_channels() == 4 and rec.get_num_samples() == 50000
    traces = rec.get_traces(return_in_uV=True)
    assert abs(np.median(traces)) < 20  # offset removed: counts centred on zero
    res = CliRunner().invoke(main, ["sort", str(HARRIS), "-o", str(tmp_path / "harris"), "--sampling-frequency",
                                    "10000", "--gain-to-uv", "1", "--offset-to-uv", "-2048", "--probe", "tetrode",
                                    "--set", "max_epochs=1"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "harris" / "summary.json").read_text())
    assert summary["decimation"] == 1 and summary["num_spikes"] > 0


@needs(QUIROGA)
def test_quiroga_single_channel_mat_array(tmp_path):
    from scipy.io import loadmat

    rec = open_recording(QUIROGA, sampling_frequency_hz=24000, probe="single")
    assert rec.get_num_channels() == 1 and rec.get_num_samples() == 50000
    res = CliRunner().invoke(main, ["sort", str(QUIROGA), "-o", str(tmp_path / "q"), "--sampling-frequency", "24000",
                                    "--probe", "single"])
    assert res.exit_code == 0, res.output
    spikes = np.load(tmp_path / "q" / "spikes.npy")
    truth = loadmat(QUIROGA)["true_spike_times"].ravel().astype(int) - 1 + 22  # onset (1-based) -> peak
    hits = sum(np.abs(spikes["sample_index"] - t).min() <= 12 for t in truth)
    assert hits / len(truth) > 0.8  # detection of the 121 simulated spikes


def test_mat_without_rate_or_variable(tmp_path):
    from scipy.io import savemat

    from crsae_sort import InputError

    path = tmp_path / "x.mat"
    savemat(path, {"traces": np.zeros((2, 5000))})
    with pytest.raises(InputError, match="--sampling-frequency"):
        open_recording(path)
    with pytest.raises(InputError, match="--mat-variable"):
        open_recording(path, sampling_frequency_hz=20000)
