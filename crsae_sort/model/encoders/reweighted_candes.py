"""Iteratively reweighted l1 unrolled, one reweighting per layer: the non-learned counterpart of ``reweighted``.

Candes, Wakin & Boyd, "Enhancing sparsity by reweighted l1 minimization", J. Fourier Anal. Appl.
2008 (eq. 7-8: ``w_i = 1 / (|x_i| + eps)`` from the previous solution). Here each layer reweights
from the previous layer's codes instead of from a solved problem, and the weights are
normalised to 1 at ``z = 0``:

    w_l = eps_c / (|x_l-1| + eps_c)                 eps_c = reweighted_candes_epsilon * lambda_c
    x_l = shrink(s_l + (1/L) H^T (y - H s_l),  lambda_c w_l / L)          (FISTA momentum between layers)

Because ``lambda_c w`` is the derivative of ``lambda_c eps_c log(1 + |z| / eps_c)``, each layer is a
proximal-gradient step on the majoriser of the log-sum objective (majorise-minimise):

    F(z) = 1/2 ||y - H z||^2 + sum_c lambda_c eps_c sum_n log(1 + |z_c,n| / eps_c)        (:meth:`objective`)

Near zero the penalty has slope ``lambda_c``, the lasso's, so noise is thresholded exactly as
by FISTA (and screening still holds: far from spikes ``w = 1``); a large code pays only
logarithmically, so spikes keep their amplitude instead of losing ``lambda_c`` to the l1 bias.
The normalisation is per code sample, not by a mean over the chunk, so a code does not depend on
how the recording was cut into chunks. Nothing is learned; ``eps`` is a prior: the log-sum
penalty is the negative log of a heavy-tailed (generalised Pareto-like) prior on amplitudes.

A separate encoder rather than an option of ``reweighted``: it has no learned weights and
another objective (the log-sum, not the lasso), so its state, its tests and its training differ.
"""
from __future__ import annotations

import torch

from ..operator import as_operator
from .base import Encoder
from .layers import unrolled
from .options import ReweightedCandesOptions


class ReweightedCandes(Encoder):
    """Reweighted l1 with weights ``eps / (|x_l-1| + eps)`` from the previous layer (module docstring)."""

    name = "reweighted-candes"
    Options = ReweightedCandesOptions
    supports_screening = True

    def _epsilon(self, lam: torch.Tensor) -> torch.Tensor:
        return (self.options.reweighted_candes_epsilon * lam).view(1, -1, 1)

    def objective(self, y, op, lam, z):
        """The log-sum objective ``1/2 ||y - H z||^2 + sum lambda_c eps_c log(1 + |z| / eps_c)`` (a scalar)."""
        eps = self._epsilon(lam)
        return 0.5 * (y - op.H(z)).pow(2).sum() + (lam.view(1, -1, 1) * eps * torch.log1p(z.abs() / eps)).sum()

    def forward(self, y, op, lam, lipschitz, z0=None):
        op = as_operator(op)
        step = 1.0 / lipschitz
        eps = self._epsilon(lam)
        bias0 = lam.view(1, -1, 1) * step

        def layer(l, x_prev):
            return step, bias0 * (eps / (x_prev.abs() + eps))

        return unrolled(y, op, self.n_iter, layer, self.positive, True, z0)
