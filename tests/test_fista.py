"""The unrolled encoder against a reference lasso solver, and the lambda EM update."""
import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from conftest import random_dictionary
from crsae_sort.model.encoders.fista import fista
from crsae_sort.model.losses import lasso_objective
from crsae_sort.model.crsae import CRsAE
from crsae_sort.model.losses import gamma_prior, lambda_closed_form, lambda_loss
from crsae_sort.model.operator import H, lipschitz_constant
from crsae_sort.model.prox import shrink


def reference_lasso(y, d, lam, positive):
    """Solve the lasso with L-BFGS-B on the split z = u - v, u, v >= 0 (a smooth bound-constrained QP)."""
    c, n = d.shape[0], y.shape[-1] - d.shape[-1] + 1
    size = c * n

    def fun(x):
        u = torch.tensor(x[:size].reshape(1, c, n))
        v = torch.tensor(x[size:].reshape(1, c, n)) if not positive else torch.zeros_like(u)
        u.requires_grad_(), v.requires_grad_()
        r = y - H(u - v, d)
        obj = 0.5 * (r ** 2).sum() + (lam.view(1, -1, 1) * (u + v)).sum()
        obj.backward()
        grad = u.grad.flatten().numpy()
        if not positive:
            grad = np.concatenate([grad, v.grad.flatten().numpy()])
        return obj.item(), grad

    x0 = np.zeros(size if positive else 2 * size)
    res = minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=[(0, None)] * len(x0),
                   options=dict(maxiter=20000, ftol=1e-15, gtol=1e-12))
    u = res.x[:size].reshape(1, c, n)
    z = u - (res.x[size:].reshape(1, c, n) if not positive else 0)
    return torch.tensor(z), res.fun


@pytest.mark.parametrize("positive", [True, False])
def test_unrolled_encoder_reaches_reference_lasso_solution(positive):
    d = random_dictionary(3, 2, 6, seed=4)
    g = torch.Generator().manual_seed(5)
    z_true = torch.zeros(1, 3, 45, dtype=torch.float64)
    z_true[0, 0, 5], z_true[0, 1, 20], z_true[0, 2, 33] = 4.0, 3.0, 5.0
    if not positive:
        z_true[0, 1, 20] = -3.0
    y = H(z_true, d) + 0.1 * torch.randn(1, 2, 50, generator=g, dtype=torch.float64)
    lam = torch.tensor([0.3, 0.4, 0.5], dtype=torch.float64)
    z_ref, obj_ref = reference_lasso(y, d, lam, positive)
    z = fista(y, d, lam, lipschitz_constant(d), n_iter=3000, positive=positive)
    obj = lasso_objective(y, z, d, lam).item()
    assert obj <= obj_ref * (1 + 1e-7)
    assert torch.allclose(z, z_ref, atol=1e-4)
    # and the planted spikes are where the codes are largest
    for atom, t in [(0, 5), (1, 20), (2, 33)]:
        assert z[0, atom].abs().argmax().item() == t


def test_objective_decreases_with_more_iterations():
    d = random_dictionary(4, 3, 8, seed=6)
    y = torch.randn(2, 3, 200, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    lam = torch.full((4,), 1.0, dtype=torch.float64)
    lip = lipschitz_constant(d)
    objs = [lasso_objective(y, fista(y, d, lam, lip, t), d, lam).item() for t in (1, 5, 20, 100, 500)]
    assert all(a > b for a, b in zip(objs, objs[1:]))
    assert (objs[-2] - objs[-1]) / objs[-1] < 1e-3


def test_shrink_one_and_two_sided():
    v = torch.tensor([[[-3.0, -0.5, 0.5, 3.0]]])
    b = torch.tensor([1.0])
    assert shrink(v, b, positive=True).tolist() == [[[0.0, 0.0, 0.0, 2.0]]]
    assert shrink(v, b, positive=False).tolist() == [[[-2.0, 0.0, 0.0, 2.0]]]


def test_lambda_step_is_the_closed_form_over_every_batch_so_far():
    """Training's lambda step (online EM) equals the minimiser of the Gamma-prior loss over the codes of all
    the batches it has seen, and that minimiser is a stationary point of the loss."""
    from crsae_sort.train import _lambda_step, _State

    g = torch.Generator().manual_seed(8)
    batches = [torch.relu(torch.randn(4, 3, 100, generator=g, dtype=torch.float64) - 1.5)
               * torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64).view(1, 3, 1) for _ in range(3)]
    lam0 = torch.tensor([2.0, 3.0, 4.0], dtype=torch.float64)
    model = CRsAE(random_dictionary(3, 2, 5, dtype=torch.float64), lam0.clone(), n_iter=5)
    st = _State(best_loss=0.0, best_state={}, l1_sum=torch.zeros(3, dtype=torch.float64))

    def prior(n):
        return gamma_prior(lam0, n, 0.5, code_l1=0.1 * n)

    for z in batches:
        _lambda_step(st, model, z, prior)
    every = torch.cat(batches)
    expected = lambda_closed_form(every, *prior(every.shape[0] * every.shape[2]))
    assert st.n_codes == 1200
    assert torch.allclose(model.lam.detach(), expected, rtol=1e-12)
    # the closed form is the stationary point: d loss / d lambda = ||z||_1 - (N_e + r - 1)/lambda + delta = 0
    lam = expected.clone().requires_grad_()
    lambda_loss(every, lam, *prior(1200)).backward()
    assert lam.grad.abs().max() < 1e-8


