"""Learning that is kept when it helps: the held-out objective, and training from a perturbed dictionary.

The selection rule is the negative log posterior on held-out windows (reconstruction of the windows'
interior, lambda-weighted l1, lambda's Gamma-prior terms): both M-steps descend it, so a run keeps its
steps, lambda comes out per unit, and from a noisy dictionary the atoms move back toward the truth.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from crsae_sort.bench.init import gt_templates, match_units
from crsae_sort.init_dictionary import initial_dictionary
from crsae_sort.model.gradients import edge_samples
from crsae_sort.model.losses import gamma_prior, map_objective
from crsae_sort.params import SortParams
from crsae_sort.pipeline import _build_and_train
from crsae_sort.preprocess import preprocess
from crsae_sort.selection import Judge
from crsae_sort.train import initial_model, sample_windows, window_samples


@pytest.fixture(scope="module")
def tetrode():
    """A seeded 20-s ground-truth tetrode, preprocessed, its initial dictionary and its true templates."""
    from spikeinterface.core import generate_ground_truth_recording

    rec, gt = generate_ground_truth_recording(durations=[20.0], sampling_frequency=30000.0, num_channels=4,
                                              num_units=5, seed=31)
    params = SortParams.from_dict({"grow_rounds": 0, "num_threads": 2})
    pre = preprocess(rec, params.preprocess, 0)
    init = initial_dictionary(pre.recording, params.init, 0)
    k = init.dictionary.shape[-1]
    truth = gt_templates(pre.recording, gt, pre.decimation, init.n_before, k - init.n_before)
    return rec, gt, pre, init, truth, params


def _perturbed(init, fraction: float, seed: int):
    """``init`` with each atom moved by Gaussian noise of ``fraction`` of its norm, renormalised."""
    d = init.dictionary.astype(np.float64)
    noise = np.random.default_rng(seed).standard_normal(d.shape)
    noise *= fraction / np.linalg.norm(noise.reshape(len(d), -1), axis=1)[:, None, None]
    d = d + noise
    d /= np.linalg.norm(d.reshape(len(d), -1), axis=1)[:, None, None]
    return dataclasses.replace(init, dictionary=d.astype(np.float32))


def _accuracy(rec, gt, pre, model, params, units=None) -> float:
    """Mean accuracy over ``units`` of ``gt`` (all of them, exhaustive ground truth, when None)."""
    from spikeinterface.comparison import compare_sorter_to_ground_truth

    from crsae_sort.infer import detect_spikes
    from crsae_sort.postprocess import build_result

    spikes = detect_spikes(model, pre.recording, params.inference)
    result = build_result(rec, pre, model, spikes, params, None, torch.device("cpu"), None)
    perf = compare_sorter_to_ground_truth(gt, result.sorting, exhaustive_gt=units is None).get_performance()
    return float(perf["accuracy"].mean() if units is None else perf["accuracy"][units].mean())


def test_the_held_out_objective_is_the_map_objective_of_the_windows(tetrode):
    _, _, pre, init, _, params = tetrode
    n = window_samples(params, pre.recording.get_sampling_frequency(), init.dictionary.shape[-1])
    model = initial_model(init, params, n, torch.device("cpu"))
    val = torch.from_numpy(sample_windows(pre.recording, 8, n, seed=3))
    r, delta = gamma_prior(model.lam.detach(), 8 * (n - init.dictionary.shape[-1] + 1), 10.0)
    judged = Judge(val, (r, delta))(model)
    with torch.no_grad():
        z, y_hat = model(val)
        expected = float(map_objective(val, y_hat, z, model.lam, r, delta, edge_samples(model)))
    assert judged["val_objective"] == pytest.approx(expected, rel=1e-5)
    # the reconstruction it reports leaves the K - 1 samples at each end out
    k = init.dictionary.shape[-1]
    inner = 0.5 * float(((val - y_hat)[..., k - 1: n - k + 1] ** 2).mean())
    assert judged["val_loss"] == pytest.approx(inner, rel=1e-5)


def test_training_is_kept_and_lambda_comes_out_per_unit(tetrode):
    _, _, pre, init, _, params = tetrode
    model, result = _build_and_train(pre, init, params, torch.device("cpu"), False, None)
    first = result.history[0]
    best = next(row for row in result.history if row["step"] == result.best_step)
    assert result.best_step > 0, "the objective never improved on the initial dictionary"
    assert [row["step"] for row in result.history if row["kept"]] == [result.best_step]   # what the report reads
    assert best["val_objective"] < first["val_objective"]
    lam = model.lam.detach().numpy()
    assert not np.allclose(lam, first["lam"]), "lambda was thrown away with the training"
    _assert_lambda_follows_code_size(model, pre, params, first["lam"])


def _assert_lambda_follows_code_size(model, pre, params, lam_start):
    """lambda differs across units by more than 1 % of its start, and the atoms that code more (larger or
    more frequent units) end with the lower lambda (rank correlation below -0.7)."""
    from scipy.stats import spearmanr

    lam = model.lam.detach().numpy()
    assert np.ptp(lam) > 0.01 * float(np.mean(lam_start)), f"every unit kept about one lambda: {lam}"
    n = window_samples(params, pre.recording.get_sampling_frequency(), model.dictionary.shape[-1])
    with torch.no_grad():
        z, _ = model(torch.from_numpy(sample_windows(pre.recording, 16, n, seed=11)))
    code_size = z.abs().sum(dim=(0, 2)).numpy()
    rho = spearmanr(code_size, lam).statistic
    assert rho < -0.7, (rho, code_size, lam)


def test_training_from_a_noisy_dictionary_moves_the_atoms_toward_the_truth(tetrode):
    rec, gt, pre, init, truth, params = tetrode
    noisy = _perturbed(init, 0.3, seed=5)
    fast = SortParams.from_dict({**params.to_dict(), "learning_rate": 2e-3})
    before_cos = float(match_units(noisy.dictionary, truth).mean())
    untrained = initial_model(noisy, fast, 450, torch.device("cpu"))
    untrained.working_set_screen = fast.inference.screen_fraction
    before_acc = _accuracy(rec, gt, pre, untrained, fast)
    model, result = _build_and_train(pre, noisy, fast, torch.device("cpu"), False, None)
    after_cos = float(match_units(model.dense_dictionary().detach().numpy(), truth).mean())
    after_acc = _accuracy(rec, gt, pre, model, fast)
    assert result.best_step > 0
    assert after_cos > before_cos + 0.01, (before_cos, after_cos)
    assert after_acc >= before_acc - 0.005, (before_acc, after_acc)


def test_on_real_noise_training_is_kept_and_lambda_differs_per_unit():
    """A hybrid on the real locust tetrode: the trained model is kept, scores at least the untrained one on
    the injected units, and lambda comes out per unit in the order of each atom's code size."""
    from conftest import SHARED_DATA

    from crsae_sort.bench.hybrid import HYBRID_CASES, make_hybrid, source_path

    if not source_path(HYBRID_CASES["hybrid_locust_a"].source, SHARED_DATA).exists():
        pytest.skip("the locust recording of ../shared/data is not present")
    case = make_hybrid("hybrid_locust_a", SHARED_DATA)
    units = [u for u in case.gt_sorting.unit_ids if case.target_snrs[str(u)] >= 5]
    params = SortParams.from_dict({"grow_rounds": 0, "num_threads": 2})
    pre = preprocess(case.recording, params.preprocess, 0)
    init = initial_dictionary(pre.recording, params.init, 0)
    n = window_samples(params, pre.recording.get_sampling_frequency(), init.dictionary.shape[-1])
    untrained = initial_model(init, params, n, torch.device("cpu"))
    untrained.working_set_screen = params.inference.screen_fraction
    before = _accuracy(case.recording, case.gt_sorting, pre, untrained, params, units)
    model, result = _build_and_train(pre, init, params, torch.device("cpu"), False, None)
    after = _accuracy(case.recording, case.gt_sorting, pre, model, params, units)
    assert result.best_step > 0, "training was thrown away"
    assert after >= before - 0.005, (before, after)
    assert after > 0.9, after
    _assert_lambda_follows_code_size(model, pre, params, result.history[0]["lam"])
