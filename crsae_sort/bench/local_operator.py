"""One FISTA iteration with dense against local atoms on a Neuropixels-like probe, on the CPU.

The iteration's operator work is ``r = H^T (y - H z)``: 4 C M K flops per sample with dense
atoms, 4 K sum_c |S_c| with local ones (crsae_sort/local_operator.py evaluates
4 K sum_j |A_j| |U_j|: blocks of atoms on the union of their supports). Times the forward
pass, and forward plus backward to the codes and the dictionary (training), median of
``--repeats`` runs, float32, ``--threads`` torch threads, a batch of 8 windows x 3000 samples,
K = 30 (2 ms at 15 kHz), on 384 contacts in 2 columns at 20 µm pitch, C in {120, 300} atoms,
``radius_um`` in {50, 100}. Also:

* the per-atom grouped conv (gather ``y[:, support]``, ``conv1d(groups=C)``), the first design,
  forward only, median of ``repeats - 2`` runs, at C = 300 and 50 µm;
* a shared temporal basis of rank R (Kilosort-style, ``a[c,s,k] = sum_r u[c,s,r] v[r,k]``):
  ``H^T`` filters each channel with the R basis vectors (2 M R K flops per sample) then mixes
  the R M filtered channels into atoms on the same blocks (2 R sum_j |A_j| |U_j|); forward only,
  at C = 300 and 50 µm, v the top R right singular vectors of all local waveforms;
* the cheap Lipschitz bound against the exact one on spike-like templates (S = 10 channels).

    python scripts/benchmark_local_operator.py            # about 5 minutes on 2 shared cores
    python scripts/benchmark_local_operator.py --tiny     # seconds: the code paths, small sizes
"""
from __future__ import annotations

import argparse
import logging
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from crsae_sort.model.local_operator import (H_local, H_local_adjoint, channel_supports, lipschitz_bound_local,
                                       lipschitz_constant_local, local_layout)
from crsae_sort.model.operator import H, H_adjoint
from crsae_sort.runlog import cpu_name

from .docs import emit

logger = logging.getLogger(__name__)

FULL = dict(n_channels=384, atoms=(120, 300), radii_um=(50.0, 100.0), k=30, batch=8, n_samples=3000, ranks=(3, 6))
TINY = dict(n_channels=32, atoms=(12,), radii_um=(30.0,), k=10, batch=2, n_samples=200, ranks=(3,))


def probe_locations(n_channels: int, pitch_um: float = 20.0) -> np.ndarray:
    """``(n_channels, 2)`` contacts in µm: 2 columns, ``pitch_um`` apart in x and y (column-major order)."""
    from probeinterface import generate_multi_columns_probe

    probe = generate_multi_columns_probe(num_columns=2, num_contact_per_column=n_channels // 2,
                                         xpitch=pitch_um, ypitch=pitch_um)
    return probe.contact_positions


def spike_like_templates(locations: np.ndarray, peaks: np.ndarray, support: torch.Tensor, mask: torch.Tensor,
                         k: int, seed: int = 0) -> torch.Tensor:
    """Unit-norm local atoms ``(C, S, K)``: a biphasic spike, Gaussian in space (sigma 15-35 µm)
    around the peak, wider and later (40 µm per sample) with distance."""
    rng = np.random.default_rng(seed)
    t = np.arange(k)
    a = np.zeros((*support.shape, k))
    for c, peak in enumerate(peaks):
        width, t0, sigma = rng.uniform(0.05, 0.12) * k, rng.uniform(0.35, 0.45) * k, rng.uniform(15, 35)
        for s in np.flatnonzero(mask[c].numpy()):
            d = np.linalg.norm(locations[support[c, s]] - locations[peak])
            tt, w = t - t0 - d / 40.0, width * (1 + d / 100.0)
            wave = -np.exp(-tt ** 2 / (2 * w ** 2)) + 0.4 * np.exp(-(tt - 2.5 * w) ** 2 / (2 * (1.8 * w) ** 2))
            a[c, s] = np.exp(-d ** 2 / (2 * sigma ** 2)) * wave
    a = torch.as_tensor(a)
    return a / a.flatten(1).norm(dim=1).view(-1, 1, 1)


