"""Which unit a code peak belongs to when atoms share a shape: the spike's size decides between them.

The encoder chooses atoms by shape alone: atoms have unit norm and the lasso has no notion of a unit's
size, so the spike of a small unit whose shape is close to a larger unit's atom can be coded by that atom
at a fraction of its amplitude (then dropped by the read-out's amplitude floor, or counted in the wrong
unit), and a large spike of one unit by the atom of a smaller unit of nearly the same shape. On the real
locust tetrode, with atoms taken from tridesclous2's own units, 93 of the 246 spikes of its unit of
SNR ~5.5 were coded by the atoms of two larger units at 0.1-0.35 of their size.

For a code peak of atom ``c`` at code position ``p``, the event is what the other spikes leave plus this
peak's own codes, ``x = r + sum_{|d| <= 1} z_c[p + d] S_{p + d} h_c`` with ``r = y - H z`` the residual. Each
atom ``c'`` alike ``c`` (best-lag cosine above :data:`ALIKE`), placed at the same spike time (code position
``p' = p + o_c - o_c'``, ``o`` the atoms' peak offsets) give or take ``lags`` samples, fits it at amplitude
``q = <x, S_{p'} h_c'>``; the peak goes to the atom that maximises

    score(c') = q^2 / 2  -  (q - m_c')^2 / (2 ((s m_c')^2 + 1))

the log-likelihood gain of a unit-norm atom at its best amplitude in unit noise, plus a Gaussian prior on the
amplitude around the atom's reference amplitude ``m_c'`` (the median projection of its initial cluster), of
relative spread ``s`` (``amplitude_spread``) widened by the projection's own unit noise. A peak that moves
takes the new atom's amplitude in code units, ``q - lambda_c'`` (what a lone spike of that size would code),
so the amplitude floor judges it as the new unit's spike.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .units import template_similarity

ALIKE = 0.7  # atoms this alike (best-lag cosine) can code each other's spikes
BATCH = 4096  # code peaks judged at once (their windows: BATCH x channels x (3 K + 4) floats)


def alike_atoms(dictionary: torch.Tensor) -> np.ndarray:
    """``(C, C)`` boolean: pairs of distinct atoms ``(C, M, K)`` whose best-lag cosine exceeds :data:`ALIKE`."""
    dense = dictionary.detach().cpu().numpy().transpose(0, 2, 1).astype(np.float64)   # (C, K, M)
    alike = template_similarity(dense) > ALIKE
    np.fill_diagonal(alike, False)
    return alike


@torch.no_grad()
def assign_by_size(residual: torch.Tensor, z: torch.Tensor, pos: np.ndarray, unit: np.ndarray, amp: np.ndarray,
                   dictionary: torch.Tensor, lam: torch.Tensor, reference: np.ndarray, offsets: np.ndarray,
                   alike: np.ndarray, spread: float, lags: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Code peaks ``(pos, unit, amp)`` of the codes ``z`` ``(C, n - K + 1)`` of ``y`` ``(M, n)``, each moved to
    the alike atom that fits its size best (module docstring); returns the new ``(pos, unit, amp)``.

    ``residual`` ``y - H z`` ``(M, n)``; ``dictionary`` ``(C, M, K)`` dense unit-norm atoms (zero off a local
    atom's support), ``lam`` ``(C,)``, ``reference`` ``(C,)`` reference amplitudes, ``offsets`` ``(C,)`` peak
    offsets, ``alike`` from :func:`alike_atoms`. ``spread = 0`` changes nothing.
    """
    pos, unit, amp = pos.copy(), unit.copy(), amp.copy()
    if spread <= 0 or len(pos) == 0 or not alike.any():
        return pos, unit, amp
    n_atoms, _, k = dictionary.shape
    n_codes = z.shape[1]
    r = residual
    margin = k + lags
    width = 3 * k + 2 * lags
    r_pad = F.pad(r, (margin, margin + k))
    z_pad = F.pad(z, (1, 1))
    lam_np = lam.detach().cpu().numpy()
    m = reference.astype(np.float64)
    var = (spread * m) ** 2 + 1.0
    encoded = unit.copy()                                # each peak is judged once, from the atom that coded it
    for c in range(n_atoms):
        partners = np.flatnonzero(alike[c])
        if len(partners) == 0:
            continue
        group = np.concatenate([[c], partners])
        channels = torch.nonzero(dictionary[group].abs().sum(dim=(0, 2)) > 0).flatten()
        atom = dictionary[c, channels]
        coded = np.flatnonzero(encoded == c)
        for rows in np.array_split(coded, -(-len(coded) // BATCH)) if len(coded) else []:
            p = torch.from_numpy(pos[rows]).to(r.device)
            # windows x (n, |S|, width): residual from code position p - k - lags, plus the peak's own codes
            x = r_pad[channels].unfold(1, width, 1)[:, p].permute(1, 0, 2).contiguous()
            for d in (-1, 0, 1):
                coef = z_pad[c, p + 1 + d]
                x[:, :, margin + d: margin + d + k] += coef[:, None, None] * atom[None]
            best_score = np.full(len(rows), -np.inf)
            best = np.zeros((len(rows), 3))                  # atom, code position, amplitude q
            for c2 in group:
                start = k + int(offsets[c]) - int(offsets[c2])
                q = F.conv1d(x[:, :, start: start + k + 2 * lags], dictionary[c2, channels][None])[:, 0]  # (n, 2l + 1)
                qmax, lag = q.max(dim=1)
                qmax = qmax.double().cpu().numpy()
                score = qmax ** 2 / 2 - (qmax - m[c2]) ** 2 / (2 * var[c2])
                better = score > best_score
                best_score[better] = score[better]
                new_pos = pos[rows] + int(offsets[c]) - int(offsets[c2]) + lag.cpu().numpy() - lags
                best[better] = np.stack([np.full(len(rows), c2), new_pos, qmax], axis=1)[better]
            moved = (best[:, 0] != c) & (best[:, 1] >= 0) & (best[:, 1] < n_codes)
            idx = rows[moved]
            to = best[moved, 0].astype(np.int64)
            unit[idx] = to
            pos[idx] = best[moved, 1].astype(np.int64)
            amp[idx] = np.maximum(best[moved, 2] - lam_np[to], 0.0).astype(np.float32)
    return pos, unit, amp


def one_per_refractory(pos: np.ndarray, unit: np.ndarray, amp: np.ndarray, offsets: np.ndarray,
                       refractory: int) -> np.ndarray:
    """Boolean mask: of two peaks of one atom whose spike times (``pos + offsets[unit]``) are within
    ``refractory`` samples (two atoms' peaks of one event, moved to the same atom), the larger is kept."""
    return ~smaller_of_close_pairs(pos + offsets[unit], np.zeros(len(pos), np.int64), unit, amp, refractory,
                                   lambda a, b: a == b)


def smaller_of_close_pairs(t: np.ndarray, segment: np.ndarray, unit: np.ndarray, amp: np.ndarray, within: int,
                           pair) -> np.ndarray:
    """Boolean mask of the spikes to drop: of two spikes at most ``within`` samples apart in one segment whose
    atoms ``pair(unit_i, unit_j)`` says belong together, the one of the smaller amplitude (ties: the later)."""
    drop = np.zeros(len(t), dtype=bool)
    if within <= 0 or len(t) < 2:
        return drop
    order = np.lexsort((t, segment))
    t, seg, u, a = t[order], segment[order], unit[order], amp[order]
    dropped = np.zeros(len(t), dtype=bool)
    for lag in range(1, len(t)):
        i, j = np.arange(len(t) - lag), np.arange(lag, len(t))
        near = (seg[i] == seg[j]) & (t[j] - t[i] <= within)
        if not near.any():
            break
        both = near & pair(u[i], u[j])
        dropped[i[both & (a[i] < a[j])]] = True
        dropped[j[both & (a[i] >= a[j])]] = True
    drop[order[dropped]] = True
    return drop
