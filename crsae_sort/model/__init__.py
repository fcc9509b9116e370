"""The CRsAE itself, in torch only (no SpikeInterface): operator, prox, losses, encoders, model.

* :mod:`.operator` — the convolutional dictionary ``H``, its adjoint ``H^T`` and ``L >= ||H||^2``;
* :mod:`.prox` — shrinkage, the proximal operator of the weighted l1 penalty;
* :mod:`.losses` — the lasso objective, the reconstruction loss and the Gamma-prior lambda loss;
* :mod:`.encoders` — the unrolled encoders, chosen by name (``fista``, ``ista``);
* :mod:`.gradients` — how the dictionary's gradient is taken through the encoder (``ae-ls``);
* :mod:`.crsae` — the :class:`CRsAE` module and its saved state.

Nothing here is imported by ``import crsae_sort.model``: import the submodule you need.
"""
