"""The sort, end to end: the only module that chains the stages.

read -> preprocess -> initial dictionary -> train CRsAE -> encode the whole recording ->
spikes -> outputs. Outputs are written into a temporary folder beside the target and moved
into place only when complete.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import export, outfolder
from .device import describe_device, resolve_device
from .errors import InputError, option
from .infer import Spikes, detect_spikes, peak_offsets
from .init_dictionary import initial_dictionary
from .model import CRsAE, universal_lambda
from .params import SortParams
from .preprocess import preprocess
from .runlog import StageTimer, log_to_file, versions
from .threads import configure_threads
from .train import TrainingResult, sample_windows, train
from .validate import check_recording, scan_traces

logger = logging.getLogger(__name__)

LOG_NAME = "crsae_sort.log"


@dataclass
class SortResult:
    """What a sort produced. ``sorting`` is in the input recording's sample frames."""
    sorting: object                        # spikeinterface NumpySorting
    templates_uv: np.ndarray               # (num_units, num_samples, num_channels), µV
    spikes: np.ndarray                     # structured: sample_index, segment_index, unit_id, amplitude, amplitude_uv
    model: CRsAE | None                    # None when channel groups were sorted apart (see group_<g>/model.pt)
    params: SortParams
    summary: dict
    training: TrainingResult | None = None
    output_folder: Path | None = None
    stage_seconds: dict = field(default_factory=dict)


def sort(recording, output_folder: str | Path | None = None, params: SortParams | dict | None = None, *,
         model_path: str | Path | None = None, overwrite: bool = False, resume: bool = False,
         progress: bool | None = None, phy: bool = False, nwb: bool = False) -> SortResult:
    """Sort ``recording`` (a SpikeInterface recording with a probe) and write the outputs.

    ``params`` is a :class:`SortParams` or a flat dict of overrides (``crsae-sort params``);
    ``model_path`` reuses a trained ``model.pt`` instead of learning a dictionary; ``resume``
    continues an interrupted run into the same ``output_folder`` from its last checkpoint;
    ``phy`` and ``nwb`` add a Phy folder (``phy/``) and an NWB file (``units.nwb``), see
    :mod:`crsae_sort.outputs`. Every input is checked before any heavy work; problems raise
    :class:`InputError`.
    """
    if not isinstance(params, SortParams):
        params = SortParams.from_dict(params)
    progress = sys.stderr.isatty() if progress is None else progress
    device = resolve_device(params.run.device)
    trained = export.load_model(Path(model_path), device) if model_path is not None else None
    if trained is not None and trained[1]["n_channels"] != recording.get_num_channels():
        raise InputError(f"model {model_path} was trained on {trained[1]['n_channels']} channels but the "
                         f"recording has {recording.get_num_channels()}; train a new model")
    check_recording(recording, params)
    if phy or nwb:
        from .outputs import check_outputs_possible

        check_outputs_possible(recording, output_folder, phy=phy, nwb=nwb)
    target = Path(output_folder).resolve() if output_folder is not None else None
    if target is not None:
        outfolder.check_target(target, overwrite=overwrite, resume=resume)
    scan = scan_traces(recording)
    if scan.dead_channel_ids:
        recording = recording.remove_channels(scan.dead_channel_ids)
        if trained is not None:
            raise InputError(f"channels {scan.dead_channel_ids} are dead, so the recording no longer matches the "
                             f"model's {trained[1]['n_channels']} channels; train a new model")
    n_groups = len(np.unique(recording.get_channel_groups()))
    if n_groups > 1 and trained is not None:
        flag = option("model_path", "--model")
        raise InputError(f"the recording has {n_groups} channel groups (shanks or tetrodes) and {flag} holds one "
                         f"group's model; sort without {flag}, or select one group first")
    run = _sort_groups if n_groups > 1 else _sort
    if target is None:
        return run(recording, params, device, trained, progress, None, scan)
    partial = outfolder.open_partial(target, resume=resume)
    try:
        with log_to_file(partial / LOG_NAME, append=resume):
            try:
                result = run(recording, params, device, trained, progress, partial, scan)
                _write_extra_outputs(partial, result, recording, phy=phy, nwb=nwb)
            except InputError as exc:
                logger.info("stopped: %s", exc)
                raise
            except Exception:  # the traceback goes to the log file only (DEBUG is below the console's level)
                logger.error("run failed; traceback follows in the log file")
                logger.debug("traceback", exc_info=True)
                raise
        outfolder.commit(partial, target)
    except InputError:
        outfolder.abandon(partial, target, keep_for_resume=False, log_name=LOG_NAME)
        raise
    except OSError as exc:
        outfolder.abandon(partial, target, keep_for_resume=False, log_name=LOG_NAME)
        raise outfolder.disk_error(exc, target.parent) from exc
    except BaseException as exc:
        log = outfolder.abandon(partial, target, keep_for_resume=True, log_name=LOG_NAME)
        if log is not None and isinstance(exc, Exception):
            exc.add_note(f"crsae-sort: the log with the traceback is {log}")
        raise
    result.output_folder = target
    return result


