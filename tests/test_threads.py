"""Thread choice (crsae_sort.threads): from the CPUs this process may use and what a job engine granted,
never above the usable CPUs, logged; and the CLI makes idle OpenMP threads sleep before torch loads."""
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from crsae_sort import threads

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def two_cpus(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 5}, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


@pytest.mark.parametrize("requested, omp, expected, why", [
    (0, None, 2, "every CPU this process may use (2)"),
    (0, "1", 1, "OMP_NUM_THREADS=1"),
    (0, "8", 2, "every CPU"),              # a grant above the usable CPUs is not taken
    (0, "junk", 2, "every CPU"),
    (1, "2", 1, "num_threads=1"),           # the parameter wins over the engine's grant
    (16, None, 2, "num_threads=16 lowered to the 2 CPU(s)"),
])
def test_threads_follow_affinity_grant_and_parameter(two_cpus, monkeypatch, requested, omp, expected, why):
    if omp is not None:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    n, reason = threads.choose_threads(requested)
    assert n == expected and why in reason


def test_configure_sets_torch_and_logs(two_cpus, monkeypatch, caplog):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    previous = torch.get_num_threads()
    try:
        with caplog.at_level(logging.INFO, logger="crsae_sort"):
            assert threads.configure_threads(16) == 2
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
    text = caplog.text
    assert "num_threads=16 but this process may use only 2 CPU(s)" in text
    assert "cpu threads: 2 (num_threads=16 lowered" in text and "OMP_WAIT_POLICY=PASSIVE" in text


def test_cli_makes_idle_threads_sleep_before_torch_loads():
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-m", "crsae_sort", "info"], env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    usable = len(os.sched_getaffinity(0))
    assert f"torch threads: {usable} for a sort (every CPU this process may use ({usable}))" in out
    assert "OMP_WAIT_POLICY=PASSIVE" in out


def test_stage_timer_measures_the_cpus_a_stage_keeps_busy():
    """A stage that computes keeps about one CPU busy; one that waits keeps none; worker processes count once
    they have finished (their CPU time joins this process's children's)."""
    import subprocess
    import sys
    import time

    from crsae_sort.runlog import StageTimer

    timer = StageTimer()
    with timer.stage("compute"):
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.3:
            sum(range(1000))
    with timer.stage("wait"):
        time.sleep(0.3)
    with timer.stage("worker"):
        subprocess.run([sys.executable, "-c", "import time\nt=time.perf_counter()\nwhile time.perf_counter()-t<0.5: pass"],
                       check=True)
    assert 0.6 < timer.cpus["compute"] < 1.2
    assert timer.cpus["wait"] < 0.2
    assert timer.cpus["worker"] > 0.5
