"""The CRsAE with spatially local atoms: same codes as the dense model of the same templates."""
import numpy as np
import pytest
import torch

from crsae_sort.model.crsae import CRsAE
from crsae_sort.model.local_operator import channel_supports, to_dense, to_local
from crsae_sort.model.operator import lipschitz_constant


def _two_column_probe(n_channels=32, pitch_um=20.0):
    rows = np.arange(n_channels) // 2
    return np.stack([(np.arange(n_channels) % 2) * pitch_um, rows * pitch_um], axis=1)


def _local_model(device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    locations = _two_column_probe()
    peaks = np.array([0, 9, 17, 30, 22])
    support, mask = channel_supports(locations, peaks, 50.0)
    a = torch.randn(5, support.shape[1], 12, generator=g) * mask.unsqueeze(-1)
    return CRsAE(a, torch.full((5,), 2.0), 30, support=support, mask=mask, n_channels=32).to(device), locations


def test_local_model_encodes_as_the_dense_model_of_its_templates(device):
    local, _ = _local_model(device)
    dense = CRsAE(local.dense_dictionary(), torch.full((5,), 2.0), 30).to(device)
    assert torch.allclose(dense.dictionary, local.dense_dictionary(), atol=1e-6)
    assert float(local.lipschitz) >= lipschitz_constant(dense.dictionary) / 1.005 * (1 - 1e-6)
    local.lipschitz = dense.lipschitz  # same step: the same iterates
    y = torch.randn(3, 32, 200, generator=torch.Generator().manual_seed(1)).to(device) + dense.decode(
        torch.relu(torch.randn(3, 5, 189, generator=torch.Generator().manual_seed(2)) - 2.5).to(device) * 8)
    assert torch.allclose(local.encode(y), dense.encode(y), atol=1e-4)
    assert torch.allclose(local.decode(local.encode(y)), dense.decode(dense.encode(y)), atol=1e-3)


def test_local_atoms_stay_on_their_support_through_training_steps():
    model, _ = _local_model()
    opt = torch.optim.Adam([model.dictionary], lr=0.05)
    y = torch.randn(4, 32, 100)
    for _ in range(3):
        opt.zero_grad()
        z, y_hat = model(y)
        (0.5 * (y - y_hat).pow(2).mean()).backward()
        opt.step()
        model.normalize_()
    assert float(model.dictionary.detach()[~model.mask].abs().max()) == 0.0
    norms = model.dense_dictionary().flatten(1).norm(dim=1)
    assert torch.allclose(norms, torch.ones(5), atol=1e-5)


def test_local_state_round_trip():
    model, _ = _local_model()
    again = CRsAE.from_state(model.to_state())
    assert again.is_local and torch.equal(again.support, model.support)
    y = torch.randn(2, 32, 80)
    assert torch.equal(again.encode(y), model.encode(y))


@pytest.mark.parametrize("radius_um, local", [(50.0, True), (0.0, False), (100.0, False), (1000.0, False)])
def test_initial_model_restricts_atoms_on_a_dense_probe_only(radius_um, local):
    from crsae_sort.init_dictionary import InitialDictionary
    from crsae_sort.params import SortParams
    from crsae_sort.train import initial_model

    g = np.random.default_rng(0)
    atoms = g.standard_normal((4, 64, 12)).astype(np.float32)  # 64 channels: 50 µm keeps ~15 %
    atoms /= np.linalg.norm(atoms.reshape(4, -1), axis=1)[:, None, None]
    init = InitialDictionary(atoms, np.ones(4, np.float32), 4, 100, [25] * 4)
    model = initial_model(init, SortParams.from_dict({"radius_um": radius_um}), 60, torch.device("cpu"),
                          _two_column_probe(64))
    assert model.is_local == local
    if local:
        peaks = np.abs(atoms).max(axis=2).argmax(axis=1)
        support, mask = channel_supports(_two_column_probe(64), peaks, radius_um)
        expected = to_dense(to_local(torch.from_numpy(atoms), support, mask), support, mask, 64)
        expected /= expected.flatten(1).norm(dim=1).view(-1, 1, 1)
        assert torch.allclose(model.dense_dictionary(), expected, atol=1e-6)
