"""Checking the input before any heavy work: shape, rate, gains, NaN/Inf, dead channels.

Every problem is an :class:`InputError` whose message says what is wrong and how to fix it.
Dead (constant) channels are not an error: they are reported and excluded, as a careful
person would do by hand.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .errors import InputError, option
from .params import SortParams

logger = logging.getLogger(__name__)

SCAN_CHUNK_S = 2.0


@dataclass
class ScanReport:
    """What one pass over the raw samples found."""
    dead_channel_ids: list      # channels whose samples never change
    n_samples: int


def check_recording(recording, params: SortParams) -> None:
    """Cheap checks on the recording's metadata."""
    fs = recording.get_sampling_frequency()
    if not np.isfinite(fs) or not 1000 <= fs <= 100_000:
        raise InputError(f"sampling rate {fs:g} Hz is implausible for extracellular data (1-100 kHz); "
                         "check --sampling-frequency")
    if recording.get_num_channels() < 1:
        raise InputError("recording has no channels")
    dtype = recording.get_dtype()
    if dtype.kind not in "iuf":
        raise InputError(f"recording samples are of type {dtype}; crsae-sort reads integer or float samples")
    if dtype.kind in "iu" and not recording.has_scaleable_traces():
        gain = option("recording.set_channel_gains(G)", "--gain-to-uv G")
        counts = option("amplitude_unit='counts'", "--counts")
        raise InputError(f"integer recording without a gain to µV; any gain finds the same spikes (only the µV "
                         f"values of templates and amplitudes change): pass {gain} if you know it (µV per step, "
                         f"e.g. 0.195 for Intan), or {counts} to sort in the file's own units (results in counts, "
                         "not µV)")
    k = (params.init.template_ms_before + params.init.template_ms_after) * fs / 1000
    need = max(10 * k, params.train.window_ms * fs / 1000)
    shortest = min(recording.get_num_samples(s) for s in range(recording.get_num_segments()))
    if shortest < need:
        raise InputError(f"a segment of the recording has only {shortest} samples ({shortest / fs:.3f} s); "
                         f"sorting needs at least {need:.0f} ({need / fs:.3f} s), ten template lengths")


def in_file_units(recording):
    """A view of ``recording`` whose samples count as they are stored (gain 1, offset 0), for
    ``amplitude_unit='counts'``; the input is untouched."""
    view = recording.select_channels(recording.channel_ids)
    view.set_channel_gains(1.0)
    view.set_channel_offsets(0.0)
    return view


def scan_traces(recording, progress: bool = False) -> ScanReport:
    """Read every raw sample once, chunk by chunk: refuse NaN/Inf, find constant channels."""
    fs = recording.get_sampling_frequency()
    chunk = max(1, int(SCAN_CHUNK_S * fs))
    n_ch = recording.get_num_channels()
    check_finite = recording.get_dtype().kind == "f"
    bad_count = np.zeros(n_ch, dtype=np.int64)
    first_bad: tuple[int, int, int] | None = None
    first = None
    varies = np.zeros(n_ch, dtype=bool)
    total = 0
    for seg in range(recording.get_num_segments()):
        n = recording.get_num_samples(seg)
        for start in range(0, n, chunk):
            traces = recording.get_traces(segment_index=seg, start_frame=start, end_frame=min(n, start + chunk))
            total += len(traces)
            if check_finite:
                bad = ~np.isfinite(traces)
                if bad.any():
                    bad_count += bad.sum(axis=0)
                    if first_bad is None:
                        row, col = np.argwhere(bad)[0]
                        first_bad = (seg, start + int(row), int(col))
                    traces = np.where(bad, 0, traces)
            if first is None:
                first = traces[0].copy()
            varies |= (traces != first[None, :]).any(axis=0)
    if first_bad is not None:
        ids = recording.channel_ids
        where = ", ".join(f"{ids[c]}: {bad_count[c]}" for c in np.flatnonzero(bad_count))
        seg, sample, col = first_bad
        raise InputError(f"recording has {int(bad_count.sum())} NaN/Inf samples (per channel {where}); the first "
                         f"is at segment {seg}, sample {sample} ({sample / fs:.3f} s), channel {ids[col]}. Remove or "
                         "interpolate them (e.g. spikeinterface.preprocessing.remove_artifacts) before sorting")
    dead = [recording.channel_ids[c] for c in np.flatnonzero(~varies)]
    if len(dead) == n_ch:
        raise InputError("every channel is constant (no signal at all); check the file and its channel map")
    if dead:
        logger.warning("excluding %d dead (constant) channel(s): %s", len(dead), dead)
    return ScanReport(dead_channel_ids=dead, n_samples=total)
