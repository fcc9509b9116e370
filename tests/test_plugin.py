"""The ``crsae`` SpikeInterface sorter: registration, the sorter contract, engines, fresh workers.

Our own test of SpikeInterface's sorter contract (the upstream ``SorterCommonTestSuite`` ships only
in SpikeInterface's source tree); the upstream suite itself is run before each release.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import crsae_sort
from crsae_sort.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(max_epochs=1, n_windows=32, batch_size=16, n_iterations=10, init_duration_s=6.0, device="cpu")


def _env(**extra):
    """Environment for child processes: this worktree's crsae_sort first, one thread each."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.update(extra)
    return env


def _python(code: str, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env or _env(), timeout=timeout, cwd="/")


@pytest.fixture(scope="module")
def short_rec_folder(tmp_path_factory):
    """6 s, 4 channels, saved as a binary folder (run_sorter needs a serialisable recording)."""
    from spikeinterface.core import generate_ground_truth_recording

    rec, _ = generate_ground_truth_recording(num_channels=4, durations=[6.0], seed=0)
    folder = tmp_path_factory.mktemp("plugin") / "rec6"
    rec.save(folder=folder, n_jobs=1, progress_bar=False)
    return folder


@pytest.fixture(scope="module")
def short_rec(short_rec_folder):
    import spikeinterface as si

    return si.load(short_rec_folder)


