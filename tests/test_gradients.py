"""The dictionary-gradient rules against the theory of Tolooshams & Ba (TMLR 2022) on a tiny lasso.

``g^`` is the gradient of the lasso objective in the dictionary at the lasso minimiser ``z*``
(FISTA run 1000 times: converged far below what the asserts resolve). ``dec`` and ``ae-lasso`` tend to it,
``ae-lasso`` much faster (``O(T rho^2T)`` against ``O(rho^T)``); ``ae-ls`` keeps the shrinkage bias.
"""
import pytest
import torch

from conftest import random_dictionary
from crsae_sort.model.crsae import CRsAE
from crsae_sort.model.encoders.fista import fista
from crsae_sort.model.gradients import DICTIONARY_GRADIENTS, get_dictionary_gradient
from crsae_sort.model.operator import H

LAM = torch.full((3,), 0.3, dtype=torch.float64)


@pytest.fixture(scope="module")
def problem():
    """Planted codes through a unit-norm dictionary, and a different (perturbed) dictionary to take gradients at."""
    g = torch.Generator().manual_seed(0)
    d = random_dictionary(3, 2, 9, seed=0)
    z = torch.zeros(2, 3, 120, dtype=torch.float64)
    z.scatter_(2, torch.randint(0, 120, (2, 3, 6), generator=g), 4.0 + torch.rand(2, 3, 6, generator=g, dtype=torch.float64))
    y = H(z, d) + 0.05 * torch.randn(2, 2, 128, generator=g, dtype=torch.float64)
    d0 = d + 0.1 * random_dictionary(3, 2, 9, seed=5)
    d0 = d0 / d0.flatten(1).norm(dim=1).view(-1, 1, 1)
    z_star = fista(y, d0, LAM, CRsAE(d0, LAM, 1).lipschitz, 1000)
    dd = d0.clone().requires_grad_(True)
    ((0.5 * (y - H(z_star, dd)).pow(2).sum() + (LAM.view(1, -1, 1) * z_star).sum()) / y.numel()).backward()
    return y, d0, dd.grad


def _gradient(rule, y, d0, n_iter, encoder="ista"):
    model = CRsAE(d0, LAM, n_iter, encoder=encoder)
    z, loss = get_dictionary_gradient(rule)(model, y)
    loss.backward(inputs=[model.dictionary])
    return model.dictionary.grad, z


def test_dec_is_the_direct_gradient(problem):
    """dec: ``dL/dh[c, m, k] = -sum_{b, t} (y - H z)[b, m, t + k] z[b, c, t]`` per element, z held fixed."""
    y, d0, _ = problem
    grad, z = _gradient("dec", y, d0, 7)
    assert not z.requires_grad  # the encoder ran without a graph (nothing to learn in ista)
    r = (y - H(z, d0)).unfold(2, 9, 1)  # (b, m, t, k)
    by_hand = -torch.einsum("bmtk,bct->cmk", r, z) / y.numel()
    assert torch.allclose(grad, by_hand, rtol=1e-10, atol=1e-14)
    ae_ls, _ = _gradient("ae-ls", y, d0, 7)
    assert (ae_ls - grad).norm() > 0.1 * grad.norm()  # backprop through the encoder adds a real term


def test_dec_and_ae_lasso_tend_to_the_minimiser_gradient_and_ae_ls_keeps_its_bias(problem):
    y, d0, g_hat = problem
    err = {}
    for t in (100, 300):
        for rule in DICTIONARY_GRADIENTS:
            err[rule, t] = float((_gradient(rule, y, d0, t)[0] - g_hat).norm() / g_hat.norm())
    # measured: dec 6.7e-3 -> 4.1e-7, ae-lasso 9.7e-4 -> 9.7e-12, ae-ls 0.65 -> 0.66
    assert err["dec", 300] < 1e-5 < err["dec", 100] < 0.05
    assert err["ae-lasso", 300] < 1e-9 and err["ae-lasso", 100] < 0.2 * err["dec", 100]
    assert err["ae-lasso", 300] < err["dec", 300] ** 1.5  # ~ rho^2T against rho^T
    assert err["ae-ls", 300] > 0.3 and abs(err["ae-ls", 300] - err["ae-ls", 100]) < 0.05


def test_unknown_rule_is_a_clear_error():
    with pytest.raises(ValueError, match="ae-lasso"):
        get_dictionary_gradient("ae-lso")
