"""The learned and reweighted encoders on small problems with known answers."""
import math

import pytest
import torch

from conftest import random_dictionary
from crsae_sort.model.crsae import CRsAE
from crsae_sort.model.encoders import make_encoder
from crsae_sort.model.encoders.fista import fista
from crsae_sort.model.operator import H, lipschitz_constant


def _problem(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = random_dictionary(3, 2, 9, dtype=dtype, seed=seed)
    z = torch.zeros(2, 3, 60, dtype=dtype)
    z.scatter_(2, torch.randint(0, 60, (2, 3, 4), generator=g), 4.0 + torch.rand(2, 3, 4, generator=g, dtype=dtype))
    y = H(z, d) + 0.05 * torch.randn(2, 2, 68, generator=g, dtype=dtype)
    return y, d, torch.full((3,), 0.3, dtype=dtype)


@pytest.mark.parametrize("name", ["reweighted", "learned-steps"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_untrained_learned_encoders_are_fista_and_ista_exactly(name, dtype):
    y, d, lam = _problem(dtype)
    lip = lipschitz_constant(d)
    assert torch.equal(make_encoder(name, 12, n_atoms=3)(y, d, lam, lip), fista(y, d, lam, lip, 12))
    plain = make_encoder(name, 12, options=_options(name, momentum=False), n_atoms=3)(y, d, lam, lip)
    assert torch.equal(plain, make_encoder("ista", 12)(y, d, lam, lip))


def _options(name, momentum):
    from crsae_sort.model.encoders import ENCODER_OPTIONS

    return ENCODER_OPTIONS[name](**{f"{name.replace('-', '_')}_momentum": momentum})


def test_reweighted_weights_are_per_layer_per_template_thresholds():
    y, d, lam = _problem()
    lip = lipschitz_constant(d)
    enc = make_encoder("reweighted", 30, n_atoms=3)
    with torch.no_grad():
        enc.log_weights.fill_(math.log(2.0))
    assert torch.allclose(enc(y, d, lam, lip), fista(y, d, 2 * lam, lip, 30), rtol=0, atol=1e-12)
    with torch.no_grad():  # template 1 silenced in every layer, the others untouched
        enc.log_weights.zero_()
        enc.log_weights[:, 1] = math.log(1e6)
    z = enc(y, d, lam, lip)
    assert (z[:, 1] == 0).all() and (z[:, 0] > 0).any() and (z[:, 2] > 0).any()
    assert enc.threshold_floor() == 1.0
    with torch.no_grad():
        enc.log_weights[0, 2] = math.log(0.25)
    assert enc.threshold_floor() == pytest.approx(0.25)


def test_learned_steps_one_exact_step_solves_an_orthogonal_lasso():
    """One atom, one code sample: step 1/||h||^2 = 1 (not 1/L) and scale 1 give the lasso solution
    ``max(h^T y - lambda, 0)`` in a single layer; the untrained step 1/L falls short of it."""
    h = random_dictionary(1, 3, 7, seed=4)
    y = 5.0 * h.reshape(1, 3, 7) + 0.01 * torch.randn(1, 3, 7, dtype=torch.float64)
    lam = torch.tensor([0.5], dtype=torch.float64)
    lip = 1.3  # any valid L >= ||H||^2 = 1
    exact = torch.relu((h[0] * y[0]).sum() - lam)
    enc = make_encoder("learned-steps", 1, options=_options("learned-steps", momentum=False)).double()
    code = lambda: float(enc(y, h, lam, lip).detach())  # noqa: E731
    assert code() < float(exact) - 0.5
    with torch.no_grad():
        enc.log_steps.fill_(math.log(lip))
    assert code() == pytest.approx(float(exact), abs=1e-12)
    with torch.no_grad():
        enc.log_scales.fill_(math.log(2.0))  # threshold 2 lambda
    assert code() == pytest.approx(float(exact) - 0.5, abs=1e-12)
    assert enc.threshold_floor() == pytest.approx(2.0)


def test_candes_reweighting_removes_the_lasso_amplitude_bias():
    """An isolated spike of amplitude a: the lasso code is ``a - lambda``; the log-sum penalty's
    fixed point solves ``z = a - lambda eps / (eps + z)``, much closer to a."""
    h = random_dictionary(1, 2, 9, seed=2)
    a, lam_v, eps = 6.0, 1.5, 1.5  # reweighted_candes_epsilon = 1 -> eps = lambda
    y = a * h.reshape(1, 2, 9)
    lam = torch.tensor([lam_v], dtype=torch.float64)
    lip = lipschitz_constant(h)
    lasso = float(fista(y, h, lam, lip, 500))
    candes = float(make_encoder("reweighted-candes", 500)(y, h, lam, lip))
    # z^2 + (eps - a) z + eps (lam - a) = 0, positive root
    b, c = eps - a, eps * (lam_v - a)
    expected = (-b + math.sqrt(b * b - 4 * c)) / 2
    assert lasso == pytest.approx(a - lam_v, abs=1e-9)
    assert candes == pytest.approx(expected, abs=1e-9) and abs(candes - a) < 0.3 * lam_v


def test_candes_leaves_noise_thresholds_as_fista():
    """Where every code is zero the weights are 1: below lambda nothing changes from FISTA."""
    y, d, lam = _problem()
    y = 0.01 * y
    lip = lipschitz_constant(d)
    assert torch.equal(make_encoder("reweighted-candes", 20)(y, d, lam, lip), fista(y, d, lam, lip, 20))
    assert (fista(y, d, lam, lip, 20) == 0).all()


@pytest.mark.parametrize("name", ["reweighted", "learned-steps"])
def test_learned_weights_travel_with_the_model_state(name):
    d = random_dictionary(3, 2, 9, dtype=torch.float32)
    model = CRsAE(d, torch.full((3,), 2.0), 6, encoder=name)
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.copy_(0.3 * torch.randn_like(p))
    y = torch.randn(2, 2, 60)
    again = CRsAE.from_state(model.to_state())
    for (n, p), (_, q) in zip(model.encoder.named_parameters(), again.encoder.named_parameters()):
        assert torch.equal(p, q), n
    assert torch.equal(again.encode(y), model.encode(y))
    assert not torch.equal(model.encode(y), CRsAE(d, torch.full((3,), 2.0), 6).encode(y))


@pytest.mark.parametrize("name", ["reweighted", "learned-steps"])
def test_training_moves_the_encoder_weights_towards_a_lower_lasso(name):
    """train() gives the encoder's weights to the optimiser; with T = 3 they learn to close part of
    the gap between the last layer's lasso objective and the converged one (dictionary held still)."""
    from crsae_sort.model.gradients import encoder_loss
    from crsae_sort.params import TrainParams
    from crsae_sort.train import train

    g = torch.Generator().manual_seed(3)
    d = random_dictionary(2, 2, 12, dtype=torch.float32, seed=3)
    z = torch.zeros(48, 2, 109)
    z.scatter_(2, torch.randint(0, 109, (48, 2, 2), generator=g), 8.0)
    windows = (H(z, d) + torch.randn(48, 2, 120, generator=g)).numpy()
    model = CRsAE(d, torch.full((2,), 2.5), 3, encoder=name)
    y = torch.from_numpy(windows)

    def gap():
        with torch.no_grad():
            return float(encoder_loss(model, y, model.encode(y)) - encoder_loss(model, y, best))

    best = fista(y, d, model.lam.detach(), model.lipschitz, 300)
    before = gap()
    params = TrainParams(batch_size=8, max_epochs=4, learning_rate=1e-9,
                         encoder_learning_rate=0.1, patience=100, eval_every=100)
    train(model, windows, params, lambda_prior_strength=1e6, seed=0)
    moved = max(float(p.detach().abs().max()) for p in model.encoder.parameters())
    assert moved > 0.1
    assert 0 < gap() < 0.95 * before, (before, gap())  # measured: reweighted -10 %
