"""Quality labels: every unit is called ``good``, ``mua`` or ``noise`` by SpikeInterface's metrics and rules.

Nothing here computes a metric or a rule itself. A SortingAnalyzer of the sorting on the band-passed µV
recording gets SpikeInterface's noise levels, templates averaged from the traces (at most 500 random spikes
a unit) and template metrics, plus each spike's fitted amplitude from the model (a CRsAE code is the scale
of its template that fits the spike: SpikeInterface's ``amplitude_scalings``); then
``compute_quality_metrics`` (num_spikes, firing_rate, snr, isi_violation, amplitude_cutoff, presence_ratio)
and ``spikeinterface.curation.bombcell_label_units`` with :func:`thresholds`:

* ``noise``: the template fails one of Bombcell's waveform checks (peaks, trough-to-peak duration, baseline
  flatness, repolarisation);
* ``mua``: otherwise, when any of snr >= 5, isi_violations_ratio <= 0.1 (:data:`GOOD`),
  amplitude_cutoff <= 0.2 (the amplitude histogram is not cut off by the detection threshold),
  presence_ratio >= 0.7, num_spikes >= :data:`MIN_SPIKES` fails;
* ``good``: everything passed.

A metric that cannot be computed (too few spikes for the amplitude histogram) decides nothing, as in Bombcell.
The labels are the sorting property ``quality`` and each unit's ``quality`` in ``summary.json``; units whose
label is in ``remove_labels`` are then removed from the result.
"""
from __future__ import annotations

import copy
import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np

from .io.analyzer import QUIET, at_rate, attach_amplitude_scalings, memory_analyzer
from .params import CurationParams

logger = logging.getLogger(__name__)

LABELS = ("good", "mua", "noise")
#: the quality metrics computed, and those kept per unit in summary.json
QUALITY_METRICS = ["num_spikes", "firing_rate", "snr", "isi_violation", "amplitude_cutoff", "presence_ratio"]
SUMMARY_METRICS = ("snr", "isi_violations_ratio", "amplitude_cutoff", "presence_ratio", "firing_rate")
#: the amplitude histogram of amplitude_cutoff: 20 bins, at least 5 spikes a bin (SpikeInterface's default is
#: 100 bins, which needs 500 spikes before it says anything)
AMPLITUDE_CUTOFF = dict(num_histogram_bins=20, amplitudes_bins_min_ratio=5)
#: a good unit has at least this many spikes (Bombcell asks 300 of hour-long sessions; with fewer than 100 the
#: amplitude histogram above says nothing and the refractory test little)
MIN_SPIKES = 100
#: the longest trough-to-peak of a unit's template (Bombcell's 1.15 ms called three of the six biophysical
#: units of the MEArec tetrode, L5 pyramidal cells at 1.17-1.23 ms and SNR 11-13, noise)
MAX_PEAK_TO_TROUGH_S = 0.002
#: a good unit's SNR is at least (Bombcell's value), its isi_violations_ratio at most
GOOD = dict(min_snr=5.0, max_isi_violations_ratio=0.1)


def thresholds() -> dict:
    """Bombcell's thresholds as SpikeInterface ships them, with the ``mua`` section set for crsae-sort.

    Kept from Bombcell: its waveform (``noise``) checks, except ``exp_decay`` (a multi-channel template metric
    not computed here) and with trough-to-peak up to :data:`MAX_PEAK_TO_TROUGH_S` (broad pyramidal
    units); amplitude_cutoff <= 0.2; presence_ratio >= 0.7. Changed: the refractory test is
    ``isi_violations_ratio`` (Hill's contamination estimate; Bombcell's ``sliding_rp_violation`` costs a
    correlogram per unit and a 1.6-s compile on every sort); ``amplitude_median`` >= 30 µV is left out (SNR
    says the same without µV, which a recording of unknown gain does not have); num_spikes >= :data:`MIN_SPIKES`.
    The ``non-somatic`` section is empty: the labels are good, mua and noise only.
    """
    from spikeinterface.curation.bombcell_curation import bombcell_get_default_thresholds

    bombcell = bombcell_get_default_thresholds()
    noise = {k: v for k, v in copy.deepcopy(bombcell["noise"]).items() if k != "exp_decay"}
    noise["peak_to_trough_duration"]["less"] = MAX_PEAK_TO_TROUGH_S
    mua = {"snr": {"greater": GOOD["min_snr"], "less": None},
           "isi_violations_ratio": {"greater": None, "less": GOOD["max_isi_violations_ratio"]},
           "amplitude_cutoff": bombcell["mua"]["amplitude_cutoff"],
           "presence_ratio": bombcell["mua"]["presence_ratio"],
           "num_spikes": {"greater": MIN_SPIKES, "less": None}}
    return {"noise": noise, "mua": mua, "non-somatic": {}}


def presence_bin_s(duration_s: float) -> float:
    """Presence-ratio bin: SpikeInterface's 60 s, or a tenth of a shorter recording rounded down to one
    significant digit (3.06 s -> 0.3 s), so that the ratio is measured over at least ten bins."""
    tenth = duration_s / 10.0
    if tenth >= 60.0 or tenth <= 0:
        return 60.0
    scale = 10.0 ** math.floor(math.log10(tenth))
    return round(math.floor(tenth / scale) * scale, 12)


