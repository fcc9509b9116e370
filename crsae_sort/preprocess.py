"""Preprocessing with SpikeInterface, lazily: µV scaling, band-pass, common reference, motion
correction, whitening.

Motion correction (``correct_motion``, dense single-shank probes) interpolates the band-passed µV
traces onto the probe as it was at the start, so ``x`` below is already drift-corrected and the
µV templates read back through ``A`` are those of the corrected recording. Whitening is local on
dense probes (each channel whitened with its neighbours within ``whitening_radius_um``), which
keeps ``W`` sparse and far-apart channels unmixed.

The model sees ``y = x A`` per sample, optionally decimated by an integer factor ``q`` (``x`` band-passed µV,
row vector over channels), where
``A = W diag(1 / sigma)``: ``W`` is SpikeInterface's whitening matrix and ``sigma`` the per-channel
noise level (MAD) after whitening, so the noise the encoder sees has unit variance (sigma = 1 in
the CRsAE equations). ``A`` is kept so learned templates can be mapped back to µV.
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .params import PreprocessParams
from .threads import worker_processes

logger = logging.getLogger(__name__)

_QUIET = dict(n_jobs=1, progress_bar=False)


@dataclass
class Preprocessed:
    """The lazy recording the model sees and the linear map from band-passed µV to it."""
    recording: object          # SpikeInterface recording, unit noise, float32
    filtered_uv: object        # band-passed (referenced, motion-corrected) µV at the model rate: recording @ A^-1
    to_model: np.ndarray       # A, (n_channels, n_channels): y = x @ A
    noise_uv: np.ndarray       # per-channel noise (MAD) of the band-passed µV traces before motion correction, (n_channels,)
    decimation: int            # model sample i is recording sample i * decimation
    motion_preset: str | None = None       # correct_motion preset applied, None when off
    max_displacement_um: float | None = None  # largest estimated drift, when motion was corrected


def preprocess(recording, params: PreprocessParams, seed: int, scratch: Path | None = None) -> Preprocessed:
    """Band-pass, optionally common-median-reference and whiten ``recording``; scale noise to 1.

    The raw samples are read once. Decimation comes right after the band-pass (its anti-alias filter): every
    later step acts on each sample alone (median reference, motion interpolation, whitening, scaling), so
    taking every ``q``-th sample first gives the same model-rate traces at ``1/q`` of their cost. With motion
    correction the band-passed, referenced traces are computed once (:func:`_hold`) and both the motion
    estimate and the corrected, whitened result read that copy. The result is held in memory, or on disk in
    ``scratch`` (a folder that must outlive the result; without one a recording too large for memory is read
    lazily), see :func:`cache_plan`.
    """
    import spikeinterface.core as sc
    import spikeinterface.preprocessing as spre

    rec = _to_uv(recording)
    fs = rec.get_sampling_frequency()
    freq_max, q = model_rate(fs, params)
    if freq_max < params.freq_max_hz:
        logger.info("freq_max_hz lowered to %.0f Hz (0.45 x sampling rate %.0f Hz)", freq_max, fs)
    rec = spre.bandpass_filter(rec, freq_min=params.freq_min_hz, freq_max=freq_max, dtype="float32")
    if q > 1:
        # the band-pass above is the anti-alias filter: freq_max <= 0.4 x the model rate
        rec = spre.decimate(rec, decimation_factor=q, antialias=False)
    n_channels = rec.get_num_channels()
    use_cmr = params.common_reference == "median" or (params.common_reference == "auto" and n_channels >= 8)
    if use_cmr:
        rec = spre.common_reference(rec, reference="global", operator="median")
    preset = motion_preset(rec, params.motion_correction)
    max_displacement_um = None
    random_kwargs = dict(seed=seed)
    filtered_copy = None
    if preset is not None:
        # motion estimation reads every sample and the interpolation reads them again: compute them once
        rec, filtered_copy = _hold(rec, cache_plan(2 * _float32_bytes(rec), params), scratch, "filtered")
    # the noise of the band-passed µV traces, before motion interpolation (which at zero displacement is the
    # identity); cached on the recording, where correct_motion's peak detection finds it instead of estimating
    noise_uv = sc.get_noise_levels(rec, return_in_uV=False, random_slices_kwargs=random_kwargs, **_QUIET)
    if np.any(noise_uv <= 0):
        dead = np.flatnonzero(noise_uv <= 0).tolist()
        raise InputError(f"channel(s) {dead} carry no signal after filtering (dead or constant); remove them "
                         "with recording.remove_channels(...) before sorting")
    if preset is not None:
        rec, max_displacement_um = _correct_motion(rec, preset)
    mode = "off"
    if params.whiten:
        mode = whitening_mode(rec, params.whitening_radius_um)
        w = _whitening_matrix(rec, mode, params.whitening_radius_um, seed)
        rec = spre.whiten(rec, dtype="float32", W=w.astype(np.float32), M=None)
    else:
        w = np.eye(n_channels)
    sigma = sc.get_noise_levels(rec, return_in_uV=False, random_slices_kwargs=random_kwargs, **_QUIET)
    if np.any(sigma <= 0):
        raise InputError("whitening left a channel with zero noise; set whiten=false")
    rec = spre.scale(rec, gain=(1.0 / sigma).astype("float32"), dtype="float32")
    to_model = w @ np.diag(1.0 / sigma)
    rec, held = _hold(rec, cache_plan(_float32_bytes(rec), params), scratch, "preprocessed")
    if held != "lazy" and isinstance(filtered_copy, Path):
        shutil.rmtree(filtered_copy, ignore_errors=True)  # everything later reads the result
    logger.info("preprocessed: band-pass %.0f-%.0f Hz, common median reference %s, motion correction %s, "
                "whitening %s, model rate %.0f Hz (decimation %d), %s; noise %s µV", params.freq_min_hz, freq_max,
                use_cmr, preset or "off", mode, fs / q, q, _HELD["disk" if isinstance(held, Path) else held],
                np.array2string(noise_uv, precision=1))
    # the band-passed (referenced, motion-corrected) µV traces from the result: x = y A^-1 (unwhitened: A is diagonal)
    filtered_uv = (spre.whiten(rec, dtype="float32", W=np.linalg.inv(to_model).astype(np.float32), M=None)
                   if params.whiten else spre.scale(rec, gain=1.0 / np.diag(to_model), dtype="float32"))
    return Preprocessed(recording=rec, filtered_uv=filtered_uv, to_model=to_model, noise_uv=noise_uv, decimation=q,
                        motion_preset=preset, max_displacement_um=max_displacement_um)


def _whitening_matrix(rec, mode: str, radius_um: float, seed: int) -> np.ndarray:
    """SpikeInterface's whitening matrix ``W`` ``(n_channels, n_channels)`` of ``rec`` (no mean: band-passed traces
    are centred), global or local within ``radius_um``."""
    from spikeinterface.preprocessing.whiten import compute_whitening_matrix

    w, _ = compute_whitening_matrix(rec, mode, dict(seed=seed), apply_mean=False,
                                    radius_um=radius_um if mode == "local" else None)
    return np.asarray(w, dtype=np.float64)


def model_rate(fs: float, params: PreprocessParams) -> tuple[float, int]:
    """The usable low-pass corner (Hz) and the decimation factor ``q`` from the recording rate to the model's."""
    freq_max = min(params.freq_max_hz, 0.45 * fs)
    if params.freq_min_hz >= freq_max:
        raise InputError(f"freq_min_hz={params.freq_min_hz} is not below the usable low-pass corner "
                         f"{freq_max:.0f} Hz for a {fs:.0f} Hz recording; lower freq_min_hz")
    q = max(1, int(fs // (2.5 * freq_max))) if params.decimate else 1
    return freq_max, q


_HELD = {"memory": "held in memory", "disk": "cached on disk (float16)", "lazy": "read lazily"}
DISK_CACHE_DTYPE = "float16"


def _float32_bytes(rec, q: int = 1) -> int:
    """Bytes of ``rec`` as float32, decimated by ``q`` (SpikeInterface's decimate keeps ceil(n / q) samples)."""
    n = sum(-(-rec.get_num_samples(s) // q) for s in range(rec.get_num_segments()))
    return 4 * rec.get_num_channels() * n


def cache_plan(n_bytes: int, params: PreprocessParams) -> str:
    """Where the preprocessed recording (``n_bytes`` as float32 at the model rate) is held: 'memory' when it
    takes at most ``cache_mb``, else 'disk' with ``cache_on_disk`` (float16, computed once, read by every later
    stage), else 'lazy' (every read filters, corrects motion and whitens again)."""
    if params.cache_mb > 0 and n_bytes <= params.cache_mb * 2**20:
        return "memory"
    return "disk" if params.cache_on_disk else "lazy"


def cache_base(params: PreprocessParams, output_folder: Path | None) -> Path:
    """The folder the disk cache goes in: ``cache_dir``, else the output folder, else the system's temporary one."""
    import tempfile

    if params.cache_dir:
        return Path(params.cache_dir).expanduser()
    return output_folder if output_folder is not None else Path(tempfile.gettempdir())


def check_cache_room(recording, params: PreprocessParams, base: Path) -> None:
    """Refuse, before any heavy work, a disk cache that ``base`` (a folder, or where one will be made) has
    no room for; the message says how to make room or avoid the cache."""
    if params.cache_dir and not Path(params.cache_dir).expanduser().is_dir():
        raise InputError(f"cache_dir {params.cache_dir!r} is not an existing folder; create it or leave "
                         "cache_dir empty (the cache then goes in the output folder)")
    n_bytes = _float32_bytes(recording, model_rate(recording.get_sampling_frequency(), params)[1])
    # the result, and with motion correction the band-passed copy it is computed from (both on disk at once)
    copies = [cache_plan(n_bytes, params)]
    if motion_preset(recording, params.motion_correction) is not None:
        copies.append(cache_plan(2 * n_bytes, params))
    if "disk" not in copies:
        return
    need = copies.count("disk") * n_bytes * np.dtype(DISK_CACHE_DTYPE).itemsize // 4
    probe = base
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if need > 0.95 * free:
        two = " (two copies during motion correction)" if copies.count("disk") > 1 else ""
        raise InputError(f"the preprocessed recording is larger than cache_mb={params.cache_mb:g} MB and its disk "
                         f"cache needs {need / 1e9:.1f} GB{two} in {probe}, which has {free / 1e9:.1f} GB free: free "
                         "space there, point cache_dir at a larger disk, raise cache_mb (memory), or set "
                         "cache_on_disk=false (no disk, but 1.5-2x slower or more)")


def _hold(rec, plan: str, scratch: Path | None, name: str):
    """``rec`` computed once where ``plan`` (:func:`cache_plan`) says: returns the recording later steps read and
    where it is held ('memory', the disk folder, or 'lazy': not held, ``rec`` itself)."""
    if plan == "memory":
        return _hold_in_memory(rec), "memory"
    if plan == "disk" and scratch is not None:
        folder = Path(scratch) / name
        return _hold_on_disk(rec, folder), folder
    return rec, "lazy"


def _hold_on_disk(rec, folder: Path):
    """``rec`` computed once, in parallel, into a float16 binary file in ``folder``, read back as float32.

    float16 keeps 11 significant bits: a rounding error of at most 2^-11 of each value, far below the noise
    (1 on the model's unit-noise traces, a few µV on band-passed ones); it halves the disk and the reads.
    """
    import spikeinterface.preprocessing as spre

    t0 = time.perf_counter()
    saved = rec.save(format="binary", folder=folder, dtype=DISK_CACHE_DTYPE, n_jobs=worker_processes(), chunk_duration="1s",
                     progress_bar=False, verbose=False)
    logger.info("disk cache: %s written in %.1f s", folder, time.perf_counter() - t0)
    return spre.astype(saved, dtype="float32")


def _hold_in_memory(rec):
    """``rec`` computed once into memory.

    With more than one usable CPU the chunks are computed in parallel into shared memory (when
    ``/dev/shm`` has twice the room and this process may start others: a daemonic one, a dask
    worker say, may not), otherwise in this process.
    """
    n_bytes = _float32_bytes(rec)
    n_jobs = worker_processes()
    try:
        shared = n_jobs > 1 and shutil.disk_usage("/dev/shm").free > 2 * n_bytes
    except OSError:  # no /dev/shm (not Linux)
        shared = False
    jobs = dict(n_jobs=n_jobs if shared else 1, chunk_duration="1s", progress_bar=False)
    return rec.save(format="memory", sharedmem=shared, **jobs)


def _extent_um(recording) -> tuple[float, float]:
    """Width (x) and depth (y) spanned by the channels, µm (validate.py has made sure there is a probe)."""
    xy = np.asarray(recording.get_channel_locations(), dtype=float)[:, :2]
    return float(np.ptp(xy[:, 0])), float(np.ptp(xy[:, 1]))


def whitening_mode(recording, radius_um: float) -> str:
    """'global' when ``radius_um`` is 0 or every channel lies within it of every other, else 'local'."""
    if radius_um <= 0 or recording.get_num_channels() < 2:
        return "global"
    xy = np.asarray(recording.get_channel_locations(), dtype=float)[:, :2]
    far = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)).max()
    return "global" if far <= radius_um else "local"


MOTION_MIN_CHANNELS, MOTION_MAX_WIDTH_UM, MOTION_MIN_DEPTH_UM = 32, 60.0, 400.0


def motion_preset(recording, choice: str) -> str | None:
    """The ``correct_motion`` preset to apply, or None: ``choice`` itself, or for 'auto' ``dredge_fast``
    on a long single-shank probe (more than 32 channels, at most 60 µm wide, at least 400 µm deep)."""
    if choice == "off":
        return None
    if choice != "auto":
        return choice
    width_um, depth_um = _extent_um(recording)
    long_probe = (recording.get_num_channels() > MOTION_MIN_CHANNELS and width_um <= MOTION_MAX_WIDTH_UM
                  and depth_um >= MOTION_MIN_DEPTH_UM)
    return "dredge_fast" if long_probe else None


# beyond DREDGE_ONLINE_S DREDge runs online, in batches of DREDGE_CHUNK_S (an int: SpikeInterface slices with it).
# Measured on 384-channel peaks (docs/benchmarks.md, "DREDge's memory"): whole-recording mode 877 MB at 10 min,
# 1246 MB at 20 min and growing; online 941 MB at 20 min, 1084 MB at 60 min
DREDGE_ONLINE_S, DREDGE_CHUNK_S = 1200.0, 600


def _correct_motion(rec, preset: str):
    """``correct_motion(rec, preset)`` on this process's threads; returns the corrected recording and the
    largest absolute estimated displacement, µm."""
    from spikeinterface.preprocessing import correct_motion

    # 5-s chunks: SpikeInterface's grid-convolution localisation loops over each chunk's peak channels in Python,
    # so 1-s chunks cost 2-4x the time for the same peaks and the same estimate (60 s of 384 channels: 10.4 -> 4.6 s)
    jobs = dict(n_jobs=worker_processes(), chunk_duration="5s", progress_bar=False)
    duration_s = sum(rec.get_num_samples(s) for s in range(rec.get_num_segments())) / rec.get_sampling_frequency()
    batching = {}
    if preset.startswith("dredge") and duration_s > DREDGE_ONLINE_S:
        # DREDge's whole-recording mode holds (windows x T x T) arrays, T the 1-s bins: memory grows with the
        # square of the length; its online mode solves batches in turn, flat in length
        batching = dict(estimate_motion_kwargs=dict(batching_mode="online", chunk_len_s=DREDGE_CHUNK_S))
        logger.info("motion estimate in DREDge's online mode, %d-s batches (recording longer than %.0f s)",
                    DREDGE_CHUNK_S, DREDGE_ONLINE_S)
    try:
        corrected, motion = correct_motion(rec, preset=preset, output_motion=True, **batching, **jobs)
    except Exception as exc:  # too few peaks to estimate drift, say; the message says what to do
        raise InputError(f"motion correction ({preset}) failed: {exc}; sort with motion_correction=off, "
                         "or a longer recording") from exc
    shift_um = max(float(np.abs(d).max()) for d in motion.displacement) if motion.displacement else 0.0
    logger.info("motion correction %s: largest estimated displacement %.1f µm", preset, shift_um)
    return corrected, shift_um


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
