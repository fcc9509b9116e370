"""Speed and memory of `crsae-sort` on SpikeInterface ground-truth tetrodes (30 kHz).

Each sort runs in its own process so that its peak memory (ru_maxrss) is its own. Reports the
median wall time over repeats, times real time, seconds per stage, peak memory and accuracy,
and how close the encoder is to its arithmetic floor (4 C M K flops per code sample and
iteration). Writes the table into docs/benchmarks.md between the SPEED markers.

    python scripts/benchmark_speed.py                   # quick: 1 and 5 min, 3 repeats each
    python scripts/benchmark_speed.py --full            # adds 20 min
    python scripts/benchmark_speed.py --memory          # 1, 10 and 60 min, once each: memory vs length
    python scripts/benchmark_speed.py --memory --case np1_384 --durations-min 0.5 2 4
                         # the Neuropixels 1.0 case (384 channels, 120 units), generated lazily (never
                         # written to disk, so an hour fits): memory vs length (MEMORY_NP1 table)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from .docs import DOC, emit, hardware, write_block

CHILD = r"""
import json, resource, sys, threading, time, warnings
warnings.filterwarnings("ignore")
peak = dict(anon=0, file=0)
def sample():  # RssAnon is the process's own memory; RssFile counts pages of memory-mapped input files
    while True:
        fields = dict(line.split(":", 1) for line in open("/proc/self/status") if line.startswith("Rss"))
        peak["anon"] = max(peak["anon"], int(fields["RssAnon"].split()[0]) / 1024)
        peak["file"] = max(peak["file"], int(fields["RssFile"].split()[0]) / 1024)
        time.sleep(0.1)
threading.Thread(target=sample, daemon=True).start()
import spikeinterface as si
from crsae_sort import sort
from crsae_sort.bench.docs import emit
from crsae_sort.bench.speed import load_recording
from crsae_sort.demo import score
rec_folder, out, gt_folder = sys.argv[1:4]
rec = load_recording(rec_folder)
t0 = time.perf_counter()
result = sort(rec, out, overwrite=True, progress=False)
wall = time.perf_counter() - t0
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
peak_anon, peak_file = peak["anon"], peak["file"]
table, acc = score(rec, si.load(gt_folder), result.sorting)
m = result.model
emit(json.dumps(dict(wall_s=wall, stages=result.summary.seconds, peak_mb=peak_mb, accuracy=acc,
                     anon_mb=peak_anon, file_mb=peak_file,
                     n_templates=int(m.dictionary.shape[0]), n_channels=int(m.dictionary.shape[1]),
                     k=int(m.dictionary.shape[2]), n_iter=m.n_iter, decimation=result.summary.decimation)))
