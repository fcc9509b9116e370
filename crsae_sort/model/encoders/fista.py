"""FISTA for the convolutional lasso, unrolled for T iterations: the CRsAE encoder (the default).

Problem (the E-step of Tolooshams, Dey & Ba, IEEE TNNLS 2020, eq. 6; data whitened so sigma = 1):

    min_z  1/2 ||y - H z||^2 + sum_c lambda_c ||z_c||_1      (and z >= 0 if ``positive``)

Iteration (Beck & Teboulle 2009), from x_0 = s_1 = 0, tau_1 = 1, step 1/L with L >= ||H||^2:

    x_t     = shrink(s_t + (1/L) H^T (y - H s_t), lambda / L)          (:func:`proximal_gradient_step`)
    tau_t+1 = (1 + sqrt(1 + 4 tau_t^2)) / 2                            (:func:`momentum`)
    s_t+1   = x_t + ((tau_t - 1) / tau_t+1) (x_t - x_t-1)

The weights (H, and lambda as the shrinkage bias) are tied across the T unrolled steps, so
the encoder is a recurrent (or deep residual) network with ReLU activations. The same
iterates, run to convergence instead of for T steps, are the convex reference of
``crsae-sort bench convex`` (:func:`fista_iterates`).
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from ..operator import as_operator
from ..prox import shrink
from .base import Encoder, zero_codes
from .options import FistaOptions


def proximal_gradient_step(y: torch.Tensor, s: torch.Tensor, op, bias: torch.Tensor,
                           step: float, positive: bool) -> torch.Tensor:
    """One proximal-gradient step ``shrink(s + step * H^T (y - H s), bias)``.

    y: ``(batch, M, N)``; s: ``(batch, C, N - K + 1)``; op: the dictionary's operator;
    bias: ``(C,)`` (already scaled by ``step``).
    """
    return shrink(s + step * op.H_adjoint(y - op.H(s)), bias, positive)


def momentum(tau: float) -> tuple[float, float]:
    """``tau_t+1 = (1 + sqrt(1 + 4 tau_t^2)) / 2`` and the extrapolation weight ``(tau_t - 1) / tau_t+1``."""
    tau_next = (1.0 + math.sqrt(1.0 + 4.0 * tau * tau)) / 2.0
    return tau_next, (tau - 1.0) / tau_next


def fista_iterates(y: torch.Tensor, dictionary, lam: torch.Tensor, lipschitz: float,
                   positive: bool = True, z0: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
    """The FISTA iterates ``x_1, x_2, ...`` ``(batch, C, N - K + 1)``, without end; the caller stops.

    ``dictionary``: a tensor ``(C, M, K)`` or an operator (:func:`~crsae_sort.model.operator.as_operator`).
    """
    op = as_operator(dictionary)
    step = 1.0 / lipschitz
    bias = lam * step
    x_prev = z0 if z0 is not None else zero_codes(y, op)
    s, tau = x_prev, 1.0
    while True:
        x = proximal_gradient_step(y, s, op, bias, step, positive)
        tau, beta = momentum(tau)
        s = x + beta * (x - x_prev)
        x_prev = x
        yield x


def fista(y: torch.Tensor, dictionary, lam: torch.Tensor, lipschitz: float,
          n_iter: int, positive: bool = True, z0: torch.Tensor | None = None) -> torch.Tensor:
    """Run ``n_iter`` FISTA iterations and return the codes ``(batch, C, N - K + 1)``.

    Differentiable with respect to ``dictionary`` (backpropagation through the unrolled
    encoder, the ``g_ae-ls`` gradient of Tolooshams & Ba, TMLR 2022) and to ``lam``.
    """
    x = z0 if z0 is not None else zero_codes(y, as_operator(dictionary))
    iterates = fista_iterates(y, dictionary, lam, lipschitz, positive, z0)
    for _ in range(n_iter):
        x = next(iterates)
    return x


class Fista(Encoder):
    """FISTA unrolled for T steps (module docstring); screening applies (first step from zero)."""

    name = "fista"
    Options = FistaOptions
    supports_screening = True
    supports_working_set = True
    extrapolates = True

    def forward(self, y, op, lam, lipschitz, z0=None):
        return fista(y, op, lam, lipschitz, self.n_iter, self.positive, z0)
