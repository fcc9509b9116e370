"""Writing results: SpikeInterface sorting folder, µV templates, spikes table, model file, JSON."""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..model.crsae import STATE_FORMAT, CRsAE

logger = logging.getLogger(__name__)

SPIKE_DTYPE = np.dtype([("sample_index", "i8"), ("segment_index", "i8"), ("unit_id", "i8"),
                        ("amplitude", "f4"), ("amplitude_uv", "f4")])


def templates_uv(dictionary: np.ndarray, to_model: np.ndarray, amplitudes: np.ndarray, decimation: int) -> np.ndarray:
    """Learned atoms mapped back to band-passed µV at the recording's rate.

    dictionary ``(C, M, K)`` lives in model space ``y = x A``; each atom becomes
    ``a_c h_c^T A^{-1}`` ``(K, M)`` scaled by the unit's median debiased amplitude ``a_c``, then
    resampled by the decimation factor. Returns ``(C, K * decimation, M)``.
    """
    from scipy.signal import resample_poly

    back = np.linalg.inv(to_model)
    out = np.einsum("cmk,mn->ckn", dictionary.astype(np.float64), back) * amplitudes[:, None, None]
    if decimation > 1:
        out = resample_poly(out, decimation, 1, axis=1)
    return out.astype(np.float32)


def aligned_templates(templates_uv: np.ndarray, peak_samples: np.ndarray) -> tuple[np.ndarray, int]:
    """Shift each template so that its spike-time sample lands on a common ``nbefore``.

    ``templates_uv`` ``(U, S, M)``; ``peak_samples`` ``(U,)`` is, per unit, the template sample that
    the reported spike time points at. Returns ``(U, S', M)`` and ``nbefore`` (SpikeInterface and
    Phy expect one ``nbefore`` for all units).
    """
    n_units, n_samples, n_channels = templates_uv.shape
    peak_samples = np.asarray(peak_samples, dtype=np.int64)
    if n_units == 0:
        return templates_uv, 0
    nbefore = int(peak_samples.max())
    nafter = int((n_samples - peak_samples).max())
    out = np.zeros((n_units, nbefore + nafter, n_channels), dtype=np.float32)
    for u, (tpl, peak) in enumerate(zip(templates_uv, peak_samples)):
        start = nbefore - peak
        out[u, start: start + n_samples] = tpl
    return out, nbefore


def spike_peak_samples(result) -> np.ndarray:
    """Per kept unit, the sample of its µV template that spike times point at."""
    by_id = {u.unit_id: u for u in result.summary.units}
    return np.array([by_id[int(u)].peak_sample for u in result.sorting.unit_ids], dtype=np.int64)


def sparse_templates(result, recording):
    """The µV templates as SpikeInterface ``Templates`` with a ``ChannelSparsity`` (radius around the peak).

    Aligned as for Phy (:func:`aligned_templates`: each unit's spike-time sample at one common
    ``nbefore``). The sparsity keeps the channels within ``radius_um`` of the unit's peak channel
    (``ChannelSparsity.from_radius_and_main_channel``); ``radius_um = 0`` keeps every channel.
    Sparse array ``(num_units, num_samples, max active channels)``.
    """
    from spikeinterface.core import ChannelSparsity, Templates

    aligned, nbefore = aligned_templates(result.templates_uv, spike_peak_samples(result))
    unit_ids = np.asarray(result.sorting.unit_ids)
    group = recording.get_probegroup()
    probe = recording.get_probe() if group is not None and len(group.probes) == 1 else None
    dense = Templates(aligned, recording.get_sampling_frequency(), nbefore, is_in_uV=True,
                      channel_ids=recording.channel_ids, unit_ids=unit_ids, probe=probe)
    radius_um = result.params.model.radius_um
    if radius_um > 0:
        main = np.abs(aligned).max(axis=1).argmax(axis=1)
        sparsity = ChannelSparsity.from_radius_and_main_channel(unit_ids, recording.channel_ids, main,
                                                                recording.get_channel_locations(), radius_um)
    else:
        sparsity = ChannelSparsity(np.ones((len(unit_ids), len(recording.channel_ids)), bool), unit_ids,
                                   recording.channel_ids)
    return dense.to_sparse(sparsity)


def spikes_table(sample_index, segment_index, unit_id, amplitude, amplitude_uv) -> np.ndarray:
    table = np.empty(len(sample_index), dtype=SPIKE_DTYPE)
    table["sample_index"], table["segment_index"], table["unit_id"] = sample_index, segment_index, unit_id
    table["amplitude"], table["amplitude_uv"] = amplitude, amplitude_uv
    return table


