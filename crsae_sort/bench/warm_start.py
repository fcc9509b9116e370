"""``crsae-sort bench warm-start``: how many iterations SISTA's warm start saves at equal spikes.

One model per case is trained by the default sort (FISTA, T = 50) on the ablation's seeded ground
truth (:func:`crsae_sort.bench.ablation.load_case`: a tetrode and a 32-channel probe). Its
dictionary and lambda are then read out again over the whole recording with other encoders and
nothing else changed: FISTA with fewer iterations T, and ``sista`` (overlapping frames, each
warm-started from the previous one; :mod:`crsae_sort.model.encoders.sista`) with T iterations per
frame. The columns:

* iterations per code sample: T for FISTA; ``T / sista_hop_fraction`` for SISTA (every code sample
  is in ``1 / hop`` frames);
* spike agreement with FISTA-50: per template, spikes at the same sample +- 1 of the model's rate
  matched one to one, ``2 matched / (n + n_FISTA-50)`` over all spikes (1 = the same spikes);
* accuracy: mean over ground-truth units with SNR >= 5 of tp / (tp + fn + fp), the spikes exported
  as the sort exports them;
* read-out s/s: seconds of the whole read-out (screened encoding and spike detection, as inference
  runs it) per second of recording, median of ``--repeats`` runs. FISTA runs on working sets on the
  CPU (:mod:`crsae_sort.model.working_set`), SISTA on the screened stretches.

"At equal spikes" is the smallest iterations per sample whose agreement is within 0.01 of 1.

    python scripts/benchmark_warm_start.py [--cases tetrode 32ch] [--no-doc]
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .docs import emit

FISTA_ITERATIONS = (5, 10, 20, 30, 50)
SISTA_ITERATIONS = (3, 5, 10, 15, 25)
COUPLINGS = (0.0, 1.0)
QUICK = dict(cases=("tetrode",), duration_s=4.0, fista=(5, 50), sista=(3,), couplings=(0.0,), repeats=1,
             extra=dict(max_epochs=1, n_windows=64, init_duration_s=4.0, grow_rounds=0))


@dataclass
class Row:
    case: str
    encoder: str
    n_iterations: int
    coupling: float
    iterations_per_sample: float
    agreement: float
    accuracy_snr5: float
    readout_s_per_s: float


def spike_agreement(a, b, tolerance: int = 1) -> float:
    """``2 matched / (n_a + n_b)``: spikes of the same template within ``tolerance`` samples, paired one to
    one (:func:`crsae_sort.bench.real_scoring.match`; ``a``, ``b``: :class:`crsae_sort.infer.Spikes` of one
    segment)."""
    from .real_scoring import match

    matched = sum(len(match(a.sample_index[a.unit_index == unit], b.sample_index[b.unit_index == unit],
                            tolerance)[0]) for unit in np.union1d(a.unit_index, b.unit_index))
    total = len(a.sample_index) + len(b.sample_index)
    return 2.0 * matched / total if total else 1.0


def run_case(workdir: Path, case: str, duration_s: float, fista_t, sista_t, couplings, repeats: int,
             extra: dict) -> list[Row]:
    """Train once with the defaults, then read the recording out with each encoder (module docstring)."""
    from spikeinterface.comparison import compare_sorter_to_ground_truth

    from ..infer import detect_spikes
    from ..model.encoders import ENCODER_OPTIONS, make_encoder
    from ..params import SortParams
    from ..pipeline import sort
    from ..postprocess import build_result
    from ..preprocess import preprocess
    from .ablation import load_case

    recording, gt, snrs = load_case(workdir, case, duration_s)
    params = SortParams.from_dict(dict(extra, device="cpu"))
    model = sort(recording, None, params, progress=False).model
    pre = preprocess(recording, params.preprocess, params.run.seed)
    good = [u for u in gt.unit_ids if snrs[str(u)] >= 5]
    n_atoms = model.dictionary.shape[0]
    seconds = recording.get_total_duration()

    def read_out(encoder):
        model.encoder = encoder
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            spikes = detect_spikes(model, pre.recording, params.inference)
            times.append(time.perf_counter() - t0)
        result = build_result(recording, pre, model, spikes, params, None, model.dictionary.device)
        perf = compare_sorter_to_ground_truth(gt, result.sorting, exhaustive_gt=True).get_performance()
        accuracy = float(np.mean([perf.loc[u, "accuracy"] for u in good])) if good else float("nan")
        return spikes, accuracy, statistics.median(times) / seconds

    own = params.model.n_iterations  # the reference: FISTA at the sort's own T (50), read out first
    configs = [("fista", own, 0.0)] + [("fista", t, 0.0) for t in sorted(set(fista_t) - {own}, reverse=True)]
    configs += [("sista", t, c) for c in couplings for t in sista_t]
    reference, rows = None, []
    for name, t, coupling in configs:
        options = ENCODER_OPTIONS["sista"](sista_coupling=coupling) if name == "sista" else None
        encoder = make_encoder(name, t, params.model.positive_codes, options, n_atoms)
        spikes, accuracy, s_per_s = read_out(encoder)
        if reference is None:
            reference = spikes
        per_sample = encoder.iterations_per_sample() if name == "sista" else float(t)
        rows.append(Row(case, name, t, coupling, per_sample, spike_agreement(spikes, reference), accuracy, s_per_s))
        emit(f"{case} {name} T={t} lambda_2={coupling:g}: {per_sample:g} iterations per sample, agreement "
             f"{rows[-1].agreement:.4f}, accuracy {accuracy:.4f}, {s_per_s:.4f} s/s")
    return rows


def at_equal_spikes(rows: list[Row], encoder: str, coupling: float = 0.0, within: float = 0.01) -> float | None:
    """The fewest iterations per code sample of ``encoder`` whose agreement with FISTA-50 is >= 1 - ``within``."""
    ok = [r.iterations_per_sample for r in rows if r.encoder == encoder and (encoder == "fista" or r.coupling == coupling)
          and r.agreement >= 1.0 - within]
    return min(ok) if ok else None


def table(rows: list[Row]) -> str:
    lines = ["| case | encoder | T (per frame for sista) | λ₂ | iterations per code sample | agreement with FISTA-50 "
             "| accuracy (SNR ≥ 5) | read-out s/s |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.case} | {r.encoder} | {r.n_iterations} | {r.coupling:g} | {r.iterations_per_sample:g} | "
                     f"{r.agreement:.4f} | {r.accuracy_snr5:.4f} | {r.readout_s_per_s:.4f} |")
    for case in dict.fromkeys(r.case for r in rows):
        mine = [r for r in rows if r.case == case]
        found = {name: at_equal_spikes(mine, name) for name in ("fista", "sista")}
        lines.append("")
        lines.append(f"{case}: FISTA-50's spikes (agreement >= 0.99) with " + ", ".join(
            f"{name} at {v:g} iterations per code sample" if v is not None else f"{name} not within the grid"
            for name, v in found.items()) + ".")
    return "\n".join(lines)


SECTION = ("## SISTA's warm start at equal spikes\n\n"
           "`python scripts/benchmark_warm_start.py` (`crsae_sort/bench/warm_start.py`): one model trained by the "
           "default sort, read out again with fewer FISTA iterations and with SISTA's warm-started frames; the "
           "columns are defined in the module's docstring.")


def main(argv: list[str] | None = None) -> list[Row]:
    """Run, print the table, write the WARMSTART block of docs/benchmarks.md."""
    import sys

    from .docs import DOC, hardware, write_block

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="crsae_bench_ablation", help="the ablation's recordings (generated if absent)")
    ap.add_argument("--cases", nargs="+", default=["tetrode", "32ch"], choices=["tetrode", "32ch"])
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of each recording")
    ap.add_argument("--repeats", type=int, default=3, help="read-out timings per configuration (the median is kept)")
    ap.add_argument("--quick", action="store_true", help="a 4-s tetrode, three configurations (a smoke test)")
    ap.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.quick:
        q = QUICK
        rows = [r for case in q["cases"] for r in run_case(Path(args.workdir), case, q["duration_s"], q["fista"],
                                                            q["sista"], q["couplings"], q["repeats"], q["extra"])]
    else:
        rows = [r for case in args.cases for r in run_case(Path(args.workdir), case, args.duration, FISTA_ITERATIONS,
                                                            SISTA_ITERATIONS, COUPLINGS, args.repeats, {})]
    text = (f"Hardware: {hardware()}. {(time.perf_counter() - t0) / 60:.1f} min. Command: "
            f"`python scripts/benchmark_warm_start.py {' '.join(argv if argv is not None else sys.argv[1:])}`.\n\n"
            + table(rows))
    emit(text)
    if not args.no_doc:
        write_block(DOC, "WARMSTART", text, section=SECTION)
    return rows
