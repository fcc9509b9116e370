"""Hybrid ground truth: generated units injected into the real recordings of ``../shared/data``.

SpikeInterface's ``generate_hybrid_recording`` adds templates to the raw samples as they are, so
each injected unit is scaled here (``amplitude_factor``) to a chosen SNR against the recording's
own band-passed noise. SNR is the injected unit's peak over the noise, both on the band-passed
(300-6000 Hz, or up to 0.45 x the sampling rate where that is lower) traces: peak = the most negative
value of the unit's mean waveform (over samples and channels), noise = MAD / 0.6745 of that channel
(SpikeInterface's ``get_noise_levels(method="mad")``). The SNRs of a case are measured after injection
(:func:`measured_snrs`) and kept beside the target ones.

The recording's own units stay in: score only the injected units, with
``compare_sorter_to_ground_truth(gt, sorting, exhaustive_gt=False)``.

    from crsae_sort.bench.hybrid import HYBRID_CASES, make_hybrid
    case = make_hybrid("hybrid_locust_a")      # case.recording, case.gt_sorting, case.snrs
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .docs import ROOT

SHARED_DATA = ROOT.parent / "shared" / "data"
FREQ_MIN_HZ, FREQ_MAX_HZ = 300.0, 6000.0
MS_BEFORE, MS_AFTER = 1.0, 3.0  # generated template span


@dataclass(frozen=True)
class Source:
    """A real recording of the shared data and how to open it (arguments of ``io.reading.open_recording``)."""

    path: str  # relative to the shared data folder
    num_channels: int
    probe: str  # a shipped probe name (crsae_sort.io.reading.load_probe)
    description: str
    open_kwargs: dict = field(default_factory=dict)


SOURCES = {
    "locust": Source("tridesclous_locust_tetrode/locust_trial_01.raw", 4, "tetrode",
                     "locust antennal-lobe tetrode (Pouzat et al. 2002, tridesclous example), 4 ch int16, 15 kHz, "
                     "28.8 s",
                     dict(sampling_frequency_hz=15000.0, num_channels=4, dtype="int16", gain_to_uv=1.0)),
    "openephys": Source("openephys_legacy_v067_16ch/v0.6.7_OpenEphys/Record Node 101", 16, "linear16",
                        "Open Ephys v0.6.7 legacy folder, 16 ch, 40 kHz, 3.3 s, broadband"),
    "harris": Source("hc1_d533101_harris_cbp_5sec/harris_d533101_5sec.mat", 4, "tetrode",
                     "Harris/Henze hc-1 d533101 CA1 tetrode, 4 ch uint16 (offset 2048), 10 kHz, 5.0 s",
                     dict(sampling_frequency_hz=10000.0, gain_to_uv=1.0, offset_to_uv=-2048.0)),
}


@dataclass(frozen=True)
class HybridSpec:
    """One hybrid case: which recording, how many units, their target SNRs and firing rates, the seed."""

    source: str
    snr_range: tuple[float, float]  # targets evenly spaced over [low, high], one per unit
    num_units: int = 5
    firing_rate_hz: float = 8.0
    seed: int = 0

    @property
    def target_snrs(self) -> np.ndarray:
        return np.linspace(*self.snr_range, self.num_units)


# short recordings get higher rates so each unit has ~50 spikes or more
HYBRID_CASES = {
    "hybrid_locust_a": HybridSpec("locust", (6.0, 12.0), seed=2301),
    "hybrid_locust_b": HybridSpec("locust", (5.0, 10.0), seed=2302),
    "hybrid_openephys_a": HybridSpec("openephys", (6.0, 12.0), num_units=4, firing_rate_hz=20.0, seed=2303),
    "hybrid_openephys_b": HybridSpec("openephys", (5.0, 10.0), num_units=4, firing_rate_hz=20.0, seed=2304),
    "hybrid_harris_a": HybridSpec("harris", (6.0, 12.0), num_units=4, firing_rate_hz=15.0, seed=2305),
    "hybrid_harris_b": HybridSpec("harris", (5.0, 10.0), num_units=4, firing_rate_hz=15.0, seed=2306),
}


@dataclass
class HybridCase:
    """A built case: the lazy hybrid recording (raw samples + injected units), the injected units' sorting,
    their measured SNRs (unit id -> SNR), the targets, and each unit's amplitude factor (template scale)."""

    name: str
    recording: object
    gt_sorting: object
    snrs: dict
    target_snrs: dict
    amplitude_factors: dict


def describe(case: str) -> str:
    spec = HYBRID_CASES[case]
    return (f"{SOURCES[spec.source].description}; {spec.num_units} injected units at target SNR "
            f"{spec.snr_range[0]:g}-{spec.snr_range[1]:g}, {spec.firing_rate_hz:g} Hz, seed {spec.seed}")


def source_path(source: str, data: Path | None = None) -> Path:
    return Path(data or SHARED_DATA) / SOURCES[source].path


def open_source(source: str, data: Path | None = None):
    """The real recording, with its probe, signed (unsigned samples are shifted by SpikeInterface's
    ``unsigned_to_signed``: filters and most sorters refuse them). ``FileNotFoundError`` when absent."""
    from spikeinterface.preprocessing import unsigned_to_signed

    from ..io.reading import open_recording

    path = source_path(source, data)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: the hybrid cases need the shared data folder ../shared/data")
    src = SOURCES[source]
    rec = open_recording(path, probe=src.probe, **src.open_kwargs)
    if rec.dtype.kind == "u":
        rec = unsigned_to_signed(rec)
    return rec


