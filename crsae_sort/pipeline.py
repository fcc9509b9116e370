"""The sort, end to end: the only module that chains the stages.

read -> preprocess -> initial dictionary -> train CRsAE -> encode the whole recording ->
spikes -> outputs. Outputs are written into a temporary folder beside the target and moved
into place only when complete.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import export
from .device import describe_device, resolve_device
from .errors import InputError
from .infer import Spikes, detect_spikes
from .init_dictionary import initial_dictionary
from .model import CRsAE, universal_lambda
from .params import SortParams
from .preprocess import preprocess
from .runlog import StageTimer, log_to_file, versions
from .train import TrainingResult, sample_windows, train

logger = logging.getLogger(__name__)

LOG_NAME = "crsae_sort.log"


@dataclass
class SortResult:
    """What a sort produced. ``sorting`` is in the input recording's sample frames."""
    sorting: object                        # spikeinterface NumpySorting
    templates_uv: np.ndarray               # (num_units, num_samples, num_channels), µV
    spikes: np.ndarray                     # structured: sample_index, segment_index, unit_id, amplitude, amplitude_uv
    model: CRsAE
    params: SortParams
    summary: dict
    training: TrainingResult | None = None
    output_folder: Path | None = None
    stage_seconds: dict = field(default_factory=dict)


def sort(recording, output_folder: str | Path | None = None, params: SortParams | dict | None = None, *,
         model_path: str | Path | None = None, overwrite: bool = False, progress: bool | None = None,
         phy: bool = False, nwb: bool = False) -> SortResult:
    """Sort ``recording`` (a SpikeInterface recording with a probe) and write the outputs.

    ``params`` is a :class:`SortParams` or a flat dict of overrides (``crsae-sort params``);
    ``model_path`` reuses a trained ``model.pt`` instead of learning a dictionary; ``phy`` and
    ``nwb`` add a Phy folder (``phy/``) and an NWB file (``units.nwb``), see :mod:`crsae_sort.outputs`.
    """
    if not isinstance(params, SortParams):
        params = SortParams.from_dict(params)
    progress = sys.stderr.isatty() if progress is None else progress
    _check_recording(recording, params)
    if phy or nwb:
        from .outputs import check_outputs_possible

        check_outputs_possible(recording, output_folder, phy=phy, nwb=nwb)
    if output_folder is None:
        return _sort(recording, params, model_path, progress, None)
    target = Path(output_folder).resolve()
    if target.exists() and not overwrite:
        raise InputError(f"output folder {target} exists; pass --overwrite (overwrite=True) or choose another")
    if not target.parent.exists():
        raise InputError(f"parent folder {target.parent} of the output does not exist; create it first")
    tmp = target.parent / f".{target.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir()
    except OSError as exc:
        raise InputError(f"cannot write into {target.parent}: {exc.strerror}; choose a writable folder") from exc
    try:
        with log_to_file(tmp / LOG_NAME):
            result = _sort(recording, params, model_path, progress, tmp)
            _write_extra_outputs(tmp, result, recording, phy=phy, nwb=nwb)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result.output_folder = target
    return result