def _sort(recording, params: SortParams, device: torch.device, trained, progress: bool, folder: Path | None,
          scan) -> SortResult:
    t_start = time.perf_counter()
    info = versions()
    logger.info("crsae-sort %s; versions %s", info["crsae-sort"], info)
    logger.info("parameters %s", params.to_dict())
    logger.info("recording: %s", recording)
    configure_threads(params.run.num_threads)
    logger.info("device: %s", describe_device(device))
    seed = params.run.seed
    torch.manual_seed(seed)
    timer = StageTimer()
    checkpoints = folder / outfolder.CHECKPOINT_DIR if folder is not None else None
    if checkpoints is not None:
        checkpoints.mkdir(exist_ok=True)
    with timer.stage("preprocess"):
        pre = preprocess(recording, params.preprocess, seed)
    fs_model = pre.recording.get_sampling_frequency()
    training = None
    if trained is None:
        with timer.stage("init"):
            init = _cached(checkpoints, "init.pt",
                           lambda: initial_dictionary(pre.recording, params.init, seed))
        with timer.stage("train"):
            model, training = _cached(checkpoints, "trained.pt",
                                      lambda: _build_and_train(pre, init, params, device, progress, checkpoints))
    else:
        model, blob = trained
        if abs(blob["model_sampling_frequency_hz"] - fs_model) > 1e-6 * fs_model:
            raise InputError(f"the model runs at {blob['model_sampling_frequency_hz']:.3f} Hz but this recording "
                             f"preprocesses to {fs_model:.3f} Hz; train a new model")
    with timer.stage("inference"):
        spikes = detect_spikes(model, pre.recording, params.inference, progress=progress)
    with timer.stage("export"):
        result = _assemble(recording, pre, model, spikes, params, training, device)
        result.summary["dead_channels_excluded"] = [str(c) for c in scan.dead_channel_ids]
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


def _sort_groups(recording, params: SortParams, device: torch.device, trained, progress: bool,
                 folder: Path | None, scan) -> SortResult:
    """Sort each channel group (tetrode, shank) on its own, then aggregate the units.

    Each group's full output (its own model, templates, log lines) goes to ``group_<g>/``; the
    top level holds the aggregated sorting, with unit ids numbered across groups and each
    unit's group and template recorded in ``summary.json``.
    """
    parts = {}
    by_group = dict(sorted(recording.split_by("group").items(), key=lambda kv: str(kv[0])))
    for group, sub in by_group.items():
        logger.info("channel group %s: %d channels", group, sub.get_num_channels())
        sub_folder = folder / f"group_{group}" if folder is not None else None
        if sub_folder is not None:
            sub_folder.mkdir(exist_ok=True)
        try:
            parts[group] = _sort(sub, params, device, trained, progress, sub_folder, scan)
        except InputError as exc:
            raise InputError(f"channel group {group}: {exc}") from exc
    channel_index = {c: i for i, c in enumerate(recording.channel_ids)}
    tables, templates, units, offset = [], [], [], 0
    for group, part in parts.items():
        ids = list(part.sorting.unit_ids)
        remap = np.zeros(max(ids) + 1 if ids else 1, dtype=np.int64)
        remap[ids] = offset + np.arange(len(ids))
        table = part.spikes.copy()
        table["unit_id"] = remap[table["unit_id"]]
        tables.append(table)
        cols = [channel_index[c] for c in by_group[group].channel_ids]
        full = np.zeros((len(ids), part.templates_uv.shape[1], recording.get_num_channels()), np.float32)
        full[:, :, cols] = part.templates_uv
        templates.append(full)
        for row in part.summary["units"]:
            units.append(dict(row, unit_id=int(remap[row["unit_id"]]), group=str(group), template=row["unit_id"]))
        offset += len(ids)
    table = np.concatenate(tables)
    fs = recording.get_sampling_frequency()
    sorting = export.sorting_from_table(table, recording.get_num_segments(), fs, np.arange(offset))
    first = next(iter(parts.values()))
    seconds = {k: sum(p.summary["seconds"][k] for p in parts.values()) for k in first.summary["seconds"]}
    summary = dict(units=units, num_spikes=int(len(table)), groups={str(g): len(p.sorting.unit_ids)
                                                                   for g, p in parts.items()},
                   duration_s=first.summary["duration_s"], sampling_frequency_hz=fs,
                   num_channels=recording.get_num_channels(), device=first.summary["device"], seconds=seconds,
                   dead_channels_excluded=[str(c) for c in scan.dead_channel_ids])
    summary["times_real_time"] = summary["duration_s"] / seconds["total"]
    result = SortResult(sorting=sorting, templates_uv=np.concatenate(templates), spikes=table, model=None,
                        params=params, summary=summary)
    if folder is not None:
        export.save_sorting(sorting, folder / "sorting")
        export.save_recording_reference(recording, folder / "recording.json")
        np.save(folder / "templates.npy", result.templates_uv)
        np.save(folder / "spikes.npy", table)
        export.write_json(folder / "params.json", params.to_dict())
        export.write_json(folder / "summary.json", summary)
    return result


def _cached(folder: Path | None, name: str, compute):
    """``compute()``, saved to ``folder/name`` once done, and read back from there when resuming."""
    if folder is None:
        return compute()
    path = folder / name
    if path.exists():
        logger.info("resuming: %s read from the checkpoint", name)
        return torch.load(path, weights_only=False)
    value = compute()
    torch.save(value, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)
    return value


def _build_and_train(pre, init, params: SortParams, device: torch.device, progress: bool, checkpoints: Path | None):
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
                   seed=params.run.seed, progress=progress,
                   checkpoint=checkpoints / "training.pt" if checkpoints is not None else None)
    return model, result


def _assemble(recording, pre, model: CRsAE, spikes: Spikes, params: SortParams, training, device) -> SortResult:
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
    sorting = export.sorting_from_table(table, recording.get_num_segments(), fs, keep_units)
    duration_s = sum(recording.get_num_samples(s) for s in range(recording.get_num_segments())) / fs
    offsets = peak_offsets(model.dictionary) * pre.decimation  # template sample a spike time points at
    units = [dict(unit_id=int(u), num_spikes=int(counts[u]), firing_rate_hz=float(counts[u] / duration_s),
                  lambda_=float(lam[u]), median_debiased_amplitude=float(a), peak_uv=float(np.abs(t).max()),
                  peak_sample=int(offsets[u]))
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
