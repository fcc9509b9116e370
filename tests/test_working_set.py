"""FISTA and ISTA on a working set (Gram form): the Gram table, the restricted operator, and codes
equal to the dense encoder's."""
import numpy as np
import pytest
import torch

from conftest import random_dictionary
from crsae_sort.infer import encode_screened, read_out
from crsae_sort.model.crsae import CRsAE
from crsae_sort.model.local_operator import channel_supports
from crsae_sort.model.working_set import (WorkingSetCounts, encode_working_set, gram_apply, gram_table,
                                          restricted_gram)


def test_gram_table_is_the_atoms_cross_correlation():
    d = random_dictionary(4, 3, 7)
    table = gram_table(d)
    k = d.shape[-1]
    for c in range(4):
        for c2 in range(4):
            for lag in range(-(k - 1), k):
                expected = sum(float(d[c, m, kk] * d[c2, m, kk - lag]) for m in range(3) for kk in range(k)
                               if 0 <= kk - lag < k)
                assert table[c, c2, lag + k - 1].item() == pytest.approx(expected, abs=1e-12)


def test_restricted_gram_on_every_entry_is_HtH():
    """On the full set, ``Q_AA s`` must equal ``H^T H s`` computed with the operator itself."""
    d = random_dictionary(3, 5, 9)
    model = CRsAE(d.float(), torch.ones(3), 10)
    n_codes = 80
    g = torch.Generator().manual_seed(3)
    s = torch.relu(torch.randn(3, n_codes, generator=g) - 1.0)
    everything = torch.ones(3, n_codes, dtype=torch.bool)
    atom_idx, time_idx = torch.nonzero(everything, as_tuple=True)          # sorted by (atom, time)
    q = restricted_gram(atom_idx, time_idx, gram_table(model.dictionary.detach()))
    qs = torch.zeros(3, n_codes)
    qs[atom_idx, time_idx] = q @ s[atom_idx, time_idx]
    op = model.operator()
    assert torch.allclose(qs, op.H_adjoint(op.H(s[None]))[0], atol=1e-5)


def _spiky_problem(model, n_codes=3000, rate=0.004, amplitude=8.0, seed=0):
    """Noise plus the model's atoms at random (overlapping) times: ``y`` ``(M, N)``."""
    g = torch.Generator().manual_seed(seed)
    n_atoms = model.dictionary.shape[0]
    codes = (torch.rand(1, n_atoms, n_codes, generator=g) < rate).float() * amplitude
    codes *= 0.6 + 0.8 * torch.rand(codes.shape, generator=g)
    noise = torch.randn(1, model.n_channels, n_codes + model.dictionary.shape[-1] - 1, generator=g)
    return (model.decode(codes).detach() + noise)[0]


def _dense_model(n_iter=50, positive=True, encoder="fista"):
    return CRsAE(random_dictionary(4, 6, 20, dtype=torch.float32, seed=5), torch.full((4,), 3.0), n_iter,
                 positive=positive, encoder=encoder)


def _local_model():
    rows = np.arange(16) // 2
    locations = np.stack([(np.arange(16) % 2) * 20.0, rows * 20.0], axis=1)
    support, mask = channel_supports(locations, np.array([0, 5, 9, 14, 7]), 40.0)
    a = torch.randn(5, support.shape[1], 20, generator=torch.Generator().manual_seed(4)) * mask.unsqueeze(-1)
    return CRsAE(a, torch.full((5,), 3.0), 50, support=support, mask=mask, n_channels=16)


@pytest.mark.parametrize("make", [lambda: _dense_model(), lambda: _dense_model(positive=False),
                                  lambda: _dense_model(encoder="ista"), _local_model],
                         ids=["fista", "fista-two-sided", "ista", "fista-local-atoms"])
def test_working_set_codes_equal_the_dense_encoders(make):
    model = make()
    y = _spiky_problem(model)
    dense = model.encode(y[None])[0].detach()
    counts = {}
    sparse = encode_screened(model, y, 1.0, counts)
    ws = counts["working_set"]
    assert ws.dense_fallbacks == 0
    assert ws.in_set < 0.2 * ws.entries  # the point: most entries never enter the computation
    assert (dense != 0).sum() > 20
    assert float((sparse - dense).norm() / dense.norm()) < 1e-3
    assert torch.equal(sparse != 0, dense != 0) or float((sparse - dense).abs().max()) < 0.05
    for a, b in zip(read_out(sparse, 10), read_out(dense, 10)):
        assert np.allclose(a, b, rtol=1e-2, atol=1e-2)


@torch.no_grad()
def test_a_set_that_starts_too_small_grows_until_no_entry_outside_would_move():
    """Started from entries above 3 lambda, the first round misses spikes; the optimality check adds
    them and the next round from zero gives the dense codes."""
    model = _dense_model()
    y = _spiky_problem(model, seed=1)
    dense = model.encode(y[None])[0].detach()
    counts = WorkingSetCounts()
    z = encode_working_set(y[None], model.operator(), gram_table(model.dictionary.detach()), model.lam.detach(),
                           model.lipschitz, 50, True, True, 3.0, model.encode, counts=counts)[0]
    assert counts.rounds >= 2 and counts.dense_fallbacks == 0
    assert float((z - dense).norm() / dense.norm()) < 5e-3
    # with a single round allowed, the chunk falls back to the dense encoder: exactly its codes
    counts = WorkingSetCounts()
    z = encode_working_set(y[None], model.operator(), gram_table(model.dictionary.detach()), model.lam.detach(),
                           model.lipschitz, 50, True, True, 3.0, model.encode, max_rounds=1, counts=counts)[0]
    assert counts.dense_fallbacks == 1
    assert torch.equal(z, dense)


