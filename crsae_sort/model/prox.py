"""Shrinkage: the proximal operator of the weighted l1 penalty (the CRsAE activation).

For ``g(z) = sum_c b_c |z_c|`` the prox is the soft threshold

    prox(v)_c = sign(v_c) * max(|v_c| - b_c, 0)                       (two-sided)

and, with the constraint ``z >= 0`` (non-negative spike amplitudes),

    prox(v)_c = max(v_c - b_c, 0) = ReLU(v_c - b_c)                   (one-sided).

In network terms this is a (two-sided) ReLU whose bias ``b_c = lambda_c sigma^2 / L`` is the
sparsity weight of template ``c`` (Tolooshams et al. 2020, sec. III).
"""
from __future__ import annotations

import torch


def shrink(v: torch.Tensor, bias: torch.Tensor, positive: bool) -> torch.Tensor:
    """Soft threshold of ``v`` ``(batch, n_atoms, n_codes)`` by ``bias`` ``(n_atoms,)``, or by a bias of
    ``v``'s own shape (one threshold per code sample: the reweighted l1 penalties)."""
    b = bias.view(1, -1, 1) if bias.dim() == 1 else bias
    if positive:
        return torch.relu(v - b)
    return torch.sign(v) * torch.relu(v.abs() - b)
