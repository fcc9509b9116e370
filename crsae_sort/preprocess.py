"""Preprocessing with SpikeInterface, lazily: µV scaling, band-pass, common reference, whitening.

The model sees ``y = x A`` per sample, optionally decimated by an integer factor ``q`` (``x`` band-passed µV, row vector over channels), where
``A = W diag(1 / sigma)``: ``W`` is SpikeInterface's whitening matrix and ``sigma`` the per-channel
noise level (MAD) after whitening, so the noise the encoder sees has unit variance (sigma = 1 in
the CRsAE equations). ``A`` is kept so learned templates can be mapped back to µV.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .params import PreprocessParams

logger = logging.getLogger(__name__)

_QUIET = dict(n_jobs=1, progress_bar=False)


@dataclass
class Preprocessed:
    """The lazy recording the model sees and the linear map from band-passed µV to it."""
    recording: object          # SpikeInterface recording, unit noise, float32
    filtered_uv: object        # band-passed (and referenced) recording in µV
    to_model: np.ndarray       # A, (n_channels, n_channels): y = x @ A
    noise_uv: np.ndarray       # per-channel noise of ``filtered_uv`` (MAD), (n_channels,)
    decimation: int            # model sample i is recording sample i * decimation


def preprocess(recording, params: PreprocessParams, seed: int) -> Preprocessed:
    """Band-pass, optionally common-median-reference and whiten ``recording``; scale noise to 1."""
    import spikeinterface.core as sc
    import spikeinterface.preprocessing as spre

    rec = _to_uv(recording)
    fs = rec.get_sampling_frequency()
    freq_max = params.freq_max_hz
    if freq_max >= 0.45 * fs:
        freq_max = 0.45 * fs
        logger.info("freq_max_hz lowered to %.0f Hz (0.45 x sampling rate %.0f Hz)", freq_max, fs)
    if params.freq_min_hz >= freq_max:
        raise InputError(f"freq_min_hz={params.freq_min_hz} is not below the usable low-pass corner "
                         f"{freq_max:.0f} Hz for a {fs:.0f} Hz recording; lower freq_min_hz")
    rec = spre.bandpass_filter(rec, freq_min=params.freq_min_hz, freq_max=freq_max, dtype="float32")
    n_channels = rec.get_num_channels()
    use_cmr = params.common_reference == "median" or (params.common_reference == "auto" and n_channels >= 8)
    if use_cmr:
        rec = spre.common_reference(rec, reference="global", operator="median")
    filtered_uv = rec
    random_kwargs = dict(seed=seed)
    noise_uv = sc.get_noise_levels(filtered_uv, return_in_uV=False, random_slices_kwargs=random_kwargs,
                                **_QUIET)
    if np.any(noise_uv <= 0):
        dead = np.flatnonzero(noise_uv <= 0).tolist()
        raise InputError(f"channel(s) {dead} carry no signal after filtering (dead or constant); remove them "
                         "with recording.remove_channels(...) before sorting")
    if params.whiten:
        rec = spre.whiten(rec, dtype="float32", mode="global", seed=seed)
        w = np.asarray(rec._kwargs["W"], dtype=np.float64)
    else:
        w = np.eye(n_channels)
    sigma = sc.get_noise_levels(rec, return_in_uV=False, random_slices_kwargs=random_kwargs, **_QUIET)
    if np.any(sigma <= 0):
        raise InputError("whitening left a channel with zero noise; set whiten=false")
    rec = spre.scale(rec, gain=(1.0 / sigma).astype("float32"), dtype="float32")
    to_model = w @ np.diag(1.0 / sigma)
    q = max(1, int(fs // (2.5 * freq_max))) if params.decimate else 1
    if q > 1:
        # the band-pass above is the anti-alias filter: freq_max <= 0.4 x the model rate
        rec = spre.decimate(rec, decimation_factor=q, antialias=False)
    logger.info("preprocessed: band-pass %.0f-%.0f Hz, common median reference %s, whitening %s, "
                "model rate %.0f Hz (decimation %d); noise %s µV", params.freq_min_hz, freq_max, use_cmr,
                params.whiten, fs / q, q, np.array2string(noise_uv, precision=1))
    return Preprocessed(recording=rec, filtered_uv=filtered_uv, to_model=to_model, noise_uv=noise_uv,
                        decimation=q)


def _to_uv(recording):
    import spikeinterface.preprocessing as spre

    if recording.has_scaleable_traces():
        gains = recording.get_channel_gains()
        offsets = recording.get_channel_offsets()
        if np.all(gains == 1) and np.all(offsets == 0) and recording.get_dtype().kind == "f":
            return recording
        return spre.scale_to_uV(recording)
    if recording.get_dtype().kind in "iu":
        raise InputError("integer recording without gain to µV: set it with "
                         "recording.set_channel_gains(...) and set_channel_offsets(...)")
    logger.warning("recording has no gain to µV; treating its float samples as µV")
    return recording
