"""The convex reference solvers (FISTA to convergence, SPORCO ADMM, CBP) and `crsae-sort bench convex`."""
import json

import numpy as np
import pytest
import torch

from conftest import random_dictionary
from crsae_sort.bench import convex_solvers as convex
from crsae_sort.model.operator import H, lipschitz_constant


def _problem(amplitude=20.0, n=3000, seed=0):
    """Smooth 3-template tetrode dictionary, 25 spikes on a 60-sample grid, unit noise."""
    rng = np.random.default_rng(seed)
    c, m, k = 3, 4, 20
    t = np.arange(k)
    d = np.stack([np.stack([(1.0 if m_ == i else 0.3) * np.sin(t / (3 + i)) * np.exp(-(t - 8) ** 2 / 20)
                            for m_ in range(m)]) for i in range(c)])
    d /= np.linalg.norm(d.reshape(c, -1), axis=1)[:, None, None]
    z = np.zeros((c, n - k + 1))
    pos = np.sort(rng.choice(np.arange(50, n - k - 50, 60), 25, replace=False))
    unit = rng.integers(0, c, 25)
    z[unit, pos] = amplitude
    y = H(torch.tensor(z)[None], torch.tensor(d))[0].numpy() + rng.standard_normal((m, n))
    return y, d, np.full(c, 3.0), pos, unit


def test_fista_and_admm_reach_the_same_minimum():
    y, d, lam, _, _ = _problem()
    fista = convex.fista_to_convergence(y, d, lam, lipschitz_constant(torch.tensor(d)), tol=1e-6)
    admm = convex.admm_sporco(y, d, lam, tol=1e-5, max_iter=5000)
    f_fista, f_admm = convex.objective(y, fista.z, d, lam), convex.objective(y, admm.z, d, lam)
    assert fista.converged
    assert abs(f_fista - f_admm) / f_fista < 1e-4
    assert (fista.z >= 0).all() and (admm.z >= 0).all()
    # both below the objective of the true codes (the lasso minimum is lower than any other point)
    true = np.zeros_like(fista.z)
    assert f_fista < convex.objective(y, true, d, lam)


def test_polar_basis_passes_through_the_three_shifts():
    d = random_dictionary(2, 3, 15).numpy()
    pb = convex.polar_basis(d)
    for i, h in enumerate(d):
        c, u, v = pb.basis[i]
        for sign, shift in ((-1, 0), (0, 1), (1, 2)):
            phi = sign * pb.theta[i]
            on_circle = c + np.cos(phi) * u + np.sin(phi) * v
            assert np.allclose(on_circle, np.pad(h, ((0, 0), (shift, 2 - shift))), atol=1e-6)


def test_cbp_recovers_spike_times_and_units():
    y, d, lam, pos, unit = _problem()
    res = convex.cbp(y, d, lam)
    big = res.amplitude > 5
    times, units = res.position[big], res.unit[big]
    assert len(times) == len(pos)
    order = np.argsort(times)
    assert np.abs(times[order] - pos).max() < 0.5          # sub-sample: the truth is on the integer grid
    assert (units[order] == unit).all()
    assert convex.cbp_objective(y, res, lam) < 0.5 * np.sum(y ** 2)


@pytest.mark.slow
def test_bench_convex_tiny_plan(tmp_path, sorted_demo):
    """The whole tiny plan in one run: four methods at 0.01 and 0.3 s (eight worker processes), CBP scored at
    0.3 s. The default suite runs the same checks with four workers (the test below)."""
    from crsae_sort.bench.convex import run

    _save(tmp_path, sorted_demo)
    rows = run(tmp_path, "tiny", ("crsae", "fista", "admm", "cbp"))
    assert len(rows) == 8
    _check_tiny(tmp_path, rows)
    assert _by(rows)[("cbp", 0.3)]["accuracy"] > 0.8


def test_bench_convex_tiny_plan_in_two_runs(tmp_path, sorted_demo, monkeypatch):
    """The tiny plan's checks with four worker processes instead of eight: crsae, FISTA and ADMM at 0.3 s
    (gaps, accuracy), then CBP at 0.01 s (its worker, and its own objective in the table). CBP's accuracy at
    0.3 s is the slow test's; its spike times and units are checked on a planted problem above."""
    import dataclasses

    from crsae_sort.bench import convex as bench

    tiny = bench.PLANS["tiny"]
    _save(tmp_path, sorted_demo)
    monkeypatch.setitem(bench.PLANS, "tiny", dataclasses.replace(tiny, lengths_s=(0.3,)))
    rows = bench.run(tmp_path, "tiny", ("crsae", "fista", "admm"))
    monkeypatch.setitem(bench.PLANS, "tiny", dataclasses.replace(tiny, lengths_s=(0.01,)))
    rows += bench.run(tmp_path, "tiny", ("cbp",))
    assert len(rows) == 4 and ("cbp", 0.01) in _by(rows)
    _check_tiny(tmp_path, rows)


def _by(rows):
    return {(r["method"], r["length_s"]): r for r in rows}


def _save(folder, sorted_demo):
    from crsae_sort.bench.convex import save_problem

    recording, gt, result = sorted_demo
    save_problem(folder, recording, gt, result.model, result.params)


def _check_tiny(folder, rows):
    """What every run of the tiny plan gives: no error, FISTA and ADMM at their tolerance, crsae close to
    the optimum, crsae, FISTA and ADMM accurate at 0.3 s, results.json, the table and the plot."""
    from crsae_sort.bench.convex import plot, table

    assert not [r for r in rows if "error" in r], rows
    by = _by(rows)
    assert len(by) == len(rows)
    long = {m: by[(m, 0.3)] for m in ("crsae", "fista", "admm")}
    assert long["fista"]["gap"] < 1e-5 and long["admm"]["gap"] < 1e-3
    assert 0 <= long["crsae"]["gap"] < 1e-2  # 50 unrolled steps: close to the optimum
    for m in ("crsae", "fista", "admm"):
        assert long[m]["accuracy"] > 0.9, (m, long[m])
    assert json.loads((folder / "results.json").read_text())["plan"] == "tiny"
    text = table(rows)
    assert text.count("\n") == 2 + len(rows) - 1 and "CBP's own" in text
    plot(rows, folder / "p.png")
    assert (folder / "p.png").stat().st_size > 10000


def test_bench_convex_refuses_unknown_method(tmp_path):
    from crsae_sort.bench.convex import run
    from crsae_sort.errors import InputError

    with pytest.raises(InputError, match="unknown method"):
        run(tmp_path, "tiny", ("crsae", "lars"))


def test_cli_bench_convex_refuses_unknown_method_before_any_work(tmp_path):
    from click.testing import CliRunner

    from crsae_sort.cli import main

    out = tmp_path / "bench"
    res = CliRunner().invoke(main, ["bench", "convex", "-o", str(out), "--methods", "crsae,lars"])
    assert res.exit_code == 1
    assert "unknown method(s) ['lars']" in res.output
    assert not (out / "problem.npz").exists()
