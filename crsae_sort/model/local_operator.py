"""Spatially local atoms: the operator ``H`` when each template lives near its peak channel.

Dense model (operators.py): every atom spans every channel, ``h`` is ``(C, M, K)`` and one
FISTA iteration (``H`` then ``H^T``) costs ``4 C M K`` flops per sample. Here atom ``c`` has a
channel support ``S_c``, the channels within ``radius_um`` of its peak channel, and is stored
locally as ``a`` ``(n_atoms C, S, n_times_atom K)`` with ``support`` ``(C, S)`` (channel indices)
and ``mask`` ``(C, S)`` (False on padding; those entries of ``a`` are ignored, i.e. zero):

    (H z)[b, m, n]   = sum_c sum_{s: support[c,s] = m, mask[c,s]} sum_k a[c, s, k] z[b, c, n - k]
    (H^T y)[b, c, n] = sum_s mask[c,s] sum_k a[c, s, k] y[b, support[c,s], n + k]

with the "valid" convention of operators.py: ``y`` has ``N`` samples, ``z`` has ``N - K + 1``.
This is the dense operator of ``to_dense(a, ...)`` ``(C, M, K)``; an iteration costs
``4 sum_c |S_c| K`` flops per sample.

Evaluation is block-dense. Atoms are ordered along the probe (by the mean channel index of
their support) and cut into contiguous blocks; block ``j`` holds atoms ``A_j`` and the union
``U_j`` of their supports, and its atoms are scattered into a small dense dictionary
``W_j`` ``(|A_j|, |U_j|, K)`` (zeros off each support), so that

    (H^T y)[:, A_j] = conv1d(y[:, U_j], W_j)        (H z)[:, U_j] += conv1d(z[:, A_j], W_j^flip)

The blocks evaluate ``4 K sum_j |A_j| |U_j|`` flops, several times the ideal, because a
conv1d with a few dozen channels still runs at a useful rate while one with a handful does not.
The partition minimises ``sum_j |U_j| max(|A_j|, min_block_atoms)``: flops, with each block
charged at least ``min_block_atoms`` atoms. The per-atom design (gather ``y[:, support]`` to
``(B, C S, N)``, ``conv1d(groups=C)``) computes the ideal flops but runs about as slowly as
the dense operator on CPU. scripts/benchmark_local_operator.py times all three.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["channel_supports", "LocalLayout", "local_layout", "to_dense", "to_local", "H_local",
           "H_local_adjoint", "LocalConvOperator", "lipschitz_constant_local", "lipschitz_bound_local"]


def channel_supports(channel_locations_um: np.ndarray, peak_channels: np.ndarray,
                     radius_um: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Channels within ``radius_um`` of each atom's peak channel, padded to a common width.

    ``S_c = {m : ||x_m - x_{p_c}||_2 <= radius_um}`` with ``x`` the channel locations
    ``(M, 2)`` in µm and ``p_c`` the peak channel of atom ``c`` (so ``p_c`` is in ``S_c``).
    Returns ``support`` ``(C, S)`` int64, each row the channels of ``S_c`` in increasing order
    then padding that repeats ``p_c``, and ``mask`` ``(C, S)`` bool, False on the padding;
    ``S = max_c |S_c|``.
    """
    loc = np.asarray(channel_locations_um, dtype=np.float64)
    peaks = np.asarray(peak_channels)
    if loc.ndim != 2 or loc.shape[1] not in (2, 3):
        raise ValueError(f"channel_locations_um must be (n_channels, 2) or (n_channels, 3), got shape {loc.shape}")
    if peaks.ndim != 1 or not np.issubdtype(peaks.dtype, np.integer):
        raise ValueError(f"peak_channels must be a 1-d integer array, got {peaks.dtype} {peaks.shape}")
    if len(peaks) and (peaks.min() < 0 or peaks.max() >= len(loc)):
        raise ValueError(f"peak_channels must lie in [0, {len(loc) - 1}], got [{peaks.min()}, {peaks.max()}]")
    if not radius_um >= 0:
        raise ValueError(f"radius_um must be >= 0, got {radius_um}")
    within = np.linalg.norm(loc[peaks][:, None, :] - loc[None, :, :], axis=-1) <= radius_um  # (C, M)
    width = int(within.sum(axis=1).max(initial=1))
    order = np.argsort(~within, axis=1, kind="stable")[:, :width]  # in-radius channels first, sorted
    mask = np.take_along_axis(within, order, axis=1)
    support = np.where(mask, order, peaks[:, None])
    return torch.as_tensor(support, dtype=torch.int64), torch.as_tensor(mask, dtype=torch.bool)


