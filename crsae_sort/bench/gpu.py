"""crsae and Kilosort4 side by side on one GPU: ``scripts/benchmark_gpu.py``.

Cases are seeded SpikeInterface ground truth, written once to a binary folder so that every
sorter reads the same file:

* ``tetrode-5min``: the demo's tetrode generator, 300 s, 6 units (crsae on the GPU and on this
  machine's CPU, to see which is faster);
* ``np1-384``: the Neuropixels 1.0 bank-0 geometry shipped in ``crsae_sort/probes/`` (384 channels), 120
  units, ``--np-duration-s`` seconds (120 by default).

Each (case, sorter, device) runs in its own process (:func:`worker`), so start-up, failures and
GPU memory stay separate; its wall time covers the sort only (reading the saved recording is
lazy, inside it). Accuracy is SpikeInterface's ``tp / (tp + fn + fp)`` averaged over ground-truth
units with SNR >= 5. The table goes to stdout, ``OUT/gpu.json`` and, unless ``--no-doc``, the
``GPU`` block of ``docs/benchmarks.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .docs import emit


GPU_SECTION = """## On one GPU: crsae and Kilosort4 side by side

`python scripts/benchmark_gpu.py` (`crsae_sort/bench/gpu.py`) on a machine with one NVIDIA GPU: each
sorter in its own process on the same saved ground truth, accuracy over units with SNR >= 5; the
device column names the card (or the CPU, for crsae's CPU row on the same machine)."""

CASES = {
    "tetrode-5min": dict(runs=(("crsae", "cuda"), ("crsae", "cpu"), ("kilosort4", "cuda"))),
    "np1-384": dict(runs=(("crsae", "cuda"), ("kilosort4", "cuda"))),
}


def make_case(name: str, folder: Path, np_duration_s: float, tetrode_duration_s: float = 300.0) -> Path:
    """Generate the ground truth of case ``name`` and save recording and sorting under ``folder``."""
    from spikeinterface.core import generate_ground_truth_recording

    from ..demo import DEMO_SEED, ground_truth_tetrode
    from ..io.reading import load_probe

    target = folder / name
    if (target / "gt_sorting").exists():
        return target
    if name == "tetrode-5min":
        recording, sorting = ground_truth_tetrode(tetrode_duration_s, DEMO_SEED)
    else:
        probe = load_probe("neuropixels1", 384).probes[0]
        recording, sorting = generate_ground_truth_recording(
            durations=[np_duration_s], sampling_frequency=30000.0, num_channels=384, num_units=120,
            probe=probe, seed=DEMO_SEED, generate_sorting_kwargs=dict(firing_rates=(2.0, 10.0),
                                                                      refractory_period_ms=4.0))
    job = dict(n_jobs=os.cpu_count(), chunk_duration="1s", progress_bar=False)
    recording.save(folder=target / "recording", **job)
    sorting.save(folder=target / "gt_sorting")
    return target


def worker(case_folder: Path, sorter: str, device: str, out: Path) -> dict:
    """Sort ``case_folder/recording`` with ``sorter`` on ``device``; write its sorting and return timings."""
    import spikeinterface as si

    recording = si.load(case_folder / "recording")
    t0 = time.perf_counter()
    stages = {}
    if sorter == "crsae":
        from ..pipeline import sort

        result = sort(recording, out, {"device": device}, progress=False)
        stages = {k: round(v, 2) for k, v in result.summary.seconds.items()}
        sorting = result.sorting
    else:
        from spikeinterface.sorters import run_sorter

        sorting = run_sorter(sorter, recording, folder=out, torch_device=device, verbose=False,
                             remove_existing_folder=True)
    wall = time.perf_counter() - t0
    sorting.save(folder=out.parent / f"{out.name}_sorting", overwrite=True)
    return dict(wall_s=wall, stages=stages, n_units=len(sorting.unit_ids))


def _device_name(device: str) -> str:
    import torch

    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    from ..runlog import cpu_name

    return f"{cpu_name()} ({os.cpu_count()} cores)"


def run(out: Path, cases: list[str], np_duration_s: float, timeout_s: float,
        tetrode_duration_s: float = 300.0, sorters: list[str] | None = None) -> list[dict]:
    import spikeinterface as si

    from ..demo import score

    rows = []
    for name in cases:
        t0 = time.perf_counter()
        case = make_case(name, out, np_duration_s, tetrode_duration_s)
        recording, gt = si.load(case / "recording"), si.load(case / "gt_sorting")
        emit(f"{name}: ground truth ready in {time.perf_counter() - t0:.0f} s", flush=True)
        for sorter, device in CASES[name]["runs"]:
            if sorters and sorter not in sorters:
                continue
            folder = out / f"{name}_{sorter}_{device}"
            cmd = [sys.executable, "-m", "crsae_sort.bench.gpu", "--worker", str(case), sorter, device, str(folder)]
            row = dict(case=name, sorter=sorter, device=_device_name(device),
                       duration_s=recording.get_total_duration(), channels=recording.get_num_channels())
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
                if proc.returncode != 0:
                    row["error"] = (proc.stderr.strip().splitlines() or ["failed"])[-1][:200]
                else:
                    row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
                    _, row["accuracy"] = score(recording, gt, si.load(folder.parent / f"{folder.name}_sorting"))
                    row["x_real_time"] = row["duration_s"] / row["wall_s"]
            except subprocess.TimeoutExpired:
                row["error"] = f"did not finish in {timeout_s:.0f} s"
            emit(_line(row), flush=True)
            rows.append(row)
    return rows


def _line(r: dict) -> str:
    if "error" in r:
        return f"| {r['case']} | {r['sorter']} | {r['device']} | — | — | — | {r['error']} |"
    stages = ", ".join(f"{k} {v:.1f}" for k, v in r.get("stages", {}).items() if k != "total")
    return (f"| {r['case']} | {r['sorter']} | {r['device']} | {r['accuracy']:.3f} | {r['wall_s']:.1f} | "
            f"{r['x_real_time']:.1f}x | {r['n_units']} units; {stages} |")


def table(rows: list[dict]) -> str:
    head = ("| case | sorter | device | accuracy (SNR >= 5) | wall s | x real time | notes (crsae stage s) |\n"
            "|---|---|---|---|---|---|---|")
    return "\n".join([head] + [_line(r) for r in rows])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", nargs=4, metavar=("CASE", "SORTER", "DEVICE", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    ap.add_argument("--np-duration-s", type=float, default=120.0, help="length of the 384-channel case")
    ap.add_argument("--tetrode-duration-s", type=float, default=300.0, help="length of the tetrode case")
    ap.add_argument("--sorters", default="", help="comma-separated subset of crsae, kilosort4 (default: all)")
    ap.add_argument("--timeout-s", type=float, default=900.0, help="per sorter run")
    ap.add_argument("--out", type=Path, default=Path("benchmark_gpu"), help="work folder (recordings, sortings)")
    ap.add_argument("--no-doc", action="store_true", help="leave docs/benchmarks.md alone")
    args = ap.parse_args(argv)
    if args.worker:
        import warnings

        warnings.filterwarnings("ignore")
        case, sorter, device, out = args.worker
        emit(json.dumps(worker(Path(case), sorter, device, Path(out))))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    rows = run(args.out, [c for c in args.cases.split(",") if c], args.np_duration_s, args.timeout_s,
               args.tetrode_duration_s, [s for s in args.sorters.split(",") if s])
    (args.out / "gpu.json").write_text(json.dumps(rows, indent=2, default=float))
    text = table(rows)
    emit(text)
    if not args.no_doc:
        from .docs import DOC, write_block

        write_block(DOC, "GPU", text, section=GPU_SECTION)


if __name__ == "__main__":
    main()