def time_iteration(op, op_adjoint, y, z, weight, repeats: int) -> tuple[float, float]:
    """Median seconds of ``r = H^T (y - H z)`` (forward) and of forward + backward to z and ``weight``."""
    forward, total = [], []
    for _ in range(repeats):
        z.grad = weight.grad = None
        t0 = time.perf_counter()
        r = op_adjoint(y - op(z))
        t1 = time.perf_counter()
        r.sum().backward()
        t2 = time.perf_counter()
        forward.append(t1 - t0)
        total.append(t2 - t0)
    return statistics.median(forward), statistics.median(total)


def median_seconds(fn, repeats: int) -> float:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def grouped_iteration(y, z, a, support, mask):
    """The per-atom grouped-conv design: ``(B, C S, N)`` intermediates, ``groups = C``."""
    n_atoms, width, k = a.shape
    w = (a * mask.unsqueeze(-1)).detach()
    spread = F.conv1d(F.pad(z, (k - 1, k - 1)), w.flip(-1).reshape(n_atoms * width, 1, k), groups=n_atoms)
    y_hat = y.new_zeros(y.shape).index_add_(1, support.reshape(-1), spread)
    return F.conv1d((y - y_hat).index_select(1, support.reshape(-1)), w, groups=n_atoms)


class LowRank:
    """Forward ``H`` and ``H^T`` of ``a[c,s,k] = sum_r u[c,s,r] v[r,k]`` on the blocks of a layout.

    ``(H^T y)[:, A_j] = conv1d(Y[:, U_j x R], u_j)`` with ``Y[b, m, r, n] = sum_k v[r,k] y[b,m,n+k]``;
    ``H z`` mixes ``z`` onto ``M x R`` filtered channels, then one convolution with ``v`` per channel.
    """

    def __init__(self, u: torch.Tensor, v: torch.Tensor, layout):
        self.v, self.layout, self.rank = v, layout, v.shape[0]
        self.weights, self.index = [], []
        for block in layout.blocks:
            w = u.new_zeros(len(block.atoms), len(block.channels), self.rank)
            w.scatter_add_(1, block.position[..., :self.rank], u[block.atoms] * block.mask)
            self.weights.append(w.reshape(len(block.atoms), -1, 1))  # (A, U R, 1)
            self.index.append((block.channels.unsqueeze(1) * self.rank + torch.arange(self.rank)).reshape(-1))

    def adjoint(self, y):
        b, m, n = y.shape
        k = self.v.shape[1]
        filtered = F.conv1d(y.reshape(b * m, 1, n), self.v.unsqueeze(1)).reshape(b, m * self.rank, n - k + 1)
        out = y.new_empty(b, sum(len(blk.atoms) for blk in self.layout.blocks), n - k + 1)
        for block, w, index in zip(self.layout.blocks, self.weights, self.index):
            out.index_copy_(1, block.atoms, F.conv1d(filtered.index_select(1, index), w))
        return out

    def synthesis(self, z):
        b, _, n_codes = z.shape
        k, m = self.v.shape[1], self.layout.n_channels
        mixed = z.new_zeros(b, m * self.rank, n_codes)
        for block, w, index in zip(self.layout.blocks, self.weights, self.index):
            mixed.index_add_(1, index, F.conv1d(z.index_select(1, block.atoms), w.transpose(0, 1)))
        mixed = F.pad(mixed.reshape(b * m, self.rank, n_codes), (k - 1, k - 1))
        return F.conv1d(mixed, self.v.flip(-1).unsqueeze(0)).reshape(b, m, n_codes + k - 1)


