"""The losses of the CRsAE and the lasso objective its encoder minimises.

Tolooshams, Dey & Ba, "Deep residual autoencoders for expectation maximization-inspired
dictionary learning", IEEE TNNLS 2020:

* lasso (E-step, data whitened so sigma = 1): ``F(z) = 1/2 ||y - H z||^2 + sum_c lambda_c ||z_c||_1``;
* dictionary loss (M-step for H, backpropagated through the encoder): ``1/2 ||y - H z_T||^2``;
* lambda loss (M-step for lambda under a Gamma(r, delta) prior, ``z_T`` treated as data):
  ``sum_c [lambda_c ||z_c||_1 - (N_e + r - 1) log lambda_c + delta lambda_c]``, minimised by
  ``lambda_c = (N_e + r - 1) / (||z_c||_1 + delta)``;
* initial lambda (universal threshold, sigma = 1 after whitening): ``sqrt(2 log(C N_e))``;
* model selection (held-out windows): the negative log posterior of the whole model at the encoder's
  codes, ``1/2 ||y - H z_T||^2 + sum_c [lambda_c ||z_c||_1 - (N_e + r - 1) log lambda_c + delta lambda_c]``,
  the objective that the E-step (in ``z``) and both M-steps (in ``H`` and in ``lambda``) descend.

A window's first and last ``K - 1`` samples can be left out of the reconstruction terms (``edge``
arguments below; the ``ae-ls`` rule and model selection do): the codes are valid convolutions (``N - K + 1``
per window), so a spike that straddles the window's edge has no code and its part inside the window is
residual whatever the dictionary.
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


def interior(x: torch.Tensor, edge: int) -> torch.Tensor:
    """``x`` ``(..., N)`` without its first and last ``edge`` samples (``N - 2 edge`` left)."""
    return x[..., edge: x.shape[-1] - edge] if edge > 0 else x


def reconstruction_loss(y: torch.Tensor, y_hat: torch.Tensor, edge: int = 0) -> torch.Tensor:
    """``1/2 ||y - y_hat||^2`` per sample and channel (mean over the batch's elements), over the samples
    at least ``edge`` from either end of each window (:func:`interior`)."""
    return 0.5 * interior(y - y_hat, edge).pow(2).mean()


def map_objective(y: torch.Tensor, y_hat: torch.Tensor, z: torch.Tensor, lam: torch.Tensor,
                  shape_r: torch.Tensor | float, rate_delta: torch.Tensor | float, edge: int = 0) -> torch.Tensor:
    """Negative log posterior of the CRsAE at codes ``z``, per element of ``y`` (a scalar):

    ``[1/2 ||y - y_hat||^2_interior + sum_c (lambda_c ||z_c||_1 - (N_e + r - 1) log lambda_c + delta lambda_c)]
    / numel(y)``

    with ``y_hat = H z`` (Gaussian noise of unit variance), ``z_c`` exponential of rate ``lambda_c`` and
    ``lambda_c ~ Gamma(r, delta)``. The lasso's ``z``-step, the dictionary step and lambda's step
    (:func:`lambda_loss`) each lower it, so, unlike the reconstruction alone, it does not rise when lambda
    follows its prior, and it charges the codes that fitting noise would need.
    y, y_hat: ``(batch, M, N)``; z: ``(batch, C, N - K + 1)``.
    """
    fit = 0.5 * interior(y - y_hat, edge).pow(2).sum()
    return (fit + lambda_loss(z, lam, shape_r, rate_delta)) / y.numel()


def lambda_loss(z: torch.Tensor, lam: torch.Tensor, shape_r: torch.Tensor | float,
                rate_delta: torch.Tensor | float) -> torch.Tensor:
    """Gamma-prior EM loss ``sum_c [lam_c ||z_c||_1 - (N_e + r - 1) log lam_c + delta lam_c]``.

    z: ``(batch, C, n_codes)`` (treated as data: detach it); ``N_e = batch * n_codes``.
    """
    return lambda_terms(z.abs().sum(dim=(0, 2)), z.shape[0] * z.shape[2], lam, shape_r, rate_delta)


def lambda_terms(l1: torch.Tensor, n_e: int, lam: torch.Tensor, shape_r: torch.Tensor | float,
                 rate_delta: torch.Tensor | float) -> torch.Tensor:
    """:func:`lambda_loss` from each template's ``||z_c||_1`` ``l1`` ``(C,)`` over ``n_e`` code samples (codes
    encoded in parts add their l1 and their counts first)."""
    return (lam * l1 - (n_e + shape_r - 1.0) * lam.log() + rate_delta * lam).sum()


def lambda_closed_form(z: torch.Tensor, shape_r: torch.Tensor | float,
                       rate_delta: torch.Tensor | float) -> torch.Tensor:
    """Minimiser of :func:`lambda_loss`: ``(N_e + r - 1) / (||z_c||_1 + delta)`` ``(C,)``."""
    return lambda_minimiser(z.abs().sum(dim=(0, 2)), z.shape[0] * z.shape[2], shape_r, rate_delta)


def lambda_minimiser(l1: torch.Tensor, n_e: int, shape_r: torch.Tensor | float,
                     rate_delta: torch.Tensor | float) -> torch.Tensor:
    """Minimiser of :func:`lambda_terms` from each template's ``||z_c||_1`` ``l1`` ``(C,)`` over ``n_e`` code
    samples: ``(N_e + r - 1) / (||z_c||_1 + delta)`` ``(C,)`` (the M-step for lambda in closed form)."""
    return (n_e + shape_r - 1.0) / (l1 + rate_delta)


def universal_lambda(n_atoms: int, n_codes: int, noise_std: float = 1.0) -> float:
    """Universal threshold ``sqrt(2 log(C N_e)) / sigma`` (Donoho & Johnstone 1994)."""
    return math.sqrt(2.0 * math.log(max(n_atoms * n_codes, 2))) / noise_std


def gamma_prior(lam0: torch.Tensor, n_e: int, strength: float,
                code_l1: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Gamma(r, delta) prior on each lambda_c, ``r = strength * N_e`` pseudo-samples, whose lambda step has
    its minimiser at ``lam0`` for an atom of the start's mean code size:

    ``delta_c = (N_e + r - 1) / lam0_c - code_l1``,  so  ``(N_e + r - 1) / (||z_c||_1 + delta_c) = lam0_c``
    when ``||z_c||_1 = code_l1`` (the mean over atoms of ``||z_c||_1`` over ``N_e`` code samples at the start).

    An atom that codes more than the mean then gets a lower lambda, one that codes less a higher one:
    ``lambda_c / lam0_c = 1 / (1 + lam0_c (||z_c||_1 - code_l1) / (N_e + r - 1))``; ``strength`` narrows
    the spread. (With delta = r / lam0, the prior's mean at lam0, the step's minimiser sits near
    ``(1 + 1 / strength) lam0`` for every sparse atom alike: the codes' zeros are data to the exponential.)
    ``delta_c`` is kept above ``1e-3 (N_e + r - 1) / lam0_c`` (lambda at most 1000 lam0).
    """
    shape_r = torch.full_like(lam0, strength * n_e)
    scale = n_e + shape_r - 1.0
    rate_delta = torch.clamp(scale / lam0 - code_l1, min=1e-3 * scale / lam0)
    return shape_r, rate_delta
