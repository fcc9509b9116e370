"""``L >= ||H||^2`` for the local operator (:mod:`.local_operator`): exact on a frequency grid, and a
cheap bound that stays on the device.

Both work on the atoms' spectra ``Hhat_c(w)`` restricted to their supports; atoms whose supports
do not overlap are orthogonal at every lag, so only overlapping pairs enter the Gram matrix.
"""
from __future__ import annotations

import torch

def lipschitz_constant_local(a: torch.Tensor, support: torch.Tensor, mask: torch.Tensor, n_channels: int,
                             n_fft: int | None = None, frequencies_per_chunk: int = 8) -> float:
    """``operators.lipschitz_constant(to_dense(a, ...))``, skipping frequencies that cannot win.

    ``L = 1.005 max_j lambda_max(Hhat(w_j)^* Hhat(w_j))`` over ``n_fft >= 16 K`` frequencies
    ``w_j``, ``Hhat(w)`` the ``M x C`` matrix of atom spectra (zero off the supports), by an
    eigen-solve of the ``min(M, C)``-square Gram matrix. Frequencies are visited in decreasing
    order of their magnitude bound (steps 1 and 3 of :func:`lipschitz_bound_local`, which is
    ``>= lambda_max(w_j)``) and the search stops when that bound falls below the best
    eigenvalue found: the same maximum as the full grid, with a fraction of the eigen-solves.
    A host computation in float64: use it at initialisation, :func:`lipschitz_bound_local` in
    the training loop.
    """
    with torch.no_grad():
        h = (a.detach().to(torch.float64) * mask.unsqueeze(-1)).cpu()
        index = support.cpu()
        n_atoms, width, k = h.shape
        n_fft = n_fft or max(1024, 16 * k)
        spec = torch.fft.rfft(h, n=n_fft, dim=-1).permute(2, 0, 1)  # (F, C, S)
        upper = _magnitude_bound(spec.abs(), index, n_channels, n_power=20)
        top = 0.0
        for chunk in upper.argsort(descending=True).split(frequencies_per_chunk):
            if float(upper[chunk[0]]) <= top:
                break
            part = spec[chunk]
            dense = part.new_zeros(len(part), n_atoms, n_channels)  # Hhat^T: (F, C, M)
            dense.scatter_add_(2, index.expand(len(part), -1, -1), part)
            if n_atoms <= n_channels:
                gram = dense @ dense.conj().transpose(1, 2)
            else:
                gram = dense.conj().transpose(1, 2) @ dense
            top = max(top, float(torch.linalg.eigvalsh(gram)[:, -1].max()))
        return top * 1.005

def lipschitz_bound_local(a: torch.Tensor, support: torch.Tensor, mask: torch.Tensor, n_channels: int,
                          n_fft: int | None = None, n_power: int = 12) -> torch.Tensor:
    """A bound ``L >= ||H||^2`` for every signal length, as a 0-d tensor on ``a``'s device, no host sync.

    ``support`` and ``mask`` must be on ``a``'s device. ``fista.fista`` accepts the tensor as its
    ``lipschitz`` (it only forms ``1 / L``), so the step follows the dictionary without a sync.

    Derivation. ``H`` is a multichannel convolution, so ``||H||^2 <= sup_w ||Hhat(w)||_2^2`` with
    ``Hhat(w)[m, c] = sum_k h[c,m,k] e^{-iwk}`` ``(M x C)``, zero unless ``m`` in ``S_c``.

    1. Moduli: ``|x^* Hhat y| <= |x|^T |Hhat| |y|``, so ``||Hhat(w)|| <= || |Hhat(w)| ||``.
    2. Grid: for ``w`` within ``pi / n_fft`` of a grid frequency ``w_j = 2 pi j / n_fft``,
       ``| |hhat_cm(w)| - |hhat_cm(w_j)| | <= (pi / n_fft) D_cm`` with
       ``D_cm = sum_k |k - k0| |h[c,m,k]|``, ``k0 = (K-1)/2`` (the derivative of
       ``e^{iw k0} hhat_cm(w)``). So ``|Hhat(w)| <= U_j := |Hhat(w_j)| + (pi / n_fft) D``
       entrywise, and for nonnegative matrices that bounds the norm: ``||Hhat(w)|| <= ||U_j||``.
    3. Collatz-Wielandt: ``B_j = U_j^T U_j`` ``(C x C)`` is nonnegative, and zero between atoms
       whose supports are disjoint; for every ``p > 0``,
       ``||U_j||^2 = rho(B_j) <= max_c (B_j p)_c / p_c``. ``p = 1`` is Gershgorin on the
       magnitude Gram matrix; ``n_power`` power steps ``p <- B_j p`` only lower it (if
       ``B p <= mu p`` then ``B (B p) <= mu B p``), and the smallest value seen is kept.

    ``L = max_j min_t max_c (B_j p_t)_c / (p_t)_c``, times ``1 + 1000 eps`` for rounding. Cost
    ``O(n_fft C S (K log n_fft + n_power))``; products ``B p`` go through the channels
    (``index_add_`` then gather), never a ``C x C`` matrix.
    Only step 1 loses much: atoms that overlap but differ in phase count as in phase.
    """
    if support.device != a.device or mask.device != a.device:
        raise ValueError(f"support/mask on {support.device}, dictionary on {a.device}: pass layout.support and "
                         f"layout.mask after layout = layout.to(dictionary.device)")
    n_atoms, width, k = a.shape
    h = a.detach() * mask.unsqueeze(-1)
    if not h.is_floating_point() or h.dtype in (torch.float16, torch.bfloat16):
        h = h.float()
    n_fft = n_fft or max(1024, 32 * k)
    lag = (torch.arange(k, device=h.device, dtype=h.dtype) - (k - 1) / 2).abs()
    slope = (h.abs() * lag).sum(-1)  # D (C, S)
    envelope = torch.fft.rfft(h, n=n_fft, dim=-1).abs() + (torch.pi / n_fft) * slope.unsqueeze(-1)
    bound = _magnitude_bound(envelope.permute(2, 0, 1), support, n_channels, n_power)
    return bound.amax() * (1 + 1000 * torch.finfo(h.dtype).eps)

def _magnitude_bound(magnitude: torch.Tensor, support: torch.Tensor, n_channels: int, n_power: int) -> torch.Tensor:
    """Per frequency ``min_t max_c (B p_t)_c / (p_t)_c >= ||U||^2``, ``B = U^T U``; ``magnitude`` U ``(F, C, S)`` >= 0.

    ``B p = U^T (U p)`` goes through the ``M`` channels: ``index_add_`` onto them, then a gather.
    """
    n_freq, n_atoms, width = magnitude.shape
    index, tiny = support.reshape(-1), torch.finfo(magnitude.dtype).tiny

    def gram_times(p):  # (F, C) -> (F, C)
        on_channels = magnitude.new_zeros(n_freq, n_channels).index_add_(
            1, index, (magnitude * p.unsqueeze(-1)).reshape(n_freq, -1))
        return (magnitude * on_channels[:, support]).sum(-1)

    p = magnitude.new_ones(n_freq, n_atoms)
    bound = magnitude.new_full((n_freq,), float("inf"))
    for _ in range(max(1, n_power)):
        q = gram_times(p)
        bound = torch.minimum(bound, (q / p).amax(dim=1))
        p = q / q.amax(dim=1, keepdim=True).clamp_min(tiny) + tiny  # stays > 0
    return bound
