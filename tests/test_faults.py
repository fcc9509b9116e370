"""Faults: a killed run resumes to the same result; OOM shrinks the batch; disk errors are clean."""
import errno
import json
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from crsae_sort.model.crsae import CRsAE
from crsae_sort.model.encoders.fista import Fista

from crsae_sort import InputError, sort
from crsae_sort.io import checkpoints
from crsae_sort.io.outfolder import partial_path
from crsae_sort.io.reading import open_recording

# long enough training to be killed in the middle; 2 threads in every process for identical arithmetic
RESUME_PARAMS = {"max_epochs": 6, "eval_every": 2, "patience": 1000, "n_windows": 120, "num_threads": 2,
                 "init_duration_s": 10.0, "n_iterations": 20}
# the in-process twin: a shorter training (8 steps), stopped after its checkpoint at step 4; no growth
STOP_PARAMS = {"max_epochs": 4, "eval_every": 2, "patience": 1000, "n_windows": 48, "batch_size": 16,
               "num_threads": 2, "init_duration_s": 5.0, "n_iterations": 10, "grow_rounds": 0}


@pytest.fixture
def short_folder(saved_tetrode_10s):
    return saved_tetrode_10s


@pytest.mark.slow  # a killed process; the default suite stops a run in-process (the test below)
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
    killed_at = checkpoints.load(checkpoint)["state"]["step"]
    assert killed_at < 18  # killed mid-training (18 steps in all)
    assert not target.exists()  # nothing that looks finished
    assert list(partial_path(target).glob("crsae_cache_*"))  # the killed run's scratch folder (disk cache) stayed
    # a plain rerun refuses to clobber the interrupted run, naming the Python argument that resumes it
    recording = open_recording(short_folder)
    with pytest.raises(InputError, match="pass resume=True to continue it"):
        sort(recording, target, RESUME_PARAMS, progress=False)
    resumed = sort(recording, target, RESUME_PARAMS, resume=True, progress=False)
    assert "resuming training" in (target / "crsae_sort.log").read_text()
    assert not (target / "checkpoint").exists() and not partial_path(target).exists()
    assert not list(target.glob("crsae_cache_*"))  # the resumed run removed it with its own
    reference = sort(recording, tmp_path / "reference", RESUME_PARAMS, progress=False)
    assert resumed.training.n_steps == reference.training.n_steps == 18
    assert np.array_equal(resumed.spikes, reference.spikes)
    assert torch.equal(resumed.model.dictionary, reference.model.dictionary)


def _stop_after_checkpoint(recording, target, monkeypatch, step):
    """Sort ``recording`` into ``target`` with STOP_PARAMS, stopped (KeyboardInterrupt) right after the training
    checkpoint of ``step`` (None: the first one) is written; the partial folder stays for a resume."""
    import crsae_sort.train as train

    save = train._save

    def save_then_stop(path, st, *args):
        save(path, st, *args)
        if step is None or st.step == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "_save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        sort(recording, target, STOP_PARAMS, progress=False)
    monkeypatch.setattr(train, "_save", save)


def test_interrupted_run_resumes_to_the_same_spikes(short_folder, tmp_path, monkeypatch):
    """The fast twin of the killed run: a sort stopped (KeyboardInterrupt) right after a training checkpoint
    keeps its partial folder, a plain rerun refuses it, and resuming gives the spikes and dictionary of an
    uninterrupted run."""
    recording = open_recording(short_folder)
    target = tmp_path / "stopped"
    _stop_after_checkpoint(recording, target, monkeypatch, step=4)
    checkpoint = partial_path(target) / "checkpoint" / "training.pt"
    assert checkpoints.load(checkpoint)["state"]["step"] == 4  # stopped mid-training (8 steps)
    assert not target.exists()  # nothing that looks finished
    with pytest.raises(InputError, match="pass resume=True to continue it"):
        sort(recording, target, STOP_PARAMS, progress=False)
    resumed = sort(recording, target, STOP_PARAMS, resume=True, progress=False)
    assert "resuming training" in (target / "crsae_sort.log").read_text()
    assert not (target / "checkpoint").exists() and not partial_path(target).exists()
    assert not list(target.glob("crsae_cache_*"))
    reference = sort(recording, tmp_path / "reference", STOP_PARAMS, progress=False)
    assert resumed.training.n_steps == reference.training.n_steps == 8
    assert np.array_equal(resumed.spikes, reference.spikes)
    assert torch.equal(resumed.model.dictionary, reference.model.dictionary)


