"""The losses of the CRsAE and the lasso objective its encoder minimises.

Tolooshams, Dey & Ba, "Deep residual autoencoders for expectation maximization-inspired
dictionary learning", IEEE TNNLS 2020:

* lasso (E-step, data whitened so sigma = 1): ``F(z) = 1/2 ||y - H z||^2 + sum_c lambda_c ||z_c||_1``;
* dictionary loss (M-step for H, backpropagated through the encoder): ``1/2 ||y - H z_T||^2``;
* lambda loss (M-step for lambda under a Gamma(r, delta) prior, ``z_T`` treated as data):
  ``sum_c [lambda_c ||z_c||_1 - (N_e + r - 1) log lambda_c + delta lambda_c]``, minimised by
  ``lambda_c = (N_e + r - 1) / (||z_c||_1 + delta)``;
* initial lambda (universal threshold, sigma = 1 after whitening): ``sqrt(2 log(C N_e))``.
"""
from __future__ import annotations

import math

import torch

from .operator import H


def lasso_objective(y: torch.Tensor, z: torch.Tensor, dictionary: torch.Tensor,
                    lam: torch.Tensor) -> torch.Tensor:
    """``1/2 ||y - H z||^2 + sum_c lambda_c ||z_c||_1`` summed over the batch (a scalar)."""
    residual = y - H(z, dictionary)
    return 0.5 * residual.pow(2).sum() + (lam.view(1, -1, 1) * z.abs()).sum()


def reconstruction_loss(y: torch.Tensor, y_hat: torch.Tensor) -> torch.Tensor:
    """``1/2 ||y - y_hat||^2`` per sample and channel (mean over the batch's elements)."""
    return 0.5 * (y - y_hat).pow(2).mean()


def lambda_loss(z: torch.Tensor, lam: torch.Tensor, shape_r: torch.Tensor | float,
                rate_delta: torch.Tensor | float) -> torch.Tensor:
    """Gamma-prior EM loss ``sum_c [lam_c ||z_c||_1 - (N_e + r - 1) log lam_c + delta lam_c]``.

    z: ``(batch, C, n_codes)`` (treated as data: detach it); ``N_e = batch * n_codes``.
    """
    n_e = z.shape[0] * z.shape[2]
    l1 = z.abs().sum(dim=(0, 2))
    return (lam * l1 - (n_e + shape_r - 1.0) * lam.log() + rate_delta * lam).sum()


def lambda_closed_form(z: torch.Tensor, shape_r: torch.Tensor | float,
                       rate_delta: torch.Tensor | float) -> torch.Tensor:
    """Minimiser of :func:`lambda_loss`: ``(N_e + r - 1) / (||z_c||_1 + delta)`` ``(C,)``."""
    n_e = z.shape[0] * z.shape[2]
    return (n_e + shape_r - 1.0) / (z.abs().sum(dim=(0, 2)) + rate_delta)


def universal_lambda(n_atoms: int, n_codes: int, noise_std: float = 1.0) -> float:
    """Universal threshold ``sqrt(2 log(C N_e)) / sigma`` (Donoho & Johnstone 1994)."""
    return math.sqrt(2.0 * math.log(max(n_atoms * n_codes, 2))) / noise_std


def gamma_prior(lam0: torch.Tensor, n_e: int, strength: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Gamma(r, delta) prior with mean ``r / delta = lam0`` and ``r = strength * N_e`` pseudo-samples."""
    shape_r = torch.full_like(lam0, strength * n_e)
    return shape_r, shape_r / lam0