def bandpass(recording):
    """The band-pass the SNRs are measured on: 300-6000 Hz (capped at 0.45 x the sampling rate)."""
    from spikeinterface.preprocessing import bandpass_filter

    freq_max = min(FREQ_MAX_HZ, 0.45 * recording.get_sampling_frequency())
    return bandpass_filter(recording, freq_min=FREQ_MIN_HZ, freq_max=freq_max, dtype="float32")


def _filtered(templates: np.ndarray, fs: float) -> np.ndarray:
    """``templates`` (units, samples, channels) through the same Butterworth band-pass (order 5, forward
    and backward, as SpikeInterface's ``bandpass_filter``), zero-padded on both sides."""
    from scipy.signal import butter, sosfiltfilt

    sos = butter(5, [FREQ_MIN_HZ, min(FREQ_MAX_HZ, 0.45 * fs)], btype="bandpass", fs=fs, output="sos")
    pad = int(0.02 * fs)
    padded = np.pad(templates, ((0, 0), (pad, pad), (0, 0)))
    return sosfiltfilt(sos, padded, axis=1)[:, pad:-pad]


def measured_snrs(recording, sorting, *, ms_before: float = MS_BEFORE, ms_after: float = MS_AFTER) -> dict:
    """SNR of each unit of ``sorting`` in ``recording``: the most negative value of its mean band-passed
    waveform over the MAD noise (MAD / 0.6745) of that channel of the band-passed recording."""
    from spikeinterface.core import get_noise_levels

    filt = bandpass(recording)
    fs = recording.get_sampling_frequency()
    traces = filt.get_traces(return_in_uV=True)  # (num_samples, num_channels)
    noise = get_noise_levels(filt, method="mad", return_in_uV=True,
                             random_slices_kwargs=dict(seed=0), progress_bar=False)
    nb, na = int(ms_before * fs / 1000), int(ms_after * fs / 1000)
    snrs = {}
    for u in sorting.unit_ids:
        t = sorting.get_unit_spike_train(u)
        t = t[(t >= nb) & (t < len(traces) - na)]
        mean = traces[t[:, None] + np.arange(-nb, na)].mean(axis=0)  # (samples, channels)
        ch = int(np.argmin(mean.min(axis=0)))
        snrs[str(u)] = float(-mean[:, ch].min() / noise[ch])
    return snrs


def make_hybrid(case: str, data: Path | None = None) -> HybridCase:
    """Build ``case`` of :data:`HYBRID_CASES`: generated units at their target SNRs in the real recording.

    Seeded and deterministic. The recording is lazy (``generate_hybrid_recording``'s injection); save it
    before giving it to ``run_sorter``. Raises ``FileNotFoundError`` when the real recording is absent.
    """
    from spikeinterface.core import Templates, generate_sorting, get_noise_levels
    from spikeinterface.core.generate import generate_templates, generate_unit_locations
    from spikeinterface.generation import generate_hybrid_recording

    if case not in HYBRID_CASES:
        raise ValueError(f"unknown hybrid case {case!r}: one of {', '.join(HYBRID_CASES)}")
    spec = HYBRID_CASES[case]
    rec = open_source(spec.source, data)
    fs, probe = rec.get_sampling_frequency(), rec.get_probe()
    rng = np.random.default_rng(spec.seed)
    locations = generate_unit_locations(spec.num_units, probe.contact_positions, margin_um=10.0, minimum_z=5.0,
                                        maximum_z=40.0, minimum_distance=10.0, seed=spec.seed)
    templates_uv = generate_templates(probe.contact_positions, locations, fs, MS_BEFORE, MS_AFTER, seed=spec.seed,
                                      dtype="float32")  # (units, samples, channels), µV
    # scale each unit so that its band-passed peak is target x the noise of its peak channel
    noise_uv = get_noise_levels(bandpass(rec), method="mad", return_in_uV=True,
                                random_slices_kwargs=dict(seed=0), progress_bar=False)
    filtered = _filtered(templates_uv.astype(np.float64), fs)
    ch = filtered.min(axis=1).argmin(axis=1)
    peak_uv = -filtered.min(axis=1)[np.arange(spec.num_units), ch]
    targets = rng.permutation(spec.target_snrs)
    factors = targets * noise_uv[ch] / peak_uv
    # in the recording's own units: generate_hybrid_recording would also subtract the channel offset
    # from scaled templates (a DC step at every spike on the offset .mat), so the gain is applied here
    templates_raw = templates_uv / rec.get_channel_gains()[None, None, :]
    templates = Templates(templates_raw, fs, int(MS_BEFORE * fs / 1000), is_in_uV=False, probe=probe)
    sorting = generate_sorting(num_units=spec.num_units, sampling_frequency=fs, durations=[rec.get_total_duration()],
                               firing_rates=spec.firing_rate_hz, refractory_period_ms=4.0, seed=spec.seed)
    spikes = sorting.to_spike_vector()
    jitter = rng.normal(1.0, 0.05, size=spikes.size)  # SpikeInterface's default amplitude_std
    ids = [str(u) for u in sorting.unit_ids]
    for attempt in range(2):  # measure, then correct once for what the prediction misses (~4 % low)
        with warnings.catch_warnings():  # "No Motion is provided": these short recordings are taken as drift-free
            warnings.filterwarnings("ignore", message="No Motion")
            hybrid, gt = generate_hybrid_recording(rec, sorting=sorting, templates=templates,
                                                   are_templates_scaled=False, seed=spec.seed,
                                                   amplitude_factor=factors[spikes["unit_index"]] * jitter)
        snrs = measured_snrs(hybrid, gt)
        if attempt == 0:
            factors = factors * targets / np.array([snrs[u] for u in ids])
    return HybridCase(case, hybrid, gt, snrs, dict(zip(ids, map(float, targets))), dict(zip(ids, map(float, factors))))
