"""Sequential sparse recovery over overlapping frames of the signal (SISTA-RNN), dictionary tied.

Wisdom, Powers, Pitton & Atlas, "Interpretable recurrent neural networks using sequential sparse
recovery", NIPS 2016 workshop / arXiv 1611.07252 (eqs. 3-6). Their model is ``y_t = A D h_t`` with
a first-order prior ``D h_t ~ F D h_t-1``; frame t solves

    min_h  1/2 ||y_t - A D h||^2 + (lambda_2 / 2) ||D h - F D h^_t-1||^2 + lambda_1 ||h||_1

with K ISTA steps warm-started at ``D^-1 F D h^_t-1`` (the previous frame's estimate moved by F).
Here the frames are overlapping stretches of one recording, ``A D`` is the convolutional
dictionary ``H`` (tied: the atoms stay the templates), ``lambda_1`` is each template's ``lambda_c``
and ``F`` is the shift by the hop between frames, so the warm start is simply the previous frame's
codes on the overlap (zero on the new samples) and the prior pulls this frame's reconstruction
towards the previous one on the overlap. Frame t covers the code samples ``[a_t, b_t)``,
``a_t = t h`` (the hop ``h = sista_hop_fraction x`` the frame ``sista_frame_templates x K``); codes
before ``a_t`` are final (the past) and their tails are subtracted from the frame's signal:

    y_t  = y[a_t : b_t + K - 1] - (H z_past)[a_t : b_t + K - 1]           (the past's tails, K - 1 samples)
    r_t  = H z0_t,  z0_t = z^_t-1 shifted onto [a_t, b_t-1), 0 after      (the warm start and the prior)
    o_t  = 1 on the samples the previous frame reconstructed, [a_t, b_t-1 + K - 1), else 0
    x    = shrink(s + (1/L') H^T((y_t - H s) + lambda_2 o_t (r_t - H s)), lambda / L')   L' = (1 + lambda_2) L

T = ``n_iterations`` steps per frame (FISTA's momentum restarted in each frame with
``sista_momentum``, else SISTA's ISTA steps). A code sample is final once the next frame starts
past it, so every code sample gets ``T / sista_hop_fraction`` iterations in all (the work per
sample; those of the first hop and past the last full hop fewer, down to T); the encoder's output
``(batch, C, N - K + 1)`` is the codes as each left its last frame.

Statistically, ``lambda_2`` is the precision (in noise units) of the Gaussian prior that this
frame's signal estimate equals the previous frame's on the overlap: 0 makes each frame an
independent lasso (warm-started only), large values freeze what the previous frame decided.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..operator import as_operator
from ..prox import shrink
from .base import Encoder, zero_codes
from .fista import proximal_gradient_step
from .layers import accelerated
from .options import SistaOptions


def frame_bounds(n_codes: int, frame: int, hop: int) -> list[tuple[int, int]]:
    """The frames ``[a_t, b_t)`` over ``n_codes`` code samples: starts ``0, hop, 2 hop, ...``, each ``frame``
    long, the last one ending at ``n_codes`` (one frame when ``n_codes <= frame``)."""
    if n_codes <= frame:
        return [(0, n_codes)]
    out, a = [], 0
    while True:
        b = min(a + frame, n_codes)
        out.append((a, b))
        if b == n_codes:
            return out
        a += hop


def frame_step(y_t: torch.Tensor, r_t: torch.Tensor, overlap: torch.Tensor, op, s: torch.Tensor,
               bias: torch.Tensor, step, coupling: float, positive: bool) -> torch.Tensor:
    """One proximal-gradient step of the frame objective (module docstring):
    ``shrink(s + step H^T((y_t - H s) + lambda_2 o (r_t - H s)), bias)``.

    y_t, r_t: ``(batch, M, n + K - 1)``; overlap ``o``: ``(n + K - 1,)`` of 0/1; s: ``(batch, C, n)``;
    bias ``(C,)`` and step already divided by ``L' = (1 + lambda_2) L``.
    """
    if coupling <= 0:  # no prior: FISTA's own step on the frame
        return proximal_gradient_step(y_t, s, op, bias, step, positive)
    hs = op.H(s)
    residual = (y_t - hs) + coupling * overlap * (r_t - hs)
    return shrink(s + step * op.H_adjoint(residual), bias, positive)


def _last_samples(pieces: list[torch.Tensor], n: int) -> torch.Tensor:
    """The last ``n`` samples (last axis) of the pieces concatenated, without concatenating them all."""
    tail, have = [], 0
    for piece in reversed(pieces):
        tail.append(piece)
        have += piece.shape[-1]
        if have >= n:
            break
    return torch.cat(tail[::-1], -1)[..., -n:]


class Sista(Encoder):
    """T steps per overlapping frame, warm-started by the previous frame and pulled towards it (module docstring)."""

    name = "sista"
    Options = SistaOptions
    supports_screening = True

    def frame_and_hop(self, n_times_atom: int) -> tuple[int, int]:
        """Frame length and hop in code samples for templates of ``n_times_atom`` samples."""
        frame = max(1, int(self.options.sista_frame_templates * n_times_atom))
        return frame, max(1, min(frame, int(round(self.options.sista_hop_fraction * frame))))

    def iterations_per_sample(self) -> float:
        """Iterations every code sample gets in all, ``T / sista_hop_fraction`` (FISTA's T for comparison)."""
        return self.n_iter / self.options.sista_hop_fraction

    def forward(self, y, op, lam, lipschitz, z0=None):
        op = as_operator(op)
        k = op.n_times_atom
        z_init = z0 if z0 is not None else zero_codes(y, op)
        n_codes = z_init.shape[-1]
        frame, hop = self.frame_and_hop(k)
        coupling = float(self.options.sista_coupling)
        done: list[torch.Tensor] = []      # final codes, consecutive pieces from 0
        prev, prev_a, prev_end = None, 0, 0
        for a, b in frame_bounds(n_codes, frame, hop):
            y_t = y[..., a: b + k - 1]
            if a > 0 and k > 1:  # the tails of the final codes in [a - K + 1, a) reach into this frame's first K - 1 samples
                past = _last_samples(done, min(a, k - 1))
                tails = op.H(past)[..., past.shape[-1]:]
                y_t = y_t - F.pad(tails, (0, y_t.shape[-1] - tails.shape[-1]))
            start = z_init[..., a: b]
            if prev is not None:  # the previous frame's codes on the overlap [a, prev_end)
                start = torch.cat([prev[..., a - prev_a: prev_end - prev_a], start[..., prev_end - a:]], -1)
            coupled = coupling if prev is not None else 0.0  # the first frame has no prior: a plain lasso
            r_t = op.H(start) if coupled > 0 else None
            overlap = y.new_zeros(y_t.shape[-1])
            overlap[: max(0, prev_end + k - 1 - a)] = 1.0
            step = 1.0 / ((1.0 + coupled) * lipschitz)  # L' >= ||H^T (I + lambda_2 o) H||

            def step_fn(l, s, x_prev, y_t=y_t, r_t=r_t, overlap=overlap, step=step, coupled=coupled):
                return frame_step(y_t, r_t, overlap, op, s, lam * step, step, coupled, self.positive)

            x = accelerated(start, self.n_iter, step_fn, self.options.sista_momentum)
            last = b == n_codes
            keep = (b if last else a + hop) - a
            done.append(x[..., :keep])
            prev, prev_a, prev_end = x, a, b
        return torch.cat(done, -1)  # the frames' bounds end at n_codes, so the pieces cover every code sample

    def extra_repr(self) -> str:
        o = self.options
        return (f"{super().extra_repr()}, frame={o.sista_frame_templates} templates, hop={o.sista_hop_fraction}, "
                f"lambda_2={o.sista_coupling}, momentum={o.sista_momentum}")
