"""Local atoms: supports from the geometry, the operator against the dense one, gradients, bounds."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from crsae_sort.model.encoders.fista import fista
from crsae_sort.model.local_operator import (H_local, H_local_adjoint, channel_supports, lipschitz_bound_local,
                                       lipschitz_constant_local, local_layout, to_dense, to_local)
from crsae_sort.model.operator import H, H_adjoint, lipschitz_constant
from crsae_sort.model.prox import shrink

ROOT = Path(__file__).resolve().parents[1]


def _load_benchmark():
    from crsae_sort.bench import local_operator

    return local_operator


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: on a shared 2-core machine OpenMP start-up would cost more than the work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def two_column_probe(n_rows: int, pitch_um: float = 20.0) -> np.ndarray:
    """``(2 n_rows, 2)`` contact positions in µm, column-major like probeinterface's multi-column probes."""
    rows = np.arange(n_rows) * pitch_um
    return np.concatenate([np.stack([np.zeros(n_rows), rows], 1), np.stack([np.full(n_rows, pitch_um), rows], 1)])


def local_problem(n_rows=8, n_atoms=6, k=5, radius_um=45.0, seed=0, dtype=torch.float64):
    """Random local dictionary ``(C, S, K)`` on a 2-column probe, its supports and layout.

    No floor on the block size in the layout's cost model, so that small problems get several blocks.
    """
    rng = np.random.default_rng(seed)
    locations = two_column_probe(n_rows)
    peaks = rng.integers(0, len(locations), n_atoms)
    support, mask = channel_supports(locations, peaks, radius_um)
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(*support.shape, k, generator=g, dtype=dtype) * mask.unsqueeze(-1)
    a = a / a.flatten(1).norm(dim=1).view(-1, 1, 1)
    return a, support, mask, len(locations), local_layout(support, mask, len(locations), k, min_block_atoms=1)


def explicit_matrix(a, layout, n_codes):
    """H_local as a matrix: column (c, t) is H_local of a unit impulse."""
    n_atoms = a.shape[0]
    impulses = torch.eye(n_atoms * n_codes, dtype=a.dtype).view(-1, n_atoms, n_codes)
    return H_local(impulses, a, layout).flatten(1).T


def test_supports_match_brute_force_distances():
    locations = two_column_probe(12)
    peaks = np.array([0, 5, 11, 12, 17, 23, 5])
    support, mask = channel_supports(locations, peaks, 45.0)
    sizes = []
    for c, peak in enumerate(peaks):
        expected = [m for m in range(len(locations)) if math.dist(locations[m], locations[peak]) <= 45.0]
        assert support[c][mask[c]].tolist() == expected  # sorted, and exactly the channels in the radius
        assert (support[c][~mask[c]] == peak).all()  # padding points at the peak
        sizes.append(len(expected))
    assert support.shape == (len(peaks), max(sizes)) and mask.sum(1).tolist() == sizes
    assert sizes[1] == 10  # interior contact: 5 rows x 2 columns within 45 µm on a 20 µm grid


def test_supports_on_the_neuropixels_probe_file():
    probeinterface = pytest.importorskip("probeinterface")
    locations = probeinterface.read_probeinterface(ROOT / "crsae_sort" / "probes" / "neuropixels1.json").probes[0].contact_positions
    peaks = np.random.default_rng(2).integers(0, len(locations), 40)
    support, mask = channel_supports(locations, peaks, 60.0)
    distances = np.linalg.norm(locations[peaks][:, None] - locations[None], axis=-1)
    for c in range(len(peaks)):
        assert support[c][mask[c]].tolist() == np.flatnonzero(distances[c] <= 60.0).tolist()
    assert 10 <= support.shape[1] < 40


def test_supports_edge_cases_and_errors():
    locations = two_column_probe(4)
    support, mask = channel_supports(locations, np.array([3, 6]), 0.0)
    assert support.tolist() == [[3], [6]] and mask.all()
    with pytest.raises(ValueError, match="peak_channels"):
        channel_supports(locations, np.array([8]), 30.0)
    with pytest.raises(ValueError, match="radius_um"):
        channel_supports(locations, np.array([1]), -1.0)


@pytest.mark.parametrize("n_rows,n_atoms,k,radius_um", [(8, 6, 5, 45.0), (16, 12, 7, 30.0), (3, 4, 4, 1e3)])
def test_adjointness(n_rows, n_atoms, k, radius_um):
    a, support, mask, n_channels, layout = local_problem(n_rows, n_atoms, k, radius_um)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, n_atoms, 40, generator=g, dtype=torch.float64)
    y = torch.randn(2, n_channels, 40 + k - 1, generator=g, dtype=torch.float64)
    lhs, rhs = (H_local(z, a, layout) * y).sum(), (z * H_local_adjoint(y, a, layout)).sum()
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)


