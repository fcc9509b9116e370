"""``crsae-sort bench ablation``: encoders x unrolled iterations T x dictionary-gradient rules on ground truth.

Each configuration sorts a seeded SpikeInterface ground-truth recording (a tetrode, and a
32-channel 2-column probe) end to end and reports:

* accuracy: mean over ground-truth units with SNR >= 5 of tp / (tp + fn + fp);
* encoder s/s: seconds the trained encoder takes per second of recording (screened, as inference
  runs it), timed on preprocessed traces already in memory (filtering not counted), after a
  one-second warm-up;
* lasso gap: ``(F(z_T) - F(z*)) / F(z*)`` on held-aside windows, ``F`` the lasso of the trained
  model and ``z*`` FISTA run 1000 iterations (200 with ``--quick``; for ``reweighted-candes``, which minimises the
  log-sum instead, a gap that stays above 0 is by design);
* dictionary error: per ground-truth unit (SNR >= 5), ``sqrt(2 (1 - cos))`` between its template
  (cut from the preprocessed recording) and the closest atom at the best lag: the distance of
  unit-norm atoms after alignment and sign/scale (Tolooshams & Ba, TMLR 2022); the median;
* the learned lambda (median over templates).

A figure (``ablation.png`` in the work folder, and ``docs/img/ablation.png``) draws accuracy and
encoder time against T, one line per encoder. The other sorters' scores are in the SORTERS block.

Every sort runs in this process, one after another (the first pays numba's compilation; the
encoder timing does not include it).

    crsae-sort bench ablation                       # the full grid, writes the ABLATION block
    crsae-sort bench ablation --quick --no-doc      # two tiny configurations (a smoke test)

Rows go to ``results.jsonl`` in the work folder as they finish; a later run there with the same
``--duration`` reuses them (a stopped grid resumes; a grid extended by more rules sorts only those).
"""
from __future__ import annotations

import itertools
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..model.encoders import encoder_names
from .docs import emit, read_rows

logger = logging.getLogger(__name__)

ENCODERS = tuple(encoder_names())  # every registered encoder, fista first
ITERATIONS = (3, 5, 10, 20, 50)
RULES = ("ae-ls", "ae-lasso", "dec")
CASES = {"tetrode": (4, 6), "32ch": (32, 12)}   # channels, units
SEED = 2205
REFERENCE_ITERATIONS = 1000  # FISTA iterations of the converged lasso solution z*
QUICK = dict(cases=("tetrode",), duration_s=4.0, configs=(("fista", 3, "ae-ls"), ("learned-steps", 3, "dec")),
             extra=dict(max_epochs=1, n_windows=64, init_duration_s=4.0), reference_iterations=200)


@dataclass
class Row:
    case: str
    encoder: str
    n_iterations: int
    rule: str
    accuracy_snr5: float
    encoder_s_per_s: float
    lasso_gap: float
    dictionary_error: float
    lambda_median: float
    n_units: int
    sort_s: float


def grid(encoders=ENCODERS, iterations=ITERATIONS, rules=RULES) -> list[tuple[str, int, str]]:
    """Every (encoder, T, rule)."""
    return list(itertools.product(encoders, iterations, rules))


def load_case(workdir: Path, case: str, duration_s: float):
    """The case's recording and ground truth (generated once into ``workdir``) and unit SNRs."""
    import spikeinterface as si
    from spikeinterface.core import generate_ground_truth_recording

    from ..demo import unit_snrs

    folder = workdir / f"{case}_{duration_s:g}s"
    if not (folder / "snrs.json").exists():
        channels, units = CASES[case]
        recording, gt = generate_ground_truth_recording(durations=[duration_s], sampling_frequency=30000.0,
                                                        num_channels=channels, num_units=units, seed=SEED)
        recording.save(folder=folder / "recording", n_jobs=1, progress_bar=False, overwrite=True)
        gt.save(folder=folder / "gt", overwrite=True)
        (folder / "snrs.json").write_text(json.dumps(unit_snrs(si.load(folder / "recording"), si.load(folder / "gt"))))
    snrs = json.loads((folder / "snrs.json").read_text())
    return si.load(folder / "recording"), si.load(folder / "gt"), snrs


