"""The initial dictionary on dense probes: which ground-truth units its atoms find, and at what cost.

Cases are SpikeInterface ground truth (``generate_ground_truth_recording``, 30 kHz, 2-column probe,
20 µm pitch) at 32, 64 and 128 channels. For each case and init method it reports the templates
found, the fraction of ground-truth units with SNR >= 8 that some atom matches (best-lag cosine
similarity >= 0.9 with the unit's template measured on the same preprocessed recording), and the
seconds of the init stage alone (preprocessing is shared and not counted).

Each (case, method) runs in its own process, so each pays its own numba compilation, as a sort
does. SpikeInterface's clusterers (``find_clusters_from_peaks``, ``iterative-isosplit`` and
``iterative-hdbscan``, the latter needs the ``hdbscan`` package) are given the same peaks as the
local path, and their labels are turned into atoms by the same template pass.

    python scripts/benchmark_init.py                          # 32, 64, 128 channels, every method
    python scripts/benchmark_init.py --channels 32 64 128 384 # add the Neuropixels-sized case
    python scripts/benchmark_init.py --sort                   # also sort the 64-channel case end to end
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .docs import ROOT, emit


SNR_FOUND = 8.0         # units at or above this SNR are the ones the init must find
MATCH_COSINE = 0.9      # best-lag cosine similarity that counts as "found"
UNITS = {32: 16, 64: 24, 128: 48, 384: 120}
SEED = 7
METHODS = ("global", "local", "si-isosplit", "si-hdbscan")
SI_METHODS = {"si-isosplit": "iterative-isosplit", "si-hdbscan": "iterative-hdbscan"}


def make_case(num_channels: int, num_units: int, duration_s: float, seed: int = SEED):
    """A seeded ground-truth recording on a 2-column, 20 µm-pitch probe (30 kHz) and its sorting."""
    from spikeinterface.core import generate_ground_truth_recording

    return generate_ground_truth_recording(durations=[duration_s], sampling_frequency=30000.0,
                                           num_channels=num_channels, num_units=num_units, seed=seed)


def gt_templates(pre_recording, gt_sorting, decimation: int, n_before: int, n_after: int,
                 max_spikes: int = 200, max_seconds: float = 30.0) -> np.ndarray:
    """Each ground-truth unit's mean waveform ``(n_units, n_before + n_after, n_channels)`` in model space.

    Cut from the preprocessed recording (the data the atoms come from) at the ground-truth times,
    re-centred on the trough of its strongest channel, as atoms are centred on a detected peak.
    """
    fs = pre_recording.get_sampling_frequency()
    n_read = min(pre_recording.get_num_samples(0), int(max_seconds * fs))
    traces = pre_recording.get_traces(segment_index=0, start_frame=0, end_frame=n_read)
    pad = n_before + n_after
    window = np.arange(-n_before - pad, n_after + pad)
    out = []
    for unit in gt_sorting.unit_ids:
        times = gt_sorting.get_unit_spike_train(unit, segment_index=0) // decimation
        times = times[(times + window[0] >= 0) & (times + window[-1] < n_read)][:max_spikes]
        wide = traces[times[:, None] + window[None, :]].mean(axis=0)   # (len(window), n_channels)
        channel = int(np.argmax(np.ptp(wide, axis=0)))
        centre = pad + n_before
        trough = centre - pad // 2 + int(np.argmin(wide[centre - pad // 2: centre + pad // 2, channel]))
        out.append(wide[trough - n_before: trough + n_after])
    return np.stack(out)


def match_units(dictionary: np.ndarray, templates: np.ndarray) -> np.ndarray:
    """Best-lag cosine similarity of each ground-truth template with its closest atom, ``(n_units,)``.

    ``dictionary`` is ``(n_atoms, n_channels, K)`` as ``InitialDictionary`` holds it; ``templates``
    ``(n_units, K, n_channels)``.
    """
    from crsae_sort.init_dictionary import template_similarity

    atoms = np.ascontiguousarray(dictionary.transpose(0, 2, 1)).astype(np.float64)
    both = np.concatenate([templates.astype(np.float64), atoms])
    sim = template_similarity(both)[: len(templates), len(templates):]
    return sim.max(axis=1) if sim.shape[1] else np.zeros(len(templates))


def load_case(workdir: Path, num_channels: int, duration_s: float):
    """The case saved as a binary folder (generated once), its ground truth and unit SNRs."""
    import spikeinterface as si
    from crsae_sort.demo import unit_snrs

    folder = workdir / f"gt{num_channels}ch_{duration_s:g}s"
    if not (folder / "snrs.json").exists():
        recording, gt = make_case(num_channels, UNITS[num_channels], duration_s)
        recording.save(folder=folder / "recording", n_jobs=1, progress_bar=False, overwrite=True)
        gt.save(folder=folder / "gt", overwrite=True)
        (folder / "snrs.json").write_text(json.dumps(unit_snrs(si.load(folder / "recording"), si.load(folder / "gt"))))
    snrs = json.loads((folder / "snrs.json").read_text())
    return folder, si.load(folder / "recording"), si.load(folder / "gt"), snrs


def spikeinterface_init(recording, params, method: str, seed: int = 0):
    """Atoms from SpikeInterface's clusterer on the local path's peaks, as :class:`InitialDictionary` would hold."""
    from spikeinterface.core.base import base_peak_dtype
    from spikeinterface.sortingcomponents.clustering import find_clusters_from_peaks
    from crsae_sort import init_dictionary as idm, init_local as loc

    fs = recording.get_sampling_frequency()
    n_before = max(1, int(round(params.template_ms_before * fs / 1000)))
    n_after = max(1, int(round(params.template_ms_after * fs / 1000)))
    slices = idm.random_slices(recording, params.init_duration_s, seed)
    hoods = loc.neighbourhoods(idm.channel_locations_um(recording), params.neighbourhood_radius_um, params.spatial_bin_um)
    peaks = loc.detect_local(recording, slices, params.detect_threshold, n_before, n_after, hoods)
    table = np.zeros(peaks.n_peaks, dtype=base_peak_dtype)
    table["sample_index"] = np.array([start for _, start, _ in slices])[peaks.slice_index] + peaks.sample_index
    table["segment_index"] = np.array([seg for seg, _, _ in slices])[peaks.slice_index]
    table["channel_index"] = peaks.channel_index
    order = np.lexsort((table["sample_index"], table["segment_index"]))
    kwargs = dict(seed=seed, noise_levels=np.ones(recording.get_num_channels(), "float32"), verbose=False)
    _, labels = find_clusters_from_peaks(recording, table[order], method=SI_METHODS[method],
                                         method_kwargs=kwargs, job_kwargs=dict(n_jobs=1, progress_bar=False))
    found = np.empty(peaks.n_peaks, dtype=np.int64)
    found[order] = labels
    ids = np.unique(found[found >= 0])
    dense = np.full(peaks.n_peaks, -1)
    dense[found >= 0] = np.searchsorted(ids, found[found >= 0])
    atoms, _ = loc.full_templates(recording, slices, peaks, dense, hoods, n_before, n_after, seed)
    norms = np.linalg.norm(atoms.reshape(len(atoms), -1), axis=1)
    atoms, norms = atoms[norms >= params.detect_threshold], norms[norms >= params.detect_threshold]
    return np.ascontiguousarray(atoms.transpose(0, 2, 1)) / norms[:, None, None], n_before


def run_init(case_folder: Path, method: str, duration_s: float) -> dict:
    """One (case, method) measurement, in this process: atoms, units found, init seconds."""
    import spikeinterface as si
    from crsae_sort.init_dictionary import initial_dictionary
    from crsae_sort.params import SortParams
    from crsae_sort.preprocess import preprocess

    recording, gt = si.load(case_folder / "recording"), si.load(case_folder / "gt")
    snrs = json.loads((case_folder / "snrs.json").read_text())
    init_method = method if method in ("global", "local") else "local"
    params = SortParams.from_dict({"init_method": init_method, "init_duration_s": duration_s})
    pre = preprocess(recording, params.preprocess, seed=0)
    load0, wall0, cpu0 = _loadavg(), time.perf_counter(), time.process_time()
    if method.startswith("si-"):
        dictionary, n_before = spikeinterface_init(pre.recording, params.init, method)
        outside = None
    else:
        init = initial_dictionary(pre.recording, params.init, seed=0)
        dictionary, n_before, outside = init.dictionary, init.n_before, init.outside_energy
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    k = dictionary.shape[-1]
    best = match_units(dictionary, gt_templates(pre.recording, gt, pre.decimation, n_before, k - n_before))
    strong = np.array([snrs[str(u)] >= SNR_FOUND for u in gt.unit_ids])
    return dict(method=method, n_channels=recording.get_num_channels(), n_units=len(gt.unit_ids),
                n_atoms=int(len(dictionary)), n_strong=int(strong.sum()),
                found=float(np.mean(best[strong] >= MATCH_COSINE)), wall_s=wall, cpu_s=cpu,
                load=[load0, _loadavg()],
                outside_energy_median=float(np.median(outside)) if outside is not None else None,
                outside_energy_max=float(np.max(outside)) if outside is not None else None)


def run_sort(case_folder: Path, method: str, out: Path) -> dict:
    """Sort the case end to end with ``init_method``; accuracy (SNR >= 5), atoms' drift and lambda."""
    import spikeinterface as si
    from spikeinterface.comparison import compare_sorter_to_ground_truth
    from crsae_sort import pipeline
    from crsae_sort.init_dictionary import template_similarity

    recording, gt = si.load(case_folder / "recording"), si.load(case_folder / "gt")
    snrs = json.loads((case_folder / "snrs.json").read_text())
    kept = {}
    inner = pipeline.initial_dictionary

    def capture(*args, **kwargs):  # the initial dictionary, to compare the trained one with
        kept["init"] = inner(*args, **kwargs)
        return kept["init"]

    pipeline.initial_dictionary = capture
    load0, wall0 = _loadavg(), time.perf_counter()
    result = pipeline.sort(recording, out, {"init_method": method}, overwrite=True, progress=False)
    wall = time.perf_counter() - wall0
    perf = compare_sorter_to_ground_truth(gt, result.sorting, exhaustive_gt=True).get_performance()
    acc = [float(perf.loc[u, "accuracy"]) for u in gt.unit_ids if snrs[str(u)] >= 5]
    init = kept["init"].dictionary
    trained = result.model.dictionary.detach().cpu().numpy()
    both = np.concatenate([init, trained]).transpose(0, 2, 1).astype(np.float64)
    drift = np.diag(template_similarity(both)[: len(init), len(init):])       # each atom vs its trained self
    lam = np.array([row["lambda_"] for row in result.summary.to_dict()["units"]])
    return dict(method=method, accuracy_snr5=float(np.mean(acc)), n_gt_snr5=len(acc),
                accuracy_per_unit={str(u): float(perf.loc[u, "accuracy"]) for u in gt.unit_ids},
                n_atoms=int(len(init)), n_units=len(result.summary.units), wall_s=wall,
                stages=result.summary.seconds, load=[load0, _loadavg()],
                drift_cosine_min=float(drift.min()), drift_cosine_median=float(np.median(drift)),
                lambda_median=float(np.median(lam)) if len(lam) else None,
                lambda_range=[float(lam.min()), float(lam.max())] if len(lam) else None,
                training_steps=result.summary.training_steps)



