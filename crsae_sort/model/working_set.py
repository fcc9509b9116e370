"""FISTA and ISTA on a working set: the same iterates, computed only where a code can be non-zero.

The gradient of the lasso's smooth part in Gram form (Tolooshams, Dey & Ba 2020, eq. 6):

    H^T (y - H s) = b - Q s,   b = H^T y,   Q = H^T H,

and ``Q`` is a convolution on codes with the dictionary's cross-correlations (:func:`gram_table`):

    (Q s)[c, n] = sum_c' sum_{|d| < K} G[c, c', d] s[c', n + d],
    G[c, c', d] = sum_m sum_k h[c, m, k] h[c', m, k - d].

Spike codes are sparse (on a 32-channel probe, FISTA-50 leaves 0.2 % of the (c, n) entries
non-zero), so most of a dense iteration multiplies zeros. Restricted to a working set ``A`` of
entries ``(c_i, n_i)``, the iteration needs only ``b_A`` and the sparse matrix
``Q_AA[i, j] = G[c_i, c_j, n_j - n_i]`` (:func:`restricted_gram`), whose non-zeros are the pairs
closer than K samples. An entry outside ``A`` whose code is zero stays zero as long as its
gradient ``(b - Q s)[c, n]`` stays below ``lambda_c`` (the shrinkage keeps it at zero), so when no
entry outside ``A`` would cross the threshold, the restricted iterates *are* the dense ones.

:func:`encode_working_set` therefore

1. starts from ``A = {(c, n): (H^T y)[c, n] >= screen * lambda_c}`` (``|H^T y|`` for two-sided codes;
   the first FISTA step from zero is ``shrink(H^T y / L, lambda / L)``, so every entry it makes
   non-zero is in ``A`` for ``screen <= 1``),
2. runs the T unrolled iterations on ``A`` from zero (:func:`restricted_iterations`),
3. checks the optimality condition outside ``A`` with one dense gradient
   ``g = H^T (y - H z)``: entries with ``g[c, n] > lambda_c`` (``|g| > lambda_c`` two-sided) would
   have become non-zero; they join ``A`` and step 2 runs again from zero,

and after ``max_rounds`` falls back to the dense encoder (the caller's), so the codes always
equal those of the dense unrolled encoder up to float rounding. Cost per chunk: two dense
correlations per round instead of 2T, plus T sparse products with ``nnz(Q_AA)`` entries.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .encoders.fista import momentum
from .prox import shrink


def gram_table(dictionary: torch.Tensor) -> torch.Tensor:
    """``G`` ``(C, C, 2K - 1)`` with ``G[c, c', d + K - 1] = sum_m sum_k h[c, m, k] h[c', m, k - d]``.

    dictionary: the dense templates ``(C, M, K)``. One ``conv1d``: correlating the padded atoms
    with every atom gives ``out[c', c, p] = G[c, c', K - 1 - p]``.
    """
    k = dictionary.shape[-1]
    out = F.conv1d(F.pad(dictionary, (k - 1, k - 1)), dictionary)  # (C', C, 2K - 1)
    return out.transpose(0, 1).flip(-1).contiguous()


def restricted_gram(atom: torch.Tensor, time: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``Q_AA`` as a sparse CSR matrix ``(|A|, |A|)``: ``Q[i, j] = G[c_i, c_j, n_j - n_i]`` for ``|n_j - n_i| < K``.

    atom, time: ``(|A|,)`` int64, the entries of the working set sorted by ``time``;
    table: :func:`gram_table` ``(C, C, 2K - 1)``.
    """
    k = (table.shape[-1] + 1) // 2
    n = len(time)
    lo = torch.searchsorted(time, time - (k - 1))
    hi = torch.searchsorted(time, time + k)
    counts = hi - lo
    crow = torch.zeros(n + 1, dtype=torch.int64, device=time.device)
    torch.cumsum(counts, 0, out=crow[1:])
    # entry j of row i (its neighbours lo[i] .. hi[i] - 1 in time order) and its value G[c_i, c_j, n_j - n_i]
    cols = torch.arange(int(crow[-1]), device=time.device) - torch.repeat_interleave(crow[:-1] - lo, counts)
    n_lags = table.shape[-1]
    row_part = torch.repeat_interleave(atom * (table.shape[1] * n_lags) - time + k - 1, counts)
    values = table.reshape(-1)[row_part + (atom * n_lags + time)[cols]]
    with warnings.catch_warnings():  # torch calls its CSR support "beta"; matrix-vector products are all we use
        warnings.simplefilter("ignore", UserWarning)
        index = torch.int32 if len(values) < 2**31 else torch.int64  # int32 indices: products ~2x faster on CPU
        return torch.sparse_csr_tensor(crow.to(index), cols.to(index), values, (n, n), check_invariants=False)


