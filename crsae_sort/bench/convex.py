"""``crsae-sort bench convex``: the CRsAE encoder against convex solvers of the same problem.

One ground-truth tetrode (``generate_ground_truth_recording``, 30 kHz) is sorted once; its
learned dictionary, lambda and preprocessed (whitened, decimated) traces define the problem
of ``convex.py``. Every method then encodes the first ``length_s`` seconds of those traces:

* ``crsae``: the encoder as the sorter runs it (T iterations, screened, chunked, float32);
* ``crsae-dense``: T iterations on every sample (no screening), chunked, float32;
* ``fista``: FISTA to convergence (float64); ``admm``: SPORCO's ConvBPDN (float64);
* ``cbp``: continuous basis pursuit, an SOCP per window through cvxpy (Clarabel).

Each (method, length) runs in its own process: one untimed warm-up on a short slice (for CBP,
one window with a spike, so that cvxpy and Clarabel have run once), then
``repeats`` timed solves. Working memory is the peak of the process's own memory (RssAnon)
above what it held before (the input traces excluded): for the convex solvers during the timed
solves (they hold the whole problem and its codes); for the CRsAE encoder during one more pass
run as the sorter runs it, each chunk's codes read out into spikes and dropped (the worker is
:mod:`crsae_sort.bench.convex_worker`). Codes become spikes by the sorter's read-out (local maxima, the
amplitude floor), scored against the ground truth with SpikeInterface.
"""
from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

METHODS = ("crsae", "crsae-dense", "fista", "admm", "cbp")
CONVEX = ("fista", "admm", "cbp")


@dataclass(frozen=True)
class BenchPlan:
    """Lengths (s) per method, repeats, and the solvers' tolerances."""
    lengths_s: tuple[float, ...]
    encoder_lengths_s: tuple[float, ...]   # extra lengths for the CRsAE encoder only
    repeats: int = 3
    fista_tol: float = 1e-5
    admm_tol: float = 1e-4
    cbp_threshold: float = 4.0
    cbp_reweights: int = 2
    cbp_max_s: float = float("inf")        # CBP is slow: longest length it runs
    methods: tuple[str, ...] = METHODS


PLANS = {
    "tiny": BenchPlan(lengths_s=(0.01, 0.3), encoder_lengths_s=(), repeats=1),
    "quick": BenchPlan(lengths_s=(0.01, 0.1, 1.0), encoder_lengths_s=(10.0,), cbp_max_s=0.1),
    "full": BenchPlan(lengths_s=(0.01, 0.03, 0.1, 0.3, 1.0, 3.0), encoder_lengths_s=(10.0, 30.0, 100.0)),
}


def prepare(folder: Path, duration_s: float, seed: int = 2205) -> Path:
    """Sort a ground-truth tetrode of ``duration_s`` and save the problem to ``folder/problem.npz``."""
    from ..demo import ground_truth_tetrode
    from ..params import SortParams
    from ..pipeline import sort

    path = folder / "problem.npz"
    if path.exists() and float(np.load(path)["duration_s"]) >= duration_s:
        return path
    recording, gt = ground_truth_tetrode(duration_s, seed)
    params = SortParams.from_dict({"device": "cpu"})
    result = sort(recording, None, params, progress=False)
    return save_problem(folder, recording, gt, result.model, params)


def save_problem(folder: Path, recording, gt_sorting, model, params) -> Path:
    """Write ``problem.npz``: the preprocessed traces ``y`` ``(M, N)``, the model and the ground truth."""
    from ..demo import unit_snrs
    from ..infer import peak_offsets
    from ..preprocess import preprocess

    folder.mkdir(parents=True, exist_ok=True)
    pre = preprocess(recording, params.preprocess, params.run.seed)
    y = pre.recording.get_traces(segment_index=0).T.astype(np.float32)
    gt = gt_sorting.to_spike_vector()
    path = folder / "problem.npz"
    from ..io.results import save_torch

    save_torch(model.to_state(), folder / "model.pt")  # the worker rebuilds the model from its state
    np.savez(path, y=y, dictionary=model.dense_dictionary().cpu().numpy(), lam=model.lam.detach().cpu().numpy(),
             reference=model.reference_amplitude.cpu().numpy(), offsets=peak_offsets(model.dictionary),
             n_iter=model.n_iter, decimation=pre.decimation, fs=recording.get_sampling_frequency(),
             duration_s=recording.get_total_duration(), gt_sample=gt["sample_index"], gt_unit=gt["unit_index"],
             gt_unit_ids=np.asarray([str(u) for u in gt_sorting.unit_ids]),
             gt_snr=np.asarray(list(unit_snrs(recording, gt_sorting).values())),
             screen_fraction=params.inference.screen_fraction, chunk_s=params.inference.chunk_duration_s,
             amplitude_fraction=params.inference.amplitude_fraction, refractory_ms=params.inference.refractory_ms)
    return path


