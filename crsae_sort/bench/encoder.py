"""Throughput of the unrolled FISTA encoder against its arithmetic floor.

One FISTA iteration is two convolutions, 4 C M K flops per code sample. This times T = 50
iterations on random data at the tetrode shapes of the default sort (C = 6, M = 4, K = 30 at
15 kHz) as one long signal, as a batch of 4096-sample rows (how screened inference runs), and
the conv1d alone, median of 5 runs each. Writes docs/benchmarks.md between ENCODER markers.

    python scripts/benchmark_encoder.py [--device cpu|cuda] [--no-doc]
"""
from __future__ import annotations

import argparse
import statistics
import time

from .docs import DOC, emit, write_block


def timed(fn, device, repeats: int = 5) -> float:
    """Median seconds of ``repeats`` calls of ``fn`` after one warm-up (synchronised on CUDA)."""
    import torch

    fn()
    out = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args(argv)
    import torch

    from ..model.encoders.fista import fista
    from ..model.operator import H_adjoint, lipschitz_constant

    device = torch.device(args.device)
    c, m, k, t_iter = 6, 4, 30, 50
    g = torch.Generator().manual_seed(0)
    d = torch.randn(c, m, k, generator=g)
    d = (d / d.flatten(1).norm(dim=1).view(-1, 1, 1)).to(device)
    lam = torch.full((c,), 4.0, device=device)
    lip = lipschitz_constant(d)
    n = 150_000  # 10 s at 15 kHz
    long = torch.randn(1, m, n, generator=g).to(device)
    width = 4096 + k - 1
    n_rows = n // width
    rows = long[0, :, : n_rows * width].reshape(m, n_rows, width).permute(1, 0, 2).contiguous()
    rows_samples = rows.shape[0] * rows.shape[2]
    lines = []
    with torch.no_grad():
        for name, y, samples, fn in [
            ("FISTA, one 150k-sample signal", long, n, lambda: fista(long, d, lam, lip, t_iter)),
            ("FISTA, batch of 4096-sample rows", rows, rows_samples, lambda: fista(rows, d, lam, lip, t_iter)),
            ("H^T y alone (conv1d), rows", rows, rows_samples, lambda: H_adjoint(rows, d)),
        ]:
            sec = timed(fn, device)
            flops = (4 * c * m * k * t_iter if name.startswith("FISTA") else 2 * c * m * k) * samples
            lines.append(f"| {name} | {sec * 1e3:.1f} | {flops / sec / 1e9:.1f} |")
            emit(lines[-1])
    table = "\n".join([f"Device: {args.device} ({torch.get_num_threads()} threads), torch {torch.__version__}. "
                       f"C={c}, M={m}, K={k}, T={t_iter}; median of 5.", "",
                       "| what | ms | GFLOP/s |", "|---|---|---|", *lines])
    emit(table)
    if not args.no_doc:
        write_block(DOC, "ENCODER", table)


if __name__ == "__main__":
    main()