def _sort(recording, params: SortParams, model_path, progress: bool, folder: Path | None) -> SortResult:
    t_start = time.perf_counter()
    info = versions()
    logger.info("crsae-sort %s; versions %s", info["crsae-sort"], info)
    logger.info("parameters %s", params.to_dict())
    logger.info("recording: %s", recording)
    if params.run.num_threads:
        torch.set_num_threads(params.run.num_threads)
    device = resolve_device(params.run.device)
    seed = params.run.seed
    torch.manual_seed(seed)
    timer = StageTimer()
    model_blob = None
    if model_path is not None:
        model, model_blob = export.load_model(Path(model_path), device)
        if model_blob["n_channels"] != recording.get_num_channels():
            raise InputError(f"model {model_path} was trained on {model_blob['n_channels']} channels but the "
                             f"recording has {recording.get_num_channels()}; train a new model")
    with timer.stage("preprocess"):
        pre = preprocess(recording, params.preprocess, seed)
    fs_model = pre.recording.get_sampling_frequency()
    training = None
    if model_blob is None:
        with timer.stage("init"):
            init = initial_dictionary(pre.recording, params.init, seed)
        with timer.stage("train"):
            model, training = _build_and_train(pre, init, params, device, progress)
    elif abs(model_blob["model_sampling_frequency_hz"] - fs_model) > 1e-6 * fs_model:
        raise InputError(f"model {model_path} runs at {model_blob['model_sampling_frequency_hz']:.0f} Hz but this "
                         f"recording preprocesses to {fs_model:.0f} Hz; train a new model")
    with timer.stage("inference"):
        spikes = detect_spikes(model, pre.recording, params.inference, progress=progress)
    with timer.stage("export"):
        result = _assemble(recording, pre, model, spikes, params, training, device)
        result.stage_seconds = dict(timer.seconds)
        if folder is not None:
            _write(folder, result, recording, pre, info)
    total = time.perf_counter() - t_start
    result.summary["seconds"] = dict(timer.seconds, total=total)
    duration_s = result.summary["duration_s"]
    result.summary["times_real_time"] = duration_s / total if total > 0 else None
    if folder is not None:
        export.write_json(folder / "summary.json", result.summary)
    logger.info("sorted %.1f s of recording in %.1f s (%.1fx real time): %d units, %d spikes",
                duration_s, total, duration_s / total, len(result.summary["units"]), len(result.spikes))
    return result


