"""CPU threads: how many torch may use, and how its idle threads wait.

torch runs its CPU kernels on an OpenMP team (GNU OpenMP in the pip wheels) whose idle members
spin (300,000 spins at every barrier) before they sleep. Training is thousands of small parallel
regions; when another process (a second sort, ``batch -j 2``, a test suite) holds one of the
cores, the team's last thread waits for a time slice while the others burn the cores it needs.
Measured on 2 cores beside other busy processes (load average 4): the demo's training took 99 s
with spinning and 21 s with ``OMP_WAIT_POLICY=PASSIVE``; scripts/benchmark_contention.py has the
side-by-side numbers.

So idle threads sleep, and the team is sized from the CPUs this process may use
(``os.sched_getaffinity``), capped by what a job engine granted it (``OMP_NUM_THREADS``: dask,
joblib and our SLURM script set it for their workers) and by the ``num_threads`` parameter,
never larger than the usable CPUs, and logged. OpenMP reads the wait policy once, when torch is
first imported, so :func:`prefer_passive_waiting` is called by the entry points (the CLI, the
SpikeInterface plugin, the batch runner for its workers) before they import torch.
"""
from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

WAIT_POLICY = "OMP_WAIT_POLICY"


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), or the machine's count where there is none."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def worker_processes(limit: int | None = None) -> int:
    """Worker processes this process may start: ``limit`` (default: the usable CPUs), or 1 in a daemonic
    process (a dask worker, a ``multiprocessing.Pool`` worker), which may not start others."""
    import multiprocessing

    if multiprocessing.current_process().daemon:
        return 1
    return max(1, usable_cpus() if limit is None else limit)


def granted_threads() -> int | None:
    """Threads a job engine granted through ``OMP_NUM_THREADS`` (its first level), if set and valid."""
    text = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def choose_threads(requested: int = 0) -> tuple[int, str]:
    """The torch thread count for ``num_threads=requested`` (0: automatic) and why, as a phrase."""
    usable = usable_cpus()
    granted = granted_threads()
    if requested > usable:
        return usable, f"num_threads={requested} lowered to the {usable} CPU(s) this process may use"
    if requested:
        return requested, f"num_threads={requested}; this process may use {usable} CPU(s)"
    if granted is not None and granted < usable:
        return granted, f"OMP_NUM_THREADS={granted} (set by the job engine or the user); {usable} CPU(s) usable"
    return usable, f"every CPU this process may use ({usable})"


def configure_threads(requested: int = 0) -> int:
    """Set torch's thread count for ``num_threads=requested`` and log it with the wait policy."""
    import torch

    n, why = choose_threads(requested)
    if requested > n:
        logger.warning("num_threads=%d but this process may use only %d CPU(s); using %d", requested, n, n)
    torch.set_num_threads(n)
    logger.info("cpu threads: %d (%s); %s", n, why, describe_waiting())
    return n


def prefer_passive_waiting() -> None:
    """Make idle OpenMP threads sleep instead of spinning, unless the user chose otherwise.

    Effective only before the OpenMP runtime loads (``import torch``); it is also inherited by
    the worker processes started afterwards.
    """
    os.environ.setdefault(WAIT_POLICY, "PASSIVE")


def describe_waiting() -> str:
    policy = os.environ.get(WAIT_POLICY)
    if policy is None:
        return (f"{WAIT_POLICY} unset (idle threads spin; set {WAIT_POLICY}=PASSIVE before importing torch when "
                "the CPU is shared)")
    return f"{WAIT_POLICY}={policy}"
