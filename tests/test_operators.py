"""The operator H, its adjoint, the Lipschitz bound and the hand-written gradients."""
import numpy as np
import pytest
import torch

from conftest import random_dictionary
from crsae_sort.model.operator import H, H_adjoint, lipschitz_constant


def dense_matrix(d, n_codes):
    """H as an explicit matrix: column (c, t) is H applied to a unit impulse."""
    c, m, k = d.shape
    cols = []
    for atom in range(c):
        for t in range(n_codes):
            z = torch.zeros(1, c, n_codes, dtype=d.dtype)
            z[0, atom, t] = 1
            cols.append(H(z, d).flatten())
    return torch.stack(cols, dim=1)


@pytest.mark.parametrize("shape", [(3, 4, 7), (5, 1, 12), (2, 8, 5)])
def test_adjointness(shape):
    d = random_dictionary(*shape)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, shape[0], 40, generator=g, dtype=torch.float64)
    y = torch.randn(2, shape[1], 40 + shape[2] - 1, generator=g, dtype=torch.float64)
    lhs = (H(z, d) * y).sum()
    rhs = (z * H_adjoint(y, d)).sum()
    assert abs(lhs - rhs) <= 1e-10 * abs(lhs)


def test_synthesis_is_sum_of_shifted_templates():
    d = random_dictionary(2, 3, 4)
    z = torch.zeros(1, 2, 10, dtype=torch.float64)
    z[0, 0, 2], z[0, 1, 5] = 1.5, -2.0
    expected = torch.zeros(3, 13, dtype=torch.float64)
    expected[:, 2:6] += 1.5 * d[0]
    expected[:, 5:9] += -2.0 * d[1]
    assert torch.allclose(H(z, d)[0], expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(3, 4, 9), (6, 2, 5)])
def test_lipschitz_bounds_operator_norm(shape, seed):
    d = random_dictionary(*shape, seed=seed)
    norm2 = torch.linalg.matrix_norm(dense_matrix(d, 60), ord=2).item() ** 2
    lip = lipschitz_constant(d)
    assert lip >= norm2
    assert lip <= 1.05 * norm2  # tight: the finite-length norm approaches the bound


def test_lipschitz_of_a_smooth_template_is_large():
    # an all-positive template has its energy at DC: ||H||^2 = (sum h)^2 = K for a flat unit-norm atom
    k = 16
    d = torch.full((1, 1, k), 1 / np.sqrt(k), dtype=torch.float64)
    assert lipschitz_constant(d) == pytest.approx(k, rel=0.01)


def test_hand_written_gradients_match_finite_differences():
    d = random_dictionary(3, 2, 5).requires_grad_()
    g = torch.Generator().manual_seed(3)
    z = torch.randn(2, 3, 11, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 2, 15, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(H, (z, d))
    assert torch.autograd.gradcheck(H_adjoint, (y, d))
