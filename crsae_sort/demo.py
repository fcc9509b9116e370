"""The built-in demo: sort a seeded SpikeInterface ground-truth tetrode and score it."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .runlog import PROGRESS

logger = logging.getLogger(__name__)

DEMO_SEED = 2205
DEMO_UNITS = 6


@dataclass
class DemoResult:
    table: list[dict]          # per ground-truth unit: unit_id, snr, accuracy, recall, precision
    mean_accuracy_snr5: float  # mean accuracy over ground-truth units with SNR >= 5
    wall_s: float
    duration_s: float
    output_folder: Path | None


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
    """Generate the ground-truth tetrode, sort it, and compare with the truth."""
    from .pipeline import sort

    logger.info("demo: generating a %g-s ground-truth tetrode (seed %d)", duration_s, seed, extra=PROGRESS)
    recording, gt_sorting = ground_truth_tetrode(duration_s, seed)
    logger.info("demo: sorting it into %s", output_folder, extra=PROGRESS)
    t0 = time.perf_counter()
    result = sort(recording, output_folder, params, overwrite=overwrite, progress=progress)
    wall = time.perf_counter() - t0
    logger.info("demo: scoring %d units against the ground truth", len(result.sorting.unit_ids), extra=PROGRESS)
    table, mean_acc = score(recording, gt_sorting, result.sorting)
    logger.info("demo: mean accuracy %.3f over units with SNR >= 5, %.1f s", mean_acc, wall, extra=PROGRESS)
    return DemoResult(table, mean_acc, wall, duration_s, result.output_folder)
