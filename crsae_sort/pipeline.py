"""The sort, end to end: the only module that chains the stages.

read -> preprocess -> initial dictionary -> train CRsAE -> grow it from the residual -> encode the
whole recording -> spikes -> outputs. Outputs are written into a temporary folder beside the target and moved
into place only when complete.
"""
from __future__ import annotations

import dataclasses
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .curate import curate
from .device import describe_device, resolve_device, warm_up
from .errors import InputError, option
from .grow import MAX_CHANNELS as GROW_MAX_CHANNELS
from .grow import grow
from .infer import detect_spikes
from .init_dictionary import channel_locations_um, initial_dictionary
from .io import checkpoints, outfolder, results
from .params import SortParams
from .postprocess import SortResult, build_result, combine_groups
from .preprocess import cache_base, check_cache_room, preprocess
from .runlog import StageTimer, log_to_file, quiet_spikeinterface, versions
from .threads import configure_threads
from .train import initial_model, sample_windows, train, window_samples
from .validate import check_recording, in_file_units, scan_traces

logger = logging.getLogger(__name__)

LOG_NAME = "crsae_sort.log"


def sort(recording, output_folder: str | Path | None = None, params: SortParams | dict | None = None, *,
         model_path: str | Path | None = None, overwrite: bool = False, resume: bool = False,
         progress: bool | None = None, phy: bool = False, nwb: bool = False) -> SortResult:
    """Sort ``recording`` (a SpikeInterface recording with a probe) and write the outputs.

    ``params`` is a :class:`SortParams` or a flat dict of overrides (``crsae-sort params``);
    ``model_path`` reuses a trained ``model.pt`` instead of learning a dictionary; ``resume``
    continues an interrupted run into the same ``output_folder`` from its last checkpoint;
    ``phy`` and ``nwb`` add a Phy folder (``phy/``) and an NWB file (``units.nwb``), see
:mod:`crsae_sort.io.phy_nwb`. Every input is checked before any heavy work; problems raise
    :class:`InputError`. SpikeInterface draws no progress bars of its own meanwhile.
    """
    with quiet_spikeinterface():
        return _sort_checked(recording, output_folder, params, model_path=model_path, overwrite=overwrite,
                             resume=resume, progress=progress, phy=phy, nwb=nwb)


def _sort_checked(recording, output_folder, params, *, model_path, overwrite: bool, resume: bool,
                  progress: bool | None, phy: bool, nwb: bool) -> SortResult:
    if not isinstance(params, SortParams):
        params = SortParams.from_dict(params)
    progress = sys.stderr.isatty() if progress is None else progress
    device = resolve_device(params.run.device)
    trained = results.load_model(Path(model_path), device) if model_path is not None else None
    if trained is not None and trained.n_channels != recording.get_num_channels():
        raise InputError(f"model {model_path} was trained on {trained.n_channels} channels but the "
                         f"recording has {recording.get_num_channels()}; train a new model")
    if params.preprocess.amplitude_unit == "counts":
        recording = in_file_units(recording)
    check_recording(recording, params)
    if phy or nwb:
        from .io.phy_nwb import check_outputs_possible

        check_outputs_possible(recording, output_folder, phy=phy, nwb=nwb)
    target = Path(output_folder).resolve() if output_folder is not None else None
    if target is not None:
        outfolder.check_target(target, overwrite=overwrite, resume=resume)
    several = len(np.unique(recording.get_channel_groups())) > 1
    # groups are sorted one at a time, each with its own disk cache, removed after it
    for part in recording.split_by("group").values() if several else [recording]:
        check_cache_room(part, params.preprocess, cache_base(params.preprocess, target))
    scan = scan_traces(recording)
    if scan.dead_channel_ids:
        recording = recording.remove_channels(scan.dead_channel_ids)
        if trained is not None:
            raise InputError(f"channels {scan.dead_channel_ids} are dead, so the recording no longer matches the "
                             f"model's {trained.n_channels} channels; train a new model")
    n_groups = len(np.unique(recording.get_channel_groups()))
    if n_groups > 1 and trained is not None:
        flag = option("model_path", "--model")
        raise InputError(f"the recording has {n_groups} channel groups (shanks or tetrodes) and {flag} holds one "
                         f"group's model; sort without {flag}, or select one group first")
    run = _sort_groups if n_groups > 1 else _sort
    if target is None:
        return run(recording, _Run(params, device, trained, progress, None, scan))
    partial = outfolder.open_partial(target, resume=resume)
    try:
        with log_to_file(partial / LOG_NAME, append=resume):
            try:
                result = run(recording, _Run(params, device, trained, progress, partial, scan))
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