@pytest.mark.parametrize("seed", [0, 1])
def test_local_equals_dense_operator_and_gradients(seed):
    a, support, mask, n_channels, layout = local_problem(n_rows=10, n_atoms=9, k=6, seed=seed)
    assert len(layout.blocks) > 1  # the block partition is exercised, not just one dense block
    d = to_dense(a, support, mask, n_channels)
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(3, 9, 30, generator=g, dtype=torch.float64)
    y = torch.randn(3, n_channels, 35, generator=g, dtype=torch.float64)
    for local_op, dense_op, x in ((H_local, H, z), (H_local_adjoint, H_adjoint, y)):
        xl, al = x.clone().requires_grad_(), a.clone().requires_grad_()
        xd, dd = x.clone().requires_grad_(), d.clone().requires_grad_()
        out_l, out_d = local_op(xl, al, layout), dense_op(xd, dd)
        torch.testing.assert_close(out_l, out_d, rtol=0, atol=1e-12)
        weight = torch.randn(out_d.shape, generator=g, dtype=torch.float64)
        (out_l * weight).sum().backward()
        (out_d * weight).sum().backward()
        torch.testing.assert_close(xl.grad, xd.grad, rtol=0, atol=1e-12)
        torch.testing.assert_close(al.grad, to_local(dd.grad, support, mask), rtol=0, atol=1e-12)


def test_masked_entries_are_ignored_and_get_no_gradient():
    a, support, mask, n_channels, layout = local_problem(n_rows=4, n_atoms=5, k=4, radius_um=25.0)
    assert not mask.all()
    noisy = (a + 7.0 * (~mask).unsqueeze(-1)).requires_grad_()
    z = torch.randn(1, 5, 12, dtype=torch.float64)
    out = H_local(z, noisy, layout)
    torch.testing.assert_close(out, H_local(z, a, layout), rtol=0, atol=0)
    out.square().sum().backward()
    assert (noisy.grad[~mask] == 0).all()
    assert torch.equal(to_local(to_dense(noisy.detach(), support, mask, n_channels), support, mask), a)


def test_gradcheck():
    a, support, mask, n_channels, layout = local_problem(n_rows=4, n_atoms=3, k=3, radius_um=25.0)
    assert len(layout.blocks) > 1 and not mask.all()
    a = a.requires_grad_()
    g = torch.Generator().manual_seed(3)
    z = torch.randn(1, 3, 6, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(1, n_channels, 8, generator=g, dtype=torch.float64, requires_grad=True)
    # the masked entries of a have zero gradient, which gradcheck sees by finite differences too
    assert torch.autograd.gradcheck(lambda z, a: H_local(z, a, layout), (z, a))
    assert torch.autograd.gradcheck(lambda y, a: H_local_adjoint(y, a, layout), (y, a))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tetrode_is_the_dense_operator_exactly(dtype):
    locations = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0], [20.0, 20.0]])
    support, mask = channel_supports(locations, np.array([0, 3, 1, 2, 0]), 100.0)
    assert support.tolist() == [[0, 1, 2, 3]] * 5 and mask.all()
    layout = local_layout(support, mask, 4, 8)
    assert len(layout.blocks) == 1 and layout.blocks[0].every_channel
    a = torch.randn(5, 4, 8, dtype=dtype)
    d = to_dense(a, support, mask, 4)
    assert torch.equal(d, a)
    z, y = torch.randn(2, 5, 50, dtype=dtype), torch.randn(2, 4, 57, dtype=dtype)
    assert torch.equal(H_local(z, a, layout), H(z, d))
    assert torch.equal(H_local_adjoint(y, a, layout), H_adjoint(y, d))


