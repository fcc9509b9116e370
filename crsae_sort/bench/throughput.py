"""Throughput: seconds of work per second of recording, per stage, against each stage's arithmetic floor and
against spykingcircus2 sorting the same recording in the same run (the THROUGHPUT table).

For each case (4, 32, 128 and 384 channels of the sorter comparison's generator, ``duration_s`` each, saved as
binary folders) it measures, in fresh processes one after another:

* reading every sample once (the input's floor: a binary file read in 1-s chunks, from the page cache when the
  file was just written);
* crsae through ``run_sorter`` (the stages its ``summary.json`` records) and spykingcircus2 through
  ``run_sorter``, with the sorter comparison's settings and threads, scored on the units of SNR >= 5;
* the floors: a band-pass (SpikeInterface's default: 5 second-order sections, forward and backward, ~9
  flops a section, at the recording rate), the local whitening (2 flops per non-zero of ``W``, at the model
  rate) and the encoder's dense-equivalent work (4 C M K flops per code sample and iteration), each in
  seconds at the rate this machine's float32 matrix product reaches (measured in the same run). Initial
  clustering and training have no floor to state: their work is set by the parameters, not the recording.

    python scripts/benchmark_throughput.py                       # 4, 32, 128, 384 channels, 60 s each
    python scripts/benchmark_throughput.py --cases tetrode 32ch --duration-s 10 --no-doc
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from .docs import DOC, commit, emit, hardware, write_block

CASES = ["tetrode", "32ch", "128ch", "np1_384"]
PEER = "spykingcircus2"
STAGES = ["preprocess", "init", "train", "grow", "inference", "curate", "export"]
SOS_SECTIONS, FLOPS_PER_SECTION = 5, 9   # SpikeInterface's default band-pass: Butterworth order 5 -> 5 sections
WHITENING_NEIGHBOURS = {"tetrode": 4, "32ch": 18, "128ch": 18, "np1_384": 18}  # non-zeros of a row of W
SECTION = ("## Throughput: seconds per second of recording, stage by stage\n\n"
           "`python scripts/benchmark_throughput.py` (issue 25): each case sorted by crsae and by spykingcircus2 "
           "one after the other in one run, each in a fresh process through `run_sorter` (2 threads), beside "
           "the time it takes to read the recording once and each stage's arithmetic floor.")


def gemm_gflops(n: int = 1024, repeats: int = 5) -> float:
    """The float32 matrix-product rate of this machine (GFLOP/s, best of ``repeats``), the yardstick the
    floors are converted to seconds with."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def read_seconds(rec_folder: Path) -> float:
    """Seconds to read every sample of the saved recording once, in 1-s chunks."""
    import spikeinterface as si

    rec = si.load(rec_folder)
    fs, n = rec.get_sampling_frequency(), rec.get_num_samples()
    t0 = time.perf_counter()
    for start in range(0, n, int(fs)):
        rec.get_traces(start_frame=start, end_frame=min(n, start + int(fs)))
    return time.perf_counter() - t0


def floors(case: str, n_channels: int, fs_hz: float, decimation: int, encoder: dict | None,
           gflops: float) -> dict:
    """Per second of recording: the floor of each stage that has one, in seconds at ``gflops``.

    ``encoder``: n_templates, k (samples per atom) and n_iter of the model crsae built, for the encoder's
    dense-equivalent work; None leaves it out."""
    band = 2 * SOS_SECTIONS * FLOPS_PER_SECTION * n_channels * fs_hz
    whiten = 2 * WHITENING_NEIGHBOURS[case] * n_channels * fs_hz / decimation
    out = {"preprocess": (band + whiten) / (gflops * 1e9)}
    if encoder:
        flops = 4 * encoder["n_templates"] * n_channels * encoder["k"] * encoder["n_iter"] * fs_hz / decimation
        out["inference"] = flops / (gflops * 1e9)
    return out