@dataclass(frozen=True)
class _Run:
    """How this sort runs: the same for every channel group."""
    params: SortParams
    device: torch.device
    trained: object | None       # io.results.SavedModel from --model, or None to train
    progress: bool
    folder: Path | None          # the partial output folder (or a group's folder inside it)
    scan: object                 # validate.TraceScan: dead channels found before the sort

    def inside(self, folder: Path | None) -> "_Run":
        return dataclasses.replace(self, folder=folder)


def _sort(recording, run: _Run) -> SortResult:
    """One group's sort; its disk cache (when the preprocessed recording needs one) is removed after it."""
    base = cache_base(run.params.preprocess, run.folder)
    if base == run.folder:  # a cache left in this (resumed) output folder by a killed run
        for stale in base.glob("crsae_cache_*"):
            shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="crsae_cache_", dir=base) as scratch:
        return _sort_stages(recording, run, Path(scratch))


def _sort_stages(recording, run: _Run, scratch: Path) -> SortResult:
    t_start = time.perf_counter()
    params, folder = run.params, run.folder
    info = versions()
    logger.info("crsae-sort %s; versions %s", info["crsae-sort"], info)
    logger.info("parameters %s", params.to_dict())
    logger.info("recording: %s", recording)
    configure_threads(params.run.num_threads)
    logger.info("device: %s", describe_device(run.device))
    seed = params.run.seed
    torch.manual_seed(seed)
    timer = StageTimer()
    checkpoints = folder / outfolder.CHECKPOINT_DIR if folder is not None else None
    if checkpoints is not None:
        checkpoints.mkdir(exist_ok=True)
    if run.device.type == "cuda":
        with timer.stage("gpu start-up"):
            warm_up(run.device)
    with timer.stage("preprocess"):
        pre = preprocess(recording, params.preprocess, seed, scratch)
    fs_model = pre.recording.get_sampling_frequency()
    training = growth = None
    if run.trained is None:
        with timer.stage("init"):
            init = _cached(checkpoints, "init.pt", lambda: initial_dictionary(pre.recording, params.init, seed))
        with timer.stage("train"):
            model, training = _cached(checkpoints, "trained.pt",
                                      lambda: _build_and_train(pre, init, params, run.device, run.progress,
                                                               checkpoints))
        n_channels = pre.recording.get_num_channels()
        if params.grow.grow_rounds > 0 and init.method == "local" and n_channels > GROW_MAX_CHANNELS:
            logger.info("growth skipped: %d channels clustered per neighbourhood, and growth clusters the residual "
                        "over the whole probe, which does not scale beyond %d channels yet",
                        n_channels, GROW_MAX_CHANNELS)
        elif params.grow.grow_rounds > 0:
            with timer.stage("grow"):
                model, growth = _cached(checkpoints, "grown.pt",
                                        lambda: grow(model, pre.recording, params, init.n_before, progress=run.progress))
    else:
        model = run.trained.model
        if abs(run.trained.model_sampling_frequency_hz - fs_model) > 1e-6 * fs_model:
            raise InputError(f"the model runs at {run.trained.model_sampling_frequency_hz:.3f} Hz but this "
                             f"recording preprocesses to {fs_model:.3f} Hz; train a new model")
    with timer.stage("inference"):
        spikes = detect_spikes(model, pre.recording, params.inference, progress=run.progress)
        result = build_result(recording, pre, model, spikes, params, training, run.device, growth)
        result.summary.dead_channels_excluded = [str(c) for c in run.scan.dead_channel_ids]
        result.summary.amplitude_unit = params.preprocess.amplitude_unit
    with timer.stage("curate"):
        result = curate(result, pre.filtered_uv, params.curation, seed=seed)
    with timer.stage("export"):
        result.stage_seconds = dict(timer.seconds)
        if folder is not None:
            results.write_sort(folder, result, recording, pre.decimation, info)
    result.summary.seconds = dict(timer.seconds)
    result.summary.cpus_busy = {name: round(n, 2) for name, n in timer.cpus.items()}
    result.summary.finish(time.perf_counter() - t_start)
    if folder is not None:
        results.write_json(folder / "summary.json", result.summary.to_dict())
    s = result.summary
    logger.info("sorted %.1f s of recording in %.1f s (%.1fx real time): %d units, %d spikes",
                s.duration_s, s.seconds["total"], s.times_real_time, len(s.units), len(result.spikes))
    return result


