"""FISTA layers whose step and threshold change from layer to layer: the loop the learned encoders share.

Layer l = 1..T of the unrolled iteration, from x_0 = s_1 = z_0 (0 unless given), tau_1 = 1:

    x_l     = shrink(s_l + a_l H^T (y - H s_l), b_l)                     (a proximal-gradient step)
    tau_l+1 = (1 + sqrt(1 + 4 tau_l^2)) / 2
    s_l+1   = x_l + ((tau_l - 1) / tau_l+1) (x_l - x_l-1)                (``momentum``; else s_l+1 = x_l)

Each encoder supplies the layer's step ``a_l`` (a float or a 0-dim tensor) and bias ``b_l``
(``(C,)``, or per code sample ``(batch, C, n_codes)``) from the layer index and the previous
output ``x_l-1``. With ``a_l = 1/L`` and ``b_l = lambda / L`` this is FISTA (Beck & Teboulle
2009) as in :mod:`.fista`, operation for operation, so a learned encoder initialised at those
values gives FISTA's codes exactly; without momentum it is ISTA.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from .base import zero_codes
from .fista import momentum as next_momentum
from .fista import proximal_gradient_step

#: ``layer(l, x_prev) -> (step a_l, bias b_l)`` for l = 0..T-1
Layer = Callable[[int, torch.Tensor], tuple]


def unrolled(y: torch.Tensor, op, n_iter: int, layer: Layer, positive: bool, momentum: bool = True,
             z0: torch.Tensor | None = None) -> torch.Tensor:
    """Run ``n_iter`` layers and return ``x_T`` ``(batch, C, N - K + 1)`` for windows ``y`` ``(batch, M, N)``."""
    def step(l, s, x_prev):
        a, b = layer(l, x_prev)
        return proximal_gradient_step(y, s, op, b, a, positive)

    return accelerated(z0 if z0 is not None else zero_codes(y, op), n_iter, step, momentum)


def accelerated(x0: torch.Tensor, n_iter: int, step: Callable, momentum: bool = True) -> torch.Tensor:
    """``x_l = step(l, s_l, x_l-1)`` for l = 0..T-1 from ``s_1 = x_0``, with FISTA's extrapolation
    ``s_l+1 = x_l + ((tau_l - 1) / tau_l+1)(x_l - x_l-1)`` when ``momentum`` (else ``s_l+1 = x_l``);
    returns ``x_T`` (``x_0`` when T = 0). The loop every unrolled proximal-gradient iteration shares,
    whatever form its step takes (convolutions here, the Gram form on a working set)."""
    x_prev = x0
    s, tau = x_prev, 1.0
    for l in range(n_iter):
        x = step(l, s, x_prev)
        if momentum:
            tau, beta = next_momentum(tau)
            s = x + beta * (x - x_prev)
        else:
            s = x
        x_prev = x
    return x_prev
