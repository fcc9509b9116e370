"""Model selection on held-out windows: the objective both of training's M-steps descend.

:class:`Judge` scores a model on windows held out of training by the negative log posterior at the
encoder's codes (:func:`~crsae_sort.model.losses.map_objective`):

``[1/2 ||y - H z_T||^2_interior + sum_c (lambda_c ||z_c||_1 - (N_e + r - 1) log lambda_c + delta_c lambda_c)] / numel(y)``

and reports the interior reconstruction alone beside it. :mod:`crsae_sort.train` keeps the state where it
is lowest.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .model.crsae import CRsAE
from .model.gradients import edge_samples
from .model.losses import interior, lambda_terms
from .oom import run_in_parts


@dataclass
class Measured:
    """One encoder pass over the held-out windows: the interior fit ``1/2 ||y - H z_T||^2``, each atom's
    ``||z_c||_1`` ``(C,)`` and the number of code samples ``n_e`` they were summed over."""
    fit: float
    l1: torch.Tensor
    n_e: int


class Judge:
    """The held-out windows ``val`` ``(n, M, N)`` and their Gamma prior ``(shape_r, rate_delta)``: scores a
    model by ``val_objective`` (:func:`~crsae_sort.model.losses.map_objective`, the selection rule) and
    ``val_loss`` (the interior reconstruction ``1/2 ||y - H z_T||^2`` alone, reported)."""

    def __init__(self, val: torch.Tensor, prior: tuple[torch.Tensor, torch.Tensor] | None = None):
        self.val, self.prior = val, prior

    @torch.no_grad()
    def measure(self, model: CRsAE) -> Measured:
        """Encode the held-out windows once: what :meth:`score` needs (and training's prior is set from)."""
        edge = edge_samples(model)

        def part_terms(part):  # in parts on GPU out-of-memory; lambda's terms need the l1 over all parts
            z, y_hat = model(part)
            return (0.5 * float(interior(part - y_hat, edge).double().pow(2).sum()), z.abs().sum(dim=(0, 2)).double(),
                    z.shape[2] * len(part))

        parts, _ = run_in_parts(part_terms, self.val, what="the held-out windows")
        return Measured(sum(p[0] for p in parts), sum(p[1] for p in parts), sum(p[2] for p in parts))

    def score(self, model: CRsAE, m: Measured) -> dict:
        """``val_objective`` and ``val_loss`` of ``model`` from its pass ``m`` (``self.prior`` set first)."""
        shape_r, rate_delta = self.prior
        lam = model.lam.detach().double()
        lam_terms = float(lambda_terms(m.l1.to(lam.device), m.n_e, lam, shape_r.double(), rate_delta.double()))
        interior_elements = interior(self.val[:1], edge_samples(model)).numel() * len(self.val)
        return dict(val_objective=(m.fit + lam_terms) / self.val.numel(), val_loss=m.fit / interior_elements)

    def __call__(self, model: CRsAE) -> dict:
        return self.score(model, self.measure(model))
