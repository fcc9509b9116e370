"""How the dictionary's gradient is taken: the loss that is backpropagated in the M-step.

Tolooshams & Ba, "Stable and interpretable unrolled dictionary learning", TMLR 2022, compare
estimators of the dictionary gradient ``g`` of the lasso at its minimiser. Each rule here is a
function ``(model, y) -> (z_T, loss)``; training backpropagates ``loss`` into the dictionary
only and steps it (``z_T`` may still carry the encoder's graph, for :func:`encoder_loss`). Registered by name (``--set dictionary_gradient=NAME``):

* ``ae-ls`` (the CRsAE rule, Tolooshams, Dey & Ba 2020): ``loss = 1/2 ||y - H z_T||^2`` with
  ``z_T = Encoder_T(y; H)`` kept in the graph, so the gradient flows through the unrolled
  encoder as well as the decoder. It has the smallest bias of the paper's three estimators.
* ``ae-lasso``: ``loss = 1/2 ||y - H z_T||^2 + sum_c lambda_c ||z_T,c||_1`` (lambda held fixed)
  backpropagated through the encoder: ``g = nabla_2 L(z_T, H) + (dz_T/dH) (nabla_1 L(z_T, H) +
  d||z_T||_1)``. Its distance to the gradient at the lasso minimiser ``g^ = nabla_2 L(z*, H)``
  shrinks as ``O(T rho^2T)`` (paper, Thm. 2).
* ``dec``: the decoder-only ("direct") gradient ``g = nabla_2 L(z_T, H)``: ``z_T`` is detached
  *before* the loss is formed, so nothing flows through the encoder (which then runs without a
  graph: cheaper). Its distance to ``g^`` shrinks only as ``O(rho^T)`` (paper, Thm. 1). The
  authors' ``train_dl_choose_gd.py`` detaches after decoding, which is ``ae-ls`` again; this
  is the definition of their ``compare_gradients.py``.

At the lasso minimiser ``nabla_1 L + d||z||_1 = 0``, so ``dec`` and ``ae-lasso`` both tend to
``g^`` as T grows; ``ae-ls`` tends to ``g^`` plus ``(dz*/dH)^T (-lambda sign z*)``: the lasso's
shrinkage bias, which the paper argues steers the dictionary towards the generating one.

An encoder's own learned weights (per-layer steps, thresholds) are trained by
:func:`encoder_loss`, whatever the rule: the lasso objective of ``z_T`` through the encoder.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the registry's names are read by crsae_sort.params, which must not import torch
    import torch


def ae_ls(model, y: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
    """``z_T`` and ``1/2 ||y - H z_T||^2`` (mean over the windows' interior elements), differentiable through
    the encoder."""
    from .losses import reconstruction_loss

    z, y_hat = model(y)
    return z, reconstruction_loss(y, y_hat, edge_samples(model))


def ae_lasso(model, y: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
    """``z_T`` and the lasso objective of ``z_T`` per element (lambda fixed), differentiable through the encoder."""
    z = model.encode(y)
    return z, _lasso_per_element(model, y, z)


def dec(model, y: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
    """``z_T`` (detached) and its lasso objective per element: the gradient reaches the dictionary only
    through the decoder ``H z_T``."""
    import torch

    learns = any(p.requires_grad for p in model.encoder.parameters())  # encoder_loss needs the graph then
    with torch.set_grad_enabled(learns and torch.is_grad_enabled()):
        z = model.encode(y)
    return z, _lasso_per_element(model, y, z.detach())


def encoder_loss(model, y: "torch.Tensor", z: "torch.Tensor") -> "torch.Tensor":
    """What an encoder's own weights minimise: the objective it unrolls (the lasso, or its own
    :meth:`~.encoders.base.Encoder.objective`) at its output ``z = z_T`` ``(batch, C, n_codes)``, per
    element of ``y``, with the dictionary and lambda held fixed.

    Not the reconstruction ``1/2 ||y - H z_T||^2``: that would lower every threshold until the codes
    fit the noise (the sparsity weight is lambda's job, learned by the Gamma-prior EM step).
    """
    op = model.operator()
    return model.encoder.objective(y, op, model.lam.detach(), z) / y.numel()


def edge_samples(model) -> int:
    """Samples at each end of a window left out of the losses: ``K - 1``, where a spike can straddle the
    edge with no code of its own (:func:`~.losses.interior`)."""
    return model.dictionary.shape[-1] - 1


def _lasso_per_element(model, y, z):
    """The lasso objective the encoder minimises, window edges included: ``dec`` and ``ae-lasso`` tend to the
    gradient at its minimiser only when the loss is that objective (``ae-ls``, a reconstruction loss with no
    such guarantee, leaves the edges out)."""
    lam = model.lam.detach().view(1, -1, 1)
    return (0.5 * (y - model.decode(z)).pow(2).sum() + (lam * z.abs()).sum()) / y.numel()


DICTIONARY_GRADIENTS = {
    "ae-ls": ae_ls,
    "ae-lasso": ae_lasso,
    "dec": dec,
}


def get_dictionary_gradient(name: str):
    """The rule registered as ``name``."""
    if name not in DICTIONARY_GRADIENTS:
        raise ValueError(f"unknown dictionary_gradient {name!r}; choose one of {', '.join(DICTIONARY_GRADIENTS)}")
    return DICTIONARY_GRADIENTS[name]