def _run_worker(problem: Path, method: str, length_s: float, plan_name: str, device: str) -> dict:
    cmd = [sys.executable, "-m", "crsae_sort.bench.convex_worker", str(problem), method, repr(length_s), plan_name, device]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return dict(method=method, length_s=length_s, error=tail)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- the parent: plan, scoring, table and plots -------------------------------------------

def score(problem: Path, row: dict) -> dict:
    """Accuracy/recall/precision, means over ground-truth units of SNR >= 5 with a spike in the slice.

    Not scored (empty) when the slice holds fewer than 10 ground-truth spikes.
    """
    import spikeinterface.core as sc
    from spikeinterface.comparison import compare_sorter_to_ground_truth

    p = np.load(problem)
    n = int(row["length_s"] * float(p["fs"]))
    in_slice = p["gt_sample"] < n
    ids = [str(u) for u in p["gt_unit_ids"]]
    gt = sc.NumpySorting.from_samples_and_labels([p["gt_sample"][in_slice]],
                                                 [np.asarray(ids)[p["gt_unit"][in_slice]]], float(p["fs"]),
                                                 unit_ids=ids)
    present = [u for u, snr in zip(ids, p["gt_snr"]) if snr >= 5 and np.any(np.asarray(ids)[p["gt_unit"][in_slice]] == u)]
    if not present or in_slice.sum() < 10:
        return {}
    counts = {"gt_units": len(present), "gt_spikes": int(in_slice.sum())}
    found = np.asarray(row["spike_sample"], np.int64)
    if len(found) == 0:
        return {"accuracy": 0.0, "recall": 0.0, "precision": float("nan")} | counts
    order = np.argsort(found, kind="stable")
    tested = sc.NumpySorting.from_samples_and_labels([found[order]], [np.asarray(row["spike_unit"])[order]],
                                                     float(p["fs"]))
    perf = compare_sorter_to_ground_truth(gt, tested, exhaustive_gt=True).get_performance()
    return {k: float(perf.loc[present, k].mean()) for k in ("accuracy", "recall", "precision")} | counts


def _check_solvers(methods: tuple[str, ...]) -> None:
    """Refuse before any work when a solver's library is missing."""
    import importlib.util

    from ..errors import InputError

    needs = {"admm": "sporco", "cbp": "cvxpy"}
    missing = sorted({needs[m] for m in methods if m in needs and importlib.util.find_spec(needs[m]) is None})
    if missing:
        raise InputError(f"{', '.join(missing)} not installed: pip install 'crsae-sort[bench]' "
                         "(or leave those methods out with --methods)")


