"""Per-run log file, versions, and stage timing."""
from __future__ import annotations

import contextlib
import logging
import os
import platform
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path

logger = logging.getLogger("crsae_sort")

PROGRESS = {"progress": True}  # extra= of the INFO lines shown without -v when no progress bar is drawn
PACKAGES = ("crsae-sort", "torch", "spikeinterface", "neo", "probeinterface", "numpy", "scipy", "scikit-learn")


def package_version() -> str:
    """crsae-sort's own version (``0.0.0+unknown`` when run from a source tree that is not installed)."""
    try:
        return metadata.version("crsae-sort")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


def versions() -> dict[str, str]:
    """Versions of Python and of every package the sort depends on."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


@contextlib.contextmanager
def quiet_spikeinterface():
    """SpikeInterface's own progress bars (``estimate_templates (no parallelization)``, drawn by calls that
    take its global job keywords, such as the Phy export) off while a sort runs: the user sees crsae-sort's
    progress and log lines only. The global job keywords are put back afterwards."""
    import spikeinterface.core.globals as si_globals

    saved = (dict(si_globals.global_job_kwargs), si_globals.global_job_kwargs_set)
    si_globals.global_job_kwargs = dict(saved[0], progress_bar=False)
    try:
        yield
    finally:
        si_globals.global_job_kwargs, si_globals.global_job_kwargs_set = saved


@contextlib.contextmanager
def log_to_file(path: Path, append: bool = False):
    """Attach a DEBUG file handler to the ``crsae_sort`` logger for the duration of a run."""
    handler = logging.FileHandler(path, mode="a" if append else "w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.DEBUG)
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)  # console handlers keep their own, higher, levels
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(previous)


def write_failure_log(path: Path, what: str, exc: BaseException, *, since: float) -> Path | None:
    """Write ``exc``'s traceback, the command and the versions to ``path``; returns where it went.

    A sort that fails keeps its own log at that path: when it was written after ``since`` (the
    command's start) it is left as it is. Without the folder, the log goes to the temporary
    folder; None when nothing could be written.
    """
    try:
        if path.stat().st_mtime >= since:
            return path
    except OSError:
        pass
    if not path.parent.is_dir():
        path = Path(tempfile.gettempdir()) / path.name
    text = [f"crsae-sort failed while {what}", f"command: {' '.join(sys.argv)}", f"versions: {versions()}", "",
            "".join(traceback.format_exception(exc))]
    try:
        path.write_text("\n".join(text), encoding="utf-8")
    except OSError:
        return None
    return path


class StageTimer:
    """Wall seconds per pipeline stage, logged as each stage ends with the CPUs it kept busy on average:
    CPU seconds of this process and of the worker processes it started and waited for, over wall seconds."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.cpus: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str):
        t0, c0 = time.perf_counter(), _cpu_seconds()
        logger.info("stage %s: start", name, extra=PROGRESS)
        yield
        self.seconds[name] = time.perf_counter() - t0
        self.cpus[name] = (_cpu_seconds() - c0) / max(self.seconds[name], 1e-9)
        logger.info("stage %s: %.2f s (%.1f CPUs busy on average)", name, self.seconds[name], self.cpus[name])


def _cpu_seconds() -> float:
    """User and system CPU seconds of this process and of its finished child processes."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else the machine architecture."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()
