"""The CRsAE encoder: FISTA for the convolutional lasso, unrolled for T iterations.

Problem (the E-step of Tolooshams et al. 2020, eq. 6, data whitened so sigma = 1):

    min_z  1/2 ||y - H z||^2 + sum_c lambda_c ||z_c||_1      (and z >= 0 if ``positive``)

Iteration (Beck & Teboulle 2009), from x_0 = s_1 = 0, tau_1 = 1, step 1/L with L >= ||H||^2:

    x_t     = shrink(s_t + (1/L) H^T (y - H s_t), lambda / L)
    tau_t+1 = (1 + sqrt(1 + 4 tau_t^2)) / 2
    s_t+1   = x_t + ((tau_t - 1) / tau_t+1) (x_t - x_t-1)

The weights (H, and lambda as the shrinkage bias) are tied across the T unrolled steps, so
the encoder is a recurrent (or deep residual) network with ReLU activations.
"""
from __future__ import annotations

import math

import torch

from .operators import H, H_adjoint
from .prox import shrink


def fista_step(y: torch.Tensor, s: torch.Tensor, dictionary: torch.Tensor, bias: torch.Tensor,
               step: float, positive: bool) -> torch.Tensor:
    """One proximal-gradient step ``shrink(s + step * H^T (y - H s), bias)``.

    y: ``(batch, M, N)``; s: ``(batch, C, N - K + 1)``; bias: ``(C,)`` (already scaled by ``step``).
    """
    return shrink(s + step * H_adjoint(y - H(s, dictionary), dictionary), bias, positive)


def fista(y: torch.Tensor, dictionary: torch.Tensor, lam: torch.Tensor, lipschitz: float,
          n_iter: int, positive: bool = True, z0: torch.Tensor | None = None) -> torch.Tensor:
    """Run ``n_iter`` FISTA iterations and return the codes ``(batch, C, N - K + 1)``.

    Differentiable with respect to ``dictionary`` (backpropagation through the unrolled
    encoder, the ``g_ae-ls`` gradient of Tolooshams & Ba, TMLR 2022) and to ``lam``.
    """
    n_codes = y.shape[-1] - dictionary.shape[-1] + 1
    if n_codes < 1:
        raise ValueError(f"window of {y.shape[-1]} samples is shorter than a template "
                         f"({dictionary.shape[-1]} samples)")
    step = 1.0 / lipschitz
    bias = lam * step
    x_prev = z0 if z0 is not None else y.new_zeros(y.shape[0], dictionary.shape[0], n_codes)
    s = x_prev
    tau = 1.0
    for _ in range(n_iter):
        x = fista_step(y, s, dictionary, bias, step, positive)
        tau_next = (1.0 + math.sqrt(1.0 + 4.0 * tau * tau)) / 2.0
        s = x + ((tau - 1.0) / tau_next) * (x - x_prev)
        x_prev, tau = x, tau_next
    return x_prev


def lasso_objective(y: torch.Tensor, z: torch.Tensor, dictionary: torch.Tensor,
                    lam: torch.Tensor) -> torch.Tensor:
    """``1/2 ||y - H z||^2 + sum_c lambda_c ||z_c||_1`` summed over the batch (a scalar)."""
    residual = y - H(z, dictionary)
    return 0.5 * residual.pow(2).sum() + (lam.view(1, -1, 1) * z.abs()).sum()
