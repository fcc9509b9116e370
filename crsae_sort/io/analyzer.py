"""A SpikeInterface ``SortingAnalyzer`` that carries what the model already knows.

SpikeInterface's metrics and exporters read extensions of an analyzer (``templates``,
``amplitude_scalings``). Where crsae-sort has computed the same quantity itself (the learned
templates, each spike's fitted amplitude), it is given to the analyzer as that extension instead of
being estimated again from the traces. Used by :mod:`crsae_sort.curate` and :mod:`crsae_sort.io.phy_nwb`.
"""
from __future__ import annotations

import warnings

import numpy as np

QUIET = dict(n_jobs=1, progress_bar=False)


def memory_analyzer(sorting, recording, main_channels: np.ndarray | None = None):
    """A dense in-memory analyzer of ``sorting`` on ``recording`` (no files, no progress bars).

    ``main_channels`` ``(num_units,)`` gives each unit's peak channel index (from its template); without it
    SpikeInterface estimates them from the traces.
    """
    from spikeinterface.core import create_sorting_analyzer

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not serializable.*")
        main = None if main_channels is None else np.asarray(main_channels, dtype=np.int64)
        return create_sorting_analyzer(sorting, recording, sparse=False, format="memory", main_channel_indices=main,
                                       job_kwargs=QUIET)


def at_rate(sorting, recording, spikes: np.ndarray | None = None):
    """``sorting`` (and its ``spikes`` table) timed in the samples of ``recording``, which may be sampled an
    integer ``q`` times slower than the sorting (the model-rate traces of a decimated sort, whose spike times are
    multiples of ``q``): sample ``i`` becomes ``i // q``. Returns ``(sorting, spikes)``, unchanged when ``q`` is 1."""
    from spikeinterface.core import NumpySorting

    ratio = sorting.sampling_frequency / recording.sampling_frequency
    q = int(round(ratio))
    if q < 1 or abs(ratio - q) > 1e-6 * q:
        raise ValueError(f"the sorting's rate {sorting.sampling_frequency} Hz is not an integer multiple of the "
                         f"recording's {recording.sampling_frequency} Hz")
    if q == 1:
        return sorting, spikes
    vector = sorting.to_spike_vector().copy()
    vector["sample_index"] //= q
    out = NumpySorting(vector, recording.sampling_frequency, sorting.unit_ids)
    if spikes is not None:
        spikes = spikes.copy()
        spikes["sample_index"] //= q
    return out, spikes


def attach_extension(analyzer, name: str, data: dict, **params) -> None:
    """Give ``analyzer`` the extension ``name`` with ``data`` already computed (``params`` as SpikeInterface
    would record them; the others at its defaults)."""
    from spikeinterface.core.sortinganalyzer import get_extension_class

    ext = get_extension_class(name)(analyzer)
    ext.set_params(save=False, **params)
    ext.data.update(data)
    ext.run_info["run_completed"] = True
    ext.run_info["runtime_s"] = 0.0
    analyzer.extensions[name] = ext


def attach_templates(analyzer, templates: np.ndarray, nbefore: int) -> None:
    """``templates`` ``(num_units, num_samples, num_channels)`` (µV, each unit's spike time at ``nbefore``) as
    the analyzer's ``templates`` extension (its "average")."""
    fs = analyzer.sampling_frequency
    if not analyzer.has_extension("random_spikes"):
        analyzer.compute("random_spikes", verbose=False)
    attach_extension(analyzer, "templates", {"average": templates}, operators=["average"],
                     ms_before=nbefore * 1000.0 / fs, ms_after=(templates.shape[1] - nbefore) * 1000.0 / fs)


def in_spike_order(analyzer, spikes: np.ndarray) -> np.ndarray:
    """The spikes table (sample_index, segment_index, unit_id, ...) in the order of the analyzer's spike vector."""
    vector = analyzer.sorting.to_spike_vector()
    unit_ids = np.asarray(analyzer.unit_ids)
    if len(vector) != len(spikes):
        raise ValueError(f"spikes table has {len(spikes)} spikes, the sorting {len(vector)}")
    mine = np.lexsort((spikes["sample_index"], spikes["unit_id"], spikes["segment_index"]))
    theirs = np.lexsort((vector["sample_index"], unit_ids[vector["unit_index"]], vector["segment_index"]))
    out = np.empty_like(spikes)
    out[theirs] = spikes[mine]
    return out


def attach_amplitude_scalings(analyzer, spikes: np.ndarray) -> None:
    """Each spike's fitted amplitude from the spikes table (``amplitude_uv``) over its unit's median, as the
    analyzer's ``amplitude_scalings`` (the template's scale that fits the spike, which is what a CRsAE code is)."""
    ordered = in_spike_order(analyzer, spikes)
    amplitude = np.abs(ordered["amplitude_uv"].astype(np.float64))
    scaling = np.empty(len(ordered), np.float32)
    for u in np.unique(ordered["unit_id"]):
        mine = ordered["unit_id"] == u
        scaling[mine] = amplitude[mine] / max(float(np.median(amplitude[mine])), 1e-12)
    attach_extension(analyzer, "amplitude_scalings", {"amplitude_scalings": scaling})


def attach_template_similarity(analyzer, templates: np.ndarray) -> None:
    """The cosine similarity of every pair of ``templates`` (at lag 0, over all channels) as the analyzer's
    ``template_similarity`` (SpikeInterface's defaults), computed by SpikeInterface's NumPy path: its numba
    path compiles for 20-30 s on first use, longer than a small sort takes."""
    from spikeinterface.postprocessing import template_similarity as ts

    mask = np.ones((templates.shape[0], templates.shape[2]), dtype=bool)
    distances = ts._compute_similarity_matrix_numpy(templates, templates, 0, "cosine", mask, mask, support="union")
    attach_extension(analyzer, "template_similarity", {"similarity": 1.0 - distances.min(axis=0)},
                     method="cosine", max_lag_ms=0, support="union")