def _build_and_train(pre, init, params: SortParams, device: torch.device, progress: bool):
    fs = pre.recording.get_sampling_frequency()
    n_window = max(int(round(params.train.window_ms * fs / 1000)), 2 * init.dictionary.shape[-1])
    dictionary = torch.from_numpy(init.dictionary).to(device)
    n_codes = n_window - dictionary.shape[-1] + 1
    lam0 = params.model.lambda_scale * universal_lambda(len(dictionary), n_codes)
    model = CRsAE(dictionary, torch.full((len(dictionary),), lam0, device=device), params.model.n_iterations,
                  params.model.positive_codes, torch.from_numpy(init.amplitudes).to(device))
    logger.info("model: %d templates x %d channels x %d samples, T=%d, L=%.3f, lambda0=%.3f",
                *dictionary.shape, model.n_iter, model.lipschitz, lam0)
    rec = pre.recording
    total = sum(rec.get_num_samples(s) for s in range(rec.get_num_segments()))
    n_windows = int(min(params.train.n_windows, max(2 * params.train.batch_size, total // n_window)))
    if n_windows < params.train.n_windows:
        logger.info("training on %d windows: the recording holds no more without overlap", n_windows)
    windows = sample_windows(rec, n_windows, n_window, params.run.seed)
    result = train(model, windows, params.train, lambda_prior_strength=params.model.lambda_prior_strength,
                   seed=params.run.seed, progress=progress)
    return model, result


def _assemble(recording, pre, model: CRsAE, spikes: Spikes, params: SortParams, training, device) -> SortResult:
    from spikeinterface.core import NumpySorting

    counts = np.bincount(spikes.unit_index, minlength=model.dictionary.shape[0])
    keep_units = np.flatnonzero(counts >= max(params.inference.min_spikes, 1))
    dropped = sorted(set(range(len(counts))) - set(keep_units.tolist()))
    if dropped:
        logger.info("dropped %d template(s) with fewer than %d spikes: %s", len(dropped),
                    params.inference.min_spikes, dropped)
    spikes = spikes.select(np.isin(spikes.unit_index, keep_units))
    lam = model.lam.detach().cpu().numpy()
    # the lasso shrinks an isolated spike's code by lambda (unit-norm atom): z = <h, y> - lambda
    debiased = spikes.amplitude + lam[spikes.unit_index]
    median_amp = np.array([np.median(debiased[spikes.unit_index == u]) for u in keep_units])
    dictionary = model.dictionary.detach().cpu().numpy()
    tpl = export.templates_uv(dictionary[keep_units], pre.to_model, median_amp, pre.decimation)
    peak_uv = np.abs(tpl).max(axis=(1, 2)) / np.maximum(median_amp, 1e-12)
    lookup = np.zeros(len(counts), dtype=np.float64)
    lookup[keep_units] = peak_uv
    sample_index = spikes.sample_index * pre.decimation
    table = export.spikes_table(sample_index, spikes.segment_index, spikes.unit_index, spikes.amplitude,
                                debiased * lookup[spikes.unit_index])
    fs = recording.get_sampling_frequency()
    samples, labels = [], []
    for seg in range(recording.get_num_segments()):
        sel = table[table["segment_index"] == seg]
        order = np.lexsort((sel["unit_id"], sel["sample_index"]))
        samples.append(sel["sample_index"][order])
        labels.append(sel["unit_id"][order])
    sorting = NumpySorting.from_samples_and_labels(samples, labels, fs, unit_ids=keep_units)
    duration_s = sum(recording.get_num_samples(s) for s in range(recording.get_num_segments())) / fs
    units = [dict(unit_id=int(u), num_spikes=int(counts[u]), firing_rate_hz=float(counts[u] / duration_s),
                  lambda_=float(lam[u]), median_debiased_amplitude=float(a), peak_uv=float(np.abs(t).max()))
             for u, a, t in zip(keep_units, median_amp, tpl)]
    summary = dict(units=units, num_spikes=int(len(table)), num_templates=int(len(counts)),
                   duration_s=duration_s, sampling_frequency_hz=fs, decimation=pre.decimation,
                   num_channels=recording.get_num_channels(), device=describe_device(device),
                   training_steps=training.n_steps if training else 0,
                   lipschitz=model.lipschitz)
    return SortResult(sorting=sorting, templates_uv=tpl, spikes=table, model=model, params=params,
                      summary=summary, training=training)


def _write(folder: Path, result: SortResult, recording, pre, info: dict) -> None:
    export.save_sorting(result.sorting, folder / "sorting")
    export.save_recording_reference(recording, folder / "recording.json")
    np.save(folder / "templates.npy", result.templates_uv)
    np.save(folder / "spikes.npy", result.spikes)
    export.save_model(folder / "model.pt", result.model, sampling_frequency_hz=result.summary["sampling_frequency_hz"],
                      decimation=pre.decimation, n_channels=result.summary["num_channels"],
                      params=result.params.to_dict(), versions=info)
    export.write_json(folder / "params.json", result.params.to_dict())
    if result.training is not None:
        export.write_json(folder / "training.json", result.training.history)


def _write_extra_outputs(folder: Path, result: SortResult, recording, *, phy: bool, nwb: bool) -> None:
    from . import outputs

    if phy:
        outputs.export_phy(result, recording, folder / outputs.PHY_FOLDER)
    if nwb:
        outputs.export_nwb(result, recording, folder / outputs.NWB_FILE)


def _check_recording(recording, params: SortParams) -> None:
    """Cheap checks before any heavy work."""
    fs = recording.get_sampling_frequency()
    if not 1000 <= fs <= 100_000:
        raise InputError(f"sampling rate {fs:g} Hz is implausible for extracellular data (1-100 kHz); "
                         "check --sampling-frequency")
    if recording.get_num_channels() < 1:
        raise InputError("recording has no channels")
    k = (params.init.template_ms_before + params.init.template_ms_after) * fs / 1000
    shortest = min(recording.get_num_samples(s) for s in range(recording.get_num_segments()))
    if shortest < 10 * k or shortest < params.train.window_ms * fs / 1000:
        raise InputError(f"a segment of the recording has only {shortest} samples ({shortest / fs:.3f} s); "
                         f"sorting needs at least {max(10 * k, params.train.window_ms * fs / 1000):.0f}")