def lipschitz_ratio(cfg, seed=0) -> dict:
    """Cheap bound over exact bound on spike-like templates: the widest atom count, the smallest radius."""
    locations = probe_locations(cfg["n_channels"])
    peaks = np.random.default_rng(seed).integers(0, len(locations), max(cfg["atoms"]))
    support, mask = channel_supports(locations, peaks, min(cfg["radii_um"]))
    a = spike_like_templates(locations, peaks, support, mask, cfg["k"], seed)
    t0 = time.perf_counter()
    exact = lipschitz_constant_local(a, support, mask, len(locations))
    t1 = time.perf_counter()
    cheap = float(lipschitz_bound_local(a.float(), support, mask, len(locations)))
    t2 = time.perf_counter()
    return dict(n_atoms=len(peaks), width=support.shape[1], exact=exact, cheap=cheap, ratio=cheap / exact,
                exact_s=t1 - t0, cheap_s=t2 - t1)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="small sizes, one repeat: checks the code paths")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the progress lines, on stderr
    cfg, repeats = (TINY, 1) if args.tiny else (FULL, args.repeats)
    torch.set_num_threads(args.threads)
    m, k, b, n = cfg["n_channels"], cfg["k"], cfg["batch"], cfg["n_samples"]
    locations = probe_locations(m)
    rng = np.random.default_rng(0)
    g = torch.Generator().manual_seed(0)
    y = torch.randn(b, m, n, generator=g)
    rows, lowrank, grouped = [], [], []
    t_start = time.perf_counter()
    for n_atoms in cfg["atoms"]:
        peaks = rng.integers(0, m, n_atoms)
        z = (torch.rand(b, n_atoms, n - k + 1, generator=g) < 0.01).float().requires_grad_()
        dense = torch.randn(n_atoms, m, k, generator=g).requires_grad_()
        dense_fwd, dense_total = time_iteration(lambda x: H(x, dense), lambda r: H_adjoint(r, dense), y, z, dense,
                                                repeats)
        for radius_um in cfg["radii_um"]:
            support, mask = channel_supports(locations, peaks, radius_um)
            layout = local_layout(support, mask, m, k)
            a = spike_like_templates(locations, peaks, support, mask, k).float().requires_grad_()
            local_fwd, local_total = time_iteration(lambda x: H_local(x, a, layout),
                                                    lambda r: H_local_adjoint(r, a, layout), y, z, a, repeats)
            ideal, evaluated = int(mask.sum()), layout.pairs_evaluated
            rows.append(dict(n_atoms=n_atoms, radius_um=radius_um, width=support.shape[1],
                             mean_support=ideal / n_atoms, blocks=len(layout.blocks),
                             gflop_dense=4 * n_atoms * m * k * b * n / 1e9, gflop_local=4 * ideal * k * b * n / 1e9,
                             gflop_blocks=4 * evaluated * k * b * n / 1e9, dense_fwd_s=dense_fwd,
                             local_fwd_s=local_fwd, dense_total_s=dense_total, local_total_s=local_total))
            logger.info("C=%d radius=%.0f um: dense %.3f/%.3f s, local %.3f/%.3f s (fwd/fwd+bwd), %.0f s in",
                        n_atoms, radius_um, dense_fwd, dense_total, local_fwd, local_total,
                        time.perf_counter() - t_start)
            if (n_atoms, radius_um) != (max(cfg["atoms"]), min(cfg["radii_um"])):
                continue
            with torch.no_grad():  # the alternatives, on the largest dictionary with the narrowest supports
                grouped_fwd = median_seconds(lambda: grouped_iteration(y, z, a, support, mask), max(1, repeats - 2))
                grouped.append(dict(n_atoms=n_atoms, radius_um=radius_um, fwd_s=grouped_fwd, local_fwd_s=local_fwd))
                for rank in cfg["ranks"]:
                    # the rank-R truncation of a shared basis (SVD of all local waveforms): same shapes, fewer flops
                    flat = a.detach().reshape(-1, k)
                    v = torch.linalg.svd(flat, full_matrices=False)[2][:rank]  # (R, K)
                    low = LowRank((flat @ v.T).reshape(n_atoms, -1, rank), v, layout)
                    if args.tiny:  # the low-rank operator is H_local of its rank-R dictionary
                        a_r = (flat @ v.T @ v).reshape(a.shape)
                        torch.testing.assert_close(low.adjoint(y), H_local_adjoint(y, a_r, layout), rtol=1e-4, atol=1e-4)
                        torch.testing.assert_close(low.synthesis(z), H_local(z, a_r, layout), rtol=1e-4, atol=1e-4)
                    fwd = median_seconds(lambda: low.adjoint(y - low.synthesis(z)), repeats)
                    gflop = 4 * rank * (m * k + evaluated) * b * n / 1e9
                    lowrank.append(dict(n_atoms=n_atoms, radius_um=radius_um, rank=rank, gflop=gflop, fwd_s=fwd,
                                        local_fwd_s=local_fwd, gflop_blocks=rows[-1]["gflop_blocks"]))
    lipschitz = lipschitz_ratio(cfg)
    report = dict(cpu=cpu_name(), threads=args.threads, torch=torch.__version__, config=cfg, rows=rows,
                  grouped=grouped, lowrank=lowrank, lipschitz=lipschitz, wall_s=time.perf_counter() - t_start)
    emit(format_report(report))
    return report


