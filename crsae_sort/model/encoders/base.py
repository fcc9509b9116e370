"""What every encoder is: an unrolled solver of the convolutional lasso with tied weights.

An encoder maps windows ``y`` ``(batch, M, N)`` to codes ``z_T`` ``(batch, C, N - K + 1)`` given
the dictionary's operator ``H`` (``op.H``, ``op.H_adjoint``; :mod:`crsae_sort.model.operator`),
the sparsity weights ``lambda`` ``(C,)`` and ``L >= ||H||^2``:

    z_T = Encoder_T(y; H, lambda, L),  approximately  argmin_z 1/2 ||y - H z||^2 + sum_c lambda_c ||z_c||_1

The dictionary and lambda are not the encoder's: they belong to the model and are passed in,
so the decoder ``H z`` and every encoder share the same atoms (the tied weights that make the
atoms the templates). An encoder may own extra learned weights (per-layer step sizes, say) as
``nn.Parameter``; they are saved in the model's state and trained with the dictionary, on the
objective the encoder unrolls (:func:`crsae_sort.model.gradients.encoder_loss`).
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn


class Encoder(nn.Module):
    """Base class; subclasses set ``name``, ``Options`` and ``supports_screening`` and define ``forward``.

    ``supports_screening``: the first step from ``z = 0`` is ``shrink(H^T y / L, lambda / L)``,
    so a code can only become non-zero near where ``(H^T y)_c`` approaches ``lambda_c``; the
    inference stage may then encode only those stretches (see :mod:`crsae_sort.infer`). An
    encoder whose thresholds can fall below ``lambda / L`` says by how much in
    :meth:`threshold_floor`, and the screen is lowered as much.

    ``supports_working_set``: the iteration is a proximal-gradient step with tied weights and one
    threshold ``lambda_c / L`` per template (FISTA, ISTA; ``extrapolates``: whether it adds momentum),
    so it can run on a working set of code entries in Gram form
    (:mod:`crsae_sort.model.working_set`) with the same iterates.

    ``n_atoms``: the number of templates C, for encoders with per-template weights (they create
    them on the first call when it is not given).
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type]
    supports_screening: ClassVar[bool] = False
    supports_working_set: ClassVar[bool] = False
    extrapolates: ClassVar[bool] = False

    def __init__(self, n_iter: int, positive: bool = True, options=None, n_atoms: int | None = None):
        super().__init__()
        self.n_iter = int(n_iter)
        self.n_atoms = n_atoms
        self.positive = bool(positive)
        self.options = options if options is not None else self.Options()
        if not isinstance(self.options, self.Options):
            raise TypeError(f"encoder {self.name!r} takes {self.Options.__name__}, not {type(self.options).__name__}")

    def margin(self, n_times_atom: int) -> int:
        """Samples of context each side of a chunk so that codes inside it match an unchunked run."""
        return 8 * n_times_atom

    def threshold_floor(self) -> float:
        """The smallest threshold of any layer as a fraction of ``lambda_c / L`` (1 for FISTA and ISTA)."""
        return 1.0

    def state_with_atoms(self, n_new: int) -> dict:
        """This encoder's state for a model with ``n_new`` more templates (growth, splits): as it is, for
        encoders without per-template weights."""
        return self.state_dict()

    def objective(self, y: torch.Tensor, op, lam: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The objective the iteration descends, summed over the batch (a scalar): the lasso
        ``1/2 ||y - H z||^2 + sum_c lambda_c ||z_c||_1``; an encoder with another penalty overrides it.

        y: ``(batch, M, N)``; z: ``(batch, C, N - K + 1)``; lam: ``(C,)``; op: the operator.
        """
        return 0.5 * (y - op.H(z)).pow(2).sum() + (lam.view(1, -1, 1) * z.abs()).sum()

    def forward(self, y: torch.Tensor, op, lam: torch.Tensor, lipschitz: float,
                z0: torch.Tensor | None = None) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"T={self.n_iter}, positive={self.positive}"


def zero_codes(y: torch.Tensor, op) -> torch.Tensor:
    """``z = 0`` ``(batch, C, N - K + 1)`` for windows ``y``; a window shorter than a template is an error.

    ``op``: the dictionary's operator (:class:`~crsae_sort.model.operator.ConvOperator` or alike).
    """
    n_codes = y.shape[-1] - op.n_times_atom + 1
    if n_codes < 1:
        raise ValueError(f"window of {y.shape[-1]} samples is shorter than a template "
                         f"({op.n_times_atom} samples)")
    return y.new_zeros(y.shape[0], op.n_atoms, n_codes)
