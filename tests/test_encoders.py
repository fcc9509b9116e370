"""Every registered encoder, on every device: shapes, convergence to the lasso, screening, state."""
import dataclasses
import functools

import numpy as np
import pytest
import torch

from conftest import random_dictionary
from crsae_sort.model.crsae import CRsAE
from crsae_sort.model.encoders import ENCODER_OPTIONS, ENCODERS, encoder_names, get_encoder_class, make_encoder
from crsae_sort.model.losses import lasso_objective
from crsae_sort.model.operator import H, lipschitz_constant
from crsae_sort.params import SortParams, describe

NAMES = encoder_names()


def _problem(device, dtype=torch.float64, seed=0):
    """Planted sparse codes through a random unit-norm dictionary, plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    d = random_dictionary(3, 2, 9, dtype=dtype, seed=seed).to(device)
    z = torch.zeros(2, 3, 120, dtype=dtype)
    idx = torch.randint(0, 120, (2, 3, 6), generator=g)
    z.scatter_(2, idx, 4.0 + torch.rand(2, 3, 6, generator=g, dtype=dtype))
    z = z.to(device)
    y = H(z, d) + 0.05 * torch.randn(2, 2, 128, generator=g, dtype=dtype).to(device)
    return y, d, torch.full((3,), 0.3, dtype=dtype, device=device)


def test_registry_is_consistent():
    assert NAMES[0] == "fista"
    assert set(ENCODERS) == set(ENCODER_OPTIONS)
    for name in NAMES:
        cls = get_encoder_class(name)
        assert cls.name == name and cls.Options is ENCODER_OPTIONS[name]
        for f in dataclasses.fields(cls.Options):  # keys stay unique across sections
            assert f.name.startswith(name.replace("-", "_") + "_")
    names = [row["name"] for row in describe()]
    assert len(names) == len(set(names))
    assert [r for r in describe() if r["name"] == "encoder"][0]["bounds"].split(" | ") == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_encoder_shapes_and_sign(name, device):
    y, d, lam = _problem(device)
    z = make_encoder(name, 20, positive=True)(y, d, lam, lipschitz_constant(d))
    assert z.shape == (2, 3, 128 - 9 + 1) and z.device.type == device.type
    assert (z >= 0).all()
    signed = make_encoder(name, 20, positive=False)(-y, d, lam, lipschitz_constant(d))
    assert (signed < 0).any()


@functools.lru_cache(maxsize=None)
def _lasso_minimiser(device: str) -> torch.Tensor:
    """FISTA's long-run solution of :func:`_problem` (computed once per device, shared by the encoders)."""
    y, d, lam = _problem(torch.device(device))
    return make_encoder("fista", 3000)(y, d, lam, lipschitz_constant(d))


@pytest.mark.parametrize("name", NAMES)
def test_encoder_descends_to_the_lasso_minimum(name, device):
    """More unrolled iterations lower the encoder's own objective (the lasso, or the log-sum of
    ``reweighted-candes``) and end at or below its value at FISTA's long-run lasso minimum."""
    from crsae_sort.model.operator import ConvOperator

    y, d, lam = _problem(device)
    lip, op = lipschitz_constant(d), ConvOperator(d)
    objective = make_encoder(name, 1).objective
    assert lasso_objective(y, y.new_ones(2, 3, 120), d, lam) == make_encoder("fista", 1).objective(
        y, op, lam, y.new_ones(2, 3, 120))
    ref = objective(y, op, lam, _lasso_minimiser(str(device))).item()
    objs = [objective(y, op, lam, make_encoder(name, t)(y, d, lam, lip)).item() for t in (2, 20, 400)]
    assert objs[0] > objs[2]
    assert objs[2] <= ref * (1 + 1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_encoder_is_differentiable_in_the_dictionary(name):
    y, d, lam = _problem("cpu")
    d = d.clone().requires_grad_(True)
    z = make_encoder(name, 5)(y, d, lam, lipschitz_constant(d))
    (0.5 * (y - H(z, d)).pow(2).sum()).backward()
    assert d.grad is not None and torch.isfinite(d.grad).all() and d.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_screened_inference_matches_full_encoding(name):
    """Where an encoder supports screening, encoding only the active stretches changes no spike."""
    from crsae_sort.infer import encode_screened, read_out

    g = torch.Generator().manual_seed(1)
    d = random_dictionary(2, 2, 12, dtype=torch.float32, seed=3)
    z = torch.zeros(1, 2, 3000)
    z[0, 0, torch.randint(0, 3000, (15,), generator=g)] = 12.0
    z[0, 1, torch.randint(0, 3000, (15,), generator=g)] = 9.0
    y = (H(z, d) + torch.randn(1, 2, 3011, generator=g))[0]
    model = CRsAE(d, torch.full((2,), 3.0), 50, encoder=name)
    full = read_out(encode_screened(model, y, 0.0), 5)
    screened = read_out(encode_screened(model, y, 0.6 if model.encoder.supports_screening else 0.0), 5)
    for a, b in zip(full, screened):
        assert np.allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_model_state_round_trip(name, device):
    d = random_dictionary(3, 2, 9, dtype=torch.float32)
    model = CRsAE(d, torch.full((3,), 2.0), 7, encoder=name).to(device)
    again = CRsAE.from_state(model.to_state(), device)
    assert again.encoder.name == name and again.n_iter == 7 and again.lipschitz == model.lipschitz
    y = torch.randn(2, 2, 60, device=device)
    assert torch.equal(again.encode(y), model.encode(y))
    other = CRsAE(d, torch.full((3,), 2.0), 7, encoder=name)
    other.load_state_dict(model.state_dict())  # L travels with the state
    assert other.lipschitz == model.lipschitz


def test_old_state_is_a_clear_error():
    d = random_dictionary(2, 2, 5, dtype=torch.float32)
    state = CRsAE(d, torch.ones(2), 3).to_state()
    with pytest.raises(ValueError, match="format 1"):
        CRsAE.from_state(dict(state, format=1))


def test_encoder_is_chosen_by_parameter():
    from crsae_sort.init_dictionary import InitialDictionary
    from crsae_sort.train import initial_model

    init = InitialDictionary(random_dictionary(2, 2, 5, dtype=torch.float32).numpy(), np.ones(2, np.float32),
                             2, 20, [10, 10])
    model = initial_model(init, SortParams.from_dict({"encoder": "ista", "n_iterations": 12}), 40,
                          torch.device("cpu"))
    assert model.encoder.name == "ista" and model.n_iter == 12
    with pytest.raises(ValueError, match="encoder"):
        SortParams.from_dict({"encoder": "lista"})
