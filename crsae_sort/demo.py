"""The built-in demo: sort a seeded SpikeInterface ground-truth tetrode and score it."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError, option
from .runlog import PROGRESS

logger = logging.getLogger(__name__)

DEMO_SEED = 2205
DEMO_UNITS = 6
DEMO_MARK = "demo.json"  # written into the demo's output folder: a later demo may replace that folder


@dataclass
class DemoResult:
    table: list[dict]          # per ground-truth unit: unit_id, snr, accuracy, recall, precision
    mean_accuracy_snr5: float  # mean accuracy over ground-truth units with SNR >= 5
    wall_s: float
    duration_s: float
    output_folder: Path | None


def is_demo_output(folder: Path) -> bool:
    """Whether ``folder`` is the finished output of an earlier demo (its ``demo.json`` and ``summary.json``)."""
    return (folder / DEMO_MARK).is_file() and (folder / "summary.json").is_file()


def ground_truth_tetrode(duration_s: float = 30.0, seed: int = DEMO_SEED, num_units: int = DEMO_UNITS):
    """A SpikeInterface ground-truth tetrode recording (30 kHz, default noise) and its sorting."""
    from spikeinterface.core import generate_ground_truth_recording

    return generate_ground_truth_recording(durations=[duration_s], sampling_frequency=30000.0, num_channels=4,
                                           num_units=num_units, seed=seed)


def unit_snrs(recording, sorting) -> dict:
    """SNR (template peak over noise, SpikeInterface's definition) of each unit of ``sorting``."""
    from spikeinterface.core import create_sorting_analyzer
    from spikeinterface.metrics import compute_snrs

    analyzer = create_sorting_analyzer(sorting, recording, sparse=False, format="memory",
                                       job_kwargs=dict(n_jobs=1, progress_bar=False))
    analyzer.compute(["random_spikes", "templates", "noise_levels"], verbose=False, n_jobs=1, progress_bar=False)
    return {k: float(v) for k, v in compute_snrs(analyzer).items()}


def score(gt_recording, gt_sorting, sorting) -> tuple[list[dict], float]:
    """Per ground-truth unit accuracy/recall/precision and the mean accuracy over SNR >= 5."""
    from spikeinterface.comparison import compare_sorter_to_ground_truth

    perf = compare_sorter_to_ground_truth(gt_sorting, sorting, exhaustive_gt=True).get_performance()
    snrs = unit_snrs(gt_recording, gt_sorting)
    table = [dict(unit_id=str(u), snr=snrs[u], accuracy=float(perf.loc[u, "accuracy"]),
                  recall=float(perf.loc[u, "recall"]), precision=float(perf.loc[u, "precision"]))
             for u in gt_sorting.unit_ids]
    good = [row["accuracy"] for row in table if row["snr"] >= 5]
    return table, float(np.mean(good)) if good else float("nan")


def run_demo(output_folder: str | Path | None = None, *, duration_s: float = 30.0, seed: int = DEMO_SEED,
             params: dict | None = None, overwrite: bool = False, progress: bool | None = None) -> DemoResult:
    """Generate the ground-truth tetrode, sort it, and compare with the truth.

    An earlier demo's output folder (it holds ``demo.json``) is replaced, so the demo runs again as it
    is; any other existing folder needs ``overwrite``, checked before the recording is generated.
    """
    from .io.outfolder import check_target
    from .io.results import write_json
    from .pipeline import sort

    target = Path(output_folder).resolve() if output_folder is not None else None
    if target is not None:
        overwrite = overwrite or is_demo_output(target)
        if target.exists() and not overwrite:
            raise InputError(f"output folder {target} exists and is not an earlier demo's output; pass "
                             f"{option('overwrite=True', '--overwrite')} to replace it, or choose another folder")
        check_target(target, overwrite=overwrite, resume=False)
    logger.info("demo: generating a %g-s ground-truth tetrode (seed %d)", duration_s, seed, extra=PROGRESS)
    recording, gt_sorting = ground_truth_tetrode(duration_s, seed)
    logger.info("demo: sorting it into %s", output_folder, extra=PROGRESS)
    t0 = time.perf_counter()
    result = sort(recording, output_folder, params, overwrite=overwrite, progress=progress)
    wall = time.perf_counter() - t0
    if target is not None:
        write_json(target / DEMO_MARK, dict(seed=seed, duration_s=duration_s, sort_seconds=wall))
    logger.info("demo: scoring %d units against the ground truth", len(result.sorting.unit_ids), extra=PROGRESS)
    table, mean_acc = score(recording, gt_sorting, result.sorting)
    logger.info("demo: mean accuracy %.3f over units with SNR >= 5, %.1f s", mean_acc, wall, extra=PROGRESS)
    return DemoResult(table, mean_acc, wall, duration_s, result.output_folder)
