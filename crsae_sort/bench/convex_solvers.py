"""Convex reference solvers for the convolutional sparse coding problem the CRsAE encoder unrolls.

They exist to measure the encoder against (``crsae-sort bench convex``), not to sort with.

Problem (:mod:`crsae_sort.model.encoders.fista`; y whitened to unit noise, atoms of unit norm):

    min_z  F(z) = 1/2 ||y - H z||^2 + sum_c lambda_c ||z_c||_1,   z >= 0

* :func:`fista_to_convergence`: the same FISTA iteration as the encoder, run until the
  iterates stop moving, ``||x_t - x_t-1|| <= tol * max(||x_t||, 1)``, instead of for T steps.
* :func:`admm_sporco`: ADMM from SPORCO (Wohlberg), ``sporco.admm.cbpdn.ConvBPDN``, which
  solves the same problem with circular (FFT) convolution; its codes are truncated to the
  valid positions and scored with ``F``.
* :func:`cbp`: continuous basis pursuit (Ekanadham, Tranchina & Simoncelli, 2011; 2014)
  with polar interpolation. Spikes sit on a grid of spacing ``Delta`` (2 samples), and a
  shift ``|tau| <= Delta / 2`` of template ``h`` is approximated on the circle through
  ``h(t + 1), h(t), h(t - 1)``:

      a h(t - tau) ~ x1 c + x2 r e1 + x3 r e2,   (x1, x2, x3) = a (1, cos phi, sin phi),
      phi = theta tau / (Delta / 2),

  relaxed to the convex cone ``||(x2, x3)|| <= x1``, ``x2 >= x1 cos theta``. Each window of
  the signal is a second-order cone program

      min_x  1/2 ||y_w - A x||^2 + sum_i w_i x1_i   s.t. the cone above,

  solved by an interior-point method (cvxpy + Clarabel), first with ``w = lambda`` and then
  re-weighted ``w_i = p / (eps + x1_i)`` (CBP's power-law prior, exponent ``p = 1.5``).
  Windows are CBP's partition: runs of samples where some channel exceeds
  ``threshold`` noise SDs, widened by a template length; the rest of the signal is silent.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..model.encoders.fista import fista_iterates
from ..model.losses import lasso_objective


@dataclass
class Solution:
    """Codes ``z`` ``(C, N - K + 1)`` (float64, numpy) and how the solver got there."""
    z: np.ndarray
    n_iter: int
    converged: bool


def objective(y: np.ndarray, z: np.ndarray, dictionary: np.ndarray, lam: np.ndarray) -> float:
    """``F(z)`` of one signal ``y`` ``(M, N)`` in float64."""
    t = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float64))  # noqa: E731
    return float(lasso_objective(t(y)[None], t(z)[None], t(dictionary), t(lam)))


@torch.no_grad()
def fista_to_convergence(y: np.ndarray, dictionary: np.ndarray, lam: np.ndarray, lipschitz: float,
                         tol: float = 1e-6, max_iter: int = 20000, positive: bool = True) -> Solution:
    """FISTA (float64, the whole signal at once) until ``||x_t - x_t-1|| <= tol max(||x_t||, 1)``.

    y: ``(M, N)``; dictionary: ``(C, M, K)``; lam: ``(C,)``.
    """
    yt = torch.from_numpy(np.asarray(y, np.float64))[None]
    d = torch.from_numpy(np.asarray(dictionary, np.float64))
    lam_t = torch.from_numpy(np.asarray(lam, np.float64))
    x_prev = yt.new_zeros(1, d.shape[0], yt.shape[-1] - d.shape[-1] + 1)
    iterates = fista_iterates(yt, d, lam_t, lipschitz, positive)
    for it in range(1, max_iter + 1):
        x = next(iterates)
        change = float((x - x_prev).norm())
        x_prev = x
        if change <= tol * max(float(x.norm()), 1.0):
            return Solution(x[0].numpy(), it, True)
    return Solution(x_prev[0].numpy(), max_iter, False)


def admm_sporco(y: np.ndarray, dictionary: np.ndarray, lam: np.ndarray, tol: float = 1e-4,
                max_iter: int = 2000, positive: bool = True) -> Solution:
    """SPORCO's ADMM ``ConvBPDN`` (relative primal/dual residual tolerance ``tol``, adaptive rho).

    SPORCO's layout: dictionary ``(K, M, C)``, signal ``(N, M)``, codes ``(N, 1, 1, C)``.
    """
    from sporco.admm import cbpdn

    c, _, k = dictionary.shape
    opt = cbpdn.ConvBPDN.Options({"Verbose": False, "MaxMainIter": max_iter, "RelStopTol": tol,
                                  "NonNegCoef": positive, "AutoRho": {"Enabled": True},
                                  "L1Weight": np.asarray(lam, np.float64).reshape(1, 1, 1, c)})
    solver = cbpdn.ConvBPDN(np.transpose(dictionary, (2, 1, 0)).astype(np.float64),
                            np.asarray(y, np.float64).T, 1.0, opt, dimK=0, dimN=1)
    codes = solver.solve().reshape(y.shape[-1], c).T
    n_codes = y.shape[-1] - k + 1
    iters = int(solver.k)
    return Solution(np.ascontiguousarray(np.maximum(codes[:, :n_codes], 0) if positive else codes[:, :n_codes]),
                    iters, iters < max_iter)


# --- continuous basis pursuit -------------------------------------------------------------

@dataclass
class PolarBasis:
    """Per template, the circle through its shifts by -1, 0, +1 sample.

    basis: ``(C, 3, M, K + 2)`` = ``[c, r e1, r e2]``, aligned so that sample 1 of the window is
    the template's sample 0; theta: ``(C,)``, the half-angle that a shift of one sample spans.
    """
    basis: np.ndarray
    theta: np.ndarray


def polar_basis(dictionary: np.ndarray) -> PolarBasis:
    """Polar interpolation of each template for a grid spacing of 2 samples (shifts +-1).

    With ``m = (h_- + h_+) / 2``, ``d = (h_+ - h_-) / 2``, ``p = ||h_0 - m||``, ``q = ||d||``:
    ``theta = 2 atan(p / q)``, ``r = q / sin(theta)``, ``e1 = (h_0 - m) / p``, ``e2`` = d
    orthogonalised against e1 and normalised, ``c = h_0 - r e1``. The three shifts lie on the
    circle ``c + r (cos phi e1 + sin phi e2)`` at ``phi = -theta, 0, theta``.
    """
    n_atoms, m_ch, k = dictionary.shape
    out = np.zeros((n_atoms, 3, m_ch, k + 2))
    thetas = np.zeros(n_atoms)
    for i, h in enumerate(np.asarray(dictionary, np.float64)):
        early, mid, late = (np.pad(h, ((0, 0), (s, 2 - s))) for s in (0, 1, 2))
        m, d = (early + late) / 2, (late - early) / 2
        p, q = np.linalg.norm(mid - m), np.linalg.norm(d)
        theta = 2 * math.atan2(p, q)
        r = q / math.sin(theta)
        e1 = (mid - m) / p
        e2 = d - np.sum(d * e1) * e1
        e2 /= np.linalg.norm(e2)
        out[i] = [mid - r * e1, r * e1, r * e2]
        thetas[i] = theta
    return PolarBasis(out, thetas)


def cbp_windows(y: np.ndarray, k: int, threshold: float = 4.0) -> list[tuple[int, int]]:
    """CBP's partition: ``[a, b)`` runs where ``max_m |y_m| > threshold``, widened by ``k + 2``."""
    from scipy.ndimage import binary_dilation

    active = np.abs(y).max(axis=0) > threshold
    width = k + 2
    grown = binary_dilation(active, structure=np.ones(2 * width + 1, bool)) if active.any() else active
    edges = np.diff(np.concatenate([[0], grown.astype(np.int8), [0]]))
    return [(a, b) for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)) if b - a >= width]


