"""SISTA over overlapping frames: what it equals, what it minimises, and that it is sequential."""
import pytest
import torch

from conftest import random_dictionary
from crsae_sort.model.encoders import make_encoder
from crsae_sort.model.encoders.fista import fista
from crsae_sort.model.encoders.options import SistaOptions
from crsae_sort.model.encoders.sista import frame_bounds, frame_step
from crsae_sort.model.operator import ConvOperator, H, lipschitz_constant


def _problem(n_codes=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = random_dictionary(3, 2, 9, seed=seed)
    z = torch.zeros(2, 3, n_codes, dtype=torch.float64)
    z.scatter_(2, torch.randint(0, n_codes, (2, 3, n_codes // 20), generator=g),
               4.0 + torch.rand(2, 3, n_codes // 20, generator=g, dtype=torch.float64))
    y = H(z, d) + 0.05 * torch.randn(2, 2, n_codes + 8, generator=g, dtype=torch.float64)
    return y, d, torch.full((3,), 0.3, dtype=torch.float64)


def _sista(n_iter, **options):
    return make_encoder("sista", n_iter, options=SistaOptions(**options))


def test_frames_cover_the_codes_with_the_hop():
    assert frame_bounds(100, 40, 20) == [(0, 40), (20, 60), (40, 80), (60, 100)]
    assert frame_bounds(90, 40, 20) == [(0, 40), (20, 60), (40, 80), (60, 90)]
    assert frame_bounds(30, 40, 20) == [(0, 30)]
    assert _sista(6, sista_hop_fraction=0.25).iterations_per_sample() == 24.0


def test_one_frame_is_fista_and_without_momentum_ista():
    y, d, lam = _problem(60)
    lip = lipschitz_constant(d)
    long = dict(sista_frame_templates=100.0)
    assert torch.equal(_sista(15, **long)(y, d, lam, lip), fista(y, d, lam, lip, 15))
    assert torch.equal(_sista(15, sista_momentum=False, **long)(y, d, lam, lip), make_encoder("ista", 15)(y, d, lam, lip))


def test_without_coupling_the_frames_converge_to_the_lasso_minimum():
    """Warm-started frames with lambda_2 = 0 end at the whole window's lasso solution (codes of
    every frame but the last are final only once their frame has half of it as future context)."""
    y, d, lam = _problem()
    lip = lipschitz_constant(d)
    z_star = fista(y, d, lam, lip, 5000)
    z = _sista(400, sista_coupling=0.0)(y, d, lam, lip)
    assert (z - z_star).norm() <= 1e-3 * z_star.norm()


@pytest.mark.parametrize("coupling", [0.0, 0.5, 4.0])
def test_frame_step_descends_the_coupled_frame_objective(coupling):
    """ISTA on 1/2||y - H z||^2 + (lambda_2/2)||o (H z - r)||^2 + lambda ||z||_1 with the step
    1/((1 + lambda_2) L): the objective never rises (a wrong gradient or Lipschitz bound would)."""
    y, d, lam = _problem(80)
    op, lip = ConvOperator(d), lipschitz_constant(d)
    g = torch.Generator().manual_seed(5)
    r = H(torch.relu(torch.randn(2, 3, 80, generator=g, dtype=torch.float64) - 1.5), d)
    overlap = torch.zeros(y.shape[-1], dtype=torch.float64)
    overlap[:40] = 1.0
    step = 1.0 / ((1.0 + coupling) * lip)

    def objective(z):
        hz = op.H(z)
        return float(0.5 * (y - hz).pow(2).sum() + 0.5 * coupling * (overlap * (hz - r)).pow(2).sum()
                     + (lam.view(1, -1, 1) * z.abs()).sum())

    z = torch.zeros(2, 3, 80, dtype=torch.float64)
    values = [objective(z)]
    for _ in range(60):
        z = frame_step(y, r, overlap, op, z, lam * step, step, coupling, True)
        values.append(objective(z))
    assert all(b <= a + 1e-9 for a, b in zip(values, values[1:]))
    assert values[-1] < 0.5 * values[0]


@pytest.mark.parametrize("coupling", [0.0, 1.0])
def test_codes_do_not_depend_on_the_far_future(coupling):
    """A sequential encoder: a code is final once the frames have moved past it, so changing the
    signal more than a frame later leaves it as it was (bounded latency, as in streaming)."""
    y, d, lam = _problem()
    lip = lipschitz_constant(d)
    enc = _sista(10, sista_coupling=coupling)
    frame = enc.frame_and_hop(9)[0]
    later = y.clone()
    later[..., 250:] += torch.randn(2, 2, later.shape[-1] - 250, dtype=torch.float64)
    z, z_later = enc(y, d, lam, lip), enc(later, d, lam, lip)
    settled = 250 - frame - 9
    assert torch.equal(z[..., :settled], z_later[..., :settled])
    assert not torch.equal(z[..., 250:], z_later[..., 250:])


def test_coupling_holds_the_overlap_to_the_previous_frame():
    """lambda_2 is a prior towards the previous frame's estimate: with a large weight the codes
    move less from their warm start than without it (measured on the lasso objective's rise)."""
    y, d, lam = _problem()
    lip = lipschitz_constant(d)
    lasso = make_encoder("fista", 1).objective
    op = ConvOperator(d)
    free = lasso(y, op, lam, _sista(200, sista_coupling=0.0)(y, d, lam, lip))
    held = lasso(y, op, lam, _sista(200, sista_coupling=100.0)(y, d, lam, lip))
    assert held > free * 1.01
