"""How the dictionary's gradient is taken: the loss that is backpropagated in the M-step.

Tolooshams & Ba, "Stable and interpretable unrolled dictionary learning", TMLR 2022, compare
estimators of the dictionary gradient ``g`` of the lasso at its minimiser. Each rule here is a
function ``(model, y) -> (z_T, loss)``; training calls ``loss.backward()`` and steps the
dictionary. Registered by name (``--set dictionary_gradient=NAME``):

* ``ae-ls`` (the CRsAE rule, Tolooshams, Dey & Ba 2020): ``loss = 1/2 ||y - H z_T||^2`` with
  ``z_T = Encoder_T(y; H)`` kept in the graph, so the gradient flows through the unrolled
  encoder as well as the decoder. It has the smallest bias of the paper's three estimators.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the registry's names are read by crsae_sort.params, which must not import torch
    import torch


def ae_ls(model, y: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
    """``z_T`` and ``1/2 ||y - H z_T||^2`` (mean over elements), differentiable through the encoder."""
    from .losses import reconstruction_loss

    z, y_hat = model(y)
    return z, reconstruction_loss(y, y_hat)


DICTIONARY_GRADIENTS = {
    "ae-ls": ae_ls,
}


def get_dictionary_gradient(name: str):
    """The rule registered as ``name``."""
    if name not in DICTIONARY_GRADIENTS:
        raise ValueError(f"unknown dictionary_gradient {name!r}; choose one of {', '.join(DICTIONARY_GRADIENTS)}")
    return DICTIONARY_GRADIENTS[name]