def _window_matrix(basis: np.ndarray, length: int, starts: np.ndarray):
    """Sparse ``A`` ``(M * length, 3 * C * P)``: column (j, c, i) is basis[c, j] placed at starts[i]."""
    import scipy.sparse as sp

    n_atoms, _, m_ch, w = basis.shape
    atoms = basis.transpose(1, 0, 2, 3).reshape(3 * n_atoms, m_ch, w)        # column order (j, c)
    a_idx, m_idx, k_idx, p_idx = np.meshgrid(np.arange(3 * n_atoms), np.arange(m_ch), np.arange(w),
                                             np.arange(len(starts)), indexing="ij")
    rows = m_idx * length + starts[p_idx] + k_idx
    cols = a_idx * len(starts) + p_idx
    vals = atoms[a_idx, m_idx, k_idx]
    return sp.csc_matrix((vals.ravel(), (rows.ravel(), cols.ravel())), shape=(m_ch * length, 3 * n_atoms * len(starts)))


@dataclass
class CBPResult:
    """Spikes found by CBP (model-rate samples) and the reconstruction ``(M, N)``."""
    position: np.ndarray   # float64: template start sample (code position) with its sub-sample shift
    unit: np.ndarray       # int64
    amplitude: np.ndarray  # float64, x1
    reconstruction: np.ndarray
    n_windows: int