def format_report(r: dict) -> str:
    cfg = r["config"]
    lines = [f"CPU: {r['cpu']}, {r['threads']} torch threads, torch {r['torch']}, float32",
             f"M = {cfg['n_channels']} channels (2 columns, 20 µm), K = {cfg['k']}, batch {cfg['batch']} x "
             f"{cfg['n_samples']} samples; one iteration r = H^T (y - H z); median of the runs", "",
             "| C | radius µm | S max | mean |S_c| | blocks | GFlop dense | local ideal | local blocks "
             "| dense fwd s | local fwd s | x | dense fwd+bwd s | local fwd+bwd s | x |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for w in r["rows"]:
        lines.append(f"| {w['n_atoms']} | {w['radius_um']:.0f} | {w['width']} | {w['mean_support']:.1f} | "
                     f"{w['blocks']} | {w['gflop_dense']:.1f} | {w['gflop_local']:.2f} | {w['gflop_blocks']:.2f} | "
                     f"{w['dense_fwd_s']:.3f} | {w['local_fwd_s']:.3f} | {w['dense_fwd_s'] / w['local_fwd_s']:.1f} | "
                     f"{w['dense_total_s']:.3f} | {w['local_total_s']:.3f} | "
                     f"{w['dense_total_s'] / w['local_total_s']:.1f} |")
    lines += ["", "Per-atom grouped conv (groups = C on the gathered y[:, support]), forward:"]
    lines += [f"  C = {w['n_atoms']}, radius {w['radius_um']:.0f} µm: {w['fwd_s']:.3f} s "
              f"(blocks: {w['local_fwd_s']:.3f} s)" for w in r["grouped"]]
    lines += ["", "Shared temporal basis of rank R (forward; GFlop = 4 R (M K + sum_j |A_j||U_j|) x samples):"]
    lines += [f"  C = {w['n_atoms']}, radius {w['radius_um']:.0f} µm, R = {w['rank']}: {w['gflop']:.2f} GFlop "
              f"in {w['fwd_s']:.3f} s (full rank on blocks: {w['gflop_blocks']:.2f} GFlop in {w['local_fwd_s']:.3f} s)"
              for w in r["lowrank"]]
    lip = r["lipschitz"]
    lines += ["", f"Lipschitz, spike-like templates, C = {lip['n_atoms']}, S = {lip['width']}: exact "
              f"{lip['exact']:.3f} ({lip['exact_s']:.2f} s, float64, host), cheap {lip['cheap']:.3f} "
              f"({lip['cheap_s']:.3f} s, float32, no sync): ratio {lip['ratio']:.3f}",
              f"wall {r['wall_s']:.0f} s"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
