"""The last stage: spikes and the trained model become the result (units, µV templates, summary).

* templates with fewer than ``min_spikes`` spikes are dropped;
* amplitudes are debiased: the lasso shrinks an isolated spike's code by ``lambda`` (unit-norm
  atom), ``z = <h, y> - lambda``, so ``a = z + lambda``;
* each kept atom is mapped back to band-passed µV at the recording's rate and scaled by its
  unit's median debiased amplitude (:func:`crsae_sort.io.results.templates_uv`);
* spike times return to the recording's samples (times the decimation factor).

Channel groups sorted apart are combined by :func:`combine_groups`: unit ids numbered across
groups, templates placed on the full channel list.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .device import describe_device
from .infer import Spikes, peak_offsets
from .io import results
from .params import SortParams
from .summary import Summary, TemplateReadOut, UnitSummary

logger = logging.getLogger(__name__)


@dataclass
class SortResult:
    """What a sort produced. ``sorting`` is in the input recording's sample frames."""
    sorting: object                        # spikeinterface NumpySorting
    templates_uv: np.ndarray               # (num_units, num_samples, num_channels), µV
    spikes: np.ndarray                     # structured: sample_index, segment_index, unit_id, amplitude, amplitude_uv
    model: object | None                   # the CRsAE; None when channel groups were sorted apart (group_<g>/model.pt)
    params: SortParams
    summary: Summary
    training: object | None = None         # train.TrainingResult
    output_folder: Path | None = None
    stage_seconds: dict = field(default_factory=dict)


def build_result(recording, pre, model, spikes: Spikes, params: SortParams, training, device,
                 growth=None) -> SortResult:
    """Units, µV templates, spikes table, sorting and summary of one sort (module docstring).

    ``growth`` (:class:`crsae_sort.grow.GrowthResult`) puts the atoms added from the residual into the summary.
    """
    counts = np.bincount(spikes.unit_index, minlength=model.dictionary.shape[0])
    below = spikes.below_floor if spikes.below_floor is not None else np.zeros(len(counts), np.int64)
    origin = getattr(model, "origin", None) or ["init"] * len(counts)
    keep_units = np.flatnonzero(counts >= max(params.inference.min_spikes, 1))
    dropped = sorted(set(range(len(counts))) - set(keep_units.tolist()))
    if dropped:
        logger.info("dropped %d template(s) with fewer than %d spikes: %s", len(dropped),
                    params.inference.min_spikes, dropped)
    spikes = spikes.select(np.isin(spikes.unit_index, keep_units))
    lam = model.lam.detach().cpu().numpy()
    debiased = spikes.amplitude + lam[spikes.unit_index]
    median_amp = np.array([np.median(debiased[spikes.unit_index == u]) for u in keep_units])
    dictionary = model.dense_dictionary().cpu().numpy()
    tpl = results.templates_uv(dictionary[keep_units], pre.to_model, median_amp, pre.decimation)
    peak_uv = np.abs(tpl).max(axis=(1, 2)) / np.maximum(median_amp, 1e-12)
    lookup = np.zeros(len(counts), dtype=np.float64)
    lookup[keep_units] = peak_uv
    sample_index = spikes.sample_index * pre.decimation
    table = results.spikes_table(sample_index, spikes.segment_index, spikes.unit_index, spikes.amplitude,
                                 debiased * lookup[spikes.unit_index])
    fs = recording.get_sampling_frequency()
    sorting = results.sorting_from_table(table, recording.get_num_segments(), fs, keep_units)
    duration_s = sum(recording.get_num_samples(s) for s in range(recording.get_num_segments())) / fs
    offsets = peak_offsets(model.dictionary) * pre.decimation  # template sample a spike time points at
    units = [UnitSummary(unit_id=int(u), num_spikes=int(counts[u]), firing_rate_hz=float(counts[u] / duration_s),
                         lambda_=float(lam[u]), median_debiased_amplitude=float(a), peak_uv=float(np.abs(t).max()),
                         peak_sample=int(offsets[u]), origin=origin[u])
             for u, a, t in zip(keep_units, median_amp, tpl)]
    read_out = [TemplateReadOut(template=c, origin=origin[c], code_peaks=int(counts[c] + below[c]),
                                below_floor=int(below[c]), spikes=int(counts[c]), unit_kept=bool(c in keep_units))
                for c in range(len(counts))]
    summary = Summary(units=units, num_spikes=int(len(table)), num_templates=int(len(counts)),
                      duration_s=duration_s, sampling_frequency_hz=fs, decimation=pre.decimation,
                      num_channels=recording.get_num_channels(), device=describe_device(device),
                      training_steps=training.n_steps if training else 0, lipschitz=float(model.lipschitz),
                      motion_correction=pre.motion_preset, max_displacement_um=pre.max_displacement_um,
                      read_out=read_out, grown=list(growth.added) if growth is not None else [])
    return SortResult(sorting=sorting, templates_uv=tpl, spikes=table, model=model, params=params,
                      summary=summary, training=training)