def restricted_iterations(b: torch.Tensor, gram: torch.Tensor, bias: torch.Tensor, step: float, n_iter: int,
                          positive: bool, use_momentum: bool) -> torch.Tensor:
    """T proximal-gradient steps on the working set from zero, ``(|A|,)``:

        x_t = shrink(s_t + step (b - Q s_t), bias)       (FISTA's or ISTA's step in Gram form)

    with FISTA's extrapolation ``s_t+1 = x_t + ((tau_t - 1) / tau_t+1)(x_t - x_t-1)`` when
    ``use_momentum`` (:func:`~crsae_sort.model.encoders.fista.momentum`), ``s_t+1 = x_t`` otherwise.
    b: ``H^T y`` on the set; gram: :func:`restricted_gram`; bias: ``lambda_c / L`` per entry.
    """
    x_prev = b.new_zeros(b.shape)
    s, tau = x_prev, 1.0
    for _ in range(n_iter):
        x = shrink((s + step * (b - gram @ s))[None, None], bias[None, None], positive)[0, 0]
        if use_momentum:
            tau, beta = momentum(tau)
            s = x + beta * (x - x_prev)
        else:
            s = x
        x_prev = x
    return x


@dataclass
class WorkingSetCounts:
    """What the working set saved, summed over calls: entries ``(c, n)`` in all, entries in the final
    sets, rounds, and chunks that fell back to the dense encoder."""
    entries: int = 0
    in_set: int = 0
    rounds: int = 0
    calls: int = 0
    dense_fallbacks: int = 0


@torch.no_grad()
def encode_working_set(y: torch.Tensor, op, table: torch.Tensor, lam: torch.Tensor, lipschitz: float,
                       n_iter: int, positive: bool, use_momentum: bool, screen: float, dense_encoder,
                       max_rounds: int = 4, counts: WorkingSetCounts | None = None) -> torch.Tensor:
    """Codes ``(C, N - K + 1)`` of one signal ``y`` ``(M, N)``, equal to the dense unrolled encoder's.

    op: the dictionary's operator (``H``, ``H^T``); table: :func:`gram_table` of its dense templates;
    screen: the starting set's threshold as a fraction of lambda (module docstring);
    dense_encoder: ``y (1, M, N) -> z (1, C, n)``, used when ``max_rounds`` did not settle the set.
    """
    corr = op.H_adjoint(y[None])[0]                       # b = H^T y, (C, n)
    n_atoms, n_codes = corr.shape
    lam_col = lam.view(-1, 1)
    signed = corr if positive else corr.abs()
    in_set = signed >= screen * lam_col
    step = 1.0 / float(lipschitz)
    if counts is not None:
        counts.calls += 1
        counts.entries += n_atoms * n_codes
    for round_ in range(1, max_rounds + 1):
        time_idx, atom_idx = _sorted_entries(in_set)
        z = corr.new_zeros(n_atoms, n_codes)
        if len(time_idx):
            gram = restricted_gram(atom_idx, time_idx, table)
            x = restricted_iterations(corr[atom_idx, time_idx], gram, lam[atom_idx] * step, step, n_iter,
                                      positive, use_momentum)
            z[atom_idx, time_idx] = x
        grad = op.H_adjoint(y[None] - op.H(z[None]))[0]   # optimality check outside the set
        violated = ((grad if positive else grad.abs()) > lam_col) & ~in_set
        if not bool(violated.any()):
            if counts is not None:
                counts.rounds += round_
                counts.in_set += int(in_set.sum())
            return z
        in_set |= violated
    if counts is not None:
        counts.rounds += max_rounds
        counts.in_set += n_atoms * n_codes
        counts.dense_fallbacks += 1
    return dense_encoder(y[None])[0]


def _sorted_entries(in_set: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The (time, atom) indices of the set's entries, sorted by time (then atom)."""
    time_idx, atom_idx = torch.nonzero(in_set.t(), as_tuple=True)  # row-major over (n, c): sorted by time
    return time_idx, atom_idx