def run_case(work: Path, case: str, duration_s: float, threads: int, timeout_s: float) -> dict:
    """One case: read time, crsae's and the peer's rows, floors."""
    from .sorters import run_sorter_in_child, score
    from .sorters_cases import CASES as ALL, make_case

    rec_folder, gt_folder, snrs = make_case(work, case, duration_s)
    row = dict(case=case, n_channels=ALL[case][0], duration_s=duration_s, read_s=read_seconds(rec_folder))
    for sorter in ("crsae", PEER):
        out = work / f"{case}_{duration_s:g}s" / f"throughput_{sorter}"
        res = run_sorter_in_child(sorter, rec_folder, out, threads, timeout_s)
        if res["status"] == "ok":
            res["accuracy_snr5"] = score(gt_folder, out.parent / (out.name + "_sorting"), snrs)["accuracy_snr5"]
        row[sorter] = res
        emit(f"{case}: {sorter} {res.get('wall_s', float('nan')):.1f} s, {res['status']}")
    shape = _encoder_shape(work / f"{case}_{duration_s:g}s" / "throughput_crsae")
    row["decimation"] = shape.pop("decimation") if shape else 2
    row["encoder"] = shape
    return row


def _encoder_shape(out: Path) -> dict | None:
    """The crsae model's size from its output folder: templates, samples per atom, iterations, decimation."""
    folder = out / "sorter_output" / "crsae"
    if not (folder / "summary.json").exists():
        return None
    summary = json.loads((folder / "summary.json").read_text())
    from ..io.results import load_model
    import torch

    model = load_model(folder / "model.pt", torch.device("cpu")).model
    c, _, k = model.dense_dictionary().shape
    return dict(n_templates=int(c), k=int(k), n_iter=int(model.n_iter), decimation=int(summary["decimation"]))


def table(rows: list[dict], gflops: float) -> str:
    """The THROUGHPUT markdown: one row per case, seconds per second of recording."""
    head = ("| channels | read | " + " | ".join(STAGES) + " | crsae total (x real time) | floor: preprocess / "
            "inference | spykingcircus2 total (x real time) | crsae / spykingcircus2 time | accuracy SNR >= 5: "
            "crsae / spykingcircus2 |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        d, c, p = r["duration_s"], r["crsae"], r[PEER]
        stages = c.get("stages_s") or {}
        cells = [f"{stages[s] / d:.3f}" if s in stages else "-" for s in STAGES]
        fl = floors(r["case"], r["n_channels"], 30000.0, r["decimation"], r["encoder"], gflops)
        total = f"{c['wall_s'] / d:.3f} ({d / c['wall_s']:.2f}x)" if c["status"] == "ok" else "failed"
        peer = f"{p['wall_s'] / d:.3f} ({d / p['wall_s']:.2f}x)" if p["status"] == "ok" else "failed"
        ratio = f"{c['wall_s'] / p['wall_s']:.2f}" if c["status"] == p["status"] == "ok" else "-"
        acc = " / ".join(f"{x['accuracy_snr5']:.3f}" if x.get("accuracy_snr5") is not None else "-" for x in (c, p))
        floor = f"{fl['preprocess']:.4f} / " + (f"{fl['inference']:.3f}" if "inference" in fl else "-")
        lines.append(f"| {r['n_channels']} | {r['read_s'] / d:.3f} | " + " | ".join(cells)
                     + f" | {total} | {floor} | {peer} | {ratio} | {acc} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(prog="benchmark_throughput.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", default=CASES, choices=CASES)
    ap.add_argument("--duration-s", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--timeout-s", type=float, default=3600.0)
    ap.add_argument("--workdir", default=None, help="where recordings are generated (default: a temp dir)")
    ap.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="crsae_throughput_"))
    gflops = gemm_gflops()
    rows = [run_case(work, case, args.duration_s, args.threads, args.timeout_s) for case in args.cases]
    text = (f"Commit {commit()}. Hardware: {hardware()}; float32 matrix product {gflops:.0f} GFLOP/s (the floors' "
            f"yardstick). Recordings: the sorter comparison's generated cases, {args.duration_s:g} s each, 30 kHz, "
            "saved as binary folders. Every cell is seconds per second of recording (lower is faster); "
            "`read` is reading every sample once.\n\n" + table(rows, gflops))
    emit(text)
    if not args.no_doc:
        write_block(DOC, "THROUGHPUT", text, section=SECTION)
    (work / "throughput.json").write_text(json.dumps(rows, indent=1))
    return rows