@pytest.mark.parametrize("make", [lambda: _dense_model(), _local_model], ids=["dense-atoms", "local-atoms"])
def test_training_gradients_through_the_working_set_equal_the_dense_ones(make):
    """The M-step's ``1/2 ||y - H z_T||^2`` backpropagated through the unrolled encoder: the same
    dictionary and lambda gradients whether the encoder ran dense or on the working set."""
    grads = []
    for screen in (0.0, 1.0):
        model = make()
        model.working_set_screen = screen
        y = torch.stack([_spiky_problem(model, n_codes=400, seed=s) for s in range(3)])
        z = model.encode(y, track_lambda_grad=True)
        loss = 0.5 * (y - model.decode(z)).pow(2).mean()
        loss.backward()
        grads.append((model.dictionary.grad.clone(), model.log_lambda.grad.clone(), z.detach()))
    (gd_dense, gl_dense, z_dense), (gd_ws, gl_ws, z_ws) = grads
    assert float((z_ws - z_dense).norm() / z_dense.norm()) < 1e-4
    assert float((gd_ws - gd_dense).norm() / gd_dense.norm()) < 1e-4
    assert float((gl_ws - gl_dense).norm() / gl_dense.norm()) < 1e-4


def test_gram_apply_of_sparse_codes_is_HtH():
    model = _dense_model()
    g = torch.Generator().manual_seed(7)
    z = torch.relu(torch.randn(2, 4, 300, generator=g) - 2.0)   # ~2 % non-zero
    op = model.operator()
    with torch.no_grad():
        expected = op.H_adjoint(op.H(z))
        got = gram_apply(z, gram_table(model.dictionary), max_elements=500)  # several groups of non-zeros
    assert torch.allclose(got, expected, atol=1e-5)


def test_local_atoms_far_apart_are_not_neighbours_and_products_stay_exact():
    """Atoms on channels far apart share no Gram entry: neighbours() leaves them out, and Q_AA and Q z computed
    over neighbours only equal H^T H of the operator itself."""
    from crsae_sort.model.working_set import neighbours

    model = _local_model()
    table = gram_table(model.dense_dictionary().detach())
    near = neighbours(table)
    assert near.shape[1] < 5                                     # atom 0 (rows 0-1) and atom 3 (row 7) share nothing
    assert 3 not in near[0].tolist() and 0 in near[0].tolist()
    g = torch.Generator().manual_seed(8)
    z = torch.relu(torch.randn(2, 5, 300, generator=g) - 2.0)
    op = model.operator()
    with torch.no_grad():
        expected = op.H_adjoint(op.H(z))
        assert torch.allclose(gram_apply(z, table, max_elements=700), expected, atol=1e-4)
        atom_idx, batch_idx, time_idx = torch.nonzero(torch.ones(5, 1, 300, dtype=torch.bool), as_tuple=True)
        q = restricted_gram(atom_idx, time_idx, table)
        qs = torch.zeros(5, 300)
        qs[atom_idx, time_idx] = q @ z[0][atom_idx, time_idx]
    assert torch.allclose(qs, expected[0], atol=1e-4)


def test_local_gram_table_equals_the_dense_one_and_its_gradient():
    """The Gram table of local atoms, computed only for pairs that share a channel, is the dense table of the
    same templates, and so is its gradient with respect to the atoms."""
    from crsae_sort.model.local_operator import local_gram_table, to_dense

    model = _local_model()
    a = model.dictionary.detach().clone().requires_grad_(True)
    b = a.detach().clone().requires_grad_(True)
    local = local_gram_table(a, model.support, model.mask, model.n_channels)
    dense = gram_table(to_dense(b, model.support, model.mask, model.n_channels))
    assert (dense.abs().amax(-1) == 0).any()                   # atoms far apart: zero blocks, skipped
    assert torch.allclose(local, dense, atol=1e-5)
    w = torch.randn(dense.shape, generator=torch.Generator().manual_seed(1))
    (local * w).sum().backward()
    (dense * w).sum().backward()
    assert torch.allclose(a.grad * model.mask.unsqueeze(-1), b.grad * model.mask.unsqueeze(-1), atol=1e-4)


def test_working_set_on_the_device(device):
    """``encode_working_set`` itself on each device (the inference uses it on the CPU; this is the check
    a GPU session runs before turning it on there)."""
    model = _dense_model().to(device)
    y = _spiky_problem(model.cpu(), seed=2).to(device)
    model = model.to(device)
    with torch.no_grad():
        dense = model.encode(y[None])
        z = encode_working_set(y[None], model.operator(), gram_table(model.dictionary), model.lam, model.lipschitz,
                               50, True, True, 1.0, model.encode)
    assert z.device.type == device.type
    assert float((z - dense).norm() / dense.norm()) < 1e-3


def test_training_gradients_through_the_working_set_are_deterministic():
    """Checkpoint resumption promises the same spikes, so the gradients must not depend on the order
    threads sum repeated indices in (``x[idx]``'s backward does on the CPU; ``index_select``'s does not)."""
    model = _dense_model()
    model.working_set_screen = 1.0
    y = torch.stack([_spiky_problem(model, n_codes=2000, rate=0.02, seed=s) for s in range(16)])
    grads = []
    for _ in range(3):
        model.dictionary.grad = model.log_lambda.grad = None
        z = model.encode(y, track_lambda_grad=True)
        (0.5 * (y - model.decode(z)).pow(2).mean()).backward()
        grads.append((model.dictionary.grad.clone(), model.log_lambda.grad.clone()))
    for other in grads[1:]:
        assert torch.equal(other[0], grads[0][0]) and torch.equal(other[1], grads[0][1])
