"""Lab batch: sort every recording of a manifest, through SpikeInterface's job engines.

A manifest (CSV or YAML) lists recordings: ``path`` (required), ``name`` (output subfolder;
default the file or folder name), ``probe``, ``stream``, and per-recording parameter overrides
(any ``crsae-sort params`` name). Each recording is sorted into ``OUT/<name>/``, a SpikeInterface
sorter folder whose ``sorter_output/crsae/`` holds our usual outputs. One failure does not stop
the others; a recording whose ``summary.json`` exists is skipped (resume); the end result is a
table (:func:`format_table`, ``OUT/batch_summary.csv``).
"""
from __future__ import annotations

import csv
import json
import logging
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .batch_manifest import BatchJob, read_manifest
from .errors import InputError
from .params import SortParams
from .runlog import log_to_file
from .threads import prefer_passive_waiting, usable_cpus

logger = logging.getLogger(__name__)

ENGINES = ("loop", "processpoolexecutor", "joblib", "dask", "slurm")
SUMMARY_CSV = "batch_summary.csv"
BATCH_LOG = "crsae_batch.log"
SLURM_SCRIPT = "crsae_batch.sbatch"


@dataclass
class BatchRow:
    """One line of the summary table."""
    name: str
    status: str                # sorted | skipped | failed
    units: int | None = None
    spikes: int | None = None
    seconds: float | None = None
    message: str = ""
    folder: str = ""


def output_of(output: Path, job: BatchJob) -> Path:
    """Our output folder (``summary.json``, ``templates.npy``, ...) for ``job`` under ``output``."""
    from .plugin import OUTPUT_SUBFOLDER

    return output / job.name / "sorter_output" / OUTPUT_SUBFOLDER


