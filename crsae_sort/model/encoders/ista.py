"""ISTA for the convolutional lasso, unrolled for T iterations: the plain baseline of the family.

Same problem as :mod:`.fista`; the iteration (Daubechies, Defrise & De Mol 2004) is the
proximal-gradient step without momentum, from z_0 = 0, step 1/L with L >= ||H||^2:

    z_t = shrink(z_t-1 + (1/L) H^T (y - H z_t-1), lambda / L)

It converges as O(1/t) where FISTA converges as O(1/t^2) in objective, so at equal T its codes
are further from the lasso solution; it is here to measure what momentum buys.
"""
from __future__ import annotations

from ..operator import as_operator
from .base import Encoder, zero_codes
from .fista import proximal_gradient_step
from .options import IstaOptions


class Ista(Encoder):
    """ISTA unrolled for T steps; screening applies (first step from zero)."""

    name = "ista"
    Options = IstaOptions
    supports_screening = True
    supports_working_set = True
    extrapolates = False

    def forward(self, y, op, lam, lipschitz, z0=None):
        op = as_operator(op)
        z = z0 if z0 is not None else zero_codes(y, op)
        step = 1.0 / lipschitz
        bias = lam * step
        for _ in range(self.n_iter):
            z = proximal_gradient_step(y, z, op, bias, step, self.positive)
        return z