def run_one(recording, gt, snrs: dict, case: str, encoder: str, n_iter: int, rule: str, extra: dict,
            reference_iterations: int = REFERENCE_ITERATIONS) -> Row:
    """Sort with one configuration and measure it (module docstring)."""
    from spikeinterface.comparison import compare_sorter_to_ground_truth

    from ..params import SortParams
    from ..pipeline import sort
    from ..preprocess import preprocess

    params = SortParams.from_dict(dict(extra, encoder=encoder, n_iterations=n_iter, dictionary_gradient=rule,
                                       device="cpu"))
    t0 = time.perf_counter()
    result = sort(recording, None, params, progress=False)
    sort_s = time.perf_counter() - t0
    perf = compare_sorter_to_ground_truth(gt, result.sorting, exhaustive_gt=True).get_performance()
    good = [u for u in gt.unit_ids if snrs[str(u)] >= 5]
    accuracy = float(np.mean([perf.loc[u, "accuracy"] for u in good])) if good else float("nan")
    pre = preprocess(recording, params.preprocess, params.run.seed)
    model = result.model
    return Row(case, encoder, n_iter, rule, accuracy, _encoder_seconds(model, pre.recording, params),
               _lasso_gap(model, pre.recording, params, reference_iterations),
               _dictionary_error(model, pre, gt, good, params),
               float(model.lam.detach().median()), len(result.sorting.unit_ids), sort_s)


def _encoder_seconds(model, pre_recording, params) -> float:
    import torch

    from ..infer import encode_screened

    traces = pre_recording.get_traces(segment_index=0)
    y = torch.from_numpy(np.ascontiguousarray(traces.T, dtype=np.float32))
    encode_screened(model, y[:, : int(pre_recording.get_sampling_frequency())], params.inference.screen_fraction)
    t0 = time.perf_counter()  # after a one-second warm-up (first-call allocations are not the encoder's cost)
    encode_screened(model, y, params.inference.screen_fraction)
    return (time.perf_counter() - t0) / (traces.shape[0] / pre_recording.get_sampling_frequency())


def _lasso_gap(model, pre_recording, params, reference_iterations: int, n_windows: int = 16) -> float:
    import torch

    from ..model.encoders.fista import fista
    from ..model.losses import lasso_objective
    from ..train import sample_windows

    n = max(int(round(params.train.window_ms * pre_recording.get_sampling_frequency() / 1000)),
            2 * model.dictionary.shape[-1])
    y = torch.from_numpy(sample_windows(pre_recording, n_windows, n, seed=12345))
    d, lam = model.dense_dictionary(), model.lam.detach()
    with torch.no_grad():
        f_t = float(lasso_objective(y, model.encode(y), d, lam))
        f_star = float(lasso_objective(y, fista(y, d, lam, model.lipschitz, reference_iterations), d, lam))
    return (f_t - f_star) / f_star


def _dictionary_error(model, pre, gt, good: list, params) -> float:
    from .init import gt_templates, match_units

    fs = pre.recording.get_sampling_frequency()
    n_before = max(1, int(round(params.init.template_ms_before * fs / 1000)))
    n_after = model.dictionary.shape[-1] - n_before
    templates = gt_templates(pre.recording, gt.select_units(good), pre.decimation, n_before, n_after)
    cos = np.clip(match_units(model.dense_dictionary().cpu().numpy(), templates), -1.0, 1.0)
    return float(np.median(np.sqrt(2.0 * (1.0 - cos)))) if len(cos) else float("nan")


def run(workdir: Path, *, quick: bool = False, cases=tuple(CASES), duration_s: float = 20.0,
        configs: list | None = None, extra: dict | None = None) -> list[Row]:
    """Every case x configuration; rows are appended to ``workdir/results.jsonl`` as they finish."""
    reference_iterations = REFERENCE_ITERATIONS
    if quick:
        cases, duration_s, configs, extra = QUICK["cases"], QUICK["duration_s"], list(QUICK["configs"]), QUICK["extra"]
        reference_iterations = QUICK["reference_iterations"]
    configs = configs if configs is not None else grid()
    workdir.mkdir(parents=True, exist_ok=True)
    done = {}
    for raw in read_rows(workdir / "results.jsonl", duration_s):
        row = Row(**{k: v for k, v in raw.items() if k != "duration_s"})
        done[row.case, row.encoder, row.n_iterations, row.rule] = row
    rows = []
    with open(workdir / "results.jsonl", "a") as out:
        for case in cases:
            recording, gt, snrs = load_case(workdir, case, duration_s)
            for encoder, n_iter, rule in configs:
                if (case, encoder, n_iter, rule) in done:  # finished by an earlier run in this workdir
                    rows.append(done[case, encoder, n_iter, rule])
                    continue
                logger.info("ablation: %s, %s T=%d %s", case, encoder, n_iter, rule)
                row = run_one(recording, gt, snrs, case, encoder, n_iter, rule, dict(extra or {}), reference_iterations)
                out.write(json.dumps(dict(asdict(row), duration_s=duration_s)) + "\n")
                out.flush()
                rows.append(row)
    return rows