def _loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return float("nan")


def _child(args: list[str], threads: int, timeout_s: float) -> dict:
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               NUMBA_NUM_THREADS=str(threads), PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    try:
        proc = subprocess.run([sys.executable, "-m", "crsae_sort.bench.init", "--child", *args], capture_output=True, text=True, env=env,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return dict(status=f"timed out after {timeout_s:.0f} s")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    last = [x for x in proc.stderr.splitlines() if x.strip()]
    return dict(status=f"failed: {last[-1][:160] if last else proc.returncode}")


def hardware(threads: int) -> str:
    from crsae_sort.runlog import cpu_name

    return f"{cpu_name()}, {os.cpu_count()} logical CPUs, {threads} thread(s) per run"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--channels", type=int, nargs="+", default=[32, 64, 128], choices=sorted(UNITS))
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--duration-s", type=float, default=60.0, help="length of each case (and init_duration_s)")
    ap.add_argument("--sort", action="store_true", help="also sort the 64-channel case, global vs local init")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--timeout-s", type=float, default=1800.0)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/crsae_benchmark_init"))
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, folder, *rest = args.child
        res = run_init(Path(folder), rest[0], float(rest[1])) if kind == "init" else run_sort(Path(folder), rest[0], Path(rest[1]))
        emit("RESULT " + json.dumps(res), flush=True)
        return res
    args.workdir.mkdir(parents=True, exist_ok=True)
    emit(f"Hardware: {hardware(args.threads)}. Load average at start: {_loadavg():.2f} "
          f"(shared machine: the load is given per row).\n", flush=True)
    rows, sorts = [], []
    emit("| channels | GT units (SNR >= 8) | method | templates | units found (SNR >= 8) | init wall s | init CPU s "
          "| load before/after | atom energy outside radius (median/max) |")
    emit("|---|---|---|---|---|---|---|---|---|", flush=True)
    for n in args.channels:
        folder, *_ = load_case(args.workdir, n, args.duration_s)
        for method in args.methods:
            if method == "si-hdbscan" and not _has("hdbscan"):
                rows.append(dict(method=method, n_channels=n, status="hdbscan not installed"))
                emit(f"| {n} | | {method} | not run: the hdbscan package is not installed | | | | | |", flush=True)
                continue
            r = _child(["init", str(folder), method, str(args.duration_s)], args.threads, args.timeout_s)
            r.setdefault("method", method)
            r.setdefault("n_channels", n)
            rows.append(r)
            emit(_init_row(r), flush=True)
    if args.sort:
        folder, *_ = load_case(args.workdir, 64, args.duration_s)
        emit("\n| init | templates | units out | accuracy (SNR >= 5) | atoms vs trained: min/median cosine "
              "| lambda median [min, max] | train steps | sort wall s | load before/after |")
        emit("|---|---|---|---|---|---|---|---|---|", flush=True)
        for method in ("global", "local"):
            r = _child(["sort", str(folder), method, str(args.workdir / f"sort_{method}")], args.threads,
                       args.timeout_s)
            r.setdefault("method", method)
            sorts.append(r)
            emit(_sort_row(r), flush=True)
    report = dict(hardware=hardware(args.threads), init=rows, sort=sorts)
    (args.workdir / "benchmark_init.json").write_text(json.dumps(report, indent=1))
    return report


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _init_row(r: dict) -> str:
    if "found" not in r:
        return f"| {r['n_channels']} | | {r['method']} | {r.get('status')} | | | | | |"
    outside = (f"{r['outside_energy_median']:.3f} / {r['outside_energy_max']:.3f}"
               if r["outside_energy_median"] is not None else "")
    return (f"| {r['n_channels']} | {r['n_units']} ({r['n_strong']}) | {r['method']} | {r['n_atoms']} | "
            f"{r['found']:.2f} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['load'][0]:.1f} / {r['load'][1]:.1f} | "
            f"{outside} |")


def _sort_row(r: dict) -> str:
    if "accuracy_snr5" not in r:
        return f"| {r['method']} | {r.get('status')} | | | | | | | |"
    lam = f"{r['lambda_median']:.2f} [{r['lambda_range'][0]:.2f}, {r['lambda_range'][1]:.2f}]" if r["lambda_range"] else ""
    return (f"| {r['method']} | {r['n_atoms']} | {r['n_units']} | {r['accuracy_snr5']:.3f} ({r['n_gt_snr5']} units) | "
            f"{r['drift_cosine_min']:.2f} / {r['drift_cosine_median']:.2f} | {lam} | {r['training_steps']} | "
            f"{r['wall_s']:.0f} | {r['load'][0]:.1f} / {r['load'][1]:.1f} |")


if __name__ == "__main__":
    main()
