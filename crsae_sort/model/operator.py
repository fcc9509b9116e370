"""The convolutional dictionary operator ``H`` and its adjoint.

Model (Tolooshams, Dey & Ba, IEEE TNNLS 2020, eq. 1): a recording ``y`` with M channels
is a sum of C templates convolved with sparse code trains,

    y[m, n] = (H z)[m, n] = sum_c sum_k h[c, m, k] z[c, n - k],

with ``h`` of shape ``(n_atoms C, n_channels M, n_times_atom K)`` and ``z`` of length
``N - K + 1`` (a "valid" code: every code sample places a whole template inside ``y``).
The adjoint is the multichannel cross-correlation

    (H^T y)[c, n] = sum_m sum_k h[c, m, k] y[m, n + k].

Both are written as ``conv1d`` (``conv_transpose1d`` is several times slower on CPU).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def H(z: torch.Tensor, dictionary: torch.Tensor) -> torch.Tensor:
    """Synthesis ``y = H z``.

    z: ``(batch, n_atoms, n_codes)``; dictionary: ``(n_atoms, n_channels, n_times_atom)``.
    Returns ``(batch, n_channels, n_codes + n_times_atom - 1)``.
    """
    return _Synthesis.apply(z, dictionary)


def H_adjoint(y: torch.Tensor, dictionary: torch.Tensor) -> torch.Tensor:
    """Analysis ``H^T y`` (cross-correlation with every template).

    y: ``(batch, n_channels, n_samples)``; returns ``(batch, n_atoms, n_samples - n_times_atom + 1)``.
    """
    return _Analysis.apply(y, dictionary)


class ConvOperator:
    """The operator view of a dense dictionary ``(n_atoms, n_channels, n_times_atom)``: ``H`` and ``H^T``.

    Encoders take an operator rather than a tensor, so that a dictionary with another layout
    (atoms restricted to their channels, say) only needs its own operator with the same two
    methods and attributes.
    """

    def __init__(self, dictionary: torch.Tensor):
        self.dictionary = dictionary
        self.n_atoms, self.n_channels, self.n_times_atom = dictionary.shape

    def H(self, z: torch.Tensor) -> torch.Tensor:
        """``H z``: ``(batch, C, n_codes)`` -> ``(batch, M, n_codes + K - 1)``."""
        return H(z, self.dictionary)

    def H_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``H^T y``: ``(batch, M, N)`` -> ``(batch, C, N - K + 1)``."""
        return H_adjoint(y, self.dictionary)


def as_operator(dictionary) -> "ConvOperator":
    """``dictionary`` if it already is an operator, else the dense operator of the tensor."""
    return ConvOperator(dictionary) if isinstance(dictionary, torch.Tensor) else dictionary


def _synthesis(z: torch.Tensor, dictionary: torch.Tensor) -> torch.Tensor:
    k = dictionary.shape[-1]
    weight = dictionary.flip(-1).transpose(0, 1)  # (M, C, K)
    return F.conv1d(F.pad(z, (k - 1, k - 1)), weight)


def _analysis(y: torch.Tensor, dictionary: torch.Tensor) -> torch.Tensor:
    return F.conv1d(y, dictionary)


def _dictionary_grad(signal: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """``g[c, m, k] = sum_b sum_t codes[b, c, t] signal[b, m, t + k]`` as one conv1d ``(C, M, K)``."""
    return F.conv1d(signal.transpose(0, 1), codes.transpose(0, 1)).permute(1, 0, 2)


class _Synthesis(torch.autograd.Function):
    """``H z`` with a backward pass made of the same fast conv1d calls.

    d/dz = ``H^T g`` and d/dh[c,m,k] = ``sum_t z[c,t] g[m,t+k]``; torch's default backward of a
    padded conv1d goes through a transposed convolution several times slower on CPU.
    """

    @staticmethod
    def forward(ctx, z, dictionary):
        ctx.save_for_backward(z, dictionary)
        return _synthesis(z, dictionary)

    @staticmethod
    def backward(ctx, grad):
        z, dictionary = ctx.saved_tensors
        grad_z = _analysis(grad, dictionary) if ctx.needs_input_grad[0] else None
        grad_d = _dictionary_grad(grad, z) if ctx.needs_input_grad[1] else None
        return grad_z, grad_d


class _Analysis(torch.autograd.Function):
    """``H^T y``; d/dy = ``H g`` and d/dh[c,m,k] = ``sum_t g[c,t] y[m,t+k]``."""

    @staticmethod
    def forward(ctx, y, dictionary):
        ctx.save_for_backward(y, dictionary)
        return _analysis(y, dictionary)

    @staticmethod
    def backward(ctx, grad):
        y, dictionary = ctx.saved_tensors
        grad_y = _synthesis(grad, dictionary) if ctx.needs_input_grad[0] else None
        grad_d = _dictionary_grad(y, grad) if ctx.needs_input_grad[1] else None
        return grad_y, grad_d


def lipschitz_bound(dictionary: torch.Tensor, n_fft: int | None = None) -> torch.Tensor:
    """Upper bound ``L >= ||H||^2`` valid for every signal length, as a float64 0-dim tensor.

    ``H`` is a multichannel convolution, so ``||H||^2 <= sup_w lambda_max(Hhat(w)^* Hhat(w))``,
    where ``Hhat(w)`` is the ``M x C`` matrix of template spectra at frequency ``w``. The
    supremum is taken over ``n_fft >= 16 K`` frequencies with an exact Hermitian eigen-solve of
    the smaller Gram matrix (``min(M, C)`` square). Power iteration on ``H^T H`` would
    approach ``||H||^2`` from below, for one signal length only; this bound holds for every
    length. A 0.5 % margin covers the gap between the grid and the continuous supremum. The
    spectra and eigen-solves run in the dictionary's precision (float32 for the model's atoms: half
    the time of float64 on the CPU, where training recomputes L after every step; its relative
    rounding of ``lambda_max``, about 1e-7, the margin dwarfs), float64 for a float64 dictionary.
    Computed on the dictionary's device, so on a GPU it costs no host round trip.
    """
    with torch.no_grad():
        d = dictionary.detach()
        if d.dtype not in (torch.float32, torch.float64):
            d = d.to(torch.float32)
        n_atoms, n_channels, k = d.shape
        n_fft = n_fft or max(1024, 16 * k)
        spec = torch.fft.rfft(d, n=n_fft, dim=-1).permute(2, 1, 0)  # (F, M, C)
        if n_channels <= n_atoms:
            gram = spec @ spec.conj().transpose(1, 2)
        else:
            gram = spec.conj().transpose(1, 2) @ spec
        return torch.linalg.eigvalsh(gram)[:, -1].max().to(torch.float64) * 1.005


def lipschitz_constant(dictionary: torch.Tensor, n_fft: int | None = None) -> float:
    """:func:`lipschitz_bound` computed on the CPU, as a Python float."""
    return float(lipschitz_bound(dictionary.detach().cpu(), n_fft))
