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
3. checks the optimality condition outside ``A`` with the gradient ``g = b - Q z`` on every entry,
   ``Q z`` added up from the few non-zeros of ``z`` (:func:`gram_apply`): entries with
   ``g[c, n] > lambda_c`` (``|g| > lambda_c`` two-sided) would have become non-zero; they join ``A``
   and step 2 runs again from zero,

and after ``max_rounds`` falls back to the dense encoder (the caller's), so the codes always
equal those of the dense unrolled encoder, up to entries that were non-zero for a few iterations
only (the tests bound the difference). Cost per chunk: one dense correlation ``H^T y`` instead of
2T dense convolutions, plus T sparse products with ``nnz(Q_AA)`` entries per round.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .encoders.layers import accelerated
from .local_operator import neighbour_lists
from .prox import shrink


def gram_table(dictionary: torch.Tensor) -> torch.Tensor:
    """``G`` ``(C, C, 2K - 1)`` with ``G[c, c', d + K - 1] = sum_m sum_k h[c, m, k] h[c', m, k - d]``.

    dictionary: the dense templates ``(C, M, K)``. One ``conv1d``: correlating the padded atoms
    with every atom gives ``out[c', c, p] = G[c, c', K - 1 - p]``.
    """
    k = dictionary.shape[-1]
    out = F.conv1d(F.pad(dictionary, (k - 1, k - 1)), dictionary)  # (C', C, 2K - 1)
    return out.transpose(0, 1).flip(-1).contiguous()


def neighbours(table: torch.Tensor) -> torch.Tensor:
    """Each atom's neighbours ``(C, nb)``: the atoms ``c'`` whose table ``G[c, c', :]`` is not all zero (atoms
    that share a channel; with spatially local atoms far fewer than ``C``), in increasing order, padded with
    ``C`` (no atom)."""
    return neighbour_lists(table.detach().abs().amax(dim=-1) > 0)


def restricted_gram(atom: torch.Tensor, time: torch.Tensor, table: torch.Tensor, sparse: bool = True):
    """``Q_AA`` ``(|A|, |A|)``: ``Q[i, j] = G[c_i, c_j, n_j - n_i]`` for ``|n_j - n_i| < K``.

    atom, time: ``(|A|,)`` int64, the entries of the working set sorted by ``(atom, time)``;
    table: :func:`gram_table` ``(C, C, 2K - 1)``. Only pairs of :func:`neighbours` are looked for (for each
    entry and each neighbour atom, the entries of that atom within ``K`` samples: two searches in the sorted
    keys ``atom * span + time``), so local atoms far apart cost nothing. Returns a sparse CSR matrix, or with
    ``sparse=False`` the triplets ``(rows, cols, values)`` (differentiable in ``table``; products
    through :func:`gram_product`), for when the dictionary's gradient is wanted.
    """
    n_lags = table.shape[-1]
    n_atoms, k, n = table.shape[0], (n_lags + 1) // 2, len(time)
    span = (int(time.max()) if n else 0) + 2 * k
    key = atom * span + time                                              # increasing
    near = neighbours(table)[atom]                                        # (|A|, nb), C where none
    lo = torch.searchsorted(key, near * span + (time - (k - 1)).view(-1, 1))
    hi = torch.searchsorted(key, near * span + (time + k).view(-1, 1))
    per_pair = (hi - lo).reshape(-1)                                      # entries of each (i, neighbour)
    counts = (hi - lo).sum(dim=1)
    crow = torch.zeros(n + 1, dtype=torch.int64, device=time.device)
    torch.cumsum(counts, 0, out=crow[1:])
    first = torch.cumsum(per_pair, 0) - per_pair                          # where each (i, neighbour) run starts
    cols = (torch.arange(int(crow[-1]), device=time.device)
            + torch.repeat_interleave(lo.reshape(-1) - first, per_pair))
    rows = torch.repeat_interleave(torch.arange(n, device=time.device), counts)
    # index_select, not [...]: its backward sums repeated indices in a fixed order (deterministic on CPU)
    flat = (atom[rows] * n_atoms + atom[cols]) * n_lags + time[cols] - time[rows] + k - 1
    values = table.reshape(-1).index_select(0, flat)
    if not sparse:
        return rows, cols, values
    with warnings.catch_warnings():  # torch calls its CSR support "beta"; matrix-vector products are all we use
        warnings.simplefilter("ignore", UserWarning)
        index = torch.int32 if len(values) < 2**31 else torch.int64  # int32 indices: products ~2x faster on CPU
        return torch.sparse_csr_tensor(crow.to(index), cols.to(index), values, (n, n), check_invariants=False)


def gram_product(gram, s: torch.Tensor) -> torch.Tensor:
    """``Q_AA s`` for a CSR ``gram`` or for triplets ``(rows, cols, values)`` (differentiable)."""
    if isinstance(gram, tuple):
        rows, cols, values = gram
        return s.new_zeros(s.shape).index_add(0, rows, values * s.index_select(0, cols))
    return gram @ s


def gram_apply(z: torch.Tensor, table: torch.Tensor, max_elements: int = 1 << 24) -> torch.Tensor:
    """``Q z = H^T H z`` ``(B, C, n)`` for sparse codes ``z`` ``(B, C, n)``, from their non-zeros only:

        (Q z)[b, c, n] = sum_{(c', u): z[b, c', u] != 0} G[c, c', u - n] z[b, c', u]

    Each non-zero of atom ``c'`` adds ``z G[c, c', :]`` for its :func:`neighbours` ``c`` (``nb x (2K - 1)``
    values) around its time; the non-zeros are taken in groups of at most ``max_elements`` added values.
    Costs ``nnz(z) nb (2K - 1)`` where the dense ``H^T (H z)`` costs ``4 C M K`` per sample.
    """
    n_batch, n_atoms, n_codes = z.shape
    n_lags = table.shape[-1]
    k = (n_lags + 1) // 2
    width = n_codes + 2 * (k - 1)
    near = neighbours(table)                                                    # (C, nb), C where none
    out = z.new_zeros(n_batch * width * (n_atoms + 1))      # time-major, one spare column for "no atom"
    b_idx, c_idx, u_idx = torch.nonzero(z, as_tuple=True)
    # blocks[c', i, j] = G[near[c', j], c', K - 1 - i]: lag d = K - 1 - i lands at n = u - (K - 1) + i
    padded = torch.cat([table, table.new_zeros(1, n_atoms, n_lags)])            # G[C, ., .] = 0
    blocks = padded[near, torch.arange(n_atoms, device=z.device).view(-1, 1)]   # (C, nb, 2K - 1)
    blocks = blocks.flip(-1).transpose(1, 2).contiguous()                       # (C, 2K - 1, nb)
    lags = torch.arange(n_lags, device=z.device).view(1, -1, 1)
    step = max(1, max_elements // (near.shape[1] * n_lags))
    for lo in range(0, len(u_idx), step):
        b, c, u = b_idx[lo: lo + step], c_idx[lo: lo + step], u_idx[lo: lo + step]
        values = blocks[c] * z[b, c, u].view(-1, 1, 1)                          # (nz, 2K - 1, nb)
        rows = (b * width + u).view(-1, 1, 1) + lags                            # padded by K - 1 on the left
        out.index_add_(0, (rows * (n_atoms + 1) + near[c].unsqueeze(1)).reshape(-1), values.reshape(-1))
    out = out.view(n_batch, width, n_atoms + 1)[:, k - 1: k - 1 + n_codes, :n_atoms]
    return out.transpose(1, 2)


def restricted_iterations(b: torch.Tensor, gram, bias: torch.Tensor, step, n_iter: int,
                          positive: bool, use_momentum: bool) -> torch.Tensor:
    """T proximal-gradient steps on the working set from zero, ``(|A|,)``:

        x_t = shrink(s_t + step (b - Q s_t), bias)       (FISTA's or ISTA's step in Gram form)

    with FISTA's extrapolation when ``use_momentum``, ``s_t+1 = x_t`` otherwise (the loop is
    :func:`~crsae_sort.model.encoders.layers.accelerated`).
    b: ``H^T y`` on the set; gram: :func:`restricted_gram`; bias: ``lambda_c / L`` per entry.
    """
    def step_(l, s, x_prev):
        return shrink((s + step * (b - gram_product(gram, s)))[None, None], bias[None, None], positive)[0, 0]

    return accelerated(b.new_zeros(b.shape), n_iter, step_, use_momentum)


@dataclass
class WorkingSetCounts:
    """What the working set saved, summed over calls: entries ``(b, c, n)`` in all, entries in the
    final sets, rounds, and calls that fell back to the dense encoder."""
    entries: int = 0
    in_set: int = 0
    rounds: int = 0
    calls: int = 0
    dense_fallbacks: int = 0


def encode_working_set(y: torch.Tensor, op, table: torch.Tensor, lam: torch.Tensor, lipschitz,
                       n_iter: int, positive: bool, use_momentum: bool, screen: float, dense_encoder,
                       max_rounds: int = 4, counts: WorkingSetCounts | None = None) -> torch.Tensor:
    """Codes ``(B, C, N - K + 1)`` of signals ``y`` ``(B, M, N)``, equal to the dense unrolled encoder's.

    op: the dictionary's operator (``H``, ``H^T``); table: :func:`gram_table` of its dense templates;
    screen: the starting set's threshold as a fraction of lambda (module docstring);
    dense_encoder: ``y -> z``, used when ``max_rounds`` did not settle the set. The set is chosen
    without a graph; when gradients are enabled, the last T iterations are run once more through
    differentiable products, so the codes carry the graph of the dictionary (through ``H^T y`` and
    ``table``) and of ``lam`` as the dense encoder's do. Windows of a batch never share a pair:
    their entries are placed on one time axis ``K`` samples apart.
    """
    corr_graph = op.H_adjoint(y) if torch.is_grad_enabled() else None  # b = H^T y, (B, C, n), once
    with torch.no_grad():
        corr = corr_graph.detach() if corr_graph is not None else op.H_adjoint(y)
        n_batch, n_atoms, n_codes = corr.shape
        lam_col = lam.detach().view(1, -1, 1)
        in_set = (corr if positive else corr.abs()) >= screen * lam_col
        if counts is not None:
            counts.calls += 1
            counts.entries += in_set.numel()
        for round_ in range(1, max_rounds + 1):
            z = _solve_on_set(in_set, corr, table.detach(), lam.detach(), lipschitz, n_iter, positive, use_momentum)
            grad = corr - gram_apply(z, table.detach())  # H^T (y - H z): the optimality check outside the set
            violated = ((grad if positive else grad.abs()) > lam_col) & ~in_set
            if not bool(violated.any()):
                break
            in_set |= violated
        else:
            if counts is not None:
                counts.rounds += max_rounds
                counts.in_set += in_set.numel()
                counts.dense_fallbacks += 1
            return dense_encoder(y)
        if counts is not None:
            counts.rounds += round_
            counts.in_set += int(in_set.sum())
    if corr_graph is None:
        return z
    return _solve_on_set(in_set, corr_graph, table, lam, lipschitz, n_iter, positive, use_momentum, sparse=False)


def _solve_on_set(in_set, corr, table, lam, lipschitz, n_iter, positive, use_momentum, sparse=True):
    """The T iterations on the entries of ``in_set`` ``(B, C, n)``; codes ``(B, C, n)``, zero elsewhere."""
    n_batch, n_atoms, n_codes = in_set.shape
    k = (table.shape[-1] + 1) // 2
    atom_idx, batch_idx, time_idx = torch.nonzero(in_set.transpose(0, 1), as_tuple=True)  # sorted by (c, b, n)
    z = corr.new_zeros(n_batch, n_atoms, n_codes)
    if len(time_idx) == 0:
        return z
    axis = batch_idx * (n_codes + k) + time_idx          # one time axis, windows K apart: no pair across
    gram = restricted_gram(atom_idx, axis, table, sparse=sparse)
    step = 1.0 / lipschitz
    b = corr.reshape(-1).index_select(0, (batch_idx * n_atoms + atom_idx) * n_codes + time_idx)
    x = restricted_iterations(b, gram, lam.index_select(0, atom_idx) * step, step, n_iter, positive, use_momentum)
    return z.index_put((batch_idx, atom_idx, time_idx), x)
