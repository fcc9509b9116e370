"""The command line through click's CliRunner."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from crsae_sort.cli import main


@pytest.fixture
def saved_tetrode(saved_tetrode_10s):
    return saved_tetrode_10s


def test_params_lists_every_parameter_and_json_round_trips():
    runner = CliRunner()
    out = runner.invoke(main, ["params"])
    assert out.exit_code == 0 and "n_iterations = 50" in out.output
    out = runner.invoke(main, ["params", "--json"])
    from crsae_sort.params import SortParams
    assert SortParams.from_dict(json.loads(out.output)) == SortParams()


def test_info_reports_versions_and_devices():
    out = CliRunner().invoke(main, ["info"])
    assert out.exit_code == 0
    assert "torch:" in out.output and "spikeinterface:" in out.output and "cuda" in out.output


def test_sort_a_spikeinterface_folder_then_reuse_its_model(saved_tetrode, tmp_path):
    runner = CliRunner()
    out_dir = tmp_path / "out"
    res = runner.invoke(main, ["sort", str(saved_tetrode), "-o", str(out_dir), "--device", "cpu", "--seed", "3",
                               "--set", "n_iterations=30", "--set", "max_epochs=1"])
    assert res.exit_code == 0, res.output
    assert "units" in res.output
    params = json.loads((out_dir / "params.json").read_text())
    assert params["n_iterations"] == 30 and params["seed"] == 3 and params["device"] == "cpu"
    summary = json.loads((out_dir / "summary.json").read_text())
    assert len(summary["units"]) >= 4
    assert "cpu threads: " in (out_dir / "crsae_sort.log").read_text()  # chosen once, logged with the run
    # a second run with the trained model and no training
    out2 = tmp_path / "out2"
    res = runner.invoke(main, ["sort", str(saved_tetrode), "-o", str(out2), "--model", str(out_dir / "model.pt")])
    assert res.exit_code == 0, res.output
    first = np.load(out_dir / "spikes.npy")
    second = np.load(out2 / "spikes.npy")
    assert abs(len(first) - len(second)) <= 0.02 * len(first)
    # existing output without --overwrite: a clean error, the folder untouched
    res = runner.invoke(main, ["sort", str(saved_tetrode), "-o", str(out_dir)])
    assert res.exit_code != 0 and "--overwrite" in res.output
    assert (out_dir / "summary.json").exists()


@pytest.mark.parametrize("args, message", [
    (["--set", "n_iterations=0"], "outside the allowed range"),
    (["--set", "bogus=1"], "unknown parameter"),
    (["--set", "n_iterations"], "key=value"),
    (["--device", "cuda:7"], "cuda"),
])
def test_sort_rejects_bad_parameters_without_traceback(saved_tetrode, tmp_path, args, message):
    out_dir = tmp_path / "bad"
    res = CliRunner().invoke(main, ["sort", str(saved_tetrode), "-o", str(out_dir), *args])
    assert res.exit_code != 0
    assert message in res.output
    assert "Traceback" not in res.output
    assert not out_dir.exists()
    assert not list(tmp_path.glob(".bad.partial*"))


def test_sort_missing_input_and_raw_binary_without_shape(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["sort", str(tmp_path / "nope"), "-o", str(tmp_path / "o")])
    assert res.exit_code != 0 and "does not exist" in res.output
    raw = tmp_path / "x.raw"
    np.zeros((1000, 4), np.int16).tofile(raw)
    res = runner.invoke(main, ["sort", str(raw), "-o", str(tmp_path / "o")])
    assert res.exit_code != 0 and "--sampling-frequency" in res.output
    assert not (tmp_path / "o").exists()