def test_float32_matches_dense():
    a, support, mask, n_channels, layout = local_problem(n_rows=12, n_atoms=10, k=8, dtype=torch.float32)
    d = to_dense(a, support, mask, n_channels)
    z, y = torch.randn(2, 10, 100), torch.randn(2, n_channels, 107)
    torch.testing.assert_close(H_local(z, a, layout), H(z, d), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(H_local_adjoint(y, a, layout), H_adjoint(y, d), rtol=1e-5, atol=1e-5)


def test_layout_covers_every_atom_once_and_errors_say_how_to_fix():
    a, support, mask, n_channels, layout = local_problem(n_rows=20, n_atoms=40, k=5, radius_um=30.0)
    atoms = torch.cat([b.atoms for b in layout.blocks]).sort().values
    assert torch.equal(atoms, torch.arange(40))
    assert layout.pairs_evaluated >= int(mask.sum())
    assert layout.pairs_evaluated < 40 * n_channels
    with pytest.raises(ValueError, match="does not match the layout"):
        H_local(torch.zeros(1, 39, 10, dtype=torch.float64), a[:39], layout)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lipschitz_bounds_hold(seed):
    a, support, mask, n_channels, layout = local_problem(n_rows=6, n_atoms=5, k=6, radius_um=30.0, seed=seed)
    exact = lipschitz_constant_local(a, support, mask, n_channels)
    assert exact == pytest.approx(lipschitz_constant(to_dense(a, support, mask, n_channels)), rel=1e-12)
    cheap = lipschitz_bound_local(a, support, mask, n_channels)
    assert cheap.shape == () and cheap.dtype == a.dtype and not cheap.requires_grad
    for n_codes in (8, 40):  # valid for every signal length
        norm2 = torch.linalg.matrix_norm(explicit_matrix(a, layout, n_codes), ord=2).item() ** 2
        assert exact >= norm2 and cheap >= norm2
    assert norm2 >= 0.9 * exact  # the long signal comes close to the bound
    assert cheap >= exact / 1.005  # >= the grid maximum the exact bound is built on


def test_cheap_bound_holds_between_grid_frequencies():
    # a coarse grid misses the spectral peak of an oscillating atom; the envelope term covers it
    k = 16
    wave = torch.cos(2.3 * torch.arange(k, dtype=torch.float64)) * torch.hann_window(k, dtype=torch.float64)
    a = wave.view(1, 1, k) / wave.norm()
    support, mask = torch.zeros(1, 1, dtype=torch.int64), torch.ones(1, 1, dtype=torch.bool)
    true_sup = lipschitz_constant_local(a, support, mask, 1, n_fft=1 << 14) / 1.005
    for n_fft in (8, 16, 64):
        assert float(lipschitz_bound_local(a, support, mask, 1, n_fft=n_fft)) >= true_sup


def test_cheap_bound_is_tight_on_spike_like_templates():
    locations = two_column_probe(24)
    peaks = np.random.default_rng(4).integers(0, len(locations), 30)
    support, mask = channel_supports(locations, peaks, 50.0)
    a = _load_benchmark().spike_like_templates(locations, peaks, support, mask, k=20)
    exact = lipschitz_constant_local(a, support, mask, len(locations))
    cheap = float(lipschitz_bound_local(a.float(), support, mask, len(locations)))
    assert exact / 1.005 <= cheap <= 1.15 * exact


def fista_with(op, op_adjoint, y, n_atoms, n_times_atom, lam, lipschitz, n_iter, positive=True):
    """crsae_sort.fista.fista with the operator passed in: ``x_t = shrink(s_t + H^T(y - H s_t) / L, lam / L)``."""
    step, x_prev = 1.0 / lipschitz, y.new_zeros(y.shape[0], n_atoms, y.shape[-1] - n_times_atom + 1)
    s, tau = x_prev, 1.0
    for _ in range(n_iter):
        x = shrink(s + step * op_adjoint(y - op(s)), lam * step, positive)
        tau_next = (1.0 + math.sqrt(1.0 + 4.0 * tau * tau)) / 2.0
        s, x_prev, tau = x + ((tau - 1.0) / tau_next) * (x - x_prev), x, tau_next
    return x_prev


def test_fista_with_local_operator_gives_the_dense_codes():
    a, support, mask, n_channels, layout = local_problem(n_rows=10, n_atoms=8, k=6, radius_um=30.0)
    d = to_dense(a, support, mask, n_channels)
    z_true = torch.zeros(2, 8, 60, dtype=torch.float64)
    z_true[:, :, ::13] = 3.0
    y = H(z_true, d) + 0.1 * torch.randn(2, n_channels, 65, dtype=torch.float64)
    lam, lip = torch.full((8,), 0.5, dtype=torch.float64), lipschitz_constant_local(a, support, mask, n_channels)
    reference = fista(y, d, lam, lip, n_iter=50)
    same_loop = fista_with(lambda z: H(z, d), lambda r: H_adjoint(r, d), y, 8, 6, lam, lip, 50)
    torch.testing.assert_close(same_loop, reference, rtol=0, atol=1e-12)  # the loop is fista.py's
    local = fista_with(lambda z: H_local(z, a, layout), lambda r: H_local_adjoint(r, a, layout), y, 8, 6, lam, lip, 50)
    torch.testing.assert_close(local, reference, rtol=0, atol=1e-10)
    assert (local > 0).any()


def test_benchmark_script_runs_and_its_low_rank_operator_is_exact(capsys):
    # --tiny asserts that the rank-R operator equals H_local of the rank-R dictionary
    report = _load_benchmark().main(["--tiny", "--threads", "1"])
    assert report["rows"] and report["lowrank"] and report["lipschitz"]["ratio"] >= 1 / 1.005
    assert "| C | radius" in capsys.readouterr().out
