"""The worker of ``crsae-sort bench convex``: one method, one length, in its own process.

``python -m crsae_sort.bench.convex_worker PROBLEM METHOD LENGTH_S PLAN DEVICE`` solves the first
``LENGTH_S`` seconds of ``PROBLEM`` (written by :func:`crsae_sort.bench.convex.save_problem`)
and writes one JSON line on stdout, the protocol :mod:`crsae_sort.bench.convex` reads.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from .convex import METHODS, PLANS, BenchPlan

def _solve(method: str, p, y: np.ndarray, plan: BenchPlan, keep_codes: bool = True, device: str = "cpu"):
    """Codes ``(C, N - K + 1)`` of ``y`` by ``method``, CBP's own objective (else None), iterations.

    ``keep_codes=False`` (CRsAE only) runs the encoder as the sorter does: each chunk's codes are
    read out into spikes and dropped, so nothing of the size of the recording is held. ``device``
    is where the CRsAE encoder runs; the convex solvers are CPU libraries.
    """
    import torch

    from . import convex_solvers as convex
    from ..infer import encode_screened, read_out
    from ..model.crsae import CRsAE

    if method in ("crsae", "crsae-dense"):
        from ..chunks import chunks

        model = CRsAE.from_state(torch.load(p["model_path"], weights_only=True), device)
        screen = float(p["screen_fraction"]) if method == "crsae" else 0.0
        k = model.dictionary.shape[-1]
        n_codes = y.shape[-1] - k + 1
        chunk = int(float(p["chunk_s"]) * float(p["fs"]) / int(p["decimation"]))
        z = np.zeros((model.dictionary.shape[0], n_codes), np.float32) if keep_codes else None
        with torch.no_grad():
            for c in chunks([n_codes], chunk, model.encoder.margin(k), tail=k - 1):
                y_chunk = torch.from_numpy(y[:, c.lo:c.hi]).to(device)
                codes = encode_screened(model, y_chunk, screen)[:, c.start - c.lo: c.end - c.lo]
                if keep_codes:
                    z[:, c.start:c.end] = codes.cpu().numpy()
                else:
                    read_out(codes, 1)  # ends with a copy to the host, so GPU time is all counted
        return z, None, model.n_iter
    d, lam = p["dictionary"].astype(np.float64), p["lam"].astype(np.float64)
    if method == "fista":
        from ..model.operator import lipschitz_constant

        sol = convex.fista_to_convergence(y, d, lam, lipschitz_constant(torch.from_numpy(d)), tol=plan.fista_tol)
        return sol.z, None, sol.n_iter
    if method == "admm":
        sol = convex.admm_sporco(y, d, lam, tol=plan.admm_tol)
        return sol.z, None, sol.n_iter
    if method == "cbp":
        res = convex.cbp(y.astype(np.float64), d, lam, threshold=plan.cbp_threshold, reweights=plan.cbp_reweights)
        z = convex.cbp_codes(res, d.shape[0], y.shape[-1] - d.shape[-1] + 1)
        return z, convex.cbp_objective(y.astype(np.float64), res, lam), res.n_windows
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


def _rss_anon_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(problem: Path, method: str, length_s: float, plan: BenchPlan, device: str = "cpu") -> dict:
    """Time ``plan.repeats`` solves of the first ``length_s`` seconds; codes to spikes."""
    import threading

    import torch

    from . import convex_solvers as convex
    from ..infer import above_floor, read_out

    p = dict(np.load(problem), model_path=Path(problem).parent / "model.pt")
    fs_model = float(p["fs"]) / int(p["decimation"])
    y = np.ascontiguousarray(p["y"][:, : int(round(length_s * fs_model))])
    warm = (0, int(0.01 * fs_model))
    if method == "cbp":  # warm up on a window that holds a spike, so cvxpy and Clarabel really run
        windows = convex.cbp_windows(p["y"][:, : int(fs_model)], p["dictionary"].shape[-1], plan.cbp_threshold)
        warm = windows[0] if windows else warm
    _solve(method, p, np.ascontiguousarray(p["y"][:, warm[0]: warm[1]]), plan, device=device)
    peak, stop = [0.0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_anon_mb())
            time.sleep(0.005)

    def watch(fn):
        """Run ``fn`` and return its result; ``peak[0]`` is then its peak RssAnon above the level before (MB)."""
        stop.clear()
        base = peak[0] = _rss_anon_mb()
        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            return fn()
        finally:
            stop.set()
            thread.join()
            peak[0] -= base

    crsae = method in ("crsae", "crsae-dense")
    if crsae:  # working memory as in the sorter (spikes kept, codes dropped), measured first
        if device.startswith("cuda"):  # GPU memory: torch's own peak of allocated memory
            torch.cuda.reset_peak_memory_stats(device)
        watch(lambda: _solve(method, p, y, plan, keep_codes=False, device=device))
        memory = torch.cuda.max_memory_allocated(device) / 2**20 if device.startswith("cuda") else peak[0]
    times = []

    def timed():
        for _ in range(plan.repeats):
            t0 = time.perf_counter()
            out = _solve(method, p, y, plan, device=device)
            times.append(time.perf_counter() - t0)
        return out

    z, own_objective, n_iter = watch(timed)
    if not crsae:
        memory = peak[0]
    d, lam = p["dictionary"].astype(np.float64), p["lam"].astype(np.float64)
    lasso = convex.objective(y, z, d, lam)
    refractory = max(1, int(round(float(p["refractory_ms"]) * fs_model / 1000)))
    pos, unit, amp = read_out(torch.from_numpy(np.asarray(z, np.float32)), refractory)
    keep = above_floor(amp, unit, p["reference"], float(p["amplitude_fraction"]))
    spike_sample = (pos[keep] + p["offsets"][unit[keep]]) * int(p["decimation"])
    return dict(method=method, length_s=length_s, times_s=times, n_iter=int(n_iter), objective=lasso,
                own_objective=own_objective, memory_mb=max(memory, 0.0), threads=torch.get_num_threads(),
                device=device if method in ("crsae", "crsae-dense") else "cpu",
                spike_sample=spike_sample.tolist(), spike_unit=unit[keep].tolist())


if __name__ == "__main__":  # the entry point used by bench.convex._run_worker
    import warnings

    warnings.filterwarnings("ignore")
    _problem, _method, _length, _plan, _device = sys.argv[1:6]
    sys.stdout.write(json.dumps(worker(Path(_problem), _method, float(_length), PLANS[_plan], _device)) + "\n")
