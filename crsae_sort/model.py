"""The CRsAE: encoder (unrolled FISTA), decoder (the dictionary) and the two losses.

Tolooshams, Dey & Ba, "Deep residual autoencoders for expectation maximization-inspired
dictionary learning", IEEE TNNLS 2020.

* Encoder: ``z_T = FISTA_T(y; H, lambda)`` (``fista.fista``).
* Decoder: ``y_hat = H z_T`` with the same, tied dictionary (``operators.H``).
* Dictionary loss (M-step for H, backpropagated through the encoder):
  ``loss_H = 1/2 ||y - H z_T||^2``; atoms renormalised to unit l2 norm after every step.
* Lambda loss (M-step for lambda under a Gamma(r, delta) prior, z_T treated as data):
  ``loss_lambda = sum_c [lambda_c ||z_c||_1 - (N_e + r - 1) log lambda_c + delta lambda_c]``,
  minimised by ``lambda_c = (N_e + r - 1) / (||z_c||_1 + delta)``.
* Initial lambda (universal threshold, sigma = 1 after whitening): ``sqrt(2 log(C N_e))``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .fista import fista
from .operators import H, lipschitz_constant


class CRsAE(nn.Module):
    """Constrained recurrent sparse autoencoder with a multichannel convolutional dictionary.

    dictionary: ``(n_atoms, n_channels, n_times_atom)``, unit-norm atoms.
    ``log_lambda``: ``(n_atoms,)``, the per-template sparsity weight on a log scale.
    ``reference_amplitude``: ``(n_atoms,)`` buffer, the typical code of a spike of each template
    (median over its initial cluster), used to tell spikes from small residual codes.
    """

    def __init__(self, dictionary: torch.Tensor, lam: torch.Tensor, n_iter: int, positive: bool = True,
                 reference_amplitude: torch.Tensor | None = None):
        super().__init__()
        self.dictionary = nn.Parameter(dictionary.clone())
        self.log_lambda = nn.Parameter(lam.clone().log())
        ref = reference_amplitude if reference_amplitude is not None else torch.ones(len(dictionary))
        self.register_buffer("reference_amplitude", ref.clone().to(dictionary.dtype))
        self.n_iter = int(n_iter)
        self.positive = bool(positive)
        self.normalize_()
        self.lipschitz = lipschitz_constant(self.dictionary)

    @property
    def lam(self) -> torch.Tensor:
        """Per-template sparsity weight ``lambda`` ``(n_atoms,)``."""
        return self.log_lambda.exp()

    @torch.no_grad()
    def normalize_(self) -> None:
        """Project each atom onto the unit sphere, ``h_c <- h_c / ||h_c||``, and refresh L."""
        norms = self.dictionary.flatten(1).norm(dim=1).clamp_min(1e-12)
        self.dictionary.div_(norms.view(-1, 1, 1))
        self.refresh_lipschitz()

    def refresh_lipschitz(self) -> None:
        """Recompute ``L >= ||H||^2`` for the current dictionary (after loading a state)."""
        self.lipschitz = lipschitz_constant(self.dictionary)

    def encode(self, y: torch.Tensor, track_lambda_grad: bool = False) -> torch.Tensor:
        """Codes ``z_T`` ``(batch, C, N - K + 1)`` of windows ``y`` ``(batch, M, N)``."""
        lam = self.lam if track_lambda_grad else self.lam.detach()
        return fista(y, self.dictionary, lam, self.lipschitz, self.n_iter, self.positive)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``H z`` ``(batch, M, N)``."""
        return H(z, self.dictionary)

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(y)
        return z, self.decode(z)


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