@dataclass
class UnitLabels:
    """Per unit (ids of the sorting): its label and the metrics that decided it."""
    labels: dict                 # unit id -> "good" | "mua" | "noise"
    metrics: object              # pandas DataFrame, index unit ids: quality and template metrics
    presence_bin_s: float        # the presence ratio's bin


def label_units(sorting, recording_uv, *, spikes: np.ndarray | None = None,
                main_channels: np.ndarray | None = None, seed: int = 0) -> UnitLabels:
    """Label each unit of ``sorting`` from SpikeInterface's metrics on ``recording_uv`` (band-passed, µV; at the
    sorting's rate or an integer factor below it, as :func:`crsae_sort.io.analyzer.at_rate` allows).

    ``spikes`` is the sort's spikes table (``amplitude_uv`` per spike): the model's fitted amplitudes;
    without it SpikeInterface fits the templates to each spike itself (``amplitude_scalings``, slower).
    ``main_channels`` ``(num_units,)``: each unit's peak channel index, known from its template (else
    SpikeInterface estimates it, one more pass over the traces).
    """
    from spikeinterface.curation import bombcell_label_units
    from spikeinterface.metrics import compute_quality_metrics

    sorting, spikes = at_rate(sorting, recording_uv, spikes)
    fs = recording_uv.get_sampling_frequency()
    duration_s = sum(recording_uv.get_num_samples(s) for s in range(recording_uv.get_num_segments())) / fs
    bin_s = presence_bin_s(duration_s)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        analyzer = memory_analyzer(sorting, recording_uv, main_channels)
        analyzer.compute("random_spikes", method="uniform", max_spikes_per_unit=500, seed=seed, verbose=False)
        noise = {"noise_levels": {"random_slices_kwargs": {"seed": seed}}}
        analyzer.compute(["noise_levels", "templates"], extension_params=noise, verbose=False, **QUIET)
        if spikes is not None:
            attach_amplitude_scalings(analyzer, spikes)
        else:
            analyzer.compute("amplitude_scalings", verbose=False, **QUIET)
        analyzer.compute("template_metrics", verbose=False, **QUIET)
        compute_quality_metrics(analyzer, metric_names=QUALITY_METRICS, verbose=False,
                                metric_params={"presence_ratio": {"bin_duration_s": bin_s},
                                               "amplitude_cutoff": AMPLITUDE_CUTOFF}, **QUIET)
        table = bombcell_label_units(analyzer, thresholds=thresholds())
    for note in sorted({str(w.message) for w in caught if issubclass(w.category, UserWarning)}):
        logger.debug("quality metrics: %s", note)
    metrics = analyzer.get_metrics_extension_data()
    labels = {u: str(table.loc[u, "bombcell_label"]) for u in sorting.unit_ids}
    return UnitLabels(labels=labels, metrics=metrics, presence_bin_s=bin_s)


def curate(result, recording_uv, params: CurationParams, *, seed: int = 0):
    """Label the units of ``result`` (a :class:`crsae_sort.postprocess.SortResult`), record the labels in its
    sorting (property ``quality``) and summary, and remove the units whose label is in ``remove_labels``."""
    summary = result.summary
    wanted = params.label_units or params.remove_labels != "none"
    if not wanted or len(result.sorting.unit_ids) == 0:
        return result
    main_channels = np.abs(result.templates_uv).max(axis=1).argmax(axis=1)
    found = label_units(result.sorting, recording_uv, spikes=result.spikes, main_channels=main_channels,
                        seed=seed)
    summary.presence_ratio_bin_s = found.presence_bin_s
    for unit in summary.units:
        unit.quality = found.labels[unit.unit_id]
        unit.quality_metrics = {name: _plain(found.metrics.loc[unit.unit_id, name]) for name in SUMMARY_METRICS}
    result.sorting.set_property("quality", np.array([found.labels[u] for u in result.sorting.unit_ids]))
    counts = {label: sum(v == label for v in found.labels.values()) for label in LABELS}
    logger.info("quality labels: %s", ", ".join(f"{n} {label}" for label, n in counts.items()))
    removed = [u for u in result.sorting.unit_ids if found.labels[u] in removed_labels(params)]
    return _without(result, removed) if removed else result


def removed_labels(params: CurationParams) -> tuple[str, ...]:
    return () if params.remove_labels == "none" else tuple(params.remove_labels.split(","))


def _without(result, removed: list):
    """``result`` without the units ``removed`` (their spikes, templates and summary rows)."""
    from .io.results import sorting_from_table

    keep_rows = [i for i, u in enumerate(result.sorting.unit_ids) if u not in removed]
    keep_ids = np.asarray(result.sorting.unit_ids)[keep_rows]
    quality = result.sorting.get_property("quality")[keep_rows]
    spikes = result.spikes[np.isin(result.spikes["unit_id"], keep_ids)]
    sorting = sorting_from_table(spikes, result.sorting.get_num_segments(), result.sorting.get_sampling_frequency(),
                                 keep_ids)
    sorting.set_property("quality", quality)
    summary = result.summary
    summary.removed_units = {str(int(u)): next(x.quality for x in summary.units if x.unit_id == u) for u in removed}
    summary.units = [x for x in summary.units if x.unit_id not in removed]
    summary.num_spikes = int(len(spikes))
    logger.info("removed %d unit(s) by their label: %s", len(removed), summary.removed_units)
    result.sorting, result.spikes, result.templates_uv = sorting, spikes, result.templates_uv[keep_rows]
    return result


def _plain(value):
    value = float(value)
    return None if not np.isfinite(value) else value