def to_dense(a: torch.Tensor, support: torch.Tensor, mask: torch.Tensor, n_channels: int) -> torch.Tensor:
    """The dense dictionary ``h[c, support[c,s], k] = mask[c,s] a[c,s,k]`` ``(C, M, K)`` (differentiable)."""
    index = support.unsqueeze(-1).expand_as(a)
    return a.new_zeros(a.shape[0], n_channels, a.shape[2]).scatter_add(1, index, a * mask.unsqueeze(-1))


def neighbour_lists(share: torch.Tensor) -> torch.Tensor:
    """From ``share`` ``(C, C)`` bool (atoms that interact), each atom's neighbours ``(C, nb)``, itself included,
    in increasing order, padded with ``C`` (no atom); ``nb`` the most neighbours any atom has."""
    n_atoms = share.shape[0]
    share = share | torch.eye(n_atoms, dtype=torch.bool, device=share.device)
    width = int(share.sum(dim=1).max())
    index = torch.arange(n_atoms, device=share.device).expand(n_atoms, n_atoms)
    return torch.where(share, index, n_atoms).sort(dim=1).values[:, :width]


def local_gram_table(a: torch.Tensor, support: torch.Tensor, mask: torch.Tensor, n_channels: int) -> torch.Tensor:
    """The Gram table ``G`` ``(C, C, 2K - 1)`` of local atoms ``a`` ``(C, S, K)`` on channels ``support``
    (``mask`` False on padding), ``G[c, c', d + K - 1] = sum_m sum_k h[c, m, k] h[c', m, k - d]``: equal to
    :func:`~crsae_sort.model.working_set.gram_table` of :func:`to_dense`, computed only for the pairs that
    share a channel (zero elsewhere), each on atom ``c``'s ``S`` channels, as one grouped ``conv1d``:
    ``nb C S K (2K - 1)`` multiply-adds, ``nb`` the most atoms one atom shares a channel with, where the dense
    table costs ``C^2 M K (2K - 1)`` (384 channels, 116 atoms: ~150x less). Differentiable in ``a``."""
    n_atoms, width, k = a.shape
    on = torch.zeros(n_atoms, n_channels, dtype=a.dtype, device=a.device).scatter(1, support, mask.to(a.dtype))
    near = neighbour_lists(on @ on.T > 0)                                             # (C, nb), C: no atom
    n_near = near.shape[1]
    dense = torch.cat([to_dense(a, support, mask, n_channels), a.new_zeros(1, n_channels, k)])
    # other[c, j, s, :] = h[near[c, j], support[c, s], :]: each neighbour on atom c's own channels
    other = dense[near.unsqueeze(-1), support.unsqueeze(1)]                           # (C, nb, S, K)
    x = F.pad(other.permute(1, 0, 2, 3).reshape(n_near, n_atoms * width, k), (k - 1, k - 1))
    out = F.conv1d(x, a * mask.unsqueeze(-1), groups=n_atoms)                        # (nb, C, 2K - 1)
    values = out.permute(1, 0, 2).flip(-1)                                            # G[c, near[c, j], :]
    table = a.new_zeros(n_atoms, n_atoms + 1, 2 * k - 1)
    return table.scatter(1, near.unsqueeze(-1).expand(-1, -1, 2 * k - 1), values)[:, :n_atoms]


