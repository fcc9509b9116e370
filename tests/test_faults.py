"""Faults: a killed run resumes to the same result; OOM shrinks the batch; disk errors are clean."""
import errno
import json
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from crsae_sort import InputError, sort
from crsae_sort.outfolder import partial_path
from crsae_sort.reading import open_recording

# long enough training to be killed in the middle; 2 threads in every process for identical arithmetic
RESUME_PARAMS = {"max_epochs": 6, "eval_every": 2, "patience": 1000, "n_windows": 120, "num_threads": 2,
                 "init_duration_s": 10.0, "n_iterations": 20}


@pytest.fixture(scope="module")
def short_folder(tmp_path_factory, gt_tetrode):
    recording, _ = gt_tetrode
    folder = tmp_path_factory.mktemp("rec") / "short"
    recording.frame_slice(0, 300000).save(folder=folder, n_jobs=1, progress_bar=False)
    return folder


def test_killed_run_resumes_to_the_same_spikes(short_folder, tmp_path):
    params_file = tmp_path / "params.json"
    params_file.write_text(json.dumps(RESUME_PARAMS))
    target = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "crsae_sort", "sort", str(short_folder), "-o", str(target),
                             "--params", str(params_file)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = partial_path(target) / "checkpoint" / "training.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert checkpoint.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no checkpoint in time"
    proc.kill()
    proc.wait()
    killed_at = torch.load(checkpoint, weights_only=False)["state"]["step"]
    assert killed_at < 18  # killed mid-training (18 steps in all)
    assert not target.exists()  # nothing that looks finished
    # a plain rerun refuses to clobber the interrupted run
    recording = open_recording(short_folder)
    with pytest.raises(InputError, match="--resume"):
        sort(recording, target, RESUME_PARAMS, progress=False)
    resumed = sort(recording, target, RESUME_PARAMS, resume=True, progress=False)
    assert "resuming training" in (target / "crsae_sort.log").read_text()
    assert not (target / "checkpoint").exists() and not partial_path(target).exists()
    reference = sort(recording, tmp_path / "reference", RESUME_PARAMS, progress=False)
    assert resumed.training.n_steps == reference.training.n_steps == 18
    assert np.array_equal(resumed.spikes, reference.spikes)
    assert torch.equal(resumed.model.dictionary, reference.model.dictionary)


def test_resume_without_an_interrupted_run_is_refused(short_folder, tmp_path):
    with pytest.raises(InputError, match="nothing to resume"):
        sort(open_recording(short_folder), tmp_path / "fresh", resume=True, progress=False)


def test_disk_full_while_writing_is_a_clean_error(short_folder, tmp_path, monkeypatch):
    import crsae_sort.export as export

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export, "save_model", full)
    target = tmp_path / "out"
    with pytest.raises(InputError, match="disk full"):
        sort(open_recording(short_folder), target, {"max_epochs": 0}, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_parent_is_refused_before_work(short_folder, tmp_path):
    import os

    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        parent = locked
    else:  # root writes anywhere permissions allow nothing: /sys refuses even root
        parent = __import__("pathlib").Path("/sys")
    with pytest.raises(InputError, match="cannot write"):
        sort(open_recording(short_folder), parent / "crsae_out", progress=False)
    assert not (parent / "crsae_out").exists()