def run_batch(manifest: str | Path, output: str | Path, *, engine: str = "loop", n_jobs: int = 1,
              params: dict | None = None, engine_kwargs: dict | None = None, only: int | None = None,
              verbose: bool = False) -> list[BatchRow]:
    """Sort every recording in ``manifest`` into ``output``; returns the summary rows.

    ``params`` are overrides for every row (a row's own overrides win). ``engine`` is one of
    SpikeInterface's ``run_sorter_jobs`` engines; ``n_jobs`` workers for the parallel ones (each
    gets ``usable CPUs // n_jobs`` torch threads unless ``num_threads`` is set, or the dask cluster
    is an external one: ``engine_kwargs={"client": ...}`` or ``{"scheduler": address}``). ``only`` sorts one
    row (its 0-based index; the SLURM array uses it). ``slurm`` is handled by
    :func:`write_slurm_script`, not here.
    """
    if engine not in ENGINES or engine == "slurm":
        raise InputError(f"engine {engine!r} must be one of {', '.join(e for e in ENGINES if e != 'slurm')} "
                         "(slurm: write_slurm_script)")
    if n_jobs < 1:
        raise InputError(f"n_jobs={n_jobs} must be at least 1")
    output = Path(output).resolve()
    jobs = read_manifest(manifest)
    if only is not None:
        if not 0 <= only < len(jobs):
            raise InputError(f"--only {only} is outside the manifest's rows 0..{len(jobs) - 1}")
        jobs = [jobs[only]]
    base = dict(params or {})
    SortParams.from_dict(base)  # a bad global override is everyone's problem: fail now
    external = engine == "dask" and any((engine_kwargs or {}).get(k) for k in ("client", "scheduler"))
    if engine != "loop" and not external:  # workers share the CPUs this process may use
        prefer_passive_waiting()  # inherited by the workers started below (crsae_sort.threads)
        base.setdefault("num_threads", max(1, usable_cpus() // n_jobs))
    output.mkdir(parents=True, exist_ok=True)
    log_name = BATCH_LOG if only is None else f"crsae_batch.{only}.log"
    with log_to_file(output / log_name):
        logger.info("batch %s -> %s: %d recording(s), engine %s, n_jobs %d, overrides %s", manifest, output,
                    len(jobs), engine, n_jobs, base)
        return _run_batch(jobs, output, engine, n_jobs, base, engine_kwargs, write_table=only is None,
                          verbose=verbose)


def _run_batch(jobs, output: Path, engine: str, n_jobs: int, base: dict, engine_kwargs, *, write_table: bool,
               verbose: bool) -> list[BatchRow]:
    rows: dict[str, BatchRow] = {}
    to_run = []
    for job in jobs:
        folder = output_of(output, job)
        if (folder / "summary.json").is_file():
            rows[job.name] = _row_from_folder(job, output, "skipped")
            continue
        try:
            to_run.append(_prepare(job, output, dict(base, **job.params), verbose))
        except Exception as exc:  # this row's problem only
            logger.warning("%s: not sorted: %s", job.name, exc, exc_info=not isinstance(exc, InputError))
            rows[job.name] = BatchRow(job.name, "failed", message=_one_line(exc), folder=str(output / job.name))
    started = time.perf_counter()
    if to_run:
        logger.info("sorting %d recording(s) with engine %s", len(to_run), engine)
        crashed = _run_jobs(to_run, engine, n_jobs, engine_kwargs)
        for job, _ in to_run:
            rows[job.name] = _row_from_folder(job, output, "sorted", crashed.get(job.name, ""))
    ordered = [rows[j.name] for j in jobs]
    if write_table:  # array tasks would overwrite each other's table; re-run the batch to collect it
        _write_summary(output, ordered, time.perf_counter() - started)
    return ordered


def _prepare(job: BatchJob, output: Path, overrides: dict, verbose: bool):
    """Open the recording, check parameters and serialisability; the ``run_sorter`` job dict."""
    from ._register import SORTER_NAME
    from .io.reading import open_recording

    params = SortParams.from_dict(overrides).to_dict()
    recording = open_recording(job.path, probe=job.probe, stream=job.stream)
    if not (recording.check_serializability("json") or recording.check_serializability("pickle")):
        raise InputError(f"{job.path} opens as a recording that cannot be saved to JSON or pickle, so it cannot "
                         "go to a worker; save it first with recording.save(folder=...)")
    # SORTER_NAME registers crsae_sort in workers that never imported it (loky, dask, spawn)
    return job, dict(sorter_name=SORTER_NAME, recording=recording, folder=output / job.name,
                     remove_existing_folder=True, delete_output_folder=False, verbose=verbose,
                     raise_error=False, **params)


def _run_jobs(to_run, engine: str, n_jobs: int, engine_kwargs: dict | None) -> dict[str, str]:
    """Run the jobs; a failure inside a sort is recorded in its folder by SpikeInterface. Returns
    ``{name: message}`` of failures outside the sorts (engine, worker), shown for the recordings
    that left no log."""
    from spikeinterface.sorters import run_sorter_jobs

    job_list = [kwargs for _, kwargs in to_run]
    kwargs = dict(engine_kwargs or {})
    if engine == "loop":  # one at a time, so that nothing stops the rest
        messages = {}
        for job, one in to_run:
            try:
                run_sorter_jobs([one], engine="loop")
            except Exception as exc:
                logger.warning("%s failed outside the sort", job.name, exc_info=True)
                messages[job.name] = _one_line(exc)
        return messages
    created = []  # a dask client/cluster we start here, closed here
    if engine == "joblib":
        kwargs.setdefault("n_jobs", n_jobs)
    elif engine == "processpoolexecutor":
        import multiprocessing

        kwargs.setdefault("max_workers", n_jobs)
        kwargs.setdefault("mp_context", multiprocessing.get_context("spawn"))  # no fork after torch/OpenMP
    elif engine == "dask" and kwargs.get("client") is None:
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise InputError("engine dask needs distributed: pip install 'crsae-sort[batch]'") from exc
        scheduler = kwargs.pop("scheduler", None)
        if scheduler is None:
            created.append(LocalCluster(n_workers=n_jobs, threads_per_worker=1, processes=True,
                                        dashboard_address=None))
        kwargs["client"] = Client(scheduler or created[0])
        created.insert(0, kwargs["client"])
    try:
        run_sorter_jobs(job_list, engine=engine, engine_kwargs=kwargs)
        return {}
    except Exception as exc:
        logger.warning("engine %s raised", engine, exc_info=True)
        return {job.name: _one_line(exc) for job, _ in to_run}
    finally:
        for thing in created:
            thing.close()


def _row_from_folder(job: BatchJob, output: Path, status: str, crashed: str = "") -> BatchRow:
    sorter_folder = output / job.name
    ours = output_of(output, job)
    row = BatchRow(job.name, status, folder=str(sorter_folder))
    if (ours / "summary.json").is_file():
        from .summary import Summary

        summary = Summary.read(ours)
        row.units, row.spikes = len(summary.units), summary.num_spikes
        row.seconds = round(summary.seconds.get("total", float("nan")), 1)
        return row
    row.status = "failed"
    log_file = sorter_folder / "spikeinterface_log.json"
    if log_file.is_file():
        log = json.loads(log_file.read_text())
        trace = [line.strip() for line in log.get("error_trace", []) if line.strip()]
        row.message = trace[-1] if trace else "no summary.json written"
    else:
        row.message = crashed or "the worker wrote no log (it may have been killed: memory?)"
    return row


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}" if not isinstance(exc, InputError) else str(exc)


def _write_summary(output: Path, rows: list[BatchRow], wall_s: float) -> None:
    with (output / SUMMARY_CSV).open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    counts = {s: sum(r.status == s for r in rows) for s in ("sorted", "skipped", "failed")}
    logger.info("batch: %s in %.1f s; summary in %s", counts, wall_s, output / SUMMARY_CSV)


def format_table(rows: list[BatchRow]) -> str:
    """The summary as aligned text: name, status, units, spikes, seconds, message."""
    head = ("name", "status", "units", "spikes", "seconds", "message")
    body = [(r.name, r.status, "" if r.units is None else str(r.units), "" if r.spikes is None else str(r.spikes),
             "" if r.seconds is None else f"{r.seconds:.1f}", r.message) for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line[:-1], widths)) + "  " + line[-1] for line in [head, *body]]
    return "\n".join(line.rstrip() for line in lines)