def run(folder: Path, plan_name: str = "quick", methods: tuple[str, ...] | None = None,
        device: str = "cpu") -> list[dict]:
    """Prepare the problem (unless ``folder/problem.npz`` is long enough), run every (method,
    length) in a fresh process, and score. Returns one row per run."""
    plan = PLANS[plan_name]
    methods = tuple(methods or plan.methods)
    unknown = set(methods) - set(METHODS)
    if unknown:
        from ..errors import InputError

        raise InputError(f"unknown method(s) {sorted(unknown)}; choose from {', '.join(METHODS)}")
    _check_solvers(methods)
    from ..device import describe_device, resolve_device

    device = str(resolve_device(device))
    logger.info("encoder device: %s", describe_device(resolve_device(device)))
    longest = max(plan.lengths_s + plan.encoder_lengths_s)
    problem = prepare(folder, max(30.0, longest))
    rows = []
    for length in plan.lengths_s + plan.encoder_lengths_s:
        for method in methods:
            if length in plan.encoder_lengths_s and method not in ("crsae", "crsae-dense"):
                continue
            if method == "cbp" and length > plan.cbp_max_s:
                continue
            row = _run_worker(problem, method, length, plan_name, device)
            if "error" not in row:
                row.update(score(problem, row))
                row["median_s"] = statistics.median(row["times_s"])
            logger.info("%s %.2f s: %s", method, length, row.get("median_s", row.get("error")))
            rows.append(row)
    best = {}
    for row in rows:  # the best objective of the convex solvers run to a tolerance
        if "objective" in row and row["method"] in ("fista", "admm"):
            best[row["length_s"]] = min(best.get(row["length_s"], np.inf), row["objective"])
    for row in rows:
        if "objective" in row and row["length_s"] in best and row.get("own_objective") is None:
            row["gap"] = (row["objective"] - best[row["length_s"]]) / abs(best[row["length_s"]])
        row.pop("spike_sample", None)
        row.pop("spike_unit", None)
    (folder / "results.json").write_text(json.dumps(dict(plan=plan_name, rows=rows), indent=1))
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: per length, each method's seconds per second of recording and its speedup."""
    out = ["| length s | method | median s | s per s of recording | time / crsae's | iterations | "
           "objective | gap to best convex | memory MB | accuracy | recall | precision |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    by_length = {}
    for r in rows:
        by_length.setdefault(r["length_s"], {})[r["method"]] = r
    for length, group in by_length.items():
        ours = group.get("crsae", {}).get("median_s")
        for method, r in group.items():
            if "error" in r:
                out.append(f"| {length:g} | {method} | failed: {r['error']} |" + " |" * 9)
                continue
            speed = f"{r['median_s'] / ours:.3g}x" if ours else ""
            acc = " | ".join(f"{r[k]:.3f}" if k in r else "" for k in ("accuracy", "recall", "precision"))
            if r.get("own_objective") is not None:  # CBP solves its own (continuous-shift) problem
                objective, gap = f"{r['own_objective']:.1f} (CBP's own)", "n/a"
            else:
                objective, gap = f"{r['objective']:.2f}", f"{r['gap']:.1e}" if "gap" in r else "-"
            out.append(f"| {length:g} | {method} | {r['median_s']:.4g} | {r['median_s'] / length:.4g} | {speed} | "
                       f"{r['n_iter']} | {objective} | {gap} | {r['memory_mb']:.1f} | {acc} |")
    return "\n".join(out)


def describe(plan_name: str, device: str = "cpu") -> str:
    """The hardware, versions and solver settings behind a table (one paragraph)."""
    from importlib.metadata import PackageNotFoundError, version

    from ..runlog import cpu_name

    import torch

    plan = PLANS[plan_name]
    cpu = cpu_name()
    libs = []
    for name in ("torch", "sporco", "cvxpy", "clarabel", "spikeinterface"):
        try:
            libs.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            libs.append(f"{name} not installed")
    from ..device import describe_device, resolve_device

    where = describe_device(resolve_device(device))
    return (f"Hardware: {cpu}, {os.cpu_count()} cores (torch {torch.get_num_threads()} threads); CRsAE encoder on "
            f"{where}, convex solvers on the CPU; "
            f"{', '.join(libs)}. Plan `{plan_name}`: median of {plan.repeats} timed solves after one warm-up, "
            f"each (method, length) in a fresh process. FISTA stops at relative iterate change "
            f"{plan.fista_tol:g}; ADMM at SPORCO relative residual {plan.admm_tol:g}; CBP: windows where a "
            f"channel exceeds {plan.cbp_threshold:g} noise SDs, grid spacing 2 samples, Clarabel, "
            f"{plan.cbp_reweights} re-weightings. Speedup = method's median / crsae's median at the same length.")


def headline(rows: list[dict]) -> str:
    """One line per other method: its time over crsae's at the longest length both ran."""
    lines = []
    for method in ("crsae-dense",) + CONVEX:
        both = [(r["length_s"], r) for r in rows if r["method"] == method and "median_s" in r]
        ours = {r["length_s"]: r for r in rows if r["method"] == "crsae" and "median_s" in r}
        common = [(length, r) for length, r in both if length in ours]
        if not common:
            continue
        length, r = max(common, key=lambda x: x[0])
        o = ours[length]
        acc = (f"; accuracy {o['accuracy']:.3f} (crsae) vs {r['accuracy']:.3f}" if "accuracy" in o and "accuracy" in r
               else "")
        lines.append(f"- {method} takes {r['median_s'] / o['median_s']:.3g}x the time of crsae on {length:g} s "
                     f"of recording ({r['median_s']:.3g} s vs {o['median_s']:.3g} s){acc}")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """Log-log wall time and working memory against recording length, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for method in METHODS:
        pts = sorted((r["length_s"], r["median_s"], r["memory_mb"]) for r in rows
                     if r["method"] == method and "median_s" in r)
        if not pts:
            continue
        x, t, m = zip(*pts)
        ax1.loglog(x, t, "o-", label=method)
        ax2.semilogx(x, m, "o-", label=method)
    ax1.set(xlabel="recording length (s)", ylabel="wall time (s), median", title="cost against length")
    ax2.set(xlabel="recording length (s)", ylabel="peak working memory (MB)", title="memory against length")
    for ax in (ax1, ax2):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
