"""crsae-sort on the two real clips with ground truth in ../shared/data (see its README.md).

* Harris/Henze hc-1 d533101, 5-s tetrode at 10 kHz, 11 intracellular spike times of one cell.
  The intracellular times are not aligned to the extracellular spike, so each unit's lag to the
  truth is estimated first, then spikes are matched one to one within a slack.
* Quiroga et al. 2004 "Easy1, noise 0.15", a 2.08-s excerpt at 24 kHz, 121 spikes of 3 units:
  detection misses, false positives and classification errors, wave_clus style, beside the
  errors published for wave_clus on the full 60-s file (quoted, not measured here).

Each clip is sorted in-process with default parameters; wall time is the median of --repeats
runs. Writes the tables into docs/benchmarks.md between the REAL markers and a figure into
docs/img/benchmark_real.png. The matching rules are in `crsae_sort.bench.real_scoring`, the tables and
the figure in `crsae_sort.bench.real_report`.

    OMP_NUM_THREADS=1 python scripts/benchmark_real.py                # both clips, doc + figure
    python scripts/benchmark_real.py --only quiroga --no-doc --repeats 1   # fast path (tests)
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from .docs import DOC, DOCS, ROOT, emit, write_block
from .real_report import hardware_line, plot, render_harris, render_quiroga
from .real_scoring import (HARRIS_SLACK_CHECK_MS, HARRIS_SLACK_MS, LAG_WINDOW_MS, QUIROGA_SLACK_MS, best_merge,
                           detection_score, score_unit)

FIGURE = DOCS / "img" / "benchmark_real.png"
HARRIS_MAT = Path("hc1_d533101_harris_cbp_5sec") / "harris_d533101_5sec.mat"
QUIROGA_MAT = Path("quiroga2004_C_Easy1_noise015_cbp_trunc") / "C_Easy1_noise015_5sec.mat"
OVERRIDES: dict = {}      # sort parameters changed from the defaults (none)


def timed_sorts(recording, repeats: int):
    """Sort ``recording`` ``repeats`` times in-process; the first result, wall times, identical spikes?"""
    from ..pipeline import sort

    results, walls = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        results.append(sort(recording, None, OVERRIDES, progress=False))
        walls.append(time.perf_counter() - t0)
    same = all(np.array_equal(r.spikes, results[0].spikes) for r in results[1:])
    return results[0], walls, same


def run_harris(data: Path, repeats: int) -> dict:
    """Sort the Harris clip and score every unit, the best one at other slacks, and the best merge."""
    from scipy.io import loadmat

    from ..io.reading import open_recording

    path = data / HARRIS_MAT
    rec = open_recording(path, sampling_frequency_hz=10000, gain_to_uv=1.0, offset_to_uv=-2048, probe="tetrode")
    fs = rec.get_sampling_frequency()
    gt = loadmat(path)["true_spike_times"].ravel().astype(np.int64) - 1  # MATLAB 1-based -> 0-based
    result, walls, same = timed_sorts(rec, repeats)
    st = result.spikes
    trains = {int(u): st["sample_index"][st["unit_id"] == u] for u in np.unique(st["unit_id"])}
    window, slack = LAG_WINDOW_MS * fs / 1000, HARRIS_SLACK_MS * fs / 1000
    units = [score_unit(gt, t, lag_window=window, slack=slack, unit=str(u)) for u, t in trains.items()]
    units.sort(key=lambda m: (-m.hits, m.false_positives))
    if not units:
        raise SystemExit("crsae-sort found no units on the Harris clip: nothing to score")
    best = units[0]
    check = {ms: score_unit(gt, trains[int(best.unit)], lag_window=window, slack=ms * fs / 1000)
             for ms in HARRIS_SLACK_CHECK_MS}
    merge = best_merge(gt, trains, lag_window=window, slack=slack)
    return dict(fs=fs, gt=gt, units=units, best=best, check=check, merge=merge, walls=walls, same=same,
                trains=trains, duration_s=rec.get_num_samples() / fs, n_channels=rec.get_num_channels())


def run_quiroga(data: Path, repeats: int) -> dict:
    """Sort the Quiroga clip and score it wave_clus style (:func:`.real_scoring.detection_score`)."""
    from scipy.io import loadmat

    from ..io.reading import open_recording

    path = data / QUIROGA_MAT
    rec = open_recording(path, sampling_frequency_hz=24000, probe="single")  # the file's dt=1e-4 is wrong
    fs = rec.get_sampling_frequency()
    mat = loadmat(path)
    gt = mat["true_spike_times"].ravel().astype(np.int64) - 1  # 1-based onsets -> 0-based
    gt_units = mat["true_spike_class"].ravel().astype(int)
    result, walls, same = timed_sorts(rec, repeats)
    st = result.spikes
    score = detection_score(gt, gt_units, st["sample_index"], st["unit_id"],
                            lag_window=LAG_WINDOW_MS * fs / 1000, slack=QUIROGA_SLACK_MS * fs / 1000)
    return dict(fs=fs, score=score, walls=walls, same=same, duration_s=rec.get_num_samples() / fs,
                n_channels=rec.get_num_channels())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data",
                    help="folder holding the clips (default: ../shared/data from the repository root)")
    ap.add_argument("--repeats", type=int, default=3, help="sorts per clip; wall time is their median")
    ap.add_argument("--only", choices=("harris", "quiroga"), help="one clip only (print; implies --no-doc)")
    ap.add_argument("--no-doc", action="store_true", help="print only; leave docs/ alone")
    args = ap.parse_args(argv)
    for rel in ([] if args.only == "quiroga" else [HARRIS_MAT]) + ([] if args.only == "harris" else [QUIROGA_MAT]):
        if not (args.data / rel).exists():
            raise SystemExit(f"{args.data / rel} not found: pass --data FOLDER (the shared/data folder)")
    header = hardware_line(OVERRIDES)
    h = run_harris(args.data, args.repeats) if args.only != "quiroga" else None
    q = run_quiroga(args.data, args.repeats) if args.only != "harris" else None
    command = "OMP_NUM_THREADS=1 python scripts/benchmark_real.py" + (
        f" --repeats {args.repeats}" if args.repeats != 3 else "")
    lines = [f"`{command}`", "", header, ""]
    lines += (render_harris(h) + [""] if h else []) + (render_quiroga(q) if q else [])
    if h and q:
        lines += ["", f"![Harris hits, misses and false positives; Quiroga confusion](img/{FIGURE.name})"]
    text = "\n".join(lines)
    emit(text)
    if not args.no_doc and args.only is None:
        plot(FIGURE, h, q)
        write_block(DOC, "REAL", text)


if __name__ == "__main__":
    main()