"""


CASES = {
    "tetrode": "`generate_ground_truth_recording`, tetrode, 30 kHz, 6 units (one at SNR < 1), seed 1, saved as a "
               "binary folder",
    "np1_384": "`generate_ground_truth_recording`, Neuropixels 1.0 bank 0 (384 channels), 30 kHz, 120 units, seed 6 "
               "(the sorter comparison's np1_384 case), generated lazily in the sorting process (never written "
               "to disk)",
}


def make_recording(folder: Path, duration_s: float, seed: int = 1, case: str = "tetrode"):
    """The case's ground truth of ``duration_s``, made once in ``folder``: the recording (a binary folder;
    for ``np1_384`` a JSON note from which :func:`load_recording` regenerates it lazily, so any length
    fits) and the ground-truth sorting folder."""
    from ..demo import ground_truth_tetrode

    tag = "" if case == "tetrode" else f"{case}_"
    rec_path, gt_folder = folder / f"{tag}rec_{int(duration_s)}s", folder / f"{tag}gt_{int(duration_s)}s"
    if case != "tetrode":
        rec_path = rec_path.with_suffix(LAZY)
    if not gt_folder.exists():
        folder.mkdir(parents=True, exist_ok=True)
        if case != "tetrode":
            from .sorters_cases import generated

            _, gt = generated(case, duration_s)
            rec_path.write_text(json.dumps(dict(case=case, duration_s=duration_s)))
        else:
            rec, gt = ground_truth_tetrode(duration_s, seed)
            rec.save(folder=rec_path, n_jobs=1, progress_bar=False)
        gt.save(folder=gt_folder)
    return rec_path, gt_folder


LAZY = ".lazy.json"


def load_recording(path: str | Path):
    """The recording ``make_recording`` made: a saved folder, or regenerated from a ``.lazy.json`` note."""
    path = str(path)
    if path.endswith(LAZY):
        from .sorters_cases import generated

        spec = json.loads(Path(path).read_text())
        return generated(spec["case"], spec["duration_s"])[0]
    import spikeinterface as si

    return si.load(path)


def run_once(rec_folder: Path, gt_folder: Path, out: Path) -> dict:
    """One sort in a fresh process (``CHILD``): its wall time, stages, peak memory and accuracy."""
    import shutil

    shutil.rmtree(out.parent / f".{out.name}.partial", ignore_errors=True)  # left by an interrupted benchmark
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(rec_folder), str(out), str(gt_folder)],
                          capture_output=True, text=True, env=env, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def encoder_floor_row(runs: list[dict], duration_s: float) -> str:
    """The encoder's dense-equivalent flops (4 C M K per code sample and iteration) against its stage time."""
    r = runs[0]
    code_rate = 30000.0 / r["decimation"]
    flops = 4 * r["n_templates"] * r["n_channels"] * r["k"] * r["n_iter"] * code_rate * duration_s
    inference = statistics.median(x["stages"]["inference"] for x in runs)
    return (f"dense-equivalent encoder work {flops / 1e9:.1f} GFLOP for {duration_s:.0f} s "
            f"(C={r['n_templates']}, M={r['n_channels']}, K={r['k']}, T={r['n_iter']}, {code_rate:.0f} Hz); "
            f"inference stage {inference:.1f} s = {flops / inference / 1e9:.1f} GFLOP/s effective (the working set "
            "skips most of that work, so this is the dense encoder's work over the time taken, not a flop rate)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="also 20 minutes")
    ap.add_argument("--memory", action="store_true", help="1, 10 and 60 minutes once each (MEMORY table)")
    ap.add_argument("--case", choices=sorted(CASES), default="tetrode", help="the ground truth (default: tetrode)")
    ap.add_argument("--durations-min", type=float, nargs="+", default=None,
                    help="recording lengths in minutes, instead of the mode's own")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None, help="where recordings are generated (default: a temp dir)")
    ap.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args(argv)
    durations = [60.0, 300.0] + ([1200.0] if args.full else [])
    marker = "SPEED"
    if args.memory:
        durations, args.repeats, marker = [60.0, 600.0, 3600.0], 1, "MEMORY"
    if args.case != "tetrode":
        marker += "_NP1"
    if args.durations_min:
        durations = [60.0 * m for m in args.durations_min]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="crsae_bench_"))
    rows, notes = [], []
    for duration in durations:
        rec_folder, gt_folder = make_recording(work, duration, case=args.case)
        repeats = args.repeats if duration <= 300 else 1
        runs = [run_once(rec_folder, gt_folder, work / "out") for _ in range(repeats)]
        wall = statistics.median(r["wall_s"] for r in runs)
        stages = {k: statistics.median(r["stages"].get(k, 0.0) for r in runs)
                  for k in ("preprocess", "init", "train", "grow", "inference", "export")}
        peak = max(r["peak_mb"] for r in runs)
        accuracy = statistics.median(r["accuracy"] for r in runs)
        if args.memory:  # one run per length, maybe on a shared machine: times are a guide, memory the point
            anon = max(r["anon_mb"] for r in runs)
            mapped = max(r["file_mb"] for r in runs)
            row = (f"| {duration / 60:g} min | {peak:.0f} | {anon:.0f} | {mapped:.0f} | {accuracy:.3f} | "
                   f"{wall:.0f} | {stages['preprocess']:.0f} / {stages['inference']:.0f} |")
        else:
            row = (f"| {duration / 60:g} min | {repeats} | {wall:.1f} | {duration / wall:.1f}x | "
                   + " | ".join(f"{stages[k]:.1f}" for k in stages) + f" | {peak:.0f} | {accuracy:.3f} |")
        emit(row, flush=True)
        rows.append(row)
        notes.append(encoder_floor_row(runs, duration))
    header = (["| recording | peak RSS MB | peak own (RssAnon) MB | peak file-backed (RssFile) MB | "
               "accuracy (SNR >= 5) | wall s | preprocess / inference s |", "|---|---|---|---|---|---|---|"]
              if args.memory else
              ["| recording | repeats | wall s | x real time | preprocess s | init s | train s | grow s | inference s | "
               "export s | peak MB | accuracy (SNR >= 5) |", "|---|---|---|---|---|---|---|---|---|---|---|---|"])
    table = "\n".join([
        f"Hardware: {hardware()}. Ground truth: {CASES[args.case]}. Median over repeats, each sort in a "
        "fresh process; peak memory is that process's maximum resident set.", "",
        *header, *rows, "", *([] if args.memory else [f"- {n}" for n in notes])])
    emit(table)
    if not args.no_doc:
        write_block(DOC, marker, table)


if __name__ == "__main__":
    main()