def table(rows: list[Row]) -> str:
    """The Markdown table of the ABLATION block."""
    lines = ["| case | encoder | T | gradient | accuracy (SNR ≥ 5) | encoder s/s | lasso gap | dictionary error "
             "| median λ | units | sort s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.case} | {r.encoder} | {r.n_iterations} | {r.rule} | {r.accuracy_snr5:.3f} | "
                     f"{r.encoder_s_per_s:.4f} | {r.lasso_gap:.2e} | {r.dictionary_error:.3f} | "
                     f"{r.lambda_median:.2f} | {r.n_units} | {r.sort_s:.1f} |")
    return "\n".join(lines)


def plot(rows: list[Row], path: Path) -> None:
    """Accuracy and encoder s/s against T, one line per encoder (its first gradient rule), one column per case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    cases = list(dict.fromkeys(r.case for r in rows))
    if not cases:
        return
    fig, axes = plt.subplots(2, len(cases), figsize=(4.8 * len(cases), 7.0), squeeze=False, sharex=True)
    for col, case in enumerate(cases):
        mine = [r for r in rows if r.case == case]
        for i, encoder in enumerate(dict.fromkeys(r.encoder for r in mine)):
            rule = next(r.rule for r in mine if r.encoder == encoder)
            line = sorted((r for r in mine if r.encoder == encoder and r.rule == rule), key=lambda r: r.n_iterations)
            t = [r.n_iterations for r in line]
            axes[0, col].plot(t, [r.accuracy_snr5 for r in line], "o-", color=f"C{i}", label=f"{encoder} ({rule})")
            axes[1, col].plot(t, [r.encoder_s_per_s for r in line], "o-", color=f"C{i}")
        axes[0, col].set(title=case, ylabel="accuracy (SNR ≥ 5)", ylim=(0, 1.02))
        axes[1, col].set(xscale="log", yscale="log", xlabel="unrolled iterations T", ylabel="encoder s per s of recording")
        ticks = sorted({r.n_iterations for r in mine})
        axes[1, col].set_xticks(ticks, labels=[str(t) for t in ticks])
        axes[1, col].xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


SECTION = ("## Encoders, iterations and gradient rules (ablation)\n\n"
           "`crsae-sort bench ablation` (`crsae_sort/bench/ablation.py`): each row is one sort of seeded "
           "ground truth; the columns are defined in the module's docstring.")


def main(argv: list[str] | None = None) -> list[Row]:
    """``scripts/benchmark_ablation.py``: run, print the table, write the ABLATION block of docs/benchmarks.md."""
    import argparse
    import sys

    from .docs import DOC, hardware, write_block

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="crsae_bench_ablation", help="recordings and results.jsonl go here")
    ap.add_argument("--quick", action="store_true", help="two tiny configurations on a 4-s tetrode (a smoke test)")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of each recording")
    ap.add_argument("--encoders", nargs="+", default=list(ENCODERS))
    ap.add_argument("--iterations", nargs="+", type=int, default=list(ITERATIONS))
    ap.add_argument("--rules", nargs="+", default=list(RULES))
    ap.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows = run(Path(args.workdir), quick=args.quick, cases=tuple(args.cases), duration_s=args.duration,
               configs=grid(args.encoders, args.iterations, args.rules))
    text = (f"Hardware: {hardware()}. {len(rows)} sorts in {(time.perf_counter() - t0) / 60:.1f} min. Command: "
            f"`python scripts/benchmark_ablation.py {' '.join(argv if argv is not None else sys.argv[1:])}`.\n\n"
            + table(rows))
    emit(text)
    plot(rows, Path(args.workdir) / "ablation.png")
    if not args.no_doc and not args.quick:
        plot(rows, DOC.parent / "img" / "ablation.png")
        write_block(DOC, "ABLATION", text + "\n\n![accuracy and encoder time against T](img/ablation.png)",
                    section=SECTION)
    return rows