def _sort_groups(recording, run: _Run) -> SortResult:
    """Sort each channel group (tetrode, shank) on its own, then combine the units.

    Each group's full output (its own model, templates, log lines) goes to ``group_<g>/``; the
    top level holds the combined sorting, with unit ids numbered across groups and each
    unit's group and template recorded in ``summary.json``.
    """
    parts = {}
    by_group = dict(sorted(recording.split_by("group").items(), key=lambda kv: str(kv[0])))
    for group, sub in by_group.items():
        logger.info("channel group %s: %d channels", group, sub.get_num_channels())
        sub_folder = run.folder / f"group_{group}" if run.folder is not None else None
        if sub_folder is not None:
            sub_folder.mkdir(exist_ok=True)
        try:
            parts[group] = _sort(sub, run.inside(sub_folder))
        except InputError as exc:
            raise InputError(f"channel group {group}: {exc}") from exc
    result = combine_groups(recording, parts, {g: sub.channel_ids for g, sub in by_group.items()}, run.params)
    result.summary.dead_channels_excluded = [str(c) for c in run.scan.dead_channel_ids]
    result.summary.amplitude_unit = run.params.preprocess.amplitude_unit
    if run.folder is not None:
        results.write_combined(run.folder, result, recording)
    return result


def _cached(folder: Path | None, name: str, compute):
    """``compute()``, saved to ``folder/name`` once done, and read back from there when resuming (as plain
    tensors and containers: :mod:`crsae_sort.io.checkpoints`)."""
    if folder is None:
        return compute()
    path = folder / name
    if path.exists():
        value = checkpoints.load(path)
        logger.info("resuming: %s read from the checkpoint", name)
        return value
    value = compute()
    checkpoints.save(path, value)
    return value


def _build_and_train(pre, init, params: SortParams, device: torch.device, progress: bool, checkpoints: Path | None):
    fs = pre.recording.get_sampling_frequency()
    n_window = window_samples(params, fs, init.dictionary.shape[-1])
    model = initial_model(init, params, n_window, device, channel_locations_um(pre.recording))
    if model.uses_working_set(params.inference.screen_fraction):
        # sparse codes make the working set far cheaper than dense iterations on a CPU; a GPU runs dense
        model.working_set_screen = params.inference.screen_fraction
        logger.info("encoder on working sets of code entries (CPU; started at %.2f lambda)", model.working_set_screen)
    rec = pre.recording
    total = sum(rec.get_num_samples(s) for s in range(rec.get_num_segments()))
    n_windows = int(min(params.train.n_windows, max(2 * params.train.batch_size, total // n_window)))
    if n_windows < params.train.n_windows:
        logger.info("training on %d windows: the recording holds no more without overlap", n_windows)
    windows = sample_windows(rec, n_windows, n_window, params.run.seed)
    result = train(model, windows, params.train, lambda_prior_strength=params.model.lambda_prior_strength,
                   seed=params.run.seed, progress=progress,
                   checkpoint=checkpoints / "training.pt" if checkpoints is not None else None,
                   dictionary_gradient=params.model.dictionary_gradient)
    return model, result


def _write_extra_outputs(folder: Path, result: SortResult, recording, *, phy: bool, nwb: bool) -> None:
    from .io import phy_nwb

    if phy:
        phy_nwb.export_phy(result, recording, folder / phy_nwb.PHY_FOLDER)
    if nwb:
        phy_nwb.export_nwb(result, recording, folder / phy_nwb.NWB_FILE)