def cbp(y: np.ndarray, dictionary: np.ndarray, lam: np.ndarray, *, threshold: float = 4.0,
        reweights: int = 2, reweight_exp: float = 1.5, eps: float = 1e-3, min_amplitude: float = 1e-2,
        solver: str = "CLARABEL") -> CBPResult:
    """Continuous basis pursuit with polar interpolation on each window of ``y`` ``(M, N)``.

    Returns the non-zero coefficients (``x1 > min_amplitude``) as spikes with their shift
    ``tau = atan2(x3, x2) / theta`` and the reconstruction of the whole signal.
    """
    import cvxpy as cp

    pb = polar_basis(dictionary)
    n_atoms, m_ch, k = dictionary.shape
    lam = np.asarray(lam, np.float64)
    recon = np.zeros_like(y, dtype=np.float64)
    positions, units, amps = [], [], []
    windows = cbp_windows(y, k, threshold)
    for a, b in windows:
        length = b - a
        starts = np.arange(a + (a % 2), b - (k + 2) + 1, 2) - a   # window start = code position - 1
        if len(starts) == 0:
            continue
        big_a = _window_matrix(pb.basis, length, starts)
        n_pos = len(starts)
        x = cp.Variable((3, n_atoms * n_pos))
        weight = cp.Parameter(n_atoms * n_pos, nonneg=True)
        target = np.asarray(y[:, a:b], np.float64).ravel()
        cos_t = np.repeat(np.cos(pb.theta), n_pos)
        problem = cp.Problem(
            cp.Minimize(0.5 * cp.sum_squares(big_a @ cp.vec(x.T, order="F") - target) + weight @ x[0]),
            [cp.SOC(x[0], x[1:], axis=0), x[1] >= cp.multiply(cos_t, x[0])])
        weight.value = np.repeat(lam, n_pos)
        for round_ in range(reweights + 1):
            problem.solve(solver=solver)
            if round_ < reweights:
                weight.value = reweight_exp / (eps + np.maximum(x.value[0], 0))
        coef = np.asarray(x.value)
        recon[:, a:b] += (big_a @ coef.T.ravel(order="F")).reshape(m_ch, length)
        amp = coef[0].reshape(n_atoms, n_pos)
        shift = np.arctan2(coef[2], coef[1]).reshape(n_atoms, n_pos) / pb.theta[:, None]
        c_idx, p_idx = np.nonzero(amp > min_amplitude)
        positions.append(a + starts[p_idx] + 1 + np.clip(shift[c_idx, p_idx], -1, 1))
        units.append(c_idx)
        amps.append(amp[c_idx, p_idx])
    cat = lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)  # noqa: E731
    return CBPResult(cat(positions, np.float64), cat(units, np.int64), cat(amps, np.float64), recon, len(windows))


def cbp_objective(y: np.ndarray, result: CBPResult, lam: np.ndarray) -> float:
    """``1/2 ||y - y_hat||^2 + sum lambda_c a`` of a CBP solution (its own, continuous-shift model)."""
    return float(0.5 * np.sum((y - result.reconstruction) ** 2) + np.sum(np.asarray(lam)[result.unit] * result.amplitude))


def cbp_codes(result: CBPResult, n_atoms: int, n_codes: int) -> np.ndarray:
    """CBP's spikes on the sample grid ``(C, n_codes)``: each amplitude at its rounded position."""
    z = np.zeros((n_atoms, n_codes))
    pos = np.clip(np.rint(result.position).astype(np.int64), 0, n_codes - 1)
    np.add.at(z, (result.unit, pos), result.amplitude)
    return z