def sorting_from_table(table: np.ndarray, n_segments: int, sampling_frequency_hz: float, unit_ids):
    """A SpikeInterface ``NumpySorting`` from a spikes table (times sorted within each segment)."""
    from spikeinterface.core import NumpySorting

    samples, labels = [], []
    for seg in range(n_segments):
        sel = table[table["segment_index"] == seg]
        order = np.lexsort((sel["unit_id"], sel["sample_index"]))
        samples.append(sel["sample_index"][order])
        labels.append(sel["unit_id"][order])
    return NumpySorting.from_samples_and_labels(samples, labels, sampling_frequency_hz, unit_ids=unit_ids)


def save_sorting(sorting, folder: Path) -> None:
    """SpikeInterface sorting folder (``spikeinterface.load`` reads it back)."""
    import warnings

    with warnings.catch_warnings():  # an in-memory sorting has no provenance to record
        warnings.filterwarnings("ignore", message=".*not serializable.*")
        sorting.save(folder=folder)


def save_recording_reference(recording, path: Path) -> bool:
    """SpikeInterface JSON of the input recording (absolute paths), so reports can reopen it.

    In-memory recordings cannot be described this way; then nothing is written.
    """
    if not recording.check_serializability("json"):
        logger.info("recording is not serialisable to JSON; recording.json not written")
        return False
    recording.dump_to_json(path, relative_to=None)
    return True


def save_model(path: Path, model: CRsAE, *, sampling_frequency_hz: float, decimation: int,
               n_channels: int, params: dict, versions: dict) -> None:
    """``model.pt``: the model's state (:meth:`CRsAE.to_state`), its rate and channels, params, versions."""
    save_torch(dict(model.to_state(), model_sampling_frequency_hz=sampling_frequency_hz / decimation,
                    n_channels=n_channels, params=params, versions=versions), path)


@dataclass
class SavedModel:
    """A model read back from ``model.pt`` and what it was made for."""
    model: CRsAE
    n_channels: int
    model_sampling_frequency_hz: float
    params: dict


def load_model(path: Path, device: torch.device) -> SavedModel:
    """Read ``model.pt`` written by :func:`save_model`; an old or foreign file is a clear error."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        raise InputError(f"cannot read model file {path}: {exc}; pass a model.pt written by crsae-sort") from exc
    if not isinstance(blob, dict) or "format" not in blob:
        raise InputError(f"{path} is not a crsae-sort model file")
    if blob["format"] != STATE_FORMAT:
        raise InputError(f"{path} is a crsae-sort model of format {blob['format']}; this version reads format "
                         f"{STATE_FORMAT}: sort again without --model to train a new one")
    return SavedModel(CRsAE.from_state(blob, device), int(blob["n_channels"]),
                      float(blob["model_sampling_frequency_hz"]), dict(blob.get("params", {})))


def save_torch(obj, path: Path) -> None:
    """``torch.save`` through a temporary file and a rename: a killed write leaves the old file intact."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    """``obj`` as indented JSON (numpy scalars and arrays converted), written through a rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def write_sort(folder: Path, result, recording, decimation: int, versions: dict) -> None:
    """The files of one sort (``summary.json`` is written last, by the pipeline, with the total time)."""
    _write_common(folder, result, recording)
    save_model(folder / "model.pt", result.model, sampling_frequency_hz=result.summary.sampling_frequency_hz,
               decimation=decimation, n_channels=result.summary.num_channels, params=result.params.to_dict(),
               versions=versions)
    if result.training is not None:
        write_json(folder / "training.json", result.training.history)


def write_combined(folder: Path, result, recording) -> None:
    """The top-level files of a sort whose channel groups were sorted apart (models are per group)."""
    _write_common(folder, result, recording)
    write_json(folder / "summary.json", result.summary.to_dict())


def _write_common(folder: Path, result, recording) -> None:
    save_sorting(result.sorting, folder / "sorting")
    save_recording_reference(recording, folder / "recording.json")
    np.save(folder / "templates.npy", result.templates_uv)
    if len(result.summary.units):
        sparse_templates(result, recording).to_zarr(folder / "templates.zarr")
    np.save(folder / "spikes.npy", result.spikes)
    write_json(folder / "params.json", result.params.to_dict())