def test_import_registers_lazily_without_torch():
    out = _python("""
        import sys, crsae_sort
        heavy = [m for m in ("torch", "spikeinterface") if m in sys.modules]
        from spikeinterface.sorters import sorter_dict, sorter_full_list, installed_sorters
        import spikeinterface.sorters.sorterlist as sl
        print(heavy, "crsae" in sorter_dict, "crsae" in installed_sorters(),
              sl.sorter_dict is sorter_dict, sum(s.sorter_name == "crsae" for s in sorter_full_list),
              "torch" in sys.modules)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "True", "True", "True", "1", "False"]
    # the other order: SpikeInterface first, then crsae_sort
    out = _python("""
        from spikeinterface.sorters import sorter_dict
        import crsae_sort
        print("crsae" in sorter_dict)
    """)
    assert out.returncode == 0 and out.stdout.split() == ["True"], out.stderr


def test_registration_is_idempotent_and_params_come_from_the_dataclasses():
    from spikeinterface.sorters import get_default_sorter_params, get_sorter_params_description, sorter_full_list

    from crsae_sort.params import default_params
    from crsae_sort.plugin import CrsaeSorter, register

    assert register() is register() is CrsaeSorter
    assert sum(s.sorter_name == "crsae" for s in sorter_full_list) == 1
    assert get_default_sorter_params("crsae") == default_params()
    desc = get_sorter_params_description("crsae")
    assert set(desc) == set(default_params()) and "[1, 5000]" in desc["n_iterations"]
    assert CrsaeSorter.gpu_capability == "nvidia-optional"
    assert CrsaeSorter.get_sorter_version() == crsae_sort.__version__


@pytest.mark.parametrize("params, message", [
    (dict(n_iterations=0), "parameter n_iterations=0 is outside the allowed range [1, 5000]"),
    (dict(bogus=1), "unknown parameter(s) bogus; see `crsae-sort params` for the list"),
    (dict(device="tpu"), "must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
])
def test_bad_params_raise_the_cli_message(short_rec, tmp_path, params, message):
    from spikeinterface.sorters import run_sorter

    with pytest.raises(InputError) as err:
        run_sorter("crsae", short_rec, folder=tmp_path / "out", **params)
    assert message in str(err.value)


@pytest.mark.parametrize("remove_existing_folder", [False, True])
def test_in_memory_recording_is_refused_in_our_words_before_any_folder(tmp_path, remove_existing_folder):
    from spikeinterface.core import NumpyRecording
    from spikeinterface.sorters import run_sorter

    from crsae_sort.io.reading import _with_probe, load_probe

    traces = np.random.default_rng(0).standard_normal((60000, 4)).astype("float32")
    in_memory = _with_probe(NumpyRecording([traces], 30000.0), load_probe("tetrode", 4))
    folder = tmp_path / "out"
    if remove_existing_folder:  # a folder of an earlier run stays as it was
        folder.mkdir()
        (folder / "earlier.txt").write_text("kept")
    with pytest.raises(InputError) as err:
        run_sorter("crsae", in_memory, folder=folder, remove_existing_folder=remove_existing_folder, **FAST)
    assert str(err.value) == ("run_sorter('crsae', ...) reads the recording back from a file, and this recording "
                              "lives only in memory: save it first, recording = recording.save(folder='my_recording'),"
                              " then run_sorter('crsae', recording, folder=...); nothing was written")
    assert sorted(p.name for p in tmp_path.rglob("*")) == (["earlier.txt", "out"] if remove_existing_folder else [])


def _check_contract(rec, folder, params):
    from spikeinterface.sorters import get_default_sorter_params, read_sorter_folder, run_sorter

    sorter_params = dict(get_default_sorter_params("crsae"), **params)
    sorting = run_sorter("crsae", rec, folder=folder, remove_existing_folder=True, delete_output_folder=True,
                         raise_error=True, verbose=False, **sorter_params)
    assert sorting.get_num_units() > 0
    assert sorting.get_sampling_frequency() == rec.get_sampling_frequency()
    info = sorting.sorting_info
    assert set(info) >= {"recording", "params", "log"}
    assert info["params"]["sorter_name"] == "crsae" and info["log"]["error"] is False
    assert info["params"]["sorter_params"]["n_iterations"] == sorter_params["n_iterations"]
    assert not (folder / "sorter_output").exists()
    for name in ("spikeinterface_recording.json", "spikeinterface_params.json", "spikeinterface_log.json"):
        assert (folder / name).is_file(), name
    log = json.loads((folder / "spikeinterface_log.json").read_text())
    assert log["sorter_version"] == crsae_sort.__version__ and log["run_time"] > 0
    assert any("stage train" in line for line in log["runtime_trace"])  # our log, carried into theirs
    # spikes are real: every spike train lies within the recording
    n = rec.get_num_samples()
    assert all(0 <= t.min() and t.max() < n for t in (sorting.get_unit_spike_train(u) for u in sorting.unit_ids))
    return read_sorter_folder


def test_sorter_contract_fast(short_rec, tmp_path, capfd):
    """The contract on a 6 s recording with fast parameters (the default suite); verbose=False
    prints nothing and draws no progress bars."""
    _check_contract(short_rec, tmp_path / "out", FAST)
    out, err = capfd.readouterr()
    assert out == "" and "it/s" not in err and "%|" not in err


@pytest.mark.slow
def test_sorter_contract_as_in_the_issue(tmp_path):
    """The contract exactly as issue 6 states it: 60 s, 4 channels, seed 0, default parameters."""
    from spikeinterface.core import generate_ground_truth_recording

    rec, _ = generate_ground_truth_recording(num_channels=4, durations=[60], seed=0)
    rec = rec.save(folder=tmp_path / "rec", n_jobs=1, progress_bar=False)
    _check_contract(rec, tmp_path / "out", {})


def test_read_sorter_folder_and_by_property(short_rec, tmp_path):
    from spikeinterface.sorters import read_sorter_folder, run_sorter_by_property

    rec = short_rec.clone()
    rec.set_property("group", np.array([0, 0, 1, 1]))
    sorting = run_sorter_by_property("crsae", rec, grouping_property="group", folder=tmp_path / "groups",
                                     **FAST)
    groups = sorting.get_property("group")
    assert set(groups) <= {0, 1} and len(groups) == sorting.get_num_units() > 0
    again = read_sorter_folder(tmp_path / "groups" / "0")
    assert again.sorting_info["params"]["sorter_name"] == "crsae"
    assert (tmp_path / "groups" / "0" / "sorter_output" / "crsae" / "summary.json").is_file()


def _job_list(rec, folder, n, name):
    return [dict(sorter_name=name, recording=rec, folder=folder / f"job{i}", **FAST) for i in range(n)]


@pytest.mark.parametrize("engine", ["loop", "processpoolexecutor", "joblib"])
def test_run_sorter_jobs_engines(short_rec, tmp_path, engine):
    from spikeinterface.sorters import read_sorter_folder, run_sorter_jobs

    import multiprocessing

    kwargs = dict(processpoolexecutor=dict(max_workers=1, mp_context=multiprocessing.get_context("spawn")),
                  joblib=dict(n_jobs=1))
    # SORTER_NAME registers crsae in workers that never imported it (spawn, loky)
    run_sorter_jobs(_job_list(short_rec, tmp_path, 1, crsae_sort.SORTER_NAME), engine=engine,
                    engine_kwargs=kwargs.get(engine))
    assert read_sorter_folder(tmp_path / "job0").get_num_units() > 0


@pytest.mark.slow  # the default suite covers engine="dask" through tests/test_batch.py (a local cluster)
def test_run_sorter_jobs_dask(short_rec, tmp_path):
    distributed = pytest.importorskip("distributed")
    from spikeinterface.sorters import read_sorter_folder, run_sorter_jobs

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                  env=dict(_env())) as cluster, distributed.Client(cluster) as client:
        run_sorter_jobs(_job_list(short_rec, tmp_path, 1, crsae_sort.SORTER_NAME), engine="dask",
                        engine_kwargs=dict(client=client))
    assert read_sorter_folder(tmp_path / "job0").get_num_units() > 0


LOKY_JOB = """
    import sys
    import spikeinterface as si
    from spikeinterface.sorters import run_sorter_jobs
    rec = si.load({rec!r})
    try:
        run_sorter_jobs([dict(sorter_name="crsae", recording=rec, folder={folder!r}, **{params!r})],
                        engine="joblib", engine_kwargs=dict(n_jobs=1))
    except KeyError as exc:
        print("KeyError", exc)
    print("parent imported crsae_sort:", "crsae_sort" in sys.modules)
"""


def test_literal_name_in_fresh_loky_worker_needs_the_hook(short_rec_folder, tmp_path):
    """A process tree that never imports crsae_sort: a literal "crsae" fails without the .pth hook,
    and works once ``crsae-sort install-si-hook --user`` has written it (a scratch user site)."""
    import site

    if not site.ENABLE_USER_SITE:
        pytest.skip("user site-packages are disabled (virtual environment): the --user hook cannot apply")
    code = LOKY_JOB.format(rec=str(short_rec_folder), folder=str(tmp_path / "o"), params=FAST)
    env = _env(PYTHONUSERBASE=str(tmp_path / "userbase"))
    before = _python(code, env)
    assert before.returncode == 0, before.stderr
    assert "KeyError 'crsae'" in before.stdout and "crsae_sort: False" in before.stdout

    hook = subprocess.run([sys.executable, "-m", "crsae_sort", "install-si-hook", "--user"], capture_output=True,
                          text=True, env=env, cwd=ROOT)
    assert hook.returncode == 0, hook.stderr
    pth = next((tmp_path / "userbase").rglob("crsae_sort_spikeinterface_hook.pth"))
    assert str(pth) in hook.stdout
    after = _python(code, env)
    assert after.returncode == 0, after.stderr
    assert "KeyError" not in after.stdout
    assert (tmp_path / "o" / "spikeinterface_log.json").is_file()
    assert json.loads((tmp_path / "o" / "spikeinterface_log.json").read_text())["error"] is False

    removed = subprocess.run([sys.executable, "-m", "crsae_sort", "install-si-hook", "--user", "--remove"],
                             capture_output=True, text=True, env=env, cwd=ROOT)
    assert removed.returncode == 0 and not pth.exists()
