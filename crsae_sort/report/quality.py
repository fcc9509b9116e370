"""The report's quality section: each unit's label and the SpikeInterface metrics behind it."""
from __future__ import annotations

import logging
import warnings
from html import escape

import numpy as np

from . import html as markup
from .describe import plain_ids
from ..summary import Summary

logger = logging.getLogger(__name__)

QUALITY_METRICS = ["snr", "isi_violation", "presence_ratio", "amplitude_cutoff"]
_QUIET = dict(n_jobs=1, progress_bar=False)


def quality_section(sorting, filtered_uv, summary: Summary) -> str:
    from ..curate import presence_bin_s

    if not summary.units:
        removed = f": every unit was removed by <code>remove_labels</code> ({escape(str(summary.removed_units))})"
        text = f"<p>No units{removed if summary.removed_units else ''}.</p>"
        return markup.section("quality", "Quality metrics", text)
    by_unit = {u.unit_id: u for u in summary.units}
    bin_s = summary.presence_ratio_bin_s or presence_bin_s(summary.duration_s)
    labelled = bool(summary.units) and all(u.quality_metrics for u in summary.units)
    metrics, notes = (_stored_metrics(summary), []) if labelled else _computed_metrics(sorting, filtered_uv, bin_s)
    columns = [c for c in metrics.columns if c != "firing_rate"]
    rows = [[u, by_unit[u].quality or "", by_unit[u].origin, by_unit[u].num_spikes, by_unit[u].firing_rate_hz,
             by_unit[u].lambda_, by_unit[u].peak_uv] + [metrics.loc[u, c] for c in columns] for u in metrics.index]
    counts = ", ".join(f"{n} {label}" for label in ("good", "mua", "noise")
                       if (n := sum(u.quality == label for u in summary.units)))
    text = (f"<p>Computed by SpikeInterface's quality metrics on the band-passed recording; presence ratio in "
            f"{bin_s:g}-s bins: a tenth of the recording rounded down (at most SpikeInterface's 60 s), so that "
            "there are at least ten. ")
    if labelled:
        text += (f"The label ({counts}) is SpikeInterface's <code>bombcell_label_units</code> on these metrics and "
                 "the template's shape (docs/how-it-works.md, section 5b): a good unit has SNR &ge; 5, "
                 "isi_violations_ratio &le; 0.1, amplitude_cutoff &le; 0.2 (amplitudes from the model), presence "
                 "ratio &ge; 0.7 and 100 spikes or more. ")
    if summary.removed_units:
        text += f"Removed by <code>remove_labels</code>: {escape(str(summary.removed_units))}. "
    text += "Click a column header to sort.</p>"
    if notes:
        text += "<ul class='notes'>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>"
    headers = ["unit", "label", "origin", "spikes", "rate (Hz)", "λ", "peak (µV)"] + columns
    return markup.section("quality", "Quality metrics", text + markup.table(headers, rows, sortable=True))


def _stored_metrics(summary: Summary):
    """The metrics the labels were decided on, as the sort stored them in summary.json."""
    import pandas as pd

    table = pd.DataFrame({u.unit_id: {k: np.nan if v is None else v for k, v in u.quality_metrics.items()}
                          for u in summary.units}).T
    return table[[c for c in ("snr", "isi_violations_ratio", "presence_ratio", "amplitude_cutoff")
                  if c in table.columns]]


def _computed_metrics(sorting, filtered_uv, bin_s: float):
    """Quality metrics of a sort without labels (written before curate.py existed, or label_units=false)."""
    from spikeinterface.core import create_sorting_analyzer
    from spikeinterface.metrics import compute_quality_metrics

    from ..io.analyzer import at_rate

    logger.info("report: quality metrics %s", QUALITY_METRICS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        analyzer = create_sorting_analyzer(at_rate(sorting, filtered_uv)[0], filtered_uv, sparse=False,
                                           format="memory", job_kwargs=_QUIET)
        analyzer.compute(["random_spikes", "templates", "noise_levels", "spike_amplitudes"], verbose=False,
                         **_QUIET)
        metrics = compute_quality_metrics(analyzer, metric_names=QUALITY_METRICS, verbose=False,
                                          metric_params={"presence_ratio": {"bin_duration_s": bin_s}}, **_QUIET)
    notes = sorted({plain_ids(str(w.message)) for w in caught if issubclass(w.category, UserWarning)})
    for note in notes:
        logger.info("quality metrics: %s", note)
    return metrics, notes
