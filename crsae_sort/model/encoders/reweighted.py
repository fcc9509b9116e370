"""Unrolled reweighted l1: every template has its own learned threshold in every layer.

Luong, Joukovsky & Deligiannis, "Interpretable deep recurrent neural networks via unfolding
reweighted l1-l1 minimization", IEEE TIP 2021 (Sec. III). Their reweighted-RNN unrolls the
proximal-gradient iteration of ``1/2 ||x - A D h||^2 + lambda_1 ||g o h||_1 (+ an l1-l1 temporal
term)``, and gives each layer l its own weight vector ``g_l``, so each hidden unit has its own
soft-threshold ``lambda_1 g_l / c`` in each layer ("a different activation function for each
hidden unit in each layer"). Their layers also untie ``W_l, U_l`` through a reweighting matrix;
here the dictionary stays tied (so the atoms remain the templates) and there is no temporal
term: what is kept is the per-unit, per-layer weight. (Written from the paper's abstract and a
summary of its Sec. III; the full text was not at hand, so check the layer against it.) Layer l = 1..T (the loop of :mod:`.layers`):

    x_l = shrink(s_l + (1/L) H^T (y - H s_l),  lambda_c g_l,c / L)        g_l,c = exp(w_l,c) > 0

with FISTA's momentum between layers (``reweighted_momentum``; without it, the paper's
proximal-gradient layers). ``w = 0`` at the start, so the untrained encoder is FISTA (ISTA)
exactly; the ``T x C`` weights are trained with the dictionary, on the lasso objective of the
last layer's codes (:func:`crsae_sort.model.gradients.encoder_loss`).

Statistically, ``lambda_c g_l,c`` is the Laplace-prior rate of template c as layer l sees it:
``g > 1`` in early layers holds back codes until the residual has been explained (a
continuation schedule), ``g < 1`` in late layers undoes part of the l1 shrinkage of confident
spikes. ``lambda_c`` is still learned by the Gamma-prior EM step and ``g`` only by the encoder
loss, so each product reads as a threshold in noise units (whitened data, unit-norm atoms):
layer l lets template c speak once its correlation exceeds ``lambda_c g_l,c`` noise deviations.
"""
from __future__ import annotations

import torch
from torch import nn

from ..operator import as_operator
from .base import Encoder
from .layers import unrolled
from .options import ReweightedOptions


class Reweighted(Encoder):
    """Per-layer, per-template learned thresholds ``lambda_c g_l,c / L`` (module docstring).

    ``log_weights``: ``(T, C)`` parameter ``w``, ``g = exp(w)``; created with ``n_atoms``, or at the
    first call from the dictionary's number of atoms.
    """

    name = "reweighted"
    Options = ReweightedOptions
    supports_screening = True

    def __init__(self, n_iter: int, positive: bool = True, options=None, n_atoms: int | None = None):
        super().__init__(n_iter, positive, options, n_atoms)
        self.log_weights = None if n_atoms is None else nn.Parameter(torch.zeros(self.n_iter, n_atoms))

    def weights(self) -> torch.Tensor:
        """``g`` ``(T, C)``: each layer's threshold of each template as a multiple of ``lambda_c / L``."""
        return self.log_weights.detach().exp()

    def state_with_atoms(self, n_new: int) -> dict:
        """``w`` gains a column per new template, each layer's mean over the existing templates (a new
        atom starts on the threshold schedule learned so far; retraining after growth adjusts it)."""
        state = self.state_dict()
        if self.log_weights is not None and n_new > 0:
            w = state["log_weights"]
            state["log_weights"] = torch.cat([w, w.mean(1, keepdim=True).expand(-1, n_new)], 1)
        return state

    def threshold_floor(self) -> float:
        # the first layer from zero decides where codes can start (the screen of crsae_sort.infer)
        return 1.0 if self.log_weights is None or self.n_iter == 0 else float(self.weights()[0].min())

    def forward(self, y, op, lam, lipschitz, z0=None):
        op = as_operator(op)
        if self.log_weights is None:
            self.log_weights = nn.Parameter(torch.zeros(self.n_iter, op.n_atoms, device=y.device))
        if self.log_weights.shape[1] != lam.shape[0]:
            raise ValueError(f"encoder reweighted has weights for {self.log_weights.shape[1]} templates, "
                             f"the dictionary has {lam.shape[0]}")
        g = self.log_weights.exp().to(lam.dtype)
        step = 1.0 / lipschitz

        def layer(l, x_prev):
            return step, lam * g[l] * step

        return unrolled(y, op, self.n_iter, layer, self.positive, self.options.reweighted_momentum, z0)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, momentum={self.options.reweighted_momentum}"
