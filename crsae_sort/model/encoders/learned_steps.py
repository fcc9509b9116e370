"""Learned step sizes and threshold scales, one of each per layer, with the dictionary tied (ALISTA-style).

Liu, Chen, Wang & Yin, "ALISTA: Analytic weights are as good as learned weights in LISTA",
ICLR 2019 (ALISTA's layer ``x_k+1 = eta_theta_k(x_k - gamma_k W^T (A x_k - b))`` with the matrix
``W`` fixed and only ``gamma_k, theta_k`` learned: 2T scalars). Here ``W = A = H`` (tied,
so the atoms stay the templates), and the threshold is written relative to the step so that
the untrained layer is exactly FISTA's. Layer l = 1..T (the loop of :mod:`.layers`):

    a_l = exp(u_l) / L                   the step (FISTA: 1/L)
    x_l = shrink(s_l + a_l H^T (y - H s_l),  exp(v_l) lambda_c a_l)      (FISTA: exp(v_l) = 1)

with FISTA's momentum between layers (``learned_steps_momentum``; without it, ALISTA's plain
layers). ``u = v = 0`` at the start: the untrained encoder gives FISTA's (ISTA's) codes exactly.
The 2T scalars are trained with the dictionary on the lasso objective of the last layer's
codes (:func:`crsae_sort.model.gradients.encoder_loss`; unsupervised, as Ablin, Moreau, Massias &
Gramfort, "Learning step sizes for unfolded sparse coding", NeurIPS 2019, train theirs).

Statistically, ``exp(v_l) lambda_c`` is the sparsity weight (Laplace rate) layer l applies,
shared by all templates: ``exp(v_l) > 1`` keeps weak codes off in early layers, ``< 1`` relaxes
it late. ``exp(u_l) / L`` is a step along the likelihood gradient ``H^T (y - H z)``; steps above
1/L are safe where the codes' support is small (``||H_S||^2 < L`` on a sparse support S), which
is where the speed-up of learned steps comes from (Ablin et al. 2019, Sec. 3).
"""
from __future__ import annotations

import torch
from torch import nn

from ..operator import as_operator
from .base import Encoder
from .layers import unrolled
from .options import LearnedStepsOptions


class LearnedSteps(Encoder):
    """Per-layer step ``exp(u_l) / L`` and threshold scale ``exp(v_l)`` (module docstring).

    ``log_steps`` ``u`` and ``log_scales`` ``v``: ``(T,)`` parameters, zero at the start.
    """

    name = "learned-steps"
    Options = LearnedStepsOptions
    supports_screening = True

    def __init__(self, n_iter: int, positive: bool = True, options=None, n_atoms: int | None = None):
        super().__init__(n_iter, positive, options, n_atoms)
        self.log_steps = nn.Parameter(torch.zeros(self.n_iter))
        self.log_scales = nn.Parameter(torch.zeros(self.n_iter))

    def steps(self) -> torch.Tensor:
        """Each layer's step as a multiple of ``1/L`` ``(T,)``."""
        return self.log_steps.detach().exp()

    def scales(self) -> torch.Tensor:
        """Each layer's threshold as a multiple of ``lambda_c`` ``(T,)``."""
        return self.log_scales.detach().exp()

    def threshold_floor(self) -> float:
        # the first layer from zero is shrink(a_1 H^T y, exp(v_1) lambda a_1): codes start where H^T y > exp(v_1) lambda
        return 1.0 if self.n_iter == 0 else float(self.scales()[0])

    def forward(self, y, op, lam, lipschitz, z0=None):
        op = as_operator(op)
        step = 1.0 / lipschitz
        a = self.log_steps.exp().to(lam.dtype)
        theta_a = (self.log_scales + self.log_steps).exp().to(lam.dtype)

        def layer(l, x_prev):
            return a[l] * step, lam * theta_a[l] * step

        return unrolled(y, op, self.n_iter, layer, self.positive, self.options.learned_steps_momentum, z0)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, momentum={self.options.learned_steps_momentum}"