def combine_groups(recording, parts: dict, channel_ids_of: dict, params: SortParams) -> SortResult:
    """One result from the results of channel groups sorted apart (``parts``: group -> SortResult)."""
    channel_index = {c: i for i, c in enumerate(recording.channel_ids)}
    tables, templates, units, read_out, grown, offset = [], [], [], [], [], 0
    for group, part in parts.items():
        ids = list(part.sorting.unit_ids)
        remap = np.zeros(max(ids) + 1 if ids else 1, dtype=np.int64)
        remap[ids] = offset + np.arange(len(ids))
        table = part.spikes.copy()
        table["unit_id"] = remap[table["unit_id"]]
        tables.append(table)
        cols = [channel_index[c] for c in channel_ids_of[group]]
        full = np.zeros((len(ids), part.templates_uv.shape[1], recording.get_num_channels()), np.float32)
        full[:, :, cols] = part.templates_uv
        templates.append(full)
        for row in part.summary.units:
            units.append(UnitSummary(**dict(vars(row), unit_id=int(remap[row.unit_id]), group=str(group),
                                            template=row.unit_id)))
        read_out += [TemplateReadOut(**dict(vars(t), group=str(group))) for t in part.summary.read_out]
        grown += part.summary.grown
        offset += len(ids)
    table = np.concatenate(tables)
    fs = recording.get_sampling_frequency()
    sorting = results.sorting_from_table(table, recording.get_num_segments(), fs, np.arange(offset))
    if units and all(u.quality is not None for u in units):  # each group's labels (curate.py)
        sorting.set_property("quality", np.array([u.quality for u in units]))
    first = next(iter(parts.values())).summary
    seconds = {k: sum(p.summary.seconds[k] for p in parts.values()) for k in first.seconds if k != "total"}
    summary = Summary(units=units, num_spikes=int(len(table)),
                      num_templates=sum(p.summary.num_templates for p in parts.values()),
                      duration_s=first.duration_s, sampling_frequency_hz=fs, decimation=first.decimation,
                      num_channels=recording.get_num_channels(), device=first.device,
                      training_steps=sum(p.summary.training_steps for p in parts.values()), seconds=seconds,
                      groups={str(g): len(p.sorting.unit_ids) for g, p in parts.items()}, read_out=read_out,
                      grown=grown, presence_ratio_bin_s=first.presence_ratio_bin_s)
    # removed units never got a combined id: "group:template"
    summary.removed_units = {f"{g}:{u}": label for g, p in parts.items() for u, label in p.summary.removed_units.items()}
    moved = [p.summary for p in parts.values() if p.summary.motion_correction is not None]
    if moved:  # groups are corrected apart: the preset, and the largest drift of any group
        summary.motion_correction = moved[0].motion_correction
        summary.max_displacement_um = max(m.max_displacement_um for m in moved)
    summary.finish(sum(p.summary.seconds["total"] for p in parts.values()))
    return SortResult(sorting=sorting, templates_uv=np.concatenate(templates), spikes=table, model=None,
                      params=params, summary=summary)
