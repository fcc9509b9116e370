import os

# OpenBLAS (numpy, scipy, scikit-learn's PCA in the initial dictionary and the splits) keeps its idle threads
# spinning. On 2 cores shared with torch's threads and with other jobs, a 2000 x 120 SVD took 1-3.5 s with
# its 2 threads and 0.03 s with 1, and tests/test_pipeline.py + test_grow.py went from 87 s to 50 s. One
# BLAS thread for the whole session, child processes included (they inherit the environment); set
# OPENBLAS_NUM_THREADS to run the suite with more. Set before numpy loads: OpenBLAS reads it once.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    np.random.seed(0)
    warnings.filterwarnings("ignore", message=".*not serializable.*")
    yield


@pytest.fixture(scope="session")
def gt_tetrode():
    """The demo's seeded ground-truth tetrode: 30 s, 6 units, 30 kHz, default noise."""
    from crsae_sort.demo import ground_truth_tetrode

    return ground_truth_tetrode(30.0)


@pytest.fixture(scope="session")
def saved_tetrode_10s(tmp_path_factory, gt_tetrode):
    """The first 10 s of the ground-truth tetrode, saved as a SpikeInterface binary folder."""
    recording, _ = gt_tetrode
    folder = tmp_path_factory.mktemp("rec") / "tetrode_10s"
    recording.frame_slice(0, 300000).save(folder=folder, n_jobs=1, progress_bar=False)
    return folder


@pytest.fixture(scope="session")
def sorted_demo(tmp_path_factory, gt_tetrode):
    """One full sort of the ground-truth tetrode, shared by the tests that read its outputs."""
    from crsae_sort import sort

    recording, gt_sorting = gt_tetrode
    folder = tmp_path_factory.mktemp("demo") / "out"
    result = sort(recording, folder, progress=False)
    return recording, gt_sorting, result


def random_dictionary(n_atoms, n_channels, k, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n_atoms, n_channels, k, generator=g, dtype=dtype)
    return d / d.flatten(1).norm(dim=1).view(-1, 1, 1)


def matched_gt_templates(gt_sorting, recording_uv, sorting) -> list:
    """Per ground-truth unit matched to a found unit (Hungarian match of SpikeInterface's comparison):
    the found unit's index in ``sorting.unit_ids`` and the GT unit's mean waveform on ``recording_uv``
    ``(samples, channels)`` in µV (``recording_uv`` filtered as the sorter sees it)."""
    from spikeinterface.comparison import compare_sorter_to_ground_truth
    from spikeinterface.core import create_sorting_analyzer

    analyzer = create_sorting_analyzer(gt_sorting, recording_uv, sparse=False, format="memory")
    analyzer.compute(["random_spikes", "templates"], verbose=False)
    gt_tpl = analyzer.get_extension("templates").get_data()  # (units, samples, channels) µV
    match = compare_sorter_to_ground_truth(gt_sorting, sorting).hungarian_match_12
    index = {u: i for i, u in enumerate(sorting.unit_ids)}
    return [(index[match[gu]], gt_tpl[gi]) for gi, gu in enumerate(gt_sorting.unit_ids) if match[gu] != -1]


logging.getLogger("crsae_sort").setLevel(logging.INFO)


def _devices():
    out = ["cpu"]
    if torch.cuda.is_available():
        out.append(pytest.param("cuda", marks=pytest.mark.gpu))
    else:
        out.append(pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skip(reason="no CUDA GPU")]))
    return out


@pytest.fixture(params=_devices())
def device(request):
    """Every device test runs on the CPU; the CUDA copy runs under ``-m gpu`` where a GPU exists."""
    return torch.device(request.param)
