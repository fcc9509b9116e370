"""Lab batch: manifests, failures that do not stop the others, resume, engines, the SLURM script."""
import csv
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from crsae_sort import InputError
from crsae_sort.batch import read_manifest, run_batch
from crsae_sort.cli import main

ROOT = Path(__file__).resolve().parents[1]
FAST = {"max_epochs": "1", "n_windows": "32", "batch_size": "16", "n_iterations": "10", "init_duration_s": "6",
        "device": "cpu"}


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Two 6 s tetrodes saved as SpikeInterface folders (with their probe)."""
    from spikeinterface.core import generate_ground_truth_recording

    base = tmp_path_factory.mktemp("batch")
    for name, seed in (("rec_a", 0), ("rec_b", 1)):
        rec, _ = generate_ground_truth_recording(num_channels=4, durations=[6.0], seed=seed)
        rec.save(folder=base / name, n_jobs=1, progress_bar=False)
    return base


def _write_csv(path, rows):
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k != "path", k))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_manifest_csv_and_yaml(tmp_path):
    (tmp_path / "data").mkdir()
    m = _write_csv(tmp_path / "m.csv", [dict(path="data/a", probe="tetrode", n_iterations="30"),
                                        dict(path="/abs/b.nwb", name="bee", detect_threshold="")])
    jobs = read_manifest(m)
    assert [j.name for j in jobs] == ["a", "bee"]
    assert jobs[0].path == (tmp_path / "data" / "a").resolve() and jobs[0].probe == "tetrode"
    assert jobs[0].params == {"n_iterations": "30"} and jobs[1].params == {}  # empty cell: not set
    y = tmp_path / "m.yaml"
    y.write_text("defaults: {max_epochs: 1}\nrecordings:\n  - path: data/a\n    params: {n_iterations: 12}\n"
                 "  - {path: data/c, seed: 4}\n")
    jobs = read_manifest(y)
    assert jobs[0].params == {"max_epochs": 1, "n_iterations": 12}
    assert jobs[1].params == {"max_epochs": 1, "seed": 4}


@pytest.mark.parametrize("rows, message", [
    ([dict(path="a", colour="red")], "unknown column(s) colour"),
    ([dict(path="a", prob="tetrode", n_iteration="30")],
     "unknown column(s) n_iteration (did you mean n_iterations?), prob (did you mean probe?);"),
    ([dict(path="x/a"), dict(path="y/a")], "would both write to a/"),
    ([dict(name="a")], "has no path"),
])
def test_manifest_errors_say_what_to_do(tmp_path, rows, message):
    with pytest.raises(InputError) as err:
        read_manifest(_write_csv(tmp_path / "m.csv", rows))
    assert message in str(err.value)


def test_one_failure_does_not_stop_the_others_and_rerun_resumes(recordings, tmp_path):
    manifest = _write_csv(tmp_path / "m.csv", [
        dict(path=str(recordings / "rec_a"), **FAST),
        dict(path=str(recordings / "nowhere"), **FAST),
        dict(path=str(recordings / "rec_b"), name="bad_params", n_iterations="0"),
    ])
    out = tmp_path / "out"
    runner = CliRunner()
    res = runner.invoke(main, ["batch", str(manifest), "-o", str(out)])
    assert res.exit_code == 1, res.output
    rows = {r["name"]: r for r in csv.DictReader((out / "batch_summary.csv").open())}
    assert rows["rec_a"]["status"] == "sorted" and int(rows["rec_a"]["units"]) > 0
    assert rows["nowhere"]["status"] == "failed" and "does not exist" in rows["nowhere"]["message"]
    assert rows["bad_params"]["status"] == "failed" and "outside the allowed range" in rows["bad_params"]["message"]
    assert (out / "rec_a" / "sorter_output" / "crsae" / "templates.npy").is_file()
    assert "rec_a" in res.output and "sorted" in res.output  # the table
    assert "nowhere: not sorted" in (out / "crsae_batch.log").read_text()
    stamp = (out / "rec_a" / "sorter_output" / "crsae" / "summary.json").stat().st_mtime_ns

    again = run_batch(manifest, out)  # resume: rec_a is not sorted twice
    assert [r.status for r in again] == ["skipped", "failed", "failed"]
    assert (out / "rec_a" / "sorter_output" / "crsae" / "summary.json").stat().st_mtime_ns == stamp


def test_failure_inside_a_sort_is_reported(recordings, tmp_path):
    # valid parameters, but training windows longer than the 6 s recording: the sort itself fails
    manifest = _write_csv(tmp_path / "m.csv", [dict(path=str(recordings / "rec_a"), window_ms="10000", **FAST)])
    rows = run_batch(manifest, tmp_path / "out")
    assert rows[0].status == "failed" and "a segment of the recording has only" in rows[0].message
    assert json.loads((tmp_path / "out" / "rec_a" / "spikeinterface_log.json").read_text())["error"] is True


def test_dask_batch_of_two_recordings(recordings, tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"defaults: {json.dumps(FAST)}\nrecordings:\n"
                        f"  - path: {recordings / 'rec_a'}\n  - path: {recordings / 'rec_b'}\n")
    rows = run_batch(manifest, tmp_path / "out", engine="dask", n_jobs=2)
    assert [r.status for r in rows] == ["sorted", "sorted"], [r.message for r in rows]
    params = json.loads((tmp_path / "out" / "rec_b" / "sorter_output" / "crsae" / "params.json").read_text())
    assert params["num_threads"] == max(1, len(os.sched_getaffinity(0)) // 2) and params["n_iterations"] == 10


def test_slurm_array_script(recordings, tmp_path):
    manifest = _write_csv(tmp_path / "m.csv", [dict(path=str(recordings / "rec_a")),
                                               dict(path=str(recordings / "rec_b"))])
    res = CliRunner().invoke(main, ["batch", str(manifest), "-o", str(tmp_path / "out"), "--engine", "slurm",
                                    "--slurm-arg", "partition=gpu", "--slurm-arg", "gres=gpu:1",
                                    "--set", "device=cuda", "--no-submit"])
    assert res.exit_code == 0, res.output
    script = (tmp_path / "out" / "crsae_batch.sbatch").read_text()
    assert script.startswith("#!/bin/bash\n#SBATCH --array=0-1\n")
    assert "#SBATCH --partition=gpu" in script and "#SBATCH --gres=gpu:1" in script
    assert "--only ${SLURM_ARRAY_TASK_ID}" in script and "--set device=cuda" in script
    assert "-m crsae_sort batch" in script and str(manifest) in script
    assert os.access(tmp_path / "out" / "crsae_batch.sbatch", os.X_OK)


def test_only_runs_one_row(recordings, tmp_path):
    manifest = _write_csv(tmp_path / "m.csv", [dict(path=str(recordings / "nowhere")),
                                               dict(path=str(recordings / "nowhere_either"))])
    rows = run_batch(manifest, tmp_path / "out", only=1)
    assert [r.name for r in rows] == ["nowhere_either"]
    with pytest.raises(InputError, match="outside the manifest's rows"):
        run_batch(manifest, tmp_path / "out", only=5)