def test_prior_puts_lambda_at_its_start_for_the_mean_atom_and_orders_the_rest_by_code_size():
    # three atoms coding 1, 3 and 5 spikes of size 5 in 100 code samples: mean ||z_c||_1 = 15
    z = torch.zeros(2, 3, 50, dtype=torch.float64)
    for c, n in enumerate((1, 3, 5)):
        z[0, c, 10: 10 + n] = 5.0
    lam0 = torch.tensor([3.0, 3.0, 3.0], dtype=torch.float64)
    code_l1 = float(z.abs().sum(dim=(0, 2)).mean())
    weak = lambda_closed_form(z, *gamma_prior(lam0, 100, strength=0.0, code_l1=code_l1))
    one = lambda_closed_form(z, *gamma_prior(lam0, 100, strength=1.0, code_l1=code_l1))
    strong = lambda_closed_form(z, *gamma_prior(lam0, 100, strength=1000.0, code_l1=code_l1))
    assert one[1].item() == pytest.approx(3.0, rel=1e-12)            # the mean atom stays where it started
    assert weak[0] > one[0] > strong[0] > 3.0 > strong[2] > one[2] > weak[2]
    # lambda_c / lambda0 = 1 / (1 + lambda0 (||z_c||_1 - mean) / (N_e + r - 1)): 1 / (1 - 3 * 10 / 199) with r = 100
    assert one[0].item() == pytest.approx(3.0 / (1.0 - 30.0 / 199.0), rel=1e-12)
    # the prior of mean lambda0 (delta = r / lambda0) raised every atom, towards (1 + 1 / strength) lambda0 = 6
    old = (100 + 100 - 1) / (z.abs().sum(dim=(0, 2)) + 100 / 3.0)
    assert bool(torch.all(old > one + 0.7)) and float(old.min()) > 3.0


def test_model_keeps_unit_norm_atoms_and_fresh_lipschitz():
    d = random_dictionary(3, 2, 5, dtype=torch.float32) * 7
    model = CRsAE(d, torch.ones(3), n_iter=10)
    norms = model.dictionary.detach().flatten(1).norm(dim=1)
    assert torch.allclose(norms, torch.ones(3), atol=1e-6)
    with torch.no_grad():
        model.dictionary.mul_(3.0)
    model.normalize_()
    assert model.lipschitz == pytest.approx(lipschitz_constant(model.dictionary), rel=1e-9)


def test_training_shorter_than_one_evaluation_keeps_what_it_learned():
    from crsae_sort.params import TrainParams
    from crsae_sort.train import train

    g = torch.Generator().manual_seed(0)
    d_true = random_dictionary(2, 2, 8, dtype=torch.float32, seed=1)
    z = (torch.rand(40, 2, 93, generator=g) > 0.97).float() * 5.0
    windows = (H(z, d_true) + 0.1 * torch.randn(40, 2, 100, generator=g)).numpy()
    model = CRsAE(d_true + 0.3 * torch.randn(2, 2, 8, generator=g), torch.full((2,), 0.5), n_iter=30)
    start = model.dictionary.detach().clone()
    result = train(model, windows, TrainParams(batch_size=8, max_epochs=1, eval_every=50, learning_rate=0.02),
                   lambda_prior_strength=1.0, seed=0)
    assert result.n_steps == 4 and [h["step"] for h in result.history] == [0, 4]
    # a random dictionary on noise learns something in 4 steps: the evaluated, better state is kept
    assert result.history[1]["val_loss"] < result.history[0]["val_loss"]
    assert result.best_step == 4 and not torch.equal(model.dictionary, start)


def test_adam_matches_torch_optim():
    """crsae_sort.optim.Adam takes torch.optim.Adam's steps (two groups, two learning rates), and its
    state round-trips through state_dict."""
    from crsae_sort.optim import Adam

    gen = torch.Generator().manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(4, 3, generator=gen)), torch.nn.Parameter(torch.randn(5, generator=gen))]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    opt = Adam([dict(params=[ours[0]], lr=0.01), dict(params=[ours[1]], lr=0.1)])
    opt_ref = torch.optim.Adam([dict(params=[ref[0]], lr=0.01), dict(params=[ref[1]], lr=0.1)])
    for step in range(6):
        if step == 3:  # resume from a state_dict in a fresh optimizer
            blob = opt.state_dict()
            opt = Adam([dict(params=[ours[0]], lr=1.0), dict(params=[ours[1]], lr=1.0)])
            opt.load_state_dict(blob)
        target = torch.randn(4, 3, generator=gen)
        for params, o in ((ours, opt), (ref, opt_ref)):
            o.zero_grad()
            loss = ((params[0] - target) ** 2).sum() + params[1].abs().sum() * (step + 1)
            loss.backward()
            o.step()
        for a, b in zip(ours, ref):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="does not match"):
        Adam([ours[0]]).load_state_dict(blob)