def write_slurm_script(manifest: str | Path, output: str | Path, *, sets: dict | None = None,
                       sbatch_args: dict | None = None, submit: bool = True) -> tuple[Path, str]:
    """A SLURM array script: task ``i`` runs ``crsae-sort batch MANIFEST -o OUT --only i``.

    Written to ``OUT/crsae_batch.sbatch``; submitted with ``sbatch`` when ``submit`` and ``sbatch``
    is on PATH. Resume works as for the other engines: re-submitting skips finished recordings.
    Returns the script path and a message (the sbatch output, or how to submit).
    """
    jobs = read_manifest(manifest)
    output = Path(output).resolve()
    output.mkdir(parents=True, exist_ok=True)
    (output / "slurm_logs").mkdir(exist_ok=True)
    args = {"job-name": "crsae-sort", "cpus-per-task": 4, "mem": "16G", "time": "04:00:00"}
    args.update(sbatch_args or {})
    lines = ["#!/bin/bash", f"#SBATCH --array=0-{len(jobs) - 1}",
             f"#SBATCH --output={output / 'slurm_logs' / '%A_%a.out'}"]
    lines += [f"#SBATCH --{k}={v}" for k, v in args.items()]
    cmd = [sys.executable, "-m", "crsae_sort", "batch", str(Path(manifest).resolve()), "-o", str(output),
           "--engine", "loop", "--only", "${SLURM_ARRAY_TASK_ID}", "--set", "num_threads=${SLURM_CPUS_PER_TASK:-1}"]
    for k, v in (sets or {}).items():
        cmd += ["--set", f"{k}={v}"]
    quoted = " ".join(c if c.startswith("${") else shlex.quote(c) for c in cmd)
    lines += ["", "# one recording per array task; finished recordings are skipped on re-submission",
              "set -euo pipefail", quoted, ""]
    script = output / SLURM_SCRIPT
    script.write_text("\n".join(lines))
    script.chmod(0o755)
    if not submit:
        return script, f"wrote {script}; submit with: sbatch {script}"
    if shutil.which("sbatch") is None:
        return script, f"wrote {script}; sbatch is not on PATH here: submit it on the cluster with sbatch {script}"
    done = subprocess.run(["sbatch", str(script)], capture_output=True, text=True)
    if done.returncode != 0:
        raise InputError(f"sbatch {script} failed: {done.stderr.strip()}")
    return script, done.stdout.strip()
