"""Throughput: seconds of work per second of recording, per stage, against each stage's arithmetic floor and
against spykingcircus2 sorting the same recording in the same run (the THROUGHPUT table).

For each case (4, 32, 128 and 384 channels of the sorter comparison's generator, ``duration_s`` each, saved as
binary folders) it measures, in fresh processes one after another:

* reading every sample once (the input's floor: a binary file read in 1-s chunks, from the page cache when the
  file was just written);
* crsae through ``run_sorter`` (the stages its ``summary.json`` records) and spykingcircus2 through
  ``run_sorter``, with the sorter comparison's settings and threads, scored on the units of SNR >= 5;
* the floors, in seconds at the rate this machine's float32 matrix product reaches (measured in the same run):
  preprocessing's arithmetic, a band-pass (SpikeInterface's default: 5 second-order sections, forward and
  backward, 9 flops a section, at the recording rate) and the whitening (2 flops per non-zero of ``W``: the
  channels within ``whitening_radius_um`` of each, from the probe, at the model rate); the encoder's one dense
  step, the correlation ``H^T y`` (2 S K flops per atom and code sample, ``S`` the channels an atom keeps),
  which the working set cannot avoid, beside the dense unrolled encoder's ``4 C M K T`` that it replaces.
  Initial clustering and training have no floor to state: their work is set by the parameters (how many
  seconds are clustered, how many windows trained on), not by the recording's length.

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
    """Seconds to read every sample of the saved recording once into memory, in 1-s chunks (a copy: the
    binary folder's traces are memory-mapped views until touched)."""
    import numpy as np
    import spikeinterface as si

    rec = si.load(rec_folder)
    fs, n = rec.get_sampling_frequency(), rec.get_num_samples()
    t0 = time.perf_counter()
    for start in range(0, n, int(fs)):
        np.array(rec.get_traces(start_frame=start, end_frame=min(n, start + int(fs))), copy=True)
    return time.perf_counter() - t0


def whitening_nonzeros(case: str, radius_um: float) -> int:
    """Non-zeros of the case's whitening matrix: pairs of channels within ``radius_um`` (every pair when all
    lie within it: global whitening), as SpikeInterface's local whitening keeps them."""
    import numpy as np

    from .sorters_cases import CASES as ALL, make_probe

    probe = make_probe(ALL[case][0])
    if probe is None:  # SpikeInterface's tetrode: every pair
        return ALL[case][0] ** 2
    xy = np.asarray(probe.contact_positions, dtype=float)[:, :2]
    return int((np.linalg.norm(xy[:, None] - xy[None], axis=-1) <= radius_um).sum())


def floors(n_channels: int, whitening_nnz: int, fs_hz: float, decimation: int, encoder: dict | None,
           gflops: float) -> dict:
    """Per second of recording, in seconds at ``gflops``: ``preprocess`` (band-pass and whitening),
    ``correlation`` (the encoder's ``H^T y``) and ``dense_encoder`` (the unrolled encoder run densely).

    ``encoder``: the model's n_templates, k (samples per atom), n_iter and support (channels an atom keeps);
    None leaves the encoder's out."""
    band = 2 * SOS_SECTIONS * FLOPS_PER_SECTION * n_channels * fs_hz
    whiten = 2 * whitening_nnz * fs_hz / decimation
    out = {"preprocess": (band + whiten) / (gflops * 1e9)}
    if encoder:
        code_rate = fs_hz / decimation
        out["correlation"] = 2 * encoder["n_templates"] * encoder["support"] * encoder["k"] * code_rate / (gflops * 1e9)
        out["dense_encoder"] = (4 * encoder["n_templates"] * n_channels * encoder["k"] * encoder["n_iter"] * code_rate
                                / (gflops * 1e9))
    return out


def run_case(work: Path, case: str, duration_s: float, threads: int, timeout_s: float) -> dict:
    """One case: read time, crsae's and the peer's rows, floors."""
    from .sorters import run_sorter_in_child, score
    from .sorters_cases import CASES as ALL, make_case

    rec_folder, gt_folder, snrs = make_case(work, case, duration_s)
    row = dict(case=case, n_channels=ALL[case][0], duration_s=duration_s, read_s=read_seconds(rec_folder),
               commit=commit())
    for sorter in ("crsae", PEER):
        out = work / f"{case}_{duration_s:g}s" / f"throughput_{sorter}"
        res = run_sorter_in_child(sorter, rec_folder, out, threads, timeout_s)
        if res["status"] == "ok":
            res["accuracy_snr5"] = score(gt_folder, out.parent / (out.name + "_sorting"), snrs)["accuracy_snr5"]
        row[sorter] = res
        emit(f"{case}: {sorter} {res.get('wall_s', float('nan')):.1f} s, {res['status']}")
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
    c, m, k = model.dense_dictionary().shape
    support = float(model.mask.float().sum(dim=1).mean()) if model.is_local else float(m)
    return dict(n_templates=int(c), k=int(k), n_iter=int(model.n_iter), support=support,
                decimation=int(summary["decimation"]))


def table(rows: list[dict], work: Path, gflops: float) -> str:
    """The THROUGHPUT markdown: one row per case, seconds per second of recording."""
    from ..params import PreprocessParams

    radius_um = PreprocessParams().whitening_radius_um
    head = ("| channels | read | " + " | ".join(STAGES) + " | crsae total (x real time) | floors: preprocess / "
            "H^T y (dense encoder) | spykingcircus2 total (x real time) | crsae / spykingcircus2 time | accuracy "
            "SNR >= 5: crsae / spykingcircus2 |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        d, c, p = r["duration_s"], r["crsae"], r[PEER]
        stages = c.get("stages_s") or {}
        cells = [f"{stages[s] / d:.3f}" if s in stages else "-" for s in STAGES]
        shape = _encoder_shape(work / f"{r['case']}_{d:g}s" / "throughput_crsae")
        q = shape["decimation"] if shape else 2
        fl = floors(r["n_channels"], whitening_nonzeros(r["case"], radius_um), 30000.0, q, shape, gflops)
        total = f"{c['wall_s'] / d:.3f} ({d / c['wall_s']:.2f}x)" if c["status"] == "ok" else "failed"
        peer = f"{p['wall_s'] / d:.3f} ({d / p['wall_s']:.2f}x)" if p["status"] == "ok" else "failed"
        ratio = f"{c['wall_s'] / p['wall_s']:.2f}" if c["status"] == p["status"] == "ok" else "-"
        acc = " / ".join(f"{x['accuracy_snr5']:.3f}" if x.get("accuracy_snr5") is not None else "-" for x in (c, p))
        floor = f"{fl['preprocess']:.4f} / " + (f"{fl['correlation']:.4f} ({fl['dense_encoder']:.2f})"
                                                 if shape else "-")
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
    ap.add_argument("--table-only", action="store_true", help="sort nothing: the table again from the workdir's "
                    "throughput.json and sorter folders, the read times and matrix-product rate measured again")
    args = ap.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="crsae_throughput_"))
    gflops = gemm_gflops()
    if args.table_only:
        rows = json.loads((work / "throughput.json").read_text())
        for r in rows:
            r["read_s"] = read_seconds(work / f"{r['case']}_{r['duration_s']:g}s" / "recording")
    else:
        rows = [run_case(work, case, args.duration_s, args.threads, args.timeout_s) for case in args.cases]
        (work / "throughput.json").write_text(json.dumps(rows, indent=1))
    again = " (the table and the read times made again with --table-only)" if args.table_only else ""
    text = (f"Commit {rows[0].get('commit') or commit()}{again}. Hardware: {hardware()}; float32 matrix product "
            f"{gflops:.0f} GFLOP/s (the floors' "
            f"yardstick). Recordings: the sorter comparison's generated cases, {args.duration_s:g} s each, 30 kHz, "
            "saved as binary folders. Every cell is seconds per second of recording (lower is faster); "
            "`read` is reading every sample once.\n\n" + table(rows, work, gflops))
    emit(text)
    if not args.no_doc:
        write_block(DOC, "THROUGHPUT", text, section=SECTION)
    return rows