def to_local(dictionary: torch.Tensor, support: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The local dictionary ``a[c,s,k] = mask[c,s] h[c, support[c,s], k]`` ``(C, S, K)`` of a dense ``h``."""
    index = support.unsqueeze(-1).expand(-1, -1, dictionary.shape[2])
    return dictionary.gather(1, index) * mask.unsqueeze(-1)


@dataclass(frozen=True, eq=False)
class _Block:
    atoms: torch.Tensor      # (A,) int64, atom indices
    channels: torch.Tensor   # (U,) int64, sorted union of the atoms' supports
    position: torch.Tensor   # (A, S, K) int64, index in ``channels`` of support[atom, s], repeated over k
    mask: torch.Tensor       # (A, S, 1) bool
    every_channel: bool      # channels == arange(M): no gather/scatter needed


@dataclass(frozen=True, eq=False)
class LocalLayout:
    """Supports and their block partition, computed once per probe and set of peak channels.

    ``support``/``mask`` ``(C, S)`` as from :func:`channel_supports`; ``n_channels`` is ``M``.
    Move it with the dictionary: ``layout = layout.to(device)``.
    """
    support: torch.Tensor
    mask: torch.Tensor
    n_channels: int
    blocks: tuple[_Block, ...]

    def __repr__(self) -> str:
        n_atoms, width = self.support.shape
        return (f"LocalLayout(n_atoms={n_atoms}, width={width}, n_channels={self.n_channels}, "
                f"blocks={len(self.blocks)}, device={self.support.device})")

    @property
    def pairs_evaluated(self) -> int:
        """``sum_j |A_j| |U_j|``, the (atom, channel) pairs the blocks compute; ``H`` or ``H^T`` costs
        ``K`` times this many multiply-adds per sample (ideal: ``sum_c |S_c| = mask.sum()``)."""
        return sum(len(b.atoms) * len(b.channels) for b in self.blocks)

    def to(self, device) -> "LocalLayout":
        move = lambda t: t.to(device)  # noqa: E731
        blocks = tuple(_Block(move(b.atoms), move(b.channels), move(b.position), move(b.mask), b.every_channel)
                       for b in self.blocks)
        return LocalLayout(move(self.support), move(self.mask), self.n_channels, blocks)


def local_layout(support: torch.Tensor, mask: torch.Tensor, n_channels: int, n_times_atom: int,
                 *, min_block_atoms: int = 32, max_atoms_per_block: int = 512) -> LocalLayout:
    """Order the atoms along the probe and cut them into the blocks that minimise the cost model.

    Atoms are sorted by the mean channel index of their support (depth on probes whose channel
    numbers follow the geometry), then a dynamic programme over contiguous runs minimises
    ``sum_j |U_j| max(|A_j|, min_block_atoms)``: the multiply-adds, except that a block is
    charged as if it had at least ``min_block_atoms`` atoms, since conv1d with few output channels
    runs far below peak (on CPU, 4 output channels reach ~10 % of the rate of 64). When every
    atom spans every channel the result is one block: the dense operator itself.
    """
    sup, msk = support.cpu().numpy(), mask.cpu().numpy()
    n_atoms = len(sup)
    member = np.zeros((n_atoms, n_channels), dtype=bool)
    member[np.repeat(np.arange(n_atoms), sup.shape[1])[msk.ravel()], sup[msk]] = True
    order = np.argsort(member @ np.arange(n_channels) / np.maximum(member.sum(1), 1), kind="stable")
    member = member[order]
    best, start = np.full(n_atoms + 1, np.inf), np.zeros(n_atoms + 1, dtype=np.int64)
    best[0] = 0.0
    for i in range(n_atoms):  # best[i] is final here: every run ending at i starts before it
        stop = min(n_atoms, i + max_atoms_per_block)
        width = np.logical_or.accumulate(member[i:stop], axis=0).sum(axis=1)  # |U| of runs i..j
        cost = best[i] + width * np.maximum(np.arange(1, stop - i + 1), min_block_atoms)
        better = cost < best[i + 1:stop + 1]
        best[i + 1:stop + 1][better], start[i + 1:stop + 1][better] = cost[better], i
    cuts, j = [], n_atoms
    while j > 0:
        cuts.append((start[j], j))
        j = start[j]
    blocks = []
    for i, j in reversed(cuts):
        atoms = order[i:j]
        channels = np.flatnonzero(member[i:j].any(axis=0))
        position = np.searchsorted(channels, sup[atoms])
        blocks.append(_Block(torch.as_tensor(atoms), torch.as_tensor(channels),
                             torch.as_tensor(position).unsqueeze(-1).expand(-1, -1, n_times_atom).contiguous(),
                             torch.as_tensor(msk[atoms]).unsqueeze(-1), len(channels) == n_channels))
    return LocalLayout(support, mask, n_channels, tuple(blocks))


def H_local(z: torch.Tensor, a: torch.Tensor, layout: LocalLayout) -> torch.Tensor:
    """Synthesis ``y = H z`` with local atoms.

    z: ``(batch, C, n_codes)``; a: ``(C, S, K)``. Returns ``(batch, M, n_codes + K - 1)``.
    """
    _check(a, layout)
    return _LocalSynthesis.apply(z, a, layout)


def H_local_adjoint(y: torch.Tensor, a: torch.Tensor, layout: LocalLayout) -> torch.Tensor:
    """Analysis ``H^T y`` with local atoms. y: ``(batch, M, N)``; returns ``(batch, C, N - K + 1)``."""
    _check(a, layout)
    return _LocalAnalysis.apply(y, a, layout)


def _check(a: torch.Tensor, layout: LocalLayout) -> None:
    if a.shape[:2] != layout.support.shape:
        raise ValueError(f"local dictionary {tuple(a.shape)} does not match the layout's support "
                         f"{tuple(layout.support.shape)} (n_atoms, width)")
    if layout.support.device != a.device:
        raise ValueError(f"layout is on {layout.support.device}, dictionary on {a.device}: "
                         f"call layout.to(dictionary.device) once")


def _block_weight(a: torch.Tensor, block: _Block) -> torch.Tensor:
    """``W_j[i, u, k] = a[A_j[i], s, k]`` where ``U_j[u] = support[A_j[i], s]`` (masked), ``(A, U, K)``."""
    local = a.index_select(0, block.atoms) * block.mask
    return local.new_zeros(len(block.atoms), len(block.channels), a.shape[2]).scatter_add_(1, block.position, local)


def _synthesis(z: torch.Tensor, a: torch.Tensor, layout: LocalLayout) -> torch.Tensor:
    k = a.shape[2]
    y = z.new_zeros(z.shape[0], layout.n_channels, z.shape[2] + k - 1)
    padded = F.pad(z, (k - 1, k - 1))  # "full" convolution as a "valid" one
    for block in layout.blocks:
        weight = _block_weight(a, block).flip(-1).transpose(0, 1)  # (U, A, K)
        part = F.conv1d(padded.index_select(1, block.atoms), weight)
        if block.every_channel:
            y += part
        else:
            y.index_add_(1, block.channels, part)
    return y


def _analysis(y: torch.Tensor, a: torch.Tensor, layout: LocalLayout) -> torch.Tensor:
    out = y.new_empty(y.shape[0], a.shape[0], y.shape[2] - a.shape[2] + 1)
    for block in layout.blocks:
        signal = y if block.every_channel else y.index_select(1, block.channels)
        out.index_copy_(1, block.atoms, F.conv1d(signal, _block_weight(a, block)))
    return out


def _local_grad(signal: torch.Tensor, codes: torch.Tensor, a: torch.Tensor, layout: LocalLayout) -> torch.Tensor:
    """``g[c,s,k] = mask[c,s] sum_b sum_t codes[b,c,t] signal[b, support[c,s], t + k]`` ``(C, S, K)``.

    Per block one conv1d over the batch: ``G_j[i, u, k] = sum_b sum_t codes[b, A_j[i], t] signal[b, U_j[u], t + k]``.
    """
    grad = torch.zeros_like(a)
    for block in layout.blocks:
        sig = signal if block.every_channel else signal.index_select(1, block.channels)
        dense = F.conv1d(sig.transpose(0, 1), codes.index_select(1, block.atoms).transpose(0, 1))  # (U, A, K)
        grad.index_copy_(0, block.atoms, dense.transpose(0, 1).gather(1, block.position) * block.mask)
    return grad


class _LocalSynthesis(torch.autograd.Function):
    """``H z``; d/dz = ``H^T g``, d/da[c,s,k] = ``mask[c,s] sum_t z[c,t] g[support[c,s], t+k]``."""

    @staticmethod
    def forward(ctx, z, a, layout):
        ctx.save_for_backward(z, a)
        ctx.layout = layout
        return _synthesis(z, a, layout)

    @staticmethod
    def backward(ctx, grad):
        z, a = ctx.saved_tensors
        grad_z = _analysis(grad, a, ctx.layout) if ctx.needs_input_grad[0] else None
        grad_a = _local_grad(grad, z, a, ctx.layout) if ctx.needs_input_grad[1] else None
        return grad_z, grad_a, None


class _LocalAnalysis(torch.autograd.Function):
    """``H^T y``; d/dy = ``H g``, d/da[c,s,k] = ``mask[c,s] sum_t g[c,t] y[support[c,s], t+k]``."""

    @staticmethod
    def forward(ctx, y, a, layout):
        ctx.save_for_backward(y, a)
        ctx.layout = layout
        return _analysis(y, a, layout)

    @staticmethod
    def backward(ctx, grad):
        y, a = ctx.saved_tensors
        grad_y = _synthesis(grad, a, ctx.layout) if ctx.needs_input_grad[0] else None
        grad_a = _local_grad(y, grad, a, ctx.layout) if ctx.needs_input_grad[1] else None
        return grad_y, grad_a, None


class LocalConvOperator:
    """The operator view of a local dictionary ``a`` ``(C, S, K)`` on its layout: ``H`` and ``H^T``.

    Same interface as :class:`crsae_sort.model.operator.ConvOperator`, so every encoder runs on it.
    """

    def __init__(self, a: torch.Tensor, layout: LocalLayout):
        self.a, self.layout = a, layout
        self.n_atoms, _, self.n_times_atom = a.shape
        self.n_channels = layout.n_channels

    def H(self, z: torch.Tensor) -> torch.Tensor:
        """``H z``: ``(batch, C, n_codes)`` -> ``(batch, M, n_codes + K - 1)``."""
        return H_local(z, self.a, self.layout)

    def H_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``H^T y``: ``(batch, M, N)`` -> ``(batch, C, N - K + 1)``."""
        return H_local_adjoint(y, self.a, self.layout)


from .local_lipschitz import lipschitz_bound_local, lipschitz_constant_local  # noqa: E402  (re-exported)