class _Planted:
    """What a crafted pickle does: its loading calls a function of the attacker's choice (here: mkdir)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.mkdir, (self.marker,)


def test_a_planted_checkpoint_is_refused_without_running_it(short_folder, tmp_path, monkeypatch):
    """An interrupted run's checkpoints are read as plain tensors and containers: a checkpoint replaced by a
    pickle that would run code (in a shared output folder, say) is refused on resume, its code never runs,
    and the refusal says how to start again."""
    recording = open_recording(short_folder)
    target = tmp_path / "stopped"
    _stop_after_checkpoint(recording, target, monkeypatch, step=None)
    folder = partial_path(target) / "checkpoint"
    assert checkpoints.load(folder / "init.pt").dictionary.dtype == np.float32  # what the run wrote reads back
    marker = tmp_path / "code_ran"
    torch.save(dict(format=checkpoints.CHECKPOINT_FORMAT, value=_Planted(marker)), folder / "init.pt")
    with pytest.raises(InputError, match="cannot be read as plain tensors.*resume=False, overwrite=True"):
        sort(recording, target, STOP_PARAMS, resume=True, progress=False)
    assert not marker.exists()


def test_checkpoint_values_round_trip(tmp_path):
    """Every kind of value a stage caches comes back equal: arrays (dtype kept), dataclasses, a model."""
    from crsae_sort.grow import GrowthResult
    from crsae_sort.init_dictionary import InitialDictionary
    from crsae_sort.summary import GrownAtom
    from crsae_sort.train import TrainingResult

    init = InitialDictionary(np.ones((2, 4, 9), np.float32), np.array([3.0, 4.0]), 3, 100, [60, 40],
                             peak_channels=np.array([0, 2]), method="local")
    model = CRsAE(torch.nn.functional.normalize(torch.randn(2, 4, 9), dim=(1, 2)), torch.tensor([3.0, 4.5]), 7)
    model.working_set_screen = 0.8
    training = TrainingResult([dict(step=0, lam=[3.0, 4.5], kept=True)], 0, 5, 1.5)
    atom = GrownAtom(**{f.name: (1 if f.type in ("int", int) else 0.5) for f in __import__("dataclasses").fields(GrownAtom)})
    growth = GrowthResult([atom], 2, [10, 3], 2.0)
    checkpoints.save(tmp_path / "c.pt", dict(init=init, trained=(model, training), grown=(model, growth),
                                             perm=np.arange(5), n=np.int64(3), x=np.float64(2.5)))
    back = checkpoints.load(tmp_path / "c.pt")  # through torch.load(weights_only=True)
    assert back["init"].dictionary.dtype == np.float32 and np.array_equal(back["init"].dictionary, init.dictionary)
    assert np.array_equal(back["init"].peak_channels, [0, 2]) and back["init"].cluster_sizes == [60, 40]
    assert back["init"].method == "local" and back["init"].outside_energy is None
    model_back, training_back = back["trained"]
    assert torch.equal(model_back.dictionary, model.dictionary) and torch.allclose(model_back.lam, model.lam)
    assert model_back.working_set_screen == 0.8 and model_back.lipschitz == model.lipschitz
    assert training_back == training and back["grown"][1] == growth
    assert back["perm"].dtype == np.int64 and back["n"] == 3 and isinstance(back["n"], int)
    assert type(back["x"]) is float and back["x"] == 2.5


def test_resume_without_an_interrupted_run_is_refused(short_folder, tmp_path):
    with pytest.raises(InputError, match="nothing to resume"):
        sort(open_recording(short_folder), tmp_path / "fresh", resume=True, progress=False)


def test_disk_full_while_writing_is_a_clean_error(short_folder, tmp_path, monkeypatch):
    import crsae_sort.io.results as export

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


def _oom_above(limit, real):
    """``Encoder.forward`` that runs out of memory on batches of more than ``limit`` windows."""
    def wrapped(self, y, *args, **kwargs):
        if y.shape[0] > limit:
            raise torch.OutOfMemoryError("simulated: CUDA out of memory")
        return real(self, y, *args, **kwargs)
    return wrapped


def test_out_of_memory_in_inference_splits_the_batch(monkeypatch, caplog):
    import crsae_sort.infer as infer
    from test_inference import planted_recording

    times = list(range(300, 59000, 700))
    recording, model = planted_recording(times, amplitude=15.0)
    params = infer.InferenceParams(chunk_duration_s=4.0)
    # the batched rows of screened stretches: the path a GPU takes (the CPU uses working sets)
    monkeypatch.setattr(CRsAE, "uses_working_set", lambda self, screen: False)
    expected = infer.detect_spikes(model, recording, params)
    monkeypatch.setattr(infer, "ROW", 256)  # many rows per chunk
    dense_rows = infer.detect_spikes(model, recording, params)
    monkeypatch.setattr(Fista, "forward", _oom_above(2, Fista.forward))
    with caplog.at_level("WARNING", logger="crsae_sort"):
        split = infer.detect_spikes(model, recording, params)
    assert "out of memory" in caplog.text
    assert np.array_equal(split.sample_index, dense_rows.sample_index)
    assert np.array_equal(np.sort(split.sample_index), np.sort(expected.sample_index))


def test_out_of_memory_in_training_continues_in_micro_batches(monkeypatch, caplog):
    from crsae_sort.model.crsae import CRsAE
    from crsae_sort.params import TrainParams
    from crsae_sort.train import train

    g = torch.Generator().manual_seed(0)
    d = torch.randn(3, 2, 10, generator=g)
    windows = torch.randn(60, 2, 120, generator=g).numpy()
    params = TrainParams(batch_size=16, max_epochs=1, eval_every=1, patience=100)

    def fit():
        model = CRsAE(d, torch.full((3,), 2.0), n_iter=10)
        result = train(model, windows, params, lambda_prior_strength=10.0, seed=0)
        return model, result

    plain_model, plain = fit()
    monkeypatch.setattr(Fista, "forward", _oom_above(4, Fista.forward))
    with caplog.at_level("WARNING", logger="crsae_sort"):
        small_model, small = fit()
    assert "micro-batches" in caplog.text
    assert small.n_steps == plain.n_steps
    assert torch.allclose(small_model.dictionary, plain_model.dictionary, atol=1e-5)


def test_checkpoint_of_another_version_is_a_clear_error(tmp_path):
    from crsae_sort.params import TrainParams
    from crsae_sort.train import train

    d = torch.randn(2, 2, 8, generator=torch.Generator().manual_seed(0))
    model = CRsAE_for_faults(d)
    windows = torch.randn(40, 2, 60, generator=torch.Generator().manual_seed(1)).numpy()
    old = tmp_path / "training.pt"
    torch.save(dict(state={}, model={}), old)  # what an earlier crsae-sort wrote: no format
    with pytest.raises(InputError, match="another version of crsae-sort"):
        train(model, windows, TrainParams(batch_size=8, max_epochs=1), lambda_prior_strength=10.0, seed=0,
              checkpoint=old)


def CRsAE_for_faults(d):
    from crsae_sort.model.crsae import CRsAE

    return CRsAE(d, torch.full((len(d),), 2.0), n_iter=5)
